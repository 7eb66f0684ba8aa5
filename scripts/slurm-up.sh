#!/usr/bin/env bash
# Brings up a private single-node Slurm cluster for tests and local runs (see slurm/README.md):
#   scripts/slurm-up.sh STATE_DIR [--owner PID]
# Everything lives under STATE_DIR: slurm.conf, munge key and socket, StateSaveLocation,
# SlurmdSpoolDir, pid files and logs. Its own munged (private socket and key) and free high ports
# keep it apart from the system's Slurm and from other private clusters on the same machine.
# Afterwards point every Slurm command at it:  export SLURM_CONF=STATE_DIR/slurm.conf
# (STATE_DIR/env holds that line; `source STATE_DIR/env`). Stop it with scripts/slurm-down.sh STATE_DIR.
#
# --owner PID: also start a watcher that runs slurm-down.sh when PID exits, so that a killed test
#   (a CTest timeout sends SIGKILL) leaves no daemons behind.
# Safe to run twice on the same STATE_DIR: daemons still running are kept, the rest are started.
# Needs root (slurmd starts job steps as the submitting user). Installs slurmctld slurmd
# slurm-client munge when missing. Every wait is bounded; a failure prints the daemon's log tail.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "slurm-up: $*" >&2; exit 1; }

[[ $# -ge 1 ]] || die "usage: $0 STATE_DIR [--owner PID]"
state=$1; shift
owner=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --owner) owner=${2:?--owner needs a pid}; shift 2 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ $(id -u) -eq 0 ]] || die "needs root (slurmd and the munge key); run as root"

mkdir -p "$state"
state=$(cd "$state" && pwd)
chmod 700 "$state"
conf=$state/slurm.conf
export SLURM_CONF=$conf

# --- packages ------------------------------------------------------------------------------------
packages=(slurmctld slurmd slurm-client munge)
missing=()
have_all=1
for cmd in munged slurmctld slurmd scontrol sinfo sbatch srun squeue; do command -v "$cmd" >/dev/null || have_all=0; done
[[ $have_all -eq 1 ]] || for p in "${packages[@]}"; do
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) == installed ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "slurm-up: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  lock_wait=(-o DPkg::Lock::Timeout=600)
  # Like scripts/setup.sh: `apt-get update` takes the lists lock, which DPkg::Lock::Timeout does not cover.
  for attempt in $(seq 1 60); do
    if out=$(apt-get "${lock_wait[@]}" update -qq 2>&1); then break; fi
    if grep -qi lock <<<"$out" && [[ $attempt -lt 60 ]]; then
      echo "slurm-up: apt lists are locked by another process; waiting ($attempt)"; sleep 10; continue
    fi
    echo "$out" >&2; die "apt-get update failed"
  done
  if ! apt-get "${lock_wait[@]}" install -y -q --no-install-recommends "${missing[@]}" >"$state/apt.log" 2>&1; then
    tail -n 30 "$state/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $state/apt.log)"
  fi
fi
for cmd in munged slurmctld slurmd scontrol sinfo sbatch srun squeue; do
  command -v "$cmd" >/dev/null || die "$cmd not found after installing ${packages[*]}"
done

# --- helpers -------------------------------------------------------------------------------------
source "$(dirname "$0")/slurm-lib.sh"
# wait_for SECONDS WHAT COMMAND...: polls COMMAND every 0.1 s.
wait_for() {
  local secs=$1; shift 2  # $2: what is awaited (read by the caller's message)
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [[ $SECONDS -lt $deadline ]] || return 1
    sleep 0.1
  done
}
fail_with_log() {
  echo "slurm-up: $1" >&2
  [[ -f $2 ]] && { echo "--- last lines of $2:" >&2; tail -n 25 "$2" >&2; }
  exit 1
}
port_free() {
  # In use when something accepts on it, or when ss lists a listener.
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
  if command -v ss >/dev/null && [[ -n $(ss -Htln "sport = :$1" 2>/dev/null) ]]; then return 1; fi
  return 0
}

