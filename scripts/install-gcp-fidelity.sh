#!/usr/bin/env bash
# Installs the npm clients the GCP emulator's fidelity tests use (tests/gcp-fidelity:
# @google-cloud/storage, @google-cloud/run, google-auth-library) exactly as package-lock.json
# pins them. Idempotent: skipped when node_modules already matches the lock file.
set -euo pipefail
here="$(dirname "$0")"
source "$here/lib/npm-pinned.sh"
npm_install_pinned install-gcp-fidelity "$here/../tests/gcp-fidelity" "npm clients"
