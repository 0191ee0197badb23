//! The values hooks receive and the decisions they return: hand-written mirrors of the WIT types of
//! `callgate:plugin@0.1.2` (world `lean-plugin`), with builders. Conversions to and from the generated types live in
//! `convert.rs`, nowhere else.

use core::fmt;

/// One SIP header line: `name: value`.
///
/// A header a plugin hands to the host is refused (and the plugin's failure policy applies) if the
/// name is not a SIP token, the value contains CR, LF or NUL, or the name is one the host owns: Via,
/// Call-ID, CSeq, From, To, Contact, Route, Record-Route, Content-Length, Content-Type, Max-Forwards.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The header name as on the wire (compared case-insensitively).
    pub name: String,
    /// The header value.
    pub value: String,
}

impl Header {
    /// A header from its name and value.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Checks this header against the rules the host applies to headers a plugin hands it (see
    /// [`Header`]), so that a plugin can refuse a bad config in `new` instead of failing on calls.
    pub fn validate(&self) -> Result<(), String> {
        check_header_name(&self.name)?;
        if self.value.contains(['\r', '\n', '\0']) {
            return Err(format!(
                "header `{}`: the value contains CR, LF or NUL",
                self.name
            ));
        }
        Ok(())
    }
}

/// Headers the host owns: a plugin may neither add nor remove them. The one-letter names are their
/// compact forms (RFC 3261 section 7.3.3).
const HOST_OWNED: &[&str] = &[
    "Via",
    "Call-ID",
    "CSeq",
    "From",
    "To",
    "Contact",
    "Route",
    "Record-Route",
    "Content-Length",
    "Content-Type",
    "Max-Forwards",
    "v",
    "i",
    "f",
    "t",
    "m",
    "l",
    "c",
];

/// Checks that `name` can be handed to the host as a header name, added or removed: a SIP token
/// (RFC 3261 section 25.1) that is not one of the headers the host owns.
pub fn check_header_name(name: &str) -> Result<(), String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        return Err(format!("`{name}` is not a valid SIP header name"));
    }
    if HOST_OWNED
        .iter()
        .any(|owned| owned.eq_ignore_ascii_case(name))
    {
        return Err(format!(
            "`{name}` is a header the gateway owns; plugins cannot set or remove it"
        ));
    }
    Ok(())
}

/// True if `uri` is a `sip:` or `sips:` URI (scheme compared case-insensitively), the only kind the
/// host accepts as a target or contact.
pub fn is_sip_uri(uri: &str) -> bool {
    let lower = uri.get(..5).unwrap_or(uri).to_ascii_lowercase();
    (lower.starts_with("sip:") && uri.len() > 4) || (lower.starts_with("sips:") && uri.len() > 5)
}

/// The header lines of a message a hook receives, in wire order, compact forms expanded, kept as the
/// one block of text the host hands over and read in place: a hook pays for the headers it looks
/// at, not for every header of every message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// `Name: value` lines, each ended by CR LF (the contract's `head`).
    head: String,
}

impl Headers {
    /// Wraps the contract's `head` text.
    pub(crate) fn from_head(head: String) -> Self {
        Headers { head }
    }

    /// Every header as `(name, value)`, in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        lines(&self.head).filter_map(|line| {
            // A byte loop: names are short, and `split_once` goes through core's memchr, whose
            // set-up costs more than a header name.
            let colon = line.bytes().position(|b| b == b':')?;
            Some((&line[..colon], value_of(&line[colon + 1..])))
        })
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        lines(&self.head).find_map(|line| value_if_named(line, name))
    }

    /// The values of every header called `name` (case-insensitive), in wire order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        lines(&self.head).filter_map(move |line| value_if_named(line, name))
    }

    /// Whether there is no header at all.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }
}

/// The lines of a head (CR LF or LF ended), without their line ends.
fn lines(head: &str) -> impl Iterator<Item = &str> + '_ {
    let mut rest = head;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = find_lf(rest.as_bytes()).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
        Some(line.strip_suffix('\r').unwrap_or(line))
    })
}

