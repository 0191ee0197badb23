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
    memchr::memchr(b'\n', s)
}

/// How many line ends [`scan_head`] remembers; the lines of a longer header section are found again
/// with memchr.
const LF_CAP: usize = 64;

/// What one pass over the header section finds (see [`scan_head`]).
struct HeadScan {
    /// As [`find_header_end`]; `None` if there is no blank line.
    end: Option<(usize, usize)>,
    /// Some line end (before the blank line) is followed by SP or HTAB.
    folded: bool,
    /// False only when no header line can hold a control character, i.e. the scanned bytes hold no
    /// CTL but HTAB, LF and CR directly before LF (then [`has_ctl`] is false on every trimmed line).
    maybe_ctl: bool,
    /// The scanned bytes are all ASCII (they may run a little past the header section, so `false`
    /// proves nothing).
    ascii: bool,
    /// Positions of the header section's first `LF_CAP` LFs, in order.
    lfs: [usize; LF_CAP],
    /// How many LFs the header section has (may exceed `LF_CAP`).
    n_lfs: usize,
}

const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HI: u64 = 0x8080_8080_8080_8080;

#[cfg(test)]
pub(crate) fn ctl_masks_agree(chunk: &[u8; 16]) -> bool {
    let portable = ctl_mask16_swar(chunk);
    let plain = chunk
        .iter()
        .enumerate()
        .fold((0u32, false), |(m, h), (k, &b)| {
            (m | (u32::from(b < 0x20 || b == 0x7f) << k), h | (b >= 0x80))
        });
    portable == plain && ctl_mask16(chunk) == plain
}

/// For 16 bytes: bit k of the mask marks byte k as < 0x20 or == 0x7f, and the flag says whether any
/// byte is >= 0x80. SSE2 (every x86_64) does a chunk in a dozen instructions, a third of two SWAR words.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn ctl_mask16(chunk: &[u8; 16]) -> (u32, bool) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline; the load is unaligned and reads exactly 16 bytes.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let below_20 = bytes_within(v, 0, 0x1f);
        let del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7f));
        let mask = _mm_movemask_epi8(_mm_or_si128(below_20, del)) as u32;
        (mask, _mm_movemask_epi8(v) != 0)
    }
}

#[cfg(not(target_arch = "x86_64"))]
use ctl_mask16_swar as ctl_mask16;

/// The portable [`ctl_mask16`]: two 8-byte SWAR words (exact: no carry crosses bytes). Compiled
/// everywhere so that x86_64 tests it against the SSE2 version.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn ctl_mask16_swar(chunk: &[u8; 16]) -> (u32, bool) {
    let mut mask = 0u32;
    let mut high = 0u64;
    for (w, half) in chunk.chunks_exact(8).enumerate() {
        let mut a = [0u8; 8];
        a.copy_from_slice(half);
        let x = u64::from_le_bytes(a);
        high |= x;
        let lt20 = !(((x & LO7) + 0x6060_6060_6060_6060) | x) & HI;
        let y = x ^ LO7;
        let del = !(((y & LO7) + LO7) | y | LO7);
        // Gather bit 7 of each byte into the low 8 bits.
        let m = ((lt20 | del) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
        mask |= (m as u32) << (8 * w);
    }
    (mask, high & HI != 0)
}

/// One pass over the header section in 16-byte chunks, doing the work of [`find_header_end`],
/// the folding check, the ASCII check and the per-line LF and CTL searches: those were a memchr call per
/// line each, whose set-up dominates on ~30-byte lines.
fn scan_head(buf: &[u8]) -> HeadScan {
    let mut s = HeadScan {
        end: None,
        folded: false,
        maybe_ctl: false,
        ascii: true,
        lfs: [0; LF_CAP],
        n_lfs: 0,
    };
    let mut non_ascii = false;
    let mut i = 0;
    while i < buf.len() {
        let (mut m, width) = match buf.get(i..i + 16) {
            Some(w) => {
                let (m, high) = ctl_mask16(w.try_into().expect("16 bytes"));
                non_ascii |= high;
                (m, 16)
            }
            None => {
                let mut m = 0u32;
                for (k, &b) in buf[i..].iter().enumerate() {
                    non_ascii |= b >= 0x80;
                    if b < 0x20 || b == 0x7f {
                        m |= 1 << k;
                    }
                }
                (m, buf.len() - i)
            }
        };
        while m != 0 {
            let j = i + m.trailing_zeros() as usize;
            m &= m - 1;
            match buf[j] {
                b'\n' => {
                    if s.n_lfs < LF_CAP {
                        s.lfs[s.n_lfs] = j;
                    }
                    s.n_lfs += 1;
                    match buf.get(j + 1) {
                        Some(b'\n') => s.end = Some((j + 1, j + 2)),
                        Some(b'\r') if buf.get(j + 2) == Some(&b'\n') => {
                            s.end = Some((j + 1, j + 3))
                        }
                        Some(b' ' | b'\t') => s.folded = true,
                        _ => {}
                    }
                    if s.end.is_some() {
                        s.ascii = !non_ascii;
                        return s;
                    }
                }
                b'\r' if buf.get(j + 1) == Some(&b'\n') => {}
                b'\t' => {}
                _ => s.maybe_ctl = true,
            }
        }
        i += width;
    }
    s.ascii = !non_ascii;
    s
}

