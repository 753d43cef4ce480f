#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotently), then builds and tests agentbox: the release,
# debug (sanitizers) and fuzz presets. This is the README's test command and what CI runs.
#
#  1. The release preset, with every test suite. The docker backend is tested against a real
#     engine: dockerd is started when it does not answer (scripts/start-dockerd.sh) and
#     agentbox/base is built from Debian packages when missing (scripts/build-base-image.sh), and
#     the conformance suite runs on jail, docker, cloudrun and cloudrun-session (cloudrun's
#     session mode; both against agentbox-gcp-emulator, whose executions run on that engine). The jail's suites run a second
#     time inside a QEMU virtual machine on cgroup v2 (tests/vm), since these hosts are cgroup v1.
#     The GCP emulator's fidelity tests need Google's npm clients
#     (scripts/install-gcp-fidelity.sh) and gcloud (on the machine image); the E2B-compatible
#     API is tested with E2B's npm SDK (scripts/install-e2b-sdk.sh).
#  2. The debug preset (AddressSanitizer + UndefinedBehaviorSanitizer, UBSan halting on its first
#     report), with every unit, daemon, guest, backend and end-to-end suite, the conformance suite
#     on jail and docker included, cloudrun's end-to-end and session suites too. Left to the
#     release half, to keep the whole run under 40 minutes on a fresh 2-core machine (they are
#     the slowest suites and exercise code the sanitized suites already run):
#       - the cgroup v2 VM runs (AGENTBOX_VM_TESTS stays off): software emulation;
#       - the GCP emulator's fidelity tests (gcp_fidelity.*): their time is node's and gcloud's;
#         the emulator runs sanitized in gcp_emulator.*, GcpEmulatorClients.* and cloudrun_e2e.*;
#       - the crash-injection suite (crash.*): kill -9 of agentboxd at each crash point, where
#         the sanitizers have nothing to see; the restart paths it drives run sanitized in
#         daemon_engine_restart.* and the recovery tests of each backend;
#       - the Python client (python_client.*), the operator scripts (ops.*) and the engine
#         restart scripts (docker_guest_restart.*, docker_engine_restart.*): their subject is
#         Python, shell and dockerd; the daemon calls they make are the ones daemon_api.*,
#         conformance.* and docker.* make;
#       - the benchmarks' short forms (reliability.*): figures come from the release build.
#     Sandboxes get a static, unsanitized guest: the release half's, or one built for the
#     purpose when the release half did not run (cmake/sandbox_guest.cmake); everything on the
#     host side is sanitized. The benchmark programs are not built in this half.
#
#  3. The fuzz preset (clang, libFuzzer + ASan + UBSan; fuzz/): every fuzz target for a bounded
#     time (FUZZ_SECONDS, default 10 s each; scripts/fuzz.sh is the long form), from the
#     committed seeds. A crash fails the run and leaves its input in build/fuzz/fuzz/artifacts/.
#
# Without arguments (CI) all three run, in that order; --release-only, --debug-only and
# --fuzz-only run one (--all is the same as no argument).
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
scripts/install-deps.sh
scripts/install-gcp-fidelity.sh
scripts/install-e2b-sdk.sh
scripts/start-dockerd.sh
scripts/build-base-image.sh
if ((release)); then
  cmake --preset release -DAGENTBOX_CONFORMANCE_BACKENDS=jail,docker,cloudrun,cloudrun-session -DAGENTBOX_VM_TESTS=ON
  cmake --build --preset release -j "$jobs"
  ctest --preset release -j "$jobs"
fi
if ((debug)); then
  guest=()
  if [[ -x build/release/src/guest/agentbox-guest ]] && ((release)); then
    guest=(-DAGENTBOX_PREBUILT_SANDBOX_GUEST="$PWD/build/release/src/guest/agentbox-guest")
  fi
  cmake --preset debug -DAGENTBOX_CONFORMANCE_BACKENDS=jail,docker -DAGENTBOX_VM_TESTS=OFF \
    -DAGENTBOX_BUILD_BENCH=OFF "${guest[@]}"
  cmake --build --preset debug -j "$jobs"
  ctest --preset debug -j "$jobs" \
    -E '^(gcp_fidelity|crash|python_client|ops|docker_guest_restart|docker_engine_restart|reliability)[.]'
fi
if ((fuzz)); then
  cmake --preset fuzz -DAGENTBOX_FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
  cmake --build --preset fuzz -j "$jobs"
  ctest --preset fuzz -j "$jobs"
fi
