#!/usr/bin/env bash
# GPU check of the seed-layer kernels: builds kernels/ on its own (CUDA + GoogleTest + Google
# Benchmark; no FlatBuffers, ZeroMQ or MPI needed), runs the CUDA-vs-CPU tests and the kernel
# benchmark, and writes everything under $OUT.
#   kernels/gpu_check.sh        on the GPU machine, from the repository root
#   kernels/gpu_check.sh pack   on a build machine first, if the GPU machine may lack GoogleTest or
#                               Google Benchmark: bundles build/kernels's binaries and their non-system,
#                               non-CUDA shared libraries into build/kernels-gpu-pack (carry that path);
#                               the check then falls back to them.
set -u
cd "$(dirname "$0")/.."
PACK=build/kernels-gpu-pack
if [ "${1:-}" = pack ]; then
  mkdir -p "$PACK/lib"
  cp build/kernels/tests/kernels/kernels_test build/kernels/tests/kernels/kernels_cuda_test \
     build/kernels/bench/kernels/kernel_bench "$PACK/"
  for exe in "$PACK"/kernel*; do
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
status=0
for t in tests/kernels/kernels_cuda_test tests/kernels/kernels_test; do
  exe=$(pick "$t")
  if [ -z "$exe" ]; then echo "$(basename "$t"): not built and not packed" | tee -a "$OUT/summary.txt"; status=1; continue; fi
  "$exe" --gtest_output="json:$OUT/$(basename "$t").json" > "$OUT/$(basename "$t").txt" 2>&1
  rc=$?; [ $rc -ne 0 ] && status=1
  echo "$(basename "$t") ($exe): rc=$rc, $(grep -cE '^\[  SKIPPED \] .*\([0-9]+ ms\)' "$OUT/$(basename "$t").txt") skipped" | tee -a "$OUT/summary.txt"
done
exe=$(pick bench/kernels/kernel_bench)
if [ -n "$exe" ]; then
  "$exe" --benchmark_filter="${BENCH_FILTER:-BM_Cuda}" --benchmark_min_time=0.2 \
    --benchmark_out="$OUT/kernel_bench.json" --benchmark_out_format=json > "$OUT/kernel_bench.txt" 2>&1
  echo "kernel_bench ($exe): rc=$?" | tee -a "$OUT/summary.txt"
else
  echo "kernel_bench: not built and not packed" | tee -a "$OUT/summary.txt"; status=1
fi
exit $status
