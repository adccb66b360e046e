#!/usr/bin/env bash
# Start a one-node SLURM cluster on 127.0.0.1 from Debian's packages, without systemd, so that CI
# runs the workflow through the real SLURM profile (sbatch, sacct, a fake GPU gres). Run as root.
#
#   .ci/slurm/start.sh                install what is missing, start munged, mariadbd, slurmdbd,
#                                     slurmctld and slurmd, wait until the node is idle
#   source "$CI_SLURM_DIR/env.sh"     SLURM commands (and snakemake jobs) then use this cluster
#   .ci/slurm/stop.sh [--purge]       stop the daemons by their pid files
#
# Running it again while the cluster is up (same settings) changes nothing. Nothing outside
# $CI_SLURM_DIR is written, apart from the apt-get install: configs, munge key, database, logs and
# the client shims all live there. docs/SLURM.md explains the choices.
#
# Settings (environment, all optional):
#   CI_SLURM_DIR        state, configs and logs                         [/tmp/rgd-slurm]
#   CI_SLURM_GPUS       number of fake GPUs (gres "gpu")                [1]
#   CI_SLURM_CPUS       advertise this many CPUs instead of the real count
#   CI_SLURM_MEM_MB     advertise this much memory instead of the real amount
#   CI_SLURM_PARTITION  the one partition (the default)                 [ci]
#   CI_SLURM_ACCOUNT    an account created for root                     [rgd]
#   CI_SLURM_PORTS      slurmctld,slurmd,slurmdbd,mariadb               [6817,6818,6819,3307]
#   CI_SLURM_INSTALL    auto: apt-get install missing packages; no: fail instead   [auto]
#   CI_SLURM_TIMEOUT    seconds to wait for each daemon                 [60]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${CI_SLURM_DIR:-/tmp/rgd-slurm}
GPUS=${CI_SLURM_GPUS:-1}
CPUS=${CI_SLURM_CPUS:-}
MEM_MB=${CI_SLURM_MEM_MB:-}
PARTITION=${CI_SLURM_PARTITION:-ci}
ACCOUNT=${CI_SLURM_ACCOUNT:-rgd}
INSTALL=${CI_SLURM_INSTALL:-auto}
TIMEOUT=${CI_SLURM_TIMEOUT:-60}
IFS=, read -r CTLD_PORT SLURMD_PORT DBD_PORT MYSQL_PORT <<<"${CI_SLURM_PORTS:-6817,6818,6819,3307}"
CLUSTER=rgdci
MARKER="state of .ci/slurm/start.sh"
export PATH="$PATH:/usr/sbin:/sbin" # the daemons live there

T0=$SECONDS
log() { echo "[slurm-start +$((SECONDS - T0))s] $*" >&2; }
die() { # die MESSAGE [LOGFILE...]: one clear line, then the tail of each log that has content
    echo "slurm-start: ERROR: $1" >&2
    shift
    for f in "$@"; do
        [[ -s $f ]] && { echo "--- last lines of $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
# alive NAME PIDFILE: the pid file names a live process called NAME (not a reused pid)
alive() {
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]]
}
# wait_for WHAT LOGFILE COMMAND...: poll COMMAND until it succeeds or CI_SLURM_TIMEOUT passes
wait_for() {
    local what=$1 logfile=$2 deadline=$((SECONDS + TIMEOUT))
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "no $what after ${TIMEOUT}s" "$logfile"
        sleep 0.2
    done
}
port_free() {
    if ss -Htln "sport = :$1" | grep -q .; then
        die "port $1 (for $2) is in use: $(ss -Htlnp "sport = :$1" | head -n 1); set CI_SLURM_PORTS"
    fi
}

# ------------------------------------------------------------------ checks and packages
[[ $EUID -eq 0 ]] || die "run as root (the daemons run as root, and packages may need installing)"
[[ $GPUS =~ ^[0-9]+$ ]] || die "CI_SLURM_GPUS must be a whole number, not '$GPUS'"
[[ $PARTITION =~ ^[A-Za-z0-9_-]+$ && $ACCOUNT =~ ^[A-Za-z0-9_-]+$ ]] ||
    die "CI_SLURM_PARTITION and CI_SLURM_ACCOUNT must be plain names"
need=()
for pair in munged:munge slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client slurmdbd:slurmdbd \
    mariadbd:mariadb-server mariadb:mariadb-client ss:iproute2; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    [[ $INSTALL == auto ]] || die "missing packages: ${need[*]} (apt-get install them, or unset CI_SLURM_INSTALL)"
    log "apt-get install ${need[*]}"
    apt-get update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        die "apt-get install ${need[*]} failed"
    log "packages installed"
fi

# ------------------------------------------------------------------ layout and settings
mkdir -p "$DIR"/{etc,munge,run,log,state/ctld,state/slurmd,bin,dev,mysql}
echo "$MARKER" >"$DIR/.rgd-slurm"
chmod 0755 "$DIR" "$DIR/munge" # munged wants every directory on its socket path traversable
chmod 0700 "$DIR/etc"          # munge key, database password

