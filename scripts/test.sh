#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotently), builds the release preset and runs every
# test suite through CTest. This is the README's test command and what CI runs.
#
# The docker backend is tested against a real engine: dockerd is started when it does not answer
# (scripts/start-dockerd.sh) and agentbox/base is built from Debian packages when missing
# (scripts/build-base-image.sh), and the conformance suite runs on jail, docker and cloudrun (the
# latter against agentbox-gcp-emulator, whose executions run on that engine). The jail's
# suites run a second time inside a QEMU virtual machine on cgroup v2 (tests/vm), since these
# hosts are cgroup v1. The GCP emulator's fidelity tests need Google's npm clients
# (scripts/install-gcp-fidelity.sh) and gcloud (on the machine image).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/install-gcp-fidelity.sh
scripts/start-dockerd.sh
scripts/build-base-image.sh
cmake --preset release -DAGENTBOX_CONFORMANCE_BACKENDS=jail,docker,cloudrun -DAGENTBOX_VM_TESTS=ON
cmake --build --preset release -j "$(nproc)"
ctest --preset release -j "$(nproc)"
