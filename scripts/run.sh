#!/usr/bin/env bash
# README command 1: install what is missing, build, and run the main job.
# The multi-rank main job (ranks training seed layers under mpirun, the fabric carrying commands
# and telemetry) lands with the MPI issue; until then this runs the nearest thing that does real
# work: the wire codec benchmark, which encodes, compresses and verifies realistic telemetry.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cmake --preset default
cmake --build --preset default --target codec_bench
out=build/default/codec_bench.json
./build/default/bench/codec_bench --benchmark_min_time=0.2 --benchmark_out="$out" --benchmark_out_format=json "$@"
echo
echo "run: results as JSON in $out (the 'wrong' counter must be 0 everywhere)"
