#!/usr/bin/env bash
# A real single-node SLURM cluster from Debian's packages, for testing crnn's SLURM profile.
#
#   tests/slurm/cluster.sh install   # apt-get the packages (idempotent; quick when installed)
#   tests/slurm/cluster.sh start     # start munged, mariadbd, slurmdbd, slurmctld, slurmd
#   eval "$(tests/slurm/cluster.sh env)"   # point sbatch, sacct, ... at this cluster
#   tests/slurm/cluster.sh status    # daemons, node and partitions
#   tests/slurm/cluster.sh stop      # stop every daemon it started, by PID
# Exit status: 0 done, 1 failed (start stops what it had started), 3 busy (a cluster is already
# running from the same folder, or /etc/slurm/slurm.conf belongs to another SLURM).
#
# Needs root (the daemons switch to the users munge, mysql and slurm) and no systemd. Everything
# lives in CRNN_SLURM_DIR (default /var/tmp/crnn-slurm): configuration, munge key and socket,
# database, state, logs and pid files, and the ports (16817-16819 for SLURM, 13306 for MariaDB)
# are not the system's. The one thing outside it is the symlink /etc/slurm/slurm.conf to its
# slurm.conf, removed by `stop`: Snakemake's jobstep plugin strips SLURM_* variables, SLURM_CONF
# included, before it calls srun inside a job, so srun must find the configuration at the default
# path. `start` refuses to run where /etc/slurm/slurm.conf is another SLURM's configuration.
#
# The node is this machine, named localhost, with its real CPUs and 80 % of its memory. Partitions:
# `debug` (default) and `gpu`, both on that node. The node declares two placeholder GPUs (gres
# whose device files are /dev/null) so that `--gres=gpu:1` requests are scheduled and accounted as on a real
# GPU cluster; no GPU is really there. Accounting goes through slurmdbd + MariaDB, so `sacct`
# works (Snakemake's SLURM plugin polls job states with it) and stores each job's comment (the
# Snakemake rule). Details and pitfalls: docs/hpc.md.
set -euo pipefail

D=${CRNN_SLURM_DIR:-/var/tmp/crnn-slurm}
PACKAGES=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
DAEMONS=(slurmd slurmctld slurmdbd mariadbd munged)   # stop order
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306
DB_PASS=crnn-test-only
SYSTEM_CONF=/etc/slurm/slurm.conf

say() { echo "[cluster] $*" >&2; }
die() { echo "[cluster] error: $*" >&2; exit 1; }
busy() { echo "[cluster] busy: $*" >&2; exit 3; }   # exit 3: not ours to start (or stop)

pidfile() {
  case $1 in
    munged) echo "$D/munge/munged.pid" ;;
    mariadbd) echo "$D/mysql-run/mariadbd.pid" ;;
    *) echo "$D/run/$1.pid" ;;
  esac
}

# PID of a daemon we started, if it is still running that daemon's binary; empty otherwise.
live_pid() {
  local f pid
  f=$(pidfile "$1")
  [[ -s $f ]] || return 0
  pid=$(tr -dc 0-9 <"$f")
  [[ -n $pid && -e /proc/$pid/exe ]] || return 0
  # Debian's /usr/sbin/slurmd etc. are alternatives symlinks to *-wlm: compare resolved paths
  [[ $(readlink -f "/proc/$pid/exe") == "$(readlink -f "/usr/sbin/$1")" ]] && echo "$pid"
  return 0
}

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

cmd_install() {
  local missing
  missing=$(missing_packages | tr '\n' ' ')
  if [[ -z ${missing// /} ]]; then
    say "packages already installed: ${PACKAGES[*]}"
    return 0
  fi
  [[ $(id -u) == 0 ]] || die "installing ${missing}needs root (apt-get)"
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing}with your package manager"
  say "installing ${missing}(apt-get)"
  apt-get update -qq
  # apt starts no services in containers (policy-rc.d); `start` runs the daemons itself
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local limit=$1 what=$2 t0=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - t0 < limit)) || die "$what did not come up within ${limit} s; logs in $D/log, $D/mysql-run and $D/munge"
    sleep 0.2
  done
}

write_configs() {
  local node mem
  # this machine's CPUs and layout as slurmd sees them; 80 % of its memory for jobs
  node=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//')
  mem=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
  cat >"$D/etc/slurm.conf" <<EOF
# Written by crnn's tests/slurm/cluster.sh: a single-node test cluster.
ClusterName=crnntest
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket.2
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmdSpoolDir=$D/slurmd
StateSaveLocation=$D/slurmctld
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
# no cgroups: works in containers without systemd; memory limits are not enforced
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=600
# reject impossible requests at sbatch time instead of leaving them pending forever
EnforcePartLimits=ALL
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# the munge socket for talking to slurmdbd (AuthInfo covers the rest)
AccountingStoragePass=$D/munge/munge.socket.2
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherFrequency=30
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 $node RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
  # SLURM 22.05 wants a device file per GPU: two character devices that are /dev/null (1:3)
  install -d -m 755 "$D/dev"
  mknod -m 666 "$D/dev/gpu0" c 1 3 2>/dev/null && mknod -m 666 "$D/dev/gpu1" c 1 3 2>/dev/null \
    || touch "$D/dev/gpu0" "$D/dev/gpu1"   # no CAP_MKNOD: plain files work too (slurmd logs an error)
  cat >"$D/etc/gres.conf" <<EOF
# Two placeholder GPUs (both /dev/null): scheduled and accounted like real ones; not real.
NodeName=localhost Name=gpu File=$D/dev/gpu[0-1]
EOF
  cat >"$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket.2
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=slurm
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF
  # slurmdbd refuses a config that is not its user's or that others can read
  chown slurm:slurm "$D/etc/slurmdbd.conf"
  chmod 600 "$D/etc/slurmdbd.conf"
}

