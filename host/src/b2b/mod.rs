//! The back-to-back bridge: the call registry and dispatcher, and one actor per call owning both
//! legs, their transactions and the call's plugin instances, run in place by the task that received
//! its message.
//!
//! Messages reach a call by a hash lookup on the Call-ID (the A leg's, as the caller chose it, and the
//! B leg's, which the gateway chose); there is no task or channel per transaction. Out-of-dialog
//! requests that need no call (OPTIONS, unknown dialogs, methods we do not serve) are answered here,
//! statelessly.

mod actor;
mod call;
pub(crate) mod headers;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use callgate_sip::TransportKind;
use callgate_sip::message::{Method, SipMessage, build_response, new_tag};
use callgate_sip::transaction::{KeyOf, TimerConfig, TransactionKey};
use callgate_sip::transport::{
    Incoming, TcpConfig, TcpTransport, UdpTransport, response_destination,
};
use tracing::{debug, warn};

use self::actor::{Actor, Undelivered};
use crate::cdr::CdrWriter;
use crate::config::{Config, TransferDefault};
use crate::metrics::Metrics;
use crate::plugin::{Chain, ControlSupport};

/// Methods the gateway serves, for Allow headers.
pub(crate) const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY, MESSAGE";

/// How many messages may wait for one call actor before more are dropped (UDP peers retransmit).
const CALL_QUEUE: usize = 64;

/// What the call layer needs from the config, resolved once.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub sip_timers: TimerConfig,
    pub no_provisional: Duration,
    pub no_final: Duration,
    pub no_ack: Duration,
    pub default_route: Option<String>,
    pub transfer_default: TransferDefault,
    pub transfer_reject_status: u16,
    /// `host:port` written in our Via headers.
    pub sent_by: String,
    /// Our Contact value.
    pub contact: String,
    pub support: ControlSupport,
}

/// Both transports, for sending from any task.
#[derive(Clone)]
pub(crate) struct Net {
    udp: UdpTransport,
    tcp: Option<TcpTransport>,
}

impl Net {
    /// Sends without waiting: UDP at once, TCP on a task of its own (a stream write may wait).
    pub fn send(&self, kind: TransportKind, dest: SocketAddr, bytes: Bytes) {
        match (kind, &self.tcp) {
            (TransportKind::Tcp, Some(tcp)) => {
                let tcp = tcp.clone();
                tokio::spawn(async move {
                    if let Err(e) = tcp.send(bytes, dest).await {
                        debug!(%dest, error = %e, "tcp send failed");
                    }
                });
            }
            _ => {
                if let Err(e) = self.udp.try_send(&bytes, dest) {
                    debug!(%dest, error = %e, "udp send failed");
                }
            }
        }
    }
}

/// An incoming message for a call: ~80 bytes since a message is an `Arc`, so it is queued by value
/// (boxed, it cost an allocation per message).
pub(crate) type Inbound = Incoming;

/// Where the registry sends a Call-ID's messages.
#[derive(Clone)]
enum Route {
    /// The call's actor.
    Live(Arc<Actor>),
    /// A call that ended and whose actor is gone: what is left of it answers retransmissions.
    Ended(Arc<Echoes>),
}

/// What a finished call still owes its peers once its transactions only absorb retransmissions
/// (RFC 3261 17: a lost final response makes the peer retransmit its request; a lost ACK makes the
/// callee retransmit its final response). Held for [`LINGER`] instead of the whole call actor:
/// ~2 KB with its registry entries (40,000 calls at 4,000 calls/s, all within one LINGER, grew the
/// gateway by 77 MB), where the actor, its queue, both INVITEs and its
/// transactions were ~26 KiB and woke up for each transaction timer.
pub(crate) struct Echoes {
    /// Requests the call answered: a retransmission gets the same answer again (`None`: absorbed).
    pub answers: Vec<Echo>,
    /// The B-leg INVITE's key and our ACK: a retransmitted final response gets the ACK again.
    pub b_ack: Option<(TransactionKey, Bytes, SocketAddr)>,
}

/// One server transaction's last answer.
pub(crate) struct Echo {
    pub key: TransactionKey,
    pub response: Option<Bytes>,
    pub dest: SocketAddr,
    pub transport: TransportKind,
}