/// The first LF in `s`, eight bytes at a time. Wasm has 64-bit integers, but core's memchr works on
/// 32-bit words there and its set-up costs more than a ~30-byte header line: a header lookup
/// through it was over a third of a plugin's own instructions in the gateway's benchmark.
fn find_lf(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let x = word ^ (ONES * u64::from(b'\n'));
        // A zero byte of `x` is an LF; the lowest flagged byte is always a true one.
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(at + (zero.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|p| at + p)
}

/// The value of `line` if its header is called `name` (case-insensitive). The host writes
/// `Name: value`, so only a line with its colon right after the name's length can match: the others
/// are passed over without a comparison or a colon search. A name holding a colon matches nothing,
/// as in [`Headers::iter`], where a line's name ends at its first colon.
fn value_if_named<'h>(line: &'h str, name: &str) -> Option<&'h str> {
    let n = name.len();
    (line.as_bytes().get(n) == Some(&b':')
        && line[..n].eq_ignore_ascii_case(name)
        && !name.contains(':'))
    .then(|| value_of(&line[n + 1..]))
}

/// A header value as the host writes it: after the colon, one optional space.
fn value_of(after_colon: &str) -> &str {
    after_colon.strip_prefix(' ').unwrap_or(after_colon)
}

/// Builds a header block, e.g. for a plugin's unit tests: `vec![Header::new("X-A", "1")].into()`.
impl From<Vec<Header>> for Headers {
    fn from(headers: Vec<Header>) -> Self {
        headers.into_iter().collect()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        let mut head = String::new();
        for h in iter {
            head.push_str(&h.name);
            head.push_str(": ");
            head.push_str(&h.value);
            head.push_str("\r\n");
        }
        Headers { head }
    }
}

/// The two sides of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The incoming leg: the caller's side, where the gateway acts as a user agent server.
    A,
    /// The outgoing leg the gateway placed: the callee's side.
    B,
}

impl Leg {
    /// `"a"` or `"b"`, as in the WIT.
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::A => "a",
            Leg::B => "b",
        }
    }
}

/// What the host knows of the call. The same for every hook of one call, except `b_call_id`, which
/// is set once the B leg exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFacts {
    /// The host's number for this call, unique for the life of the process (the CDR's `call_ref`).
    pub call_ref: u64,
    /// The Call-ID of the A leg, as the caller sent it.
    pub call_id: String,
    /// The Call-ID the gateway chose for the B leg, once the B-leg INVITE was built.
    pub b_call_id: Option<String>,
    /// The URI of the A-leg From header (the caller).
    pub from: String,
    /// The URI of the A-leg To header (whom the caller dialled).
    pub to: String,
    /// The Request-URI of the A-leg INVITE.
    pub request_uri: String,
    /// Where the A-leg INVITE came from: `transport:address:port`, e.g. `udp:127.0.0.1:5070`.
    pub source: String,
}

/// The call a hook runs for: read its facts as fields (`call.call_id`, through [`CallFacts`]).
///
/// The facts are asked of the host the first time a hook reads one, once per call (then only the B
/// leg's Call-ID, until it is known), so a plugin that never looks at them never pays for them.
#[derive(Clone, Default)]
pub struct CallInfo {
    facts: std::cell::OnceCell<std::rc::Rc<CallFacts>>,
}

impl CallInfo {
    /// A call whose facts are these (e.g. in a plugin's unit tests).
    pub fn new(facts: CallFacts) -> Self {
        CallInfo {
            facts: std::rc::Rc::new(facts).into(),
        }
    }

    /// A call whose facts are asked of the host on first use.
    pub(crate) fn from_host() -> Self {
        CallInfo::default()
    }
}

impl From<CallFacts> for CallInfo {
    fn from(facts: CallFacts) -> Self {
        CallInfo::new(facts)
    }
}

impl core::ops::Deref for CallInfo {
    type Target = CallFacts;

    fn deref(&self) -> &CallFacts {
        self.facts.get_or_init(crate::host::call_facts)
    }
}

impl fmt::Debug for CallInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        CallFacts::fmt(self, f)
    }
}

