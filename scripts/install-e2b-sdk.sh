#!/usr/bin/env bash
# Installs E2B's npm SDK that tests/e2b runs against agentboxd, exactly as
# tests/e2b/package-lock.json pins it (docs/e2b.md names the version). Idempotent: skipped when
# node_modules already matches the lock file.
set -euo pipefail
cd "$(dirname "$0")/../tests/e2b"
if ! command -v npm >/dev/null; then
  echo "install-e2b-sdk: npm is missing (scripts/install-deps.sh installs nodejs npm)" >&2
  exit 1
fi
stamp=node_modules/.agentbox-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "install-e2b-sdk: e2b SDK present"
  exit 0
fi
echo "install-e2b-sdk: npm ci in $(pwd)"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" >"$stamp"
