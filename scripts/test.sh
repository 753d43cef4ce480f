#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotently), then builds and tests agentbox three ways. This is
# the README's test command and what CI runs.
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
#     report), with every suite, the conformance suite on jail and docker included (cloudrun's
#     end-to-end suite runs in both builds, its conformance run only in release), except two that
#     run only in release, to keep the whole run under 40 minutes:
#       - the cgroup v2 VM runs (AGENTBOX_VM_TESTS stays off): under software emulation they are
#         the slowest suites by far, and sanitized they would be slower still;
#       - the GCP emulator's fidelity tests (gcp_fidelity.*): they check the emulator, a test
#         tool, against Google's clients, their time is node's and gcloud's, and the emulator's
#         code runs sanitized in gcp_emulator.*, GcpEmulatorClients.* and cloudrun_e2e.* anyway.
#     Sandboxes get a static, unsanitized guest (cmake/sandbox_guest.cmake); everything on the
#     host side is sanitized.
#
#  3. The fuzz preset (clang, libFuzzer + ASan + UBSan; fuzz/): every fuzz target for a bounded
#     time (FUZZ_SECONDS, default 10 s each; scripts/fuzz.sh is the long form), from the
#     committed seeds. A crash fails the run and leaves its input in build/fuzz/fuzz/artifacts/.
#
# All three together stay under 40 minutes on a fresh 2-core machine (figures in README.md).
# Without arguments (CI) all three run; --release-only, --debug-only and --fuzz-only run one.
set -euo pipefail
cd "$(dirname "$0")/.."
release=1
debug=1
fuzz=1
case "${1:-}" in
  "") ;;
  --release-only) debug=0; fuzz=0 ;;
  --debug-only) release=0; fuzz=0 ;;
  --fuzz-only) release=0; debug=0 ;;
  *) echo "usage: scripts/test.sh [--release-only | --debug-only | --fuzz-only]" >&2; exit 2 ;;
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
  cmake --preset debug -DAGENTBOX_CONFORMANCE_BACKENDS=jail,docker -DAGENTBOX_VM_TESTS=OFF
  cmake --build --preset debug -j "$jobs"
  ctest --preset debug -j "$jobs" -E '^gcp_fidelity[.]'
fi
if ((fuzz)); then
  cmake --preset fuzz -DAGENTBOX_FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
  cmake --build --preset fuzz -j "$jobs"
  ctest --preset fuzz -j "$jobs"
fi
