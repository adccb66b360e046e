#!/usr/bin/env bash
# Stop the CI SLURM cluster that .ci/slurm/start.sh started: cancel its jobs, then stop slurmd,
# slurmctld, slurmdbd, mariadbd and munged by the pids in their own pid files (each checked
# against /proc/PID/comm, so a reused pid is never signalled). Safe when nothing runs.
#   .ci/slurm/stop.sh           keep $CI_SLURM_DIR (logs, accounting database)
#   .ci/slurm/stop.sh --purge   then delete $CI_SLURM_DIR
set -euo pipefail
DIR=${CI_SLURM_DIR:-/tmp/rgd-slurm}
MARKER="state of .ci/slurm/start.sh"
log() { echo "[slurm-stop] $*" >&2; }
if ! grep -qxF "$MARKER" "$DIR/.rgd-slurm" 2>/dev/null; then
    log "no cluster state in $DIR: nothing to stop"
    exit 0
fi
pid_of() { # pid_of NAME PIDFILE: the pid if it is a live process called NAME
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] && echo "$pid"
}
rc=0
stop() {
    local pid i
    pid=$(pid_of "$1" "$2") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "$1 (pid $pid) stopped"; return 0; }
        sleep 0.2
    done
    log "$1 (pid $pid) ignored SIGTERM for 30 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    rc=1
}

# shellcheck disable=SC1091
source "$DIR/env.sh"
if pid_of slurmctld "$DIR/run/slurmctld.pid" >/dev/null; then
    jobs=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ' || true)
    if [[ -n ${jobs// /} ]]; then
        log "cancelling jobs $jobs"
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            [[ -z $(squeue -h -t RUNNING,COMPLETING -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi
stop slurmd "$DIR/run/slurmd.pid"
stop slurmctld "$DIR/run/slurmctld.pid"
stop slurmdbd "$DIR/run/slurmdbd.pid"
stop mariadbd "$DIR/mysql/mariadbd.pid"
stop munged "$DIR/munge/munged.pid"
if [[ ${1:-} == --purge ]]; then
    rm -rf --one-file-system "$DIR"
    log "removed $DIR"
fi
exit $rc
