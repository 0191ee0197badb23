//! SIP messages: a lazily indexed view over the received bytes, and builders that write bytes.
//!
//! [`SipMessage::parse`] indexes a datagram once: the start line, every header line's name and value
//! spans, and the fields a B2BUA needs (top Via with branch/received/rport, Call-ID, CSeq, From/To with
//! tags, Max-Forwards, Content-Length, Content-Type, Contact). Everything else stays bytes, to be copied
//! verbatim by [`RequestBuilder::copy_headers`] or read through [`SipMessage::headers`]. A fully
//! structured rsip view is one call away with [`SipMessage::to_rsip`] for code that wants one.
//!
//! Building ([`build_response`], [`RequestBuilder`]) writes straight into one `Vec<u8>`; no per-header
//! `String` is created.

mod build;
mod method;
mod parse;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

pub(crate) use build::build_non2xx_ack;
pub use build::{
    BuildError, OutgoingResponse, RequestBuilder, build_cancel, build_response, new_branch,
    new_call_id, new_tag,
};
pub use method::Method;
pub use parse::{MAX_HEADER_BYTES, MAX_HEADER_LINES, canonical_name, check_sdp, is_stack_header};
pub(crate) use parse::{find_header_end, parse_u32};

/// The magic cookie every RFC 3261 branch starts with (RFC 3261 8.1.1.7).
pub const BRANCH_MAGIC: &str = "z9hG4bK";

/// Why a message was refused. `Display` is the fault alone ("Content-Length mismatch"); use
/// [`ParseError::reason_phrase`] for a 400's reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// Nothing but line ends (a keep-alive) or nothing at all.
    #[error("Empty message")]
    Empty,
    /// No blank line ends the header section.
    #[error("Truncated message")]
    Truncated,
    /// The header section is not UTF-8.
    #[error("Headers not UTF-8")]
    NotUtf8,
    /// The Request-Line or Status-Line does not follow RFC 3261 7.1/7.2.
    #[error("Bad start line")]
    BadStartLine,
    /// The SIP version is not SIP/2.0 (answered 505 Version Not Supported).
    #[error("Bad SIP version")]
    BadVersion,
    /// The Request-Line method is not a token of at most 32 characters.
    #[error("Bad method")]
    BadMethod,
    /// The Request-URI is not an absolute URI (or a sip/sips URI lacks a host, has a bad port or a
    /// bad %-escape).
    #[error("Bad Request-URI")]
    BadRequestUri,
    /// The Request-URI scheme is well formed but neither sip, sips nor tel (answered 416).
    #[error("Unsupported URI scheme")]
    UnsupportedUriScheme,
    /// A header line holds a control character other than HTAB (NUL, ESC, bare CR, ...).
    #[error("Control character in header")]
    ControlCharacter,
    /// The header section exceeds 32 KiB or 256 lines (answered 513 Message Too Large).
    #[error("Message too large")]
    TooLarge,
    /// A header line has no colon.
    #[error("Header without colon")]
    HeaderWithoutColon,
    /// A header name holds a non-token character.
    #[error("Bad header name")]
    BadHeaderName,
    /// A mandatory header (RFC 3261 8.1.1) is absent.
    #[error("Missing {0} header")]
    MissingHeader(&'static str),
    /// A header we index is malformed.
    #[error("Bad {0} header")]
    BadHeader(&'static str),
    /// A single-valued header appears twice.
    #[error("Duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// The body is shorter than Content-Length says.
    #[error("Content-Length mismatch")]
    ContentLengthMismatch,
    /// The CSeq method differs from the request method (RFC 3261 8.1.1.5).
    #[error("CSeq method mismatch")]
    CSeqMethodMismatch,
}

impl ParseErrorKind {
    /// The status code a request refused for this fault is answered with: 505 for a bad SIP version,
    /// 416 for an unsupported Request-URI scheme, 513 for an oversize header section, else 400.
    pub fn status(&self) -> u16 {
        match self {
            ParseErrorKind::BadVersion => 505,
            ParseErrorKind::UnsupportedUriScheme => 416,
            ParseErrorKind::TooLarge => 513,
            _ => 400,
        }
    }

    /// The standard reason phrase of [`ParseErrorKind::status`].
    pub fn status_text(&self) -> &'static str {
        match self.status() {
            505 => "Version Not Supported",
            416 => "Unsupported URI Scheme",
            513 => "Message Too Large",
            _ => "Bad Request",
        }
    }
}

