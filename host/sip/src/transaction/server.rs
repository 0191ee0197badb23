//! Server transactions: RFC 3261 17.2.1 (INVITE) and 17.2.2 (non-INVITE).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::trace;

use super::timer::TimerTable;
use super::{Event, KeyOf, Outbox, Timer, TimerConfig, TransactionError, TransactionKey, Transmit};
use crate::TransportKind;
use crate::message::{Method, OutgoingResponse, SipMessage};

/// The server INVITE machine, RFC 3261 Figure 7 with RFC 6026's Accepted state:
///
/// ```text
///                        |INVITE
///                        |pass INV to TU
///     INVITE             V send 100 if TU won't in 200ms (Callgate: the TU sends it at once)
///     send response+-----------+
///         +--------|           |--------+ 101-199 from TU
///         |        | Proceeding|        | send response
///         +------->|           |<-------+
///                  |           |  2xx from TU, send response
///                  |           |----------------> Accepted (absorbs INVITE; Timer L) -> Terminated
///                  +-----------+
///     300-699 from TU |
///     send response   V
///                  +-----------+ INVITE: send response
///                  | Completed |<------+  Timer G: send response
///                  |           |-------+
///                  +-----------+ Timer H or transport error: inform TU -> Terminated
///                     | ACK
///                     V
///                  +-----------+
///                  | Confirmed | (absorbs ACK)
///                  +-----------+
///                     | Timer I
///                     V
///                  Terminated
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Proceeding,
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

/// The server non-INVITE machine, RFC 3261 Figure 8:
///
/// ```text
///                   |Request received, pass to TU
///                   V
///             +-----------+
///             |  Trying   |-------------+ 200-699 from TU, send response
///             +-----------+             |
///                 | 1xx from TU         |
///                 V send response       |
///             +-----------+ Request: send response
///             |Proceeding |-------------+ 200-699 from TU, send response
///             +-----------+             |
///                                       V
///             +-----------+ Request: send response
///             | Completed |
///             +-----------+ Timer J -> Terminated
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Invite(InviteState),
    NonInvite(NonInviteState),
}

/// One server transaction (INVITE or non-INVITE by the request's method). See the
/// [module docs](super) for the calling order; the TU answers with [`Self::send_response`].
#[derive(Debug)]
pub struct ServerTransaction {
    key: TransactionKey,
    request: SipMessage,
    dest: SocketAddr,
    reliable: bool,
    config: TimerConfig,
    state: State,
    timers: TimerTable,
    interval: Duration,
    last_response: Option<Bytes>,
    transmits: Outbox<Transmit>,
    events: Outbox<Event>,
}

impl ServerTransaction {
    /// Creates the transaction for a new request. `response_dest` is where responses go (RFC 3261
    /// 18.2.2 with RFC 3581; see [`crate::transport::response_destination`]). The request itself is
    /// the TU's to act on; nothing is queued until the TU responds.
    pub fn new(
        request: SipMessage,
        response_dest: SocketAddr,
        transport: TransportKind,
        config: TimerConfig,
    ) -> Result<ServerTransaction, TransactionError> {
        let method = request.method().ok_or(TransactionError::WrongKind)?;
        if *method == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let state = if *method == Method::Invite {
            State::Invite(InviteState::Proceeding)
        } else {
            State::NonInvite(NonInviteState::Trying)
        };
        let key = TransactionKey::for_request(&request).ok_or(TransactionError::NoBranch)?;
        Ok(ServerTransaction {
            key,
            request,
            dest: response_dest,
            reliable: transport.is_reliable(),
            config,
            state,
            timers: TimerTable::default(),
            interval: config.t1,
            last_response: None,
            transmits: Outbox::new(),
            events: Outbox::new(),
        })
    }

    /// The key requests (retransmissions, ACK) are matched by.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request that created the transaction.
    pub fn request(&self) -> &SipMessage {
        &self.request
    }

    /// True once the machine reached Terminated; drop the transaction then.
    pub fn is_terminated(&self) -> bool {
        matches!(
            self.state,
            State::Invite(InviteState::Terminated) | State::NonInvite(NonInviteState::Terminated)
        )
    }

