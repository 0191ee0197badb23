//! The SIP message path's per-message costs: indexing a received message (the INVITE sipp sends,
//! and a callee's 200 OK with SDP) and building the B-leg INVITE. Every call through the gateway
//! parses about seven messages and builds about seven.
//!
//! Run: `cargo bench -p callgate-sip --bench parse`.

use bytes::Bytes;
use callgate_sip::message::{Method, RequestBuilder, SipMessage};
use criterion::{Criterion, criterion_group, criterion_main};

const INVITE: &str = "INVITE sip:bench@127.0.0.1:15060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:15090;branch=z9hG4bK-12345-1-0\r\n\
From: \"sipp\" <sip:sipp@127.0.0.1:15090>;tag=12345SIPpTag001\r\n\
To: <sip:bench@127.0.0.1:15060>\r\n\
Call-ID: 1-12345@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipp@127.0.0.1:15090>\r\n\
Max-Forwards: 70\r\n\
Subject: Callgate test\r\n\
X-Correlation-Id: corr-1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 157\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n";

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 127.0.0.1:15060;branch=z9hG4bKc0ffee1234567890;rport\r\n\
From: <sip:sipp@127.0.0.1:15090>;tag=5d1a2b3c4d5e6f70\r\n\
To: <sip:bench@127.0.0.1:15060>;tag=98765SIPpTag011\r\n\
Call-ID: 0123456789abcdef@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:127.0.0.1:15080;transport=UDP>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=-\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 6000 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

fn bench(c: &mut Criterion) {
    let invite = Bytes::from_static(INVITE.as_bytes());
    let ok = Bytes::from_static(OK.as_bytes());
    assert!(SipMessage::parse(invite.clone()).is_ok());
    assert!(SipMessage::parse(ok.clone()).is_ok());
    c.bench_function("parse: INVITE with SDP", |b| {
        b.iter(|| SipMessage::parse(invite.clone()).unwrap())
    });
    c.bench_function("parse: 200 OK with SDP", |b| {
        b.iter(|| SipMessage::parse(ok.clone()).unwrap())
    });
    let a = SipMessage::parse(invite.clone()).unwrap();
    c.bench_function("build: B-leg INVITE", |b| {
        b.iter(|| {
            RequestBuilder::new(Method::Invite, "sip:127.0.0.1:15080")
                .via("UDP", "127.0.0.1:15060")
                .max_forwards(69)
                .from("\"sipp\" <sip:sipp@127.0.0.1:15090>", "5d1a2b3c4d5e6f70")
                .to("<sip:bench@127.0.0.1:15060>", None)
                .call_id("0123456789abcdef@127.0.0.1")
                .cseq(1)
                .contact("<sip:callgate@127.0.0.1:15060>")
                .header("X-Correlation-Id", "corr-1")
                .body("application/sdp", &a.body())
                .build()
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
