//! Transports on real loopback sockets, bounded in time; assertions on behaviour, never on timing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::message::{Method, RequestBuilder, build_response};

const LIMIT: Duration = Duration::from_secs(5);

fn channel_handler() -> (Handler, mpsc::UnboundedReceiver<Incoming>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Arc::new(move |m| drop(tx.send(m))), rx)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn invite(sent_by: &str, transport: &str) -> SipMessage {
    RequestBuilder::new(Method::Invite, "sip:bob@127.0.0.1")
        .via(transport, sent_by)
        .from("<sip:alice@a>", "ft")
        .to("<sip:bob@b>", None)
        .call_id("cid@test")
        .cseq(1)
        .body("application/sdp", b"v=0\r\n")
        .build()
        .unwrap()
}

/// An OPTIONS from `peer` (its Via names the socket's address) with this Call-ID and CSeq.
fn options_from(peer: &UdpSocket, call_id: &str, cseq: u32) -> Bytes {
    RequestBuilder::new(Method::Options, "sip:gw@127.0.0.1")
        .via("UDP", &peer.local_addr().unwrap().to_string())
        .from("<sip:p@a>", "ft")
        .to("<sip:gw@b>", None)
        .call_id(call_id)
        .cseq(cseq)
        .build_bytes()
        .unwrap()
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Incoming>) -> Incoming {
    timeout(LIMIT, rx.recv())
        .await
        .expect("timed out")
        .expect("channel closed")
}

#[tokio::test]
async fn udp_request_gets_received_rport_and_response_routes_back() {
    let (ha, mut rxa) = channel_handler();
    let (hb, mut rxb) = channel_handler();
    let a = UdpTransport::bind(loopback(), 1, ha).unwrap();
    let b = UdpTransport::bind(loopback(), 1, hb).unwrap();
    // A pretends to be behind NAT: its Via names an address the packet does not come from.
    let req = invite("10.9.9.9:5070", "UDP");
    a.send(&req.wire_bytes(), b.local_addr()).await.unwrap();
    let inc = recv(&mut rxb).await;
    assert_eq!(inc.transport, TransportKind::Udp);
    assert_eq!(inc.source, a.local_addr());
    assert_eq!(inc.msg.top_via().received(), Some("127.0.0.1"));
    assert_eq!(inc.msg.top_via().rport(), Some(Some(a.local_addr().port())));
    assert_eq!(&inc.msg.body()[..], b"v=0\r\n");
    let dest = response_destination(&inc.msg, inc.source, inc.transport);
    assert_eq!(
        dest,
        a.local_addr(),
        "rport wins over the Via port (RFC 3581)"
    );
    let resp = build_response(&inc.msg, 180, "Ringing", &[], Some("tt"), None).unwrap();
    b.try_send(resp.bytes(), dest).unwrap();
    let got = recv(&mut rxa).await;
    assert_eq!(got.msg.status(), Some(180));
    assert_eq!(got.msg.to_tag(), Some("tt"));
}

