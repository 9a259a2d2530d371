#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying the workflow's SLURM profile on a laptop and
# for the cluster test (tests/cluster/). Debian/Ubuntu, run as root; no systemd needed.
#
#   scripts/slurm-local.sh install   apt-get the Debian packages (slurm-wlm, slurmdbd, munge, mariadb-server)
#   scripts/slurm-local.sh start     start munged, MariaDB, slurmdbd, slurmctld and slurmd by hand
#   scripts/slurm-local.sh status    daemons, nodes and partitions
#   scripts/slurm-local.sh stop      cancel the cluster's jobs and stop exactly the daemons `start` started
#
# Everything lives in one state folder, SIPE_SLURM_DIR (default /tmp/sipe-slurm): configuration,
# munge key, database, spool, logs and pid files. Outside it there are only the places every SLURM
# client and job step looks at: /etc/slurm/{slurm,slurmdbd,gres}.conf are links into the state folder
# (an existing SLURM configuration there is refused, never replaced; `stop` removes the links), and
# munged's socket in /run/munge (a munged already running there is used as it is). MariaDB gets its
# own data folder, socket and port. Ports (SIPE_SLURM_PORT, default 6817, and the next two for
# slurmd and slurmdbd; SIPE_SLURM_DB_PORT, default 3307) must be free. The node takes this machine's
# CPUs and memory as `slurmd -C` reports them, and its GPUs (gres gpu) when nvidia-smi lists any.
set -euo pipefail

DIR="${SIPE_SLURM_DIR:-/tmp/sipe-slurm}"
CTLD_PORT="${SIPE_SLURM_PORT:-6817}"
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT="${SIPE_SLURM_DB_PORT:-3307}"
CLUSTER=sipe-local
# The names workflow/profiles/slurm uses (a real cluster has its own: edit the profile there).
CPU_PARTITION=cpu
GPU_PARTITION=gpu
ACCOUNT=sipe
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
# Daemons in start order; `stop` goes in reverse. Each writes <name>.pid into $DIR/run.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

CONFS=(slurm.conf slurmdbd.conf gres.conf)  # linked from /etc/slurm

