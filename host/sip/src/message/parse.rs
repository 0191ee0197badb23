//! The indexing parser: one pass over the header section, recording spans.
//!
//! Why spans and not an rsip `SipMessage`: a B2BUA looks at a dozen fields and copies the rest, so a full
//! structured parse (one `String` per header) would be most of the per-call CPU budget.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::method::{Method, is_token_char};
use super::{HeaderSpan, Known, NameAddr, ParseError, ParseErrorKind, SipMessage, StartLine, Via};

/// Finds the end of the header section: returns (index of the blank line's first byte, body start).
/// Accepts CRLF and, leniently, bare LF line ends.
pub(crate) fn find_header_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = memchr_lf(&buf[i..]) {
        let lf = i + off;
        let next = lf + 1;
        if buf.get(next) == Some(&b'\n') {
            return Some((lf + 1, next + 1));
        }
        if buf.get(next) == Some(&b'\r') && buf.get(next + 1) == Some(&b'\n') {
            return Some((next, next + 2));
        }
        i = next;
    }
    None
}

fn memchr_lf(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

/// True if the header section contains a folded (continuation) line.
fn has_folding(head: &[u8]) -> bool {
    head.windows(2)
        .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}

/// Rewrites folded lines into single lines (RFC 3261 7.3.1: a fold is equivalent to one SP). Rare in
/// practice, so it pays for a copy; the common path never gets here.
fn unfold(buf: &[u8], head_end: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(buf.len());
    let head = &buf[..head_end];
    let mut i = 0;
    while i < head.len() {
        let b = head[i];
        let (eol_len, is_eol) = if b == b'\r' && head.get(i + 1) == Some(&b'\n') {
            (2, true)
        } else if b == b'\n' {
            (1, true)
        } else {
            (1, false)
        };
        if is_eol && matches!(head.get(i + eol_len), Some(b' ') | Some(b'\t')) {
            // Drop trailing whitespace already written, the line end and the leading whitespace.
            while matches!(out.last(), Some(b' ') | Some(b'\t')) {
                out.truncate(out.len() - 1);
            }
            out.extend_from_slice(b" ");
            i += eol_len;
            while matches!(head.get(i), Some(b' ') | Some(b'\t')) {
                i += 1;
            }
            continue;
        }
        out.extend_from_slice(&head[i..i + eol_len]);
        i += eol_len;
    }
    out.extend_from_slice(&buf[head_end..]);
    out.freeze()
}

/// Maps a header name (full or compact form, any case) to the headers we index.
pub(crate) fn known_header(name: &[u8]) -> Option<Known> {
    if name.len() == 1 {
        return match name[0].to_ascii_lowercase() {
            b'v' => Some(Known::Via),
            b'f' => Some(Known::From),
            b't' => Some(Known::To),
            b'i' => Some(Known::CallId),
            b'm' => Some(Known::Contact),
            b'l' => Some(Known::ContentLength),
            b'c' => Some(Known::ContentType),
            _ => None,
        };
    }
    let eq = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    if eq("Via") {
        Some(Known::Via)
    } else if eq("From") {
        Some(Known::From)
    } else if eq("To") {
        Some(Known::To)
    } else if eq("Call-ID") {
        Some(Known::CallId)
    } else if eq("CSeq") {
        Some(Known::CSeq)
    } else if eq("Max-Forwards") {
        Some(Known::MaxForwards)
    } else if eq("Content-Length") {
        Some(Known::ContentLength)
    } else if eq("Content-Type") {
        Some(Known::ContentType)
    } else if eq("Contact") {
        Some(Known::Contact)
    } else if eq("Route") {
        Some(Known::Route)
    } else if eq("Record-Route") {
        Some(Known::RecordRoute)
    } else {
        None
    }
}

/// Expands a compact header name to its full form (RFC 3261 7.3.3 and the registry), so that name
/// comparisons treat `f` and `From` alike. Unknown names are returned unchanged.
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => name,
    }
}

fn trim(buf: &[u8], mut r: Range<usize>) -> Range<usize> {
    while r.start < r.end && matches!(buf[r.start], b' ' | b'\t') {
        r.start += 1;
    }
    while r.end > r.start && matches!(buf[r.end - 1], b' ' | b'\t' | b'\r') {
        r.end -= 1;
    }
    r
}