#[tokio::test]
async fn udp_answers_malformed_request_with_400_and_drops_garbage() {
    let (hb, mut rxb) = channel_handler();
    let b = UdpTransport::bind(loopback(), 1, hb).unwrap();
    let peer = UdpSocket::bind(loopback()).await.unwrap();
    peer.send_to(b"\x00\x01garbage\r\n\r\n", b.local_addr())
        .await
        .unwrap();
    let bad = String::from_utf8(invite("127.0.0.1:1", "UDP").wire_bytes().to_vec())
        .unwrap()
        .replace("Content-Length: 5", "Content-Length: 50");
    peer.send_to(bad.as_bytes(), b.local_addr()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = timeout(LIMIT, peer.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let resp = SipMessage::parse(Bytes::copy_from_slice(&buf[..n])).unwrap();
    assert_eq!(resp.status(), Some(400));
    assert_eq!(resp.reason(), Some("Bad Request (Content-Length mismatch)"));
    assert!(resp.to_tag().is_some());
    // Neither the garbage nor the bad request reached the consumer: the next message is the good one.
    peer.send_to(&invite("127.0.0.1:1", "UDP").wire_bytes(), b.local_addr())
        .await
        .unwrap();
    let inc = recv(&mut rxb).await;
    assert_eq!(inc.msg.header("Content-Length"), Some("5"));
}

#[tokio::test]
async fn udp_receiver_group_spreads_peers_keeps_each_in_order_and_stops_on_close() {
    const PEERS: usize = 16;
    const ROUNDS: u32 = 10;
    const BURST: u32 = 5;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |m: Incoming| {
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        drop(tx.send((m.source, m.msg.cseq(), thread)));
    });
    let gw = UdpTransport::bind(loopback(), 3, handler.clone()).unwrap();
    let mut peers = Vec::new();
    for _ in 0..PEERS {
        peers.push(UdpSocket::bind(loopback()).await.unwrap());
    }
    let mut seen: std::collections::HashMap<SocketAddr, Vec<u32>> = Default::default();
    let mut threads = std::collections::HashSet::new();
    // Bursts in flight from every peer at once, bounded so the socket buffers never overflow.
    for round in 0..ROUNDS {
        for peer in &peers {
            for k in 1..=BURST {
                let msg = options_from(peer, "group@test", round * BURST + k);
                peer.send_to(&msg, gw.local_addr()).await.unwrap();
            }
        }
        for _ in 0..PEERS * BURST as usize {
            let (source, cseq, thread) = timeout(LIMIT, rx.recv()).await.unwrap().unwrap();
            seen.entry(source).or_default().push(cseq);
            threads.insert(thread);
        }
    }
    assert_eq!(seen.len(), PEERS);
    for (peer, cseqs) in &seen {
        let expected: Vec<u32> = (1..=ROUNDS * BURST).collect();
        assert_eq!(cseqs, &expected, "{peer}'s messages out of order or lost");
    }
    assert!(
        threads.len() > 1 && threads.iter().all(|t| t.starts_with("sip-udp-")),
        "{threads:?}"
    );
    // Closing stops every receive thread, and each drops its handler.
    gw.close();
    let deadline = tokio::time::Instant::now() + LIMIT;
    while Arc::strong_count(&handler) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "receive threads still running"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_panic_while_handling_one_datagram_does_not_stop_the_receiver() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |m: Incoming| {
        assert_ne!(m.msg.cseq(), 1, "handler bug tripped by CSeq 1");
        drop(tx.send(m));
    });
    let gw = UdpTransport::bind(loopback(), 1, handler).unwrap();
    let peer = UdpSocket::bind(loopback()).await.unwrap();
    for cseq in [1, 2] {
        let msg = options_from(&peer, "panic@test", cseq);
        peer.send_to(&msg, gw.local_addr()).await.unwrap();
    }
    assert_eq!(recv(&mut rx).await.msg.cseq(), 2);
    gw.close();
}

#[tokio::test]
async fn tcp_frames_by_content_length_and_replies_on_the_same_connection() {
    let (hb, mut rxb) = channel_handler();
    let b = TcpTransport::bind(loopback(), hb, TcpConfig::default())
        .await
        .unwrap();
    let mut peer = TcpStream::connect(b.local_addr()).await.unwrap();
    let one = invite("127.0.0.1:1", "TCP").wire_bytes();
    let mut two = BytesMut::from(&b"\r\n\r\n"[..]); // keep-alive first
    two.extend_from_slice(&one);
    two.extend_from_slice(&one);
    two.extend_from_slice(&one[..40]);
    peer.write_all(&two).await.unwrap();
    for _ in 0..2 {
        let inc = recv(&mut rxb).await;
        assert_eq!(inc.transport, TransportKind::Tcp);
        assert_eq!(&inc.msg.body()[..], b"v=0\r\n");
    }
    peer.write_all(&one[40..]).await.unwrap();
    let inc = recv(&mut rxb).await;
    assert_eq!(inc.msg.method(), Some(&Method::Invite));
    let dest = response_destination(&inc.msg, inc.source, inc.transport);
    assert_eq!(dest, peer.local_addr().unwrap());
    let resp = build_response(&inc.msg, 200, "OK", &[], Some("t"), None).unwrap();
    b.send(resp.bytes().clone(), dest).await.unwrap();
    let mut rbuf = BytesMut::new();
    let frame = timeout(LIMIT, async {
        loop {
            if let Some(f) = next_frame(&mut rbuf, 65_535).unwrap() {
                return f;
            }
            assert_ne!(peer.read_buf(&mut rbuf).await.unwrap(), 0, "closed early");
        }
    })
    .await
    .unwrap();
    assert_eq!(SipMessage::parse(frame).unwrap().status(), Some(200));
}

