# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts
# tools/slurm/common.sh -- helpers shared by start.sh and stop.sh.
#
# Sourced, not executed.  Everything here is about the throw-away,
# single-node SLURM test cluster that koqa's test suite and CI use; nothing
# in here is needed on a real cluster.

# --- Locations (may be overridden from the environment) -----------------------
KOQA_SLURM_RUN_DIR="${KOQA_SLURM_RUN_DIR:-/run/koqa-slurm}"   # our pid files
KOQA_SLURM_CONF_DIR="${KOQA_SLURM_CONF_DIR:-/etc/slurm}"      # slurm.conf & co
KOQA_SLURM_LOG_DIR="${KOQA_SLURM_LOG_DIR:-/var/log/slurm}"    # daemon logs

# Pid files.  slurmctld/slurmd/munged write these themselves (configured
# via SlurmctldPidFile / SlurmdPidFile / munged --pid-file).
CTLD_PIDFILE="$KOQA_SLURM_RUN_DIR/slurmctld.pid"
SLURMD_PIDFILE="$KOQA_SLURM_RUN_DIR/slurmd.pid"
MUNGED_PIDFILE="$KOQA_SLURM_RUN_DIR/munge/munged.pid"  # dir owned by munge

# --- Logging ------------------------------------------------------------------
log()  { printf '[koqa-slurm] %s\n' "$*" >&2; }
die()  { printf '[koqa-slurm] ERROR: %s\n' "$*" >&2; exit 1; }

require_root() {
    [[ "$(id -u)" -eq 0 ]] || die "must run as root (installs packages, starts daemons)"
}

# --- Pid handling ---------------------------------------------------------------

# pid_from_file FILE -> prints the pid stored in FILE (empty if none/garbage).
pid_from_file() {
    local file="$1" pid=""
    if [[ -r "$file" ]]; then
        read -r pid <"$file" || true   # no trailing newline is fine
    fi
    if [[ "$pid" =~ ^[0-9]+$ ]]; then printf '%s\n' "$pid"; fi
}

# pid_is PID NAME -> true if PID is alive and its command name is NAME.
# Checking the name guards against a stale pid file whose pid was reused by
# an unrelated process (we must never signal that one).  Zombies count as
# dead: the daemons are re-parented to PID 1, and in containers PID 1 is
# often not an init that reaps them promptly, so a killed daemon can linger
# as <defunct> while `kill -0` still succeeds.
pid_is() {
    local pid="$1" name="$2" comm="" stat="" state
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    read -r comm <"/proc/$pid/comm" 2>/dev/null || return 1
    [[ "$comm" == "$name" ]] || return 1
    read -r stat <"/proc/$pid/stat" 2>/dev/null || return 1
    state="${stat##*) }"      # field 3, after "pid (comm) "
    state="${state%% *}"
    [[ "$state" != Z && "$state" != X ]]
}

# running_pid PIDFILE NAME -> prints the pid if the daemon recorded in PIDFILE
# is alive, else nothing.
running_pid() {
    local pid
    pid="$(pid_from_file "$1")"
    if pid_is "$pid" "$2"; then printf '%s\n' "$pid"; fi
}

# stop_daemon NAME PIDFILE [GRACE_SECONDS]
# SIGTERM the recorded pid, wait up to GRACE seconds, then SIGKILL.
# Only ever signals the pid recorded in PIDFILE, and only if its command
# name matches NAME.  Removes the pid file.  Idempotent.
stop_daemon() {
    local name="$1" pidfile="$2" grace="${3:-15}" pid i
    pid="$(running_pid "$pidfile" "$name")"
    if [[ -z "$pid" ]]; then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        pid_is "$pid" "$name" || break
        sleep 0.1
    done
    if pid_is "$pid" "$name"; then
        log "$name (pid $pid) ignored SIGTERM for ${grace}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            pid_is "$pid" "$name" || break
            sleep 0.1
        done
        pid_is "$pid" "$name" && die "could not kill $name (pid $pid)"
    fi
    rm -f "$pidfile"
}
