#!/usr/bin/env bash
# tools/slurm/start.sh -- start a single-node SLURM cluster for tests / CI.
#
# What it does (as root, on Debian, no init system needed):
#   1. installs slurmctld, slurmd, slurm-client and munge if missing;
#   2. creates a munge key if absent and starts munged by hand;
#   3. writes /etc/slurm/{slurm,gres,cgroup}.conf for ONE node named after
#      `hostname -s` on 127.0.0.1, with CPUs=$(nproc), RealMemory from
#      /proc/meminfo (minus headroom) and two fake GPUs as generic resources
#      (so that two one-GPU jobs can run at once, as on a real GPU node);
#   4. starts slurmctld and slurmd as daemons (pid files in $KOQA_SLURM_RUN_DIR);
#   5. waits until `sinfo` reports the node idle, then prints the elapsed time.
#
# Idempotent: daemons that are already running with an unchanged config are
# left alone; if the generated config changed, slurmctld/slurmd are restarted.
# Stop everything again with tools/slurm/stop.sh.
#
# Environment knobs:
#   KOQA_SLURM_TIMEOUT      seconds to wait for the node to become idle (60)
#   KOQA_SLURM_GPUS         number of fake GPUs (2), backed by the device files
#                           /dev/nvidia0, /dev/nvidia1, ...; each is created as a
#                           symlink to /dev/null if it is missing
#   KOQA_SLURM_PARTITION    partition name (debug)
#   KOQA_SLURM_MEM_HEADROOM_MB  memory kept back from RealMemory
#                           (default: max(512, 10% of MemTotal))
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/slurm/common.sh
source "$SCRIPT_DIR/common.sh"

readonly TIMEOUT="${KOQA_SLURM_TIMEOUT:-60}"
readonly GPUS="${KOQA_SLURM_GPUS:-2}"
readonly PARTITION="${KOQA_SLURM_PARTITION:-debug}"
readonly CTLD_SPOOL=/var/spool/slurmctld
readonly SLURMD_SPOOL=/var/spool/slurmd
readonly MUNGE_KEY=/etc/munge/munge.key
readonly PACKAGES=(slurmctld slurmd slurm-client munge)

START_TS="$(date +%s.%N)"
NODE="$(hostname -s)"

elapsed() { awk -v s="$START_TS" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# ----------------------------------------------------------------------------
# 1. Packages
# ----------------------------------------------------------------------------
packages_missing() {
    local cmd
    for cmd in slurmctld slurmd sinfo sbatch squeue scontrol munged mungekey; do
        command -v "$cmd" >/dev/null 2>&1 || return 0
    done
    return 1
}

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${PACKAGES[@]}"
}

install_packages() {
    packages_missing || return 0
    log "installing ${PACKAGES[*]}"
    # Without an init system the packages' postinst scripts would try to start
    # munge/slurm via invoke-rc.d (sysvinit scripts).  Block that with a
    # temporary policy-rc.d so that the only daemons running are the ones we
    # start (and whose pids we know).  An existing policy-rc.d is respected.
    local policy=/usr/sbin/policy-rc.d
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        # Removed again even if the installation fails (set -e).
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    # Only refresh the package index if the plain install fails (saves ~10 s
    # and works offline when the index is already there).
    if ! apt_install; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q
        apt_install
    fi
    if [[ -n "$(trap -p EXIT)" ]]; then
        rm -f "$policy"
        trap - EXIT
    fi
    packages_missing && die "packages installed but some slurm/munge binaries are still missing"
    return 0
}

# ----------------------------------------------------------------------------
# 2. Munge
# ----------------------------------------------------------------------------
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    install -d -m 0700 -o munge -g munge /etc/munge /var/lib/munge /var/log/munge
    install -d -m 0755 -o munge -g munge /run/munge
    if [[ ! -s "$MUNGE_KEY" ]]; then
        log "creating munge key $MUNGE_KEY"
        mungekey --create --keyfile="$MUNGE_KEY"
    fi
    # munged refuses keys that are readable by others or not owned by its user.
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"

    if [[ -n "$(running_pid "$MUNGED_PIDFILE" munged)" ]]; then
        log "munged already running (pid $(pid_from_file "$MUNGED_PIDFILE"))"
    else
        if munge_works; then
            # Someone else (e.g. an init script) runs munged; use it, but it is
            # not ours to stop.
            log "a munged not started by this script is already serving; using it"
            return 0
        fi
        log "starting munged"
        # munged runs as the unprivileged 'munge' user (as the Debian service
        # does), so its pid file goes to a sub-directory munge may write.
        install -d -m 0755 -o munge -g munge "$(dirname "$MUNGED_PIDFILE")"
        rm -f "$MUNGED_PIDFILE"
        runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGED_PIDFILE" \
            || die "munged failed to start (see /var/log/munge/munged.log)"
    fi
    local i
    for ((i = 0; i < 50; i++)); do
        munge_works && return 0
        sleep 0.1
    done
    tail -n 20 /var/log/munge/munged.log >&2 || true
    die "munged is not answering (munge -n | unmunge failed)"
}