# With NoInAddrAny the daemons bind to what the host name resolves to; a name that does not
# resolve would kill slurmctld, so fall back to the name "localhost" and binding every address.
NODE=$(hostname -s 2>/dev/null || true)
COMM_PARAMS="CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
if [[ -z $NODE ]] || ! getent hosts "$NODE" >/dev/null; then
    log "host name '$NODE' does not resolve: node 'localhost', daemons bind 0.0.0.0"
    NODE=localhost
    COMM_PARAMS="# (host name does not resolve: daemons bind every address)"
fi
CONF=$DIR/etc/slurm.conf
MUNGE_SOCKET=$DIR/munge/munge.socket.2
export SLURM_CONF=$CONF

HW=$(slurmd -C 2>/dev/null | head -n 1) || true
[[ $HW == NodeName=* ]] || die "'slurmd -C' did not describe the node: $HW"
HW=${HW#NodeName=* }
SLURMD_PARAMETERS=""
if [[ -n $CPUS || -n $MEM_MB ]]; then
    HW="CPUs=${CPUS:-$(nproc)} RealMemory=${MEM_MB:-$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")}"
    SLURMD_PARAMETERS="SlurmdParameters=config_overrides" # trust slurm.conf over the hardware
fi
node_cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
node_mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
DEF_MEM_PER_CPU=$((node_mem / node_cpus < 1000 ? node_mem / node_cpus : 1000))

NODE_GRES="" GRES_LINES="# no fake GPUs (CI_SLURM_GPUS=0)"
if ((GPUS > 0)); then
    for ((i = 0; i < GPUS; i++)); do
        [[ -c $DIR/dev/gpu$i ]] || mknod "$DIR/dev/gpu$i" c 1 3 || die "mknod $DIR/dev/gpu$i failed"
    done
    NODE_GRES="Gres=gpu:$GPUS"
    GRES_LINES="NodeName=$NODE Name=gpu File=$DIR/dev/gpu$( ((GPUS == 1)) && echo 0 || echo "[0-$((GPUS - 1))]")"
fi
[[ -s $DIR/etc/db.pass ]] || head -c 24 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$DIR/etc/db.pass"

declare -A VALUES=(
    [DIR]=$DIR [CLUSTER]=$CLUSTER [NODE]=$NODE [PARTITION]=$PARTITION [COMM_PARAMS]=$COMM_PARAMS
    [CTLD_PORT]=$CTLD_PORT [SLURMD_PORT]=$SLURMD_PORT [DBD_PORT]=$DBD_PORT [MYSQL_PORT]=$MYSQL_PORT
    [MUNGE_SOCKET]=$MUNGE_SOCKET [NODE_HW]=$HW [NODE_GRES]=$NODE_GRES [GRES_LINES]=$GRES_LINES
    [DEF_MEM_PER_CPU]=$DEF_MEM_PER_CPU [SLURMD_PARAMETERS]=$SLURMD_PARAMETERS
    [DB_PASS]=$(<"$DIR/etc/db.pass")
)
render() { # render TEMPLATE OUTPUT MODE: fill the placeholders, write OUTPUT if it changed
    local text key d
    text=$(<"$HERE/$1")
    for key in "${!VALUES[@]}"; do text=${text//@$key@/${VALUES[$key]}}; done
    if grep -qE '@[A-Z_]+@' <<<"$text"; then die "$1: unknown placeholder $(grep -oE '@[A-Z_]+@' <<<"$text" | head -n 1)"; fi
    printf '%s\n' "$text" >"$2.new"
    chmod "$3" "$2.new"
    if cmp -s "$2" "$2.new"; then rm -f "$2.new" && return; fi
    for d in slurmd slurmctld slurmdbd; do # running daemons would keep the old settings
        alive "$d" "$DIR/run/$d.pid" && rm -f "$2.new" && die "$(basename "$2") would change while $d runs: run .ci/slurm/stop.sh first"
    done
    mv -f "$2.new" "$2"
}
render slurm.conf.in "$CONF" 0644
render gres.conf.in "$DIR/etc/gres.conf" 0644
render slurmdbd.conf.in "$DIR/etc/slurmdbd.conf" 0600 # slurmdbd reads it next to $SLURM_CONF

# Client shims. The SLURM job-step plugin removes every SLURM_* variable, SLURM_CONF included,
# before its nested srun; these wrappers put it back. They come first on PATH, which sbatch's
# --export=ALL carries into every job.
for c in sbatch srun salloc squeue sacct sacctmgr scontrol sinfo scancel sshare sstat; do
    real=$(command -v "$c") || continue
    [[ $real == "$DIR/bin/$c" ]] && real=/usr/bin/$c
    printf '#!/bin/sh\n# %s: use the CI cluster\nSLURM_CONF=%s exec %s "$@"\n' "$MARKER" "$CONF" "$real" >"$DIR/bin/$c"
    chmod 0755 "$DIR/bin/$c"
done
cat >"$DIR/env.sh" <<EOF
# $MARKER: source this file to use the CI SLURM cluster
export CI_SLURM_DIR=$DIR SLURM_CONF=$CONF CI_SLURM_PARTITION=$PARTITION CI_SLURM_ACCOUNT=$ACCOUNT
case ":\$PATH:" in *":$DIR/bin:"*) ;; *) export PATH="$DIR/bin:\$PATH" ;; esac
EOF

