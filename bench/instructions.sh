#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per B2B call, counted by callgrind.
#
#   bench/instructions.sh                 (probe plugin on every hook)
#   CALLGATE_PLUGIN=none bench/instructions.sh
#
# CPU time on a shared 2-core VM moves by 10-20% from run to run; an instruction count does not.
# callgate runs under `valgrind --tool=callgrind` with instrumentation off; WARM calls warm it up
# (plugin compiled, pools filled), then instrumentation is switched on for CALLS calls at RATE
# calls/s (slow: valgrind runs the gateway ~50x slower), and the counts are dumped. Prints the
# instructions per call, grouped (parser, plugin JIT code, wasmtime, allocator, ...), and the
# callgrind file for `callgrind_annotate`. Kernel work (syscalls, wake-ups) is not counted.
#
# Env: CALLS=100 WARM=30 RATE=10  CALLGATE_PLUGIN=probe  NO_BUILD=1  BENCH_MAX_S=600
#      CALLGATE_BIN  CALLGATE_WORKERS  GW_PORT UAS_PORT UAC_PORT METRICS_PORT

. "$(dirname "$0")/lib.sh"

CALLS=${CALLS:-100}
WARM=${WARM:-30}
RATE=${RATE:-10}
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
start_watchdog "${BENCH_MAX_S:-600}"
[ "${NO_BUILD:-0}" = 1 ] || build_release

# valgrind cannot reserve the pooling allocator's default address space (10,000 instances):
# a small pool is enough for calls placed one at a time.
CALLGATE_EXTRA_TOML="[runtime]
max-instances = 200
${CALLGATE_EXTRA_TOML:-}"
OUT="$WORK/callgrind.out"
REAL_BIN=$CALLGATE_BIN
CALLGATE_BIN="$WORK/under-callgrind.sh"
cat >"$CALLGATE_BIN" <<SH
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT" "$REAL_BIN" "\$@"
SH
chmod +x "$CALLGATE_BIN"

START_WAIT_S=${START_WAIT_S:-300}
start_uas 600
start_callgate
VG_PID=$(pgrep -f "valgrind.bin --tool=callgrind --instr-atstart=no --callgrind-out-file=$OUT" | head -1)
[ -n "$VG_PID" ] || die "callgate under callgrind not found"

run_uac warm "$RATE" "$WARM" 0 "$WARM" $((WARM / RATE + 60))
callgrind_control -i on "$VG_PID" >/dev/null 2>&1 || die "callgrind_control -i on failed"
run_uac measured "$RATE" "$CALLS" 0 "$CALLS" $((CALLS / RATE + 120))
callgrind_control -i off "$VG_PID" >/dev/null 2>&1
callgrind_control -d "$VG_PID" >/dev/null 2>&1
OK=$(csv_field "$WORK/uac_measured.csv" "SuccessfulCall(C)")
[ "${OK:-0}" -gt 0 ] || die "no call completed under callgrind (see $WORK)"
[ "$OK" = "$CALLS" ] || log "only $OK of $CALLS calls completed; dividing by $OK"

F="$OUT.1"
[ -s "$F" ] || die "no callgrind dump at $F"
echo "# instructions per call (callgrind, user space), $OK calls, plugin ${CALLGATE_PLUGIN:-probe}"
python3 - "$F" "$OK" <<'PY'
import collections, re, subprocess, sys
out = subprocess.run(["callgrind_annotate", "--threshold=100", sys.argv[1]],
                     capture_output=True, text=True).stdout
calls = int(sys.argv[2])
# First match wins; symbols of JIT-compiled plugin code are unknown addresses.
groups = [("plugin code (JIT)", r"\?\?\?:0x0"), ("wasmtime", r"wasmtime|cranelift"),
          ("SIP parser", r"message::parse|from_utf8|memchr"), ("SIP builders", r"message::build"),
          ("SIP messages", r"callgate_sip::message"), ("transactions, dialogs", r"callgate_sip::(transaction|dialog)"),
          ("transport", r"callgate_sip::transport"),
          ("allocator", r"mi_|_mi|__rust_(alloc|dealloc|realloc)|raw_vec|malloc|free"),
          ("memcpy/memset", r"memmove|memcpy|memset|memcmp"), ("tokio", r"tokio|mio::"),
          ("tracing", r"tracing"), ("plugin host", r"callgate::plugin"), ("B2B", r"callgate::b2b"),
          ("fmt", r"fmt")]
total, by = 0, collections.Counter()
for line in out.splitlines():
    m = re.match(r"\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*)", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    n, fn = int(m.group(1).replace(",", "")), m.group(2)
    by[next((g for g, p in groups if re.search(p, fn)), "other")] += n
    total += n
for g, n in by.most_common():
    print(f"{g:24s} {n // calls:>9,d} {100 * n / total:5.1f}%")
print(f"{'total':24s} {total // calls:>9,d}")
PY
echo "# callgrind_annotate $F"
