-- bench/kamailio.lua: the Lua hook of bench/kamailio.cfg. Roughly the work probe.wasm does in callgate:
-- count INVITEs, read a few headers, add headers to the INVITE going out and to each reply.
local invites_seen = 0

function cg_on_request()
    local m = KSR.pv.get("$rm")
    return m
end

function cg_on_invite()
    invites_seen = invites_seen + 1
    local corr = KSR.pv.get("$hdr(X-Correlation-Id)")
    local reject = KSR.pv.get("$hdr(X-Probe-Reject-probe)")
    if reject ~= nil then
        KSR.sl.sl_send_reply(tonumber(reject), "probe rejects")
        KSR.x.exit()
    end
    KSR.hdr.append("X-Probe: probe\r\n")
    KSR.hdr.append("X-Probe-Count: " .. invites_seen .. "\r\n")
    KSR.hdr.append("X-Probe-State: " .. (corr or "") .. "\r\n")
end

function cg_on_response()
    local status = KSR.pv.get("$rs")
    local method = KSR.pv.get("$rm")
    KSR.hdr.append("X-Probe-Seen: probe:" .. tostring(method) .. ":" .. tostring(status) .. "\r\n")
end
