//! Callgate's SIP stack: message indexing and building, RFC 3261 transactions and dialogs as sans-IO
//! state machines, and thin tokio transports.
//!
//! Layers, bottom up (h2 style, one concept per module):
//! - [`message`]: [`message::SipMessage`] parsed lazily from `Bytes`; response and request builders.
//! - [`transaction`]: the four RFC 3261 17 machines, driven by `handle_*` inputs and `poll_*` outputs.
//! - [`dialog`]: RFC 3261 12 dialog state and in-dialog request creation.
//! - [`transport`]: UDP and TCP drivers, the only code touching sockets.
#![deny(missing_docs)]

pub mod dialog;
pub mod message;
pub mod transaction;

/// The transport a message travels on. Reliability changes the transaction timers (RFC 3261 17):
/// retransmission timers are not armed and the wait timers D, I, J, K are zero on a reliable one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// UDP: unreliable, datagram framed.
    Udp,
    /// TCP: reliable, framed by Content-Length.
    Tcp,
}

impl TransportKind {
    /// True for stream transports.
    pub fn is_reliable(self) -> bool {
        matches!(self, TransportKind::Tcp)
    }

    /// The Via transport token.
    pub fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}
pub mod transport;