say() { echo "slurm-local: $*" >&2; }
die() { say "error: $*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "run as root (the daemons switch to the slurm, munge and mysql users)"; }

# wait_for SECONDS DESCRIPTION COMMAND...: run COMMAND every 0.5 s until it succeeds.
wait_for() {
    local limit=$1 what=$2 i
    shift 2
    for ((i = 0; i < limit * 2; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "$what did not come up within $limit s (logs in $DIR/log)"
}

# Link /etc/slurm/<name> to the state folder's copy (SLURM_CONF would not do: the executor plugin
# drops SLURM_* variables before its job steps call srun).
link_configs() {
    local name target
    install -d -m 0755 /etc/slurm
    for name in "${CONFS[@]}"; do
        target=/etc/slurm/$name
        if [ -e "$target" ] || [ -L "$target" ]; then
            [ "$(readlink "$target")" = "$DIR/etc/$name" ] || die "$target exists: this machine has a SLURM configuration of its own"
        fi
    done
    for name in "${CONFS[@]}"; do
        [ ! -e "$DIR/etc/$name" ] || ln -sfn "$DIR/etc/$name" "/etc/slurm/$name"
    done
}

unlink_configs() {
    local name
    for name in "${CONFS[@]}"; do
        [ "$(readlink "/etc/slurm/$name" 2>/dev/null)" != "$DIR/etc/$name" ] || rm -f "/etc/slurm/$name"
    done
}

pid_of() { cat "$DIR/run/$1.pid" 2>/dev/null || true; }

# alive NAME: the recorded pid of NAME runs and is that program (not a recycled pid).
alive() {
    local pid
    pid=$(pid_of "$1")
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$1" ]
}

cmd_install() {
    need_root
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages already installed: ${PACKAGES[*]}"
        return
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with your package manager"
    # Keep the packages' maintainer scripts from starting the services: `start` runs them by hand.
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        added=1
    fi
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || {
        [ $added -eq 0 ] || rm -f "$policy"
        die "apt-get install failed"
    }
    [ $added -eq 0 ] || rm -f "$policy"
}

write_config() {
    local host node_line gres_conf="" gpus
    host=$(hostname -s)
    # The node exactly as slurmd detects it (more RealMemory than detected would drain the node).
    node_line=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    if [ "${gpus:-0}" -gt 0 ]; then
        node_line="$node_line Gres=gpu:$gpus"
        gres_conf="GresTypes=gpu"
        printf 'NodeName=%s Name=gpu File=/dev/nvidia[0-%d]\n' "$host" $((gpus - 1)) >"$DIR/etc/gres.conf"
    fi
    cat >"$DIR/etc/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster without cgroups or systemd.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/spool/slurmctld
SlurmdSpoolDir=$DIR/spool/slurmd
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
$gres_conf
$node_line State=UNKNOWN
PartitionName=$CPU_PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=$GPU_PARTITION Nodes=ALL MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=slurm
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$DIR/etc/db-password")
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm "$DIR/etc/slurmdbd.conf"
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

munge_works() { munge -n | unmunge; }

# Slurm's clients reach munged on its default socket (/run/munge), so there is one munged per machine:
# an already running one is used as it is (and left running by `stop`).
start_munge() {
    if munge_works >/dev/null 2>&1; then
        say "using the munged already running on /run/munge"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge "$DIR/munge"
    [ -f "$DIR/munge/munge.key" ] || runuser -u munge -- mungekey --create --keyfile="$DIR/munge/munge.key"
    runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 10 munged test -s "$DIR/munge/munged.pid"
    cp "$DIR/munge/munged.pid" "$DIR/run/munged.pid"
    wait_for 10 munged munge_works
}

mysql_root() { mariadb --no-defaults --socket="$DIR/mysql/mysqld.sock" -u root "$@"; }

start_mariadb() {
    if [ ! -d "$DIR/mysql/mysql" ]; then
        install -d -o mysql -g mysql -m 0750 "$DIR/mysql"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DIR/mysql" --skip-test-db \
            --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed (see $DIR/log/mariadb-install.log)"
    fi
    # mariadbd stays in the foreground: detach it and record its pid.
    setsid mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql" --socket="$DIR/mysql/mysqld.sock" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --pid-file="$DIR/mysql/mariadbd.pid" \
        --log-error="$DIR/log/mariadb.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for 30 MariaDB mysql_root -e "SELECT 1"
    cp "$DIR/mysql/mariadbd.pid" "$DIR/run/mariadbd.pid"
    local pw
    pw=$(cat "$DIR/etc/db-password")
    mysql_root -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
                   CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
                   GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
                   GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

# The profile's account, for root and for the user who ran sudo (kept in the database across restarts).
register_account() {
    local user
    [ -n "$(sacctmgr -n list account "$ACCOUNT" format=account)" ] ||
        sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" Description="sipe-pipeline jobs" >/dev/null
    for user in root ${SUDO_USER:-}; do
        sacctmgr -n -s list user "$user" format=account | grep -qw "$ACCOUNT" ||
            sacctmgr -i -Q add user Names="$user" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
    done
}

node_ready() { sinfo -h -N -o '%t' | grep -Eq '^(idle|mix|alloc)'; }

cmd_start() {
    need_root
    for d in slurmctld slurmd slurmdbd munged mariadbd; do
        command -v "$d" >/dev/null || die "$d not found: run '$0 install' first"
    done
    local running=()
    for d in "${DAEMONS[@]}"; do alive "$d" && running+=("$d"); done
    [ ${#running[@]} -eq 0 ] || die "already running: ${running[*]} (state in $DIR); '$0 stop' first"
    local started=$SECONDS
    install -d -m 0755 "$DIR" "$DIR/etc" "$DIR/run" "$DIR/spool"
    runuser -u munge -- test -x "$DIR" || die "$DIR: the state folder must be reachable by the users munge, mysql and slurm"
    install -d -m 1777 "$DIR/log"  # each daemon writes its own log as its own user
    install -d -o slurm -g slurm -m 0755 "$DIR/spool/slurmctld"
    install -d -m 0755 "$DIR/spool/slurmd"
    rm -f "$DIR"/run/*.pid "$DIR/etc/gres.conf"
    [ -s "$DIR/etc/db-password" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DIR/etc/db-password")
    write_config
    link_configs
    start_munge
    start_mariadb
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
    slurmctld
    wait_for 30 slurmctld scontrol ping
    register_account
    slurmd -N "$(hostname -s)"
    wait_for 60 "the node" node_ready
    say "cluster $CLUSTER up in $((SECONDS - started)) s (state in $DIR)"
}

cmd_stop() {
    need_root
    if alive slurmctld; then  # jobs first, so that no job step outlives its node daemon
        squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
    fi
    local i d pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        d=${DAEMONS[i]}
        pid=$(pid_of "$d")
        if alive "$d"; then
            kill -TERM "$pid"
            for _ in $(seq 1 40); do
                [ -d "/proc/$pid" ] || break
                sleep 0.25
            done
            if [ -d "/proc/$pid" ]; then
                say "$d ($pid) did not stop in 10 s: killing it"
                kill -KILL "$pid"
            fi
            say "stopped $d ($pid)"
        elif [ -n "$pid" ]; then
            say "$d ($pid) was not running: removing its stale pid file"
        fi
        rm -f "$DIR/run/$d.pid"
    done
    rm -f "$DIR/munge/munged.pid" "$DIR/mysql/mysqld.sock"
    unlink_configs
}

cmd_status() {
    local d rc=0
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then echo "$d: running ($(pid_of "$d"))"; else echo "$d: stopped"; rc=1; fi
    done
    if [ $rc -eq 0 ]; then
        sinfo -N -o '%N %P %t %c %m %G'
    fi
    return $rc
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 2
        ;;
esac
