#![allow(dead_code)]
//! A small scriptable SIP user agent over UDP for behaviour tests (h2-support style).
//!
//! The test plays a peer of the gateway: a UAC on leg A, a UAS on leg B, or both. Everything
//! is raw text on a tokio `UdpSocket` bound to 127.0.0.1, with no project crates, so that a bug
//! in Callgate's own parser cannot hide in the tool that tests it.
//!
//! ```ignore
//! let mut callee = Ua::bind_port(0).await;               // leg B: awaits INVITEs
//! let mut caller = Ua::bind().await.with_peer(gateway);   // leg A
//! let invite = caller.invite(&format!("sip:bob@{gateway}")).header("X-Tenant", "acme").sdp(SDP).send().await;
//! let inv_b = callee.recv_request("INVITE", WAIT).await;
//! callee.respond(&inv_b, 180, "Ringing").send().await;
//! let ok_b = callee.respond(&inv_b, 200, "OK").sdp(SDP).send().await;
//! let ok_a = caller.recv_final(WAIT).await;               // skips 1xx
//! let mut dlg = caller.ack_2xx(&invite, &ok_a).await;
//! caller.bye(&mut dlg).await;
//! ```
//!
//! Rules: every wait is bounded and panics with what was awaited and what arrived instead;
//! received datagrams that are byte-for-byte repeats of one already seen (retransmissions) are
//! skipped; messages that arrive while waiting for something else are kept, in order, for a
//! later `recv_*` call. Nothing is retransmitted automatically: the script decides.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// A reasonable default for one wait on loopback.
pub const WAIT: Duration = Duration::from_secs(5);

/// An SDP offer/answer body good enough for a gateway that only relays it.
pub fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

static COUNTER: AtomicU64 = AtomicU64::new(1);

fn unique() -> String {
    format!(
        "{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Compact header forms (RFC 3261 7.3.3 and later RFCs) mapped to their full names.
fn expand_compact(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "r" => "refer-to",
        "b" => "referred-by",
        "u" => "allow-events",
        "x" => "session-expires",
        "y" => "identity",
        "a" => "accept-contact",
        "j" => "reject-contact",
        "d" => "request-disposition",
        _ => name,
    }
}

fn same_header(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Splits a header value at commas outside quotes and angle brackets (for Via, Route, ...).
fn split_commas(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut cur = String::new();
    for ch in value.chars() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The value of parameter `name` (`;name=value`) in a header value, outside `<...>`.
pub fn param(value: &str, name: &str) -> Option<String> {
    let after_uri = match (value.find('<'), value.rfind('>')) {
        (Some(_), Some(end)) => &value[end + 1..],
        _ => value,
    };
    after_uri.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// The URI inside a name-addr (`"x" <sip:a@b>;tag=1` -> `sip:a@b`) or an addr-spec (`sip:a@b;tag=1`).
pub fn uri_of(value: &str) -> String {
    if let (Some(start), Some(end)) = (value.find('<'), value.find('>'))
        && start < end
    {
        return value[start + 1..end].trim().to_string();
    }
    value.split(';').next().unwrap_or("").trim().to_string()
}

/// `host:port` of a SIP URI as a socket address, when the host is an IP literal (5060 if no port).
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let rest = uri.split_once(':')?.1; // drop the scheme
    let rest = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let hostport = rest.split([';', '?', '>']).next()?.trim();
    if let Ok(addr) = hostport.parse() {
        return Some(addr);
    }
    format!("{hostport}:5060").parse().ok()
}

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: String,
        uri: String,
        version: String,
    },
    Response {
        version: String,
        status: u16,
        reason: String,
    },
}

/// A parsed SIP message, tolerant of what a gateway may send: LF or CRLF line ends, folded
/// header lines, compact names, any header case, a missing Content-Length (body = the rest).
#[derive(Clone)]
pub struct Msg {
    raw: Vec<u8>,
    start: StartLine,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Where the datagram came from (or, for a message we sent, where it went).
    pub peer: SocketAddr,
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.raw))
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.start {
            StartLine::Request { method, uri, .. } => write!(f, "{method} {uri}")?,
            StartLine::Response { status, reason, .. } => write!(f, "{status} {reason}")?,
        }
        if let Some((n, m)) = self.cseq() {
            write!(f, " (CSeq {n} {m})")?;
        }
        Ok(())
    }
}

