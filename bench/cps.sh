#!/usr/bin/env bash
# bench/cps.sh: calls per second through a SIP target, in rising steps, with CPU per call.
#
#   bench/cps.sh [callgate|kamailio]        (default: callgate)
#   BOTH=1 bench/cps.sh                     (callgate, then kamailio, then both summaries side by side)
#
# Per step: sipp UAC (tests/sipp/uac.xml, -d CALL_MS) -> target -> sipp UAS (tests/sipp/uas.xml),
# RATE calls/s for DURATION s (-m RATE*DURATION). Stops at the first step where more than
# MAX_FAIL_PCT % of calls fail, retransmissions exceed MAX_RETR_PCT % of calls, or the achieved rate
# is under MIN_ACHIEVED_PCT % of the offered one.
#
# Env: STEPS="250 500 1000 2000 3000 4000 5000 6000 7000 8000 10000"  DURATION=5  CALL_MS=0
#      MAX_FAIL_PCT=0.1  MAX_RETR_PCT=1  MIN_ACHIEVED_PCT=90  REPORT_AT=4000  SETTLE=2
#      NO_BUILD=1 (skip cargo build)  RUST_LOG=warn  GW_PORT KAM_PORT UAS_PORT UAC_PORT METRICS_PORT
#      BENCH_MAX_S (watchdog for the whole script, default 1800)
#      CALLGATE_WORKERS (the gateway's worker threads, default 0: one per core)
#      CALLGATE_UDP_RECEIVERS (its UDP receive threads, default 0: one per core)
#      CALLGATE_PLUGIN (plugin under target/plugins/, default probe; none: no plugin)
#      CALLGATE_BIN (the gateway binary, default target/release/callgate)

. "$(dirname "$0")/lib.sh"

TARGETS=${1:-callgate}
[ "${BOTH:-0}" = 1 ] && TARGETS="callgate kamailio"
start_watchdog "${BENCH_MAX_S:-1800}"

echo "# cps: $(date -u +%FT%TZ), $(uname -r), $NCPU CPU cores shared by the target, sipp UAC and sipp UAS"
echo "# steps: $STEPS; ${DURATION}s each; call length -d ${CALL_MS} ms; stop at fail>${MAX_FAIL_PCT}% or retr>${MAX_RETR_PCT}% or achieved<${MIN_ACHIEVED_PCT}%"
echo "# *_us = CPU (utime+stime, CLK_TCK=$CLK_TCK) per successful call of that process (target incl. all its threads/processes)"
echo "# retrUAC/retrUAS = sipp Retransmissions; retrGW = delta of callgate_sip_retransmissions_total; fail = calls - successful"

case " $TARGETS " in *" callgate "*) [ "${NO_BUILD:-0}" = 1 ] || build_release ;; esac
start_uas 3600

declare -A SUMMARY=()
for t in $TARGETS; do
    start_target "$t"
    run_steps "$t"
    stop_target
    SUMMARY[$t]="max sustained ${MAX_SUSTAINED} calls/s; target CPU at ${REPORT_AT} calls/s: ${US_AT_REPORT} us/call"
    if [ "$t" = callgate ] && [ -s "$WORK/callgate.log" ]; then
        log "callgate log: $(wc -l <"$WORK/callgate.log") lines ($WORK/callgate.log); first WARN/ERROR lines:"
        grep -m 5 -E 'WARN|ERROR' "$WORK/callgate.log" >&2
    fi
    sleep 1
done

echo
echo "# summary ($NCPU cores shared by all processes; machine may be busy: figures are noisy)"
for t in $TARGETS; do
    if [ "$t" = callgate ]; then
        echo "$t: ${SUMMARY[$t]} (goal: <= 100 us of gateway CPU per full B2B call)"
    else
        echo "$t: ${SUMMARY[$t]}"
    fi
done
echo "# per-step rows (tsv): $WORK/steps_*.tsv"
