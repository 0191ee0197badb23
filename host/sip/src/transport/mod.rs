//! Thin tokio transports: the only code in the stack that touches sockets.
//!
//! [`UdpTransport`] and [`TcpTransport`] receive, parse ([`SipMessage::parse`]), fill in the top Via's
//! `received`/`rport` on requests (RFC 3261 18.2.1, RFC 3581 4), and hand each message to a
//! [`Handler`] as an [`Incoming`]. A request that fails to parse but is answerable gets its 400 here,
//! straight away; anything else malformed is dropped (RFC 3261 16.3, 18.1.2 spirit), logged at debug.
//!
//! Why a callback and not a channel: the consumer (the call registry) only needs to hash the Call-ID
//! or branch and forward the message to the right call actor's own channel. Calling it on the receive
//! task saves one channel hop and one task wake-up per message, which matters at ~1-2 us per hop in a
//! 100 us per-call budget. The handler must therefore never block: look up and `try_send`, nothing
//! more. (Tests wrap it around an mpsc sender.)
//!
//! Sending: both handles are `Clone` (an `Arc` inside) and `send(bytes, dest)` from any task.

mod frame;
mod tcp;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

pub use frame::{FrameError, next_frame};
pub use tcp::{TcpConfig, TcpTransport};
pub use udp::UdpTransport;

use crate::TransportKind;
use crate::message::{SipMessage, build_response, new_tag};

/// A received message with where it came from.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message; a request's top Via already carries `received`/`rport` when they apply.
    pub msg: SipMessage,
    /// The packet's source address (the peer's socket).
    pub source: SocketAddr,
    /// The transport it came on.
    pub transport: TransportKind,
    /// Our local socket address it arrived on.
    pub local: SocketAddr,
}

/// The consumer of incoming messages; runs on the receive task and must not block (see module docs).
pub type Handler = Arc<dyn Fn(Incoming) + Send + Sync>;

/// Why a send or bind failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket reported an error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The TCP connection to that peer is gone and could not be re-established.
    #[error("connection to {0} closed")]
    ConnectionClosed(SocketAddr),
    /// The message is larger than the configured maximum.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The message size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Where to send responses to `req` (RFC 3261 18.2.2 with RFC 3581 4): on a reliable transport, back on
/// the connection it came from (`source`); on UDP, to `received` (or the sent-by host when it is an IP
/// address) at the `rport` port if present, else the sent-by port, else 5060. Falls back to `source`
/// when the sent-by host is a name, since resolving it (RFC 3263) is not the transport's job.
pub fn response_destination(
    req: &SipMessage,
    source: SocketAddr,
    transport: TransportKind,
) -> SocketAddr {
    if transport.is_reliable() {
        return source;
    }
    let via = req.top_via();
    let host = via.host().trim_start_matches('[').trim_end_matches(']');
    let ip = via
        .received()
        .and_then(|r| r.parse::<IpAddr>().ok())
        .or_else(|| host.parse::<IpAddr>().ok());
    let port = match via.rport() {
        Some(Some(p)) => p,
        Some(None) => source.port(),
        None => via.port().unwrap_or(5060),
    };
    match ip {
        Some(ip) => SocketAddr::new(ip, port),
        None => source,
    }
}

/// What to do with received bytes: the shared receive path of both transports. Returns a 400 to send
/// back (bytes and destination) when the bytes were an answerable malformed request.
pub(crate) fn on_receive(
    bytes: Bytes,
    source: SocketAddr,
    local: SocketAddr,
    transport: TransportKind,
    handler: &Handler,
) -> Option<(Bytes, SipMessage, SocketAddr)> {
    match SipMessage::parse(bytes) {
        Ok(msg) => {
            let msg = if msg.is_request() {
                msg.with_via_received(source).unwrap_or(msg)
            } else {
                msg
            };
            debug!(
                %source, ?transport, call_id = msg.call_id(), cseq = msg.cseq(),
                method = %msg.cseq_method(), status = msg.status(),
                "sip in:\n{}", String::from_utf8_lossy(&msg.wire_bytes())
            );
            handler(Incoming {
                msg,
                source,
                transport,
                local,
            });
            None
        }
        Err(e) => match e.respondable() {
            Some(req) => {
                debug!(%source, ?transport, error = %e.kind, status = e.status(), "malformed request, answering");
                let tag = new_tag();
                let resp =
                    build_response(req, e.status(), &e.reason_phrase(), &[], Some(&tag), None)
                        .ok()?;
                let dest = response_destination(req, source, transport);
                Some((resp.bytes().clone(), req.clone(), dest))
            }
            None => {
                debug!(%source, ?transport, error = %e.kind, "malformed message dropped");
                None
            }
        },
    }
}

pub(crate) fn log_out(bytes: &[u8], dest: SocketAddr, transport: TransportKind) {
    debug!(%dest, ?transport, "sip out:\n{}", String::from_utf8_lossy(bytes));
}

#[cfg(test)]
mod tests;
