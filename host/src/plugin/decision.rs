//! The host's own view of what plugins see and decide.
//!
//! These types mirror `wit/` but belong to the host: the B2B layer works with them only, and each
//! contract version's module (`wit/since_v*.rs`) converts generated types into them. Adding a contract
//! version therefore never touches the call logic.

/// One SIP header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The header name as on the wire.
    pub name: String,
    /// The header value, without the line ending.
    pub value: String,
}

impl Header {
    /// A header from anything string-like.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A header of a message the gateway received, as a plugin sees it: borrowed from the message, so
/// that a hook's arguments are copied once, into the plugin's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderView<'a> {
    /// The header name (compact forms expanded).
    pub name: &'a str,
    /// The header value, without the line ending.
    pub value: &'a str,
}

impl<'a> HeaderView<'a> {
    /// A header view.
    pub fn new(name: &'a str, value: &'a str) -> Self {
        Self { name, value }
    }
}

/// One side of a call: A is the incoming leg, B the one the gateway placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller's side.
    A,
    /// The callee's side.
    B,
}

/// What the host tells every hook about the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallInfo {
    /// The host's number for the call.
    pub call_ref: u64,
    /// The A-leg Call-ID.
    pub call_id: String,
    /// The B-leg Call-ID, once the B leg exists.
    pub b_call_id: Option<String>,
    /// The A-leg From URI.
    pub from: String,
    /// The A-leg To URI.
    pub to: String,
    /// The A-leg Request-URI.
    pub request_uri: String,
    /// `transport:address:port` of the A-leg INVITE's source.
    pub source: String,
}

/// A request as a plugin sees it (no Via/Route/Record-Route, no body), borrowed from the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a str,
    /// The Request-URI.
    pub uri: &'a str,
    /// Headers in wire order, compact forms expanded.
    pub headers: Vec<HeaderView<'a>>,
    /// The body's Content-Type, if there is a body.
    pub body_type: Option<&'a str>,
}

/// A response as a plugin sees it, borrowed from the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseView<'a> {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: &'a str,
    /// Headers in wire order, compact forms expanded.
    pub headers: Vec<HeaderView<'a>>,
    /// The body's Content-Type, if there is a body.
    pub body_type: Option<&'a str>,
}

/// Edits to a message the host builds: remove, then add.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Appended headers.
    pub add: Vec<Header>,
    /// Names removed (all occurrences, case-insensitive).
    pub remove: Vec<String>,
}

impl HeaderEdits {
    /// True when the edits change nothing.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// Anchored (through the gateway's relay) or direct (end to end) media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MediaMode {
    /// RTP through the gateway.
    Anchored,
    /// RTP end to end.
    Direct,
}

/// How to place the B leg; every field empty means "no opinion".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    /// B-leg Request-URI, overriding the configured route.
    pub target: Option<String>,
    /// Headers added to the B-leg INVITE.
    pub invite_headers: Vec<Header>,
    /// Header names copied from A's INVITE to B's.
    pub pass_through: Vec<String>,
    /// Header names removed from B's INVITE after everything else.
    pub remove_headers: Vec<String>,
    /// Headers added to every response sent back on A.
    pub response_headers: Vec<Header>,
    /// Media mode, overriding the configured default.
    pub media: Option<MediaMode>,
}

/// A final error answer to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 400-699.
    pub status: u16,
    /// Reason phrase, or the standard one.
    pub reason: Option<String>,
    /// Extra headers.
    pub headers: Vec<Header>,
}

/// A 3xx answer to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// 300-399.
    pub status: u16,
    /// Contact URIs in preference order.
    pub contacts: Vec<String>,
    /// Extra headers.
    pub headers: Vec<Header>,
}

/// A plugin's answer to a new call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InviteDecision {
    /// Place the B leg.
    Forward(Forward),
    /// Answer the caller with an error.
    Reject(Reject),
    /// Answer the caller with a redirect.
    Redirect(Redirect),
}

impl Default for InviteDecision {
    fn default() -> Self {
        InviteDecision::Forward(Forward::default())
    }
}

/// A REFER as a plugin sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransferRequest {
    /// The Refer-To URI without embedded headers.
    pub refer_to: String,
    /// The Referred-By URI.
    pub referred_by: Option<String>,
    /// The Replaces value embedded in Refer-To.
    pub replaces: Option<String>,
    /// The REFER's headers.
    pub headers: Vec<Header>,
}