/// A refused message: the fault, and the indexed request if it was complete enough to answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What was wrong.
    pub kind: ParseErrorKind,
    /// Present when the message is a request (not ACK) whose Via, From, To, Call-ID and CSeq were all
    /// indexed: the caller should answer it with `build_response(req, 400, &err.reason_phrase(), ..)`.
    /// When `None`, the message must be dropped silently.
    pub request: Option<Box<SipMessage>>,
}

impl ParseError {
    /// The reason phrase for the answer, e.g. "Bad Request (Content-Length mismatch)" or
    /// "Version Not Supported (Bad SIP version)"; send it with [`ParseError::status`].
    pub fn reason_phrase(&self) -> String {
        format!("{} ({})", self.kind.status_text(), self.kind)
    }

    /// The status code to answer with (see [`ParseErrorKind::status`]).
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The request to answer with 400, if any (see [`ParseError::request`]).
    pub fn respondable(&self) -> Option<&SipMessage> {
        self.request.as_deref()
    }
}

/// Header names we index, compact forms folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    ContentLength,
    ContentType,
    Contact,
    Route,
    RecordRoute,
}

#[derive(Debug, Clone)]
pub(crate) struct HeaderSpan {
    pub(crate) name: Range<usize>,
    pub(crate) value: Range<usize>,
    pub(crate) known: Option<Known>,
}

#[derive(Debug, Clone)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        uri: Range<usize>,
        version_ok: bool,
    },
    Response {
        status: u16,
        reason: Range<usize>,
        version_ok: bool,
    },
}

impl StartLine {
    fn version_ok(&self) -> bool {
        match self {
            StartLine::Request { version_ok, .. } | StartLine::Response { version_ok, .. } => {
                *version_ok
            }
        }
    }
}

/// Spans of a name-addr header value (From, To, Contact).
#[derive(Debug, Clone)]
pub(crate) struct NameAddr {
    pub(crate) value: Range<usize>,
    pub(crate) uri: Range<usize>,
    pub(crate) tag: Option<Range<usize>>,
}

/// Spans of the top Via value.
#[derive(Debug, Clone)]
pub(crate) struct Via {
    pub(crate) value: Range<usize>,
    pub(crate) transport: Range<usize>,
    pub(crate) host: Range<usize>,
    pub(crate) port: Option<u16>,
    pub(crate) branch: Option<Range<usize>>,
    pub(crate) received: Option<Range<usize>>,
    pub(crate) rport: Option<Option<u16>>,
    /// From the first `;` (inclusive) to the end of the value; empty if no parameters.
    pub(crate) params: Range<usize>,
}

/// A parsed SIP request or response: the bytes plus an index into them. Cheap to clone and to move.
#[derive(Clone)]
pub struct SipMessage(Arc<Parsed>);

impl std::fmt::Debug for SipMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What [`SipMessage`] shares between its clones: the bytes and their index. Behind an `Arc`, a
/// clone is a reference count and a move is one pointer (the index is ~560 bytes; messages are
/// cloned into transactions and moved through the call actor's queue several times per call).
#[derive(Debug)]
struct Parsed {
    buf: Bytes,
    /// `buf[..utf8_end]` is known to be UTF-8: the header section, or nothing if it was not UTF-8
    /// (a refused message can still be answered). Lets [`SipMessage::str_at`] skip the validation.
    utf8_end: usize,
    start: StartLine,
    headers: Vec<HeaderSpan>,
    body: Range<usize>,
    via: Via,
    call_id: Range<usize>,
    cseq_num: u32,
    cseq_method: Method,
    /// The raw CSeq value when it did not parse (only in a [`ParseError`]'s request), copied into the
    /// 400 verbatim.
    bad_cseq: Option<Range<usize>>,
    from: NameAddr,
    to: NameAddr,
    max_forwards: Option<u8>,
    content_type: Option<Range<usize>>,
    contact: Option<NameAddr>,
}

