//! Self-test of the scriptable UA (`ua.rs`): a caller `Ua` calls a callee `Ua` directly over
//! loopback, no gateway. Also the shortest example of how behaviour tests use it.
//!
//! Wire as a test target of the `host` crate, e.g.
//! `[[test]] name = "ua_selftest"  path = "../tests/support/ua_selftest.rs"`.

#[path = "ua.rs"]
mod ua;

use ua::{Dialog, Msg, Ua, WAIT, sdp};

/// Basic call: INVITE / 180 / 200 / ACK / BYE / 200, with header pass-through checks.
#[tokio::test]
async fn invite_ringing_answer_ack_bye() {
    let mut callee = Ua::bind().await.with_user("bob");
    let mut caller = Ua::bind()
        .await
        .with_user("alice")
        .with_peer(callee.local_addr());

    let invite = caller
        .invite(&format!("sip:bob@{}", callee.local_addr()))
        .header("X-Correlation-Id", "corr-1")
        .sdp(&sdp(40000))
        .send()
        .await;

    let inv = callee.recv_request("INVITE", WAIT).await;
    assert_eq!(inv.header("x-correlation-id"), Some("corr-1"));
    assert_eq!(inv.via_branch(), invite.via_branch());
    assert!(inv.body_str().contains("m=audio 40000 RTP/AVP 0 8 101"));

    callee.respond(&inv, 100, "Trying").send().await;
    let ringing = callee.respond(&inv, 180, "Ringing").send().await;
    let ok_sent = callee
        .respond(&inv, 200, "OK")
        .header("X-Handled-By", "callgate")
        .sdp(&sdp(40002))
        .send()
        .await;
    assert_eq!(
        ringing.to_tag(),
        ok_sent.to_tag(),
        "180 and 200 carry the same To tag"
    );

    let trying = caller.recv_response(WAIT).await;
    assert_eq!(trying.status(), Some(100));
    assert_eq!(trying.to_tag(), None);
    let ok = caller.recv_final(WAIT).await; // skips the 180
    assert_eq!(ok.status(), Some(200));
    assert_eq!(ok.header("X-HANDLED-BY"), Some("callgate"));
    assert_eq!(ok.cseq(), Some((1, "INVITE".to_string())));
    assert_eq!(
        ok.contact_uri(),
        Some(format!("sip:bob@{}", callee.local_addr()))
    );

    let mut dialog = caller.ack_2xx(&invite, &ok).await;
    let ack = callee.recv_request("ACK", WAIT).await;
    assert_eq!(ack.cseq(), Some((1, "ACK".to_string())));
    assert_eq!(
        ack.request_uri(),
        Some(format!("sip:bob@{}", callee.local_addr()).as_str())
    );
    assert_ne!(
        ack.via_branch(),
        invite.via_branch(),
        "ACK for 2xx is a new transaction"
    );

    caller.bye(&mut dialog).await;
    let bye = callee.recv_request("BYE", WAIT).await;
    assert_eq!(bye.cseq(), Some((2, "BYE".to_string())));
    assert_eq!(bye.to_tag(), ok.to_tag());
    assert_eq!(bye.from_tag(), invite.from_tag());
    callee.respond(&bye, 200, "OK").send().await;
    let bye_ok = caller.recv_status(200, "BYE", WAIT).await;
    assert_eq!(bye_ok.call_id(), invite.call_id());
}

/// The callee hangs up: BYE built by the UAS from its dialog view (From/To swapped).
#[tokio::test]
async fn callee_hangs_up() {
    let mut callee = Ua::bind().await;
    let mut caller = Ua::bind().await.with_peer(callee.local_addr());
    let invite = caller
        .invite(&format!("sip:bob@{}", callee.local_addr()))
        .sdp(&sdp(40000))
        .send()
        .await;
    let inv = callee.recv_request("INVITE", WAIT).await;
    let ok_sent = callee
        .respond(&inv, 200, "OK")
        .sdp(&sdp(40002))
        .send()
        .await;
    let ok = caller.recv_final(WAIT).await;
    let _ = caller.ack_2xx(&invite, &ok).await;
    callee.recv_request("ACK", WAIT).await;

    let mut dialog = Dialog::uas(&inv, &ok_sent);
    callee.bye(&mut dialog).await;
    let bye = caller.recv_request("BYE", WAIT).await;
    assert_eq!(bye.from_tag(), ok_sent.to_tag());
    assert_eq!(bye.to_tag(), invite.from_tag());
    assert_eq!(bye.cseq(), Some((101, "BYE".to_string())));
    assert_eq!(bye.request_uri().map(str::to_string), invite.contact_uri());
    caller.respond(&bye, 200, "OK").send().await;
    callee.recv_status(200, "BYE", WAIT).await;
}

