#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job: 4 MPI ranks training seed
# layers data-parallel on the CPU, rank 0 embedding the broker and the controller (balanced policy) growing
# the seeds through the fabric. Extra arguments go to `esper run` (e.g. --steps 1200 --layers 4).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake --preset default
cmake --build --preset default --target esper

ranks=${ESPER_RANKS:-4}
report=build/default/esper-report.json
if [[ $(id -u) -eq 0 ]]; then
  # Open MPI refuses to run as root unless told twice.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
echo "run: mpirun -np $ranks esper run (report: $report)"
mpirun --oversubscribe -np "$ranks" build/default/runtime/cli/esper run --report "$report" "$@"