/// One header line of a message: name and value as written, and whether the parser indexed the name,
/// so that a caller sorting lines need not compare names again.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLine<'a> {
    /// The name as written (compact forms included).
    pub name: &'a str,
    /// The value, trimmed.
    pub value: &'a str,
    known: Option<Known>,
}

impl HeaderLine<'_> {
    /// One of the headers the stack reads and writes itself ([`is_stack_header`]).
    pub fn is_stack(&self) -> bool {
        self.known.is_some()
    }

    /// Via, Route or Record-Route: how a message travels hop by hop.
    pub fn is_routing(&self) -> bool {
        matches!(
            self.known,
            Some(Known::Via | Known::Route | Known::RecordRoute)
        )
    }
}

/// The top Via of a message, read-only.
#[derive(Debug, Clone, Copy)]
pub struct TopVia<'a> {
    msg: &'a SipMessage,
}

impl<'a> TopVia<'a> {
    /// The whole top Via value (first comma-separated element), e.g. `SIP/2.0/UDP h:5060;branch=..`.
    pub fn value(&self) -> &'a str {
        self.msg.str_at(&self.msg.0.via.value)
    }
    /// The transport token, e.g. `UDP` or `TCP`, as written.
    pub fn transport(&self) -> &'a str {
        self.msg.str_at(&self.msg.0.via.transport)
    }
    /// The sent-by host (an IPv6 reference keeps its brackets).
    pub fn host(&self) -> &'a str {
        self.msg.str_at(&self.msg.0.via.host)
    }
    /// The sent-by port, if written.
    pub fn port(&self) -> Option<u16> {
        self.msg.0.via.port
    }
    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.msg.0.via.branch.as_ref().map(|r| self.msg.str_at(r))
    }
    /// The `received` parameter (RFC 3261 18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.msg.0.via.received.as_ref().map(|r| self.msg.str_at(r))
    }
    /// The `rport` parameter (RFC 3581): `Some(None)` if present without value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.msg.0.via.rport
    }
    /// The parameter section, from the first `;` included; empty if none.
    pub fn params(&self) -> &'a str {
        self.msg.str_at(&self.msg.0.via.params)
    }
    /// The byte span of the top Via value within [`SipMessage::as_bytes`].
    pub(crate) fn span(&self) -> Range<usize> {
        self.msg.0.via.value.clone()
    }
}

impl SipMessage {
    /// Parses one datagram (or one stream frame) per RFC 3261 7 with Callgate's strictness.
    ///
    /// Leading CRLFs are skipped (RFC 3261 7.5). Folded header lines are unfolded. A body shorter than
    /// Content-Length is an error; bytes beyond it are discarded (RFC 3261 18.3). Max-Forwards may be
    /// absent (RFC 3261 16.3 lets a proxy handle that; so do we). Never panics.
    pub fn parse(bytes: Bytes) -> Result<SipMessage, ParseError> {
        parse::parse(bytes)
    }

    fn str_at(&self, r: &Range<usize>) -> &str {
        let Some(b) = self.0.buf.get(r.clone()) else {
            return "";
        };
        // Spans start and end on ASCII delimiters of the header section, so they lie in the
        // validated prefix; checking that (and the char boundaries) costs far less than validating
        // every accessor's result again. The fallback keeps the no-panic promise regardless.
        if r.end <= self.0.utf8_end
            && is_char_boundary(&self.0.buf, r.start)
            && is_char_boundary(&self.0.buf, r.end)
        {
            // SAFETY: `buf[..utf8_end]` is valid UTF-8 (parse checked it, and `buf` is immutable), and
            // a sub-slice of valid UTF-8 that starts and ends on char boundaries is valid UTF-8.
            unsafe { std::str::from_utf8_unchecked(b) }
        } else {
            std::str::from_utf8(b).unwrap_or("")
        }
    }

