//! Checks applied to everything a plugin hands back before the host uses it, so that no plugin can
//! make the gateway emit a malformed message or take over a header the SIP layer owns.

use super::decision::{
    Forward, Header, HeaderEdits, InviteDecision, RecordingDecision, ReferDecision,
};

/// Whether a header describes hops, the dialog or framing: the host writes it and no plugin may add
/// or remove it. These are the headers the SIP stack indexes and writes itself, compact forms and
/// any case included.
pub(crate) use callgate_sip::message::is_stack_header as is_host_owned;

/// Why the host refused part of a plugin's decision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The header belongs to the host.
    #[error("header `{0}` is owned by the gateway and cannot be set or removed by a plugin")]
    HostOwnedHeader(String),
    /// The name is not an RFC 3261 token.
    #[error("header name `{}` is not a SIP token", .0.escape_debug())]
    BadHeaderName(String),
    /// The value would break the message framing.
    #[error("value of header `{0}` contains CR, LF or NUL")]
    BadHeaderValue(String),
    /// Not a SIP or SIPS URI.
    #[error("`{}` is not a SIP or SIPS URI", .0.escape_debug())]
    BadUri(String),
    /// A status outside the range the decision allows.
    #[error("status {status} is not allowed here (expected {range})")]
    BadStatus {
        /// What the plugin returned.
        status: u16,
        /// What the decision allows, for people.
        range: &'static str,
    },
    /// A redirect without contacts.
    #[error("a redirect needs at least one contact")]
    NoContacts,
}

impl Refusal {
    /// True if only the offending header is dropped; otherwise the whole decision is refused and the
    /// plugin's failure policy applies.
    pub fn is_header_only(&self) -> bool {
        matches!(
            self,
            Refusal::HostOwnedHeader(_) | Refusal::BadHeaderName(_) | Refusal::BadHeaderValue(_)
        )
    }
}

/// RFC 3261 25.1 `token` characters.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// True if `name` is a SIP token.
pub fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_char)
}

/// Checks a header name for use in an add or remove.
pub fn check_header_name(name: &str) -> Result<(), Refusal> {
    if !is_token(name) {
        return Err(Refusal::BadHeaderName(name.to_owned()));
    }
    if is_host_owned(name) {
        return Err(Refusal::HostOwnedHeader(name.to_owned()));
    }
    Ok(())
}

/// Checks a header a plugin wants added.
pub fn check_header(h: &Header) -> Result<(), Refusal> {
    check_header_name(&h.name)?;
    if h.value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(Refusal::BadHeaderValue(h.name.clone()));
    }
    Ok(())
}

/// Checks that `uri` is a SIP or SIPS URI the host can put on a request line or in a Contact:
/// scheme, a non-empty host part, and no character that would break the start line or a header.
pub fn check_sip_uri(uri: &str) -> Result<(), Refusal> {
    let bad = || Refusal::BadUri(uri.to_owned());
    let rest = strip_scheme(uri).ok_or_else(bad)?;
    if rest
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'))
    {
        return Err(bad());
    }
    let host_part = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host_part.split([';', '?']).next().unwrap_or("");
    let host = host.strip_prefix('[').map_or_else(
        || host.split(':').next().unwrap_or(""),
        |v6| v6.split(']').next().unwrap_or(""),
    );
    if host.is_empty() {
        return Err(bad());
    }
    Ok(())
}

fn strip_scheme(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")).then_some(rest)
}

/// Keeps the headers that pass `check_header`, reporting each refused one to `refused`.
fn retain_headers(headers: &mut Vec<Header>, refused: &mut Vec<Refusal>) {
    headers.retain(|h| match check_header(h) {
        Ok(()) => true,
        Err(e) => {
            refused.push(e);
            false
        }
    });
}

fn retain_names(names: &mut Vec<String>, refused: &mut Vec<Refusal>) {
    names.retain(|n| match check_header_name(n) {
        Ok(()) => true,
        Err(e) => {
            refused.push(e);
            false
        }
    });
}

/// The outcome of checking one decision: the usable decision with refused headers dropped, and
/// what was dropped.
#[derive(Debug)]
pub struct Checked<T> {
    /// The decision, cleaned.
    pub value: T,
    /// Headers dropped from it.
    pub dropped: Vec<Refusal>,
}

/// Checks a forward decision: refused headers are dropped; a bad target refuses the decision.
pub fn check_forward(mut f: Forward) -> Result<Checked<Forward>, Refusal> {
    if let Some(t) = &f.target {
        check_sip_uri(t)?;
    }
    let mut dropped = Vec::new();
    retain_headers(&mut f.invite_headers, &mut dropped);
    retain_headers(&mut f.response_headers, &mut dropped);
    retain_names(&mut f.pass_through, &mut dropped);
    retain_names(&mut f.remove_headers, &mut dropped);
    Ok(Checked { value: f, dropped })
}

