#!/usr/bin/env bash
# Installs every Debian package agentbox needs to build, test and benchmark. Idempotent: packages
# already present are skipped, and apt is only consulted when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  libboost-dev nlohmann-json3-dev libfmt-dev libspdlog-dev libcli11-dev libexpected-dev
  libseccomp-dev libcap-dev libcurl4-openssl-dev libssl-dev
  zlib1g-dev libzstd-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-14-dev
  bash busybox-static procps util-linux e2fsprogs wrk python3 file jq
  python3-venv python3-pip python3-setuptools python3-httpx openssl
  prometheus
  docker.io
  rclone fuse3
  iproute2 iptables
  qemu-system-x86 cpio xz-utils
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm run the GCP emulator's fidelity tests with Google's npm clients. Debian's
# packages only when no npm is there: a NodeSource nodejs ships its own npm and conflicts with
# Debian's.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
