#!/usr/bin/env bash
# Stops the private Slurm cluster that scripts/slurm-up.sh started in STATE_DIR:
#   scripts/slurm-down.sh STATE_DIR [--remove]
# Cancels its jobs, then stops slurmd, slurmctld, munged and the owner watcher by the pids in
# STATE_DIR's pid files, each only after /proc/PID/comm confirms it is that program (never by name):
# SIGTERM, up to 10 s, then SIGKILL. Safe to run twice and on a half-started cluster.
# --remove: delete STATE_DIR afterwards (only when it holds a slurm.conf written by slurm-up.sh).
set -uo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 STATE_DIR [--remove]" >&2; exit 2; }
state=$1
remove=0
[[ ${2:-} == --remove ]] && remove=1
[[ -d $state ]] || { echo "slurm-down: $state does not exist; nothing to stop"; exit 0; }
state=$(cd "$state" && pwd)
conf=$state/slurm.conf
export SLURM_CONF=$conf

source "$(dirname "$0")/slurm-lib.sh"

# stop PIDFILE:COMM...: SIGTERM to each (all at once: each daemon takes 1-2 s to exit), up to 10 s
# for all of them, then SIGKILL to what is left.
failed=0
stop() {
  local entry file comm pid
  local -A pids=()
  for entry in "$@"; do
    file=${entry%:*}; comm=${entry##*:}
    if ! pid=$(pid_of "$file" "$comm"); then rm -f "$file"; continue; fi
    if [[ $pid -eq $$ ]]; then rm -f "$file"; continue; fi  # the watcher runs this script in its own process
    kill -TERM "$pid" 2>/dev/null
    pids[$entry]=$pid
  done
  alive() { [[ $(cat "/proc/$2/comm" 2>/dev/null) == "$1" ]]; }
  for round in $(seq 1 150); do
    for entry in "${!pids[@]}"; do
      file=${entry%:*}; comm=${entry##*:}; pid=${pids[$entry]}
      if ! alive "$comm" "$pid"; then
        echo "slurm-down: stopped $comm (pid $pid)"; rm -f "$file"; unset "pids[$entry]"
      elif [[ $round -eq 100 ]]; then
        echo "slurm-down: $comm (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null
      fi
    done
    [[ ${#pids[@]} -eq 0 ]] && return 0
    sleep 0.1
  done
  for entry in "${!pids[@]}"; do echo "slurm-down: could not stop ${entry##*:} (pid ${pids[$entry]})" >&2; done
  failed=1
}

# Jobs first, so that no slurmstepd outlives slurmd (bounded: at most 10 s).
if [[ -f $conf ]] && pid_of "$state/slurmctld.pid" slurmctld >/dev/null; then
  timeout 5 scancel --user="$(id -un)" >/dev/null 2>&1
  for _ in $(seq 1 100); do
    [[ -z $(timeout 5 squeue -h -t pending,running,completing,configuring,suspended 2>/dev/null) ]] && break
    sleep 0.1
  done
fi

stop "$state/watcher.pid:bash" "$state/slurmd.pid:slurmd" "$state/slurmctld.pid:slurmctld" "$state/munge/munged.pid:munged"

if [[ $failed -ne 0 ]]; then exit 1; fi
if [[ $remove -eq 1 ]]; then
  if grep -q 'written by scripts/slurm-up.sh' "$conf" 2>/dev/null; then
    rm -rf "$state"
  else
    echo "slurm-down: not removing $state (no slurm.conf from slurm-up.sh in it)" >&2
  fi
fi
exit 0
