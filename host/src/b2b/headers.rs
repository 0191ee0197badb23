//! Which headers cross from one leg to the other, and helpers to read name-addr values.

use std::borrow::Cow;

use callgate_sip::message::{HeaderLine, SipMessage};

use crate::plugin::decision::{Header, HeaderEdits};

/// Headers that describe a hop, a dialog or framing on one leg. They never cross to the other leg:
/// the host writes its own for each leg. Those a plugin may not set, plus RSeq/RAck (RFC 3262).
fn is_leg_local(h: &HeaderLine<'_>) -> bool {
    // The host-owned ones are the stack's, which the parser marked.
    h.is_stack() || h.name.eq_ignore_ascii_case("rseq") || h.name.eq_ignore_ascii_case("rack")
}

/// Headers of A's INVITE that go to B's without any plugin asking: session timers (RFC 4028), so that
/// the parties refresh the session end to end and the gateway relays the refreshes.
pub(crate) const DEFAULT_PASS_THROUGH: &[&str] = &["Session-Expires", "Min-SE", "Allow"];

/// Header lines for a message the host writes: name and value, borrowed from the message they are
/// relayed from where possible (a relayed response's headers are not copied twice).
pub(crate) type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// The end-to-end headers of an in-dialog request or of a response relayed to the other leg: all but
/// the leg-local ones. A `Supported`/`Require` naming `100rel` is dropped, as the gateway does not
/// relay reliable provisionals.
pub(crate) fn end_to_end(msg: &SipMessage) -> Pairs<'_> {
    msg.header_lines()
        .filter(|h| !is_leg_local(h))
        .filter_map(|h| {
            let (n, v) = (h.name, h.value);
            let canonical = callgate_sip::message::canonical_name(n);
            if canonical.eq_ignore_ascii_case("supported")
                || canonical.eq_ignore_ascii_case("require")
            {
                let kept: Vec<&str> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.eq_ignore_ascii_case("100rel") && !t.is_empty())
                    .collect();
                return (!kept.is_empty()).then(|| (n.into(), kept.join(", ").into()));
            }
            Some((n.into(), v.into()))
        })
        .collect()
}

/// Applies plugin edits: removes every header named in `edits.remove`, then appends `edits.add`.
pub(crate) fn apply_edits<'a>(headers: &mut Pairs<'a>, edits: &'a HeaderEdits) {
    remove(headers, &edits.remove);
    add(headers, &edits.add);
}

/// Removes every header named in `names` (case-insensitive).
pub(crate) fn remove(headers: &mut Pairs<'_>, names: &[String]) {
    if !names.is_empty() {
        headers.retain(|(n, _)| !names.iter().any(|r| r.eq_ignore_ascii_case(n)));
    }
}

/// Appends plugin headers, borrowed: they are written once, into the message being built.
pub(crate) fn add<'a>(headers: &mut Pairs<'a>, add: &'a [Header]) {
    headers.extend(
        add.iter()
            .map(|h| (h.name.as_str().into(), h.value.as_str().into())),
    );
}

/// A From/To value without its `tag` parameter, as a new leg's From/To is written with our own tag.
pub(crate) fn without_tag(value: &str) -> String {
    let kept =
        |p: &&str| !p.is_empty() && !p.get(..4).is_some_and(|t| t.eq_ignore_ascii_case("tag="));
    // Parameters after the name-addr's closing bracket; for a bare URI, after the URI.
    let (head, params) = match value.rfind('>') {
        Some(i) => value.split_at(i + 1),
        None => value.split_once(';').unwrap_or((value, "")),
    };
    let mut out = String::with_capacity(value.len());
    out.push_str(head.trim());
    for p in params.split(';').map(str::trim).filter(kept) {
        out.push(';');
        out.push_str(p);
    }
    out
}

/// Host and port of a SIP URI (`sip:user@host:port;params`), for sending to it.
pub(crate) fn uri_host_port(uri: &str) -> Option<(&str, u16)> {
    let rest = uri.split_once(':')?.1;
    let rest = rest.trim_start_matches('<');
    let hostport = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let hostport = hostport.split([';', '?', '>']).next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = tail
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(5060);
        return Some((host, port));
    }
    match hostport.split_once(':') {
        Some((h, p)) => Some((h, p.parse().ok()?)),
        None => Some((hostport, 5060)),
    }
}

/// The URI inside a name-addr (`"A" <sip:a@h>;x=y` -> `sip:a@h`), or the value itself.
pub(crate) fn uri_of(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(s), Some(e)) if s < e => &value[s + 1..e],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// The standard reason phrase of a status code (RFC 3261 21 and friends).
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        415 => "Unsupported Media Type",
        420 => "Bad Extension",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        s if s < 200 => "Session Progress",
        s if s < 300 => "OK",
        s if s < 400 => "Redirect",
        s if s < 500 => "Client Error",
        s if s < 600 => "Server Error",
        _ => "Global Failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_removed_and_other_params_kept() {
        assert_eq!(
            without_tag("\"Alice\" <sip:alice@a.example>;tag=123;x=y"),
            "\"Alice\" <sip:alice@a.example>;x=y"
        );
        assert_eq!(without_tag("<sip:bob@b>"), "<sip:bob@b>");
        assert_eq!(without_tag("sip:bob@b;tag=9"), "sip:bob@b");
        assert_eq!(without_tag("sip:bob@b;x=1; TAG=9 ;y"), "sip:bob@b;x=1;y");
        assert_eq!(
            without_tag(" <sip:b@b;tag=in-uri>;Tag=2;tagx=3 "),
            "<sip:b@b;tag=in-uri>;tagx=3"
        );
        assert_eq!(without_tag("<sip:b@b>;tag"), "<sip:b@b>;tag");
        assert_eq!(without_tag("sip:b@b"), "sip:b@b");
    }

    #[test]
    fn host_and_port_of_uris() {
        assert_eq!(
            uri_host_port("sip:bob@127.0.0.1:5080"),
            Some(("127.0.0.1", 5080))
        );
        assert_eq!(
            uri_host_port("sip:127.0.0.1;transport=udp"),
            Some(("127.0.0.1", 5060))
        );
        assert_eq!(uri_host_port("sips:a@[::1]:5061"), Some(("::1", 5061)));
        assert_eq!(
            uri_host_port("<sip:gw@10.0.0.1:5062>"),
            Some(("10.0.0.1", 5062))
        );
    }

    #[test]
    fn uri_inside_name_addr() {
        assert_eq!(uri_of("\"A\" <sip:a@h>;x=y"), "sip:a@h");
        assert_eq!(uri_of("sip:a@h;tag=1"), "sip:a@h");
    }
}
