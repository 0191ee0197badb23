//! A scripted caller and callee built on the SIP crate's message model, and an in-process gateway
//! on loopback, for the behaviour tests of the B2B layer.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use callgate::config::Config;
use callgate::plugin::PluginSpec;
use callgate_sip::message::{
    Method, RequestBuilder, SipMessage, build_response, new_call_id, new_tag,
};
use tokio::net::UdpSocket;

pub const WAIT: Duration = Duration::from_secs(5);
pub const SDP: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

pub fn wasm(name: &str) -> PathBuf {
    PathBuf::from(env!("CALLGATE_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

/// A scripted SIP endpoint on a UDP socket.
pub struct Ua {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Ua {
    pub async fn new() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        Self { sock, addr }
    }

    pub async fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.sock.send_to(bytes, to).await.unwrap();
    }

    /// The next message that satisfies `want`, skipping others (retransmissions, 100 Trying).
    pub async fn recv_where(
        &self,
        what: &str,
        want: impl Fn(&SipMessage) -> bool,
    ) -> (SipMessage, SocketAddr) {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap();
            let msg = SipMessage::parse(Bytes::copy_from_slice(&buf[..n]))
                .expect("gateway sent parseable SIP");
            if want(&msg) {
                return (msg, from);
            }
        }
    }

    /// Asserts that nothing arrives for a while (a call the gateway must not have placed).
    pub async fn expect_silence(&self) {
        let mut buf = [0u8; 2048];
        let got =
            tokio::time::timeout(Duration::from_millis(300), self.sock.recv_from(&mut buf)).await;
        assert!(got.is_err(), "expected nothing, got a message");
    }

    pub async fn recv_request(&self, method: Method) -> (SipMessage, SocketAddr) {
        let m = method.clone();
        self.recv_where(&format!("a {}", method.as_str()), move |msg| {
            msg.method() == Some(&m)
        })
        .await
    }

    pub async fn recv_final(&self, cseq_method: Method) -> SipMessage {
        self.recv_where(
            &format!("a final response to {}", cseq_method.as_str()),
            |m| m.status().is_some_and(|s| s >= 200) && m.cseq_method() == &cseq_method,
        )
        .await
        .0
    }

    pub async fn respond(
        &self,
        req: &SipMessage,
        to: SocketAddr,
        status: u16,
        tag: &str,
        extra: &[(&str, &str)],
        sdp: bool,
    ) {
        let contact = format!("<sip:callee@{}>", self.addr);
        let mut hs: Vec<(&str, &str)> = extra.to_vec();
        hs.push(("Contact", &contact));
        let r = build_response(
            req,
            status,
            "Whatever",
            &hs,
            Some(tag),
            sdp.then_some(("application/sdp", SDP)),
        )
        .unwrap();
        self.send(r.bytes(), to).await;
    }
}

/// The caller's side of one call.
pub struct Caller {
    pub ua: Ua,
    pub gw: SocketAddr,
    pub call_id: String,
    pub tag: String,
    pub invite: Option<SipMessage>,
    pub remote_tag: Option<String>,
    pub cseq: u32,
}

impl Caller {
    pub async fn new(gw: SocketAddr) -> Self {
        Self {
            ua: Ua::new().await,
            gw,
            call_id: new_call_id("127.0.0.1"),
            tag: new_tag(),
            invite: None,
            remote_tag: None,
            cseq: 1,
        }
    }

    pub fn build_invite(&self, extra: &[(&str, &str)], max_forwards: u8) -> SipMessage {
        let sent_by = self.ua.addr.to_string();
        let contact = format!("<sip:alice@{}>", self.ua.addr);
        let mut b = RequestBuilder::new(Method::Invite, "sip:bob@127.0.0.1")
            .via("UDP", &sent_by)
            .max_forwards(max_forwards)
            .from("<sip:alice@127.0.0.1>", &self.tag)
            .to("<sip:bob@127.0.0.1>", None)
            .call_id(&self.call_id)
            .cseq(1)
            .contact(&contact);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        b.body("application/sdp", SDP).build().unwrap()
    }

    pub async fn invite(&mut self, extra: &[(&str, &str)]) {
        let inv = self.build_invite(extra, 70);
        self.ua.send(&inv.wire_bytes(), self.gw).await;
        self.invite = Some(inv);
    }

    /// Sends ACK for a 2xx (in-dialog, new branch).
    pub async fn ack(&mut self, resp: &SipMessage) {
        self.remote_tag = resp.to_tag().map(str::to_string);
        let sent_by = self.ua.addr.to_string();
        let ack = RequestBuilder::new(Method::Ack, resp.contact_uri().unwrap())
            .via("UDP", &sent_by)
            .from("<sip:alice@127.0.0.1>", &self.tag)
            .to("<sip:bob@127.0.0.1>", self.remote_tag.as_deref())
            .call_id(&self.call_id)
            .cseq(1)
            .build()
            .unwrap();
        self.ua.send(&ack.wire_bytes(), self.gw).await;
    }

    /// Sends an in-dialog request to the gateway; returns it (to retransmit it).
    pub async fn in_dialog(
        &mut self,
        method: Method,
        extra: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> SipMessage {
        self.cseq += 1;
        let sent_by = self.ua.addr.to_string();
        let contact = format!("<sip:alice@{}>", self.ua.addr);
        let target = format!("sip:callgate@{}", self.gw);
        let mut b = RequestBuilder::new(method, &target)
            .via("UDP", &sent_by)
            .from("<sip:alice@127.0.0.1>", &self.tag)
            .to("<sip:bob@127.0.0.1>", self.remote_tag.as_deref())
            .call_id(&self.call_id)
            .cseq(self.cseq)
            .contact(&contact);
        for (n, v) in extra {
            b = b.header(n, v);
        }
        if let Some((ct, bytes)) = body {
            b = b.body(ct, bytes);
        }
        let req = b.build().unwrap();
        self.ua.send(&req.wire_bytes(), self.gw).await;
        req
    }
}

pub async fn gateway(
    callee: SocketAddr,
    plugins: Vec<PluginSpec>,
    tweak: impl FnOnce(&mut Config),
) -> callgate::Running {
    let mut c = Config::defaults();
    c.listen.udp = "127.0.0.1:0".parse().unwrap();
    c.routing.default_route = Some(format!("sip:bob@{callee}"));
    c.plugins = plugins;
    tweak(&mut c);
    callgate::start(&c).await.expect("gateway starts")
}

/// Sets up an answered call: returns the caller, the callee, and the callee's view of the dialog
/// (the INVITE it got, where the gateway's requests come from, its own tag).
pub async fn answered_call(
    gw: &callgate::Running,
    callee: &Ua,
    extra: &[(&str, &str)],
) -> (Caller, SipMessage, SocketAddr, String) {
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(extra).await;
    let (b_invite, from) = callee.recv_request(Method::Invite).await;
    let tag = new_tag();
    callee.respond(&b_invite, from, 200, &tag, &[], true).await;
    let ok = caller.ua.recv_final(Method::Invite).await;
    assert_eq!(ok.status(), Some(200));
    caller.ack(&ok).await;
    callee.recv_request(Method::Ack).await;
    (caller, b_invite, from, tag)
}
