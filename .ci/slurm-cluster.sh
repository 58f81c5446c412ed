#!/usr/bin/env bash
# A one-node, CPU-only Slurm cluster on this machine, for tests of deploy/slurm-array.sbatch.
#
#     .ci/slurm-cluster.sh up      # start it (or find it up); prints SLURM_CONF=...
#     .ci/slurm-cluster.sh down    # cancel its jobs, stop its daemons, drop its database,
#                                  # remove its folder
#     .ci/slurm-cluster.sh env     # prints SLURM_CONF=... when it is up, else exit 1
#
# Needs root, Debian's packages (munge, slurmctld, slurmd, slurm-client, slurmdbd,
# mariadb-client) and a MariaDB server on 127.0.0.1:3306 (user root, no password;
# HPSEARCH_SLURM_DB_HOST, _PORT, _USER, _PASS to change). What it makes lives in one folder,
# $HPSEARCH_SLURM_DIR (default /run/hpsearch-slurm): slurm.conf, slurmdbd.conf, state,
# spool, logs, and a munge key of its own; plus one database, named after the folder
# (hpsearch_slurm_<hash>). Nothing under /etc is touched, and its ports (16817-16819) are
# not Slurm's defaults. Slurm's commands find this cluster through SLURM_CONF. munged
# listens on its usual socket (/run/munge): one already running there is used and left so.
# `up` and `down` are idempotent. When the cluster cannot start, `up` prints one line on
# stderr, "slurm-cluster: cannot start: <why>", stops what it had started, and exits 1
# (its folder stays, with the daemons' logs, until `down`).
#
# Choices:
# - proctrack/linuxproc (a job's processes are its slurmstepd's descendants) and
#   task/none: no cgroup, which a container may not give.
# - Accounting through slurmdbd and MariaDB. The lighter jobcomp/filetxt (a text file,
#   read by `sacct --completion`) does not do for array jobs in 22.05: that sacct rejects
#   the ArrayJobId/ArrayTaskId fields (tasks show as bare job ids, `-j ARRAY` finds none),
#   writes a requeued run as PENDING, and has no job steps. slurmdbd gives plain `sacct`:
#   JOB_TASK ids, REQUEUED runs (`--duplicates`), the batch step's exit code or signal.
# - cred_expire=10: a requeued job waits this long before it may start again (Slurm's
#   default, 120 s, would make a requeue test wait two minutes for nothing).
# - sched_interval=5, bf_interval=5: pending tasks are looked at every 5 s (Slurm's
#   defaults, 60 s and 30 s, leave a requeued task waiting for nothing too).
# - KillWait=30 (Slurm's default): the seconds between a stop's SIGTERM and its SIGKILL.
set -euo pipefail

DIR="${HPSEARCH_SLURM_DIR:-/run/hpsearch-slurm}"
CONF="$DIR/slurm.conf"
WAIT_S="${HPSEARCH_SLURM_WAIT_S:-60}"
CLUSTER=hpsearch-ci
# The accounting database is this folder's own: `down` drops it, and only it.
DB_NAME="hpsearch_slurm_$(printf %s "$DIR" | md5sum | cut -c 1-8)"
DB_HOST="${HPSEARCH_SLURM_DB_HOST:-127.0.0.1}"
DB_PORT="${HPSEARCH_SLURM_DB_PORT:-3306}"
DB_USER="${HPSEARCH_SLURM_DB_USER:-root}"
DB_PASS="${HPSEARCH_SLURM_DB_PASS:-}"
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
CRED_EXPIRE_S=10
MUNGE_RUN=/run/munge

say() { echo "slurm-cluster: $*" >&2; }

fail() {
  say "cannot start: $*"
  stop_all >/dev/null 2>&1 || true
  exit 1
}

running() {  # running PID: alive and not a zombie (a container's init may not reap them)
  [[ -r "/proc/$1/stat" ]] && [[ "$(cut -d ')' -f 2 "/proc/$1/stat" | cut -d ' ' -f 2)" != Z ]]
}

