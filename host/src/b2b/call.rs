//! One call: an actor that owns the A leg (where the gateway is the UAS), the B leg (where it is
//! the UAC), every transaction of both, and the call's plugin instances.
//!
//! The actor is fed by its mailbox (messages the dispatcher routed here by Call-ID, usually handled
//! in place on the receiving task: see [`super::actor`]) and by one timer
//! re-armed to the earliest deadline of its transactions and call timers. After every input it drains
//! each transaction's `poll_transmit` and `poll_event` (the order the sans-IO layer documents) and
//! reacts to the events; plugin hooks run inline, so a call's messages are handled strictly in the
//! order they arrived (a 180 is never relayed after the 200 that followed it).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callgate_sip::TransportKind;
use callgate_sip::dialog::Dialog;
use callgate_sip::message::{
    Method, OutgoingResponse, RequestBuilder, SipMessage, build_cancel, build_response,
    new_call_id, new_tag,
};
use callgate_sip::transaction::{ClientTransaction, Event, KeyOf, ServerTransaction, Transmit};
use callgate_sip::transport::response_destination;
use tracing::{Instrument, debug, info, warn};

use super::actor::{Actor, Mailbox};
use super::headers::{self, Pairs, apply_edits, end_to_end, reason_phrase, without_tag};
use super::{Echo, Echoes, Inbound, LINGER, Shared, show};
use crate::cdr::CallRecord;
use crate::config::TransferDefault;
use crate::plugin::CallPlugins;
use crate::plugin::decision::{
    CallCommand, CallInfo, CallOutcome, CallSummary, Forward, Header, HeaderEdits, HeaderView,
    Initiator, InviteDecision, Leg, ReferDecision, RequestView, ResponseView, TransferRequest,
};
use crate::plugin::stats::Hook;

pub(crate) async fn run(
    shared: Arc<Shared>,
    call_ref: u64,
    first: Inbound,
    me: Weak<Actor>,
    mut rx: Mailbox,
) {
    let span = tracing::info_span!("call", call_ref, call_id = %first.msg.call_id());
    async move {
        let now = Instant::now();
        let a_call_id = first.msg.call_id().to_string();
        let Some(mut call) = Call::new(shared.clone(), call_ref, first, me, now) else {
            shared.unregister(&[&a_call_id]);
            return;
        };
        // The handlers' futures are boxed while they run: inline, the largest (flush, ~3 KiB)
        // would stay part of every call's task for its whole life, lingering included, where the
        // call itself is 4 KiB.
        Box::pin(async {
            call.start(now).await;
            call.after_hooks(Instant::now()).await;
            call.flush(Instant::now()).await;
        })
        .await;
        // One timer for the call's life, moved when its next deadline moves: a new `Sleep` per
        // event was a timer-wheel insertion and removal each time.
        let sleep = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            if call.finished(now) {
                call.close();
                break;
            }
            if let Some(echoes) = call.echoes() {
                call.retire(now, echoes, &mut rx);
                break;
            }
            let deadline = call.next_deadline();
            if let Some(d) = deadline.map(tokio::time::Instant::from_std)
                && sleep.deadline() != d
            {
                sleep.as_mut().reset(d);
            }
            // One box per event, holding the handler and the flush after it: a box is a copy of the
            // future's full size (~3 KiB with flush) into a fresh allocation.
            tokio::select! {
                m = rx.recv() => match m {
                    Some(inb) => Box::pin(async {
                        call.on_message(Instant::now(), inb).await;
                        call.flush(Instant::now()).await;
                    })
                    .await,
                    None => break,
                },
                () = &mut sleep, if deadline.is_some() => Box::pin(async {
                    call.on_timeout(Instant::now()).await;
                    call.flush(Instant::now()).await;
                })
                .await,
            }
        }
    }
    .instrument(span)
    .await
}

/// Which transaction an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxnRef {
    AInvite,
    BInvite,
    Other(u32),
}

/// Why the gateway runs a transaction besides the two INVITEs.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// A request the gateway answered itself (BYE, CANCEL, a refused REFER).
    Local,
    /// The other leg's copy of the request in server transaction `server`.
    RelayOf(u32),
    /// Our CANCEL of the B-leg INVITE.
    Cancel,
    /// Our BYE.
    Bye,
}

enum TxnKind {
    Server(ServerTransaction),
    Client(ClientTransaction),
}

struct Txn {
    /// True once the request went out once (later copies are retransmissions).
    sent: bool,
    id: u32,
    leg: Leg,
    purpose: Purpose,
    kind: TxnKind,
    transport: TransportKind,
}

/// Our 2xx to an INVITE, retransmitted until the ACK (RFC 3261 13.3.1.4): the transaction layer
/// leaves this to the TU.
struct Pending2xx {
    leg: Leg,
    cseq: u32,
    bytes: Bytes,
    dest: SocketAddr,
    transport: TransportKind,
    interval: Duration,
    next: Instant,
}

struct ALeg {
    invite: SipMessage,
    txn: ServerTransaction,
    source: SocketAddr,
    transport: TransportKind,
    resp_dest: SocketAddr,
    /// Our To tag.
    tag: String,
    dialog: Option<Dialog>,
    final_sent: bool,
    acked: bool,
}

struct BLeg {
    call_id: String,
    invite: SipMessage,
    txn: ClientTransaction,
    dest: SocketAddr,
    provisional: bool,
    /// True once the INVITE went out once.
    invite_sent: bool,
    dialog: Option<Dialog>,
    /// The ACK we sent for B's 2xx, re-sent if B retransmits its 2xx.
    ack: Option<Bytes>,
    /// CANCEL as soon as a provisional arrives (RFC 3261 9.1 forbids it before).
    cancel_pending: bool,
    cancelled: bool,
    bye_sent: bool,
}

struct End {
    at: Instant,
}

struct Timers {
    no_provisional: Option<Instant>,
    no_final: Option<Instant>,
    no_ack: Option<Instant>,
}

struct Call {
    shared: Arc<Shared>,
    call_ref: u64,
    /// The call's own actor, for registering the B leg's Call-ID.
    me: Weak<Actor>,
    started: Instant,
    a: ALeg,
    b: Option<BLeg>,
    plugins: Option<CallPlugins>,
    plugin_names: Vec<String>,
    /// Headers plugins asked for on every response sent back on A.
    a_response_headers: Arc<[Header]>,
    txns: Vec<Txn>,
    next_txn: u32,
    pending_2xx: Vec<Pending2xx>,
    timers: Timers,
    answered_at: Option<Instant>,
    end: Option<End>,
    a_bye_sent: bool,
    b_target: Option<String>,
    /// An end decided in synchronous code, recorded by the next `after_hooks`.
    pending_end: Option<(CallOutcome, u16, String, Initiator)>,
}

impl Call {
    fn new(
        shared: Arc<Shared>,
        call_ref: u64,
        first: Inbound,
        me: Weak<Actor>,
        now: Instant,
    ) -> Option<Self> {
        let settings = &shared.settings;
        let resp_dest = response_destination(&first.msg, first.source, first.transport);
        let txn = match ServerTransaction::new(
            first.msg.clone(),
            resp_dest,
            first.transport,
            settings.sip_timers,
        ) {
            Ok(t) => t,
            Err(e) => {
                debug!(error = %e, "INVITE refused by the transaction layer");
                shared.reply(&first, 400, &[]);
                return None;
            }
        };
        debug!(leg = "a", source = %first.source, "INVITE in\n{}", show(&first.msg));
        Some(Self {
            shared,
            call_ref,
            me,
            started: now,
            a: ALeg {
                invite: first.msg,
                txn,
                source: first.source,
                transport: first.transport,
                resp_dest,
                tag: new_tag(),
                dialog: None,
                final_sent: false,
                acked: false,
            },
            b: None,
            plugins: None,
            plugin_names: Vec::new(),
            a_response_headers: Arc::new([]),
            txns: Vec::new(),
            next_txn: 1,
            pending_2xx: Vec::new(),
            timers: Timers {
                no_provisional: None,
                no_final: None,
                no_ack: None,
            },
            answered_at: None,
            end: None,
            a_bye_sent: false,
            b_target: None,
            pending_end: None,
        })
    }