/// Parses a non-empty run of ASCII digits, refusing overflow.
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    u32::try_from(v).ok()
}

/// Finds `needle` in `buf[r]` outside double quotes (and outside `<...>` if `skip_angle`).
fn find_unquoted(buf: &[u8], r: Range<usize>, needle: u8, skip_angle: bool) -> Option<usize> {
    let mut in_quote = false;
    let mut in_angle = false;
    let mut i = r.start;
    while i < r.end {
        let b = buf[i];
        if in_quote {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' {
                in_quote = false;
            }
        } else if b == b'"' {
            in_quote = true;
        } else if skip_angle && b == b'<' {
            in_angle = true;
        } else if skip_angle && b == b'>' {
            in_angle = false;
        } else if b == needle && !in_angle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Iterates `;name[=value]` parameters in `buf[r]` (r starts just after a `;` or at a `;`).
/// Yields (name span, optional value span), both trimmed.
fn params(
    buf: &[u8],
    r: Range<usize>,
) -> impl Iterator<Item = (Range<usize>, Option<Range<usize>>)> + '_ {
    let mut pos = r.start;
    let end = r.end;
    std::iter::from_fn(move || {
        while pos < end {
            let seg_end = find_unquoted(buf, pos..end, b';', false).unwrap_or(end);
            let seg = trim(buf, pos..seg_end);
            pos = seg_end + 1;
            if seg.is_empty() {
                continue;
            }
            return Some(match buf[seg.clone()].iter().position(|&b| b == b'=') {
                Some(eq) => (
                    trim(buf, seg.start..seg.start + eq),
                    Some(trim(buf, seg.start + eq + 1..seg.end)),
                ),
                None => (seg, None),
            });
        }
        None
    })
}

/// Parses one name-addr / addr-spec value (From, To, Contact, Route): URI span and `tag` parameter.
pub(crate) fn parse_name_addr(buf: &[u8], r: Range<usize>) -> Option<NameAddr> {
    let r = trim(buf, r);
    if r.is_empty() {
        return None;
    }
    let (uri, params_start) = match find_unquoted(buf, r.clone(), b'<', false) {
        Some(lt) => {
            let gt = lt + 1 + buf[lt + 1..r.end].iter().position(|&b| b == b'>')?;
            (lt + 1..gt, gt + 1)
        }
        None => {
            // addr-spec form: parameters after the URI belong to the header (RFC 3261 20.10).
            if buf[r.clone()].contains(&b'"') {
                return None;
            }
            let semi = find_unquoted(buf, r.clone(), b';', false).unwrap_or(r.end);
            (trim(buf, r.start..semi), semi)
        }
    };
    if uri.is_empty() || buf[uri.clone()].iter().any(|&b| b == b' ' || b == b'<') {
        return None;
    }
    let mut tag = None;
    if params_start < r.end {
        let rest = trim(buf, params_start..r.end);
        if !rest.is_empty() && buf[rest.start] != b';' {
            return None;
        }
        for (name, value) in params(buf, rest) {
            if buf[name].eq_ignore_ascii_case(b"tag") {
                match value {
                    Some(v) if !v.is_empty() => tag = Some(v),
                    _ => return None,
                }
            }
        }
    }
    Some(NameAddr { value: r, uri, tag })
}

