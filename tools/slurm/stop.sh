#!/usr/bin/env bash
# tools/slurm/stop.sh -- stop the single-node SLURM test cluster started by
# tools/slurm/start.sh.
#
# Stops slurmd, slurmctld and munged by the pids recorded in
# $KOQA_SLURM_RUN_DIR (SIGTERM, wait, then SIGKILL).  Never uses pkill or
# killall: only processes whose pid we recorded *and* whose command name
# matches are signalled.  A munged that start.sh found already running (and
# therefore did not start) is left alone.  Idempotent: safe to run when
# nothing is running.  Configuration, state and logs are kept.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/slurm/common.sh
source "$SCRIPT_DIR/common.sh"

# Cancel all jobs of this (throw-away) cluster while slurmctld still runs, so
# that no slurmstepd / job processes outlive the daemons.  Bounded in time.
cancel_jobs() {
    [[ -n "$(running_pid "$CTLD_PIDFILE" slurmctld)" ]] || return 0
    local jobs i
    jobs="$(timeout 10 squeue -h -o %i 2>/dev/null || true)"
    [[ -n "$jobs" ]] || return 0
    log "cancelling jobs: ${jobs//$'\n'/ }"
    # shellcheck disable=SC2086  # one argument per job id
    timeout 10 scancel $jobs 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        [[ -z "$(timeout 10 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null || true)" ]] && return 0
        sleep 0.5
    done
    log "some jobs are still running/completing; stopping the daemons anyway"
}

main() {
    require_root
    cancel_jobs
    # Order matters: slurmd first (it talks to slurmctld on shutdown), munged
    # last (both slurm daemons authenticate through it).
    stop_daemon slurmd "$SLURMD_PIDFILE"
    stop_daemon slurmctld "$CTLD_PIDFILE"
    stop_daemon munged "$MUNGED_PIDFILE"
    # Forget which config the (now stopped) daemons were started with.
    rm -f "$KOQA_SLURM_RUN_DIR/config.sha256"
    log "stopped"
}

main "$@"
