# Helpers shared by slurm-up.sh and slurm-down.sh (sourced, not run).

# pid_of FILE COMM: the pid in FILE when that process runs and is COMM (pids get reused).
pid_of() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(tr -dc 0-9 <"$1")
  [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] || return 1
  echo "$pid"
}