/// Per byte of `v`, all ones where `lo <= byte <= lo + span` (unsigned), as
/// `min(byte - lo, span) == byte - lo`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn bytes_within(v: std::arch::x86_64::__m128i, lo: u8, span: u8) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_min_epu8, _mm_set1_epi8, _mm_sub_epi8};
    // SAFETY: SSE2 is part of the x86_64 baseline; these only compute on registers.
    unsafe {
        let d = _mm_sub_epi8(v, _mm_set1_epi8(lo as i8));
        _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(span as i8)), d)
    }
}

/// Bit k set: byte k of the chunk is a letter, a digit or `-`, of which header names are made.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn name_chars16(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline; the load is unaligned and reads exactly 16 bytes.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
        let letter = bytes_within(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', 25);
        let digit = bytes_within(v, b'0', 9);
        let dash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'-' as i8));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(letter, digit), dash)) as u32
    }
}

/// How many bytes of `buf[r]` from its start are token characters (RFC 3261 25.1). Letters, digits
/// and dashes, nearly all of a header name, are skipped 16 at a time (reading past `r` within `buf`
/// is harmless: the answer is capped); any other byte is decided by the token table (~30
/// instructions a line fewer than the table alone).
fn token_len(buf: &[u8], r: Range<usize>) -> usize {
    #[allow(unused_mut)]
    let mut skip = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = buf.get(r.start + skip..r.start + skip + 16) {
        let simple = name_chars16(chunk.try_into().expect("16 bytes"));
        skip += simple.trailing_ones() as usize;
        if simple != 0xffff || skip >= r.len() {
            break;
        }
    }
    let skip = skip.min(r.len());
    skip + buf[r.start + skip..r.end]
        .iter()
        .position(|&b| !is_token_char(b))
        .unwrap_or(r.len() - skip)
}