# --- munge: a private munged with its own key and socket -----------------------------------------
key=$state/munge/munge.key
sock=$state/munge/munge.socket
[[ ${#sock} -le 100 ]] || die "state dir path too long for a unix socket ($sock); use a shorter STATE_DIR"
mkdir -p "$state/munge"
chmod 700 "$state/munge"
if [[ ! -s $key ]]; then
  dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
  chmod 400 "$key"
fi
if pid=$(pid_of "$state/munge/munged.pid" munged); then
  echo "slurm-up: munged already running (pid $pid)"
else
  rm -f "$sock" "$sock.lock"
  # --force: the state dir may sit below /tmp, whose permissions munged would otherwise refuse.
  munged --force --key-file="$key" --socket="$sock" --pid-file="$state/munge/munged.pid" \
    --log-file="$state/munge/munged.log" --seed-file="$state/munge/munged.seed" >/dev/null 2>>"$state/munge/munged.log" ||
    fail_with_log "munged failed to start" "$state/munge/munged.log"
  wait_for 10 "munged" pid_of "$state/munge/munged.pid" munged || fail_with_log "munged wrote no pid file in 10 s" "$state/munge/munged.log"
  wait_for 10 "munge socket" test -S "$sock" || fail_with_log "munged made no socket in 10 s" "$state/munge/munged.log"
fi

# --- slurm.conf ----------------------------------------------------------------------------------
node=$(hostname -s)
cpus=$(nproc)
[[ $cpus -ge 4 ]] || cpus=4  # advertised (config_overrides), so that 4 tasks fit on 2 real cores
ctld_pid=""; slurmd_pid=""
pid_of "$state/slurmctld.pid" slurmctld >/dev/null && ctld_pid=$(pid_of "$state/slurmctld.pid" slurmctld)
pid_of "$state/slurmd.pid" slurmd >/dev/null && slurmd_pid=$(pid_of "$state/slurmd.pid" slurmd)
if [[ -z $ctld_pid && -z $slurmd_pid ]]; then
  # Fresh ports each start: a pair of free high ports (the defaults 6817/6818 may be taken).
  ctld_port="" ; slurmd_port=""
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if port_free "$p" && port_free $((p + 1)); then ctld_port=$p; slurmd_port=$((p + 1)); break; fi
  done
  [[ -n $ctld_port ]] || die "found no free pair of ports in 50 tries"
  mkdir -p "$state/ctld" "$state/spool" "$state/log"
  # A distinct first job id per cluster keeps two private clusters on one machine from sharing
  # per-job paths (e.g. PMIx's /tmp/spmix_appdir_<uid>_<jobid>.<step>).
  first_job=$(( (RANDOM * 32768 + RANDOM) % 60000000 + 1000000 ))
  cat >"$conf.tmp" <<EOF
# Private single-node cluster written by scripts/slurm-up.sh; stop it with scripts/slurm-down.sh $state
ClusterName=esper
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
MpiDefault=pmix
EnforcePartLimits=ALL
FirstJobId=$first_job
SchedulerParameters=sched_interval=1
MinJobAge=300
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
elif [[ ! -f $conf ]]; then
  die "daemons run from $state but its slurm.conf is gone; run scripts/slurm-down.sh $state first"
fi
echo "export SLURM_CONF=$conf" >"$state/env"

# --- slurmctld -----------------------------------------------------------------------------------
if [[ -n $ctld_pid ]]; then
  echo "slurm-up: slurmctld already running (pid $ctld_pid)"
else
  slurmctld -i -f "$conf" </dev/null >>"$state/log/slurmctld.out" 2>&1 ||
    fail_with_log "slurmctld failed to start" "$state/log/slurmctld.log"
fi
wait_for 30 "slurmctld" scontrol ping || { scontrol ping >&2 || true; fail_with_log "slurmctld did not answer scontrol ping in 30 s" "$state/log/slurmctld.log"; }
wait_for 10 "slurmctld pid" pid_of "$state/slurmctld.pid" slurmctld || fail_with_log "slurmctld wrote no pid file" "$state/log/slurmctld.log"

# --- slurmd --------------------------------------------------------------------------------------
if [[ -n $slurmd_pid ]]; then
  echo "slurm-up: slurmd already running (pid $slurmd_pid)"
else
  slurmd -N "$node" -f "$conf" </dev/null >>"$state/log/slurmd.out" 2>&1 ||
    fail_with_log "slurmd failed to start" "$state/log/slurmd.log"
fi
wait_for 10 "slurmd pid" pid_of "$state/slurmd.pid" slurmd || fail_with_log "slurmd wrote no pid file in 10 s" "$state/log/slurmd.log"
node_idle() { [[ $(sinfo -h -n "$node" -o %T 2>/dev/null) == idle ]]; }
wait_for 30 "node idle" node_idle ||
  fail_with_log "node $node is not idle after 30 s: '$(sinfo -h -n "$node" -o %T 2>&1)'" "$state/log/slurmd.log"

# --- watcher: tears the cluster down when the owner exits ----------------------------------------
if [[ -n $owner ]]; then
  if pid=$(pid_of "$state/watcher.pid" bash); then
    echo "slurm-up: watcher already running (pid $pid)"
  else
    # Its own session, so that the owner's process group going away does not take it along.
    # shellcheck disable=SC2016  # $1..$4 expand in the watcher, not here
    setsid bash -c 'echo $$ >"$4.tmp" && mv "$4.tmp" "$4"; while kill -0 "$1" 2>/dev/null; do sleep 1; done
                    exec bash "$2" "$3"' esper-slurm-watch "$owner" "$here/slurm-down.sh" "$state" "$state/watcher.pid" \
      </dev/null >>"$state/log/watcher.log" 2>&1 &
    wait_for 5 "watcher" pid_of "$state/watcher.pid" bash || die "the watcher did not start"
  fi
fi

echo "slurm-up: node $node idle; SLURM_CONF=$conf (slurmctld port $(sed -n 's/^SlurmctldPort=//p' "$conf"))"