impl Msg {
    /// Parses one datagram. Errors name the first thing that made no sense.
    pub fn parse(raw: &[u8], peer: SocketAddr) -> Result<Msg, String> {
        let (head, rest) = split_head(raw).ok_or("no blank line ending the headers")?;
        let head = std::str::from_utf8(head).map_err(|e| format!("headers are not UTF-8: {e}"))?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().ok_or("empty message")?.trim();
        let start = parse_start(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                let last = headers
                    .last_mut()
                    .ok_or("continuation line before any header")?;
                last.1.push(' ');
                last.1.push_str(line.trim());
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("header without colon: {line:?}"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        let mut body = rest.to_vec();
        let declared = headers
            .iter()
            .find(|(n, _)| same_header(n, "content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        if let Some(len) = declared {
            body.truncate(len);
        }
        Ok(Msg {
            raw: raw.to_vec(),
            start,
            headers,
            body,
            peer,
        })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
    pub fn start_line(&self) -> &StartLine {
        &self.start
    }
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }
    /// Status code of a response; `None` for a request.
    pub fn status(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }
    /// Method of a request; `None` for a response (see `cseq()` for a response's method).
    pub fn method(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }
    /// First value of a header; the name is case-insensitive and compact forms match
    /// (`header("Call-ID")` finds `i:`). For a comma-joined Via/Route line, the whole line.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of a header, in order. Lines of Via, Route, Record-Route, Contact,
    /// Allow, Supported and Require are split at commas (quotes and `<...>` respected).
    pub fn headers(&self, name: &str) -> Vec<String> {
        let list = [
            "via",
            "route",
            "record-route",
            "contact",
            "allow",
            "supported",
            "require",
        ];
        let split = list.iter().any(|l| same_header(l, name));
        let mut out = Vec::new();
        for (n, v) in &self.headers {
            if same_header(n, name) {
                if split {
                    out.extend(split_commas(v));
                } else {
                    out.push(v.clone());
                }
            }
        }
        out
    }
    /// All headers as (name as received, value), in order.
    pub fn all_headers(&self) -> &[(String, String)] {
        &self.headers
    }
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
    pub fn body(&self) -> &[u8] {
        &self.body
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }
    #[allow(clippy::wrong_self_convention)] // the SIP name reads better than `tag_of_from`
    pub fn from_tag(&self) -> Option<String> {
        self.header("From").and_then(|v| param(v, "tag"))
    }
    pub fn to_tag(&self) -> Option<String> {
        self.header("To").and_then(|v| param(v, "tag"))
    }
    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?.to_string()))
    }
    /// The method this message is about: a request's method or a response's CSeq method.
    pub fn cseq_method(&self) -> Option<String> {
        self.cseq().map(|(_, m)| m)
    }
    /// Branch of the top Via.
    pub fn via_branch(&self) -> Option<String> {
        self.headers("Via").first().and_then(|v| param(v, "branch"))
    }
    /// URI of the first Contact.
    pub fn contact_uri(&self) -> Option<String> {
        self.headers("Contact").first().map(|c| uri_of(c))
    }
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let (end, body) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => return None,
    };
    Some((&raw[..end], &raw[body..]))
}

fn parse_start(line: &str) -> Result<StartLine, String> {
    if let Some(rest) = line.strip_prefix("SIP/") {
        let mut it = rest.splitn(3, ' ');
        let version = format!("SIP/{}", it.next().unwrap_or(""));
        let status = it
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..700).contains(s))
            .ok_or_else(|| format!("bad status line: {line:?}"))?;
        let reason = it.next().unwrap_or("").to_string();
        return Ok(StartLine::Response {
            version,
            status,
            reason,
        });
    }
    let parts: Vec<&str> = line.split(' ').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [method, uri, version] if version.starts_with("SIP/") => Ok(StartLine::Request {
            method: method.to_string(),
            uri: uri.to_string(),
            version: version.to_string(),
        }),
        _ => Err(format!("bad request line: {line:?}")),
    }
}

