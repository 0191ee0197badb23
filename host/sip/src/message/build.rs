//! Builders: responses per RFC 3261 8.2.6 and requests for a B2BUA, written straight into one buffer.

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::method::{Method, is_token_char};
use super::{BRANCH_MAGIC, Known, ParseErrorKind, SipMessage};

/// Why a message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A caller-supplied string holds CR, LF or NUL, which would let it inject header lines.
    #[error("{0} contains CR, LF or NUL")]
    Injection(&'static str),
    /// A header name is empty or holds a non-token character.
    #[error("bad header name")]
    BadHeaderName,
    /// A status code outside 100..=699.
    #[error("bad status code {0}")]
    BadStatus(u16),
    /// A required field was not set on a [`RequestBuilder`].
    #[error("missing {0}")]
    Missing(&'static str),
    /// The built request does not parse back (e.g. a Request-URI without a scheme).
    #[error("built request does not parse: {0}")]
    Unparseable(ParseErrorKind),
    /// Asked to answer something that is not a request.
    #[error("not a request")]
    NotARequest,
}

fn check(what: &'static str, s: &str) -> Result<(), BuildError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(BuildError::Injection(what))
    } else {
        Ok(())
    }
}

fn check_header(name: &str, value: &str) -> Result<(), BuildError> {
    check("header name", name)?;
    check("header value", value)?;
    if name.is_empty() || !name.bytes().all(is_token_char) {
        return Err(BuildError::BadHeaderName);
    }
    Ok(())
}