/// How long a finished call answers retransmissions (as an actor, or once retired as [`Echoes`]).
/// The transactions' own timers would keep it 32 s (64*T1: Timers J, L, M); a peer that still
/// retransmits after 10 s has lost five copies in a row, and a late one then gets 481 (or is
/// dropped), which ends its dialog too. 32 s of whole actors at 4,000 calls/s would be 128,000.
pub(crate) const LINGER: Duration = Duration::from_secs(10);

/// The Call-ID registry: live calls and the echoes of ended ones, which expire in the order they
/// were added (all linger equally long).
#[derive(Default)]
struct Registry {
    routes: HashMap<String, Route, foldhash::fast::RandomState>,
    ended: VecDeque<(Instant, Arc<Echoes>, Vec<String>)>,
}

impl Registry {
    /// Drops the echoes whose time is up (unless their Call-ID was taken by a new call since).
    fn expire(&mut self, now: Instant) {
        while let Some((until, _, _)) = self.ended.front()
            && *until <= now
        {
            let Some((_, echoes, ids)) = self.ended.pop_front() else {
                break;
            };
            for id in ids {
                if let Some(Route::Ended(e)) = self.routes.get(&id)
                    && Arc::ptr_eq(e, &echoes)
                {
                    self.routes.remove(&id);
                }
            }
        }
    }
}

pub(crate) struct Shared {
    pub settings: Settings,
    pub chain: ArcSwap<Chain>,
    calls: Mutex<Registry>,
    net: std::sync::OnceLock<Net>,
    next_ref: AtomicU64,
    pub metrics: Arc<Metrics>,
    pub cdr: Option<CdrWriter>,
}

impl Shared {
    pub fn net(&self) -> &Net {
        self.net
            .get()
            .expect("transports bound before any message arrives")
    }

    /// Removes a finished call's Call-IDs from the registry.
    pub fn unregister(&self, call_ids: &[&str]) {
        if let Ok(mut reg) = self.calls.lock() {
            for id in call_ids {
                reg.routes.remove(*id);
            }
        }
    }

    /// Registers another Call-ID (the B leg's) for a call.
    pub fn register(&self, call_id: &str, actor: Arc<Actor>) {
        if let Ok(mut reg) = self.calls.lock() {
            reg.routes.insert(call_id.to_string(), Route::Live(actor));
        }
    }

    /// Hands an ended call's Call-IDs over to its echoes: from now on the registry answers its
    /// retransmissions and the actor may stop.
    pub fn retire(&self, call_ids: Vec<String>, echoes: Echoes, now: Instant) -> Arc<Echoes> {
        let echoes = Arc::new(echoes);
        if let Ok(mut reg) = self.calls.lock() {
            reg.expire(now);
            for id in &call_ids {
                let ended = Route::Ended(echoes.clone());
                // The call registered its ids when it began: replace in place, no new key.
                match reg.routes.get_mut(id.as_str()) {
                    Some(r) => *r = ended,
                    None => {
                        reg.routes.insert(id.clone(), ended);
                    }
                }
            }
            reg.ended
                .push_back((now + LINGER, echoes.clone(), call_ids));
        }
        echoes
    }

    /// Drops expired echoes; for an idle gateway, where no call retires to do it.
    fn expire_echoes(&self) {
        if let Ok(mut reg) = self.calls.lock() {
            reg.expire(Instant::now());
        }
    }

    fn route(&self, call_id: &str) -> Option<Route> {
        self.calls.lock().ok()?.routes.get(call_id).cloned()
    }

    /// Routes one received message and, when its call is idle, runs the call on the receiving task
    /// until it waits again (see [`actor`]). Never blocks.
    fn dispatch(self: &Arc<Self>, inc: Incoming) {
        self.metrics.message_in(&inc.msg);
        self.route_message(inc, true);
    }

    /// `retry`: a call's actor that retires hands over to its echoes between our lookup and our
    /// delivery; the delivery then finds its mailbox closed, and one more lookup finds the echoes.
    fn route_message(self: &Arc<Self>, inc: Incoming, retry: bool) {
        match self.route(inc.msg.call_id()) {
            Some(Route::Live(actor)) => match actor.deliver(inc) {
                Ok(()) => {}
                Err(Undelivered::Full) => {
                    warn!("call queue full; message dropped (the peer will retransmit)");
                }
                Err(Undelivered::Closed(inc)) if retry => self.route_message(inc, false),
                Err(Undelivered::Closed(inc)) => {
                    self.unregister(&[inc.msg.call_id()]);
                    self.out_of_dialog(inc);
                }
            },
            Some(Route::Ended(echoes)) => self.echo(&echoes, inc),
            None => self.out_of_dialog(inc),
        }
    }