/// An established dialog seen from one side, enough to build in-dialog requests (RFC 3261 12).
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    /// Our From for in-dialog requests: a full header value with our tag.
    pub local: String,
    /// Our To for in-dialog requests: a full header value with the remote tag.
    pub remote: String,
    /// Request-URI for in-dialog requests: the remote Contact.
    pub remote_target: String,
    /// Route set, in the order Route headers are to be sent.
    pub route_set: Vec<String>,
    /// The last CSeq number we used; the next request uses one more.
    pub local_cseq: u32,
    /// Where in-dialog requests go: the first route or the remote target if it has an IP
    /// literal, otherwise the address the dialog's message came from.
    pub next_hop: SocketAddr,
}

impl Dialog {
    /// The caller's view, from the INVITE it sent and the 2xx it received.
    pub fn uac(invite: &Msg, ok: &Msg) -> Dialog {
        let mut route_set = ok.headers("Record-Route");
        route_set.reverse();
        let remote_target = ok
            .contact_uri()
            .unwrap_or_else(|| invite.request_uri().unwrap_or("").to_string());
        Dialog::new(
            ok.call_id().unwrap_or("").to_string(),
            invite.header("From").unwrap_or("").to_string(),
            ok.header("To").unwrap_or("").to_string(),
            remote_target,
            route_set,
            invite.cseq().map(|c| c.0).unwrap_or(1),
            ok.peer,
        )
    }

    /// The callee's view, from the INVITE it received and the 2xx it sent.
    pub fn uas(invite: &Msg, ok_sent: &Msg) -> Dialog {
        let remote_target = invite.contact_uri().unwrap_or_default();
        Dialog::new(
            invite.call_id().unwrap_or("").to_string(),
            ok_sent.header("To").unwrap_or("").to_string(),
            invite.header("From").unwrap_or("").to_string(),
            remote_target,
            invite.headers("Record-Route"),
            100,
            invite.peer,
        )
    }

    fn new(
        call_id: String,
        local: String,
        remote: String,
        remote_target: String,
        route_set: Vec<String>,
        local_cseq: u32,
        fallback: SocketAddr,
    ) -> Dialog {
        let hop = route_set
            .first()
            .map(|r| uri_of(r))
            .unwrap_or_else(|| remote_target.clone());
        let next_hop = uri_addr(&hop)
            .filter(|a| a.ip().is_loopback())
            .unwrap_or(fallback);
        Dialog {
            call_id,
            local,
            remote,
            remote_target,
            route_set,
            local_cseq,
            next_hop,
        }
    }

    pub fn local_tag(&self) -> Option<String> {
        param(&self.local, "tag")
    }
    pub fn remote_tag(&self) -> Option<String> {
        param(&self.remote, "tag")
    }
}

/// What a `RequestBuilder` needs beyond the method and URI.
struct Req {
    method: String,
    uri: String,
    via_branch: Option<String>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
    cseq: Option<u32>,
    routes: Vec<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
    dest: Option<SocketAddr>,
    contact: bool,
}

/// A UDP SIP user agent bound to 127.0.0.1.
pub struct Ua {
    sock: UdpSocket,
    local: SocketAddr,
    peer: Option<SocketAddr>,
    user: String,
    seen: HashSet<Vec<u8>>,
    pending: VecDeque<Msg>,
    cseq: u32,
}

impl Ua {
    /// Binds 127.0.0.1 on a free port.
    pub async fn bind() -> Ua {
        Ua::bind_port(0).await
    }

