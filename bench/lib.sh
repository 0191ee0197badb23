# shellcheck shell=bash
# bench/lib.sh: shared by cps.sh, hold.sh and kamailio.sh (source it, do not run it).
#
# Holds everything the scripts have in common: ports, process start/stop with cleanup on exit,
# CPU/RSS sampling from /proc, Prometheus and sipp-CSV readers, the sipp UAS, the callgate target,
# and the stepped-rate driver (run_steps) that cps.sh uses for every target.
#
# Everything is on 127.0.0.1. Every load is bounded: sipp by -m and -timeout, each sipp run also by
# timeout(1), and the whole script by a watchdog (BENCH_MAX_S).

set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SIPP_DIR="$ROOT/tests/sipp"          # the colleague's scenarios: read, never edited

HOST=127.0.0.1
GW_PORT=${GW_PORT:-15060}            # callgate (UDP)
KAM_PORT=${KAM_PORT:-15062}          # kamailio (UDP)
UAS_PORT=${UAS_PORT:-15080}          # sipp UAS
UAC_PORT=${UAC_PORT:-15090}          # sipp UAC
METRICS_PORT=${METRICS_PORT:-19190}  # callgate Prometheus endpoint
SOCK_BUF=${SOCK_BUF:-4194304}        # sipp -buff_size (same as kamailio's maxbuffer; kernel rmem_max caps it)
CALLGATE_BIN="${CALLGATE_BIN:-$ROOT/target/release/callgate}"
PROBE_WASM="$ROOT/target/plugins/probe.wasm"
CLK_TCK=$(getconf CLK_TCK)
NCPU=$(nproc)

WORK=${WORK:-$(mktemp -d /tmp/callgate-bench.XXXXXX)}
mkdir -p "$WORK"
declare -a BG_PIDS=()

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Process bookkeeping

# Every background process goes through spawn so the exit trap can end it (by its PID only).
# Usage: spawn LOGFILE cmd args...   -> sets SPAWNED_PID
spawn() {
    local logf=$1; shift
    "$@" </dev/null >"$logf" 2>&1 &
    SPAWNED_PID=$!
    BG_PIDS+=("$SPAWNED_PID")
}

# The PIDs of P and all its descendants (kamailio forks workers; timeout(1) wraps sipp).
proc_tree() {
    local p=$1 c
    echo "$p"
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do proc_tree "$c"; done
}

stop_pid() {
    local p=$1 i tree
    kill -0 "$p" 2>/dev/null || return 0
    tree=$(proc_tree "$p")
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    # Whatever of that tree is still alive (the parent, or children it left behind).
    for i in $tree; do kill -KILL "$i" 2>/dev/null; done
    wait "$p" 2>/dev/null
    return 0
}

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${BG_PIDS[@]}"; do stop_pid "$p"; done
    [ -n "${WATCHDOG_PID:-}" ] && kill "$WATCHDOG_PID" 2>/dev/null
    log "logs and CSVs kept in $WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# Bounds the whole script: after BENCH_MAX_S seconds the script is sent SIGTERM (-> cleanup).
start_watchdog() {
    local max=$1 me=$$
    ( sleep "$max"; log "watchdog: ${max}s reached, stopping"; kill -TERM "$me" ) >/dev/null 2>&1 &
    WATCHDOG_PID=$!
}

# ---------------------------------------------------------------------------------------------
# Measurements

# utime+stime in clock ticks, summed over P and its descendants (fields 14,15 of /proc/PID/stat,
# counted after the ')' that closes the command name); `cpu_ticks P sys`: stime alone.
cpu_ticks() {
    local total=0 p rest mode=${2:-all}
    for p in $(proc_tree "$1"); do
        rest=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
        # after ')': field 3 is state, so utime/stime (14/15) are words 12/13
        set -- $rest
        if [ "$mode" = sys ]; then
            total=$((total + ${13}))
        else
            total=$((total + ${12} + ${13}))
        fi
    done
    echo "$total"
}

