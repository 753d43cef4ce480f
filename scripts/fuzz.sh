#!/usr/bin/env bash
# Builds the fuzz preset (clang, libFuzzer + ASan + UBSan; fuzz/) and runs every fuzz target for
# SECONDS each (default 600), one after the other, starting from the committed seeds in
# fuzz/corpus/<name>/. This is the long form of the fuzz.<name> CTest tests (20 s each:
# `ctest --preset fuzz`); docs/reliability.md, "Fuzzing".
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New inputs are kept in build/fuzz/fuzz/corpus/<name>/ (reused by the next run); a crash is
# written to build/fuzz/fuzz/artifacts/<name>-crash-<sha1> and fails the script. Reproduce one
# with `build/fuzz/fuzz/fuzz_<name> <file>`; fix it, then commit the file to fuzz/corpus/<name>/.
# JOBS (default 2) sets the build's parallelism.
set -euo pipefail

cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j "${JOBS:-2}"

bin=build/fuzz/fuzz
if (($# > 0)); then
  targets=("$@")
else
  targets=()
  for src in fuzz/fuzz_*.cc; do
    name="${src#fuzz/fuzz_}"
    targets+=("${name%.cc}")
  done
fi

export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
failed=()
for name in "${targets[@]}"; do
  mkdir -p "$bin/corpus/$name" "$bin/artifacts"
  echo "== fuzz_$name: ${seconds}s"
  if ! "$bin/fuzz_$name" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$bin/artifacts/$name-" \
      "$bin/corpus/$name" "fuzz/corpus/$name" 2>"$bin/$name.log"; then
    failed+=("$name")
    tail -n 40 "$bin/$name.log"
  fi
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)' \
    "$bin/$name.log" | sed "s/^/  /" || true
done

if ((${#failed[@]} > 0)); then
  echo "fuzz: crashes in: ${failed[*]} (inputs in $bin/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