    /// Binds 127.0.0.1:`port` (0 = any free port). A UAS for leg B binds the port the gateway
    /// is configured to forward to.
    pub async fn bind_port(port: u16) -> Ua {
        let sock = UdpSocket::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("ua: cannot bind 127.0.0.1:{port}: {e}"));
        let local = sock.local_addr().expect("ua: local_addr");
        Ua {
            sock,
            local,
            peer: None,
            user: "ua".into(),
            seen: HashSet::new(),
            pending: VecDeque::new(),
            cseq: 0,
        }
    }

    /// Where new requests go by default (else the Request-URI's host:port).
    pub fn with_peer(mut self, peer: SocketAddr) -> Ua {
        self.peer = Some(peer);
        self
    }

    /// The user part of our From and Contact URIs.
    pub fn with_user(mut self, user: &str) -> Ua {
        self.user = user.to_string();
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Our Contact URI.
    pub fn contact_uri(&self) -> String {
        format!("sip:{}@{}", self.user, self.local)
    }

    fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP {};branch={branch};rport", self.local)
    }

    /// Starts an INVITE out of dialog: new Call-ID, From tag, branch; CSeq 1; our Contact.
    pub fn invite(&mut self, to_uri: &str) -> RequestBuilder<'_> {
        self.request("INVITE", to_uri)
    }

    /// Starts any out-of-dialog request (OPTIONS, MESSAGE, a malformed INVITE...).
    pub fn request(&mut self, method: &str, uri: &str) -> RequestBuilder<'_> {
        let contact = method == "INVITE" || method == "SUBSCRIBE" || method == "REFER";
        RequestBuilder {
            ua: self,
            req: Req {
                method: method.to_string(),
                uri: uri.to_string(),
                via_branch: None,
                from: None,
                to: None,
                call_id: None,
                cseq: None,
                routes: Vec::new(),
                headers: Vec::new(),
                body: None,
                dest: None,
                contact,
            },
        }
    }

    /// Starts an in-dialog request (next CSeq, dialog's From/To/Call-ID/Route, to the target).
    pub fn in_dialog(&mut self, dialog: &mut Dialog, method: &str) -> RequestBuilder<'_> {
        dialog.local_cseq += 1;
        let mut b = self.request(method, &dialog.remote_target.clone());
        b.req.from = Some(dialog.local.clone());
        b.req.to = Some(dialog.remote.clone());
        b.req.call_id = Some(dialog.call_id.clone());
        b.req.cseq = Some(dialog.local_cseq);
        b.req.routes = dialog.route_set.clone();
        b.req.dest = Some(dialog.next_hop);
        b
    }

    /// Answers a received request. Copies Via (all), From, Call-ID, CSeq; copies To and adds
    /// a To tag (stable per Call-ID, so 180 and 200 agree) unless the status is 100 or the
    /// request already had one; echoes Record-Route and adds our Contact on 101-299 to INVITE.
    pub fn respond<'a>(&'a mut self, req: &Msg, status: u16, reason: &str) -> ResponseBuilder<'a> {
        ResponseBuilder {
            ua: self,
            req: req.clone(),
            status,
            reason: reason.to_string(),
            to_tag: None,
            headers: Vec::new(),
            body: None,
            remove: Vec::new(),
        }
    }

    /// ACK for a 2xx: a new transaction in the dialog the 2xx created. Returns the dialog (its
    /// CSeq stays at the INVITE's number, as the ACK uses it) for BYE and friends.
    pub async fn ack_2xx(&mut self, invite: &Msg, ok: &Msg) -> Dialog {
        let mut dialog = Dialog::uac(invite, ok);
        let n = invite.cseq().map(|c| c.0).unwrap_or(1);
        dialog.local_cseq = n - 1;
        self.in_dialog(&mut dialog, "ACK").send().await;
        dialog
    }

    /// ACK for a non-2xx final: part of the INVITE transaction (same branch and Request-URI,
    /// To from the response).
    pub async fn ack_non2xx(&mut self, invite: &Msg, resp: &Msg) -> Msg {
        let mut b = self.request("ACK", invite.request_uri().unwrap_or(""));
        b.req.via_branch = invite.via_branch();
        b.req.from = invite.header("From").map(str::to_string);
        b.req.to = resp.header("To").map(str::to_string);
        b.req.call_id = invite.call_id().map(str::to_string);
        b.req.cseq = invite.cseq().map(|c| c.0);
        b.req.routes = invite.headers("Route");
        b.req.dest = Some(invite.peer);
        b.send().await
    }

    /// CANCEL for an INVITE we sent (RFC 3261 9.1: same Request-URI, top Via branch, From, To,
    /// Call-ID, CSeq number and Route).
    pub async fn cancel(&mut self, invite: &Msg) -> Msg {
        let mut b = self.request("CANCEL", invite.request_uri().unwrap_or(""));
        b.req.via_branch = invite.via_branch();
        b.req.from = invite.header("From").map(str::to_string);
        b.req.to = invite.header("To").map(str::to_string);
        b.req.call_id = invite.call_id().map(str::to_string);
        b.req.cseq = invite.cseq().map(|c| c.0);
        b.req.routes = invite.headers("Route");
        b.req.dest = Some(invite.peer);
        b.send().await
    }

    /// BYE in the dialog; returns the BYE sent (await its 200 with `recv_final`).
    pub async fn bye(&mut self, dialog: &mut Dialog) -> Msg {
        self.in_dialog(dialog, "BYE").send().await
    }

    /// Sends raw bytes as they are (malformed messages, retransmissions).
    pub async fn send_raw(&self, bytes: &[u8], to: SocketAddr) {
        self.sock
            .send_to(bytes, to)
            .await
            .unwrap_or_else(|e| panic!("ua {}: send to {to}: {e}", self.local));
    }

    async fn send_msg(&self, text: String, to: SocketAddr) -> Msg {
        self.send_raw(text.as_bytes(), to).await;
        Msg::parse(text.as_bytes(), to)
            .unwrap_or_else(|e| panic!("ua: built an unparsable message ({e}):\n{text}"))
    }

    /// Next new datagram (retransmissions skipped), from the backlog first. `None` on timeout.
    /// Datagrams that do not parse panic, as a gateway must never send them.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Msg> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, from) = match timeout(left, self.sock.recv_from(&mut buf)).await {
                Err(_) => return None,
                Ok(r) => r.unwrap_or_else(|e| panic!("ua {}: recv: {e}", self.local)),
            };
            let raw = buf[..n].to_vec();
            if raw.iter().all(|b| matches!(b, b'\r' | b'\n' | b' ')) {
                continue; // keep-alive
            }
            if !self.seen.insert(raw.clone()) {
                continue; // a retransmission of something already handed out
            }
            let msg = Msg::parse(&raw, from).unwrap_or_else(|e| {
                panic!(
                    "ua {}: unparsable datagram from {from} ({e}):\n{}",
                    self.local,
                    String::from_utf8_lossy(&raw)
                )
            });
            return Some(msg);
        }
    }

    /// Waits for the first message satisfying `want`; others are kept for later, in order.
    pub async fn recv_matching(
        &mut self,
        what: &str,
        wait: Duration,
        want: impl Fn(&Msg) -> bool,
    ) -> Msg {
        if let Some(i) = self.pending.iter().position(&want) {
            return self.pending.remove(i).expect("index just found");
        }
        let deadline = Instant::now() + wait;
        let mut skipped = Vec::new();
        let backlog = std::mem::take(&mut self.pending);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.try_recv(left).await {
                Some(m) if want(&m) => {
                    let mut rest = backlog;
                    rest.extend(skipped);
                    rest.extend(self.pending.drain(..));
                    self.pending = rest;
                    return m;
                }
                Some(m) => skipped.push(m),
                None => {
                    let seen: Vec<String> = backlog
                        .iter()
                        .chain(skipped.iter())
                        .map(|m| m.to_string())
                        .collect();
                    panic!(
                        "ua {}: timed out after {wait:?} waiting for {what}; received instead: {seen:?}",
                        self.local
                    );
                }
            }
        }
    }

    /// Waits for a request with this method (any method if `"*"`).
    pub async fn recv_request(&mut self, method: &str, wait: Duration) -> Msg {
        let what = format!("a {method} request");
        self.recv_matching(&what, wait, |m| {
            m.method().is_some_and(|x| method == "*" || x == method)
        })
        .await
    }

    /// Waits for the next response (provisional or final).
    pub async fn recv_response(&mut self, wait: Duration) -> Msg {
        self.recv_matching("a response", wait, |m| m.status().is_some())
            .await
    }

    /// Waits for a final response (>= 200), skipping provisionals.
    pub async fn recv_final(&mut self, wait: Duration) -> Msg {
        self.recv_matching("a final response", wait, |m| {
            m.status().is_some_and(|s| s >= 200)
        })
        .await
    }

    /// Waits for a response with this status and CSeq method.
    pub async fn recv_status(&mut self, status: u16, method: &str, wait: Duration) -> Msg {
        let what = format!("a {status} response to {method}");
        self.recv_matching(&what, wait, |m| {
            m.status() == Some(status) && m.cseq_method().as_deref() == Some(method)
        })
        .await
    }

    /// Asserts that nothing new arrives for `wait` (e.g. no response to a malformed datagram).
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Some(m) = self.try_recv(wait).await {
            panic!(
                "ua {}: expected silence for {wait:?}, got {m}:\n{m:?}",
                self.local
            );
        }
    }

    /// Messages received but not yet handed out.
    pub fn backlog(&self) -> impl Iterator<Item = &Msg> {
        self.pending.iter()
    }
}