# VmRSS (KiB) of P and its descendants.
rss_kib() {
    local total=0 p v
    for p in $(proc_tree "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# us of CPU per call: us_per_call TICKS CALLS
us_per_call() {
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-" }'
}

# Sum of a Prometheus metric (all label sets) from the gateway, or of those matching a label filter.
# Usage: metric NAME [LABEL_SUBSTRING]
metric() {
    curl -s --max-time 2 "http://$HOST:$METRICS_PORT/metrics" 2>/dev/null |
        awk -v n="$1" -v f="${2:-}" '
            $0 !~ /^#/ { split($1, a, "{"); if (a[1] == n && index($1, f)) s += $2 }
            END { printf "%d\n", s }'
}
metrics_snapshot() { curl -s --max-time 2 "http://$HOST:$METRICS_PORT/metrics" 2>/dev/null; }

# A field of the last row of a sipp -trace_stat CSV (';'-separated, header on the first line).
# Usage: csv_field FILE 'SuccessfulCall(C)'
csv_field() {
    [ -s "$1" ] || { echo 0; return; }
    awk -F';' -v k="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == k) c = i } END { if (c) print $c + 0; else print 0 }' "$1"
}

wait_udp() {  # wait_udp PORT SECONDS
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        ss -Hlun "sport = :$1" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Processes under test

build_release() {
    log "building: cargo build --release -p callgate (also builds target/plugins/*.wasm)"
    (cd "$ROOT" && cargo build --release -p callgate) >"$WORK/build.log" 2>&1 ||
        { tail -30 "$WORK/build.log" >&2; die "build failed (see $WORK/build.log)"; }
    [ -x "$CALLGATE_BIN" ] || die "no $CALLGATE_BIN"
    [ -f "$PROBE_WASM" ] || die "no $PROBE_WASM"
}

# sipp UAS (tests/sipp/uas.xml), for the whole run; its cumulative stats go to $WORK/uas.csv every second.
start_uas() {
    local max=${1:-3600}
    spawn "$WORK/uas.log" timeout --kill-after=5 "$max" \
        sipp -sf "$SIPP_DIR/uas.xml" -i "$HOST" -p "$UAS_PORT" -nostdin -buff_size "$SOCK_BUF" \
        -trace_stat -stf "$WORK/uas.csv" -fd 1 -trace_err -error_file "$WORK/uas_errors.log"
    UAS_PID=$SPAWNED_PID
    wait_udp "$UAS_PORT" 10 || die "sipp UAS did not bind $HOST:$UAS_PORT (see $WORK/uas.log)"
    log "sipp UAS on $HOST:$UAS_PORT (pid $UAS_PID)"
}

# callgate, release build, probe.wasm on every hook, metrics on $METRICS_PORT.
start_callgate() {
    cat >"$WORK/callgate.toml" <<EOF
[listen]
udp = "$HOST:$GW_PORT"

[routing]
default-route = "sip:$HOST:$UAS_PORT"

[metrics]
listen = "$HOST:$METRICS_PORT"
EOF
    # CALLGATE_PLUGIN names the plugin under target/plugins/ (default probe, which takes every hook);
    # none runs the gateway without any plugin (for comparison).
    if [ "${CALLGATE_PLUGIN:-probe}" != none ]; then
        printf '\n[[plugins]]\nname = "%s"\npath = "%s"\n' "${CALLGATE_PLUGIN:-probe}" \
            "$ROOT/target/plugins/${CALLGATE_PLUGIN:-probe}.wasm" >>"$WORK/callgate.toml"
    fi
    # CALLGATE_WORKERS: the gateway's worker threads ([threads] workers; unset: one per core).
    # CALLGATE_UDP_RECEIVERS: its UDP receive threads ([threads] udp-receivers; unset: one per core).
    if [ -n "${CALLGATE_WORKERS:-}${CALLGATE_UDP_RECEIVERS:-}" ]; then
        printf '\n[threads]\n' >>"$WORK/callgate.toml"
        [ -n "${CALLGATE_WORKERS:-}" ] && printf 'workers = %s\n' "$CALLGATE_WORKERS" >>"$WORK/callgate.toml"
        [ -n "${CALLGATE_UDP_RECEIVERS:-}" ] && printf 'udp-receivers = %s\n' "$CALLGATE_UDP_RECEIVERS" >>"$WORK/callgate.toml"
    fi
    [ -n "${CALLGATE_EXTRA_TOML:-}" ] && printf '\n%s\n' "$CALLGATE_EXTRA_TOML" >>"$WORK/callgate.toml"
    spawn "$WORK/callgate.log" env RUST_LOG="${RUST_LOG:-warn}" "$CALLGATE_BIN" --config "$WORK/callgate.toml"
    TARGET_PID=$SPAWNED_PID
    TARGET_ADDR="$HOST:$GW_PORT"
    local i
    # START_WAIT_S: how long the gateway may take to come up (under valgrind: much longer).
    for i in $(seq 1 $((${START_WAIT_S:-10} * 10))); do
        curl -s --max-time 1 "http://$HOST:$METRICS_PORT/metrics" >/dev/null 2>&1 && break
        kill -0 "$TARGET_PID" 2>/dev/null || { cat "$WORK/callgate.log" >&2; die "callgate exited"; }
        sleep 0.1
    done
    wait_udp "$GW_PORT" 5 || die "callgate did not bind $TARGET_ADDR"
    HAS_METRICS=1
    log "callgate on $TARGET_ADDR (pid $TARGET_PID), metrics on $HOST:$METRICS_PORT, plugin: ${CALLGATE_PLUGIN:-probe}"
}

stop_target() {
    [ -n "${TARGET_PID:-}" ] && stop_pid "$TARGET_PID"
    TARGET_PID=
}

# start_target callgate|kamailio
start_target() {
    HAS_METRICS=0
    case $1 in
        callgate) start_callgate ;;
        kamailio) . "$BENCH_DIR/kamailio.sh"; start_kamailio ;;
        *) die "unknown target '$1' (callgate | kamailio)" ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# One sipp UAC run (tests/sipp/uac.xml), bounded by -m, -timeout and timeout(1).
# Usage: run_uac TAG RATE CALLS CALL_MS LIMIT MAX_S [extra sipp args]
# Leaves $WORK/uac_TAG.csv (stats), $WORK/uac_TAG.times (CPU of sipp, from bash's `times`).
run_uac() {
    local tag=$1 rate=$2 calls=$3 call_ms=$4 limit=$5 max=$6; shift 6
    rm -f "$WORK/uac_$tag.csv" "$WORK/uac_$tag.times"
    timeout --kill-after=5 $((max + 10)) bash -c '
        out=$1; shift
        sipp "$@"; rc=$?
        times >"$out"
        exit $rc' _ "$WORK/uac_$tag.times" \
        -sf "$SIPP_DIR/uac.xml" -s bench "$TARGET_ADDR" -i "$HOST" -p "$UAC_PORT" \
        -r "$rate" -rp 1000 -m "$calls" -l "$limit" -d "$call_ms" \
        -nostdin -buff_size "$SOCK_BUF" -timeout "${max}s" \
        -trace_stat -stf "$WORK/uac_$tag.csv" -fd 1 \
        -trace_err -error_file "$WORK/uac_${tag}_errors.log" "$@" \
        </dev/null >"$WORK/uac_$tag.log" 2>&1 &
    # In the background + wait, so that a signal to this script (watchdog, kill) is handled at once.
    local pid=$!
    BG_PIDS+=("$pid")
    wait "$pid"
}

# CPU ticks of the sipp run recorded by run_uac (second line of `times`: children's user and sys).
uac_ticks() {
    awk -v hz="$CLK_TCK" 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
        printf "%d\n", s * hz + 0.5 }' "$WORK/uac_$1.times" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------------------------
# The stepped-rate driver. Needs a started UAS and target (TARGET_PID, TARGET_ADDR).
# Usage: run_steps TARGET_NAME
# Env: STEPS ("250 500 1000 ..."), DURATION (s per step), CALL_MS (-d), MAX_FAIL_PCT, MAX_RETR_PCT,
#      MIN_ACHIEVED_PCT, SETTLE (s after a step before reading counters), REPORT_AT (rate whose us/call
#      is reported at the end).
# Prints one row per step; appends rows to $WORK/steps_TARGET.tsv; sets MAX_SUSTAINED and US_AT_REPORT.
STEPS=${STEPS:-"250 500 1000 2000 3000 4000 5000 6000 7000 8000 10000"}
DURATION=${DURATION:-5}
CALL_MS=${CALL_MS:-0}
MAX_FAIL_PCT=${MAX_FAIL_PCT:-0.1}
MAX_RETR_PCT=${MAX_RETR_PCT:-1}
MIN_ACHIEVED_PCT=${MIN_ACHIEVED_PCT:-90}
SETTLE=${SETTLE:-2}
REPORT_AT=${REPORT_AT:-4000}

STEP_HDR=$(printf '%-8s %6s %7s %7s %6s %6s %6s %6s %9s %8s %7s %8s %8s  %s' \
    target offered calls ok fail retrUAC retrUAS retrGW 'calls/s' 'gw_us' 'gw_sys%' 'uac_us' 'uas_us' verdict)

run_steps() {
    local name=$1 rate calls max t0 t1 wall ok failc fail rU0 rU1 rG0 rG1 g0 g1 s0 s1 u gs0 gs1
    local retr_uac retr_uas retr_gw achieved gw_us gw_sys uac_us uas_us verdict bad gwo0 gwo1 line
    local tsv="$WORK/steps_$name.tsv"
    MAX_SUSTAINED=0; US_AT_REPORT=-
    # Idle cost of the target for 2 s (timers, tick loops).
    g0=$(cpu_ticks "$TARGET_PID"); sleep 2; g1=$(cpu_ticks "$TARGET_PID")
    log "$name idle CPU: $(awk -v t=$((g1 - g0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.1f%% of one core", t / hz / 2 * 100 }')"
    echo "$STEP_HDR"
    for rate in $STEPS; do
        calls=$((rate * DURATION))
        max=$((DURATION * 3 + 40))          # room for a 32 s INVITE timeout at the tail
        rU0=$(csv_field "$WORK/uas.csv" 'Retransmissions(C)')
        if [ "$HAS_METRICS" = 1 ]; then
            rG0=$(metric callgate_sip_retransmissions_total)
            gwo0=$(metrics_snapshot | awk '/^callgate_calls_total/ && !/answered/ { s += $2 } END { print s + 0 }')
        fi
        g0=$(cpu_ticks "$TARGET_PID"); gs0=$(cpu_ticks "$TARGET_PID" sys); s0=$(cpu_ticks "$UAS_PID")
        t0=$(date +%s.%N)
        run_uac "$name-$rate" "$rate" "$calls" "$CALL_MS" $((rate * 4 + 1000)) "$max"
        t1=$(date +%s.%N)
        sleep "$SETTLE"   # let the UAS's last BYE 200s and its 1 s stats row land
        g1=$(cpu_ticks "$TARGET_PID"); gs1=$(cpu_ticks "$TARGET_PID" sys); s1=$(cpu_ticks "$UAS_PID")
        rU1=$(csv_field "$WORK/uas.csv" 'Retransmissions(C)')
        u="$WORK/uac_$name-$rate.csv"
        ok=$(csv_field "$u" 'SuccessfulCall(C)')
        failc=$(csv_field "$u" 'FailedCall(C)')
        fail=$((calls - ok))                 # anything not successful (failed or never finished)
        retr_uac=$(csv_field "$u" 'Retransmissions(C)')
        retr_uas=$((rU1 - rU0))
        retr_gw=-
        if [ "$HAS_METRICS" = 1 ]; then
            rG1=$(metric callgate_sip_retransmissions_total)
            retr_gw=$((rG1 - rG0))
            gwo1=$(metrics_snapshot | awk '/^callgate_calls_total/ && !/answered/ { s += $2 } END { print s + 0 }')
        fi
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
        achieved=$(awk -v n="$ok" -v w="$wall" 'BEGIN { printf "%.0f", n / w }')
        gw_us=$(us_per_call $((g1 - g0)) "$ok")
        # The kernel's share of the target's CPU (sockets, wake-ups, page faults).
        gw_sys=$(awk -v s=$((gs1 - gs0)) -v t=$((g1 - g0)) 'BEGIN { if (t > 0) printf "%.0f", s * 100 / t; else print "-" }')
        uac_us=$(us_per_call "$(uac_ticks "$name-$rate")" "$ok")
        uas_us=$(us_per_call $((s1 - s0)) "$ok")
        bad=$(awk -v f="$fail" -v ra="$retr_uac" -v rs="$retr_uas" -v rg="$retr_gw" -v n="$calls" \
            -v a="$achieved" -v r="$rate" -v mf="$MAX_FAIL_PCT" -v mr="$MAX_RETR_PCT" -v ma="$MIN_ACHIEVED_PCT" '
            BEGIN {
                why = ""
                if (f * 100 > mf * n) why = why "fail>" mf "% "
                if ((ra + rs) * 100 > mr * n) why = why "sipp-retr>" mr "% "
                if (rg != "-" && rg * 100 > mr * n) why = why "gw-retr>" mr "% "
                if (a * 100 < ma * r) why = why "achieved<" ma "% "
                print why
            }')
        if [ -z "$bad" ]; then verdict=ok; MAX_SUSTAINED=$rate; else verdict="STOP: $bad"; fi
        if [ "$rate" = "$REPORT_AT" ]; then
            US_AT_REPORT=$gw_us; [ -n "$bad" ] && US_AT_REPORT="$gw_us (step failed)"
        fi
        line=$(printf '%-8s %6s %7s %7s %6s %6s %6s %6s %9s %8s %7s %8s %8s  %s' \
            "$name" "$rate" "$calls" "$ok" "$fail" "$retr_uac" "$retr_uas" "$retr_gw" "$achieved" \
            "$gw_us" "$gw_sys" "$uac_us" "$uas_us" "$verdict")
        echo "$line"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rate" "$calls" "$ok" \
            "$fail" "$failc" "$retr_uac" "$retr_uas" "$retr_gw" "$achieved" "$gw_us" "$gw_sys" "$uac_us" "$uas_us" "$verdict" >>"$tsv"
        if [ "$HAS_METRICS" = 1 ] && [ "$((gwo1 - gwo0))" -gt 0 ]; then
            log "  gateway ended $((gwo1 - gwo0)) calls with an outcome other than answered this step"
        fi
        if [ -n "$bad" ]; then
            [ -s "$WORK/uac_${name}-${rate}_errors.log" ] && log "  sipp UAC errors: $WORK/uac_${name}-${rate}_errors.log"
            break
        fi
        kill -0 "$TARGET_PID" 2>/dev/null || { log "$name died"; break; }
        # let the UAS's 10 s linger (timewait after the BYE) drain a little between steps
        sleep "${STEP_GAP:-1}"
    done
}