    // ---- call set-up ----

    async fn start(&mut self, now: Instant) {
        self.shared.metrics.call_started();
        let invite = self.a.invite.clone();
        if invite.max_forwards() == Some(0) {
            return self.reject_a(
                now,
                483,
                None,
                &[],
                "Max-Forwards exhausted",
                Initiator::Gateway,
            );
        }
        let ours = &self.shared.settings.sent_by;
        if invite
            .vias()
            .skip(1)
            .chain(invite.vias().take(1))
            .any(|v| via_sent_by(v) == ours)
        {
            return self.reject_a(
                now,
                482,
                None,
                &[],
                "loop: our own Via in the INVITE",
                Initiator::Gateway,
            );
        }
        if invite
            .content_type()
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/sdp"))
            && let Err(why) = callgate_sip::message::check_sdp(&invite.body())
        {
            // The gateway relays SDP unchanged; refusing garbage here keeps it from the callee.
            let warning = Header::new(
                "Warning",
                format!("399 callgate \"{}\"", why.replace('"', "'")),
            );
            return self.reject_a(
                now,
                488,
                None,
                &[warning],
                "unusable SDP offer",
                Initiator::Gateway,
            );
        }
        self.send_a(now, 100, None, Vec::new(), None);

        let chain = self.shared.chain.load_full();
        let info = CallInfo {
            call_ref: self.call_ref,
            call_id: invite.call_id().to_string(),
            b_call_id: None,
            from: invite.from_uri().to_string(),
            to: invite.to_uri().to_string(),
            request_uri: invite.request_uri().unwrap_or_default().to_string(),
            source: format!("{}:{}", transport_name(self.a.transport), self.a.source),
        };
        let mut plugins = match chain.start_call(info, self.shared.settings.support) {
            Ok(p) => p,
            Err(_) => {
                return self.reject_a(
                    now,
                    503,
                    None,
                    &[Header::new("Retry-After", "5")],
                    "plugin instance pool exhausted",
                    Initiator::Gateway,
                );
            }
        };
        self.plugin_names = plugins.plugin_names();
        let outcome = if plugins.wants(Hook::Invite) {
            plugins.on_invite(&request_view(&invite)).await
        } else {
            crate::plugin::InviteOutcome {
                decision: InviteDecision::Forward(Forward::default()),
                decided_by: None,
            }
        };
        self.plugins = Some(plugins);
        let now = Instant::now();
        match outcome.decision {
            InviteDecision::Reject(r) => {
                let why = format!(
                    "rejected by plugin {}",
                    outcome.decided_by.as_deref().unwrap_or("?")
                );
                self.reject_a(now, r.status, r.reason, &r.headers, &why, Initiator::Plugin);
            }
            InviteDecision::Redirect(r) => {
                let mut hs = r.headers.clone();
                hs.extend(
                    r.contacts
                        .iter()
                        .map(|c| Header::new("Contact", format!("<{c}>"))),
                );
                self.send_a(now, r.status, None, to_pairs(&hs), None);
                self.finish(
                    CallOutcome::Redirected,
                    r.status,
                    "redirected by plugin".into(),
                    Initiator::Plugin,
                )
                .await;
            }
            InviteDecision::Forward(f) => self.forward(now, f).await,
        }
        self.after_hooks(Instant::now()).await;
    }

