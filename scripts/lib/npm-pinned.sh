# Sourced by the scripts that install a test folder's npm packages exactly as its
# package-lock.json pins them (install-e2b-sdk.sh, install-gcp-fidelity.sh).
#
#   npm_install_pinned TAG DIR WHAT
#
# Runs `npm ci` in DIR unless node_modules already matches the lock file (a stamp holds the lock
# file's sha256), so it is idempotent and cheap on a machine that has them.
npm_install_pinned() {
  local tag="$1" dir="$2" what="$3"
  cd "$dir"
  if ! command -v npm >/dev/null; then
    echo "$tag: npm is missing (scripts/install-deps.sh installs nodejs npm)" >&2
    return 1
  fi
  local stamp=node_modules/.agentbox-lock.sha256
  local want
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$tag: $what present"
    return 0
  fi
  echo "$tag: npm ci in $(pwd)"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
}