# ----------------------------------------------------------------------------
# 3. Configuration
# ----------------------------------------------------------------------------

# RealMemory in MB: MemTotal minus headroom.  slurmd marks the node invalid
# if the configured RealMemory exceeds what it detects, so stay below it.
real_memory_mb() {
    local total_kb total_mb headroom
    total_kb="$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    [[ "$total_kb" =~ ^[0-9]+$ ]] || die "cannot read MemTotal from /proc/meminfo"
    total_mb=$((total_kb / 1024))
    headroom="${KOQA_SLURM_MEM_HEADROOM_MB:-$((total_mb / 10 > 512 ? total_mb / 10 : 512))}"
    ((total_mb > headroom + 256)) || die "too little memory (${total_mb} MB) for a SLURM node"
    echo $((total_mb - headroom))
}

# Each fake GPU needs a device *file*: a count-only gres (no File=) makes the
# node INVAL once slurmd registers.  A symlink to /dev/null is enough.
ensure_gpu_devices() {
    local i device
    for ((i = 0; i < GPUS; i++)); do
        device="/dev/nvidia$i"
        if [[ -e "$device" ]]; then
            [[ -c "$device" ]] || die "$device exists but is not a character device"
        else
            log "creating fake GPU device $device -> /dev/null"
            ln -s /dev/null "$device"
        fi
    done
}

# The heredocs below expand ${...}: never put backticks or $( in their comments.
render_slurm_conf() {
    local cpus mem
    cpus="$(nproc)"
    mem="$(real_memory_mb)"
    local defmem=$((mem / cpus < 1024 ? mem / cpus : 1024))
    cat <<EOF
# Generated by koqa tools/slurm/start.sh -- single-node test cluster.
# Do not edit by hand; rerun the script instead.
ClusterName=koqa
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true

StateSaveLocation=${CTLD_SPOOL}
SlurmdSpoolDir=${SLURMD_SPOOL}
SlurmctldPidFile=${CTLD_PIDFILE}
SlurmdPidFile=${SLURMD_PIDFILE}
SlurmctldLogFile=${KOQA_SLURM_LOG_DIR}/slurmctld.log
SlurmdLogFile=${KOQA_SLURM_LOG_DIR}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info

# No cgroups: works in containers / without systemd.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none

SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Memory is a consumable resource, so a job without --mem would otherwise
# claim the whole node and serialise everything; give such jobs a default.
DefMemPerCPU=${defmem}
GresTypes=gpu

# No accounting database: sacct cannot report jobs, so the Snakemake SLURM
# plugin must poll with squeue.  squeue only sees finished jobs for
# MinJobAge seconds, which must stay >= 3 x the plugin's
# init_seconds_before_status_checks (default 40 s).  An hour also keeps the
# record of every job of a test run (e.g. its GPU request, shown by
# scontrol show job -d) until the test has checked it.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
# NB: AccountingStorageTRES=gres/gpu would be nice for "scontrol show job",
# but slurmctld 22.05 refuses to start with it unless slurmdbd is used.

# Bring the node back automatically after a restart.
ReturnToService=2
KillWait=5
InactiveLimit=0

NodeName=${NODE} NodeAddr=127.0.0.1 NodeHostname=${NODE} CPUs=${cpus} RealMemory=${mem} Gres=gpu:${GPUS} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
EOF
}

render_gres_conf() {
    cat <<EOF
# Generated by koqa tools/slurm/start.sh: fake GPUs backed by device files.
NodeName=${NODE} Name=gpu File=/dev/nvidia[0-$((GPUS - 1))]
EOF
}

render_cgroup_conf() {
    cat <<EOF
# Generated by koqa tools/slurm/start.sh: cgroups are not used
# (ProctrackType=proctrack/linuxproc, TaskPlugin=task/none).
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
}

# write_if_changed FILE CONTENT -> writes FILE, returns 0 if it changed.
write_if_changed() {
    local file="$1" content="$2"
    if [[ -f "$file" ]] && [[ "$(cat "$file")" == "$content" ]]; then
        return 1
    fi
    printf '%s\n' "$content" >"$file"
    return 0
}

# The running daemons were started with the config whose checksum is in
# CONFIG_STAMP (written only after the node came up).  If the checksum of the
# config we just wrote differs -- or a previous run failed half-way and left no
# stamp -- running daemons are restarted.
readonly CONFIG_STAMP="$KOQA_SLURM_RUN_DIR/config.sha256"
CONFIG_CHANGED=0
CONFIG_SUM=""

config_checksum() {
    (cd "$KOQA_SLURM_CONF_DIR" && cat slurm.conf gres.conf cgroup.conf) | sha256sum | cut -d' ' -f1
}