impl PartialEq for CallInfo {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for CallInfo {}

/// A SIP request as the host received it: headers in wire order, without Via, Route, Record-Route;
/// the body is not passed, only its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `INVITE` or `REFER`.
    pub method: String,
    /// The Request-URI.
    pub uri: String,
    /// The headers, compact forms expanded.
    pub headers: Headers,
    /// The Content-Type of the body, if there is a body.
    pub body_type: Option<String>,
}

impl Request {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The values of every header called `name` (case-insensitive), in wire order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.get_all(name)
    }
}

/// A SIP response as the host received it on one leg, before it is relayed to the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100 to 699.
    pub status: u16,
    /// The reason phrase as received.
    pub reason: String,
    /// The headers (Via, Record-Route left out), compact forms expanded.
    pub headers: Headers,
    /// The Content-Type of the body, if there is a body.
    pub body_type: Option<String>,
}

impl Response {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// The values of every header called `name` (case-insensitive), in wire order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.get_all(name)
    }
}

/// Edits to one message the host builds: removals first, then additions, in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct HeaderEdits {
    /// Headers appended to the message.
    pub add: Vec<Header>,
    /// Names of headers to remove (case-insensitive; every occurrence).
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// No edits: the "no opinion" of `on_response`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the header `name: value`.
    pub fn add(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.add.push(Header::new(name, value));
        self
    }

    /// Removes every header called `name`.
    pub fn remove(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    /// True if there is nothing to add or remove.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// How media flows for a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MediaMode {
    /// RTP flows through the gateway's relay (recording, prompts, DTMF and packet-based media events).
    Anchored,
    /// SDP passes unchanged and RTP flows end to end (media events from SDP alone).
    Direct,
}

/// Where a call goes: the answer of `on_invite`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteDecision {
    /// Place the B leg. An empty `Forward` means "no opinion".
    Forward(Forward),
    /// Answer the caller with a final error response; no B leg is placed.
    Reject(Reject),
    /// Answer the caller with a 3xx and contacts; no B leg is placed.
    Redirect(Redirect),
}

impl InviteDecision {
    /// No opinion: an empty `Forward`.
    pub fn no_opinion() -> Self {
        InviteDecision::Forward(Forward::new())
    }
}

impl Default for InviteDecision {
    fn default() -> Self {
        Self::no_opinion()
    }
}

/// How to place the B leg. In a chain, header lists accumulate in chain order and a later plugin's
/// `target` or `media` overrides an earlier one's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Forward {
    /// The Request-URI of the B-leg INVITE (a `sip:` or `sips:` URI); `None` keeps an earlier choice.
    pub target: Option<String>,
    /// Headers added to the B-leg INVITE.
    pub invite_headers: Vec<Header>,
    /// Names of headers copied unchanged from the A-leg INVITE to the B-leg INVITE.
    pub pass_through: Vec<String>,
    /// Names of headers removed from the B-leg INVITE after everything else was applied.
    pub remove_headers: Vec<String>,
    /// Headers added to every response the gateway sends back on the A leg for this call.
    pub response_headers: Vec<Header>,
    /// Anchored or direct media; `None` keeps the config's default.
    pub media: Option<MediaMode>,
}

impl Forward {
    /// An empty forward: "no opinion" until something is added.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the B-leg INVITE to `uri` (a `sip:` or `sips:` URI; anything else is refused by the host).
    pub fn target(mut self, uri: impl Into<String>) -> Self {
        self.target = Some(uri.into());
        self
    }

    /// Adds `name: value` to the B-leg INVITE.
    pub fn invite_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.invite_headers.push(Header::new(name, value));
        self
    }

    /// Copies these headers (every occurrence, if present) from the A-leg INVITE to the B-leg INVITE.
    pub fn pass_through<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pass_through.extend(names.into_iter().map(Into::into));
        self
    }

    /// Removes every header called `name` from the B-leg INVITE (after everything else was applied).
    pub fn remove_header(mut self, name: impl Into<String>) -> Self {
        self.remove_headers.push(name.into());
        self
    }

    /// Adds `name: value` to every response sent back to the caller for this call.
    pub fn response_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.response_headers.push(Header::new(name, value));
        self
    }

    /// Chooses anchored or direct media.
    pub fn media(mut self, mode: MediaMode) -> Self {
        self.media = Some(mode);
        self
    }

    /// True if this forward says nothing (the "no opinion" of `on_invite`).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A final error answer to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Reject {
    /// 400 to 699; anything else is refused by the host.
    pub status: u16,
    /// The reason phrase; `None` uses the standard one for the status.
    pub reason: Option<String>,
    /// Headers added to the response (e.g. Retry-After, Warning, Reason).
    pub headers: Vec<Header>,
}