/// Parses one Via value: `SIP/2.0/UDP host[:port];params`.
pub(crate) fn parse_via(buf: &[u8], r: Range<usize>) -> Option<Via> {
    let r = trim(buf, r);
    let s = &buf[r.clone()];
    // sent-protocol: "SIP" LWS? "/" LWS? "2.0" LWS? "/" LWS? transport. Spaces around '/' are legal
    // but never seen; we accept the compact form only plus case-insensitivity.
    if s.len() < 8 || !s[..8].eq_ignore_ascii_case(b"SIP/2.0/") {
        return None;
    }
    let t_start = r.start + 8;
    let t_end = t_start
        + buf[t_start..r.end]
            .iter()
            .position(|&b| b == b' ' || b == b'\t')?;
    if t_end == t_start || !buf[t_start..t_end].iter().all(|&b| is_token_char(b)) {
        return None;
    }
    let sb_start = trim(buf, t_end..r.end).start;
    let semi = find_unquoted(buf, sb_start..r.end, b';', false).unwrap_or(r.end);
    let sent_by = trim(buf, sb_start..semi);
    if sent_by.is_empty() {
        return None;
    }
    let sb = &buf[sent_by.clone()];
    let (host, port) = if sb[0] == b'[' {
        let close = sb.iter().position(|&b| b == b']')?;
        let host = sent_by.start..sent_by.start + close + 1;
        match &sb[close + 1..] {
            [] => (host, None),
            [b':', digits @ ..] => (host, Some(parse_port(digits)?)),
            _ => return None,
        }
    } else {
        match sb.iter().position(|&b| b == b':') {
            Some(c) => (
                sent_by.start..sent_by.start + c,
                Some(parse_port(&sb[c + 1..])?),
            ),
            None => (sent_by.clone(), None),
        }
    };
    if host.is_empty()
        || !buf[host.clone()]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-.[]:_".contains(&b))
    {
        return None;
    }
    let mut via = Via {
        value: r.clone(),
        transport: t_start..t_end,
        host,
        port,
        branch: None,
        received: None,
        rport: None,
        params: semi.min(r.end)..r.end,
    };
    if semi < r.end {
        for (name, value) in params(buf, semi + 1..r.end) {
            let n = &buf[name];
            if n.eq_ignore_ascii_case(b"branch") {
                via.branch = Some(value.filter(|v| !v.is_empty())?);
            } else if n.eq_ignore_ascii_case(b"received") {
                via.received = Some(value.filter(|v| !v.is_empty())?);
            } else if n.eq_ignore_ascii_case(b"rport") {
                via.rport = Some(match value {
                    None => None,
                    Some(v) if v.is_empty() => None,
                    Some(v) => Some(parse_port(&buf[v])?),
                });
            }
        }
    }
    Some(via)
}

fn parse_port(digits: &[u8]) -> Option<u16> {
    parse_u32(digits).and_then(|p| u16::try_from(p).ok())
}

