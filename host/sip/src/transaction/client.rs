//! Client transactions: RFC 3261 17.1.1 (INVITE) and 17.1.2 (non-INVITE).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::trace;

use super::timer::TimerTable;
use super::{Event, KeyOf, Outbox, Timer, TimerConfig, TransactionError, TransactionKey, Transmit};
use crate::TransportKind;
use crate::message::{Method, SipMessage, build_non2xx_ack};

/// The client INVITE machine, RFC 3261 Figure 5 with RFC 6026's Accepted state:
///
/// ```text
///                     |INVITE from TU
///   Timer A fires     |INVITE sent
///   Reset A,          V                      Timer B fires
///   INVITE sent +-----------+                or Transport Err.
///     +---------|           |---------------+inform TU
///     |         |  Calling  |               |
///     +-------->|           |-------------->|
///               +-----------+ 2xx           |
///                  |  |       2xx to TU     |
///                  |  |1xx    ------------->+ Accepted --(Timer M)--> Terminated
///  300-699 +-------+  |1xx to TU            |  (2xx to TU again)
/// ACK sent |          |                     |
///resp. to TU|  1xx    V                     |
///          |  1xx to TU  -----------+       |
///          |  +---------|           |       |
///          |  |         |Proceeding |-------> 2xx: Accepted
///          |  +-------->|           |       |
///          |            +-----------+       |
///          |   300-699     |                |
///          |   ACK sent,   |                |
///          |   resp. to TU |                |
///          +-------------->V                |
///   300-699          +-----------+          |
///   ACK sent  +------|Completed  |          |
///             +----->|           |          |
///                    +-----------+          |
///                      |  Timer D fires     |
///                      V                    |
///                    Terminated <-----------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// The client non-INVITE machine, RFC 3261 Figure 6:
///
/// ```text
///                        |Request from TU, send request
///    Timer E             V
///    send request +-----------+
///        +--------|  Trying   |-------------+ Timer F or Transport Err.: inform TU
///        +------->|           |             |
///                 +-----------+             |
///    200-699         |  |  1xx, resp. to TU |
///    resp. to TU     |  V                   |
///        +-----+  +-----------+             |
///        |     |  |Proceeding |-----------> + Timer F or Transport Err.: inform TU
///        |     |  +-----------+ Timer E (interval T2): send request
///        |     |     | 200-699, resp. to TU |
///        |     V     V                      |
///        |  +-----------+                   |
///        |  | Completed |  Timer K          |
///        |  +-----------+-------> Terminated <+
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

/// One client transaction (INVITE or non-INVITE by the request's method). See the
/// [module docs](super) for the calling order.
///
/// Method kinds: getters (`key`, `request`, `is_terminated`); inputs (`handle_message`,
/// `handle_timeout`, `handle_transport_error`); outputs (`poll_transmit`, `poll_event`, `poll_timeout`).
#[derive(Debug)]
pub struct ClientTransaction {
    key: TransactionKey,
    request: SipMessage,
    wire: Bytes,
    dest: SocketAddr,
    reliable: bool,
    config: TimerConfig,
    state: State,
    timers: TimerTable,
    interval: Duration,
    ack: Option<Bytes>,
    transmits: Outbox<Transmit>,
    events: Outbox<Event>,
}

impl ClientTransaction {
    /// Starts a transaction for `request` (built with [`crate::message::RequestBuilder`] or
    /// [`crate::message::build_cancel`]) to `dest`: queues the first transmission and arms A/B or E/F.
    pub fn new(
        now: Instant,
        request: SipMessage,
        dest: SocketAddr,
        transport: TransportKind,
        config: TimerConfig,
    ) -> Result<ClientTransaction, TransactionError> {
        let method = request.method().ok_or(TransactionError::WrongKind)?.clone();
        if method == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let branch = request
            .top_via()
            .branch()
            .filter(|b| b.starts_with(crate::message::BRANCH_MAGIC))
            .ok_or(TransactionError::NoBranch)?;
        let key = KeyOf::client(branch, &method).to_key();
        let reliable = transport.is_reliable();
        let wire = request.wire_bytes();
        let mut timers = TimerTable::default();
        let state = if method == Method::Invite {
            if !reliable {
                timers.set(Timer::A, now + config.t1);
            }
            timers.set(Timer::B, now + config.t1x64());
            State::Invite(InviteState::Calling)
        } else {
            if !reliable {
                timers.set(Timer::E, now + config.t1);
            }
            timers.set(Timer::F, now + config.t1x64());
            State::NonInvite(NonInviteState::Trying)
        };
        let mut transmits = Outbox::new();
        transmits.push(Transmit {
            bytes: wire.clone(),
            dest,
        });
        Ok(ClientTransaction {
            key,
            request,
            wire,
            dest,
            reliable,
            config,
            state,
            timers,
            interval: config.t1,
            ack: None,
            transmits,
            events: Outbox::new(),
        })
    }

    /// The key responses are matched by.
    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request this transaction sends.
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

