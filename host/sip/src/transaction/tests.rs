//! Transactions on a virtual clock: a client and a server connected by an in-memory network with a
//! loss knob (quinn's `Pair`). No sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::TransportKind;
use crate::message::{Method, RequestBuilder, SipMessage, build_cancel, build_response};

const CLIENT: &str = "10.0.0.1:5060";
const SERVER: &str = "10.0.0.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn request(method: Method) -> SipMessage {
    RequestBuilder::new(method, "sip:bob@10.0.0.2")
        .via("UDP", CLIENT)
        .from("<sip:alice@a>", "ftag")
        .to("<sip:bob@b>", None)
        .call_id("cid@a")
        .cseq(1)
        .build()
        .unwrap()
}

/// xorshift64*, deterministic.
struct Rng(u64);
impl Rng {
    fn percent(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100
    }
}

struct Pair {
    start: Instant,
    now: Instant,
    config: TimerConfig,
    transport: TransportKind,
    latency: Duration,
    rng: Rng,
    /// Loss in percent for each direction.
    loss_to_server: u64,
    loss_to_client: u64,
    client: ClientTransaction,
    server: Option<ServerTransaction>,
    /// What the server TU answers, at once, when the transaction is created.
    script: Vec<(u16, &'static str)>,
    in_flight: Vec<(Instant, bool, Bytes)>,
    client_sent: Vec<(Duration, SipMessage)>,
    server_sent: Vec<(Duration, SipMessage)>,
    client_events: Vec<(Duration, Event)>,
    server_events: Vec<(Duration, Event)>,
}

impl Pair {
    fn new(method: Method, transport: TransportKind, script: Vec<(u16, &'static str)>) -> Pair {
        let now = Instant::now(); // the origin of virtual time only; never read again
        let config = TimerConfig::default();
        let client =
            ClientTransaction::new(now, request(method), addr(SERVER), transport, config).unwrap();
        Pair {
            start: now,
            now,
            config,
            transport,
            latency: Duration::from_millis(10),
            rng: Rng(0x1234_5678),
            loss_to_server: 0,
            loss_to_client: 0,
            client,
            server: None,
            script,
            in_flight: Vec::new(),
            client_sent: Vec::new(),
            server_sent: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    fn t(&self) -> Duration {
        self.now - self.start
    }

    fn flush(&mut self) {
        let t = self.t();
        while let Some(tx) = self.client.poll_transmit() {
            assert_eq!(tx.dest, addr(SERVER));
            self.client_sent
                .push((t, SipMessage::parse(tx.bytes.clone()).unwrap()));
            if self.rng.percent() >= self.loss_to_server {
                self.in_flight
                    .push((self.now + self.latency, true, tx.bytes));
            }
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push((t, e));
        }
        if let Some(s) = self.server.as_mut() {
            while let Some(tx) = s.poll_transmit() {
                assert_eq!(tx.dest, addr(CLIENT));
                self.server_sent
                    .push((t, SipMessage::parse(tx.bytes.clone()).unwrap()));
                if self.rng.percent() >= self.loss_to_client {
                    self.in_flight
                        .push((self.now + self.latency, false, tx.bytes));
                }
            }
            while let Some(e) = s.poll_event() {
                self.server_events.push((t, e));
            }
        }
    }

    /// One step: flush outputs, jump to the next wake-up, deliver and fire what is due.
    fn step(&mut self) -> bool {
        self.flush();
        let next = [
            self.in_flight.iter().map(|m| m.0).min(),
            self.client.poll_timeout(),
            self.server.as_ref().and_then(|s| s.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        let (due, rest): (Vec<_>, Vec<_>) = self.in_flight.drain(..).partition(|m| m.0 <= now);
        self.in_flight = rest;
        for (_, to_server, bytes) in due {
            let msg = SipMessage::parse(bytes).unwrap();
            if to_server {
                match self.server.as_mut() {
                    Some(s) => {
                        // ACK of a 2xx has its own branch: not ours, so NotMatching is expected.
                        let _ = s.handle_message(now, msg);
                    }
                    None if msg.method() != Some(&Method::Ack) => {
                        let mut s =
                            ServerTransaction::new(msg, addr(CLIENT), self.transport, self.config)
                                .unwrap();
                        for &(status, reason) in &self.script {
                            let r = build_response(
                                s.request(),
                                status,
                                reason,
                                &[],
                                Some("ttag"),
                                None,
                            )
                            .unwrap();
                            s.send_response(now, &r).unwrap();
                        }
                        self.server = Some(s);
                    }
                    None => {}
                }
            } else {
                self.client.handle_message(now, msg).unwrap();
            }
        }
        self.client.handle_timeout(now);
        if let Some(s) = self.server.as_mut() {
            s.handle_timeout(now);
        }
        true
    }

    fn drive(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("did not settle in 10000 steps");
    }

    fn client_send_times(&self) -> Vec<u64> {
        self.client_sent
            .iter()
            .map(|(t, _)| t.as_millis() as u64)
            .collect()
    }

    fn final_responses(&self) -> Vec<u16> {
        self.client_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Response(r) if r.status().unwrap() >= 200 => r.status(),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn timer_a_doubles_and_timer_b_times_out_at_64_t1() {
    let mut p = Pair::new(Method::Invite, TransportKind::Udp, vec![]);
    p.loss_to_server = 100;
    p.drive();
    // A: T1, 2T1, 4T1, ... (17.1.1.2 does not cap A at T2) until B at 64*T1 = 32 s.
    assert_eq!(
        p.client_send_times(),
        [0, 500, 1500, 3500, 7500, 15500, 31500]
    );
    assert!(
        matches!(p.client_events.as_slice(), [(t, Event::Timeout(Timer::B))] if t.as_secs() == 32)
    );
    assert!(p.client.is_terminated());
}

#[test]
fn reliable_transport_does_not_retransmit() {
    let mut p = Pair::new(Method::Invite, TransportKind::Tcp, vec![]);
    p.loss_to_server = 100;
    p.drive();
    assert_eq!(p.client_send_times(), [0]);
    assert!(matches!(
        p.client_events.as_slice(),
        [(_, Event::Timeout(Timer::B))]
    ));
}

#[test]
fn non_invite_retransmits_up_to_t2_then_times_out_for_408() {
    let mut p = Pair::new(Method::Options, TransportKind::Udp, vec![]);
    p.loss_to_server = 100;
    p.drive();
    let times = p.client_send_times();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..5], [500, 1000, 2000, 4000, 4000]);
    assert!(gaps.iter().all(|&g| g <= 4000));
    assert!(
        matches!(p.client_events.as_slice(), [(t, Event::Timeout(Timer::F))] if t.as_secs() == 32)
    );
}

#[test]
fn provisional_moves_non_invite_retransmissions_to_t2() {
    let mut p = Pair::new(Method::Bye, TransportKind::Udp, vec![(100, "Trying")]);
    p.loss_to_server = 0;
    for _ in 0..3 {
        p.step();
    }
    p.loss_to_server = 100;
    p.drive();
    let times = p.client_send_times();
    assert!(
        times.windows(2).skip(1).all(|w| w[1] - w[0] == 4000),
        "{times:?}"
    );
    assert!(matches!(
        p.client_events.last(),
        Some((_, Event::Timeout(Timer::F)))
    ));
}

#[test]
fn client_acks_non_2xx_itself_and_server_confirms() {
    let mut p = Pair::new(
        Method::Invite,
        TransportKind::Udp,
        vec![(100, "Trying"), (486, "Busy Here")],
    );
    p.drive();
    assert_eq!(p.final_responses(), [486]);
    let sent: Vec<_> = p
        .client_sent
        .iter()
        .map(|(_, m)| m.method().unwrap().clone())
        .collect();
    assert_eq!(sent, [Method::Invite, Method::Ack]);
    let ack = &p.client_sent[1].1;
    let invite = &p.client_sent[0].1;
    assert_eq!(
        ack.top_via().branch(),
        invite.top_via().branch(),
        "same branch (17.1.1.3)"
    );
    assert_eq!((ack.cseq(), ack.cseq_method()), (1, &Method::Ack));
    assert_eq!(ack.to_tag(), Some("ttag"));
    assert_eq!(ack.request_uri(), invite.request_uri());
    // The ACK stopped Timer G: one 486 only, and no Timer H timeout.
    assert_eq!(
        p.server_sent
            .iter()
            .filter(|(_, m)| m.status() == Some(486))
            .count(),
        1
    );
    assert!(p.server_events.is_empty());
    assert!(p.client.is_terminated() && p.server.as_ref().unwrap().is_terminated());
}

#[test]
fn server_invite_absorbs_retransmission_and_resends_last_response() {
    let now = Instant::now();
    let cfg = TimerConfig::default();
    let inv = request(Method::Invite);
    let mut s = ServerTransaction::new(inv.clone(), addr(CLIENT), TransportKind::Udp, cfg).unwrap();
    s.handle_message(now, inv.clone()).unwrap();
    assert!(
        s.poll_transmit().is_none(),
        "nothing to re-send before the TU answered"
    );
    let ringing = build_response(&inv, 180, "Ringing", &[], Some("t"), None).unwrap();
    s.send_response(now, &ringing).unwrap();
    assert_eq!(s.poll_transmit().unwrap().bytes, ringing.bytes().clone());
    s.handle_message(now, inv.clone()).unwrap();
    assert_eq!(s.poll_transmit().unwrap().bytes, ringing.bytes().clone());
    assert!(
        s.poll_event().is_none(),
        "a retransmission is not a new request for the TU"
    );
    // 2xx: Accepted absorbs INVITEs silently (the TU retransmits its 2xx), and Timer L ends it.
    let ok = build_response(&inv, 200, "OK", &[], Some("t"), None).unwrap();
    s.send_response(now, &ok).unwrap();
    let _ = s.poll_transmit();
    s.handle_message(now, inv.clone()).unwrap();
    assert!(s.poll_transmit().is_none());
    assert_eq!(
        s.send_response(now, &ok),
        Err(TransactionError::InvalidState {
            state: "Accepted",
            action: "send a response"
        })
    );
    s.handle_timeout(now + cfg.t1x64());
    assert!(s.is_terminated());
}

#[test]
fn timer_g_doubles_to_t2_and_timer_h_reports_missing_ack() {
    let start = Instant::now();
    let cfg = TimerConfig::default();
    let inv = request(Method::Invite);
    let mut s = ServerTransaction::new(inv.clone(), addr(CLIENT), TransportKind::Udp, cfg).unwrap();
    s.send_response(
        start,
        &build_response(&inv, 503, "Unavailable", &[], Some("t"), None).unwrap(),
    )
    .unwrap();
    let mut sends = vec![];
    let mut now = start;
    let mut events = vec![];
    while let Some(at) = s.poll_timeout() {
        while s.poll_transmit().is_some() {
            sends.push((now - start).as_millis() as u64);
        }
        now = at;
        s.handle_timeout(now);
        events.extend(std::iter::from_fn(|| s.poll_event()));
    }
    let gaps: Vec<u64> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps[..5], [500, 1000, 2000, 4000, 4000]);
    assert!(matches!(events.as_slice(), [Event::Timeout(Timer::H)]));
    assert_eq!(now - start, cfg.t1x64());
    assert!(s.is_terminated());
}

#[test]
fn client_accepted_state_delivers_retransmitted_2xx() {
    let now = Instant::now();
    let inv = request(Method::Invite);
    let mut c = ClientTransaction::new(
        now,
        inv.clone(),
        addr(SERVER),
        TransportKind::Udp,
        TimerConfig::default(),
    )
    .unwrap();
    let _ = c.poll_transmit();
    let ok = SipMessage::parse(
        build_response(&inv, 200, "OK", &[], Some("t"), None)
            .unwrap()
            .bytes()
            .clone(),
    )
    .unwrap();
    c.handle_message(now, ok.clone()).unwrap();
    c.handle_message(now, ok).unwrap();
    let n = std::iter::from_fn(|| c.poll_event())
        .filter(|e| matches!(e, Event::Response(_)))
        .count();
    assert_eq!(n, 2, "each 2xx goes to the TU, which ACKs it");
    assert!(
        c.poll_transmit().is_none(),
        "the transaction never ACKs a 2xx"
    );
    c.handle_timeout(now + Duration::from_secs(32));
    assert!(c.is_terminated());
}

#[test]
fn matching_keys_per_17_1_3_and_17_2_3() {
    let inv = request(Method::Invite);
    let ack_text = String::from_utf8(inv.wire_bytes().to_vec())
        .unwrap()
        .replace("INVITE sip", "ACK sip")
        .replace("1 INVITE", "1 ACK");
    let ack = SipMessage::parse(Bytes::from(ack_text)).unwrap();
    assert_eq!(
        TransactionKey::for_request(&ack),
        TransactionKey::for_request(&inv)
    );
    let cancel = build_cancel(&inv, &[]).unwrap();
    assert_ne!(
        TransactionKey::for_request(&cancel),
        TransactionKey::for_request(&inv)
    );
    assert_eq!(
        TransactionKey::cancel_target(&cancel),
        TransactionKey::for_request(&inv)
    );
    // A response to the CANCEL does not match the INVITE client transaction.
    let now = Instant::now();
    let mut c = ClientTransaction::new(
        now,
        inv.clone(),
        addr(SERVER),
        TransportKind::Udp,
        TimerConfig::default(),
    )
    .unwrap();
    let cancel_ok = SipMessage::parse(
        build_response(&cancel, 200, "OK", &[], None, None)
            .unwrap()
            .bytes()
            .clone(),
    )
    .unwrap();
    assert_eq!(
        c.handle_message(now, cancel_ok),
        Err(TransactionError::NotMatching)
    );
    assert_eq!(
        ClientTransaction::new(
            now,
            ack,
            addr(SERVER),
            TransportKind::Udp,
            TimerConfig::default()
        )
        .unwrap_err(),
        TransactionError::AckIsNotATransaction
    );
}

/// The borrowed key read from a message matches a stored key exactly when the two owned keys are
/// equal: sent-by host case, a default port written or not (5060, or 5061 for TLS), branch, method,
/// ACK as INVITE, and requests against responses.
#[test]
fn borrowed_keys_match_as_owned_keys_compare() {
    let msg = |first: &str, via: &str, cseq: &str| {
        let text = format!(
            "{first}\r\nVia: {via}\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\n\
             Call-ID: k1\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        SipMessage::parse(Bytes::from(text)).unwrap()
    };
    let b = "z9hG4bK-one";
    let mut msgs = Vec::new();
    for via in [
        format!("SIP/2.0/UDP host.example;branch={b}"),
        format!("SIP/2.0/UDP HOST.example:5060;branch={b}"),
        format!("SIP/2.0/UDP host.example:5070;branch={b}"),
        format!("SIP/2.0/TLS host.example;branch={b}"),
        format!("SIP/2.0/TLS host.example:5061;branch={b}"),
        format!("SIP/2.0/UDP other.example;branch={b}"),
        "SIP/2.0/UDP host.example;branch=z9hG4bK-two".to_string(),
        "SIP/2.0/UDP host.example;branch=old-style".to_string(),
    ] {
        for (method, cseq) in [("INVITE", "1 INVITE"), ("ACK", "1 ACK"), ("BYE", "2 BYE")] {
            msgs.push(msg(&format!("{method} sip:b@y SIP/2.0"), &via, cseq));
        }
        msgs.push(msg("SIP/2.0 200 OK", &via, "1 INVITE"));
        msgs.push(msg("SIP/2.0 200 OK", &via, "2 BYE"));
        msgs.push(msg("CANCEL sip:b@y SIP/2.0", &via, "1 CANCEL"));
    }
    type Owned = fn(&SipMessage) -> Option<TransactionKey>;
    type Borrowed = for<'a> fn(&'a SipMessage) -> Option<KeyOf<'a>>;
    let forms: [(Owned, Borrowed); 3] = [
        (TransactionKey::for_request, |m| KeyOf::request(m)),
        (TransactionKey::for_response, |m| KeyOf::response(m)),
        (TransactionKey::cancel_target, |m| KeyOf::cancel_target(m)),
    ];
    let mut matched = 0;
    for stored in &msgs {
        for (owned_of, _) in forms {
            let Some(key) = owned_of(stored) else {
                continue;
            };
            for other in &msgs {
                for (owned, borrowed) in forms {
                    let expected = owned(other).as_ref() == Some(&key);
                    assert_eq!(
                        key.matches(borrowed(other)),
                        expected,
                        "{key:?} / {other:?}"
                    );
                    matched += usize::from(expected);
                }
            }
        }
    }
    assert!(
        matched > msgs.len(),
        "the cases include matches across messages"
    );
    // Six messages per Via: INVITE, ACK, BYE, 200 to INVITE, 200 to BYE, CANCEL.
    let invite_key = |via: usize| TransactionKey::for_request(&msgs[via * 6]).unwrap();
    assert!(
        invite_key(0).matches(KeyOf::request(&msgs[6])),
        "host case, port 5060 written"
    );
    assert!(
        invite_key(0).matches(KeyOf::request(&msgs[1])),
        "an ACK names its INVITE"
    );
    assert!(
        invite_key(3).matches(KeyOf::request(&msgs[4 * 6])),
        "TLS defaults to 5061"
    );
    for other_via in [2, 5, 6] {
        assert!(!invite_key(0).matches(KeyOf::request(&msgs[other_via * 6])));
    }
    assert!(
        TransactionKey::for_request(&msgs[7 * 6]).is_none(),
        "no RFC 3261 branch"
    );
}

#[test]
fn transport_error_is_reported_once() {
    let now = Instant::now();
    let mut c = ClientTransaction::new(
        now,
        request(Method::Bye),
        addr(SERVER),
        TransportKind::Tcp,
        TimerConfig::default(),
    )
    .unwrap();
    c.handle_transport_error();
    c.handle_transport_error();
    assert!(matches!(c.poll_event(), Some(Event::TransportError)));
    assert!(c.poll_event().is_none());
    assert!(c.is_terminated());
}

#[test]
fn ten_percent_loss_still_completes_every_transaction() {
    for seed in 1..=60u64 {
        let mut p = Pair::new(
            Method::Invite,
            TransportKind::Udp,
            vec![(180, "Ringing"), (486, "Busy Here")],
        );
        p.rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        p.loss_to_server = 10;
        p.loss_to_client = 10;
        p.drive();
        assert_eq!(
            p.final_responses(),
            [486],
            "seed {seed}: the final reaches the TU exactly once"
        );
        assert!(
            p.server_events.is_empty(),
            "seed {seed}: the ACK got through"
        );

        let mut p = Pair::new(Method::Bye, TransportKind::Udp, vec![(200, "OK")]);
        p.rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        p.loss_to_server = 10;
        p.loss_to_client = 10;
        p.drive();
        assert_eq!(p.final_responses(), [200], "seed {seed}");
        assert!(p.client.is_terminated() && p.server.as_ref().unwrap().is_terminated());
    }
}

#[test]
fn active_until_only_retransmissions_are_left_to_absorb() {
    let now = Instant::now();
    let cfg = TimerConfig::default();
    // Server non-INVITE: active until its final response, which then answers retransmissions.
    let bye = request(Method::Bye);
    let mut s = ServerTransaction::new(bye.clone(), addr(CLIENT), TransportKind::Udp, cfg).unwrap();
    assert!(s.is_active() && s.echo().is_none());
    let ok = build_response(&bye, 200, "OK", &[], Some("t"), None).unwrap();
    s.send_response(now, &ok).unwrap();
    assert!(!s.is_active());
    assert_eq!(s.echo(), Some(ok.bytes()));
    assert_eq!(s.response_dest(), addr(CLIENT));

    // Server INVITE, non-2xx: active (Timer G) until the ACK, then the final is the echo.
    let inv = request(Method::Invite);
    let mut s = ServerTransaction::new(inv.clone(), addr(CLIENT), TransportKind::Udp, cfg).unwrap();
    let busy = build_response(&inv, 486, "Busy Here", &[], Some("t"), None).unwrap();
    s.send_response(now, &busy).unwrap();
    assert!(s.is_active());
    let ack = build_non2xx_ack_for_test(&inv, &busy);
    s.handle_message(now, ack).unwrap();
    assert!(!s.is_active());
    assert_eq!(s.echo(), Some(busy.bytes()));

    // Server INVITE, 2xx: passive at once, and a retransmitted INVITE gets nothing (RFC 6026).
    let mut s = ServerTransaction::new(inv.clone(), addr(CLIENT), TransportKind::Udp, cfg).unwrap();
    let ok = build_response(&inv, 200, "OK", &[], Some("t"), None).unwrap();
    s.send_response(now, &ok).unwrap();
    assert!(!s.is_active() && s.echo().is_none());

    // Client INVITE: active until a final; a non-2xx final leaves its ACK to re-send.
    let mut p = Pair::new(
        Method::Invite,
        TransportKind::Udp,
        vec![(100, "Trying"), (486, "Busy Here")],
    );
    assert!(p.client.is_active());
    p.drive();
    assert!(!p.client.is_active());
    assert_eq!(p.client.dest(), addr(SERVER));
    let acked = p
        .client_sent
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Ack));
    assert_eq!(
        p.client.non_2xx_ack().cloned(),
        acked.map(|(_, m)| m.wire_bytes())
    );
}

/// The ACK a UAC sends for `resp`, as the request that reaches the server.
fn build_non2xx_ack_for_test(
    inv: &SipMessage,
    resp: &crate::message::OutgoingResponse,
) -> SipMessage {
    let resp = SipMessage::parse(resp.bytes().clone()).unwrap();
    SipMessage::parse(crate::message::build_non2xx_ack(inv, &resp)).unwrap()
}

/// The outbox hands entries back oldest first, also beyond its inline room.
#[test]
fn outbox_is_first_in_first_out() {
    let mut o = Outbox::new();
    assert_eq!(o.pop(), None::<u32>);
    for round in 0..3u32 {
        for i in 0..round + 2 {
            o.push(round * 10 + i);
        }
        for i in 0..round + 2 {
            assert_eq!(o.pop(), Some(round * 10 + i));
        }
        assert_eq!(o.pop(), None);
    }
}
