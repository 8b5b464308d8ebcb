#!/bin/bash
# A private SLURM cluster (munge + slurmctld + slurmd) living entirely in one folder, for the
# `slurm` tests and for users who want to try a sweep before a real cluster.
# Facts behind every setting: shared/docs/SLURM_LOCAL.md.
#
#   slurm/local-cluster.sh start DIR [--nodes N] [--extra 'Key=Value']...   prints: export SLURM_CONF=...
#   slurm/local-cluster.sh status DIR
#   slurm/local-cluster.sh stop DIR
#
# Extra slurm.conf lines (e.g. MaxArraySize=4) come from --extra (repeatable) and/or the
# environment variable CRACKSEG_SLURM_EXTRA_CONF (one line per line). Ports are picked free
# at start so several private clusters (parallel tests, other users) can share a host.
# --nodes N (default 1) starts N compute nodes node1..nodeN on this one host: N slurmd, each
# with its own port, spool, log and pid file (Debian's slurm is built with MULTIPLE_SLURMD,
# `scontrol show config` says so). Every node declares the whole machine's CPUs and memory,
# so N nodes oversubscribe it N times: for multi-node tests of launch, staging and requeue,
# not for timing. With one node it is called localhost, as before.
# Only the export line goes to stdout, so `eval "$(local-cluster.sh start DIR)"` works.
# Daemons are stopped by the pids in DIR/run/*.pid only; nothing is ever killed by name.
set -euo pipefail

die() { echo "local-cluster: $*" >&2; exit 1; }
log() { echo "local-cluster: $*" >&2; }

[ $# -ge 2 ] || die "usage: $0 start|stop|status DIR [--extra 'Key=Value']..."
action=$1
mkdir -p "$2"
B=$(realpath "$2")
shift 2
extra_lines=()
nodes=1
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) [ $# -ge 2 ] || die "--nodes needs a value"; nodes=$2; shift 2 ;;
    --extra) [ $# -ge 2 ] || die "--extra needs a value"; extra_lines+=("$2"); shift 2 ;;
    *) die "unknown option '$1'" ;;
  esac
done
if [ -n "${CRACKSEG_SLURM_EXTRA_CONF:-}" ]; then
  while IFS= read -r l; do [ -n "$l" ] && extra_lines+=("$l"); done <<<"$CRACKSEG_SLURM_EXTRA_CONF"
fi

CONF=$B/etc/slurm.conf
export SLURM_CONF=$CONF
SOCK=$B/munge/munge.sock

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Sends TERM, waits up to $2 seconds, then KILL; by pid file only.
stop_pidfile() {
  local f=$1 wait_s=$2 pid
  # The file can vanish between the glob that named it and this read: slurmd removes its own
  # pid file as it exits after `scontrol shutdown`. Gone means stopped; under `set -e` a failed
  # cat here used to end the script before munged was stopped (munged then leaked).
  pid=$(cat "$f" 2>/dev/null) || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((wait_s * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "pid $pid ($f) ignored TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  fi
  rm -f "$f"
}

free_port() {  # a TCP port nobody listens on, from a range away from the usual services
  local p used
  used=$(ss -Htan 2>/dev/null | awk '{print $4}' | sed 's/.*://' | sort -u)
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    grep -qx "$p" <<<"$used" || { echo "$p"; return; }
  done
  die "no free TCP port found"
}

start() {
  for f in "$B/run/slurmctld.pid" "$B"/run/slurmd*.pid; do
    pid_alive "$f" && die "$(basename "$f" .pid) already running for $B (pid $(cat "$f")); stop it first"
  done
  for t in munged mungekey slurmctld slurmd sinfo; do
    command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] ||
      die "'$t' not found: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
  done
  export PATH=$PATH:/usr/sbin
  # Daemons keep every descriptor they inherit. Close all but stdin/stdout/stderr (and bash's
  # own script descriptor 255) so that no daemon holds the caller's pipes: a test process that
  # is an MPI singleton has a pipe to its orted, and a daemon keeping it open kept orted, and
  # with it ctest's output pipe, alive after the test ended.
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    case $fd in 0 | 1 | 2 | 255) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
  done
  mkdir -p "$B"/{etc,munge,run,log,state,spool}
  # munged insists that the socket folder and every parent are o+x.
  chmod 0711 "$B" "$B/munge"
  local d=$B
  while [ "$d" != / ]; do
    d=$(dirname "$d")
    local perm
    perm=$(stat -c %A "$d")
    case ${perm:9:1} in x | t) ;; *) die "$d lacks o+x, munged would refuse its socket under $B" ;; esac
  done

  [ -f "$B/munge/munge.key" ] || mungekey --create --keyfile="$B/munge/munge.key" >/dev/null
  chmod 0600 "$B/munge/munge.key"
  if ! pid_alive "$B/run/munged.pid"; then
    rm -f "$SOCK" "$SOCK.lock"
    munged --socket="$SOCK" --key-file="$B/munge/munge.key" --pid-file="$B/run/munged.pid" \
      --log-file="$B/log/munged.log" --seed-file="$B/munge/munged.seed" ||
      die "munged failed to start; see $B/log/munged.log"
  fi
  munge -S "$SOCK" -n | unmunge -S "$SOCK" >/dev/null || die "munge round trip failed on $SOCK"

  # Node line from the hardware as slurmd sees it; RealMemory at 95% leaves room for the OS.
  local hw cpus boards sockets cores threads mem
  hw=$(slurmd -C | head -1)
  field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
  cpus=$(field CPUs); boards=$(field Boards); sockets=$(field SocketsPerBoard)
  cores=$(field CoresPerSocket); threads=$(field ThreadsPerCore); mem=$(field RealMemory)
  [ -n "$cpus" ] && [ -n "$mem" ] || die "could not parse 'slurmd -C': $hw"
  mem=$((mem * 95 / 100))
  case $nodes in '' | *[!0-9]* | 0) die "--nodes must be a positive integer, got '$nodes'" ;; esac
  local ctld_port slurmd_port names=() ports=() i p
  ctld_port=$(free_port)
  if [ "$nodes" = 1 ]; then
    names=(localhost)
  else
    for i in $(seq "$nodes"); do names+=("node$i"); done
  fi
  for i in "${!names[@]}"; do
    p=$(free_port)
    while [ "$p" = "$ctld_port" ] || [[ " ${ports[*]-} " == *" $p "* ]]; do p=$((p + 1)); done
    ports+=("$p")
  done
  slurmd_port=${ports[0]}
  # One node keeps the one-node file names (run/slurmd.pid, log/slurmd.log, spool/, tmp/);
  # several get one of each per node via slurm.conf's %n.
  local spool_dir=$B/spool slurmd_pid=$B/run/slurmd.pid slurmd_log=$B/log/slurmd.log tmpfs_line="TmpFS=$B/tmp"
  mkdir -p "$B/tmp"
  if [ "$nodes" != 1 ]; then
    spool_dir=$B/spool/%n slurmd_pid=$B/run/slurmd-%n.pid slurmd_log=$B/log/slurmd-%n.log tmpfs_line="TmpFS=$B/tmp/%n"
  fi
  # TmpFS per cluster and per node: slurm's PMIx plugin puts each step's client folder
  # (spmix_appdir_UID_JOB.STEP) under it. Two slurmd on one host would otherwise both claim
  # /tmp/spmix_appdir_...; so would two private clusters running at once (tests in parallel:
  # each cluster numbers its jobs from 1), and the second step launch then fails with
  # "srun: error: task 0 launch failed: Unspecified error".
  if [ "$nodes" != 1 ]; then
    for i in "${!names[@]}"; do mkdir -p "$B/spool/${names[$i]}" "$B/tmp/${names[$i]}"; done
  fi

  cat >"$CONF" <<EOF