    /// True while the machine still acts on its own: it awaits the TU's final response, or (INVITE)
    /// retransmits a non-2xx final until the ACK. Once false, all that is left is answering a
    /// retransmitted request with [`Self::last_response`] until the transaction times out, which
    /// the TU may do statelessly (a finished call does, to end its actor early).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            State::Invite(InviteState::Proceeding | InviteState::Completed)
                | State::NonInvite(NonInviteState::Trying | NonInviteState::Proceeding)
        )
    }

    /// The response a retransmission of the request gets again: the final response, except a 2xx
    /// to an INVITE (RFC 6026: the TU retransmits that one, and absorbs retransmitted INVITEs).
    pub fn echo(&self) -> Option<&Bytes> {
        match self.state {
            State::Invite(InviteState::Accepted) => None,
            _ => self.last_response.as_ref(),
        }
    }

    /// Where responses go.
    pub fn response_dest(&self) -> SocketAddr {
        self.dest
    }

    /// True if a final response was sent (useful to decide whether a CANCEL still applies: 9.2).
    pub fn has_final_response(&self) -> bool {
        !matches!(
            self.state,
            State::Invite(InviteState::Proceeding)
                | State::NonInvite(NonInviteState::Trying | NonInviteState::Proceeding)
        )
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Invite(InviteState::Proceeding)
            | State::NonInvite(NonInviteState::Proceeding) => "Proceeding",
            State::Invite(InviteState::Accepted) => "Accepted",
            State::Invite(InviteState::Completed) | State::NonInvite(NonInviteState::Completed) => {
                "Completed"
            }
            State::Invite(InviteState::Confirmed) => "Confirmed",
            State::NonInvite(NonInviteState::Trying) => "Trying",
            State::Invite(InviteState::Terminated)
            | State::NonInvite(NonInviteState::Terminated) => "Terminated",
        }
    }

    fn terminate(&mut self) {
        self.timers.stop_all();
        self.state = match self.state {
            State::Invite(_) => State::Invite(InviteState::Terminated),
            State::NonInvite(_) => State::NonInvite(NonInviteState::Terminated),
        };
    }

    fn send(&mut self, bytes: Bytes) {
        self.transmits.push(Transmit {
            bytes,
            dest: self.dest,
        });
    }

    fn resend_last(&mut self) {
        if let Some(b) = self.last_response.clone() {
            self.send(b);
        }
    }

    /// Feeds a request that matched [`Self::key`]: a retransmission (answered with the last
    /// response) or, for INVITE, the ACK of a non-2xx final (absorbed, stops Timer G).
    pub fn handle_message(
        &mut self,
        now: Instant,
        req: SipMessage,
    ) -> Result<(), TransactionError> {
        let method = req.method().ok_or(TransactionError::WrongKind)?.clone();
        if !self.key.matches(KeyOf::request(&req)) {
            return Err(TransactionError::NotMatching);
        }
        trace!(%method, state = self.state_name(), "server transaction request");
        match (self.state, method == Method::Ack) {
            (State::Invite(InviteState::Proceeding | InviteState::Completed), false) => {
                self.resend_last()
            }
            (State::Invite(InviteState::Completed), true) => {
                self.timers.stop(Timer::G);
                self.timers.stop(Timer::H);
                if self.reliable {
                    self.terminate();
                } else {
                    self.timers.set(Timer::I, now + self.config.t4);
                    self.state = State::Invite(InviteState::Confirmed);
                }
            }
            (State::NonInvite(NonInviteState::Proceeding | NonInviteState::Completed), false) => {
                self.resend_last()
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends the TU's response. A second final response, or any response after the final, is refused.
    pub fn send_response(
        &mut self,
        now: Instant,
        resp: &OutgoingResponse,
    ) -> Result<(), TransactionError> {
        let status = resp.status();
        let bytes = resp.bytes().clone();
        let invalid = TransactionError::InvalidState {
            state: self.state_name(),
            action: "send a response",
        };
        match self.state {
            State::Invite(InviteState::Proceeding) => {
                self.send(bytes.clone());
                self.last_response = Some(bytes);
                match status {
                    100..=199 => {}
                    200..=299 => {
                        // RFC 6026: the TU retransmits the 2xx until the ACK; we absorb INVITEs.
                        self.timers.set(Timer::L, now + self.config.t1x64());
                        self.state = State::Invite(InviteState::Accepted);
                    }
                    _ => {
                        if !self.reliable {
                            self.interval = self.config.t1;
                            self.timers.set(Timer::G, now + self.interval);
                        }
                        self.timers.set(Timer::H, now + self.config.t1x64());
                        self.state = State::Invite(InviteState::Completed);
                    }
                }
            }
            State::NonInvite(NonInviteState::Trying | NonInviteState::Proceeding) => {
                self.send(bytes.clone());
                self.last_response = Some(bytes);
                if status < 200 {
                    self.state = State::NonInvite(NonInviteState::Proceeding);
                } else if self.reliable {
                    self.terminate();
                } else {
                    self.timers.set(Timer::J, now + self.config.t1x64());
                    self.state = State::NonInvite(NonInviteState::Completed);
                }
            }
            _ => return Err(invalid),
        }
        Ok(())
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            trace!(timer = ?t, state = self.state_name(), "server transaction timer");
            match t {
                Timer::G => {
                    self.resend_last();
                    self.interval = (self.interval * 2).min(self.config.t2);
                    self.timers.set(Timer::G, now + self.interval);
                }
                Timer::H => {
                    self.events.push(Event::Timeout(t));
                    self.terminate();
                }
                Timer::I | Timer::J | Timer::L => self.terminate(),
                Timer::A | Timer::B | Timer::D | Timer::E | Timer::F | Timer::K | Timer::M => {}
            }
        }
    }

    /// The transport failed to send a response (17.2.4): tells the TU and terminates.
    pub fn handle_transport_error(&mut self) {
        if !self.is_terminated() {
            self.events.push(Event::TransportError);
            self.terminate();
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop()
    }

    /// The next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// When `handle_timeout` must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }
}
