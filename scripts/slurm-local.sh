#!/usr/bin/env bash
# A real, single-node SLURM on this machine, for tests and demos: munged, slurmctld and
# slurmd, every daemon bound to 127.0.0.1, with two fake GPUs (GRES "fakegpu").
#
#   scripts/slurm-local.sh start    install slurm-wlm + munge if missing (apt-get, root),
#                                   start the daemons, wait until the node is idle
#   scripts/slurm-local.sh status   exit 0 when the node answers, 1 when it does not
#   scripts/slurm-local.sh stop     cancel every job, stop the daemons (and munged, if started here)
#   scripts/slurm-local.sh env      print `export SLURM_CONF=...` for sbatch, squeue, sinfo
#
# Configuration, state and logs live in $MORPHML_SLURM_DIR (default /tmp/morphml-slurm);
# clients find the cluster through SLURM_CONF=$MORPHML_SLURM_DIR/slurm.conf.
# $MORPHML_SLURM_CPUS (default: the cores, at least 4) is the node's CPU count: more than the
# cores is fine for tests (SlurmdParameters=config_overrides), so that the fake GPUs, not
# the CPUs, limit how many GPU jobs run.
# Exit status 2: this machine cannot run it (not root, or no apt-get to install SLURM).
set -euo pipefail

DIR="${MORPHML_SLURM_DIR:-/tmp/morphml-slurm}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"
HOST="$(hostname -s)"
PARTITION=debug
FAKE_GPUS=2

say() { printf 'slurm-local: %s\n' "$*" >&2; }
die() { say "$1"; exit "${2:-1}"; }

# Poll a command every 0.1 s for up to $1 seconds.
wait_for() {
    local seconds=$1
    shift
    local tries=$((seconds * 10))
    for ((i = 0; i < tries; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# A process that runs (a zombie, which a container's init may never reap, does not).
alive() { [[ -r "/proc/$1/status" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status"; }

gone() { ! alive "$1"; }

pid_alive() { [[ -f "$1" ]] && alive "$(cat "$1")"; }

queue_empty() { [[ -z "$(squeue -h -o %i 2>/dev/null)" ]]; }

node_idle() { [[ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" == idle* ]]; }

running() { pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid" && scontrol ping >/dev/null 2>&1; }

install_slurm() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    [[ $EUID -eq 0 ]] || die "SLURM is not installed and installing it needs root" 2
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get" 2
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; then
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    touch "$DIR/munged.started-here"
    wait_for 10 sh -c 'munge -n | unmunge' || die "munged did not start (see /var/log/munge)"
}

resolve_host() {
    # The daemons bind 127.0.0.1 only, so the node's name must resolve there.
    if getent ahostsv4 "$HOST" | awk '{print $1}' | grep -qx '127.0.0.1'; then return 0; fi
    say "adding '127.0.0.1 $HOST' to /etc/hosts"
    # Rewritten in place: /etc/hosts is often a bind mount that cannot be replaced.
    local hosts
    hosts="$(cat /etc/hosts)"
    printf '127.0.0.1 %s\n%s\n' "$HOST" "$hosts" >/etc/hosts
}

write_conf() {
    local cores memory cpus
    cores="$(nproc)"
    cpus="${MORPHML_SLURM_CPUS:-$((cores > 4 ? cores : 4))}"
    # A little less than the machine has, in MiB, so that slurmd never finds too little.
    memory="$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: one node, every daemon on 127.0.0.1.
ClusterName=morphml-local
SlurmctldHost=$HOST(127.0.0.1)
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
ReturnToService=2
KillWait=5
MinJobAge=30
SchedulerType=sched/backfill
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
GresTypes=fakegpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=fakegpu:$FAKE_GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    # A GRES named "gpu" without device files would drain the node: hence "fakegpu".
    printf 'NodeName=%s Name=fakegpu Count=%d\n' "$HOST" "$FAKE_GPUS" >"$DIR/gres.conf"
}

start() {
    mkdir -p "$DIR"
    if running && node_idle_or_busy; then
        say "already running (SLURM_CONF=$CONF)"
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "starting SLURM daemons needs root" 2
    install_slurm
    stop_daemons  # leftovers of a half-started or crashed run
    start_munge
    resolve_host
    write_conf
    slurmctld -c -f "$CONF"
    wait_for 20 scontrol ping || die "slurmctld did not answer; see $DIR/log/slurmctld.log"
    slurmd -f "$CONF"
    if ! wait_for 30 node_idle; then
        sinfo -N -l >&2 || true
        die "node $HOST is not idle; see $DIR/log/slurmd.log and $DIR/log/slurmctld.log"
    fi
    say "up: node $HOST, partition $PARTITION, $FAKE_GPUS x fakegpu (SLURM_CONF=$CONF)"
}

node_idle_or_busy() { [[ "$(sinfo -h -n "$HOST" -o %t 2>/dev/null)" =~ ^(idle|mix|alloc) ]]; }

stop_daemons() {
    local daemon pid pids=()
    for daemon in slurmd slurmctld; do
        if pid_alive "$DIR/$daemon.pid"; then pids+=("$(cat "$DIR/$daemon.pid")"); fi
    done
    if pid_alive "$DIR/slurmctld.pid"; then
        local jobs
        jobs="$(squeue -h -o %i 2>/dev/null || true)"
        if [[ -n "$jobs" ]]; then
            # shellcheck disable=SC2086  # one job id per word
            scancel $jobs 2>/dev/null || true
            wait_for 15 queue_empty || say "jobs still listed: $jobs"
        fi
        scontrol shutdown >/dev/null 2>&1 || true
    fi
    for pid in "${pids[@]}"; do
        wait_for 10 gone "$pid" || kill "$pid" 2>/dev/null || true
        wait_for 5 gone "$pid" || kill -9 "$pid" 2>/dev/null || true
    done
    rm -f "$DIR/slurmd.pid" "$DIR/slurmctld.pid"
}

stop() {
    if [[ $EUID -ne 0 ]] && pid_alive "$DIR/slurmctld.pid"; then
        die "stopping the SLURM daemons needs root" 2
    fi
    stop_daemons
    if [[ -f "$DIR/munged.started-here" ]]; then
        if [[ -f /run/munge/munged.pid ]]; then
            kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        fi
        rm -f "$DIR/munged.started-here"
    fi
    say "stopped"
}

status() {
    if running; then
        sinfo -N -o '%N %t %c %m %G' >&2
        squeue >&2
        return 0
    fi
    say "not running"
    return 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) printf 'export SLURM_CONF=%s\n' "$CONF" ;;
    *) die "usage: $0 start|stop|status|env" 64 ;;
esac
