#!/usr/bin/env bash
# README command 2: install what is missing, build, and run every test — the CI build (warnings
# are errors, CUDA compiled when nvcc is found), the sanitizer builds (ASan + UBSan: the unit tests
# and the fabric's; TSan: the threaded suites), a bounded run of every fuzz target, and the wire
# coverage gate. .ci/run calls this and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "ci build: configure, build, test"
cmake --preset ci
cmake --build --preset ci
ctest --preset ci

step "asan build (AddressSanitizer + UBSan): unit tests and the fabric's tests"
cmake --preset asan
cmake --build --preset asan
ctest --preset asan

# The suites that run threads in one process (label `threads`): worker, fabric, controller, the
# rank's in-process tests; libzmq's internals suppressed (tests/tsan.supp, docs/threads.md).
step "tsan build (ThreadSanitizer): the threaded suites"
cmake --preset tsan
cmake --build --preset tsan
ctest --preset tsan

# clang-16 comes from setup.sh; about 2 min of build and 5 targets x 12 s on 2 cores.
step "fuzz (libFuzzer + ASan + UBSan): every target ${ESPER_FUZZ_SECONDS:-12} s on a copy of its corpus"
ESPER_FUZZ_SECONDS=${ESPER_FUZZ_SECONDS:-12} bash scripts/fuzz.sh

step "coverage of the wire code (gate: 90% of lines)"
bash scripts/coverage.sh

step "all tests passed"