    /// A message for a call that has ended: a retransmission gets what it got before; anything
    /// else is treated as if the call were unknown.
    pub fn echo(self: &Arc<Self>, echoes: &Echoes, inc: Incoming) {
        let msg = &inc.msg;
        if msg.is_request() {
            if msg.method() == Some(&Method::Ack) {
                return; // the ACK of a final we answered (or a late one): nothing to do
            }
            let key = KeyOf::request(msg);
            if let Some(e) = echoes.answers.iter().find(|e| e.key.matches(key)) {
                if let Some(bytes) = &e.response {
                    debug!(
                        call_id = msg.call_id(),
                        "retransmission after the call ended; answering again"
                    );
                    self.metrics.retransmission();
                    self.net().send(e.transport, e.dest, bytes.clone());
                }
                return;
            }
            return self.out_of_dialog(inc);
        }
        if let Some((key, ack, dest)) = &echoes.b_ack
            && key.matches(KeyOf::response(msg))
            && msg.status().is_some_and(|s| s >= 200)
        {
            debug!(
                call_id = msg.call_id(),
                "final response retransmitted after the call ended; ACKing again"
            );
            self.net().send(TransportKind::Udp, *dest, ack.clone());
            return;
        }
        debug!(
            call_id = msg.call_id(),
            "response for an ended call dropped"
        );
    }

    fn out_of_dialog(self: &Arc<Self>, inc: Incoming) {
        let msg = &inc.msg;
        if !msg.is_request() {
            debug!(
                call_id = msg.call_id(),
                "response for no known call dropped"
            );
            return;
        }
        let method = msg.method().cloned().unwrap_or(Method::Ack);
        let in_dialog = msg.to_tag().is_some();
        match method {
            Method::Invite if !in_dialog => self.new_call(inc),
            Method::Ack => debug!(call_id = msg.call_id(), "ACK for no known call dropped"),
            Method::Options if !in_dialog => self.reply(
                &inc,
                200,
                &[("Allow", ALLOW), ("Accept", "application/sdp")],
            ),
            Method::Register | Method::Subscribe | Method::Publish | Method::Message
                if !in_dialog =>
            {
                self.reply(&inc, 405, &[("Allow", ALLOW)])
            }
            _ => self.reply(&inc, 481, &[]),
        }
    }

    /// Answers a request statelessly (no call, no transaction: a retransmission gets the same answer).
    pub fn reply(&self, inc: &Incoming, status: u16, extra: &[(&str, &str)]) {
        let tag = new_tag();
        let to_tag = (status > 100).then_some(tag.as_str());
        match build_response(
            &inc.msg,
            status,
            headers::reason_phrase(status),
            extra,
            to_tag,
            None,
        ) {
            Ok(r) => {
                let dest = response_destination(&inc.msg, inc.source, inc.transport);
                self.metrics.response_out(status);
                debug!(%dest, status, "stateless response\n{}", String::from_utf8_lossy(r.bytes()));
                self.net().send(inc.transport, dest, r.bytes().clone());
            }
            Err(e) => debug!(error = %e, "could not answer"),
        }
    }

    fn new_call(self: &Arc<Self>, inc: Incoming) {
        let call_ref = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let call_id = inc.msg.call_id().to_string();
        let shared = self.clone();
        let actor = Actor::new(CALL_QUEUE, move |mailbox, me| {
            call::run(shared, call_ref, inc, me, mailbox)
        });
        self.register(&call_id, actor.clone());
        actor.run_here();
    }
}

/// A running gateway: transports bound, calls served until it is dropped.
pub struct Gateway {
    shared: Arc<Shared>,
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.sweeper.abort();
        // The UDP receive thread's handler holds the shared state, which holds the transport, and
        // the registry holds the actors of calls in progress, whose futures hold the shared state:
        // without these the thread and every such call would keep the gateway alive.
        self.shared.net().udp.close();
        if let Ok(mut reg) = self.shared.calls.lock() {
            reg.routes.clear();
            reg.ended.clear();
        }
    }
}