#[tokio::test]
async fn tcp_opens_a_connection_to_send_and_receives_the_answer() {
    let (ha, mut rxa) = channel_handler();
    let (hb, mut rxb) = channel_handler();
    let a = TcpTransport::bind(loopback(), ha, TcpConfig::default())
        .await
        .unwrap();
    let b = TcpTransport::bind(loopback(), hb, TcpConfig::default())
        .await
        .unwrap();
    a.send(invite("127.0.0.1:1", "TCP").wire_bytes(), b.local_addr())
        .await
        .unwrap();
    let inc = recv(&mut rxb).await;
    let resp = build_response(&inc.msg, 486, "Busy Here", &[], Some("t"), None).unwrap();
    b.send(resp.bytes().clone(), inc.source).await.unwrap();
    assert_eq!(recv(&mut rxa).await.msg.status(), Some(486));
}

#[tokio::test]
async fn tcp_overflow_closes_the_connection() {
    let (hb, mut rxb) = channel_handler();
    let cfg = TcpConfig {
        max_message_size: 1024,
        ..TcpConfig::default()
    };
    let b = TcpTransport::bind(loopback(), hb, cfg).await.unwrap();
    let mut peer = TcpStream::connect(b.local_addr()).await.unwrap();
    let big = String::from_utf8(invite("127.0.0.1:1", "TCP").wire_bytes().to_vec())
        .unwrap()
        .replace("Content-Length: 5", "Content-Length: 5000");
    peer.write_all(big.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = timeout(LIMIT, peer.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the gateway hangs up on an oversized message");
    assert!(rxb.try_recv().is_err());
    let err = b
        .send(Bytes::from(vec![b'x'; 2000]), peer.local_addr().unwrap())
        .await;
    assert!(matches!(
        err,
        Err(TransportError::TooLarge {
            size: 2000,
            max: 1024
        })
    ));
}

#[test]
fn framer_waits_skips_keepalives_and_refuses_bad_lengths() {
    let msg = invite("h", "TCP").wire_bytes();
    let mut buf = BytesMut::from(&b"\r\n"[..]);
    buf.extend_from_slice(&msg[..msg.len() - 1]);
    assert_eq!(next_frame(&mut buf, 65_535), Ok(None));
    buf.extend_from_slice(&msg[msg.len() - 1..]);
    assert_eq!(next_frame(&mut buf, 65_535), Ok(Some(msg.clone())));
    assert!(buf.is_empty());
    let mut bad = BytesMut::from(&b"OPTIONS sip:a SIP/2.0\r\nl: x\r\n\r\n"[..]);
    assert_eq!(
        next_frame(&mut bad, 65_535),
        Err(FrameError::BadContentLength)
    );
    let mut endless = BytesMut::from(&vec![b'a'; 2000][..]);
    assert_eq!(
        next_frame(&mut endless, 1024),
        Err(FrameError::TooLarge { max: 1024 })
    );
}

#[test]
fn response_destination_follows_18_2_2() {
    let src: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let m = |via: &str| {
        SipMessage::parse(Bytes::from(format!(
            "OPTIONS sip:a SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a>;tag=1\r\nTo: <sip:b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
        )))
        .unwrap()
    };
    let d = |via: &str, t| response_destination(&m(via), src, t);
    assert_eq!(
        d(
            "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1",
            TransportKind::Udp
        ),
        "10.0.0.1:5070".parse().unwrap()
    );
    assert_eq!(
        d("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1", TransportKind::Udp),
        "10.0.0.1:5060".parse().unwrap()
    );
    assert_eq!(
        d(
            "SIP/2.0/UDP 10.0.0.1:5070;received=192.0.2.1;branch=z9hG4bK1",
            TransportKind::Udp
        ),
        "192.0.2.1:5070".parse().unwrap()
    );
    assert_eq!(
        d(
            "SIP/2.0/UDP 10.0.0.1:5070;received=192.0.2.1;rport=40000",
            TransportKind::Udp
        ),
        src
    );
    assert_eq!(d("SIP/2.0/UDP host.example:5070", TransportKind::Udp), src);
    assert_eq!(d("SIP/2.0/TCP 10.0.0.1:5070", TransportKind::Tcp), src);
}
