//! B2B flows through the in-process gateway on real loopback sockets, driven by two scripted user
//! agents (caller and callee) built on the SIP crate's message model: the flows sipp's scenarios do
//! not reach (in-dialog requests, REFER, plugin decisions and failure policies, limits, TCP).

use std::time::Duration;

use bytes::Bytes;
use callgate::plugin::PluginSpec;
use callgate::plugin::decision::CallOutcome;
use callgate_sip::message::{Method, RequestBuilder, build_response, new_call_id};
use serde_json::json;

#[path = "support/b2b_ua.rs"]
mod b2b_ua;
#[path = "support/http.rs"]
mod http;
use b2b_ua::*;

#[tokio::test]
async fn options_is_answered_and_unknown_dialogs_get_481() {
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |_| {}).await;
    let ua = Ua::new().await;
    let sent_by = ua.addr.to_string();
    let opt = RequestBuilder::new(Method::Options, "sip:callgate@127.0.0.1")
        .via("UDP", &sent_by)
        .from("<sip:alice@127.0.0.1>", "t1")
        .to("<sip:callgate@127.0.0.1>", None)
        .call_id("opt-1@127.0.0.1")
        .cseq(1)
        .build()
        .unwrap();
    ua.send(&opt.wire_bytes(), gw.gateway.udp_addr()).await;
    let r = ua.recv_final(Method::Options).await;
    assert_eq!(r.status(), Some(200));
    assert!(r.header("Allow").unwrap().contains("INVITE"));

    let bye = RequestBuilder::new(Method::Bye, "sip:callgate@127.0.0.1")
        .via("UDP", &sent_by)
        .from("<sip:alice@127.0.0.1>", "t1")
        .to("<sip:callgate@127.0.0.1>", Some("nosuchtag"))
        .call_id("no-such-call@127.0.0.1")
        .cseq(2)
        .build()
        .unwrap();
    ua.send(&bye.wire_bytes(), gw.gateway.udp_addr()).await;
    assert_eq!(ua.recv_final(Method::Bye).await.status(), Some(481));
}

#[tokio::test]
async fn max_forwards_zero_gets_483_and_a_looped_invite_482() {
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |_| {}).await;
    let caller = Caller::new(gw.gateway.udp_addr()).await;
    let inv = caller.build_invite(&[], 0);
    caller
        .ua
        .send(&inv.wire_bytes(), gw.gateway.udp_addr())
        .await;
    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(483)
    );

    // An INVITE that already went through this gateway (our Via is in its list) is a loop.
    let caller = Caller::new(gw.gateway.udp_addr()).await;
    let inv = caller.build_invite(&[], 70);
    let our_via = format!(
        "Via: SIP/2.0/UDP {};branch=z9hG4bKloop1\r\n",
        gw.gateway.udp_addr()
    );
    let text = String::from_utf8_lossy(&inv.wire_bytes()).replacen(
        "Max-Forwards",
        &format!("{our_via}Max-Forwards"),
        1,
    );
    caller.ua.send(text.as_bytes(), gw.gateway.udp_addr()).await;
    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(482)
    );

    // Neither reached the callee.
    callee.expect_silence().await;
}

