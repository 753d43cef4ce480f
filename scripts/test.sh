#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotently), then builds and tests agentbox: the release,
# debug (sanitizers) and fuzz presets. This is the README's test command and what CI runs.
#
#  Without arguments (CI, --all), each suite runs in one of the two C++ builds, to keep the whole
#  run under 40 minutes on a fresh 2-core machine:
#
#  1. The release preset runs what needs an optimised build or is not about C++ memory safety
#     (AGENTBOX_RELEASE_HALF_TESTS below), and builds only the binaries those need (CMake target
#     agentbox_release_half):
#       - the jail's suites inside a QEMU virtual machine on cgroup v2 (tests/vm), since these hosts
#         are cgroup v1: software emulation, too slow sanitized;
#       - the conformance suite on cloudrun and cloudrun-session, against agentbox-gcp-emulator,
#         whose executions run on the Docker engine;
#       - the GCP emulator's fidelity tests with Google's npm clients and gcloud (gcp_fidelity.*;
#         scripts/install-gcp-fidelity.sh): their time is node's and gcloud's; the emulator runs
#         sanitized in gcp_emulator.*, GcpEmulatorClients.* and cloudrun_e2e.*;
#       - the crash-injection suite (crash.*): kill -9 of agentboxd at each crash point, where the
#         sanitizers have nothing to see; the restart paths it drives run sanitized in
#         daemon_engine_restart.* and the recovery tests of each backend;
#       - the Python client (python_client.*), the operator scripts and the package (ops.*) and the
#         engine restart scripts (docker_guest_restart.*, docker_engine_restart.*): their subject
#         is Python, shell, dpkg and dockerd;
#       - the benchmarks' short forms (reliability.*): their bounds are about speed and memory.
#  2. The debug preset (AddressSanitizer + UndefinedBehaviorSanitizer, UBSan halting on its first
#     report) runs every other suite: unit, daemon, guest, backend, CLI, E2B SDK and end-to-end
#     suites, the conformance suite on jail and docker, cloudrun's end-to-end and session suites.
#     Sandboxes get a static, unsanitized guest: the release half's, or one built for the
#     purpose when the release half did not run (cmake/sandbox_guest.cmake); everything on the
#     host side is sanitized. The benchmark programs are not built in this half.
#  3. The fuzz preset (clang, libFuzzer + ASan + UBSan; fuzz/): every fuzz target for a bounded
#     time (FUZZ_SECONDS, default 10 s each; scripts/fuzz.sh is the long form), from the
#     committed seeds. A crash fails the run and leaves its input in build/fuzz/fuzz/artifacts/.
#
#  Setup first (idempotent): Debian packages, Google's npm clients, E2B's npm SDK, dockerd
#  (started when it does not answer, scripts/start-dockerd.sh) and agentbox/base (built from
#  Debian packages when missing, scripts/build-base-image.sh).
#
# --release-only runs every suite in the release build (the VM, all four conformance backends);
# --debug-only runs the debug half as above (the release half's suites excluded); --fuzz-only
# runs the fuzz half. Each stage prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
release=1
debug=1
fuzz=1
case "${1:-}" in
  "" | --all) ;;
  --release-only) debug=0; fuzz=0 ;;
  --debug-only) release=0; fuzz=0 ;;
  --fuzz-only) release=0; debug=0 ;;
  *) echo "usage: scripts/test.sh [--all | --release-only | --debug-only | --fuzz-only]" >&2; exit 2 ;;
esac
jobs="$(nproc)"
# The suites of CI's release half (1. above); the debug half runs all others.
AGENTBOX_RELEASE_HALF_TESTS='^(gcp_fidelity|crash|python_client|ops|docker_guest_restart|docker_engine_restart|reliability)[.]|_vm$|^conformance[.].*/cloudrun'
started=$SECONDS
stage() {
  local name=$1
  shift
  local t0=$SECONDS
  "$@"
  echo "test.sh: ${name} took $((SECONDS - t0)) s (${SECONDS} s since start)"
}
setup() {
  scripts/install-deps.sh
  scripts/install-gcp-fidelity.sh
  scripts/install-e2b-sdk.sh
  scripts/start-dockerd.sh
  scripts/build-base-image.sh
}
stage setup setup
if ((release)); then
  stage "release configure" cmake --preset release \
    -DAGENTBOX_CONFORMANCE_BACKENDS=jail,docker,cloudrun,cloudrun-session -DAGENTBOX_VM_TESTS=ON
  if ((debug)); then
    stage "release build" cmake --build --preset release -j "$jobs" --target agentbox_release_half
    stage "release tests" ctest --preset release -j "$jobs" -R "$AGENTBOX_RELEASE_HALF_TESTS"
  else
    stage "release build" cmake --build --preset release -j "$jobs"
    stage "release tests" ctest --preset release -j "$jobs"
  fi
fi
if ((debug)); then
  guest=()
  if [[ -x build/release/src/guest/agentbox-guest ]] && ((release)); then
    guest=(-DAGENTBOX_PREBUILT_SANDBOX_GUEST="$PWD/build/release/src/guest/agentbox-guest")
  fi
  stage "debug configure" cmake --preset debug -DAGENTBOX_CONFORMANCE_BACKENDS=jail,docker \
    -DAGENTBOX_VM_TESTS=OFF -DAGENTBOX_BUILD_BENCH=OFF "${guest[@]}"
  stage "debug build" cmake --build --preset debug -j "$jobs"
  stage "debug tests" ctest --preset debug -j "$jobs" -E "$AGENTBOX_RELEASE_HALF_TESTS"
fi
if ((fuzz)); then
  stage "fuzz configure" cmake --preset fuzz -DAGENTBOX_FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
  stage "fuzz build" cmake --build --preset fuzz -j "$jobs"
  stage "fuzz run" ctest --preset fuzz -j "$jobs"
fi
echo "test.sh: passed in $((SECONDS - started)) s"