/// CANCEL while ringing: 200 for the CANCEL, 487 for the INVITE, ACK on the INVITE's branch.
#[tokio::test]
async fn cancel_while_ringing() {
    let mut callee = Ua::bind().await;
    let mut caller = Ua::bind().await.with_peer(callee.local_addr());
    let invite = caller
        .invite(&format!("sip:bob@{}", callee.local_addr()))
        .sdp(&sdp(40000))
        .send()
        .await;
    let inv = callee.recv_request("INVITE", WAIT).await;
    callee.respond(&inv, 180, "Ringing").send().await;
    assert_eq!(caller.recv_response(WAIT).await.status(), Some(180));

    let cancel = caller.cancel(&invite).await;
    assert_eq!(cancel.via_branch(), invite.via_branch());
    let c = callee.recv_request("CANCEL", WAIT).await;
    assert_eq!(c.cseq(), Some((1, "CANCEL".to_string())));
    assert_eq!(c.to_tag(), None);
    callee.respond(&c, 200, "OK").send().await;
    callee.respond(&inv, 487, "Request Terminated").send().await;

    assert_eq!(
        caller.recv_status(200, "CANCEL", WAIT).await.status(),
        Some(200)
    );
    let terminated = caller.recv_status(487, "INVITE", WAIT).await;
    caller.ack_non2xx(&invite, &terminated).await;
    let ack = callee.recv_request("ACK", WAIT).await;
    assert_eq!(
        ack.via_branch(),
        invite.via_branch(),
        "ACK for non-2xx shares the INVITE's branch"
    );
    assert_eq!(ack.to_tag(), terminated.to_tag());
}

/// Retransmissions are skipped; out-of-order arrivals are kept for later waits.
#[tokio::test]
async fn skips_retransmissions_and_keeps_backlog() {
    let mut a = Ua::bind().await;
    let b = Ua::bind().await;
    let text = "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK1\r\n\
                f: <sip:b@127.0.0.1>;tag=1\r\nt: <sip:a@127.0.0.1>\r\ni: x@y\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n";
    b.send_raw(text.as_bytes(), a.local_addr()).await;
    b.send_raw(text.as_bytes(), a.local_addr()).await; // retransmission
    let resp = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK2\nCall-ID: y@z\nCSeq: 8 INFO\n\n";
    b.send_raw(resp.as_bytes(), a.local_addr()).await;

    let r = a.recv_response(ua::WAIT).await; // the request is kept in the backlog
    assert_eq!(r.cseq(), Some((8, "INFO".to_string())));
    let o = a.recv_request("OPTIONS", WAIT).await;
    assert_eq!(o.call_id(), Some("x@y"), "compact i: is Call-ID");
    assert_eq!(o.from_tag().as_deref(), Some("1"));
    a.expect_silence(std::time::Duration::from_millis(200))
        .await;
}

/// The parser copes with folding, comma-joined Vias, LF-only lines and a short body.
#[test]
fn parser_tolerance() {
    let peer = "127.0.0.1:5060".parse().unwrap();
    let raw = b"INVITE sip:b@127.0.0.1 SIP/2.0\n\
        v: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKa, SIP/2.0/UDP 127.0.0.1:2;branch=z9hG4bKb\n\
        Subject: folded\n  line\n\
        From: \"A, B\" <sip:a@x>;tag=ft\nTo: <sip:b@y;tag=not-a-param>\nCall-ID: c\nCSeq: 3 INVITE\n\
        Content-Length: 4\n\nbodyEXTRA";
    let m = Msg::parse(raw, peer).unwrap();
    assert_eq!(m.headers("Via").len(), 2);
    assert_eq!(m.via_branch().as_deref(), Some("z9hG4bKa"));
    assert_eq!(m.header("subject"), Some("folded line"));
    assert_eq!(m.from_tag().as_deref(), Some("ft"));
    assert_eq!(m.to_tag(), None, "a ;tag inside <...> belongs to the URI");
    assert_eq!(m.body(), b"body");
    assert!(Msg::parse(b"SIP/2.0  OK\r\n\r\n", peer).is_err());
    assert!(Msg::parse(b"INVITE sip:x SIP/2.0\r\nNoColon\r\n\r\n", peer).is_err());
}
