#!/usr/bin/env bash
# Step time of the main job at N ranks with and without the fabric (broker, commands, telemetry),
# alternating runs in the same session (issue 5). Usage: bench/mpi/step_overhead.sh [ranks] [steps] [repeats]
# Reads each run's report: the training loop's time per step (train_seconds / steps) gives the
# overhead per step, and steady_step_ms the same over the steps after the first tenth (past the
# start-up transients); start-up and shutdown (wall_seconds - train_seconds) are printed apart.
# ESPER_ARGS adds `esper run` arguments to both (e.g. "--in 256 --out 256 --chunks 32 --batch 128").
# Both runs do the same arithmetic: no scheduled commands (--schedule none), so no seed leaves
# DORMANT in either, and the difference is the fabric alone (broker, heartbeats, the step-boundary
# command agreement, telemetry encoding and publishing).
set -euo pipefail
cd "$(dirname "$0")/../.."
ranks=${1:-4} steps=${2:-600} repeats=${3:-3}
bin=${ESPER_BIN:-build/default/runtime/cli/esper}
[[ -x $bin ]] || { echo "build esper first: cmake --build --preset default --target esper" >&2; exit 1; }
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq 1 "$repeats"); do
  for mode in fabric none; do
    flag=(); [[ $mode == none ]] && flag=(--no-fabric)
    mpirun --oversubscribe -np "$ranks" "$bin" run --steps "$steps" --progress-every 100000 \
      --report "$out/$mode-$i.json" --policy none ${ESPER_ARGS:-} "${flag[@]}" > /dev/null
  done
done
python3 - "$out" "$repeats" "$steps" "$ranks" <<'PY'
import json, statistics, sys
out, n, steps, ranks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def med(m, key):
    return statistics.median(json.load(open(f"{out}/{m}-{i}.json"))[key] for i in range(1, n + 1))
per = {m: 1000 * med(m, "train_seconds") / steps for m in ("fabric", "none")}
steady = {m: med(m, "steady_step_ms") for m in ("fabric", "none")}
fixed = {m: med(m, "wall_seconds") - med(m, "train_seconds") for m in ("fabric", "none")}
print(f"ranks {ranks} steps {steps}: step time {per['fabric']:.3f} ms with the fabric, {per['none']:.3f} ms without; "
      f"overhead {100 * (per['fabric'] / per['none'] - 1):+.1f}% (target < 3%); "
      f"steady state (after the first tenth of the steps) {steady['fabric']:.3f} vs {steady['none']:.3f} ms, "
      f"{100 * (steady['fabric'] / steady['none'] - 1):+.1f}%; "
      f"start-up and shutdown {fixed['fabric']:.2f} s with, {fixed['none']:.2f} s without")
PY
