#!/usr/bin/env bash
# Runs every libFuzzer target (tests/fuzz) for a bounded time, each on a copy of its checked-in
# corpus, and fails on any crash, sanitizer report, timeout or out-of-memory. Prints executions and
# executions per second per target. Builds the fuzz preset first (clang-16, installed by
# scripts/setup.sh when missing).
#
#   scripts/fuzz.sh                      # every target, ESPER_FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh envelope controller  # some targets
#   ESPER_FUZZ_RUNS=10000000 scripts/fuzz.sh envelope   # a number of executions instead of a time
#   ESPER_FUZZ_MERGE=1 scripts/fuzz.sh   # then merge the inputs that add coverage into tests/fuzz/corpus
#
# A crash leaves its input in build/fuzz/fuzz-run/<target>/crash-* (and the log beside it): copy it
# to tests/fuzz/corpus/<target>/ with the fix, so that every build's replay keeps testing it.
set -euo pipefail
cd "$(dirname "$0")/.."

all_targets=(envelope job_state subscriber controller lifecycle_commands toml_config node client step_plan)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
seconds=${ESPER_FUZZ_SECONDS:-20}
runs=${ESPER_FUZZ_RUNS:-}

command -v clang++-16 >/dev/null || bash scripts/setup.sh
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for s in llvm-symbolizer-16 llvm-symbolizer; do
  if command -v "$s" >/dev/null; then export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v "$s")}; break; fi
done

work=build/fuzz/fuzz-run
mkdir -p "$work"
# Inputs that reproduce a crash not fixed yet (tests/fuzz/known_crashes.txt) would stop the fuzzer
# on its first pass over the corpus: they are left out of the copy.
known=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' tests/fuzz/known_crashes.txt | grep -v '^$' || true)

failed=()
report=()
for t in "${targets[@]}"; do
  bin=build/fuzz/tests/fuzz/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz: no target '$t' (known: ${all_targets[*]})" >&2; exit 2; }
  dir=$work/$t
  rm -rf "$dir"
  mkdir -p "$dir/corpus"
  for f in tests/fuzz/corpus/"$t"/*; do
    grep -qxF "$t/$(basename "$f")" <<<"$known" || cp "$f" "$dir/corpus/"
  done
  args=(-print_final_stats=1 -artifact_prefix="$dir/" -timeout=10 -rss_limit_mb=2048)
  if [[ -n $runs ]]; then args+=(-runs="$runs"); else args+=(-max_total_time="$seconds"); fi
  [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="tests/fuzz/$t.dict")
  printf '== fuzz %s (%s)\n' "$t" "$(if [[ -n $runs ]]; then echo "$runs runs"; else echo "${seconds} s"; fi)"
  rc=0
  "$bin" "${args[@]}" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -n1)
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -n1 | cut -d' ' -f2)
  size=$(find "$dir/corpus" -type f | wc -l)
  report+=("$(printf '%-20s %12s execs %8s exec/s  cov %6s  corpus %5s  %s' "$t" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "$size" "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
  if [[ $rc -ne 0 ]]; then
    failed+=("$t")
    echo "fuzz: $t failed (exit $rc); the end of $dir/log:" >&2
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|NEW_FUNC' "$dir/log" | tail -n 40 >&2
    ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null >&2 || true
  elif [[ ${ESPER_FUZZ_MERGE:-0} == 1 ]]; then
    "$bin" -merge=1 tests/fuzz/corpus/"$t" "$dir/corpus" >"$dir/merge.log" 2>&1
    echo "fuzz: merged into tests/fuzz/corpus/$t: $(grep -o 'added [0-9]* new units' "$dir/merge.log" || echo '?')"
  fi
done

printf '\n== fuzz summary\n'
printf '%s\n' "${report[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
