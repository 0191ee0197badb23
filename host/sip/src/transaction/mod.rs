//! RFC 3261 17 transactions as sans-IO state machines.
//!
//! [`ClientTransaction`] runs the client INVITE (17.1.1) or non-INVITE (17.1.2) machine, chosen by the
//! request method; [`ServerTransaction`] the server INVITE (17.2.1) or non-INVITE (17.2.2) machine.
//! Both follow quinn-proto's shape and never read the clock or touch a socket:
//!
//! 1. inputs: `handle_message(now, msg)`, `handle_timeout(now)`, `handle_transport_error()`, and the
//!    TU's commands ([`ServerTransaction::send_response`]);
//! 2. after every input, drain the outputs: [`poll_transmit`](ClientTransaction::poll_transmit) until
//!    `None` (send each [`Transmit`]), then [`poll_event`](ClientTransaction::poll_event) until `None`;
//! 3. re-arm one timer at [`poll_timeout`](ClientTransaction::poll_timeout) and call `handle_timeout`
//!    when it passes; time must not go backwards;
//! 4. drop the transaction once `is_terminated()`.
//!
//! Matching (17.1.3, 17.2.3) is by [`TransactionKey`]: the caller keeps a map from key to transaction
//! (inside its call actor) and looks an incoming message up with [`KeyOf::response`] or
//! [`KeyOf::request`]; a CANCEL finds the INVITE it cancels with [`KeyOf::cancel_target`].
//!
//! Beyond RFC 3261 we implement RFC 6026's Accepted states (Timers L and M): a 2xx to an INVITE keeps
//! the transaction alive for 64*T1 so that retransmitted INVITEs are absorbed and retransmitted 2xx
//! reach the TU, which must re-send its ACK.

mod client;
mod server;
mod timer;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use bytes::Bytes;

pub use client::ClientTransaction;
pub use server::ServerTransaction;
pub use timer::{Timer, TimerConfig};

use crate::message::{BRANCH_MAGIC, Method, SipMessage};

/// A datagram or stream write for the transport: the bytes and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The serialized message.
    pub bytes: Bytes,
    /// The destination (for a server transaction, chosen by RFC 3261 18.2.2 when it was created).
    pub dest: SocketAddr,
}

/// What a transaction tells its TU.
#[derive(Debug, Clone)]
pub enum Event {
    /// Client: a response for the TU. Every 1xx and 2xx, the first non-2xx final; retransmitted
    /// non-2xx finals are absorbed (and re-ACKed) here; retransmitted 2xx are delivered again
    /// (RFC 6026) so the TU can re-send its ACK.
    Response(SipMessage),
    /// A timer ran out. Client: Timer B or F, no final response; the TU treats it as a
    /// 408 Request Timeout (RFC 3261 8.1.3.1). Server: Timer H, no ACK for our non-2xx final.
    Timeout(Timer),
    /// The transport reported a failure sending for this transaction (RFC 3261 17.1.4, 17.2.4); for a
    /// client the TU treats it as a 503 Service Unavailable (8.1.3.1).
    TransportError,
}

/// Why a transaction refused an input or command. None of these change the transaction's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The message does not belong to this transaction (17.1.3 / 17.2.3).
    #[error("message does not match the transaction")]
    NotMatching,
    /// The request's top Via has no RFC 3261 branch (`z9hG4bK...`); RFC 2543 matching is not supported.
    #[error("request has no RFC 3261 branch")]
    NoBranch,
    /// ACK is not a transaction of its own (RFC 3261 17): it belongs to the INVITE server
    /// transaction (non-2xx) or to the dialog (2xx).
    #[error("ACK does not create a transaction")]
    AckIsNotATransaction,
    /// A request was given where a response was expected, or the reverse.
    #[error("wrong message kind")]
    WrongKind,
    /// The command is not allowed in the current state (e.g. a second final response).
    #[error("cannot {action} in state {state}")]
    InvalidState {
        /// The state the transaction is in.
        state: &'static str,
        /// What was attempted.
        action: &'static str,
    },
}

/// A transaction's queue of transmits or events for its TU: one or two at a time, drained after
/// every input, so they are kept inline rather than in a heap queue per transaction.
#[derive(Debug)]
pub(crate) struct Outbox<T>(smallvec::SmallVec<[T; 2]>);

impl<T> Outbox<T> {
    pub(crate) fn new() -> Self {
        Outbox(smallvec::SmallVec::new())
    }

    pub(crate) fn push(&mut self, item: T) {
        self.0.push(item);
    }

    /// The oldest entry.
    pub(crate) fn pop(&mut self) -> Option<T> {
        (!self.0.is_empty()).then(|| self.0.remove(0))
    }
}