    async fn forward(&mut self, now: Instant, mut f: Forward) {
        let settings = &self.shared.settings;
        let Some(target) = f.target.clone().or_else(|| settings.default_route.clone()) else {
            return self.reject_a(
                now,
                404,
                Some("No Route".into()),
                &[],
                "no route for the call",
                Initiator::Gateway,
            );
        };
        self.a_response_headers = std::mem::take(&mut f.response_headers).into();
        if let Some(p) = self.plugins.as_mut()
            && p.wants(Hook::Recording)
            && let Some(rec) = p.recording_policy().await
        {
            // Recording needs anchored media, which this build does not do yet: say so once.
            info!(legs = ?rec.legs, start = ?rec.start, "recording requested; media anchoring is not available yet, so nothing is recorded");
        }
        if let Some(p) = self.plugins.as_mut() {
            p.setup_done();
        }
        let Some(dest) = resolve(&target).await else {
            return self.reject_a(
                Instant::now(),
                480,
                None,
                &[Header::new(
                    "Reason",
                    "SIP;cause=404;text=\"B-leg target cannot be resolved\"",
                )],
                "B-leg target cannot be resolved",
                Initiator::Gateway,
            );
        };
        let invite = &self.a.invite;
        let settings = &self.shared.settings;
        let b_call_id = new_call_id(host_of(&settings.sent_by));
        let tag = new_tag();
        let from = without_tag(invite.from());
        let to = without_tag(invite.to());
        let max_fwd = invite.max_forwards().unwrap_or(70).saturating_sub(1);
        let mut extra: Pairs<'_> = Vec::new();
        for name in headers::DEFAULT_PASS_THROUGH
            .iter()
            .copied()
            .chain(f.pass_through.iter().map(String::as_str))
        {
            for v in invite.header_values(name) {
                extra.push((name.into(), v.into()));
            }
        }
        if let Some(sup) = invite.header("Supported")
            && sup
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("timer"))
        {
            extra.push(("Supported".into(), "timer".into()));
        }
        headers::add(&mut extra, &f.invite_headers);
        headers::remove(&mut extra, &f.remove_headers);
        let body = invite.body();
        let ct = invite
            .content_type()
            .unwrap_or("application/sdp")
            .to_string();
        let builder = RequestBuilder::new(Method::Invite, &target)
            .via(TransportKind::Udp.via_token(), &settings.sent_by)
            .max_forwards(max_fwd)
            .from(&from, &tag)
            .to(&to, None)
            .call_id(&b_call_id)
            .cseq(1)
            .contact(&settings.contact);
        let b_invite = match with_content(builder, &extra, &ct, &body).build() {
            Ok(m) => m,
            Err(e) => {
                super::log_build_error("the B-leg INVITE", &e);
                return self.reject_a(
                    now,
                    500,
                    None,
                    &[],
                    "could not build the B-leg INVITE",
                    Initiator::Gateway,
                );
            }
        };
        let txn = match ClientTransaction::new(
            now,
            b_invite.clone(),
            dest,
            TransportKind::Udp,
            settings.sip_timers,
        ) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "B-leg INVITE refused by the transaction layer");
                return self.reject_a(now, 500, None, &[], "B-leg transaction", Initiator::Gateway);
            }
        };
        debug!(leg = "b", %dest, "INVITE out\n{}", show(&b_invite));
        if let Some(me) = self.me.upgrade() {
            self.shared.register(&b_call_id, me);
        }
        if let Some(p) = self.plugins.as_mut() {
            p.set_b_call_id(b_call_id.clone());
        }
        self.timers.no_provisional = Some(now + settings.no_provisional);
        self.b_target = Some(target);
        self.b = Some(BLeg {
            call_id: b_call_id,
            invite: b_invite,
            txn,
            dest,
            provisional: false,
            invite_sent: false,
            dialog: None,
            ack: None,
            cancel_pending: false,
            cancelled: false,
            bye_sent: false,
        });
    }

    // ---- input ----

    async fn on_message(&mut self, now: Instant, inb: Inbound) {
        let leg = if inb.msg.call_id() == self.a.invite.call_id() {
            Leg::A
        } else {
            Leg::B
        };
        if !inb.msg.is_request() {
            debug!(
                leg = leg_name(leg),
                status = inb.msg.status(),
                "response in\n{}",
                show(&inb.msg)
            );
            return self.on_response(now, inb.msg);
        }
        let msg = inb.msg.clone();
        let method = msg.method().cloned().unwrap_or(Method::Ack);
        debug!(leg = leg_name(leg), method = %method.as_str(), "request in\n{}", show(&msg));
        let key = KeyOf::request(&msg);
        // Retransmissions and non-2xx ACKs belong to an existing server transaction.
        if leg == Leg::A
            && self.a.txn.key().matches(key)
            && (method == Method::Invite || (method == Method::Ack && !self.a_answered_2xx()))
        {
            let _ = self.a.txn.handle_message(now, msg.clone());
            return;
        }
        if method != Method::Ack
            && let Some(k) = key
            && let Some(t) = self
                .txns
                .iter_mut()
                .find(|t| matches!(&t.kind, TxnKind::Server(s) if *s.key() == k))
        {
            if let TxnKind::Server(s) = &mut t.kind {
                let _ = s.handle_message(now, msg.clone());
            }
            return;
        }
        match method {
            Method::Ack => self.on_ack(now, leg, &msg),
            Method::Cancel => self.on_cancel(now, inb).await,
            Method::Bye => self.on_bye(now, leg, inb).await,
            Method::Invite if msg.to_tag().is_none() => {
                // Same Call-ID, new branch, no tag: a merged request (RFC 3261 8.2.2.2).
                self.local_reply(now, leg, inb, 482);
            }
            _ => self.relay_request(now, leg, inb).await,
        }
    }

    fn a_answered_2xx(&self) -> bool {
        self.answered_at.is_some() && self.a.final_sent
    }

    fn on_response(&mut self, now: Instant, msg: SipMessage) {
        let Some(key) = KeyOf::response(&msg) else {
            return;
        };
        if let Some(b) = self.b.as_mut()
            && *b.txn.key() == key
        {
            {
                if b.txn.is_terminated() {
                    // B retransmits its 2xx after our INVITE transaction ended: re-ACK it.
                    if msg.status().is_some_and(|s| (200..300).contains(&s))
                        && let Some(ack) = &b.ack
                    {
                        self.shared
                            .net()
                            .send(TransportKind::Udp, b.dest, ack.clone());
                    }
                    return;
                }
                let _ = b.txn.handle_message(now, msg);
                return;
            }
        }
        for t in &mut self.txns {
            if let TxnKind::Client(c) = &mut t.kind
                && *c.key() == key
            {
                let _ = c.handle_message(now, msg);
                return;
            }
        }
        debug!("response matching no transaction dropped");
    }

    async fn on_timeout(&mut self, now: Instant) {
        self.a.txn.handle_timeout(now);
        if let Some(b) = self.b.as_mut() {
            b.txn.handle_timeout(now);
        }
        for t in &mut self.txns {
            match &mut t.kind {
                TxnKind::Server(s) => s.handle_timeout(now),
                TxnKind::Client(c) => c.handle_timeout(now),
            }
        }
        // Our 2xx retransmissions.
        let net = self.shared.net().clone();
        let t2 = self.shared.settings.sip_timers.t2;
        for p in &mut self.pending_2xx {
            if p.next <= now {
                net.send(p.transport, p.dest, p.bytes.clone());
                self.shared.metrics.retransmission();
                p.interval = (p.interval * 2).min(t2);
                p.next = now + p.interval;
            }
        }
        let due = |t: &mut Option<Instant>| t.take_if(|t| *t <= now).is_some();
        let expired = [
            (
                due(&mut self.timers.no_provisional),
                self.shared.settings.no_provisional,
                "provisional",
            ),
            (
                due(&mut self.timers.no_final),
                self.shared.settings.no_final,
                "final",
            ),
        ];
        for (_, limit, what) in expired.into_iter().filter(|e| e.0) {
            let why = format!("B leg sent no {what} response in {} s", limit.as_secs_f32());
            self.setup_timeout(now, &why, 408).await;
        }
        if self.timers.no_ack.is_some_and(|t| t <= now) {
            self.timers.no_ack = None;
            self.pending_2xx
                .retain(|p| p.leg != Leg::A || p.cseq != self.a.invite.cseq());
            let secs = self.shared.settings.no_ack.as_secs_f32();
            warn!(
                leg = "a",
                phase = "ack",
                "A leg sent no ACK for our 2xx in {secs} s; hanging up"
            );
            self.hang_up_both(now);
            self.finish(
                CallOutcome::TimedOut,
                200,
                format!("A leg sent no ACK in {secs} s"),
                Initiator::Gateway,
            )
            .await;
        }
    }

    /// A setup phase of the B leg ran out: give up on B, answer A.
    async fn setup_timeout(&mut self, now: Instant, why: &str, cause: u16) {
        if self.a.final_sent || self.end.is_some() {
            return;
        }
        warn!(leg = "b", "{why}; giving up on the B leg");
        self.cancel_b(now);
        let reason = Header::new("Reason", format!("SIP;cause={cause};text=\"{why}\""));
        self.send_a(now, 480, None, to_pairs(&[reason]), None);
        self.finish(
            CallOutcome::TimedOut,
            480,
            why.to_string(),
            Initiator::Gateway,
        )
        .await;
    }

    fn on_ack(&mut self, now: Instant, leg: Leg, ack: &SipMessage) {
        if leg == Leg::A && ack.cseq() == self.a.invite.cseq() {
            if self.a.acked {
                return;
            }
            self.a.acked = true;
            self.timers.no_ack = None;
            let cseq = ack.cseq();
            self.pending_2xx
                .retain(|p| !(p.leg == Leg::A && p.cseq == cseq));
            // End to end: B's 2xx is ACKed when A's ACK arrives (it may carry the SDP answer).
            if let Some(b) = self.b.as_mut()
                && let Some(d) = &b.dialog
                && b.ack.is_none()
            {
                let body = ack.body();
                let ct = ack.content_type().unwrap_or("application/sdp").to_string();
                let mut builder = d
                    .ack(b.invite.cseq())
                    .via(
                        TransportKind::Udp.via_token(),
                        &self.shared.settings.sent_by,
                    )
                    .contact(&self.shared.settings.contact);
                if !body.is_empty() {
                    builder = builder.body(&ct, &body);
                }
                match builder.build_bytes() {
                    Ok(bytes) => {
                        debug!(leg = "b", "ACK out\n{}", String::from_utf8_lossy(&bytes));
                        self.shared
                            .net()
                            .send(TransportKind::Udp, b.dest, bytes.clone());
                        self.shared.metrics.request_out(&Method::Ack);
                        b.ack = Some(bytes);
                    }
                    Err(e) => super::log_build_error("the B-leg ACK", &e),
                }
            }
            let _ = now;
            return;
        }
        // The ACK of one of our re-INVITE 2xx on that leg: stop retransmitting it.
        let cseq = ack.cseq();
        self.pending_2xx
            .retain(|p| !(p.leg == leg && p.cseq == cseq));
    }

    async fn on_cancel(&mut self, now: Instant, inb: Inbound) {
        let cancels_our_invite = self.a.txn.key().matches(KeyOf::cancel_target(&inb.msg));
        if !cancels_our_invite {
            return self.local_reply(now, Leg::A, inb, 481);
        }
        self.local_reply(now, Leg::A, inb, 200);
        if self.a.final_sent {
            return;
        }
        info!(leg = "a", "caller cancelled");
        self.send_a(now, 487, None, Vec::new(), None);
        self.cancel_b(now);
        self.finish(
            CallOutcome::Cancelled,
            487,
            "CANCEL from caller".into(),
            Initiator::Caller,
        )
        .await;
    }

    async fn on_bye(&mut self, now: Instant, leg: Leg, inb: Inbound) {
        let ok = match leg {
            Leg::A => self.a.dialog.is_some() || !self.a.final_sent,
            Leg::B => self.b.as_ref().is_some_and(|b| b.dialog.is_some()),
        };
        if !ok || self.end.is_some() && self.bye_already_handled(leg) {
            return self.local_reply(now, leg, inb, if ok { 200 } else { 481 });
        }
        self.local_reply(now, leg, inb, 200);
        match leg {
            Leg::A => {
                self.a_bye_sent = true; // the A dialog is over: never send BYE there.
                if self.answered_at.is_some() {
                    self.bye_b(now);
                } else {
                    // A BYE before our final answer: treat as a cancel of the whole call.
                    self.send_a_if_unanswered(now, 487);
                    self.cancel_b(now);
                }
                let outcome = if self.answered_at.is_some() {
                    CallOutcome::Answered
                } else {
                    CallOutcome::Cancelled
                };
                self.finish(outcome, 200, "BYE from caller".into(), Initiator::Caller)
                    .await;
            }
            Leg::B => {
                if let Some(b) = self.b.as_mut() {
                    b.bye_sent = true; // the B dialog is over
                }
                if self.a.final_sent {
                    self.bye_a(now);
                } else {
                    self.send_a(now, 480, None, Vec::new(), None);
                }
                self.finish(
                    CallOutcome::Answered,
                    200,
                    "BYE from callee".into(),
                    Initiator::Callee,
                )
                .await;
            }
        }
    }

    fn bye_already_handled(&self, leg: Leg) -> bool {
        match leg {
            Leg::A => self.a_bye_sent,
            Leg::B => self.b.as_ref().is_some_and(|b| b.bye_sent),
        }
    }

    /// A request inside the dialog of `leg`, relayed to the other leg (re-INVITE, UPDATE, INFO,
    /// REFER when passed, NOTIFY, MESSAGE, OPTIONS...).
    async fn relay_request(&mut self, now: Instant, leg: Leg, inb: Inbound) {
        let req = inb.msg.clone();
        let method = req.method().cloned().unwrap_or(Method::Ack);
        let from_dialog = match leg {
            Leg::A => self.a.dialog.as_mut(),
            Leg::B => self.b.as_mut().and_then(|b| b.dialog.as_mut()),
        };
        let Some(d) = from_dialog else {
            return self.local_reply(now, leg, inb, 481);
        };
        if d.recv_request(&req).is_err() {
            return self.local_reply(now, leg, inb, 500);
        }
        if method == Method::Refer {
            match self.refer_decision(leg, &req).await {
                ReferDecision::Pass => {}
                ReferDecision::Reject(status) => return self.local_reply(now, leg, inb, status),
                ReferDecision::Perform { .. } => {
                    // Transfers carried out by the gateway need the media work; refuse clearly.
                    return self.local_reply(now, leg, inb, 501);
                }
                ReferDecision::NoOpinion => unreachable!("refer_decision resolves no-opinion"),
            }
        }
        let other = other_leg(leg);
        // The settings outlive this borrow of the call: an Arc clone, not two String copies.
        let shared = self.shared.clone();
        let (sent_by, contact) = (&shared.settings.sent_by, &shared.settings.contact);
        let (to_dialog, dest, transport) = match other {
            Leg::A => (self.a.dialog.as_mut(), self.a.source, self.a.transport),
            Leg::B => match self.b.as_mut() {
                Some(b) => (b.dialog.as_mut(), b.dest, TransportKind::Udp),
                None => (None, self.a.source, TransportKind::Udp),
            },
        };
        let Some(to_dialog) = to_dialog else {
            return self.local_reply(now, leg, inb, 481);
        };
        let extra = end_to_end(&req);
        let body = req.body();
        let ct = req
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        let builder = to_dialog
            .request(method.clone())
            .via(transport.via_token(), sent_by)
            .contact(contact);
        let out = match with_content(builder, &extra, &ct, &body).build() {
            Ok(m) => m,
            Err(e) => {
                super::log_build_error("a relayed request", &e);
                return self.local_reply(now, leg, inb, 500);
            }
        };
        let dest = dest_of(to_dialog, dest);
        let server = match ServerTransaction::new(
            req,
            response_destination(&inb.msg, inb.source, inb.transport),
            inb.transport,
            self.shared.settings.sip_timers,
        ) {
            Ok(s) => s,
            Err(_) => return,
        };
        let client = match ClientTransaction::new(
            now,
            out.clone(),
            dest,
            transport,
            self.shared.settings.sip_timers,
        ) {
            Ok(c) => c,
            Err(_) => return,
        };
        debug!(leg = leg_name(other), method = %method.as_str(), "request out\n{}", show(&out));
        self.shared.metrics.request_out(&method);
        let sid = self.add_txn(leg, Purpose::Local, TxnKind::Server(server), inb.transport);
        self.add_txn(
            other,
            Purpose::RelayOf(sid),
            TxnKind::Client(client),
            transport,
        );
    }

    /// The chain's (or the config's) answer to a REFER.
    async fn refer_decision(&mut self, leg: Leg, req: &SipMessage) -> ReferDecision {
        let mut decision = ReferDecision::NoOpinion;
        if let Some(p) = self.plugins.as_mut()
            && p.wants(Hook::Refer)
        {
            let refer_to = req.header("Refer-To").unwrap_or_default();
            let tr = TransferRequest {
                refer_to: headers::uri_of(refer_to)
                    .split('?')
                    .next()
                    .unwrap_or("")
                    .to_string(),
                referred_by: req
                    .header("Referred-By")
                    .map(|v| headers::uri_of(v).to_string()),
                replaces: refer_to
                    .split_once("Replaces=")
                    .map(|(_, r)| r.split(['&', '>']).next().unwrap_or("").to_string()),
                headers: view_headers(req),
            };
            decision = p.on_refer(leg, &tr).await;
        }
        if decision == ReferDecision::NoOpinion {
            decision = match self.shared.settings.transfer_default {
                TransferDefault::Pass => ReferDecision::Pass,
                TransferDefault::Reject => {
                    ReferDecision::Reject(self.shared.settings.transfer_reject_status)
                }
            };
        }
        decision
    }

    // ---- events ----

    /// Drains every transaction (transmits, then events) and reacts to events until nothing is left.
    async fn flush(&mut self, now: Instant) {
        loop {
            let events = self.drain();
            if events.is_empty() {
                break;
            }
            for (r, e) in events {
                self.on_event(now, r, e).await;
            }
            self.after_hooks(now).await;
        }
        self.txns.retain(|t| match &t.kind {
            TxnKind::Server(s) => !s.is_terminated(),
            TxnKind::Client(c) => !c.is_terminated(),
        });
    }

    fn drain(&mut self) -> Vec<(TxnRef, Event)> {
        let net = self.shared.net().clone();
        let metrics = self.shared.metrics.clone();
        let mut events = Vec::new();
        // A transmit carrying a client's request again, or a server's response again, after the
        // first is a retransmission.
        let send = |t: Transmit, kind: TransportKind, sent: &mut u32| {
            if *sent > 0 {
                metrics.retransmission();
            }
            *sent += 1;
            net.send(kind, t.dest, t.bytes);
        };
        while let Some(t) = self.a.txn.poll_transmit() {
            net.send(self.a.transport, t.dest, t.bytes);
        }
        while let Some(e) = self.a.txn.poll_event() {
            events.push((TxnRef::AInvite, e));
        }
        if let Some(b) = self.b.as_mut() {
            let first = b.invite.wire_bytes();
            while let Some(t) = b.txn.poll_transmit() {
                let mut sent = u32::from(t.bytes == first && b.invite_sent);
                b.invite_sent = true;
                send(t, TransportKind::Udp, &mut sent);
            }
            while let Some(e) = b.txn.poll_event() {
                events.push((TxnRef::BInvite, e));
            }
        }
        for t in &mut self.txns {
            match &mut t.kind {
                TxnKind::Server(s) => {
                    while let Some(x) = s.poll_transmit() {
                        net.send(t.transport, x.dest, x.bytes);
                    }
                    while let Some(e) = s.poll_event() {
                        events.push((TxnRef::Other(t.id), e));
                    }
                }
                TxnKind::Client(c) => {
                    let first = c.request().wire_bytes();
                    while let Some(x) = c.poll_transmit() {
                        let mut sent = u32::from(x.bytes == first && t.sent);
                        t.sent = true;
                        send(x, t.transport, &mut sent);
                    }
                    while let Some(e) = c.poll_event() {
                        events.push((TxnRef::Other(t.id), e));
                    }
                }
            }
        }
        events
    }

    async fn on_event(&mut self, now: Instant, r: TxnRef, e: Event) {
        match (r, e) {
            (TxnRef::BInvite, Event::Response(resp)) => self.on_b_invite_response(now, resp).await,
            (TxnRef::BInvite, Event::Timeout(_)) => {
                self.b_failed(now, 408, "B leg did not answer the INVITE (timer B)")
                    .await
            }
            (TxnRef::BInvite, Event::TransportError) => {
                self.b_failed(now, 503, "B leg unreachable (transport error)")
                    .await
            }
            (TxnRef::AInvite, Event::Timeout(_)) => {
                debug!(leg = "a", "no ACK for our final error response (timer H)");
            }
            (TxnRef::AInvite, _) => {}
            (TxnRef::Other(id), ev) => self.on_other_event(now, id, ev).await,
        }
    }

    async fn on_b_invite_response(&mut self, now: Instant, resp: SipMessage) {
        let status = resp.status().unwrap_or(500);
        let Some(b) = self.b.as_mut() else { return };
        if status < 200 {
            b.provisional = true;
            self.timers.no_provisional = None;
            if self.timers.no_final.is_none() && self.end.is_none() {
                self.timers.no_final = Some(now + self.shared.settings.no_final);
            }
            if b.cancel_pending {
                self.cancel_b(now);
                return;
            }
            if status == 100 || self.a.final_sent {
                return;
            }
            self.relay_b_response_to_a(now, &resp).await;
            return;
        }
        self.timers.no_provisional = None;
        self.timers.no_final = None;
        if status < 300 {
            if b.dialog.is_none() {
                match Dialog::uac(&b.invite, &resp) {
                    Ok(d) => b.dialog = Some(d),
                    Err(e) => warn!(error = %e, "B-leg 2xx does not make a dialog"),
                }
            }
            if let Some(ack) = &b.ack {
                self.shared
                    .net()
                    .send(TransportKind::Udp, b.dest, ack.clone());
                return;
            }
            if self.answered_at.is_some() && self.end.is_none() {
                // A retransmitted 2xx before the caller's ACK arrived: B is ACKed end to end when it
                // does, and our own 2xx to A is being retransmitted meanwhile.
                return;
            }
            if self.a.final_sent || self.end.is_some() {
                // The caller is gone (CANCEL raced this 2xx, or a timeout): ACK and BYE the B leg.
                info!(leg = "b", "2xx after the caller left: ACK and BYE");
                self.ack_b_locally(now);
                self.bye_b(now);
                return;
            }
            self.answered_at = Some(now);
            self.relay_b_response_to_a(now, &resp).await;
            self.timers.no_ack = Some(now + self.shared.settings.no_ack);
            self.shared.metrics.call_answered();
            return;
        }
        // A non-2xx final: the transaction ACKs it.
        if self.a.final_sent || self.end.is_some() {
            return;
        }
        let (mapped, text) = map_b_failure(status);
        if mapped != status {
            let reason = format!(
                "SIP;cause={status};text=\"{}\"",
                resp.reason().unwrap_or("")
            );
            let mut edits = self.response_edits(Leg::B, "INVITE", &resp).await;
            edits.add.push(Header::new("Reason", reason));
            let rh = self.a_response_headers.clone();
            let mut pairs = to_pairs(&rh);
            apply_edits(&mut pairs, &edits);
            self.send_a(now, mapped, Some(text.to_string()), pairs, None);
        } else {
            self.relay_b_response_to_a(now, &resp).await;
        }
        let outcome = if (300..400).contains(&status) {
            CallOutcome::Redirected
        } else {
            CallOutcome::Rejected
        };
        self.finish(
            outcome,
            mapped,
            format!("B leg answered {status}"),
            Initiator::Callee,
        )
        .await;
    }

    async fn b_failed(&mut self, now: Instant, cause: u16, why: &str) {
        if self.a.final_sent || self.end.is_some() {
            return;
        }
        warn!(
            leg = "b",
            phase = if self.b.as_ref().is_some_and(|b| b.provisional) {
                "final"
            } else {
                "provisional"
            },
            "{why}"
        );
        let reason = Header::new("Reason", format!("SIP;cause={cause};text=\"{why}\""));
        let rh = self.a_response_headers.clone();
        let mut pairs = to_pairs(&rh);
        pairs.push((reason.name.into(), reason.value.into()));
        self.send_a(now, 480, None, pairs, None);
        let outcome = if cause == 408 {
            CallOutcome::TimedOut
        } else {
            CallOutcome::Failed
        };
        self.finish(outcome, 480, why.to_string(), Initiator::Gateway)
            .await;
    }

    /// The header edits of the chain for a response arriving on `leg`.
    async fn response_edits(&mut self, leg: Leg, method: &str, resp: &SipMessage) -> HeaderEdits {
        match self.plugins.as_mut() {
            Some(p) if p.wants(Hook::Response) => {
                p.on_response(leg, method, &response_view(resp)).await
            }
            _ => HeaderEdits::default(),
        }
    }

    /// Relays B's response to the A-leg INVITE: its end-to-end headers and body, plugin headers.
    async fn relay_b_response_to_a(&mut self, now: Instant, resp: &SipMessage) {
        let status = resp.status().unwrap_or(500);
        let mut pairs = end_to_end(resp);
        if (300..400).contains(&status) {
            for c in resp.header_values("Contact") {
                pairs.push(("Contact".into(), c.into()));
            }
        }
        let rh = self.a_response_headers.clone();
        headers::add(&mut pairs, &rh);
        let edits = self.response_edits(Leg::B, "INVITE", resp).await;
        apply_edits(&mut pairs, &edits);
        let body = resp.body();
        let ct = resp.content_type().unwrap_or("application/sdp").to_string();
        let body = (!body.is_empty()).then_some((ct, body));
        self.send_a(now, status, resp.reason().map(str::to_string), pairs, body);
    }

    async fn on_other_event(&mut self, now: Instant, id: u32, ev: Event) {
        let Some(t) = self.txns.iter().find(|t| t.id == id) else {
            return;
        };
        let (purpose, leg) = (t.purpose, t.leg);
        match (purpose, ev) {
            (Purpose::RelayOf(server), Event::Response(resp)) => {
                self.relay_response(now, leg, server, resp).await
            }
            (Purpose::RelayOf(server), Event::Timeout(_) | Event::TransportError) => {
                self.answer_server(now, server, 504, None, Vec::new(), None);
            }
            (Purpose::Bye, Event::Response(_) | Event::Timeout(_) | Event::TransportError) => {}
            (Purpose::Cancel, _) => {}
            (_, Event::Timeout(_)) => {}
            _ => {}
        }
    }

    /// A response from `leg` to a relayed request: relay it on the originating server transaction.
    async fn relay_response(&mut self, now: Instant, leg: Leg, server: u32, resp: SipMessage) {
        let status = resp.status().unwrap_or(500);
        let method = resp.cseq_method().clone();
        if method == Method::Invite && (200..300).contains(&status) {
            // Our side of a re-INVITE: ACK the 2xx at once (ACKs are hop by hop for re-INVITEs).
            let cseq = resp.cseq();
            let shared = self.shared.clone();
            let sent_by = &shared.settings.sent_by;
            let dest = match leg {
                Leg::A => self.a.dialog.as_ref().map(|d| dest_of(d, self.a.source)),
                Leg::B => self
                    .b
                    .as_ref()
                    .and_then(|b| b.dialog.as_ref().map(|d| dest_of(d, b.dest))),
            };
            let kind = if leg == Leg::A {
                self.a.transport
            } else {
                TransportKind::Udp
            };
            let d = match leg {
                Leg::A => self.a.dialog.as_ref(),
                Leg::B => self.b.as_ref().and_then(|b| b.dialog.as_ref()),
            };
            if let (Some(d), Some(dest)) = (d, dest)
                && let Ok(ack) = d.ack(cseq).via(kind.via_token(), sent_by).build_bytes()
            {
                self.shared.net().send(kind, dest, ack);
            }
        }
        if status == 100 {
            return;
        }
        let shared = self.shared.clone();
        let mut pairs = end_to_end(&resp);
        if matches!(method, Method::Invite | Method::Update) && status < 300 {
            pairs.push(("Contact".into(), shared.settings.contact.as_str().into()));
        }
        let edits = self.response_edits(leg, method.as_str(), &resp).await;
        apply_edits(&mut pairs, &edits);
        let body = resp.body();
        let ct = resp.content_type().unwrap_or("application/sdp").to_string();
        let body = (!body.is_empty()).then_some((ct, body));
        self.answer_server(
            now,
            server,
            status,
            resp.reason().map(str::to_string),
            pairs,
            body,
        );
    }

    /// Sends a response on server transaction `id`; a 2xx to an INVITE is retransmitted until ACKed.
    fn answer_server(
        &mut self,
        now: Instant,
        id: u32,
        status: u16,
        reason: Option<String>,
        pairs: Pairs<'_>,
        body: Option<(String, Bytes)>,
    ) {
        let Some(t) = self.txns.iter_mut().find(|t| t.id == id) else {
            return;
        };
        let (leg, transport) = (t.leg, t.transport);
        let TxnKind::Server(s) = &mut t.kind else {
            return;
        };
        let reason = reason.unwrap_or_else(|| reason_phrase(status).to_string());
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_ref(), v.as_ref()))
            .collect();
        let resp = match build_response(
            s.request(),
            status,
            &reason,
            &refs,
            None,
            body.as_ref().map(|(ct, b)| (ct.as_str(), &b[..])),
        ) {
            Ok(r) => r,
            Err(e) => return super::log_build_error("a relayed response", &e),
        };
        let is_invite = s.request().method() == Some(&Method::Invite);
        let cseq = s.request().cseq();
        let _ = s.send_response(now, &resp);
        self.shared.metrics.response_out(status);
        if is_invite && (200..300).contains(&status) && !transport.is_reliable() {
            let dest = match leg {
                Leg::A => self.a.resp_dest,
                Leg::B => self.b.as_ref().map_or(self.a.resp_dest, |b| b.dest),
            };
            self.push_2xx(now, leg, cseq, resp.bytes().clone(), dest, transport);
        }
    }

    fn push_2xx(
        &mut self,
        now: Instant,
        leg: Leg,
        cseq: u32,
        bytes: Bytes,
        dest: SocketAddr,
        transport: TransportKind,
    ) {
        let t1 = self.shared.settings.sip_timers.t1;
        self.pending_2xx.push(Pending2xx {
            leg,
            cseq,
            bytes,
            dest,
            transport,
            interval: t1,
            next: now + t1,
        });
    }

    // ---- sending ----

    /// Sends a response on the A-leg INVITE transaction. Provisional (but 100) and 2xx responses
    /// carry our To tag, Contact and A's Record-Route (RFC 3261 12.1.1); 2xx are retransmitted until
    /// the ACK.
    fn send_a(
        &mut self,
        now: Instant,
        status: u16,
        reason: Option<String>,
        pairs: Pairs<'_>,
        body: Option<(String, Bytes)>,
    ) {
        if self.a.final_sent {
            return;
        }
        let reason = reason.map_or(Cow::Borrowed(reason_phrase(status)), Cow::Owned);
        let mut refs: Vec<(&str, &str)> = Vec::with_capacity(pairs.len() + 2);
        refs.extend(pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref())));
        if status > 100 && status < 300 {
            for rr in self.a.invite.header_values("Record-Route") {
                refs.push(("Record-Route", rr));
            }
            refs.push(("Contact", &self.shared.settings.contact));
        }
        let tag = (status > 100).then_some(self.a.tag.as_str());
        let resp: OutgoingResponse = match build_response(
            &self.a.invite,
            status,
            &reason,
            &refs,
            tag,
            body.as_ref().map(|(ct, b)| (ct.as_str(), &b[..])),
        ) {
            Ok(r) => r,
            Err(e) => {
                super::log_build_error("an A-leg response", &e);
                // Fall back to a bare response so the caller still gets its answer.
                match build_response(
                    &self.a.invite,
                    status,
                    reason_phrase(status),
                    &[],
                    tag,
                    None,
                ) {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        debug!(
            leg = "a",
            status,
            "response out\n{}",
            String::from_utf8_lossy(resp.bytes())
        );
        if self.a.txn.send_response(now, &resp).is_err() {
            return;
        }
        self.shared.metrics.response_out(status);
        if status > 100 && status < 300 && self.a.dialog.is_none() {
            self.a.dialog = Dialog::uas(&self.a.invite, &self.a.tag).ok();
        }
        if status >= 200 {
            self.a.final_sent = true;
        }
        if (200..300).contains(&status) && !self.a.transport.is_reliable() {
            let cseq = self.a.invite.cseq();
            let (dest, kind) = (self.a.resp_dest, self.a.transport);
            self.push_2xx(now, Leg::A, cseq, resp.bytes().clone(), dest, kind);
        }
    }

    fn send_a_if_unanswered(&mut self, now: Instant, status: u16) {
        if !self.a.final_sent {
            self.send_a(now, status, None, Vec::new(), None);
        }
    }

    fn reject_a(
        &mut self,
        now: Instant,
        status: u16,
        reason: Option<String>,
        hs: &[Header],
        why: &str,
        by: Initiator,
    ) {
        let rh = self.a_response_headers.clone();
        let mut pairs = to_pairs(&rh);
        pairs.extend(to_pairs(hs));
        self.send_a(now, status, reason, pairs, None);
        let outcome = if by == Initiator::Plugin || status < 500 {
            CallOutcome::Rejected
        } else {
            CallOutcome::Failed
        };
        // `finish` is async only for the plugins' on-call-end; queue it through the end marker.
        self.mark_end(outcome, status, why.to_string(), by);
    }

    /// Answers a request on `leg` ourselves (a server transaction that lives until its timers end).
    fn local_reply(&mut self, now: Instant, leg: Leg, inb: Inbound, status: u16) {
        let dest = response_destination(&inb.msg, inb.source, inb.transport);
        let Ok(mut s) = ServerTransaction::new(
            inb.msg.clone(),
            dest,
            inb.transport,
            self.shared.settings.sip_timers,
        ) else {
            return self.shared.reply(&inb, status, &[]);
        };
        let extra: &[(&str, &str)] = if status == 405 {
            &[("Allow", super::ALLOW)]
        } else {
            &[]
        };
        if let Ok(r) = build_response(&inb.msg, status, reason_phrase(status), extra, None, None) {
            debug!(
                leg = leg_name(leg),
                status,
                "response out\n{}",
                String::from_utf8_lossy(r.bytes())
            );
            let _ = s.send_response(now, &r);
            self.shared.metrics.response_out(status);
        }
        self.add_txn(leg, Purpose::Local, TxnKind::Server(s), inb.transport);
    }

    fn add_txn(
        &mut self,
        leg: Leg,
        purpose: Purpose,
        kind: TxnKind,
        transport: TransportKind,
    ) -> u32 {
        let id = self.next_txn;
        self.next_txn += 1;
        self.txns.push(Txn {
            sent: false,
            id,
            leg,
            purpose,
            kind,
            transport,
        });
        id
    }

    /// CANCELs the B leg if it is ringing; remembers to once it rings if it has not yet.
    fn cancel_b(&mut self, now: Instant) {
        self.timers.no_final = None;
        self.timers.no_provisional = None;
        let Some(b) = self.b.as_mut() else { return };
        if b.cancelled || b.dialog.is_some() {
            return;
        }
        if !b.provisional {
            b.cancel_pending = true;
            return;
        }
        b.cancelled = true;
        b.cancel_pending = false;
        let Ok(cancel) = build_cancel(&b.invite, &[]) else {
            return;
        };
        let Ok(c) = ClientTransaction::new(
            now,
            cancel.clone(),
            b.dest,
            TransportKind::Udp,
            self.shared.settings.sip_timers,
        ) else {
            return;
        };
        debug!(leg = "b", "CANCEL out\n{}", show(&cancel));
        self.shared.metrics.request_out(&Method::Cancel);
        self.add_txn(
            Leg::B,
            Purpose::Cancel,
            TxnKind::Client(c),
            TransportKind::Udp,
        );
    }

    /// ACKs B's 2xx ourselves (when the caller will never ACK it).
    fn ack_b_locally(&mut self, _now: Instant) {
        let shared = self.shared.clone();
        let sent_by = &shared.settings.sent_by;
        let Some(b) = self.b.as_mut() else { return };
        let Some(d) = &b.dialog else { return };
        if let Ok(bytes) = d.ack(b.invite.cseq()).via("UDP", sent_by).build_bytes() {
            self.shared
                .net()
                .send(TransportKind::Udp, b.dest, bytes.clone());
            b.ack = Some(bytes);
        }
    }

    fn bye_b(&mut self, now: Instant) {
        let shared = self.shared.clone();
        let (sent_by, contact) = (&shared.settings.sent_by, &shared.settings.contact);
        let timers = self.shared.settings.sip_timers;
        let Some(b) = self.b.as_ref() else { return };
        if b.bye_sent {
            return;
        }
        if b.dialog.is_none() {
            return self.cancel_b(now);
        }
        if b.ack.is_none() {
            // Never leave B's 2xx un-ACKed: a BYE without the ACK confuses many UAs.
            self.ack_b_locally(now);
        }
        let Some(b) = self.b.as_mut() else { return };
        let Some(d) = b.dialog.as_mut() else { return };
        b.bye_sent = true;
        let dest = dest_of(d, b.dest);
        let Ok(bye) = d
            .request(Method::Bye)
            .via("UDP", sent_by)
            .contact(contact)
            .build()
        else {
            return;
        };
        let Ok(c) = ClientTransaction::new(now, bye.clone(), dest, TransportKind::Udp, timers)
        else {
            return;
        };
        debug!(leg = "b", "BYE out\n{}", show(&bye));
        self.shared.metrics.request_out(&Method::Bye);
        self.add_txn(Leg::B, Purpose::Bye, TxnKind::Client(c), TransportKind::Udp);
    }

    fn bye_a(&mut self, now: Instant) {
        if self.a_bye_sent {
            return;
        }
        self.a_bye_sent = true;
        let shared = self.shared.clone();
        let (sent_by, contact) = (&shared.settings.sent_by, &shared.settings.contact);
        let kind = self.a.transport;
        self.pending_2xx.retain(|p| p.leg != Leg::A);
        self.timers.no_ack = None;
        let Some(d) = self.a.dialog.as_mut() else {
            return;
        };
        let dest = dest_of(d, self.a.source);
        let Ok(bye) = d
            .request(Method::Bye)
            .via(kind.via_token(), sent_by)
            .contact(contact)
            .build()
        else {
            return;
        };
        let Ok(c) = ClientTransaction::new(
            now,
            bye.clone(),
            dest,
            kind,
            self.shared.settings.sip_timers,
        ) else {
            return;
        };
        debug!(leg = "a", "BYE out\n{}", show(&bye));
        self.shared.metrics.request_out(&Method::Bye);
        self.add_txn(Leg::A, Purpose::Bye, TxnKind::Client(c), kind);
    }

    fn hang_up_both(&mut self, now: Instant) {
        if self.a.final_sent {
            self.bye_a(now);
        }
        if self.b.as_ref().is_some_and(|b| b.dialog.is_some()) {
            self.bye_b(now);
        } else {
            self.cancel_b(now);
        }
    }

    // ---- plugins' commands and the end of the call ----

    /// Applies what plugins asked for during the hooks just run: commands and failure policies.
    async fn after_hooks(&mut self, now: Instant) {
        let Some(p) = self.plugins.as_mut() else {
            return;
        };
        let abort = p.take_abort();
        let commands = p.take_commands();
        if let Some(a) = abort
            && !self.a.final_sent
            && self.end.is_none()
        {
            warn!(plugin = %a.plugin, "{}; answering {}", a.reason, a.status);
            self.cancel_b(now);
            self.send_a(now, a.status, None, Vec::new(), None);
            self.finish(CallOutcome::Failed, a.status, a.reason, Initiator::Plugin)
                .await;
            return;
        }
        for c in commands {
            if let CallCommand::HangUp { status, reason } = c.command {
                if self.end.is_some() {
                    continue;
                }
                info!(plugin = %c.plugin, "plugin hangs up: {reason}");
                if !self.a.final_sent {
                    let r = Header::new("Reason", format!("SIP;cause={status};text=\"{reason}\""));
                    self.send_a(now, status, None, to_pairs(&[r]), None);
                }
                self.hang_up_both(now);
                let outcome = if self.answered_at.is_some() {
                    CallOutcome::Answered
                } else {
                    CallOutcome::Rejected
                };
                self.finish(
                    outcome,
                    status,
                    format!("hung up by plugin {}: {reason}", c.plugin),
                    Initiator::Plugin,
                )
                .await;
            }
        }
        if let Some(pending) = self.pending_end.take() {
            self.finish(pending.0, pending.1, pending.2, pending.3)
                .await;
        }
    }

    fn mark_end(&mut self, outcome: CallOutcome, status: u16, reason: String, by: Initiator) {
        if self.end.is_none() && self.pending_end.is_none() {
            self.pending_end = Some((outcome, status, reason, by));
        }
    }

    /// Records how the call ended (once): metrics, call detail record, the plugins' `on-call-end`.
    async fn finish(&mut self, outcome: CallOutcome, status: u16, reason: String, by: Initiator) {
        if self.end.is_some() {
            return;
        }
        let now = Instant::now();
        self.end = Some(End { at: now });
        self.pending_end = None;
        self.timers = Timers {
            no_provisional: None,
            no_final: None,
            no_ack: self.timers.no_ack,
        };
        let setup_ms = (self.answered_at.unwrap_or(now) - self.started).as_millis() as u64;
        let talk_ms = self.answered_at.map_or(0, |t| (now - t).as_millis() as u64);
        info!(outcome = ?outcome, status, ended_by = ?by, setup_ms, talk_ms, "call ended: {reason}");
        self.shared.metrics.call_ended(outcome);
        let summary = CallSummary {
            outcome,
            status,
            reason: reason.clone(),
            ended_by: by,
            setup_ms,
            talk_ms,
        };
        let mut state = Vec::new();
        if let Some(mut p) = self.plugins.take() {
            if p.wants(Hook::CallEnd) {
                p.on_call_end(&summary).await;
            }
            if self.shared.cdr.is_some() {
                state = p.into_state();
            }
        }
        if let Some(cdr) = &self.shared.cdr {
            cdr.write(&CallRecord {
                call_ref: self.call_ref,
                a_call_id: self.a.invite.call_id().to_string(),
                b_call_id: self.b.as_ref().map(|b| b.call_id.clone()),
                from: self.a.invite.from_uri().to_string(),
                to: self.a.invite.to_uri().to_string(),
                b_target: self.b_target.clone(),
                start_unix_ms: unix_ms_ago(now - self.started),
                setup_ms,
                talk_ms,
                outcome,
                status,
                reason,
                ended_by: by,
                plugins: std::mem::take(&mut self.plugin_names),
                state,
            });
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut min = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        min(self.a.txn.poll_timeout());
        if let Some(b) = &self.b {
            min(b.txn.poll_timeout());
        }
        for t in &self.txns {
            min(match &t.kind {
                TxnKind::Server(s) => s.poll_timeout(),
                TxnKind::Client(c) => c.poll_timeout(),
            });
        }
        for p in &self.pending_2xx {
            min(Some(p.next));
        }
        min(self.timers.no_provisional);
        min(self.timers.no_final);
        min(self.timers.no_ack);
        if let Some(e) = &self.end {
            min(Some(e.at + LINGER));
        }
        d
    }

    /// True once the call has ended and nothing is left to absorb or retransmit.
    fn finished(&self, now: Instant) -> bool {
        let Some(end) = &self.end else { return false };
        if now >= end.at + LINGER {
            return true;
        }
        let b_done = self
            .b
            .as_ref()
            .is_none_or(|b| b.txn.is_terminated() && !b.cancel_pending);
        self.a.txn.is_terminated() && b_done && self.txns.is_empty() && self.pending_2xx.is_empty()
    }

    /// What is left of the call once it has ended and its transactions only absorb
    /// retransmissions. `None` while anything still acts on its own: a request awaiting its
    /// answer, a non-2xx final retransmitted until its ACK, our 2xx awaiting its ACK, a CANCEL due.
    fn echoes(&self) -> Option<Echoes> {
        self.end.as_ref()?;
        let busy = self.pending_end.is_some()
            || !self.pending_2xx.is_empty()
            || self.a.txn.is_active()
            || self
                .b
                .as_ref()
                .is_some_and(|b| b.txn.is_active() || b.cancel_pending)
            || self.txns.iter().any(|t| match &t.kind {
                TxnKind::Server(s) => s.is_active(),
                TxnKind::Client(c) => c.is_active(),
            });
        if busy {
            return None;
        }
        // Echoes outlive the call by LINGER (40,000 calls' worth at 4,000 calls/s): each keeps an
        // exact copy of its bytes, not the builder's buffer, which was sized for the worst case
        // (about twice the message).
        let compact = |b: &Bytes| Bytes::copy_from_slice(b);
        let echo = |s: &ServerTransaction, transport| Echo {
            key: s.key().clone(),
            response: s.echo().map(compact),
            dest: s.response_dest(),
            transport,
        };
        // A's INVITE even once terminated: a late retransmission must not look like a new call.
        let open_servers = || {
            self.txns.iter().filter_map(|t| match &t.kind {
                TxnKind::Server(s) if !s.is_terminated() => Some((s, t.transport)),
                _ => None,
            })
        };
        let mut answers = Vec::with_capacity(1 + open_servers().count());
        answers.push(echo(&self.a.txn, self.a.transport));
        answers.extend(open_servers().map(|(s, transport)| echo(s, transport)));
        let b_ack = self.b.as_ref().and_then(|b| {
            let ack = b.ack.as_ref().or_else(|| b.txn.non_2xx_ack())?;
            Some((b.txn.key().clone(), compact(ack), b.dest))
        });
        Some(Echoes { answers, b_ack })
    }

    /// Hands the call's Call-IDs to its echoes and ends the actor early: a finished call is then
    /// ~2 KB in the registry instead of a task that wakes for every transaction timer.
    fn retire(&mut self, now: Instant, echoes: Echoes, rx: &mut Mailbox) {
        let echoes = self.shared.retire(self.call_ids(), echoes, now);
        // Queued before the hand-over: answered as the echoes answer later ones.
        for inb in rx.close() {
            self.shared.echo(&echoes, inb);
        }
        debug!("call retired; its echoes answer retransmissions");
        self.shared.metrics.call_closed();
    }

    fn call_ids(&self) -> Vec<String> {
        let mut ids = vec![self.a.invite.call_id().to_string()];
        if let Some(b) = &self.b {
            ids.push(b.call_id.clone());
        }
        ids
    }

    fn close(&mut self) {
        let ids = self.call_ids();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.shared.unregister(&refs);
        self.shared.metrics.call_closed();
    }
}

// ---- helpers ----

fn other_leg(l: Leg) -> Leg {
    match l {
        Leg::A => Leg::B,
        Leg::B => Leg::A,
    }
}

fn leg_name(l: Leg) -> &'static str {
    match l {
        Leg::A => "a",
        Leg::B => "b",
    }
}

fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
    }
}