fn line(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, as `write!(out, "{n}")` would, without the formatting machinery (a few
/// hundred instructions per number, and every built message writes two or three).
fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `CSeq: <n> <method>` and the line end.
fn cseq_line(out: &mut Vec<u8>, n: u32, method: &str) {
    out.extend_from_slice(b"CSeq: ");
    push_num(out, u64::from(n));
    out.push(b' ');
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn body_lines(out: &mut Vec<u8>, body: Option<(&str, &[u8])>) {
    match body {
        Some((ct, b)) => {
            line(out, "Content-Type", ct);
            out.extend_from_slice(b"Content-Length: ");
            push_num(out, b.len() as u64);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
    }
}

/// A response ready for a server transaction: its bytes and status code.
#[derive(Debug, Clone)]
pub struct OutgoingResponse {
    status: u16,
    bytes: Bytes,
}

impl OutgoingResponse {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The serialized response.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Builds a response to `req` per RFC 3261 8.2.6: Via lines, From, To, Call-ID and CSeq are copied;
/// `to_tag` is added to To unless the request's To already has a tag (in-dialog requests); then
/// `extra_headers` in order, then the body with its Content-Type (and always Content-Length).
///
/// For 100 Trying pass `to_tag: None` (RFC 3261 8.2.6.2 only requires the tag on other responses).
pub fn build_response(
    req: &SipMessage,
    status: u16,
    reason: &str,
    extra_headers: &[(&str, &str)],
    to_tag: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<OutgoingResponse, BuildError> {
    if !req.is_request() {
        return Err(BuildError::NotARequest);
    }
    if !(100..=699).contains(&status) {
        return Err(BuildError::BadStatus(status));
    }
    check("reason phrase", reason)?;
    if let Some(t) = to_tag {
        check("To tag", t)?;
    }
    for (n, v) in extra_headers {
        check_header(n, v)?;
    }
    if let Some((ct, _)) = body {
        check("Content-Type", ct)?;
    }
    let raw = req.raw();
    let mut out = Vec::with_capacity(256 + raw.len().min(2048) + body.map_or(0, |(_, b)| b.len()));
    out.extend_from_slice(b"SIP/2.0 ");
    push_num(&mut out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in req.header_spans() {
        if h.known == Some(Known::Via) {
            out.extend_from_slice(b"Via: ");
            out.extend_from_slice(&raw[h.value.clone()]);
            out.extend_from_slice(b"\r\n");
        }
    }
    line(&mut out, "From", req.from());
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(req.to().as_bytes());
    if let (Some(tag), None) = (to_tag, req.to_tag()) {
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(tag.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    line(&mut out, "Call-ID", req.call_id());
    match req.bad_cseq() {
        Some(raw) => line(&mut out, "CSeq", raw),
        None => {
            cseq_line(&mut out, req.cseq(), req.cseq_method().as_str());
        }
    }
    for (n, v) in extra_headers {
        line(&mut out, n, v);
    }
    body_lines(&mut out, body);
    Ok(OutgoingResponse {
        status,
        bytes: Bytes::from(out),
    })
}

/// Builds a request a B2BUA originates (a new leg, or an in-dialog request via the dialog module).
///
/// Borrows every string, so building writes one buffer and copies each value once. Required: Via
/// ([`RequestBuilder::via`]), From, To, Call-ID, CSeq. Max-Forwards defaults to 70.
///
/// ```
/// use callgate_sip::message::{Method, RequestBuilder, new_tag, new_call_id};
/// let (tag, call_id) = (new_tag(), new_call_id("gw.example"));
/// let invite = RequestBuilder::new(Method::Invite, "sip:bob@b.example")
///     .via("UDP", "10.0.0.1:5060")
///     .from("<sip:alice@a.example>", &tag)
///     .to("<sip:bob@b.example>", None)
///     .call_id(&call_id)
///     .cseq(1)
///     .contact("<sip:gw@10.0.0.1:5060>")
///     .header("P-Asserted-Identity", "<sip:alice@a.example>")
///     .body("application/sdp", b"v=0\r\n")
///     .build()
///     .unwrap();
/// assert!(invite.top_via().branch().unwrap().starts_with("z9hG4bK"));
/// ```
#[derive(Debug, Clone)]
pub struct RequestBuilder<'a> {
    method: Method,
    uri: &'a str,
    via: Option<(&'a str, &'a str, Cow<'a, str>)>,
    max_forwards: u8,
    from: Option<(&'a str, &'a str)>,
    to: Option<(&'a str, Option<&'a str>)>,
    call_id: Option<&'a str>,
    cseq: Option<u32>,
    contact: Option<&'a str>,
    routes: Vec<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<(&'a str, &'a [u8])>,
}

impl<'a> RequestBuilder<'a> {
    /// Starts a request with its method and Request-URI.
    pub fn new(method: Method, request_uri: &'a str) -> Self {
        RequestBuilder {
            method,
            uri: request_uri,
            via: None,
            max_forwards: 70,
            from: None,
            to: None,
            call_id: None,
            cseq: None,
            contact: None,
            routes: Vec::new(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Our Via: transport token (`UDP`, `TCP`) and sent-by (`host[:port]`), with a fresh RFC 3261
    /// branch and `rport` (RFC 3581) so responses come back to our socket even through NAT.
    pub fn via(mut self, transport: &'a str, sent_by: &'a str) -> Self {
        self.via = Some((transport, sent_by, Cow::Owned(new_branch())));
        self
    }

    /// Our Via with a given branch: CANCEL and the ACK of a non-2xx reuse the INVITE's branch
    /// (RFC 3261 9.1, 17.1.1.3).
    pub fn via_with_branch(
        mut self,
        transport: &'a str,
        sent_by: &'a str,
        branch: &'a str,
    ) -> Self {
        self.via = Some((transport, sent_by, Cow::Borrowed(branch)));
        self
    }

    /// Max-Forwards (default 70).
    pub fn max_forwards(mut self, n: u8) -> Self {
        self.max_forwards = n;
        self
    }

    /// From: a name-addr without tag (e.g. `"Alice" <sip:alice@a>`) and our tag.
    pub fn from(mut self, value: &'a str, tag: &'a str) -> Self {
        self.from = Some((value, tag));
        self
    }

    /// To: a name-addr without tag, plus the remote tag for in-dialog requests.
    pub fn to(mut self, value: &'a str, tag: Option<&'a str>) -> Self {
        self.to = Some((value, tag));
        self
    }

    /// Call-ID.
    pub fn call_id(mut self, call_id: &'a str) -> Self {
        self.call_id = Some(call_id);
        self
    }

    /// CSeq number; the CSeq method is the request method.
    pub fn cseq(mut self, n: u32) -> Self {
        self.cseq = Some(n);
        self
    }

    /// Contact value as written, e.g. `<sip:gw@10.0.0.1:5060>`.
    pub fn contact(mut self, value: &'a str) -> Self {
        self.contact = Some(value);
        self
    }

    /// Appends one Route value (written before the other headers, in call order).
    pub fn route(mut self, value: &'a str) -> Self {
        self.routes.push(value);
        self
    }

    /// Appends a header line.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Copies every line of `msg` whose header name is in `names` (case-insensitive, compact forms
    /// equivalent), verbatim and in `msg`'s order. Names we write ourselves (Via, From, To, Call-ID,
    /// CSeq, Max-Forwards, Contact, Content-*) are never copied, so a policy list cannot duplicate them.
    pub fn copy_headers(mut self, msg: &'a SipMessage, names: &[&str]) -> Self {
        for (n, v) in msg.headers() {
            let canon = super::canonical_name(n);
            if super::parse::known_header(canon.as_bytes())
                .is_some_and(|k| !matches!(k, Known::Route | Known::RecordRoute))
            {
                continue;
            }
            if names
                .iter()
                .any(|w| super::canonical_name(w).eq_ignore_ascii_case(canon))
            {
                self.headers.push((n, v));
            }
        }
        self
    }

    /// The body and its Content-Type.
    pub fn body(mut self, content_type: &'a str, body: &'a [u8]) -> Self {
        self.body = Some((content_type, body));
        self
    }

    /// The branch this request will carry, once [`RequestBuilder::via`] was called.
    pub fn branch(&self) -> Option<&str> {
        self.via.as_ref().map(|v| v.2.as_ref())
    }

    /// Writes the request and parses it back (so that what we send is what we can parse).
    pub fn build(self) -> Result<SipMessage, BuildError> {
        SipMessage::parse(self.build_bytes()?).map_err(|e| BuildError::Unparseable(e.kind))
    }

    /// The request's bytes, with the same checks as [`RequestBuilder::build`] on every part but
    /// without indexing the result: for a request that is only sent (an ACK for a 2xx, which no
    /// transaction keeps), the parse was a sixth of what building it cost.
    pub fn build_bytes(self) -> Result<Bytes, BuildError> {
        let (transport, sent_by, branch) = self.via.ok_or(BuildError::Missing("Via"))?;
        let (from, from_tag) = self.from.ok_or(BuildError::Missing("From"))?;
        let (to, to_tag) = self.to.ok_or(BuildError::Missing("To"))?;
        let call_id = self.call_id.ok_or(BuildError::Missing("Call-ID"))?;
        let cseq = self.cseq.ok_or(BuildError::Missing("CSeq"))?;
        check("Request-URI", self.uri)?;
        if self.uri.contains(' ') {
            return Err(BuildError::Injection("Request-URI"));
        }
        for (what, s) in [
            ("Via", transport),
            ("Via", sent_by),
            ("Via", &*branch),
            ("From", from),
            ("From tag", from_tag),
            ("To", to),
            ("To tag", to_tag.unwrap_or("")),
            ("Call-ID", call_id),
            ("Contact", self.contact.unwrap_or("")),
            ("Content-Type", self.body.map_or("", |b| b.0)),
        ] {
            check(what, s)?;
        }
        for r in &self.routes {
            check("Route", r)?;
        }
        for (n, v) in &self.headers {
            check_header(n, v)?;
        }
        let mut out = Vec::with_capacity(
            384 + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
                + self.body.map_or(0, |b| b.1.len()),
        );
        let m = self.method.as_str();
        out.extend_from_slice(m.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\nVia: SIP/2.0/");
        out.extend_from_slice(transport.as_bytes());
        out.push(b' ');
        out.extend_from_slice(sent_by.as_bytes());
        out.extend_from_slice(b";branch=");
        out.extend_from_slice(branch.as_bytes());
        out.extend_from_slice(b";rport\r\n");
        out.extend_from_slice(b"Max-Forwards: ");
        push_num(&mut out, u64::from(self.max_forwards));
        out.extend_from_slice(b"\r\n");
        for r in &self.routes {
            line(&mut out, "Route", r);
        }
        out.extend_from_slice(b"From: ");
        out.extend_from_slice(from.as_bytes());
        out.extend_from_slice(b";tag=");
        out.extend_from_slice(from_tag.as_bytes());
        out.extend_from_slice(b"\r\nTo: ");
        out.extend_from_slice(to.as_bytes());
        if let Some(t) = to_tag {
            out.extend_from_slice(b";tag=");
            out.extend_from_slice(t.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        line(&mut out, "Call-ID", call_id);
        cseq_line(&mut out, cseq, m);
        if let Some(c) = self.contact {
            line(&mut out, "Contact", c);
        }
        for (n, v) in &self.headers {
            line(&mut out, n, v);
        }
        body_lines(&mut out, self.body);
        Ok(Bytes::from(out))
    }
}

/// A 64-bit value unpredictable across processes and distinct within one: SipHash keyed by std's
/// per-process random keys over a counter. Not cryptographic; RFC 3261 19.3 asks tags for 32 bits of
/// randomness and branches for uniqueness, which this meets without a `rand` dependency.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::collections::hash_map::RandomState::new().hash_one(n)
}

/// Appends `v` as 16 lowercase hex digits (`{v:016x}` without the formatting machinery).
fn hex16(out: &mut String, v: u64) {
    for i in (0..16).rev() {
        out.push(char::from(
            b"0123456789abcdef"[(v >> (4 * i)) as usize & 0xf],
        ));
    }
}

/// A fresh RFC 3261 branch: `z9hG4bK` followed by 16 hex digits.
pub fn new_branch() -> String {
    let mut s = String::with_capacity(BRANCH_MAGIC.len() + 16);
    s.push_str(BRANCH_MAGIC);
    hex16(&mut s, random_u64());
    s
}

/// A fresh From/To tag (16 hex digits, 64 bits).
pub fn new_tag() -> String {
    let mut s = String::with_capacity(16);
    hex16(&mut s, random_u64());
    s
}

/// A fresh Call-ID, `<32 hex digits>@host`.
pub fn new_call_id(host: &str) -> String {
    let mut s = String::with_capacity(33 + host.len());
    hex16(&mut s, random_u64());
    hex16(&mut s, random_u64());
    s.push('@');
    s.push_str(host);
    s
}

/// Builds the ACK for a non-2xx final response (RFC 3261 17.1.1.3): Request-URI, Call-ID, From, CSeq
/// number and Route set of the INVITE, the INVITE's top Via only, the response's To (with its tag).
pub(crate) fn build_non2xx_ack(invite: &SipMessage, resp: &SipMessage) -> Bytes {
    let mut out = Vec::with_capacity(invite.raw().len().min(1024) + 64);
    out.extend_from_slice(b"ACK ");
    out.extend_from_slice(invite.request_uri().unwrap_or("").as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\n");
    line(&mut out, "Via", invite.top_via().value());
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    for r in invite.routes() {
        line(&mut out, "Route", r);
    }
    line(&mut out, "From", invite.from());
    line(&mut out, "To", resp.to());
    line(&mut out, "Call-ID", invite.call_id());
    cseq_line(&mut out, invite.cseq(), "ACK");
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Bytes::from(out)
}

/// Builds a CANCEL for `invite` (RFC 3261 9.1): same Request-URI, Call-ID, From, To, CSeq number and
/// Route set, and the INVITE's top Via (hence its branch). Send it on its own non-INVITE
/// [`crate::transaction::ClientTransaction`], and only once a provisional response arrived (9.1).
pub fn build_cancel(
    invite: &SipMessage,
    extra_headers: &[(&str, &str)],
) -> Result<SipMessage, BuildError> {
    if invite.method() != Some(&Method::Invite) {
        return Err(BuildError::NotARequest);
    }
    for (n, v) in extra_headers {
        check_header(n, v)?;
    }
    let mut out = Vec::with_capacity(invite.raw().len().min(1024) + 64);
    out.extend_from_slice(b"CANCEL ");
    out.extend_from_slice(invite.request_uri().unwrap_or("").as_bytes());
    out.extend_from_slice(b" SIP/2.0\r\n");
    line(&mut out, "Via", invite.top_via().value());
    out.extend_from_slice(b"Max-Forwards: 70\r\n");
    for r in invite.routes() {
        line(&mut out, "Route", r);
    }
    line(&mut out, "From", invite.from());
    line(&mut out, "To", invite.to());
    line(&mut out, "Call-ID", invite.call_id());
    cseq_line(&mut out, invite.cseq(), "CANCEL");
    for (n, v) in extra_headers {
        line(&mut out, n, v);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    SipMessage::parse(Bytes::from(out)).map_err(|e| BuildError::Unparseable(e.kind))
}