impl Gateway {
    /// Binds the transports and starts serving calls through `chain`.
    pub async fn start(
        config: &Config,
        chain: Chain,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let cdr = match &config.cdr.path {
            Some(p) => Some(CdrWriter::open(p)?),
            None => None,
        };
        let placeholder = Settings {
            sip_timers: config.timers.sip(),
            no_provisional: Duration::from_millis(config.timers.no_provisional_ms),
            no_final: Duration::from_millis(config.timers.no_final_ms),
            no_ack: Duration::from_millis(config.timers.no_ack_ms),
            default_route: config.routing.default_route.clone(),
            transfer_default: config.transfer.default,
            transfer_reject_status: config.transfer.reject_status,
            sent_by: String::new(),
            contact: String::new(),
            support: ControlSupport {
                hang_up: true,
                ..Default::default()
            },
        };
        // The handler needs the shared state and the shared state needs the bound address: bind
        // with a handler that reads the state through a cell filled right after.
        let cell: Arc<std::sync::OnceLock<Arc<Shared>>> = Arc::new(std::sync::OnceLock::new());
        let handler: callgate_sip::transport::Handler = {
            let cell = cell.clone();
            Arc::new(move |inc: Incoming| {
                if let Some(s) = cell.get() {
                    s.dispatch(inc);
                }
            })
        };
        let udp = UdpTransport::bind(
            config.listen.udp,
            config.threads.udp_receivers(),
            handler.clone(),
        )?;
        let udp_addr = udp.local_addr();
        let tcp = match config.listen.tcp {
            Some(addr) => Some(TcpTransport::bind(addr, handler, TcpConfig::default()).await?),
            None => None,
        };
        let tcp_addr = tcp.as_ref().map(|t| t.local_addr());
        let sent_by = config
            .listen
            .advertise
            .clone()
            .unwrap_or_else(|| udp_addr.to_string());
        let mut settings = placeholder;
        settings.contact = format!("<sip:callgate@{sent_by}>");
        settings.sent_by = sent_by;
        let shared = Arc::new(Shared {
            settings,
            chain: ArcSwap::from_pointee(chain),
            calls: Mutex::new(Registry::default()),
            net: std::sync::OnceLock::new(),
            next_ref: AtomicU64::new(1),
            metrics,
            cdr,
        });
        let _ = shared.net.set(Net { udp, tcp });
        let _ = cell.set(shared.clone());
        let sweeper = {
            let shared = Arc::downgrade(&shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(shared) = shared.upgrade() else {
                        break;
                    };
                    shared.expire_echoes();
                }
            })
        };
        tracing::info!(udp = %udp_addr, tcp = ?tcp_addr, "gateway listening");
        Ok(Self {
            shared,
            udp_addr,
            tcp_addr,
            sweeper,
        })
    }

    /// The bound UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// The bound TCP address, if TCP is on.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Replaces the plugin chain: new calls get the new one, calls in flight keep theirs.
    pub fn set_chain(&self, chain: Chain) {
        self.shared.chain.store(Arc::new(chain));
    }

    /// The current plugin chain.
    pub fn chain(&self) -> Arc<Chain> {
        self.shared.chain.load_full()
    }

    /// A function replacing the chain, for reloads.
    pub fn chain_sink(&self) -> impl Fn(Chain) + Send + Sync + 'static {
        let shared = self.shared.clone();
        move |chain| shared.chain.store(Arc::new(chain))
    }

    /// A function returning the current chain, for the metrics endpoint.
    pub fn chain_source(&self) -> impl Fn() -> Arc<Chain> + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.chain.load_full()
    }

    /// Call-IDs in the registry (calls in progress, and ended ones still answering retransmissions).
    pub fn calls_in_registry(&self) -> usize {
        self.shared
            .calls
            .lock()
            .map(|c| c.routes.len())
            .unwrap_or(0)
    }
}

/// A `SipMessage` that failed to be relayed because building it failed: the peer's input was odd.
pub(crate) fn log_build_error(what: &str, e: &dyn std::fmt::Display) {
    warn!("could not build {what}: {e}");
}

/// Bytes of a message for debug logs.
pub(crate) fn show(msg: &SipMessage) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(msg.as_bytes())
}