#[tokio::test]
async fn in_dialog_requests_are_relayed_with_plugin_edits_on_their_responses() {
    let callee = Ua::new().await;
    let probe =
        PluginSpec::new("probe", wasm("probe")).with_config(json!({ "tag": "p", "echo": true }));
    let gw = gateway(callee.addr, vec![probe], |_| {}).await;
    let (mut caller, b_invite, b_from, b_tag) = answered_call(
        &gw,
        &callee,
        &[
            ("Session-Expires", "1800;refresher=uac"),
            ("Supported", "timer"),
        ],
    )
    .await;
    // The plugin read the call's facts in on-invite, before the B leg had a Call-ID...
    let a_call_id = caller.call_id.clone();
    let a_uri = caller
        .invite
        .as_ref()
        .unwrap()
        .request_uri()
        .unwrap()
        .to_string();
    assert_eq!(
        b_invite.header("X-Probe-Call"),
        Some(format!("{a_call_id} - {a_uri}").as_str())
    );
    // Session timers pass end to end so the parties refresh the session themselves.
    assert_eq!(
        b_invite.header("Session-Expires"),
        Some("1800;refresher=uac")
    );

    for (method, body) in [
        (Method::Invite, Some(("application/sdp", SDP))),
        (Method::Update, Some(("application/sdp", SDP))),
        (
            Method::Info,
            Some((
                "application/dtmf-relay",
                &b"Signal=5\r\nDuration=160\r\n"[..],
            )),
        ),
    ] {
        caller
            .in_dialog(method.clone(), &[("X-Mid", "m1")], body)
            .await;
        let (req, from) = callee.recv_request(method.clone()).await;
        assert_eq!(
            req.call_id(),
            b_invite.call_id(),
            "relayed inside the B dialog"
        );
        assert_eq!(req.header("X-Mid"), Some("m1"));
        assert_eq!(req.body(), Bytes::from_static(body.unwrap().1));
        callee
            .respond(
                &req,
                from,
                200,
                &b_tag,
                &[
                    ("X-From-Callee", "yes"),
                    ("X-Echo", "one: 1"),
                    ("X-Echo", "two"),
                ],
                method == Method::Invite,
            )
            .await;
        let resp = caller.ua.recv_final(method.clone()).await;
        assert_eq!(resp.status(), Some(200), "{}", method.as_str());
        assert_eq!(resp.header("X-From-Callee"), Some("yes"));
        assert_eq!(
            resp.header("X-Probe-Seen"),
            Some(format!("p:b:{}:200", method.as_str()).as_str()),
            "the plugin's on-response edit reaches the caller"
        );
        // ...and again here, where the B leg's Call-ID is known (the SDK asks the host for it
        // until it is), with the response's headers, in order and with a colon inside a value.
        assert_eq!(
            resp.header("X-Probe-Call"),
            Some(format!("{a_call_id} {} {a_uri}", b_invite.call_id()).as_str())
        );
        assert_eq!(resp.header("X-Probe-Echo"), Some("one: 1,two"));
        if method == Method::Invite {
            // The gateway ACKs the callee's 2xx to the re-INVITE itself.
            callee.recv_request(Method::Ack).await;
            caller.ack(&resp).await;
        }
    }
    let _ = b_from;

    // The callee hangs up: the caller gets a BYE, the call ends as answered.
    let bye = RequestBuilder::new(
        Method::Bye,
        &format!("sip:callgate@{}", gw.gateway.udp_addr()),
    )
    .via("UDP", &callee.addr.to_string())
    .from("<sip:bob@127.0.0.1>", &b_tag)
    .to("<sip:alice@127.0.0.1>", b_invite.from_tag())
    .call_id(b_invite.call_id())
    .cseq(10)
    .build()
    .unwrap();
    callee.send(&bye.wire_bytes(), gw.gateway.udp_addr()).await;
    assert_eq!(callee.recv_final(Method::Bye).await.status(), Some(200));
    let (a_bye, from) = caller.ua.recv_request(Method::Bye).await;
    let r = build_response(&a_bye, 200, "OK", &[], None, None).unwrap();
    caller.ua.send(r.bytes(), from).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.metrics.calls_ended(CallOutcome::Answered), 1);
}