/// Identifies a transaction per RFC 3261 17.1.3 (client: branch + CSeq method) and 17.2.3 (server:
/// branch + sent-by + method, where ACK maps to INVITE). Client and server keys never compare equal,
/// so one map can hold both sides of a B2BUA. A message's key is read as a [`KeyOf`] and compared
/// with stored keys without copying; a transaction keeps its own as this owned form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    branch: Box<str>,
    /// The sent-by host, lowercased; empty for client keys (a response's Via is the one we wrote,
    /// so the branch identifies it).
    host: Box<str>,
    /// The sent-by port, the transport's default when not written (so "h" equals "h:5060"); 0 for
    /// client keys.
    port: u16,
    method: Method,
    server: bool,
}

/// A message's transaction key, borrowed from the message (see [`TransactionKey`]).
#[derive(Debug, Clone, Copy)]
pub struct KeyOf<'a> {
    branch: &'a str,
    host: &'a str,
    port: u16,
    method: &'a Method,
    server: bool,
}

/// An ACK's key names the INVITE it acknowledges.
static INVITE: Method = Method::Invite;

impl<'a> KeyOf<'a> {
    /// The key of the client transaction a response belongs to (17.1.3).
    pub fn response(resp: &'a SipMessage) -> Option<KeyOf<'a>> {
        if resp.is_request() {
            return None;
        }
        Some(Self::client(resp.top_via().branch()?, resp.cseq_method()))
    }

    /// A client transaction's key: branch and method only (17.1.3).
    pub(crate) fn client(branch: &'a str, method: &'a Method) -> KeyOf<'a> {
        KeyOf {
            branch,
            host: "",
            port: 0,
            method,
            server: false,
        }
    }

    /// The key of the server transaction a request belongs to (17.2.3); an ACK maps to its INVITE.
    /// `None` if the request has no RFC 3261 branch.
    pub fn request(req: &'a SipMessage) -> Option<KeyOf<'a>> {
        let method = match req.method()? {
            Method::Ack => &INVITE,
            m => m,
        };
        Self::server(req, method)
    }

    /// For a CANCEL: the key of the INVITE server transaction it cancels (RFC 3261 9.2 with 17.2.3).
    pub fn cancel_target(cancel: &'a SipMessage) -> Option<KeyOf<'a>> {
        if cancel.method() != Some(&Method::Cancel) {
            return None;
        }
        Self::server(cancel, &INVITE)
    }

    fn server(req: &'a SipMessage, method: &'a Method) -> Option<KeyOf<'a>> {
        let via = req.top_via();
        let branch = via.branch().filter(|b| b.starts_with(BRANCH_MAGIC))?;
        let port = via
            .port()
            .unwrap_or(if via.transport().eq_ignore_ascii_case("TLS") {
                5061
            } else {
                5060
            });
        Some(KeyOf {
            branch,
            host: via.host(),
            port,
            method,
            server: true,
        })
    }

    /// The owned key, for a new transaction.
    pub fn to_key(&self) -> TransactionKey {
        TransactionKey {
            branch: self.branch.into(),
            host: self.host.to_ascii_lowercase().into(),
            port: self.port,
            method: self.method.clone(),
            server: self.server,
        }
    }
}

impl PartialEq<KeyOf<'_>> for TransactionKey {
    fn eq(&self, k: &KeyOf<'_>) -> bool {
        self.server == k.server
            && self.port == k.port
            && *self.branch == *k.branch
            && self.method == *k.method
            && self.host.eq_ignore_ascii_case(k.host)
    }
}

impl TransactionKey {
    /// The key of the client transaction a response belongs to (17.1.3).
    pub fn for_response(resp: &SipMessage) -> Option<TransactionKey> {
        KeyOf::response(resp).map(|k| k.to_key())
    }

    /// The key of the server transaction a request belongs to (17.2.3); an ACK maps to its INVITE.
    /// `None` if the request has no RFC 3261 branch.
    pub fn for_request(req: &SipMessage) -> Option<TransactionKey> {
        KeyOf::request(req).map(|k| k.to_key())
    }

    /// For a CANCEL: the key of the INVITE server transaction it cancels (RFC 3261 9.2 with 17.2.3).
    pub fn cancel_target(cancel: &SipMessage) -> Option<TransactionKey> {
        KeyOf::cancel_target(cancel).map(|k| k.to_key())
    }

    /// Whether `key` (a message's, if it has one) is this one.
    pub fn matches(&self, key: Option<KeyOf<'_>>) -> bool {
        key.is_some_and(|k| *self == k)
    }

    /// The branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The method this key matches (INVITE for an ACK's key).
    pub fn method(&self) -> &Method {
        &self.method
    }
}