#[cfg(test)]
pub(crate) fn token_len_for_test(buf: &[u8], r: Range<usize>) -> usize {
    token_len(buf, r)
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

/// Whether the stack indexes this header and writes it itself in what it builds (Via, From, To,
/// Call-ID, CSeq, Max-Forwards, Contact, Route, Record-Route, Content-Length, Content-Type; compact
/// forms and any case included): the headers that describe a hop, a dialog or framing.
pub fn is_stack_header(name: &str) -> bool {
    known_header(name.as_bytes()).is_some()
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
    // Dispatch on the length first: a name is then compared against one to three candidates.
    match name.len() {
        2 if fold_eq(name, b"to") => Some(Known::To),
        3 if fold_eq(name, b"via") => Some(Known::Via),
        4 if fold_eq(name, b"from") => Some(Known::From),
        4 if fold_eq(name, b"cseq") => Some(Known::CSeq),
        5 if fold_eq(name, b"route") => Some(Known::Route),
        7 if fold_eq(name, b"call-id") => Some(Known::CallId),
        7 if fold_eq(name, b"contact") => Some(Known::Contact),
        12 if fold_eq(name, b"max-forwards") => Some(Known::MaxForwards),
        12 if fold_eq(name, b"content-type") => Some(Known::ContentType),
        12 if fold_eq(name, b"record-route") => Some(Known::RecordRoute),
        14 if fold_eq(name, b"content-length") => Some(Known::ContentLength),
        _ => None,
    }
}

/// `name.eq_ignore_ascii_case(lower)` for a lowercase ASCII `lower`, without early exit so that the
/// constant-length comparison compiles to a few word operations.
#[inline(always)]
fn fold_eq<const N: usize>(name: &[u8], lower: &[u8; N]) -> bool {
    let Ok(name) = <&[u8; N]>::try_from(name) else {
        return false;
    };
    let mut diff = 0;
    for i in 0..N {
        // Setting bit 5 lowercases a letter; elsewhere the byte must match exactly.
        let fold = if lower[i].is_ascii_lowercase() {
            0x20
        } else {
            0
        };
        diff |= (name[i] | fold) ^ lower[i];
    }
    diff == 0
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

#[inline]
fn trim(buf: &[u8], r: Range<usize>) -> Range<usize> {
    let Some(mut s) = buf.get(r.clone()) else {
        return r;
    };
    // Slice patterns: no bounds check per byte (trim runs ~40 times per message).
    let len = s.len();
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    let start = r.start + (len - s.len());
    while let [rest @ .., b' ' | b'\t' | b'\r'] = s {
        s = rest;
    }
    start..start + s.len()
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
///
/// Jumps with memchr from one byte that matters (the needle, a quote, an angle bracket) to the
/// next: a byte-at-a-time walk over every header value was a sixth of a message's parse.
// Inlined so that each call site gets its constant needle and mode folded in.
#[inline(always)]
fn find_unquoted(buf: &[u8], r: Range<usize>, needle: u8, skip_angle: bool) -> Option<usize> {
    let s = buf.get(r.clone())?;
    let mut in_angle = false;
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        i += if !skip_angle {
            memchr::memchr2(needle, b'"', rest)?
        } else if in_angle {
            memchr::memchr2(b'>', b'"', rest)?
        } else {
            memchr::memchr3(needle, b'"', b'<', rest)?
        };
        match s[i] {
            b'"' => {
                // Skip the quoted string; a backslash escapes the next byte.
                i += 1;
                while i < s.len() {
                    match s[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b if b == needle && !in_angle => return Some(r.start + i),
            b'<' => in_angle = true,
            _ => in_angle = false, // `>`
        }
        i += 1;
    }
    None
}

/// The definition [`find_unquoted`] must agree with, one byte at a time as a state machine.
#[cfg(test)]
pub(crate) fn find_unquoted_reference(
    buf: &[u8],
    r: Range<usize>,
    needle: u8,
    skip_angle: bool,
) -> Option<usize> {
    let s = buf.get(r.clone())?;
    let (mut in_quote, mut escaped, mut in_angle) = (false, false, false);
    for (i, &b) in s.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_quote = false;
            }
            continue;
        }
        match b {
            b'"' => in_quote = true,
            b'<' if skip_angle => in_angle = true,
            b'>' if skip_angle => in_angle = false,
            _ if b == needle && !in_angle => return Some(r.start + i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
pub(crate) fn find_unquoted_for_test(
    buf: &[u8],
    r: Range<usize>,
    needle: u8,
    skip_angle: bool,
) -> Option<usize> {
    find_unquoted(buf, r, needle, skip_angle)
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
            let gt = lt + 1 + memchr::memchr(b'>', &buf[lt + 1..r.end])?;
            (lt + 1..gt, gt + 1)
        }
        None => {
            // addr-spec form: parameters after the URI belong to the header (RFC 3261 20.10).
            if memchr::memchr(b'"', &buf[r.clone()]).is_some() {
                return None;
            }
            let semi = find_unquoted(buf, r.clone(), b';', false).unwrap_or(r.end);
            (trim(buf, r.start..semi), semi)
        }
    };
    if uri.is_empty() || memchr::memchr2(b' ', b'<', &buf[uri.clone()]).is_some() {
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
    // RFC 3261 20.42 allows other transport tokens, but we can answer none of them.
    const TRANSPORTS: [&[u8]; 7] = [b"UDP", b"TCP", b"TLS", b"SCTP", b"TLS-SCTP", b"WS", b"WSS"];
    if !TRANSPORTS
        .iter()
        .any(|t| buf[t_start..t_end].eq_ignore_ascii_case(t))
    {
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
    if host.is_empty() || !buf[host.clone()].iter().all(|&b| has_class(b, C_VIA_HOST)) {
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
                let v = value.filter(|v| !v.is_empty())?;
                let ip = std::str::from_utf8(&buf[v.clone()]).ok()?;
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                ip.parse::<std::net::IpAddr>().ok()?;
                via.received = Some(v);
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

/// Longest method token we accept on a Request-Line.
const MAX_METHOD_LEN: usize = 32;
/// Longest Call-ID we accept.
const MAX_CALL_ID_LEN: usize = 256;
/// Largest header section we accept, in bytes (beyond it: 513).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header lines we accept (beyond it: 513).
pub const MAX_HEADER_LINES: usize = 256;

/// Request-URI characters: 0x21..0x7e but `<` and `>`.
const C_URI: u8 = 1;
/// URI scheme characters after the first: alphanumerics and `+-.`.
const C_SCHEME: u8 = 2;
/// Request-URI host characters: alphanumerics and `-._`.
const C_HOST: u8 = 4;
/// IPv6 reference characters: hex digits and `:.`.
const C_V6: u8 = 8;
/// Via sent-by host characters: alphanumerics and `-.[]:_`.
const C_VIA_HOST: u8 = 16;
/// Bytes [`name_addr_ok`] looks at: `\\`, `"`, `<`, `>`.
const C_NA_SPECIAL: u8 = 32;

/// Character classes as one table: the per-byte checks run over every URI and Via host, and a
/// lookup beats a chain of range and `contains` tests.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if b >= 0x21 && b < 0x7f && b != b'<' && b != b'>' {
            c |= C_URI;
        }
        let alnum = b.is_ascii_alphanumeric();
        if alnum || b == b'+' || b == b'-' || b == b'.' {
            c |= C_SCHEME;
        }
        if alnum || b == b'-' || b == b'.' || b == b'_' {
            c |= C_HOST;
        }
        if b.is_ascii_hexdigit() || b == b':' || b == b'.' {
            c |= C_V6;
        }
        if alnum || matches!(b, b'-' | b'.' | b'[' | b']' | b':' | b'_') {
            c |= C_VIA_HOST;
        }
        if matches!(b, b'\\' | b'"' | b'<' | b'>') {
            c |= C_NA_SPECIAL;
        }
        t[i] = c;
        i += 1;
    }
    t
};

#[inline(always)]
fn has_class(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// Checks every `%` in `s` is followed by two hex digits.
fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if !(s.get(i + 1).copied().is_some_and(is_hex)
                && s.get(i + 2).copied().is_some_and(is_hex))
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Validates a Request-URI (RFC 3261 19.1, RFC 3986 absolute URI).
pub(crate) fn check_request_uri(u: &[u8]) -> Result<(), ParseErrorKind> {
    let bad = ParseErrorKind::BadRequestUri;
    // One pass finds what the checks below need (each was a pass of its own): the first colon and,
    // after it, any `%`, the first `?` and the last `@` before that `?`.
    let (mut colon, mut pct, mut qmark, mut at) = (None, false, None, None);
    for (i, &b) in u.iter().enumerate() {
        if !has_class(b, C_URI) {
            return Err(bad);
        }
        match b {
            b':' if colon.is_none() => colon = Some(i),
            b'%' if colon.is_some() => pct = true,
            b'?' if colon.is_some() && qmark.is_none() => qmark = Some(i),
            b'@' if colon.is_some() && qmark.is_none() => at = Some(i),
            _ => {}
        }
    }
    let colon = colon.ok_or(bad.clone())?;
    let scheme = &u[..colon];
    if scheme.is_empty()
        || !scheme[0].is_ascii_alphabetic()
        || !scheme.iter().all(|&b| has_class(b, C_SCHEME))
    {
        return Err(bad);
    }
    let rest = &u[colon + 1..];
    if rest.is_empty() || (pct && !escapes_ok(rest)) {
        return Err(bad);
    }
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        // Host and port: after the user part's `@`, before the headers' `?`.
        let hp = &u[at.map_or(colon + 1, |a| a + 1)..qmark.unwrap_or(u.len())];
        let hp = &hp[..hp.iter().position(|&b| b == b';').unwrap_or(hp.len())];
        let (host, port) = if hp.first() == Some(&b'[') {
            let close = hp.iter().position(|&b| b == b']').ok_or(bad.clone())?;
            (&hp[..=close], &hp[close + 1..])
        } else {
            match hp.iter().position(|&b| b == b':') {
                Some(c) => (&hp[..c], &hp[c..]),
                None => (hp, &hp[hp.len()..]),
            }
        };
        let host_ok = if host.first() == Some(&b'[') {
            host.len() > 2 && host[1..host.len() - 1].iter().all(|&b| has_class(b, C_V6))
        } else {
            !host.is_empty() && host.iter().all(|&b| has_class(b, C_HOST))
        };
        if !host_ok {
            return Err(bad);
        }
        match port {
            [] => {}
            [b':', digits @ ..] => {
                if !parse_u32(digits).is_some_and(|p| (1..=65535).contains(&p)) {
                    return Err(bad);
                }
            }
            _ => return Err(bad),
        }
        Ok(())
    } else if scheme.eq_ignore_ascii_case(b"tel") {
        Ok(())
    } else {
        Err(ParseErrorKind::UnsupportedUriScheme)
    }
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
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly three parts, single spaces.
    if l.len() > sp1 && l[..sp1].len() > MAX_METHOD_LEN {
        return Err(ParseErrorKind::BadMethod);
    }
    let method = Method::from_token(&l[..sp1]).ok_or(ParseErrorKind::BadMethod)?;
    let sp2 = sp1
        + 1
        + l[sp1 + 1..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or(ParseErrorKind::BadStartLine)?;
    let uri = line.start + sp1 + 1..line.start + sp2;
    let version = &l[sp2 + 1..];
    if uri.is_empty() || version.is_empty() || version.contains(&b' ') {
        return Err(ParseErrorKind::BadStartLine);
    }
    check_request_uri(&buf[uri.clone()])?;
    if !version.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(ParseErrorKind::BadStartLine);
    }
    Ok(StartLine::Request {
        method,
        uri,
        version_ok: version.eq_ignore_ascii_case(b"SIP/2.0"),
    })
}

/// True if `v` holds a control character other than HTAB (RFC 3261 25.1: TEXT-UTF8 excludes CTLs).
fn has_ctl(v: &[u8]) -> bool {
    // No early exit, so that the loop vectorises: it runs over every header line of every message,
    // and a line almost never holds a control character.
    v.iter().fold(false, |acc, &b| {
        acc | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
    })
}

/// True if `v` is a Content-Type media-type: `type/subtype` tokens, then optional `;` parameters.
fn media_type_ok(buf: &[u8], v: Range<usize>) -> bool {
    let end = buf[v.clone()]
        .iter()
        .position(|&b| b == b';')
        .map_or(v.end, |p| v.start + p);
    let mt = trim(buf, v.start..end);
    let s = &buf[mt];
    let Some(slash) = s.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (t, st) = (trim_ascii(&s[..slash]), trim_ascii(&s[slash + 1..]));
    !t.is_empty()
        && !st.is_empty()
        && t.iter().all(|&b| is_token_char(b))
        && st.iter().all(|&b| is_token_char(b))
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A Route / Record-Route value: comma-separated name-addrs, each with `<uri>`.
fn route_ok(buf: &[u8], v: Range<usize>) -> bool {
    let Ok(s) = std::str::from_utf8(&buf[v.clone()]) else {
        return false;
    };
    let mut any = false;
    for item in super::split_commas(s) {
        any = true;
        let off = item.as_ptr() as usize - s.as_ptr() as usize;
        let r = v.start + off..v.start + off + item.len();
        // name-addr per RFC 3261 20.30/20.34; a bare addr-spec (some stacks write the remote target
        // so in strict routing) is tolerated, but not `<>` or an unterminated `<`.
        match parse_name_addr(buf, r) {
            Some(na) if name_addr_ok(buf, &na) => {}
            _ => return false,
        }
    }
    any
}

/// Maps a header name that is not a token ("Call ID") to the known header it was meant to be, so
/// that a 400 can still copy its value.
fn misspelt_known(name: &[u8]) -> Option<Known> {
    let norm: Vec<u8> = name
        .iter()
        .map(|&b| if b == b' ' || b == b'\t' { b'-' } else { b })
        .collect();
    known_header(&norm)
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

    // Errors found from here on leave the index usable, so a request can still get its 400.
    let mut deferred: Option<ParseErrorKind> = None;
    let mut defer = |k: ParseErrorKind| {
        if deferred.is_none() {
            deferred = Some(k);
        }
    };

    // A datagram without the blank line (RFC 3261 18.3: truncated) is still answered when its
    // headers are usable: the whole datagram is taken as the header section.
    let mut scan = scan_head(&buf);
    let truncated = scan.end.is_none();
    if truncated {
        defer(ParseErrorKind::Truncated);
    }
    let bounds = |buf: &[u8], scan: &HeadScan| scan.end.unwrap_or((buf.len(), buf.len()));
    let (mut head_end, mut body_start) = bounds(&buf, &scan);
    if scan.folded {
        buf = unfold(&buf, head_end);
        scan = scan_head(&buf);
        (head_end, body_start) = bounds(&buf, &scan);
    }
    if head_end > MAX_HEADER_BYTES {
        defer(ParseErrorKind::TooLarge);
    }
    // The ASCII check is the fast common case; UTF-8 proper only when something is not ASCII.
    let utf8 =
        scan.ascii || buf[..head_end].is_ascii() || std::str::from_utf8(&buf[..head_end]).is_ok();
    if !utf8 {
        defer(ParseErrorKind::NotUtf8);
    }
    // Line ends come from the scan; past its first LF_CAP, from memchr.
    let stored = scan.n_lfs.min(LF_CAP);
    let line_end = |k: usize, pos: usize| -> usize {
        match scan.lfs.get(k) {
            Some(&lf) if k < stored => lf,
            _ => pos + memchr_lf(&buf[pos..head_end]).unwrap_or(head_end - pos),
        }
    };

    let first_lf = line_end(0, 0);
    let mut start_line = 0..first_lf;
    if start_line.end > 0 && buf[start_line.end - 1] == b'\r' {
        start_line.end -= 1;
    }
    // A Request-Line we cannot read still lets us answer if the headers are fine: its method is
    // then taken from CSeq.
    let mut start_from_cseq = false;
    let mut start = match parse_start_line(&buf, start_line) {
        Ok(s) => s,
        // A status line, or something whose first word is a version ("HTTP/1.1 200 OK"): drop.
        Err(kind)
            if buf[..first_lf]
                .split(|&b| b == b' ' || b == b'\t')
                .next()
                .is_some_and(|w| w.contains(&b'/')) =>
        {
            return Err(fail(kind));
        }
        Err(kind) => {
            defer(kind);
            start_from_cseq = true;
            StartLine::Request {
                method: Method::Other("INVALID".into()),
                uri: 0..0,
                version_ok: true,
            }
        }
    };
    if !start.version_ok() {
        defer(ParseErrorKind::BadVersion);
    }

    // One span per line the scan counted (the start line's LF is among them): no regrowth for a
    // long INVITE, no unused slots kept alive with a short message.
    let mut headers = Vec::with_capacity(scan.n_lfs.clamp(1, MAX_HEADER_LINES + 1));
    let mut via = None;
    let mut call_id: Option<Range<usize>> = None;
    let mut cseq = None;
    let mut bad_cseq: Option<Range<usize>> = None;
    let mut from = None;
    let mut to = None;
    let mut max_forwards = None;
    let mut content_length = None;
    let mut content_type = None;
    let mut contact = None;
    let mut contact_count = 0usize;
    let mut expires: Option<u32> = None;
    // Fatal header faults: the index cannot be trusted for a response (missing routing data).
    let mut fatal: Option<ParseErrorKind> = None;
    let mut set_fatal = |k: ParseErrorKind| {
        if fatal.is_none() {
            fatal = Some(k);
        }
    };
    let raw_na = |r: Range<usize>| NameAddr {
        value: r.clone(),
        uri: r,
        tag: None,
    };

    let mut pos = (first_lf + 1).min(head_end);
    let mut lines = 0usize;
    let mut k = 1;
    while pos < head_end {
        let eol = line_end(k, pos);
        k += 1;
        let line = trim(&buf, pos..eol);
        pos = eol + 1;
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if lines > MAX_HEADER_LINES {
            defer(ParseErrorKind::TooLarge);
        }
        if scan.maybe_ctl && has_ctl(&buf[line.clone()]) {
            defer(ParseErrorKind::ControlCharacter);
        }
        let l = &buf[line.clone()];
        let tok = token_len(&buf, line.clone());
        let (name, value) = if tok > 0 && l.get(tok) == Some(&b':') {
            // The common `Name: value`: a token runs up to the first colon, so the checks below
            // cannot fail and the name needs no trimming.
            (
                line.start..line.start + tok,
                trim(&buf, line.start + tok + 1..line.end),
            )
        } else {
            let Some(colon) = memchr::memchr(b':', l) else {
                defer(ParseErrorKind::HeaderWithoutColon);
                continue;
            };
            let name = trim(&buf, line.start..line.start + colon);
            let value = trim(&buf, line.start + colon + 1..line.end);
            if name.is_empty() || !buf[name.clone()].iter().all(|&b| is_token_char(b)) {
                defer(ParseErrorKind::BadHeaderName);
                // Keep the raw value of a misspelt From/To/Call-ID/CSeq so the 400 can copy it.
                match misspelt_known(&buf[name.clone()]) {
                    Some(Known::From) if from.is_none() => from = Some(raw_na(value.clone())),
                    Some(Known::To) if to.is_none() => to = Some(raw_na(value.clone())),
                    Some(Known::CallId) if call_id.is_none() && !value.is_empty() => {
                        call_id = Some(value.clone())
                    }
                    _ => {}
                }
                continue;
            }
            (name, value)
        };
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
                    defer(ParseErrorKind::DuplicateHeader("Call-ID"));
                } else if value.is_empty() {
                    set_fatal(ParseErrorKind::BadHeader("Call-ID"));
                } else {
                    let v = &buf[value.clone()];
                    if v.len() > MAX_CALL_ID_LEN
                        || v.iter().any(|&b| b <= b' ' || b == 0x7f || b == b'"')
                    {
                        defer(ParseErrorKind::BadHeader("Call-ID"));
                    }
                    call_id = Some(value.clone());
                }
            }
            Some(Known::CSeq) => {
                if cseq.is_some() || bad_cseq.is_some() {
                    defer(ParseErrorKind::DuplicateHeader("CSeq"));
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
                        None if !value.is_empty() => {
                            defer(ParseErrorKind::BadHeader("CSeq"));
                            bad_cseq = Some(value.clone());
                        }
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
                    defer(ParseErrorKind::DuplicateHeader(label));
                } else {
                    match parse_name_addr(&buf, value.clone()) {
                        Some(na) if name_addr_ok(&buf, &na) => *slot = Some(na),
                        _ if value.is_empty() => set_fatal(ParseErrorKind::BadHeader(label)),
                        _ => {
                            defer(ParseErrorKind::BadHeader(label));
                            *slot = Some(raw_na(value.clone()));
                        }
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
                if !media_type_ok(&buf, value.clone()) {
                    defer(ParseErrorKind::BadHeader("Content-Type"));
                }
                content_type = Some(value.clone());
            }
            Some(Known::Contact) => {
                contact_count += 1;
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
            Some(k @ (Known::Route | Known::RecordRoute)) => {
                if !route_ok(&buf, value.clone()) {
                    defer(ParseErrorKind::BadHeader(if k == Known::Route {
                        "Route"
                    } else {
                        "Record-Route"
                    }));
                }
            }
            None => {
                if buf[name.clone()].eq_ignore_ascii_case(b"Expires") {
                    match parse_u32(&buf[value.clone()]) {
                        Some(n) => expires = Some(n),
                        None => defer(ParseErrorKind::BadHeader("Expires")),
                    }
                }
            }
        }
        headers.push(HeaderSpan { name, value, known });
    }

    // Without a usable CSeq number the request method still comes from the Request-Line, or from the
    // CSeq method token if that is all there is.
    let cseq = cseq.or_else(|| {
        let raw = bad_cseq.clone()?;
        let v = &buf[raw.clone()];
        let m = v
            .iter()
            .rposition(|&b| b == b' ' || b == b'\t')
            .and_then(|sp| Method::from_token(&v[sp + 1..]));
        let m = match (&start, start_from_cseq) {
            (StartLine::Request { method, .. }, false) => method.clone(),
            _ => m.unwrap_or(Method::Other("INVALID".into())),
        };
        Some((0, m))
    });

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
        // A cut-off datagram is best described as such, whatever header it lost.
        return Err(fail(if truncated {
            ParseErrorKind::Truncated
        } else {
            kind
        }));
    }
    let (Some(via), Some(from), Some(to), Some(call_id), Some((cseq_num, cseq_method))) =
        (via, from, to, call_id, cseq)
    else {
        return Err(fail(ParseErrorKind::MissingHeader("Via")));
    };

    if start_from_cseq && let StartLine::Request { method, .. } = &mut start {
        *method = cseq_method.clone();
    }
    if let StartLine::Request { method, .. } = &start {
        if bad_cseq.is_none() && *method != cseq_method {
            defer(ParseErrorKind::CSeqMethodMismatch);
        }
        // RFC 3261 10.2.2: `Contact: *` only in REGISTER, alone, with Expires: 0.
        if let Some(c) = &contact
            && &buf[c.uri.clone()] == b"*"
            && (*method != Method::Register || expires != Some(0) || contact_count > 1)
        {
            defer(ParseErrorKind::BadHeader("Contact"));
        }
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
    // RFC 3261 20.15: a non-empty body must say what it is.
    if !body.is_empty() && content_type.is_none() {
        defer(ParseErrorKind::MissingHeader("Content-Type"));
    }

    let msg = SipMessage(std::sync::Arc::new(super::Parsed {
        utf8_end: if utf8 { head_end } else { 0 },
        buf,
        start,
        headers,
        body,
        via,
        call_id,
        cseq_num,
        cseq_method,
        bad_cseq,
        from,
        to,
        max_forwards,
        content_type,
        contact,
    }));
    match deferred {
        None => Ok(msg),
        Some(kind) => {
            let request =
                matches!(&msg.0.start, StartLine::Request { method, .. } if *method != Method::Ack);
            Err(ParseError {
                kind,
                request: request.then(|| Box::new(msg)),
            })
        }
    }
}

/// From/To syntax beyond what [`parse_name_addr`] checks: balanced quotes and brackets, a URI with a
/// scheme.
fn name_addr_ok(buf: &[u8], na: &NameAddr) -> bool {
    let v = &buf[na.value.clone()];
    let mut q = false;
    let mut i = 0;
    let (mut lt, mut gt) = (0, 0);
    while i < v.len() {
        if !has_class(v[i], C_NA_SPECIAL) {
            i += 1;
            continue;
        }
        match v[i] {
            b'\\' if q => i += 1,
            b'"' => q = !q,
            b'<' if !q => lt += 1,
            b'>' if !q => gt += 1,
            _ => {}
        }
        i += 1;
    }
    let uri = &buf[na.uri.clone()];
    !q && lt == gt && lt <= 1 && uri.iter().position(|&b| b == b':').is_some_and(|c| c > 0)
}

/// A cheap sanity check of an SDP body (RFC 8866): starts with `v=0`, every line is `x=...`, and
/// there is an `m=` line with a port 0..=65535 and a transport. Not called by [`SipMessage::parse`]
/// (SDP is not SIP); the B2BUA calls it on INVITE bodies of type `application/sdp` and answers 488.
pub fn check_sdp(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "SDP is not UTF-8".to_string())?;
    // Line ends found by a byte loop: SDP lines are ~20 bytes, shorter than the set-up of the
    // memchr behind `str::split`.
    let mut rest = text;
    let lines = std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (line, tail) = match rest.bytes().position(|b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, ""),
            };
            rest = tail;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if !line.is_empty() {
                return Some(line);
            }
        }
        None
    });
    sdp_lines(lines)
}

/// [`check_sdp`] as first written, with `str::split`: the definition the byte loop must agree with.
#[cfg(test)]
pub(crate) fn check_sdp_reference(body: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(body).map_err(|_| "SDP is not UTF-8".to_string())?;
    let lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty());
    sdp_lines(lines)
}

/// The checks of [`check_sdp`] on its non-empty lines.
fn sdp_lines<'a>(mut lines: impl Iterator<Item = &'a str>) -> Result<(), String> {
    if lines.next() != Some("v=0") {
        return Err("SDP does not start with v=0".into());
    }
    let mut media = false;
    for l in lines {
        let b = l.as_bytes();
        if b.len() < 2 || !b[0].is_ascii_lowercase() || b[1] != b'=' {
            return Err(format!("bad SDP line {l:?}"));
        }
        if let Some(m) = l.strip_prefix("m=") {
            let mut f = m.split(' ');
            let (_media, port, proto) = (f.next(), f.next(), f.next());
            let port = port.unwrap_or("");
            let port = port.split('/').next().unwrap_or("");
            if !port.bytes().all(|c| c.is_ascii_digit())
                || parse_u32(port.as_bytes()).is_none_or(|p| p > 65535)
            {
                return Err(format!("bad SDP media port in {l:?}"));
            }
            if proto.is_none_or(str::is_empty) {
                return Err(format!("no SDP transport in {l:?}"));
            }
            media = true;
        }
    }
    if !media {
        return Err("SDP has no m= line".into());
    }
    Ok(())
}
