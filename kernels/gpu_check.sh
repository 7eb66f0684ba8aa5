#!/usr/bin/env bash
# GPU check of the seed-layer kernels: builds kernels/ on its own (CUDA + GoogleTest + Google
# Benchmark; no FlatBuffers, ZeroMQ or MPI needed), runs the CUDA-vs-CPU tests (device spans and
# host-staged) and the kernel benchmark, then the morphogenesis driver on CUDA if it was packed,
# and writes everything under $OUT.
#   kernels/gpu_check.sh        on the GPU machine, from the repository root
#   kernels/gpu_check.sh pack   on a build machine first: bundles build/kernels's binaries (if the GPU
#                               machine may lack GoogleTest or Google Benchmark) and the full build's
#                               morphogenesis_cuda_test ($FULL_BUILD, default build/ci: it needs the
#                               project's libraries, so the GPU machine cannot build it), with their
#                               non-system, non-CUDA shared libraries, into build/kernels-gpu-pack
#                               (carry that path); the check falls back to them.
set -u
cd "$(dirname "$0")/.."
PACK=build/kernels-gpu-pack
if [ "${1:-}" = pack ]; then
  mkdir -p "$PACK/lib"
  for exe in build/kernels/tests/kernels/kernels_test build/kernels/tests/kernels/kernels_cuda_test \
             build/kernels/bench/kernels/kernel_bench "${FULL_BUILD:-build/ci}/tests/morphogenesis/morphogenesis_cuda_test" \
             "${FULL_BUILD:-build/ci}/tests/mpi/collectives_test"; do
    if [ -x "$exe" ]; then cp "$exe" "$PACK/"; else echo "pack: $exe not built, left out"; fi
  done
  strip --strip-debug "$PACK"/*_test "$PACK"/kernel_bench 2> /dev/null
  for exe in "$PACK"/kernel* "$PACK"/morphogenesis* "$PACK"/collectives*; do
    [ -x "$exe" ] || continue
    ldd "$exe" | awk '/=> \//{print $3}' | grep -Ev '/(libc|libm|libgcc_s|ld-linux[^/]*|libpthread|libdl|librt|libcu[^/]*)\.so' \
      | xargs -r cp -L -t "$PACK/lib"
  done
  du -sh "$PACK"; exit 0
fi

OUT=${OUT:-$PWD/build/gpu-check-out}
mkdir -p "$OUT"
{ ldd --version | head -1; nvidia-smi; nvcc --version | tail -2; cmake --version | head -1; } > "$OUT/machine.txt" 2>&1
export PATH="$PATH:/usr/local/cuda/bin"
BUILD=build/kernels-gpu
GEN=$(command -v ninja > /dev/null && echo "-G Ninja")
cmake -S kernels -B "$BUILD" $GEN -DCMAKE_BUILD_TYPE=Release > "$OUT/configure.log" 2>&1
cmake --build "$BUILD" -j"$(nproc)" > "$OUT/build.log" 2>&1 || echo "standalone build failed: see build.log" | tee -a "$OUT/summary.txt"
grep -m1 "esper kernels standalone" "$OUT/configure.log" | tee -a "$OUT/summary.txt"

pick() {  # the freshly built binary, else the packed one
  if [ -x "$BUILD/$1" ]; then echo "$BUILD/$1"; elif [ -x "$PACK/$(basename "$1")" ]; then echo "$PACK/$(basename "$1")"; fi
}
[ -d "$PACK/lib" ] && export LD_LIBRARY_PATH="$PWD/$PACK/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
run_test() {  # run_test PATH-IN-BUILD [optional]: a missing optional test is reported, not a failure
  local name exe rc
  name=$(basename "$1"); exe=$(pick "$1")
  if [ -z "$exe" ]; then
    if [ "${2:-}" = optional ]; then
      echo "$name: not packed (build it with the ci or cuda preset, then run pack), not run" | tee -a "$OUT/summary.txt"
      return 0
    fi
    echo "$name: not built and not packed" | tee -a "$OUT/summary.txt"; return 1
  fi
  "$exe" --gtest_output="json:$OUT/$name.json" > "$OUT/$name.txt" 2>&1
  rc=$?
  echo "$name ($exe): rc=$rc, $(grep -cE '^\[  SKIPPED \] .*\([0-9]+ ms\)' "$OUT/$name.txt") skipped" | tee -a "$OUT/summary.txt"
  return $rc
}
status=0
run_test tests/kernels/kernels_cuda_test || status=1
run_test tests/kernels/kernels_test || status=1
# The driver on host-staged CUDA layers is not part of the standalone build: only run when packed.
run_test tests/morphogenesis/morphogenesis_cuda_test optional || status=1
# The NCCL collectives (one rank, one device; mpirun -np N with N devices checks the all-gather
# across ranks): also from the full build, packed.
run_test tests/mpi/collectives_test optional || status=1
exe=$(pick bench/kernels/kernel_bench)
if [ -n "$exe" ]; then
  "$exe" --benchmark_filter="${BENCH_FILTER:-BM_Cuda}" --benchmark_min_time=0.2 \
    --benchmark_out="$OUT/kernel_bench.json" --benchmark_out_format=json > "$OUT/kernel_bench.txt" 2>&1
  echo "kernel_bench ($exe): rc=$?" | tee -a "$OUT/summary.txt"
else
  echo "kernel_bench: not built and not packed" | tee -a "$OUT/summary.txt"; status=1
fi
exit $status
