#!/usr/bin/env bash
# bench/kamailio.sh: Kamailio 5.6 (bench/kamailio.cfg + bench/kamailio.lua) as a cps.sh target.
#
#   bench/kamailio.sh            same as: bench/cps.sh kamailio   (the same steps, env and output)
#   . bench/kamailio.sh          (from lib.sh) defines start_kamailio
#
# Install: apt-get install kamailio kamailio-lua-modules   (Debian bookworm: 5.6.3)
# Tuning, as asked: -x tlsf -X tlsf (TLSF allocator for shm and pkg), -m 4096 (MiB shm),
# maxbuffer=4194304, children=1 (one UDP worker), in bench/kamailio.cfg.

start_kamailio() {
    command -v kamailio >/dev/null || die "kamailio not installed (apt-get install kamailio kamailio-lua-modules)"
    mkdir -p "$WORK/kamailio"
    spawn "$WORK/kamailio.log" kamailio -f "$BENCH_DIR/kamailio.cfg" -DD -E -x tlsf -X tlsf -m 4096 \
        -Y "$WORK/kamailio" -P "$WORK/kamailio/kamailio.pid" \
        -A "KAM_LISTEN=udp:$HOST:$KAM_PORT" -A "UAS_HOSTPORT=\"$HOST:$UAS_PORT\"" \
        -A "LUA_FILE=\"$BENCH_DIR/kamailio.lua\""
    TARGET_PID=$SPAWNED_PID
    TARGET_ADDR="$HOST:$KAM_PORT"
    wait_udp "$KAM_PORT" 15 || { cat "$WORK/kamailio.log" >&2; die "kamailio did not bind $TARGET_ADDR"; }
    sleep 1
    kill -0 "$TARGET_PID" 2>/dev/null || { cat "$WORK/kamailio.log" >&2; die "kamailio exited"; }
    log "kamailio $(kamailio -v 2>/dev/null | awk 'NR == 1 { print $3 }') on $TARGET_ADDR (pid $TARGET_PID, $(proc_tree "$TARGET_PID" | wc -l) processes)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    exec "$(dirname "$0")/cps.sh" kamailio "$@"
fi