/// What to do with a REFER.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReferDecision {
    /// Leave it to the next plugin or the config.
    #[default]
    NoOpinion,
    /// Answer the REFER with this status.
    Reject(u16),
    /// Relay the REFER to the other party.
    Pass,
    /// Perform the transfer in the gateway.
    Perform {
        /// Where to, instead of Refer-To.
        target: Option<String>,
        /// Headers added to the new leg's INVITE.
        headers: Vec<Header>,
    },
}

/// Which legs a recording covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordLegs {
    /// The caller's audio.
    pub a: bool,
    /// The callee's audio.
    pub b: bool,
}

/// When a recording starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecordStart {
    /// When B answers.
    #[default]
    OnAnswer,
    /// When both legs have media flowing.
    OnMediaConnected,
}

/// What to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordOptions {
    /// Legs recorded.
    pub legs: RecordLegs,
    /// When to start.
    pub start: RecordStart,
    /// Metadata tags.
    pub tags: Vec<(String, String)>,
}

/// A plugin's recording decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RecordingDecision {
    /// No recording.
    #[default]
    None,
    /// Record.
    Record(RecordOptions),
}

/// A leg's media state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaState {
    /// Offer out, no answer.
    Negotiating,
    /// Negotiated, no RTP yet.
    Connecting,
    /// RTP flowing both ways.
    Connected,
    /// On hold.
    Held,
    /// No RTP for the stall time.
    Stalled,
    /// Over.
    Ended,
}

/// What a media-state change was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource {
    /// Packets seen by the relay.
    Packets,
    /// SDP alone.
    Sdp,
}

/// One leg's media-state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaChange {
    /// Before.
    pub old: MediaState,
    /// After.
    pub new: MediaState,
    /// Based on.
    pub source: MediaSource,
}

/// Where a DTMF digit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfSource {
    /// RFC 4733 packets.
    Rfc4733,
    /// SIP INFO.
    SipInfo,
}

/// One DTMF digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dtmf {
    /// 0-9, *, #, A-D.
    pub digit: char,
    /// Key press length.
    pub duration_ms: u32,
    /// Source.
    pub source: DtmfSource,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallOutcome {
    /// Bridged.
    Answered,
    /// A final error went to the caller.
    Rejected,
    /// The caller cancelled.
    Cancelled,
    /// A 3xx went to the caller.
    Redirected,
    /// A setup phase timed out.
    TimedOut,
    /// The gateway failed.
    Failed,
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Initiator {
    /// The A party.
    Caller,
    /// The B party.
    Callee,
    /// The gateway.
    Gateway,
    /// A plugin.
    Plugin,
}

/// The summary given to `on-call-end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    /// Outcome.
    pub outcome: CallOutcome,
    /// Final status on A.
    pub status: u16,
    /// Why, for people.
    pub reason: String,
    /// Who ended it.
    pub ended_by: Initiator,
    /// INVITE to answer (or end).
    pub setup_ms: u64,
    /// Answer to end.
    pub talk_ms: u64,
}

/// A command a plugin gave through `call-control`, carried out by the call after the hook returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// End the call.
    HangUp {
        /// Status for an unanswered A leg.
        status: u16,
        /// Reason for people.
        reason: String,
    },
    /// Start recording now.
    StartRecording(RecordOptions),
    /// Pause the recording.
    PauseRecording,
    /// Resume it.
    ResumeRecording,
    /// Stop it.
    StopRecording,
    /// Play a prompt.
    PlayPrompt {
        /// To which party.
        leg: Leg,
        /// The prompt's name.
        prompt: String,
        /// Times to play; 0 = until stopped.
        repeat: u32,
        /// The handle returned to the plugin.
        handle: u64,
    },
    /// Stop a prompt.
    StopPrompt(u64),
    /// Transfer a party.
    Transfer {
        /// Whose party.
        leg: Leg,
        /// Where to.
        target: String,
        /// Headers for the new INVITE.
        headers: Vec<Header>,
    },
}

/// A command together with the plugin that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCommand {
    /// The plugin's name.
    pub plugin: std::sync::Arc<str>,
    /// The command.
    pub command: CallCommand,
}