#[tokio::test]
async fn refer_is_rejected_by_default_and_passed_when_a_plugin_says_so() {
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |_| {}).await;
    let (mut caller, ..) = answered_call(&gw, &callee, &[]).await;
    caller
        .in_dialog(
            Method::Refer,
            &[("Refer-To", "<sip:carol@127.0.0.1>")],
            None,
        )
        .await;
    assert_eq!(
        caller.ua.recv_final(Method::Refer).await.status(),
        Some(403)
    );

    let guard = PluginSpec::new("tg", wasm("transfer-guard"))
        .with_config(json!({ "rules": [{ "match": "sip:carol@*", "action": "pass" }] }));
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![guard], |c| {
        c.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let (mut caller, _, _, b_tag) = answered_call(&gw, &callee, &[]).await;
    caller
        .in_dialog(
            Method::Refer,
            &[("Refer-To", "<sip:carol@127.0.0.1>")],
            None,
        )
        .await;
    let (refer, from) = callee.recv_request(Method::Refer).await;
    assert_eq!(refer.header("Refer-To"), Some("<sip:carol@127.0.0.1>"));
    callee.respond(&refer, from, 202, &b_tag, &[], false).await;
    assert_eq!(
        caller.ua.recv_final(Method::Refer).await.status(),
        Some(202)
    );
    // The plugin's own counter (contract 0.1.1 `metrics`) reaches the metrics endpoint.
    let text = http::metrics(gw.metrics_addr.unwrap()).await;
    assert!(
        text.contains("callgate_plugin_counter_total{plugin=\"tg\",name=\"refer_passed\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn plugin_rejects_and_redirects_reach_the_caller_and_no_b_leg_is_placed() {
    let callee = Ua::new().await;
    let probe = PluginSpec::new("probe", wasm("probe")).with_config(json!({ "tag": "p" }));
    let gw = gateway(callee.addr, vec![probe], |_| {}).await;
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(&[("X-Probe-Reject-p", "486")]).await;
    let r = caller.ua.recv_final(Method::Invite).await;
    assert_eq!(r.status(), Some(486));
    assert_eq!(r.reason(), Some("probe p rejects"));
    assert_eq!(r.header("X-Rejected-By"), Some("p"));

    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller
        .invite(&[("X-Probe-Redirect-p", "sip:elsewhere@127.0.0.1")])
        .await;
    let r = caller.ua.recv_final(Method::Invite).await;
    assert_eq!(r.status(), Some(302));
    assert_eq!(r.contact_uri(), Some("sip:elsewhere@127.0.0.1"));

    // Neither call reached the callee.
    callee.expect_silence().await;
}

#[tokio::test]
async fn a_failing_plugin_with_the_reject_policy_answers_503_and_others_go_on() {
    let callee = Ua::new().await;
    let mut bad = PluginSpec::new("misbehave", wasm("misbehave")).rejecting(503);
    bad.deadline_ms = 50;
    let gw = gateway(callee.addr, vec![bad], |_| {}).await;
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(&[("X-Misbehave", "trap")]).await;
    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(503)
    );
    // The next call is unaffected and gets the plugin's header at the far end.
    let (_, b_invite, ..) = answered_call(&gw, &callee, &[]).await;
    assert_eq!(b_invite.header("X-Survived"), Some("yes"));
}

#[tokio::test]
async fn a_call_over_tcp_is_bridged_to_a_udp_callee() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |c| {
        c.listen.tcp = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let tcp_addr = gw.gateway.tcp_addr().unwrap();
    let mut conn = tokio::net::TcpStream::connect(tcp_addr).await.unwrap();
    let local = conn.local_addr().unwrap().to_string();
    let call_id = new_call_id("127.0.0.1");
    let contact = format!("<sip:alice@{local};transport=tcp>");
    let inv = RequestBuilder::new(Method::Invite, "sip:bob@127.0.0.1")
        .via("TCP", &local)
        .from("<sip:alice@127.0.0.1>", "tcp-tag")
        .to("<sip:bob@127.0.0.1>", None)
        .call_id(&call_id)
        .cseq(1)
        .contact(&contact)
        .body("application/sdp", SDP)
        .build()
        .unwrap();
    conn.write_all(&inv.wire_bytes()).await.unwrap();
    let (b_invite, from) = callee.recv_request(Method::Invite).await;
    callee
        .respond(&b_invite, from, 200, "b-tag", &[], true)
        .await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let text = loop {
        let n = tokio::time::timeout(WAIT, conn.read(&mut buf))
            .await
            .expect("200 over TCP")
            .unwrap();
        assert!(n > 0, "connection closed");
        got.extend_from_slice(&buf[..n]);
        let t = String::from_utf8_lossy(&got).to_string();
        if t.contains("SIP/2.0 200") {
            break t;
        }
    };
    assert!(text.contains(&call_id), "{text}");
}

/// CANCEL racing the callee's 200: the caller gets its 487, and the callee's answered leg is ACKed
/// and hung up instead of being left open.
#[tokio::test]
async fn a_200_racing_the_cancel_is_acked_and_hung_up() {
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |_| {}).await;
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(&[]).await;
    let (b_invite, from) = callee.recv_request(Method::Invite).await;
    callee
        .respond(&b_invite, from, 180, "b-tag", &[], false)
        .await;

    // The caller cancels (same branch as its INVITE).
    let inv = caller.invite.clone().unwrap();
    let cancel = callgate_sip::message::build_cancel(&inv, &[]).unwrap();
    caller
        .ua
        .send(&cancel.wire_bytes(), gw.gateway.udp_addr())
        .await;
    let (b_cancel, cfrom) = callee.recv_request(Method::Cancel).await;
    // ...but the callee answers the INVITE before it sees the CANCEL.
    callee
        .respond(&b_invite, from, 200, "b-tag", &[], true)
        .await;
    callee
        .respond(&b_cancel, cfrom, 481, "b-tag", &[], false)
        .await;

    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(487)
    );
    callee.recv_request(Method::Ack).await;
    let (bye, bfrom) = callee.recv_request(Method::Bye).await;
    assert_eq!(bye.call_id(), b_invite.call_id());
    callee.respond(&bye, bfrom, 200, "b-tag", &[], false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(gw.metrics.calls_ended(CallOutcome::Cancelled), 1);
}