    /// The whole message as received (possibly after unfolding), including any bytes after the body.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0.buf
    }

    /// The message bytes up to the end of the body (what should be forwarded or retransmitted).
    pub fn wire_bytes(&self) -> Bytes {
        self.0.buf.slice(..self.0.body.end)
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.0.start, StartLine::Request { .. })
    }

    /// The request method, `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.0.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI as written, `None` for a response.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.0.start {
            StartLine::Request { uri, .. } => Some(self.str_at(uri)),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match &self.0.start {
            StartLine::Response { status, .. } => Some(*status),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase, `None` for a request.
    pub fn reason(&self) -> Option<&str> {
        match &self.0.start {
            StartLine::Response { reason, .. } => Some(self.str_at(reason)),
            StartLine::Request { .. } => None,
        }
    }

    /// The top Via.
    pub fn top_via(&self) -> TopVia<'_> {
        TopVia { msg: self }
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> &str {
        self.str_at(&self.0.call_id)
    }

    /// The CSeq sequence number.
    pub fn cseq(&self) -> u32 {
        self.0.cseq_num
    }

    /// The CSeq method (for a response: the method of the request it answers).
    pub fn cseq_method(&self) -> &Method {
        &self.0.cseq_method
    }

    /// The From value as written.
    pub fn from(&self) -> &str {
        self.str_at(&self.0.from.value)
    }
    /// The From URI (inside `<>` if angle-bracketed).
    pub fn from_uri(&self) -> &str {
        self.str_at(&self.0.from.uri)
    }
    /// The From tag.
    pub fn from_tag(&self) -> Option<&str> {
        self.0.from.tag.as_ref().map(|r| self.str_at(r))
    }
    /// The To value as written.
    pub fn to(&self) -> &str {
        self.str_at(&self.0.to.value)
    }
    /// The To URI.
    pub fn to_uri(&self) -> &str {
        self.str_at(&self.0.to.uri)
    }
    /// The To tag.
    pub fn to_tag(&self) -> Option<&str> {
        self.0.to.tag.as_ref().map(|r| self.str_at(r))
    }

    /// Max-Forwards, `None` if absent (RFC 3261 16.3: treat as 70 when forwarding).
    pub fn max_forwards(&self) -> Option<u8> {
        self.0.max_forwards
    }

    /// Content-Type value, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.0.content_type.as_ref().map(|r| self.str_at(r))
    }

    /// The first Contact's URI (`*` for a wildcard), if any.
    pub fn contact_uri(&self) -> Option<&str> {
        self.0.contact.as_ref().map(|c| self.str_at(&c.uri))
    }

    /// The body (exactly Content-Length bytes when that header is present).
    pub fn body(&self) -> Bytes {
        self.0.buf.slice(self.0.body.clone())
    }

    /// Every header line as (name as written, value), in order. Compact names are not expanded; compare
    /// through [`canonical_name`] or use [`SipMessage::header_values`].
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.0
            .headers
            .iter()
            .map(|h| (self.str_at(&h.name), self.str_at(&h.value)))
    }

    /// Every header line with what the parser learnt of its name, in order (see [`HeaderLine`]).
    pub fn header_lines(&self) -> impl Iterator<Item = HeaderLine<'_>> + '_ {
        self.0.headers.iter().map(|h| HeaderLine {
            name: self.str_at(&h.name),
            value: self.str_at(&h.value),
            known: h.known,
        })
    }

    /// Values of the header lines named `name` (case-insensitive, compact forms equivalent), in order.
    /// A line holding several comma-separated values is returned as one value.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let want = canonical_name(name);
        self.0.headers.iter().filter_map(move |h| {
            let n = self.str_at(&h.name);
            canonical_name(n)
                .eq_ignore_ascii_case(want)
                .then(|| self.str_at(&h.value))
        })
    }

    /// The first value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = canonical_name(name);
        self.0
            .headers
            .iter()
            .find(|h| canonical_name(self.str_at(&h.name)).eq_ignore_ascii_case(want))
            .map(|h| self.str_at(&h.value))
    }

    /// The Via values, top first, comma-separated values split.
    pub fn vias(&self) -> impl Iterator<Item = &str> + '_ {
        self.split_values(Known::Via)
    }

    /// The Record-Route values in order, comma-separated values split.
    pub fn record_routes(&self) -> impl Iterator<Item = &str> + '_ {
        self.split_values(Known::RecordRoute)
    }

    /// The Route values in order, comma-separated values split.
    pub fn routes(&self) -> impl Iterator<Item = &str> + '_ {
        self.split_values(Known::Route)
    }

    fn split_values(&self, k: Known) -> impl Iterator<Item = &str> + '_ {
        self.0
            .headers
            .iter()
            .filter(move |h| h.known == Some(k))
            .flat_map(move |h| split_commas(self.str_at(&h.value)))
    }

    pub(crate) fn header_spans(&self) -> &[HeaderSpan] {
        &self.0.headers
    }

    /// The CSeq value as written, when it was unusable (only in a refused request).
    pub(crate) fn bad_cseq(&self) -> Option<&str> {
        self.0.bad_cseq.as_ref().map(|r| self.str_at(r))
    }

    pub(crate) fn raw(&self) -> &[u8] {
        &self.0.buf
    }

    /// Returns this request with the RFC 3261 18.2.1 `received` and RFC 3581 `rport` parameters filled
    /// in on the top Via from the packet's source address. `received` is added when the sent-by host
    /// differs from the source IP or when `rport` is present (RFC 3581 4); an empty `rport` gets the
    /// source port. Returns `None` when nothing needs changing (the common case on a LAN without rport).
    pub fn with_via_received(&self, source: std::net::SocketAddr) -> Option<SipMessage> {
        use std::fmt::Write as _;
        let via = self.top_via();
        let host = via.host().trim_start_matches('[').trim_end_matches(']');
        let rport = via.rport().is_some();
        // Compared as addresses, not text: formatting the source for every request cost more than
        // the rest of this check (and `::1` and `0:0::1` are the same host).
        if !rport
            && host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|h| h == source.ip())
        {
            return None;
        }
        let ip = source.ip();
        let span = via.span();
        let mut value = String::with_capacity(span.len() + 40);
        value.push_str(self.str_at(&(span.start..self.0.via.params.start)));
        let params = via.params();
        for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let name = p.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
                continue;
            }
            value.push(';');
            value.push_str(p);
        }
        let _ = write!(value, ";received={ip}");
        if rport {
            let _ = write!(value, ";rport={}", source.port());
        }
        let mut out = Vec::with_capacity(self.0.buf.len() + 40);
        out.extend_from_slice(&self.0.buf[..span.start]);
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(&self.0.buf[span.end..]);
        SipMessage::parse(Bytes::from(out)).ok()
    }

    /// A fully structured rsip view of the same bytes, for code that prefers typed headers over speed.
    pub fn to_rsip(&self) -> Result<rsipstack::sip::SipMessage, rsipstack::sip::Error> {
        rsipstack::sip::SipMessage::try_from(self.wire_bytes())
    }
}

