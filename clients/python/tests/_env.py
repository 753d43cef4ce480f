"""Where the agentboxd under test listens, from the environment tests/python/run_tests.sh sets.

AGENTBOX_TEST_UNIX   unix:/path of the daemon's socket (the unix socket's callers are admins)
AGENTBOX_TEST_TCP    http://127.0.0.1:PORT of the same daemon
AGENTBOX_TEST_KEYS   two API keys of different owners, comma-separated
AGENTBOX_TEST_BACKEND  the backend every sandbox must land on (jail, docker)
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(os.path.dirname(_HERE), "src")
if _SRC not in sys.path and not os.environ.get("AGENTBOX_TEST_INSTALLED"):
    sys.path.insert(0, _SRC)


def need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run these tests with tests/python/run_tests.sh, "
                           "which starts an agentboxd for them")
    return value


UNIX = need("AGENTBOX_TEST_UNIX")
TCP = need("AGENTBOX_TEST_TCP")
KEYS = need("AGENTBOX_TEST_KEYS").split(",")
BACKEND = need("AGENTBOX_TEST_BACKEND")