/// Once a call has ended and its transactions are quiet, its actor stops and what is left answers
/// retransmissions: the caller's BYE retransmitted (its 200 was lost) gets 200 again, the callee's
/// 200 to the INVITE retransmitted (our ACK was lost) is ACKed again, and a new request in the
/// ended dialog gets 481.
#[tokio::test]
async fn an_ended_call_still_answers_retransmissions_after_its_actor_stopped() {
    let callee = Ua::new().await;
    let gw = gateway(callee.addr, vec![], |_| {}).await;
    let (mut caller, b_invite, from, b_tag) = answered_call(&gw, &callee, &[]).await;
    let bye = caller.in_dialog(Method::Bye, &[], None).await;
    let (b_bye, bfrom) = callee.recv_request(Method::Bye).await;
    callee.respond(&b_bye, bfrom, 200, &b_tag, &[], false).await;
    let ok = caller.ua.recv_final(Method::Bye).await;
    assert_eq!(ok.status(), Some(200));

    // The actor goes as soon as the callee's 200 to our BYE is in.
    let mut waited = 0;
    while gw.metrics.call_actors() > 0 && waited < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(
        gw.metrics.call_actors(),
        0,
        "the ended call's actor stopped"
    );

    caller
        .ua
        .send(&bye.wire_bytes(), gw.gateway.udp_addr())
        .await;
    let again = caller.ua.recv_final(Method::Bye).await;
    assert_eq!(
        again.status(),
        Some(200),
        "the retransmitted BYE is answered as before"
    );
    assert_eq!(again.to_tag(), ok.to_tag());

    callee
        .respond(&b_invite, from, 200, &b_tag, &[], true)
        .await;
    let (ack, _) = callee.recv_request(Method::Ack).await;
    assert_eq!(
        ack.call_id(),
        b_invite.call_id(),
        "the retransmitted 200 is ACKed again"
    );

    caller.in_dialog(Method::Info, &[], None).await;
    assert_eq!(caller.ua.recv_final(Method::Info).await.status(), Some(481));
    callee.expect_silence().await;
}
