#!/usr/bin/env bash
# Builds the coverage preset, runs its tests and reports line coverage of the wire code
# (runtime/wire). Fails below ESPER_COVERAGE_MIN percent (default 90).
set -euo pipefail
cd "$(dirname "$0")/.."
min=${ESPER_COVERAGE_MIN:-90}

cmake --preset coverage >/dev/null
cmake --build --preset coverage
find build/coverage -name '*.gcda' -delete
ctest --preset coverage >/dev/null
gcovr --root . --object-directory build/coverage --filter 'runtime/wire/' --exclude-unreachable-branches \
  --print-summary --fail-under-line "$min" --txt build/coverage/wire-coverage.txt
cat build/coverage/wire-coverage.txt