pid_alive() { [[ -s "$1" ]] && running "$(cat "$1")"; }

reason_in() {  # the last fatal or error line of a daemon's log, without routine noise
  [[ -f "$1" ]] || return 0
  grep -E "fatal|error" "$1" | grep -vE "pmix|PMIx|MPI:|state file|Trying backup|MailProg" \
    | tail -n 1 | sed -E 's/^\[[^]]*\] //; s/^[0-9-]+ [0-9:]+ [+0-9]+ //' || true
}

wait_until() {  # wait_until SECONDS COMMAND...: true once COMMAND succeeds
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

mysql_do() {
  MYSQL_PWD="$DB_PASS" mysql --protocol=TCP -h "$DB_HOST" -P "$DB_PORT" -u "$DB_USER" \
    --connect-timeout=5 -e "$1"
}

node_ready() { SLURM_CONF="$CONF" sinfo -h -o %T | grep -Eq '^(idle|mixed|allocated)$'; }

is_up() {
  [[ -f "$CONF" ]] && munge_works && pid_alive "$DIR/slurmdbd.pid" \
    && pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && node_ready
}

write_conf() {
  local host line cpus sockets cores threads memory
  host="$(hostname -s)"
  line="$(slurmd -C 2>/dev/null | head -n 1)" || true
  field() { sed -nE "s/.*\\b$1=([0-9]+).*/\\1/p" <<<"$line"; }
  cpus="$(field CPUs)" sockets="$(field SocketsPerBoard)" cores="$(field CoresPerSocket)"
  threads="$(field ThreadsPerCore)" memory="$(field RealMemory)"
  [[ -n "$cpus" && -n "$memory" ]] || fail "slurmd -C did not describe this machine: $line"
  cat >"$CONF" <<EOF
# Written by .ci/slurm-cluster.sh: one node ($host), CPU only, no cgroups.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=$CRED_EXPIRE_S
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
MpiDefault=none
ReturnToService=2
KillWait=30
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  # slurmdbd reads slurmdbd.conf beside SLURM_CONF; it must be private to SlurmUser.
  (
    umask 077
    cat >"$DIR/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=$DB_HOST
StoragePort=$DB_PORT
StorageUser=$DB_USER
StorageLoc=$DB_NAME
EOF
    [[ -z "$DB_PASS" ]] || echo "StoragePass=$DB_PASS" >>"$DIR/slurmdbd.conf"
  )
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  # Slurm's connections to slurmdbd use munged's default socket whatever AuthInfo says
  # (22.05), so this cluster's munged listens there: a munged that already answers on it
  # is used as it is (every daemon here is on this one machine), else one is started with
  # a key of this cluster's own and stopped by `down`.
  munge_works && return 0
  if [[ ! -d "$MUNGE_RUN" ]]; then
    mkdir -p "$MUNGE_RUN"
    touch "$DIR/made-munge-run"
  fi
  chmod 755 "$MUNGE_RUN"
  mkdir -p "$DIR/munge"
  chmod 700 "$DIR/munge"
  if [[ ! -s "$DIR/munge/munge.key" ]]; then
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  fi
  munged --force --socket="$MUNGE_RUN/munge.socket.2" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" >>"$DIR/log/munged.log" 2>&1 \
    || fail "munged did not start: $(reason_in "$DIR/log/munged.log")"
  wait_until 10 munge_works || fail "munged does not answer: $(reason_in "$DIR/log/munged.log")"
}

start_accounting() {
  local out
  # A fresh database for fresh state: job ids start again at 1.
  out="$(mysql_do "DROP DATABASE IF EXISTS $DB_NAME; CREATE DATABASE $DB_NAME" 2>&1)" \
    || fail "accounting needs MariaDB/MySQL at $DB_HOST:$DB_PORT (user $DB_USER): ${out//$'\n'/ }"
  slurmdbd >>"$DIR/log/slurmdbd.log" 2>&1 \
    || fail "slurmdbd did not start: $(reason_in "$DIR/log/slurmdbd.log")"
  # slurmdbd creates its tables before it answers; sacctmgr then registers the cluster
  # (with the root account and user, so root's jobs have an association).
  wait_until "$WAIT_S" sacctmgr -n list cluster \
    || fail "slurmdbd did not answer in $WAIT_S s: $(reason_in "$DIR/log/slurmdbd.log")"
  if [[ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster 2>/dev/null)" ]]; then
    out="$(sacctmgr -i add cluster "$CLUSTER" 2>&1)" \
      || fail "sacctmgr could not add cluster $CLUSTER: ${out//$'\n'/ }"
  fi
}

up() {
  [[ $EUID -eq 0 ]] || fail "needs root (it starts munged, slurmdbd, slurmctld and slurmd)"
  local tool
  for tool in munged munge unmunge slurmdbd slurmctld slurmd sbatch scontrol sacct sacctmgr mysql
  do
    command -v "$tool" >/dev/null || fail "$tool is not installed (apt-get install munge" \
      "slurmctld slurmd slurm-client slurmdbd mariadb-client)"
  done
  if is_up; then
    echo "SLURM_CONF=$CONF"
    return 0
  fi
  stop_all >/dev/null 2>&1 || true
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  export SLURM_CONF="$CONF"
  write_conf
  start_munge
  start_accounting
  slurmctld -f "$CONF" >>"$DIR/log/slurmctld.log" 2>&1 \
    || fail "slurmctld did not start: $(reason_in "$DIR/log/slurmctld.log")"
  wait_until "$WAIT_S" scontrol ping \
    || fail "slurmctld did not answer in $WAIT_S s: $(reason_in "$DIR/log/slurmctld.log")"
  slurmd -f "$CONF" >>"$DIR/log/slurmd.log" 2>&1 \
    || fail "slurmd did not start: $(reason_in "$DIR/log/slurmd.log")"
  wait_until "$WAIT_S" node_ready \
    || fail "node $(hostname -s) not ready in $WAIT_S s: $(reason_in "$DIR/log/slurmd.log")"
  echo "SLURM_CONF=$CONF"
}

not_running() { ! running "$1"; }

stop_pid() {  # stop_pid PIDFILE: SIGTERM, SIGKILL after 10 s
  local pid
  [[ -s "$1" ]] || return 0
  pid="$(cat "$1")"
  if running "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    wait_until 10 not_running "$pid" || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

stepds() {  # this cluster's slurmstepd processes: they hold sockets under $DIR/spool
  local proc fd
  for proc in /proc/[0-9]*; do
    [[ "$(cat "$proc/comm" 2>/dev/null)" == slurmstepd ]] || continue
    for fd in "$proc"/fd/*; do
      if [[ "$(readlink "$fd" 2>/dev/null)" == "$DIR"/* ]]; then
        echo "${proc#/proc/}"
        break
      fi
    done
  done
}

stop_all() {
  [[ -d "$DIR" ]] || return 0
  export SLURM_CONF="$CONF"
  if pid_alive "$DIR/slurmctld.pid"; then
    # Every job of this cluster, whoever submitted it: SIGKILL at once, no KillWait.
    scancel --full --signal=KILL --state=RUNNING 2>/dev/null || true
    scancel --state=PENDING 2>/dev/null || true
    wait_until 20 bash -c "[[ -z \"\$(squeue -h -o %i 2>/dev/null)\" ]]" || true
  fi
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  local pid
  for pid in $(stepds); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  stop_pid "$DIR/slurmdbd.pid"
  stop_pid "$DIR/munged.pid"
  if [[ -f "$DIR/made-munge-run" ]]; then
    rm -rf "$MUNGE_RUN"
  fi
  mysql_do "DROP DATABASE IF EXISTS $DB_NAME" >/dev/null 2>&1 || true
}

down() {
  stop_all
  rm -rf "$DIR"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env)
    is_up || { say "not up"; exit 1; }
    echo "SLURM_CONF=$CONF"
    ;;
  *)
    echo "usage: $0 up|down|env" >&2
    exit 2
    ;;
esac