# ------------------------------------------------------------------ munged
[[ -s $DIR/etc/munge.key ]] || { dd if=/dev/urandom of="$DIR/etc/munge.key" bs=1024 count=1 status=none && chmod 0600 "$DIR/etc/munge.key"; }
if ! alive munged "$DIR/munge/munged.pid"; then
    rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" # left by a munged that died
    munged --key-file="$DIR/etc/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/etc/munged.seed" ||
        die "munged did not start" "$DIR/log/munged.log"
    log "munged started"
fi
munge_ok() { munge -n --socket="$MUNGE_SOCKET" | unmunge --socket="$MUNGE_SOCKET"; }
wait_for "answer from munged" "$DIR/log/munged.log" munge_ok

# ------------------------------------------------------------------ mariadbd + slurmdbd (for sacct)
MYSOCK=$DIR/mysql/mysqld.sock
if ! alive mariadbd "$DIR/mysql/mariadbd.pid"; then
    port_free "$MYSQL_PORT" mariadbd
    if [[ ! -d $DIR/mysql/data/mysql ]]; then
        mariadb-install-db --no-defaults --datadir="$DIR/mysql/data" --user=root --skip-test-db \
            --auth-root-authentication-method=socket >"$DIR/log/mariadb-install.log" 2>&1 ||
            die "mariadb-install-db failed" "$DIR/log/mariadb-install.log"
    fi
    rm -f "$MYSOCK"
    # --no-defaults: the system's my.cnf and /var/lib/mysql are never read or touched
    setsid -f mariadbd --no-defaults --datadir="$DIR/mysql/data" --socket="$MYSOCK" \
        --pid-file="$DIR/mysql/mariadbd.pid" --bind-address=127.0.0.1 --port="$MYSQL_PORT" \
        --skip-name-resolve --user=root --log-error="$DIR/log/mariadbd.log" \
        --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1
    log "mariadbd started"
fi
wait_for "answer from mariadbd" "$DIR/log/mariadbd.log" mariadb-admin --no-defaults --socket="$MYSOCK" -u root ping
mariadb --no-defaults --socket="$MYSOCK" -u root >/dev/null 2>&1 <<SQL || die "could not create the slurm database user" "$DIR/log/mariadbd.log"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '${VALUES[DB_PASS]}';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
if ! alive slurmdbd "$DIR/run/slurmdbd.pid"; then
    port_free "$DBD_PORT" slurmdbd
    slurmdbd || die "slurmdbd did not start" "$DIR/log/slurmdbd.log"
    log "slurmdbd started"
fi
wait_for "answer from slurmdbd" "$DIR/log/slurmdbd.log" sacctmgr -n list cluster

# ------------------------------------------------------------------ slurmctld + slurmd
if ! alive slurmctld "$DIR/run/slurmctld.pid"; then
    port_free "$CTLD_PORT" slurmctld
    slurmctld -f "$CONF" || die "slurmctld did not start" "$DIR/log/slurmctld.log"
    log "slurmctld started"
fi
ctld_up() { scontrol ping | grep -q 'is UP'; }
wait_for "answer from slurmctld" "$DIR/log/slurmctld.log" ctld_up
if ! alive slurmd "$DIR/run/slurmd.pid"; then
    port_free "$SLURMD_PORT" slurmd
    slurmd -f "$CONF" -N "$NODE" || die "slurmd did not start" "$DIR/log/slurmd.log"
    log "slurmd started"
fi
deadline=$((SECONDS + TIMEOUT))
until [[ ${state:=} =~ ^(idle|mixed|allocated)$ ]]; do
    state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null || true)
    # a node left down or drained by an earlier run (e.g. slurmd killed) is put back once
    if [[ $state =~ ^(down|drain) && -z ${resumed:-} ]]; then
        resumed=1
        scontrol update NodeName="$NODE" State=RESUME || true
    fi
    ((SECONDS < deadline)) || die "node $NODE is '$state', not idle, after ${TIMEOUT}s" "$DIR/log/slurmd.log" "$DIR/log/slurmctld.log"
    sleep 0.2
done

# ------------------------------------------------------------------ account for root
cluster_known() { sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; }
wait_for "cluster '$CLUSTER' registered in slurmdbd" "$DIR/log/slurmctld.log" cluster_known
if ! sacctmgr -n -P list assoc user=root account="$ACCOUNT" format=user | grep -qx root; then
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=ci Organization=ci >/dev/null 2>&1 || true
    sacctmgr -i add user root Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null ||
        die "sacctmgr could not add root to account $ACCOUNT" "$DIR/log/slurmdbd.log"
fi

log "SLURM is up: node $NODE, partition $PARTITION, account $ACCOUNT, $GPUS fake GPU(s); now: source $DIR/env.sh"
sinfo -N -o '%N %P %T %c %m %G' >&2
