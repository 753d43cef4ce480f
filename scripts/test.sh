#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotently), builds the release preset and runs every
# test suite through CTest. This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)"
