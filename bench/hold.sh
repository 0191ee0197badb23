#!/usr/bin/env bash
# bench/hold.sh: gateway memory per established call.
#
# sipp UAC (tests/sipp/uac.xml) opens CALLS calls at RATE calls/s through callgate (probe.wasm on
# every hook) to the sipp UAS, each held HOLD_MS (-d) before its BYE. The script reads callgate's
# VmRSS (/proc/PID/status) idle, after a short warm-up, and at the plateau (callgate_calls_active
# >= PLATEAU_PCT % of CALLS), and prints (plateau - warm) / CALLS in KiB per established call.
# Then it waits (bounded) for the calls to end and prints RSS and active calls again.
#
# Env: CALLS=10000 RATE=1000 HOLD_MS=(ramp + 25 s) WARMUP=200 PLATEAU_PCT=99
#      MAX_INSTANCES=CALLS+1000 ([runtime] max-instances: one plugin instance per live call; the
#      default of 1000 would refuse calls past 1000 with 503; set MAX_INSTANCES=1000 to see that)
#      CALLGATE_PLUGIN=none (no plugin at all, for comparison)
#      NO_BUILD=1 RUST_LOG=warn BENCH_MAX_S (watchdog, default 300)
# Note: with one plugin, max-instances above ~7,000 makes callgate fail at start on x86-64 (wasmtime's
# pooling allocator reserves 4 memory slots per instance, each a 4 GiB+guard address-space reservation:
# 11,000 instances ask for 173 TiB > the 128 TiB user address space). See bench/README.md.

. "$(dirname "$0")/lib.sh"

CALLS=${CALLS:-10000}
RATE=${RATE:-1000}
RAMP_S=$(( (CALLS + RATE - 1) / RATE ))
HOLD_MS=${HOLD_MS:-$(( (RAMP_S + 25) * 1000 ))}
WARMUP=${WARMUP:-200}
PLATEAU_PCT=${PLATEAU_PCT:-99}
if [ "${CALLGATE_PLUGIN:-probe}" = none ]; then
    MAX_INSTANCES=${MAX_INSTANCES:-1000}    # no plugin: no instance per call (the engine is still built)
else
    MAX_INSTANCES=${MAX_INSTANCES:-$((CALLS + 1000))}
fi
start_watchdog "${BENCH_MAX_S:-300}"

CALLGATE_EXTRA_TOML="[runtime]
max-instances = $MAX_INSTANCES"

echo "# hold: $(date -u +%FT%TZ), $NCPU CPU cores shared by callgate and both sipps; $CALLS calls at $RATE/s held ${HOLD_MS} ms; max-instances=$MAX_INSTANCES; plugin: ${CALLGATE_PLUGIN:-probe}"
[ "${NO_BUILD:-0}" = 1 ] || build_release
start_uas $(( RAMP_S + HOLD_MS / 1000 + 120 ))
start_callgate
sleep 1

st() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
rss_idle=$(st "$TARGET_PID" VmRSS)
echo "RSS idle:            ${rss_idle} KiB (threads: $(st "$TARGET_PID" Threads))"

if [ "$WARMUP" -gt 0 ]; then
    run_uac warmup 200 "$WARMUP" 0 1000 60
    sleep 2
    echo "warm-up:             $WARMUP short calls, $(csv_field "$WORK/uac_warmup.csv" 'SuccessfulCall(C)') ok"
fi
rss_warm=$(st "$TARGET_PID" VmRSS)
echo "RSS after warm-up:   ${rss_warm} KiB; active=$(metric callgate_calls_active) actors=$(metric callgate_call_actors)"

uac_max=$(( RAMP_S + HOLD_MS / 1000 + 60 ))
( run_uac hold "$RATE" "$CALLS" "$HOLD_MS" $((CALLS + 100)) "$uac_max" ) &
UAC_BG=$!
BG_PIDS+=("$UAC_BG")

# Wait for the plateau: active calls >= PLATEAU_PCT % of CALLS, or the ramp plus 30 s.
want=$(( CALLS * PLATEAU_PCT / 100 ))
deadline=$(( $(date +%s) + RAMP_S + 30 ))
peak=0
while :; do
    a=$(metric callgate_calls_active)
    [ "$a" -gt "$peak" ] && peak=$a
    [ "$a" -ge "$want" ] && break
    [ "$(date +%s)" -ge "$deadline" ] && { log "no plateau: active=$a (want $want)"; break; }
    kill -0 "$TARGET_PID" 2>/dev/null || die "callgate died (see $WORK/callgate.log)"
    sleep 0.5
done
sleep 1
active=$(metric callgate_calls_active)
actors=$(metric callgate_call_actors)
rss_plat=$(st "$TARGET_PID" VmRSS)
hwm=$(st "$TARGET_PID" VmHWM)
refused=$(metrics_snapshot | awk '/^callgate_calls_total/ && !/answered/ { s += $2 } END { print s + 0 }')
echo "plateau:             active=$active actors=$actors (peak seen $peak) ended-not-answered=$refused"
echo "RSS at plateau:      ${rss_plat} KiB (VmHWM ${hwm} KiB, VmSize $(st "$TARGET_PID" VmSize) KiB, threads $(st "$TARGET_PID" Threads))"
per_call=$(awk -v a="$rss_plat" -v b="$rss_warm" -v n="$active" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "-" }')
per_call_idle=$(awk -v a="$rss_plat" -v b="$rss_idle" -v n="$active" 'BEGIN { if (n > 0) printf "%.1f", (a - b) / n; else print "-" }')
echo "memory per established call: ${per_call} KiB (from the warm-up baseline; ${per_call_idle} KiB from idle) over $active active calls; goal < 16 KiB"
echo "sipp UAS RSS at plateau: $(rss_kib "$UAS_PID") KiB (for scale)"

# Let the calls end (BYE after HOLD_MS), bounded.
log "waiting for the calls to end (up to $((uac_max + 15)) s)"
end_deadline=$(( $(date +%s) + uac_max + 15 ))
while kill -0 "$UAC_BG" 2>/dev/null && [ "$(date +%s)" -lt "$end_deadline" ]; do sleep 1; done
sleep 2
ok=$(csv_field "$WORK/uac_hold.csv" 'SuccessfulCall(C)')
fl=$(csv_field "$WORK/uac_hold.csv" 'FailedCall(C)')
rt=$(csv_field "$WORK/uac_hold.csv" 'Retransmissions(C)')
echo "after:               sipp UAC ok=$ok failed=$fl retransmissions=$rt; gateway active=$(metric callgate_calls_active) actors=$(metric callgate_call_actors) retransmissions=$(metric callgate_sip_retransmissions_total)"
echo "RSS after the calls: $(st "$TARGET_PID" VmRSS) KiB"
if grep -qE 'WARN|ERROR' "$WORK/callgate.log"; then
    log "callgate log has $(grep -cE 'WARN|ERROR' "$WORK/callgate.log") WARN/ERROR lines ($WORK/callgate.log), first:"
    grep -m 5 -E 'WARN|ERROR' "$WORK/callgate.log" >&2
fi