fn parse_start_line(buf: &[u8], line: Range<usize>) -> Result<StartLine, ParseErrorKind> {
    let l = &buf[line.clone()];
    let sp1 = l
        .iter()
        .position(|&b| b == b' ')
        .ok_or(ParseErrorKind::BadStartLine)?;
    if l.len() >= 4 && l[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let rest = &l[sp1 + 1..];
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(ParseErrorKind::BadStartLine);
        }
        if rest.len() > 3 && rest[3] != b' ' {
            return Err(ParseErrorKind::BadStartLine);
        }
        let status = u16::from(rest[0] - b'0') * 100
            + u16::from(rest[1] - b'0') * 10
            + u16::from(rest[2] - b'0');
        if !(100..=699).contains(&status) {
            return Err(ParseErrorKind::BadStartLine);
        }
        let reason_start = (line.start + sp1 + 1 + 4).min(line.end);
        return Ok(StartLine::Response {
            status,
            reason: reason_start..line.end,
            version_ok: l[..sp1].eq_ignore_ascii_case(b"SIP/2.0"),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let method = Method::from_token(&l[..sp1]).ok_or(ParseErrorKind::BadStartLine)?;
    let sp2 = sp1
        + 1
        + l[sp1 + 1..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or(ParseErrorKind::BadStartLine)?;
    let uri = line.start + sp1 + 1..line.start + sp2;
    let version = &l[sp2 + 1..];
    if uri.is_empty()
        || version.contains(&b' ')
        || !buf[uri.clone()].contains(&b':')
        || buf[uri.clone()].iter().any(|&b| b < 0x21 || b == 0x7f)
    {
        return Err(ParseErrorKind::BadStartLine);
    }
    if version.len() < 4 || !version[..4].eq_ignore_ascii_case(b"SIP/") {
        return Err(ParseErrorKind::BadStartLine);
    }
    Ok(StartLine::Request {
        method,
        uri,
        version_ok: version.eq_ignore_ascii_case(b"SIP/2.0"),
    })
}

/// Parses a datagram (or one TCP frame) into an indexed message. See [`SipMessage::parse`].
pub(crate) fn parse(input: Bytes) -> Result<SipMessage, ParseError> {
    let fail = |kind| ParseError {
        kind,
        request: None,
    };
    // RFC 3261 7.5: implementations should ignore CRLFs before the start line (keep-alives).
    let skip = input
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or_else(|| fail(ParseErrorKind::Empty))?;
    let mut buf = input.slice(skip..);
    let (mut head_end, mut body_start) =
        find_header_end(&buf).ok_or_else(|| fail(ParseErrorKind::Truncated))?;
    if has_folding(&buf[..head_end]) {
        buf = unfold(&buf, head_end);
        (head_end, body_start) =
            find_header_end(&buf).ok_or_else(|| fail(ParseErrorKind::Truncated))?;
    }
    if std::str::from_utf8(&buf[..head_end]).is_err() {
        return Err(fail(ParseErrorKind::NotUtf8));
    }
    if buf[..head_end].contains(&0) {
        return Err(fail(ParseErrorKind::BadStartLine));
    }

    let first_lf = buf[..head_end]
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(head_end);
    let start_line = trim(&buf, 0..first_lf);
    let start = parse_start_line(&buf, start_line).map_err(fail)?;

    // Errors found after this point leave the index usable, so a request can still get its 400.
    let mut deferred: Option<ParseErrorKind> = None;
    let mut defer = |k: ParseErrorKind| {
        if deferred.is_none() {
            deferred = Some(k);
        }
    };
    if !start.version_ok() {
        defer(ParseErrorKind::BadVersion);
    }

    let mut headers = Vec::with_capacity(16);
    let mut via = None;
    let mut call_id = None;
    let mut cseq = None;
    let mut from = None;
    let mut to = None;
    let mut max_forwards = None;
    let mut content_length = None;
    let mut content_type = None;
    let mut contact = None;
    // Fatal header faults: the index cannot be trusted for a response (missing routing data).
    let mut fatal: Option<ParseErrorKind> = None;
    let mut set_fatal = |k: ParseErrorKind| {
        if fatal.is_none() {
            fatal = Some(k);
        }
    };

    let mut pos = (first_lf + 1).min(head_end);
    while pos < head_end {
        let eol = pos
            + buf[pos..head_end]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(head_end - pos);
        let line = trim(&buf, pos..eol);
        pos = eol + 1;
        if line.is_empty() {
            continue;
        }
        let Some(colon) = buf[line.clone()].iter().position(|&b| b == b':') else {
            defer(ParseErrorKind::HeaderWithoutColon);
            continue;
        };
        let name = trim(&buf, line.start..line.start + colon);
        let value = trim(&buf, line.start + colon + 1..line.end);
        if name.is_empty() || !buf[name.clone()].iter().all(|&b| is_token_char(b)) {
            defer(ParseErrorKind::BadHeaderName);
            continue;
        }
        let known = known_header(&buf[name.clone()]);
        match known {
            Some(Known::Via) => {
                if via.is_none() {
                    let end = find_unquoted(&buf, value.clone(), b',', false).unwrap_or(value.end);
                    match parse_via(&buf, value.start..end) {
                        Some(v) => via = Some(v),
                        None => set_fatal(ParseErrorKind::BadHeader("Via")),
                    }
                }
            }
            Some(Known::CallId) => {
                if call_id.is_some() {
                    set_fatal(ParseErrorKind::DuplicateHeader("Call-ID"));
                } else if value.is_empty()
                    || buf[value.clone()].iter().any(|&b| b == b' ' || b == b'\t')
                {
                    set_fatal(ParseErrorKind::BadHeader("Call-ID"));
                } else {
                    call_id = Some(value.clone());
                }
            }
            Some(Known::CSeq) => {
                if cseq.is_some() {
                    set_fatal(ParseErrorKind::DuplicateHeader("CSeq"));
                } else {
                    let v = &buf[value.clone()];
                    let parsed = v
                        .iter()
                        .position(|&b| b == b' ' || b == b'\t')
                        .and_then(|sp| {
                            let n = parse_u32(&v[..sp]).filter(|&n| n < (1 << 31))?;
                            let m = trim(&buf, value.start + sp..value.end);
                            Some((n, Method::from_token(&buf[m])?))
                        });
                    match parsed {
                        Some(c) => cseq = Some(c),
                        None => set_fatal(ParseErrorKind::BadHeader("CSeq")),
                    }
                }
            }
            Some(k @ (Known::From | Known::To)) => {
                let (slot, label) = if k == Known::From {
                    (&mut from, "From")
                } else {
                    (&mut to, "To")
                };
                if slot.is_some() {
                    set_fatal(ParseErrorKind::DuplicateHeader(label));
                } else {
                    match parse_name_addr(&buf, value.clone()) {
                        Some(na) => *slot = Some(na),
                        None => set_fatal(ParseErrorKind::BadHeader(label)),
                    }
                }
            }
            Some(Known::MaxForwards) => {
                if max_forwards.is_some() {
                    defer(ParseErrorKind::DuplicateHeader("Max-Forwards"));
                }
                match parse_u32(&buf[value.clone()]).filter(|&n| n <= 255) {
                    Some(n) => max_forwards = Some(n as u8),
                    None => defer(ParseErrorKind::BadHeader("Max-Forwards")),
                }
            }
            Some(Known::ContentLength) => {
                if content_length.is_some() {
                    defer(ParseErrorKind::DuplicateHeader("Content-Length"));
                }
                match parse_u32(&buf[value.clone()]) {
                    Some(n) => content_length = Some(n as usize),
                    None => defer(ParseErrorKind::BadHeader("Content-Length")),
                }
            }
            Some(Known::ContentType) => {
                if content_type.is_some() {
                    defer(ParseErrorKind::DuplicateHeader("Content-Type"));
                }
                content_type = Some(value.clone());
            }
            Some(Known::Contact) => {
                if contact.is_none() {
                    let end = find_unquoted(&buf, value.clone(), b',', true).unwrap_or(value.end);
                    let first = trim(&buf, value.start..end);
                    if &buf[first.clone()] == b"*" {
                        contact = Some(NameAddr {
                            value: first.clone(),
                            uri: first,
                            tag: None,
                        });
                    } else {
                        match parse_name_addr(&buf, first) {
                            Some(na) => contact = Some(na),
                            None => defer(ParseErrorKind::BadHeader("Contact")),
                        }
                    }
                }
            }
            Some(Known::Route | Known::RecordRoute) | None => {}
        }
        headers.push(HeaderSpan { name, value, known });
    }

    for (present, name) in [
        (via.is_some(), "Via"),
        (from.is_some(), "From"),
        (to.is_some(), "To"),
        (call_id.is_some(), "Call-ID"),
        (cseq.is_some(), "CSeq"),
    ] {
        if !present {
            set_fatal(ParseErrorKind::MissingHeader(name));
        }
    }
    if let Some(kind) = fatal {
        return Err(fail(kind));
    }
    let (Some(via), Some(from), Some(to), Some(call_id), Some((cseq_num, cseq_method))) =
        (via, from, to, call_id, cseq)
    else {
        return Err(fail(ParseErrorKind::MissingHeader("Via")));
    };

    if let StartLine::Request { method, .. } = &start
        && *method != cseq_method
    {
        defer(ParseErrorKind::CSeqMethodMismatch);
    }

    // RFC 3261 18.3: a body shorter than Content-Length is an error; extra datagram bytes are dropped.
    let available = buf.len() - body_start;
    let body = match content_length {
        Some(n) if n > available => {
            defer(ParseErrorKind::ContentLengthMismatch);
            body_start..body_start
        }
        Some(n) => body_start..body_start + n,
        None => body_start..buf.len(),
    };

    let msg = SipMessage {
        buf,
        start,
        headers,
        body,
        via,
        call_id,
        cseq_num,
        cseq_method,
        from,
        to,
        max_forwards,
        content_type,
        contact,
    };
    match deferred {
        None => Ok(msg),
        Some(kind) => {
            let request =
                matches!(&msg.start, StartLine::Request { method, .. } if *method != Method::Ack);
            Err(ParseError {
                kind,
                request: request.then(|| Box::new(msg)),
            })
        }
    }
}