impl Reject {
    /// A reject with `status` (400 to 699) and the standard reason phrase.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            reason: None,
            headers: Vec::new(),
        }
    }

    /// Sets the reason phrase.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Adds `name: value` to the response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }
}

/// A redirect answer to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Redirect {
    /// 300 to 399; anything else is refused by the host.
    pub status: u16,
    /// The Contact URIs in preference order: SIP or SIPS URIs, at least one.
    pub contacts: Vec<String>,
    /// Headers added to the response.
    pub headers: Vec<Header>,
}

impl Redirect {
    /// A redirect with `status` (300 to 399) and no contact yet (add at least one).
    pub fn new(status: u16) -> Self {
        Self {
            status,
            contacts: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a Contact URI (after the ones already given).
    pub fn contact(mut self, uri: impl Into<String>) -> Self {
        self.contacts.push(uri.into());
        self
    }

    /// Adds `name: value` to the response.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }
}

impl From<Forward> for InviteDecision {
    fn from(f: Forward) -> Self {
        InviteDecision::Forward(f)
    }
}

impl From<Reject> for InviteDecision {
    fn from(r: Reject) -> Self {
        InviteDecision::Reject(r)
    }
}

impl From<Redirect> for InviteDecision {
    fn from(r: Redirect) -> Self {
        InviteDecision::Redirect(r)
    }
}

/// A REFER (transfer request) as `on_refer` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    /// The Refer-To URI (the transfer target), without its embedded headers.
    pub refer_to: String,
    /// The Referred-By URI, if present.
    pub referred_by: Option<String>,
    /// The Replaces embedded in Refer-To, if present (an attended transfer).
    pub replaces: Option<String>,
    /// The REFER's headers, compact forms expanded.
    pub headers: Headers,
}

impl TransferRequest {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// What to do with a REFER. In a chain, the first decision other than `NoOpinion` wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ReferDecision {
    /// Leave it to later plugins, then to the gateway's config (`transfer.default`).
    #[default]
    NoOpinion,
    /// Answer the REFER with this status (400 to 699, e.g. 403 or 603); the call goes on.
    Reject(u16),
    /// Relay the REFER to the other party, which carries out the transfer itself.
    Pass,
    /// Answer 202 and carry out the transfer in the gateway.
    Perform {
        /// A SIP or SIPS URI to call instead of the Refer-To target; `None` uses Refer-To.
        target: Option<String>,
        /// Headers added to the new leg's INVITE.
        headers: Vec<Header>,
    },
}

impl ReferDecision {
    /// `Perform` to the Refer-To target, with no added header.
    pub fn perform() -> Self {
        ReferDecision::Perform {
            target: None,
            headers: Vec::new(),
        }
    }

    /// `Perform` to `target` instead of the Refer-To target, with no added header.
    pub fn perform_to(target: impl Into<String>) -> Self {
        ReferDecision::Perform {
            target: Some(target.into()),
            headers: Vec::new(),
        }
    }

    /// Adds `name: value` to the new leg's INVITE if this is `Perform`; other decisions are returned
    /// unchanged.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let ReferDecision::Perform { headers, .. } = &mut self {
            headers.push(Header::new(name, value));
        }
        self
    }
}

/// Which legs a recording covers; each leg is one channel of the WAV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Legs {
    /// The A leg only (the caller).
    A,
    /// The B leg only (the callee).
    B,
    /// Both legs (a stereo file).
    Both,
}

impl From<Leg> for Legs {
    fn from(leg: Leg) -> Self {
        match leg {
            Leg::A => Legs::A,
            Leg::B => Legs::B,
        }
    }
}

/// When a recording starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecordStart {
    /// When the B leg answers (the 200 OK is relayed to A).
    #[default]
    OnAnswer,
    /// When both legs are `connected` (RTP seen on both): nothing before real audio is kept.
    OnMediaConnected,
}

