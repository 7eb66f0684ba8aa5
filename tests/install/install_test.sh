#!/usr/bin/env bash
# Installs the build tree into a private prefix, then builds an application against it as a user
# would, out of tree: with find_package(esper) (CMake) and with pkg-config, and runs both; also
# checks that a component the installation lacks is refused by name, and that the installed tools run.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1
src=$2
work=$(mktemp -d /tmp/esper-install.XXXXXX)
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in include/esper/fabric/node.hpp include/esper/fbs/envelope_generated.h lib/cmake/esper/esperConfig.cmake \
         lib/pkgconfig/esper.pc share/esper/fbs/envelope.fbs bin/esper; do
  [[ -e $prefix/$f ]] || { echo "install_test: $f was not installed" >&2; exit 1; }
done
"$prefix/bin/esper" --help >/dev/null

cmake -S "$src/tests/install/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >"$work/configure.log" \
  || { cat "$work/configure.log" >&2; exit 1; }
cmake --build "$work/consumer" >"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
"$work/consumer/consumer"

# pkg-config: the fabric alone, from the .pc file.
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
c++ -std=c++20 -DESPER_CONSUMER_VIA='"pkg-config"' "$src/tests/install/consumer/main.cpp" -o "$work/consumer-pc" \
  $(pkg-config --cflags --libs esper)
"$work/consumer-pc"

# A component this installation does not have is named in the error.
mkdir -p "$work/missing"
cat >"$work/missing/CMakeLists.txt" <<'CML'
cmake_minimum_required(VERSION 3.25)
project(missing LANGUAGES CXX)
find_package(esper REQUIRED COMPONENTS fabric no_such_part)
CML
if cmake -S "$work/missing" -B "$work/missing/build" -DCMAKE_PREFIX_PATH="$prefix" >"$work/missing.log" 2>&1; then
  echo "install_test: a missing component was accepted" >&2
  exit 1
fi
grep -q "no_such_part" "$work/missing.log" || { cat "$work/missing.log" >&2; exit 1; }
echo "install_test: passed"