    /// True while the machine awaits a final response. Once false, all that is left is absorbing
    /// retransmitted responses (and re-ACKing a non-2xx final with [`Self::non_2xx_ack`]).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            State::Invite(InviteState::Calling | InviteState::Proceeding)
                | State::NonInvite(NonInviteState::Trying | NonInviteState::Proceeding)
        )
    }

    /// The ACK this INVITE transaction sent for a non-2xx final response, sent again for each
    /// retransmission of that response.
    pub fn non_2xx_ack(&self) -> Option<&Bytes> {
        self.ack.as_ref()
    }

    /// Where the request goes.
    pub fn dest(&self) -> SocketAddr {
        self.dest
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::Invite(InviteState::Calling) => "Calling",
            State::Invite(InviteState::Proceeding)
            | State::NonInvite(NonInviteState::Proceeding) => "Proceeding",
            State::Invite(InviteState::Accepted) => "Accepted",
            State::Invite(InviteState::Completed) | State::NonInvite(NonInviteState::Completed) => {
                "Completed"
            }
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

    /// Feeds a response that matched [`Self::key`]. Returns `NotMatching` (state untouched) for a
    /// message that is not a response of this transaction.
    pub fn handle_message(
        &mut self,
        now: Instant,
        resp: SipMessage,
    ) -> Result<(), TransactionError> {
        let status = resp.status().ok_or(TransactionError::WrongKind)?;
        if !self.key.matches(KeyOf::response(&resp)) {
            return Err(TransactionError::NotMatching);
        }
        trace!(
            status,
            state = self.state_name(),
            "client transaction response"
        );
        match self.state {
            State::Invite(s) => self.recv_invite_response(now, s, status, resp),
            State::NonInvite(s) => self.recv_non_invite_response(now, s, status, resp),
        }
        Ok(())
    }

    fn recv_invite_response(
        &mut self,
        now: Instant,
        s: InviteState,
        status: u16,
        resp: SipMessage,
    ) {
        use InviteState::*;
        match (s, status) {
            (Calling | Proceeding, 100..=199) => {
                // Figure 5: a provisional stops retransmissions and Timer B; from here the TU decides
                // how long to wait (and CANCELs).
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                self.state = State::Invite(Proceeding);
                self.events.push(Event::Response(resp));
            }
            (Calling | Proceeding, 200..=299) => {
                self.timers.stop_all();
                self.timers.set(Timer::M, now + self.config.t1x64());
                self.state = State::Invite(Accepted);
                self.events.push(Event::Response(resp));
            }
            (Calling | Proceeding, _) => {
                let ack = build_non2xx_ack(&self.request, &resp);
                self.send(ack.clone());
                self.ack = Some(ack);
                self.timers.stop_all();
                self.events.push(Event::Response(resp));
                if self.reliable {
                    self.terminate();
                } else {
                    // "at least 32 seconds"; with a large T1 64*T1 may exceed that.
                    let d = Duration::from_secs(32).max(self.config.t1x64());
                    self.timers.set(Timer::D, now + d);
                    self.state = State::Invite(Completed);
                }
            }
            (Accepted, 200..=299) => self.events.push(Event::Response(resp)),
            (Completed, 300..) => {
                if let Some(ack) = self.ack.clone() {
                    self.send(ack);
                }
            }
            _ => {}
        }
    }

    fn recv_non_invite_response(
        &mut self,
        now: Instant,
        s: NonInviteState,
        status: u16,
        resp: SipMessage,
    ) {
        use NonInviteState::*;
        match (s, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = State::NonInvite(Proceeding);
                self.events.push(Event::Response(resp));
            }
            (Trying | Proceeding, _) => {
                self.timers.stop_all();
                self.events.push(Event::Response(resp));
                if self.reliable {
                    self.terminate();
                } else {
                    self.timers.set(Timer::K, now + self.config.t4);
                    self.state = State::NonInvite(Completed);
                }
            }
            _ => {}
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            trace!(timer = ?t, state = self.state_name(), "client transaction timer");
            match t {
                Timer::A => {
                    // 17.1.1.2: A doubles each time, without the T2 cap E and G have.
                    self.send(self.wire.clone());
                    self.interval *= 2;
                    self.timers.set(Timer::A, now + self.interval);
                }
                Timer::E => {
                    self.send(self.wire.clone());
                    self.interval = match self.state {
                        State::NonInvite(NonInviteState::Proceeding) => self.config.t2,
                        _ => (self.interval * 2).min(self.config.t2),
                    };
                    self.timers.set(Timer::E, now + self.interval);
                }
                Timer::B | Timer::F => {
                    self.events.push(Event::Timeout(t));
                    self.terminate();
                }
                Timer::D | Timer::K | Timer::M => self.terminate(),
                Timer::G | Timer::H | Timer::I | Timer::J | Timer::L => {}
            }
        }
    }

    /// The transport failed to send for this transaction (17.1.4): tells the TU and terminates.
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