/// What to record. Built with [`RecordOptions::both`] or [`RecordOptions::legs`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct RecordOptions {
    /// The legs to record.
    pub legs: Legs,
    /// When to start (ignored by `call_control::start_recording`, which starts now).
    pub start: RecordStart,
    /// Tags written beside the recording and into the call detail record.
    pub tags: Vec<(String, String)>,
}

impl RecordOptions {
    /// Records both legs, starting on answer, no tags.
    pub fn both() -> Self {
        Self::legs(Legs::Both)
    }

    /// Records `legs`, starting on answer, no tags.
    pub fn legs(legs: impl Into<Legs>) -> Self {
        Self {
            legs: legs.into(),
            start: RecordStart::OnAnswer,
            tags: Vec::new(),
        }
    }

    /// Starts when the B leg answers (the default).
    pub fn on_answer(mut self) -> Self {
        self.start = RecordStart::OnAnswer;
        self
    }

    /// Starts once RTP flows on both legs.
    pub fn on_media_connected(mut self) -> Self {
        self.start = RecordStart::OnMediaConnected;
        self
    }

    /// Adds the tag `key = value`.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }
}

/// Whether to record the call. In a chain the call is recorded if any plugin says `Record`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RecordingDecision {
    /// No recording from this plugin's point of view.
    #[default]
    None,
    /// Record with these options.
    Record(RecordOptions),
}

impl RecordingDecision {
    /// `Record(options)`.
    pub fn record(options: RecordOptions) -> Self {
        RecordingDecision::Record(options)
    }
}

impl From<RecordOptions> for RecordingDecision {
    fn from(options: RecordOptions) -> Self {
        RecordingDecision::Record(options)
    }
}

macro_rules! kebab_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)*
        }

        impl $name {
            /// The name as in the WIT (lowercase kebab-case).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

kebab_enum! {
    /// The media state of one leg.
    MediaState {
        /// An offer was sent or received; no answer yet.
        Negotiating => "negotiating",
        /// Offer and answer are done; no RTP seen from that party yet.
        Connecting => "connecting",
        /// RTP seen from that party and the relay is sending to it: audio really flows.
        Connected => "connected",
        /// The party put the stream on hold.
        Held => "held",
        /// No RTP from that party for the configured stall time, while not held.
        Stalled => "stalled",
        /// The leg's media is over.
        Ended => "ended",
    }
}

kebab_enum! {
    /// What a media-state change was based on.
    MediaSource {
        /// RTP packets seen by the gateway's relay (anchored media).
        Packets => "packets",
        /// SDP offer and answer alone (direct media).
        Sdp => "sdp",
    }
}

kebab_enum! {
    /// Where a DTMF digit came from.
    DtmfSource {
        /// RFC 4733 telephone-event packets (anchored media only).
        Rfc4733 => "rfc4733",
        /// A SIP INFO request carrying application/dtmf-relay.
        SipInfo => "sip-info",
    }
}

kebab_enum! {
    /// How a call ended.
    CallOutcome {
        /// The B leg answered and the call was bridged.
        Answered => "answered",
        /// A final non-2xx answer went back to the caller.
        Rejected => "rejected",
        /// The caller cancelled before an answer.
        Cancelled => "cancelled",
        /// A redirect (3xx) went back to the caller.
        Redirected => "redirected",
        /// A leg did not complete a setup phase in time.
        TimedOut => "timed-out",
        /// Something failed in the gateway.
        Failed => "failed",
    }
}

kebab_enum! {
    /// Who ended the call.
    Initiator {
        /// The A party.
        Caller => "caller",
        /// The B party.
        Callee => "callee",
        /// The gateway itself (a timeout, a limit, shutdown).
        Gateway => "gateway",
        /// A plugin (a reject, a failure policy, or `call_control::hang_up`).
        Plugin => "plugin",
    }
}

/// A change of one leg's media state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaChange {
    /// The state before.
    pub old: MediaState,
    /// The state now.
    pub new: MediaState,
    /// What the change was based on.
    pub source: MediaSource,
}

