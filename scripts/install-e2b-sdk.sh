#!/usr/bin/env bash
# Installs E2B's npm SDK that tests/e2b runs against agentboxd, exactly as
# tests/e2b/package-lock.json pins it (docs/e2b.md names the version). Idempotent: skipped when
# node_modules already matches the lock file.
set -euo pipefail
here="$(dirname "$0")"
source "$here/lib/npm-pinned.sh"
npm_install_pinned install-e2b-sdk "$here/../tests/e2b" "e2b SDK"
