#!/usr/bin/env bash
# Installs the Debian packages esper needs that are missing. Idempotent: prints one line and
# changes nothing when every package is present. Waits for the apt/dpkg lock instead of failing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libzmq3-dev cppzmq-dev
  libflatbuffers-dev flatbuffers-compiler
  libopenmpi-dev openmpi-bin
  slurmctld slurmd slurm-client munge
  libzstd-dev
  zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libhiredis-dev redis-server
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  gcovr
  clang-16 libclang-rt-16-dev  # libFuzzer for scripts/fuzz.sh (clang 14 lacks std::source_location)
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo; install as root: apt-get install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
lock_wait=(-o DPkg::Lock::Timeout=900)

# `apt-get update` takes the lists lock, which DPkg::Lock::Timeout does not cover: retry while it is held.
for attempt in $(seq 1 90); do
  if out=$("${sudo[@]}" apt-get "${lock_wait[@]}" update -qq 2>&1); then break; fi
  if grep -qi 'lock' <<<"$out" && [[ $attempt -lt 90 ]]; then
    echo "setup: apt lists are locked by another process; waiting ($attempt)"; sleep 10; continue
  fi
  echo "$out" >&2; echo "setup: apt-get update failed" >&2; exit 1
done

log=$(mktemp -t esper-setup.XXXXXX.log)
if ! "${sudo[@]}" apt-get "${lock_wait[@]}" install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "setup: apt-get install failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
echo "setup: installed ${missing[*]}"