write_config() {
    install -d -m 0755 "$KOQA_SLURM_CONF_DIR" "$KOQA_SLURM_LOG_DIR"
    install -d -m 0755 "$CTLD_SPOOL" "$SLURMD_SPOOL"
    ensure_gpu_devices
    local f
    for f in slurm gres cgroup; do
        if write_if_changed "$KOQA_SLURM_CONF_DIR/$f.conf" "$("render_${f}_conf")"; then
            log "wrote $KOQA_SLURM_CONF_DIR/$f.conf"
        fi
    done
    CONFIG_SUM="$(config_checksum)"
    if [[ "$(cat "$CONFIG_STAMP" 2>/dev/null || true)" != "$CONFIG_SUM" ]]; then
        CONFIG_CHANGED=1
    fi
}

# ----------------------------------------------------------------------------
# 4. Daemons
# ----------------------------------------------------------------------------

# start_slurm_daemon NAME PIDFILE -> (re)starts the daemon as needed.
start_slurm_daemon() {
    local name="$1" pidfile="$2" pid i
    pid="$(running_pid "$pidfile" "$name")"
    if [[ -n "$pid" && "$CONFIG_CHANGED" -eq 0 ]]; then
        log "$name already running (pid $pid)"
        return 0
    fi
    if [[ -n "$pid" ]]; then
        log "configuration changed; restarting $name"
        stop_daemon "$name" "$pidfile"
    fi
    rm -f "$pidfile"
    log "starting $name"
    # Both daemonize and write their pid file themselves.
    "/usr/sbin/$name" || die "$name failed to start; see $KOQA_SLURM_LOG_DIR/$name.log"
    for ((i = 0; i < 100; i++)); do
        pid="$(running_pid "$pidfile" "$name")"
        [[ -n "$pid" ]] && return 0
        sleep 0.1
    done
    tail -n 30 "$KOQA_SLURM_LOG_DIR/$name.log" >&2 || true
    die "$name did not come up (no live pid in $pidfile)"
}

# Prints the node state as sinfo reports it (idle, mixed, down*, ...), or
# nothing while slurmctld does not answer.  Never fails (set -e/pipefail).
node_state() { { sinfo -h -n "$NODE" -o '%T' 2>/dev/null || true; } | head -n 1; }

# Both daemons write their pid file right after forking and may still die on
# a fatal config error afterwards, so keep checking they are alive.
check_daemons_alive() {
    local name pidfile
    for name in slurmctld slurmd; do
        pidfile="$CTLD_PIDFILE"
        [[ "$name" == slurmd ]] && pidfile="$SLURMD_PIDFILE"
        if [[ -z "$(running_pid "$pidfile" "$name")" ]]; then
            diagnostics
            die "$name died after starting; see $KOQA_SLURM_LOG_DIR/$name.log"
        fi
    done
}

diagnostics() {
    log "---- diagnostics ----"
    timeout 15 sinfo -N -l >&2 || true
    timeout 15 scontrol show node "$NODE" >&2 || true
    local f
    for f in slurmctld slurmd; do
        log "---- tail $KOQA_SLURM_LOG_DIR/$f.log ----"
        tail -n 25 "$KOQA_SLURM_LOG_DIR/$f.log" >&2 || true
    done
}

# True once the running slurmd has registered with slurmctld.  After a
# restart slurmctld recovers the node as "idle" from its state files before
# slurmd has said hello, so "idle" alone is not enough: compare the
# SlurmdStartTime slurmctld knows with the time slurmd wrote its pid file.
slurmd_registered() {
    local reported started
    reported="$(scontrol show node "$NODE" -o 2>/dev/null \
        | grep -o 'SlurmdStartTime=[0-9T:-]*' | cut -d= -f2 || true)"
    [[ -n "$reported" && "$reported" != None ]] || return 1
    reported="$(date -d "$reported" +%s 2>/dev/null)" || return 1
    started="$(stat -c %Y "$SLURMD_PIDFILE" 2>/dev/null)" || return 1
    # slurmd takes its start time just before writing the pid file.  (A
    # restart within 5 s may pass on the stale time; harmless, as slurmd then
    # registers within a second and jobs would merely pend that long.)
    ((reported >= started - 5))
}

wait_for_idle() {
    local deadline state=""
    deadline=$(($(date +%s) + TIMEOUT))
    while (($(date +%s) < deadline)); do
        check_daemons_alive
        state="$(node_state)"
        case "$state" in
            idle | mixed | allocated) slurmd_registered && return 0 ;;
            # Left over from an earlier run (e.g. killed daemons): resume it.
            down* | drain*)
                scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    diagnostics
    die "node $NODE not idle after ${TIMEOUT}s (last state: '${state:-unknown}')"
}

main() {
    require_root
    install_packages
    install -d -m 0755 "$KOQA_SLURM_RUN_DIR"
    start_munge
    write_config
    start_slurm_daemon slurmctld "$CTLD_PIDFILE"
    start_slurm_daemon slurmd "$SLURMD_PIDFILE"
    wait_for_idle
    printf '%s\n' "$CONFIG_SUM" >"$CONFIG_STAMP"
    log "node $NODE is $(node_state): slurmctld pid $(pid_from_file "$CTLD_PIDFILE"), slurmd pid $(pid_from_file "$SLURMD_PIDFILE")"
    echo "SLURM cluster ready in $(elapsed) s"
}

main "$@"
