"""Adapters that let existing agent backends use agentboxd without changing their code."""