/// Adds the end-to-end headers and the body (if any) to a request being built.
fn with_content<'a>(
    mut builder: RequestBuilder<'a>,
    headers: &'a [(Cow<'a, str>, Cow<'a, str>)],
    content_type: &'a str,
    body: &'a [u8],
) -> RequestBuilder<'a> {
    for (n, v) in headers {
        builder = builder.header(n, v);
    }
    if !body.is_empty() {
        builder = builder.body(content_type, body);
    }
    builder
}

fn to_pairs(hs: &[Header]) -> Pairs<'_> {
    let mut pairs = Vec::with_capacity(hs.len());
    headers::add(&mut pairs, hs);
    pairs
}

/// B-leg failures that must not reach the caller as they are: a 408 or 503 from B would make A's
/// side believe this gateway timed out or is overloaded and fail over to another hop (RFC 3261
/// 16.7 step 6 says the same of 503 for proxies). They become 480 with the original in a Reason.
fn map_b_failure(status: u16) -> (u16, &'static str) {
    match status {
        408 | 503 => (480, "Temporarily Unavailable"),
        s => (s, ""),
    }
}

fn via_sent_by(via: &str) -> &str {
    // "SIP/2.0/UDP host:port;params"
    via.split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
}

fn host_of(sent_by: &str) -> &str {
    if let Some(v6) = sent_by.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(sent_by);
    }
    sent_by.split(':').next().unwrap_or(sent_by)
}