/// Builds and sends a request. Defaults: new branch, From with a new tag, To = the URI,
/// new Call-ID, CSeq 1 (or next), Max-Forwards 70, Contact for INVITE, Content-Length.
pub struct RequestBuilder<'a> {
    ua: &'a mut Ua,
    req: Req,
}

impl RequestBuilder<'_> {
    /// Adds a header (repeatable; added after the standard ones).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.req.headers.push((name.to_string(), value.to_string()));
        self
    }
    /// Sets an application/sdp body.
    pub fn sdp(self, sdp: &str) -> Self {
        self.body("application/sdp", sdp.as_bytes())
    }
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.req.body = Some((content_type.to_string(), body.to_vec()));
        self
    }
    pub fn from(mut self, value: &str) -> Self {
        self.req.from = Some(value.to_string());
        self
    }
    pub fn to(mut self, value: &str) -> Self {
        self.req.to = Some(value.to_string());
        self
    }
    pub fn call_id(mut self, value: &str) -> Self {
        self.req.call_id = Some(value.to_string());
        self
    }
    pub fn cseq(mut self, n: u32) -> Self {
        self.req.cseq = Some(n);
        self
    }
    pub fn route(mut self, value: &str) -> Self {
        self.req.routes.push(value.to_string());
        self
    }
    /// Sends to this address instead of the UA's peer / the Request-URI's address.
    pub fn dest(mut self, to: SocketAddr) -> Self {
        self.req.dest = Some(to);
        self
    }

    /// Renders the request text.
    pub fn build(&mut self) -> String {
        let ua = &mut *self.ua;
        let r = &self.req;
        let branch = r
            .via_branch
            .clone()
            .unwrap_or_else(|| format!("z9hG4bK-{}", unique()));
        let from = r
            .from
            .clone()
            .unwrap_or_else(|| format!("<{}>;tag={}", ua.contact_uri(), unique()));
        let to = r.to.clone().unwrap_or_else(|| format!("<{}>", r.uri));
        let call_id = r
            .call_id
            .clone()
            .unwrap_or_else(|| format!("{}@127.0.0.1", unique()));
        let cseq = r.cseq.unwrap_or_else(|| {
            ua.cseq += 1;
            ua.cseq
        });
        let mut t = format!("{} {} SIP/2.0\r\n", r.method, r.uri);
        t += &format!("Via: {}\r\n", ua.via(&branch));
        t += "Max-Forwards: 70\r\n";
        for route in &r.routes {
            t += &format!("Route: {route}\r\n");
        }
        t += &format!(
            "From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {}\r\n",
            r.method
        );
        if r.contact {
            t += &format!("Contact: <{}>\r\n", ua.contact_uri());
        }
        for (n, v) in &r.headers {
            t += &format!("{n}: {v}\r\n");
        }
        match &r.body {
            Some((ct, body)) => {
                t += &format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                t += &String::from_utf8_lossy(body);
            }
            None => t += "Content-Length: 0\r\n\r\n",
        }
        t
    }

    /// Sends it; returns the message as sent (keep it for `cancel`, `ack_*`, `Dialog::uac`).
    pub async fn send(mut self) -> Msg {
        let text = self.build();
        let to = self
            .req
            .dest
            .or(self.ua.peer)
            .or_else(|| uri_addr(&self.req.uri))
            .unwrap_or_else(|| {
                panic!(
                    "ua: no destination for {} {}",
                    self.req.method, self.req.uri
                )
            });
        self.ua.send_msg(text, to).await
    }
}

