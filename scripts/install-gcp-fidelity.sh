#!/usr/bin/env bash
# Installs the npm clients the GCP emulator's fidelity tests use (tests/gcp-fidelity:
# @google-cloud/storage, @google-cloud/run, google-auth-library) exactly as package-lock.json
# pins them. Idempotent: skipped when node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/gcp-fidelity"
if ! command -v npm >/dev/null; then
  echo "install-gcp-fidelity: npm is missing (scripts/install-deps.sh installs nodejs npm)" >&2
  exit 1
fi
stamp=node_modules/.agentbox-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "install-gcp-fidelity: npm clients present"
  exit 0
fi
echo "install-gcp-fidelity: npm ci in $(pwd)"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