/// One DTMF digit, delivered once when the digit ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dtmf {
    /// One of `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// How long the key was held, in milliseconds.
    pub duration_ms: u32,
    /// Where the digit came from.
    pub source: DtmfSource,
}

/// The summary of a finished call: the same facts as its call detail record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallSummary {
    /// How the call ended.
    pub outcome: CallOutcome,
    /// The final status sent to the caller (200 for an answered call).
    pub status: u16,
    /// Why it ended, for people.
    pub reason: String,
    /// Who ended it.
    pub ended_by: Initiator,
    /// From the A-leg INVITE to the answer (or to the end, if never answered), in milliseconds.
    pub setup_ms: u64,
    /// From the answer to the end, in milliseconds; 0 if never answered.
    pub talk_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lookup_finds_every_line_end() {
        // Values of every length around the 8-byte chunks, so that each LF position in a chunk and
        // the unchunked tail are exercised; LF-only and CR LF line ends alike.
        for len in 0..40 {
            let v = "v".repeat(len);
            for eol in ["\r\n", "\n"] {
                let head = format!("X-A: {v}{eol}X-B:{v}x{eol}X-a: last{eol}");
                let h = Headers::from_head(head);
                assert_eq!(h.get("x-a"), Some(v.as_str()), "{len} {eol:?}");
                assert_eq!(h.get("X-B"), Some(format!("{v}x").as_str()));
                assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), [v.as_str(), "last"]);
                assert_eq!(h.iter().count(), 3);
            }
        }
        let h = Headers::from_head("X-A: 1\r\nno colon\r\nX-A:B: 2\r\nX-AB: 3".into());
        assert_eq!(h.get("X-A:B"), None, "a name ends at the first colon");
        assert_eq!(h.get("X-AB"), Some("3"), "the last line needs no line end");
        assert_eq!(h.get("X-"), None);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("X-A", "1"), ("X-A", "B: 2"), ("X-AB", "3")]
        );
    }

    #[test]
    fn forward_builder() {
        let d: InviteDecision = Forward::new()
            .target("sip:bob@example.com")
            .invite_header("X-Tenant", "acme")
            .pass_through(["X-Correlation-Id", "X-Other"])
            .remove_header("X-Secret")
            .response_header("X-Handled-By", "tagger")
            .media(MediaMode::Anchored)
            .into();
        let InviteDecision::Forward(f) = d else {
            panic!("not a forward")
        };
        assert_eq!(f.target.as_deref(), Some("sip:bob@example.com"));
        assert_eq!(f.invite_headers, [Header::new("X-Tenant", "acme")]);
        assert_eq!(f.pass_through, ["X-Correlation-Id", "X-Other"]);
        assert_eq!(f.remove_headers, ["X-Secret"]);
        assert_eq!(f.response_headers, [Header::new("X-Handled-By", "tagger")]);
        assert_eq!(f.media, Some(MediaMode::Anchored));
        assert!(!f.is_empty());
    }

    #[test]
    fn no_opinion_is_an_empty_forward() {
        assert_eq!(
            InviteDecision::default(),
            InviteDecision::Forward(Forward::new())
        );
        assert!(Forward::new().is_empty());
        assert!(HeaderEdits::new().is_empty());
        assert_eq!(ReferDecision::default(), ReferDecision::NoOpinion);
        assert_eq!(RecordingDecision::default(), RecordingDecision::None);
    }

    #[test]
    fn reject_and_redirect() {
        let r: InviteDecision = Reject::new(486)
            .reason("Busy Here")
            .header("Retry-After", "30")
            .into();
        assert_eq!(
            r,
            InviteDecision::Reject(Reject {
                status: 486,
                reason: Some("Busy Here".into()),
                headers: vec![Header::new("Retry-After", "30")],
            })
        );
        let r: InviteDecision = Redirect::new(302)
            .contact("sip:a@x")
            .contact("sip:b@y")
            .into();
        let InviteDecision::Redirect(r) = r else {
            panic!("not a redirect")
        };
        assert_eq!(
            (r.status, r.contacts.as_slice()),
            (302, &["sip:a@x".to_owned(), "sip:b@y".to_owned()][..])
        );
        assert_eq!(Reject::new(603).reason, None);
    }

    #[test]
    fn header_edits() {
        let e = HeaderEdits::new()
            .add("X-A", "1")
            .remove("X-B")
            .add("X-C", "2");
        assert_eq!(e.add, [Header::new("X-A", "1"), Header::new("X-C", "2")]);
        assert_eq!(e.remove, ["X-B"]);
    }

    #[test]
    fn refer_and_recording() {
        assert_eq!(
            ReferDecision::perform_to("sip:c@z").with_header("X-T", "1"),
            ReferDecision::Perform {
                target: Some("sip:c@z".into()),
                headers: vec![Header::new("X-T", "1")]
            }
        );
        assert_eq!(
            ReferDecision::Pass.with_header("X-T", "1"),
            ReferDecision::Pass
        );
        assert_eq!(
            ReferDecision::perform(),
            ReferDecision::Perform {
                target: None,
                headers: vec![]
            }
        );
        let d = RecordingDecision::record(RecordOptions::both().on_media_connected().tag("k", "v"));
        assert_eq!(
            d,
            RecordingDecision::Record(RecordOptions {
                legs: Legs::Both,
                start: RecordStart::OnMediaConnected,
                tags: vec![("k".into(), "v".into())],
            })
        );
        assert_eq!(RecordOptions::legs(Leg::B).legs, Legs::B);
        assert_eq!(RecordOptions::both().start, RecordStart::OnAnswer);
    }

    #[test]
    fn a_call_reads_as_its_facts() {
        let facts = CallFacts {
            call_id: "c1".into(),
            b_call_id: Some("b1".into()),
            ..Default::default()
        };
        let call = CallInfo::new(facts.clone());
        assert_eq!(
            (call.call_id.as_str(), call.b_call_id.as_deref()),
            ("c1", Some("b1"))
        );
        assert_eq!(*call, facts);
        assert_eq!(call.clone(), CallInfo::from(facts));
        // Natively there is no host to ask: a call not made of facts is empty.
        assert_eq!(*CallInfo::from_host(), CallFacts::default());
    }

    #[test]
    fn header_lookup_is_case_insensitive_first_occurrence() {
        let r = Request {
            method: "INVITE".into(),
            uri: "sip:b@x".into(),
            headers: vec![
                Header::new("X-Misbehave", "loop"),
                Header::new("Diversion", "<sip:1@x>"),
                Header::new("diversion", "<sip:2@x>"),
            ]
            .into(),
            body_type: None,
        };
        assert_eq!(r.header("x-misbehave"), Some("loop"));
        assert_eq!(r.header("DIVERSION"), Some("<sip:1@x>"));
        assert_eq!(
            r.headers_named("Diversion").collect::<Vec<_>>(),
            ["<sip:1@x>", "<sip:2@x>"]
        );
        assert_eq!(r.header("Missing"), None);
    }

    #[test]
    fn header_checks() {
        assert!(Header::new("X-Tenant", "acme").validate().is_ok());
        assert!(Header::new("X Bad", "v").validate().is_err());
        assert!(Header::new("", "v").validate().is_err());
        assert!(
            Header::new("X-Evil", "a\r\nInjected: yes")
                .validate()
                .is_err()
        );
        assert!(
            Header::new("via", "x")
                .validate()
                .unwrap_err()
                .contains("owns")
        );
        assert!(Header::new("f", "x").validate().is_err());
        assert!(check_header_name("Max-Forwards").is_err());
        assert!(check_header_name("X-Max-Forwards").is_ok());
        assert!(is_sip_uri("sip:bob@example.com"));
        assert!(is_sip_uri("SIPS:bob@example.com"));
        assert!(!is_sip_uri("sip:"));
        assert!(!is_sip_uri("http://example.com/"));
        assert!(!is_sip_uri("tel:+44"));
    }

    #[test]
    fn names_are_kebab_case() {
        assert_eq!(CallOutcome::TimedOut.to_string(), "timed-out");
        assert_eq!(DtmfSource::SipInfo.to_string(), "sip-info");
        assert_eq!(MediaState::Connected.to_string(), "connected");
        assert_eq!(Leg::B.to_string(), "b");
    }
}