/// Builds and sends a response to a received request.
pub struct ResponseBuilder<'a> {
    ua: &'a mut Ua,
    req: Msg,
    status: u16,
    reason: String,
    to_tag: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<(String, Vec<u8>)>,
    remove: Vec<String>,
}

impl ResponseBuilder<'_> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn sdp(mut self, sdp: &str) -> Self {
        self.body = Some(("application/sdp".into(), sdp.as_bytes().to_vec()));
        self
    }
    pub fn body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.body = Some((content_type.to_string(), body.to_vec()));
        self
    }
    /// Uses this To tag instead of the default one derived from the Call-ID.
    #[allow(clippy::wrong_self_convention)]
    pub fn to_tag(mut self, tag: &str) -> Self {
        self.to_tag = Some(tag.to_string());
        self
    }
    /// Leaves out a header that would be copied or added by default (e.g. "Contact", "Via").
    pub fn without(mut self, name: &str) -> Self {
        self.remove.push(name.to_string());
        self
    }

    pub fn build(&self) -> String {
        let req = &self.req;
        let skip = |n: &str| self.remove.iter().any(|r| same_header(r, n));
        let mut t = format!("SIP/2.0 {} {}\r\n", self.status, self.reason);
        if !skip("Via") {
            for via in req.headers("Via") {
                t += &format!("Via: {via}\r\n");
            }
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if skip(name) {
                continue;
            }
            let mut v = req.header(name).unwrap_or("").to_string();
            if name == "To" && self.status > 100 && param(&v, "tag").is_none() {
                let tag = self
                    .to_tag
                    .clone()
                    .unwrap_or_else(|| default_tag(req.call_id().unwrap_or("")));
                v = format!("{v};tag={tag}");
            }
            t += &format!("{name}: {v}\r\n");
        }
        let invite = req.method() == Some("INVITE");
        if invite && (101..300).contains(&self.status) {
            if !skip("Record-Route") {
                for rr in req.headers("Record-Route") {
                    t += &format!("Record-Route: {rr}\r\n");
                }
            }
            if !skip("Contact") {
                t += &format!("Contact: <{}>\r\n", self.ua.contact_uri());
            }
        }
        for (n, v) in &self.headers {
            t += &format!("{n}: {v}\r\n");
        }
        match &self.body {
            Some((ct, body)) => {
                t += &format!(
                    "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                t += &String::from_utf8_lossy(body);
            }
            None => t += "Content-Length: 0\r\n\r\n",
        }
        t
    }

    /// Sends to the address the request came from (RFC 3581 style); returns it as sent.
    pub async fn send(self) -> Msg {
        let text = self.build();
        let to = self.req.peer;
        self.ua.send_msg(text, to).await
    }
}

/// A To tag derived from the Call-ID, so that every response of one UAS to one call agrees.
fn default_tag(call_id: &str) -> String {
    let h = call_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("ua{h:016x}")
}
