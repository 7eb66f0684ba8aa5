#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job: 4 MPI ranks training seed
# layers data-parallel on the CPU, rank 0 embedding the broker and the controller (balanced policy) growing
# the seeds through the fabric. Extra arguments go to `esper run` (e.g. --steps 1200 --layers 4).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
# With CUDA (nvcc found) the `cuda` preset: the ranks then train on GPUs when each has one
# (esper run --device auto); otherwise the CPU build.
preset=default
if command -v nvcc > /dev/null || [[ -x /usr/local/cuda/bin/nvcc ]]; then preset=cuda; fi
cmake --preset "$preset"
cmake --build --preset "$preset" --target esper

ranks=${ESPER_RANKS:-4}
report=build/$preset/esper-report.json
if [[ $(id -u) -eq 0 ]]; then
  # Open MPI refuses to run as root unless told twice.
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
echo "run: mpirun -np $ranks esper run (report: $report)"
mpirun --oversubscribe -np "$ranks" "build/$preset/runtime/cli/esper" run --report "$report" "$@"