/// As `str::is_char_boundary` on bytes: `i` is the slice end or not a UTF-8 continuation byte.
fn is_char_boundary(b: &[u8], i: usize) -> bool {
    b.get(i).is_none_or(|&c| (c as i8) >= -0x40)
}

/// Splits a header value at commas outside quotes and angle brackets, trimming each element.
pub fn split_commas(v: &str) -> impl Iterator<Item = &str> + '_ {
    let mut rest = Some(v);
    std::iter::from_fn(move || {
        loop {
            let s = rest?;
            let bytes = s.as_bytes();
            let (mut q, mut a) = (false, false);
            let mut cut = None;
            let mut i = 0;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if q => i += 1,
                    b'"' => q = !q,
                    b'<' if !q => a = true,
                    b'>' if !q => a = false,
                    b',' if !q && !a => {
                        cut = Some(i);
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
            let (item, next) = match cut {
                Some(c) => (&s[..c], Some(&s[c + 1..])),
                None => (s, None),
            };
            rest = next;
            let item = item.trim();
            if !item.is_empty() {
                return Some(item);
            }
        }
    })
}

/// Extracts the URI from a name-addr or addr-spec string (`"A" <sip:a@h>;x` -> `sip:a@h`).
pub fn name_addr_uri(value: &str) -> Option<&str> {
    let na = parse::parse_name_addr(value.as_bytes(), 0..value.len())?;
    value.get(na.uri)
}

#[cfg(test)]
mod tests;