/// Checks an `on-invite` decision.
pub fn check_invite(d: InviteDecision) -> Result<Checked<InviteDecision>, Refusal> {
    let mut dropped = Vec::new();
    let value = match d {
        InviteDecision::Forward(f) => {
            let c = check_forward(f)?;
            dropped = c.dropped;
            InviteDecision::Forward(c.value)
        }
        InviteDecision::Reject(mut r) => {
            if !(400..=699).contains(&r.status) {
                return Err(Refusal::BadStatus {
                    status: r.status,
                    range: "400-699",
                });
            }
            if r.reason.as_deref().is_some_and(|s| !is_reason_phrase(s)) {
                r.reason = None;
            }
            retain_headers(&mut r.headers, &mut dropped);
            InviteDecision::Reject(r)
        }
        InviteDecision::Redirect(mut r) => {
            if !(300..=399).contains(&r.status) {
                return Err(Refusal::BadStatus {
                    status: r.status,
                    range: "300-399",
                });
            }
            if r.contacts.is_empty() {
                return Err(Refusal::NoContacts);
            }
            for c in &r.contacts {
                check_sip_uri(c)?;
            }
            retain_headers(&mut r.headers, &mut dropped);
            InviteDecision::Redirect(r)
        }
    };
    Ok(Checked { value, dropped })
}

/// Checks header edits for a relayed response.
pub fn check_edits(mut e: HeaderEdits) -> Checked<HeaderEdits> {
    let mut dropped = Vec::new();
    retain_headers(&mut e.add, &mut dropped);
    retain_names(&mut e.remove, &mut dropped);
    Checked { value: e, dropped }
}

/// Checks a REFER decision.
pub fn check_refer(d: ReferDecision) -> Result<Checked<ReferDecision>, Refusal> {
    let mut dropped = Vec::new();
    let value = match d {
        ReferDecision::Reject(s) if !(400..=699).contains(&s) => {
            return Err(Refusal::BadStatus {
                status: s,
                range: "400-699",
            });
        }
        ReferDecision::Perform {
            target,
            mut headers,
        } => {
            if let Some(t) = &target {
                check_sip_uri(t)?;
            }
            retain_headers(&mut headers, &mut dropped);
            ReferDecision::Perform { target, headers }
        }
        other => other,
    };
    Ok(Checked { value, dropped })
}

/// Checks a recording decision: tags must be printable single-line text.
pub fn check_recording(mut d: RecordingDecision) -> Checked<RecordingDecision> {
    if let RecordingDecision::Record(o) = &mut d {
        o.tags
            .retain(|(k, v)| is_reason_phrase(k) && is_reason_phrase(v));
        if !o.legs.a && !o.legs.b {
            // The contract: an empty set means both legs.
            o.legs.a = true;
            o.legs.b = true;
        }
    }
    Checked {
        value: d,
        dropped: Vec::new(),
    }
}

/// A reason phrase or tag: text with no control characters (RFC 3261 25.1 `Reason-Phrase`).
fn is_reason_phrase(s: &str) -> bool {
    !s.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("X-Tenant"));
        assert!(is_token("P-Asserted-Identity"));
        assert!(!is_token("X Bad"));
        assert!(!is_token("X:Bad"));
        assert!(!is_token(""));
    }

    #[test]
    fn host_owned_headers_refused_in_any_case_and_compact_form() {
        for n in [
            "Via",
            "VIA",
            "v",
            "Call-ID",
            "i",
            "Contact",
            "Max-Forwards",
            "Route",
            "CSeq",
            "From",
            "f",
            "TO",
            "t",
            "m",
            "record-route",
            "Content-Length",
            "L",
            "content-TYPE",
            "c",
        ] {
            assert_eq!(
                check_header_name(n),
                Err(Refusal::HostOwnedHeader(n.into()))
            );
        }
        // Same lengths as host-owned names, and compact forms that belong to other headers.
        for n in [
            "X-Anything",
            "Tx",
            "Vie",
            "Frog",
            "Routa",
            "Call-Id2",
            "Contacts",
            "k",
            "x",
        ] {
            assert!(check_header_name(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn injection_refused() {
        for v in ["a\r\nVia: x", "a\nb", "a\0"] {
            assert!(matches!(
                check_header(&Header::new("X-A", v)),
                Err(Refusal::BadHeaderValue(_))
            ));
        }
    }

    #[test]
    fn sip_uris() {
        for ok in [
            "sip:bob@example.com",
            "SIP:127.0.0.1:5080",
            "sips:alice@[::1]:5061;transport=tls",
            "sip:+4420123@gw.example;user=phone",
        ] {
            assert!(check_sip_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/",
            "sip:",
            "sip:bob@",
            "sip:bob@example.com\r\nVia: x",
            "sip:bob @example.com",
            "<sip:bob@example.com>",
            "tel:+123",
        ] {
            assert!(check_sip_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forward_drops_bad_headers_and_keeps_the_rest() {
        let f = Forward {
            invite_headers: vec![
                Header::new("X-Good", "1"),
                Header::new("Via", "SIP/2.0/UDP evil"),
                Header::new("X-Evil", "a\r\nInjected: yes"),
            ],
            pass_through: vec!["X-Pass".into(), "Call-ID".into()],
            ..Default::default()
        };
        let c = check_forward(f).unwrap();
        assert_eq!(c.value.invite_headers, vec![Header::new("X-Good", "1")]);
        assert_eq!(c.value.pass_through, vec!["X-Pass".to_string()]);
        assert_eq!(c.dropped.len(), 3);
        assert!(c.dropped.iter().all(Refusal::is_header_only));
    }

    #[test]
    fn bad_target_or_status_refuses_the_decision() {
        let f = Forward {
            target: Some("http://example.com/".into()),
            ..Default::default()
        };
        assert!(check_forward(f).is_err());
        let r = InviteDecision::Reject(super::super::decision::Reject {
            status: 200,
            reason: None,
            headers: vec![],
        });
        assert!(matches!(
            check_invite(r),
            Err(Refusal::BadStatus { status: 200, .. })
        ));
    }
}