/// Where a request in `dialog` goes: the first route's or the remote target's address when it is an
/// IP literal, else where the party's messages came from.
fn dest_of(dialog: &Dialog, fallback: SocketAddr) -> SocketAddr {
    let next = dialog
        .route_set()
        .first()
        .map_or(dialog.remote_target(), |r| headers::uri_of(r));
    headers::uri_host_port(next)
        .and_then(|(h, p)| h.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, p)))
        .unwrap_or(fallback)
}

/// Resolves a B-leg target URI to an address (RFC 3263 lite: A/AAAA lookup, port from the URI or 5060).
async fn resolve(uri: &str) -> Option<SocketAddr> {
    let (host, port) = headers::uri_host_port(uri)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

fn view_headers(msg: &SipMessage) -> Vec<Header> {
    header_views(msg)
        .into_iter()
        .map(|h| Header::new(h.name, h.value))
        .collect()
}

/// The headers a plugin sees, borrowed: all but the routing ones, which are the gateway's.
fn header_views(msg: &SipMessage) -> Vec<HeaderView<'_>> {
    let lines = msg.header_lines();
    // Sized for every line up front: collecting through the filter grew the vector 3-4 times.
    let mut views = Vec::with_capacity(lines.size_hint().0);
    views.extend(
        lines
            .filter(|h| !h.is_routing())
            .map(|h| HeaderView::new(callgate_sip::message::canonical_name(h.name), h.value)),
    );
    views
}

fn request_view(msg: &SipMessage) -> RequestView<'_> {
    RequestView {
        method: msg.method().map(|m| m.as_str()).unwrap_or_default(),
        uri: msg.request_uri().unwrap_or_default(),
        headers: header_views(msg),
        body_type: msg.content_type(),
    }
}

fn response_view(msg: &SipMessage) -> ResponseView<'_> {
    ResponseView {
        status: msg.status().unwrap_or(0),
        reason: msg.reason().unwrap_or_default(),
        headers: header_views(msg),
        body_type: msg.content_type(),
    }
}

fn unix_ms_ago(ago: Duration) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(ago).as_millis() as u64
}