cmd_start() {
  [[ $(id -u) == 0 ]] || die "starting the daemons needs root"
  local missing d
  missing=$(missing_packages | tr '\n' ' ')
  [[ -z ${missing// /} ]] || die "packages missing: ${missing}(run: $0 install)"
  for d in "${DAEMONS[@]}"; do
    [[ -z $(live_pid "$d") ]] || busy "$d is already running from $D (PID $(live_pid "$d")); run: $0 stop"
  done
  if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]] && [[ $(readlink "$SYSTEM_CONF") != "$D/etc/slurm.conf" ]]; then
    busy "$SYSTEM_CONF exists and is not this test cluster's: refusing to shadow a real SLURM configuration"
  fi
  local t0=$SECONDS
  # whatever fails from here on, stop the daemons started so far
  trap 'say "start failed; stopping what was started"; cmd_stop' EXIT
  rm -rf "$D"
  install -d -m 755 "$D" "$D/etc"
  install -d -o munge -g munge -m 755 "$D/munge"
  install -d -o mysql -g mysql -m 700 "$D/mysql"
  install -d -o mysql -g mysql -m 755 "$D/mysql-run"
  install -d -o slurm -g slurm -m 755 "$D/run" "$D/log" "$D/slurmctld"
  install -d -m 755 "$D/slurmd"
  write_configs
  export SLURM_CONF=$D/etc/slurm.conf
  install -d -m 755 "$(dirname "$SYSTEM_CONF")"
  ln -sfn "$D/etc/slurm.conf" "$SYSTEM_CONF"

  # munge: a private key and socket, shared by every SLURM daemon and client of this cluster
  runuser -u munge -- mungekey --create --keyfile="$D/munge/munge.key" --bits=1024 >/dev/null
  runuser -u munge -- /usr/sbin/munged --socket="$D/munge/munge.socket.2" --key-file="$D/munge/munge.key" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
  munge -n -S "$D/munge/munge.socket.2" | unmunge -S "$D/munge/munge.socket.2" >/dev/null \
    || die "munge round trip failed; see $D/munge/munged.log"

  # MariaDB for slurmdbd: a private data directory, TCP on 127.0.0.1 only
  mariadb-install-db --no-defaults --user=mysql --datadir="$D/mysql" --auth-root-authentication-method=socket \
    --skip-test-db >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed; see $D/log/mariadb-install.log"
  setsid nohup /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$D/mysql" \
    --socket="$D/mysql-run/mariadbd.sock" --pid-file="$D/mysql-run/mariadbd.pid" --port=$DB_PORT \
    --bind-address=127.0.0.1 --skip-name-resolve --log-error="$D/mysql-run/mariadbd.log" \
    >/dev/null 2>&1 </dev/null &
  wait_for 30 mariadbd mariadb-admin --no-defaults -S "$D/mysql-run/mariadbd.sock" ping
  mariadb --no-defaults -S "$D/mysql-run/mariadbd.sock" -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"

  # SLURM: accounting first, then the controller, then the node
  /usr/sbin/slurmdbd
  wait_for 30 slurmdbd sacctmgr -n show cluster
  /usr/sbin/slurmctld
  wait_for 30 slurmctld scontrol ping
  /usr/sbin/slurmd -N localhost
  wait_for 30 "node localhost" node_idle
  trap - EXIT
  say "cluster up in $((SECONDS - t0)) s: $(sinfo -h -o '%P %a %D %T %N' | tr '\n' ';')"
  say "use it with: export SLURM_CONF=$SLURM_CONF"
}

node_idle() { [[ $(sinfo -h -n localhost -o %T | head -n1) == idle ]]; }

cmd_stop() {
  export SLURM_CONF=$D/etc/slurm.conf
  local d pid t0
  if [[ -n $(live_pid slurmctld) ]] && [[ -n $(squeue -h -o %i 2>/dev/null) ]]; then
    say "cancelling jobs still queued or running: $(squeue -h -o %i | tr '\n' ' ')"
    scancel --full "$(squeue -h -o %i | tr '\n' ',' | sed 's/,$//')" || true
    t0=$SECONDS
    while [[ -n $(squeue -h -o %i 2>/dev/null) ]] && ((SECONDS - t0 < 30)); do sleep 0.5; done
  fi
  for d in "${DAEMONS[@]}"; do
    pid=$(live_pid "$d")
    [[ -n $pid ]] || continue
    kill -TERM "$pid"
    t0=$SECONDS
    while [[ -e /proc/$pid ]] && ((SECONDS - t0 < 30)); do sleep 0.1; done
    if [[ -e /proc/$pid ]]; then
      say "$d (PID $pid) ignored TERM for 30 s; sending KILL"
      kill -KILL "$pid" || true
    fi
    rm -f "$(pidfile "$d")"
    say "stopped $d (PID $pid)"
  done
  if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$D/etc/slurm.conf" ]]; then
    rm -f "$SYSTEM_CONF"
  fi
}

cmd_status() {
  local d pid rc=0
  for d in "${DAEMONS[@]}"; do
    pid=$(live_pid "$d")
    if [[ -n $pid ]]; then echo "$d: running (PID $pid)"; else echo "$d: stopped"; rc=1; fi
  done
  if [[ $rc == 0 ]]; then
    SLURM_CONF=$D/etc/slurm.conf sinfo -o '%P %a %D %T %N %c %m %G'
  fi
  return $rc
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$D/etc/slurm.conf" ;;
  *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