# generated by slurm/local-cluster.sh; everything lives under $B
ClusterName=local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK,cred_expire=10
StateSaveLocation=$B/state
SlurmdSpoolDir=$spool_dir
$tmpfs_line
SlurmctldPidFile=$B/run/slurmctld.pid
SlurmdPidFile=$slurmd_pid
SlurmctldLogFile=$B/log/slurmctld.log
SlurmdLogFile=$slurmd_log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=pmix
SwitchType=switch/none
ReturnToService=2
MinJobAge=300
KillWait=5
EOF
  for l in "${extra_lines[@]+"${extra_lines[@]}"}"; do printf '%s\n' "$l" >>"$CONF"; done
  for i in "${!names[@]}"; do
    echo "NodeName=${names[$i]} NodeHostname=localhost NodeAddr=127.0.0.1 Port=${ports[$i]} CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem State=UNKNOWN" >>"$CONF"
  done
  echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$CONF"

  slurmctld || die "slurmctld failed; see $B/log/slurmctld.log"
  for n in "${names[@]}"; do
    slurmd -N "$n" || die "slurmd -N $n failed; see ${slurmd_log/\%n/$n}"
  done
  local idle=0
  for _ in $(seq 300); do
    idle=$(sinfo -h -N -o %t 2>/dev/null | grep -cx idle || true)
    [ "$idle" = "${#names[@]}" ] && break
    sleep 0.1
  done
  [ "$idle" = "${#names[@]}" ] || die "$idle of ${#names[@]} node(s) idle after 30 s: $(sinfo -h -N -o '%N %t' | tr '\n' ' '); see $B/log/"
  log "cluster up in $B (${#names[@]} node(s) ${names[*]}; slurmctld port $ctld_port, slurmd port(s) ${ports[*]})"
  echo "export SLURM_CONF=$CONF"
}

stop() {
  export PATH=$PATH:/usr/sbin
  if pid_alive "$B/run/slurmctld.pid"; then
    scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 150); do
      [ -z "$(squeue -h -t R,CG 2>/dev/null)" ] && break
      sleep 0.1
    done
    timeout 10 scontrol shutdown 2>/dev/null || true
  fi
  local f
  for f in "$B"/run/slurmd*.pid; do stop_pidfile "$f" 10; done
  stop_pidfile "$B/run/slurmctld.pid" 10
  stop_pidfile "$B/run/munged.pid" 10
  log "cluster in $B stopped"
}

status() {
  local rc=0
  local f name
  for f in "$B/run/munged.pid" "$B/run/slurmctld.pid" "$B"/run/slurmd*.pid; do
    name=$(basename "$f" .pid)
    [ "$name" = 'slurmd*' ] && name=slurmd
    if pid_alive "$f"; then
      echo "$name: running (pid $(cat "$f"))"
    else
      echo "$name: stopped"; rc=3
    fi
  done
  if [ $rc = 0 ]; then
    echo "export SLURM_CONF=$CONF"
    sinfo 2>&1 || rc=3
  fi
  return $rc
}

case $action in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "unknown action '$action' (start|stop|status)" ;;
esac
