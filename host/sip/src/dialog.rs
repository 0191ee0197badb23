//! RFC 3261 12 dialogs: identity, state, and in-dialog request creation. Sans-IO and synchronous.
//!
//! Call order for the B2B actor: create with [`Dialog::uac`] (on a 1xx-with-tag or 2xx to our INVITE)
//! or [`Dialog::uas`] (when we answer an INVITE with a tag); check each incoming in-dialog request with
//! [`Dialog::recv_request`] (answer 500 on `Err(CSeqOutOfOrder)`, 12.2.2); create requests with
//! [`Dialog::request`] / [`Dialog::ack`], add our Via and body, `build()`, and send them to the first
//! Route's or the Request-URI's address through a client transaction (ACK: directly).

use crate::message::{Method, RequestBuilder, SipMessage, name_addr_uri};

/// A dialog's identity (RFC 3261 12): Call-ID plus the local and remote tags. For a UAC the local tag
/// is the From tag and the remote tag the To tag; for a UAS it is the reverse (12.1.1, 12.1.2). So both
/// legs of one call in a B2BUA have different ids, and an incoming request is looked up with
/// [`DialogId::for_incoming`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// The Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog an incoming in-dialog request belongs to (local = To tag, remote = From
    /// tag); `None` if either tag is missing (then it is not an in-dialog request).
    pub fn for_incoming(req: &SipMessage) -> Option<DialogId> {
        Some(DialogId {
            call_id: req.call_id().to_owned(),
            local_tag: req.to_tag()?.to_owned(),
            remote_tag: req.from_tag()?.to_owned(),
        })
    }
}

/// Why a dialog could not be created or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    /// The response or request lacks a tag the dialog needs.
    #[error("missing {0} tag")]
    MissingTag(&'static str),
    /// No usable Contact (the remote target, RFC 3261 12.1.1).
    #[error("missing Contact")]
    MissingContact,
    /// A request's CSeq is lower than (or, except for ACK/CANCEL, equal to) the last one (12.2.2): 500.
    #[error("CSeq out of order")]
    CSeqOutOfOrder,
    /// The message does not belong to this dialog.
    #[error("not in this dialog")]
    NotMatching,
}

/// One dialog's state (12.1): id, local and remote URIs, CSeq counters, remote target and route set.
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    local_uri: String,
    remote_uri: String,
    local_seq: u32,
    remote_seq: Option<u32>,
    remote_target: String,
    route_set: Vec<String>,
}

impl Dialog {
    /// UAC side (12.1.2), from our INVITE and a response carrying a To tag: route set = the
    /// response's Record-Route reversed, remote target = its Contact, local CSeq = the INVITE's.
    pub fn uac(invite: &SipMessage, resp: &SipMessage) -> Result<Dialog, DialogError> {
        let mut route_set: Vec<String> = resp.record_routes().map(str::to_owned).collect();
        route_set.reverse();
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id().to_owned(),
                local_tag: invite
                    .from_tag()
                    .ok_or(DialogError::MissingTag("From"))?
                    .to_owned(),
                remote_tag: resp
                    .to_tag()
                    .ok_or(DialogError::MissingTag("To"))?
                    .to_owned(),
            },
            local_uri: format!("<{}>", invite.from_uri()),
            remote_uri: format!("<{}>", invite.to_uri()),
            local_seq: invite.cseq(),
            remote_seq: None,
            remote_target: resp
                .contact_uri()
                .ok_or(DialogError::MissingContact)?
                .to_owned(),
            route_set,
        })
    }

    /// UAS side (12.1.1), from the INVITE and the tag we put in our To: route set = its Record-Route
    /// in order, remote target = its Contact, remote CSeq = its CSeq, local CSeq starts empty (0).
    pub fn uas(invite: &SipMessage, local_tag: &str) -> Result<Dialog, DialogError> {
        Ok(Dialog {
            id: DialogId {
                call_id: invite.call_id().to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: invite
                    .from_tag()
                    .ok_or(DialogError::MissingTag("From"))?
                    .to_owned(),
            },
            local_uri: format!("<{}>", invite.to_uri()),
            remote_uri: format!("<{}>", invite.from_uri()),
            local_seq: 0,
            remote_seq: Some(invite.cseq()),
            remote_target: invite
                .contact_uri()
                .ok_or(DialogError::MissingContact)?
                .to_owned(),
            route_set: invite.record_routes().map(str::to_owned).collect(),
        })
    }

    /// The dialog id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// The remote target (Contact URI) requests go to.
    pub fn remote_target(&self) -> &str {
        &self.remote_target
    }

    /// The route set, in the order Route headers are written.
    pub fn route_set(&self) -> &[String] {
        &self.route_set
    }

    /// The last local CSeq used.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// Checks an incoming in-dialog request (12.2.2): it must carry our id and a CSeq above the last
    /// one (ACK and CANCEL reuse their INVITE's). On success the remote CSeq is updated, and a target
    /// refresh (re-INVITE, UPDATE) with a Contact replaces the remote target.
    pub fn recv_request(&mut self, req: &SipMessage) -> Result<(), DialogError> {
        if DialogId::for_incoming(req).as_ref() != Some(&self.id) {
            return Err(DialogError::NotMatching);
        }
        let n = req.cseq();
        let same_ok = matches!(req.method(), Some(Method::Ack | Method::Cancel));
        match self.remote_seq {
            Some(last) if n < last || (n == last && !same_ok) => {
                return Err(DialogError::CSeqOutOfOrder);
            }
            _ => self.remote_seq = Some(n),
        }
        if matches!(req.method(), Some(Method::Invite | Method::Update))
            && let Some(c) = req.contact_uri()
        {
            self.remote_target = c.to_owned();
        }
        Ok(())
    }

    /// Starts an in-dialog request (BYE, re-INVITE, UPDATE, INFO, ...) with the next local CSeq and the
    /// Request-URI/Route of 12.2.1.1: loose routing (first route has `;lr`) keeps the remote target as
    /// Request-URI and the route set as Route; strict routing puts the first route in the Request-URI
    /// and the remote target last in Route. Add Via (and body) on the returned builder.
    pub fn request(&mut self, method: Method) -> RequestBuilder<'_> {
        self.local_seq += 1;
        let seq = self.local_seq;
        self.builder(method, seq)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (13.2.2.4): same CSeq number, method
    /// ACK, same Request-URI/Route rules. Add a new Via branch on the returned builder.
    pub fn ack(&self, invite_cseq: u32) -> RequestBuilder<'_> {
        self.builder(Method::Ack, invite_cseq)
    }

    fn builder(&self, method: Method, seq: u32) -> RequestBuilder<'_> {
        let strict = self
            .route_set
            .first()
            .is_some_and(|r| name_addr_uri(r).is_some_and(|u| !u.contains(";lr")));
        let mut b = if strict {
            let first = name_addr_uri(&self.route_set[0]).unwrap_or(&self.remote_target);
            let mut b = RequestBuilder::new(method, first);
            for r in &self.route_set[1..] {
                b = b.route(r);
            }
            b.route(&self.remote_target)
        } else {
            let mut b = RequestBuilder::new(method, &self.remote_target);
            for r in &self.route_set {
                b = b.route(r);
            }
            b
        };
        b = b
            .from(&self.local_uri, &self.id.local_tag)
            .to(&self.remote_uri, Some(&self.id.remote_tag))
            .call_id(&self.id.call_id)
            .cseq(seq);
        b
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn parse(s: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
    }

    const INVITE: &str = "INVITE sip:bob@b SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa
Record-Route: <sip:p1;lr>, <sip:p2;lr>
From: <sip:alice@a>;tag=at
To: <sip:bob@b>
Call-ID: c1
CSeq: 10 INVITE
Contact: <sip:alice@10.0.0.1>

";

    #[test]
    fn uas_dialog_orders_cseq_and_routes_loosely() {
        let inv = parse(INVITE);
        let mut d = Dialog::uas(&inv, "bt").unwrap();
        assert_eq!(
            d.id(),
            &DialogId {
                call_id: "c1".into(),
                local_tag: "bt".into(),
                remote_tag: "at".into()
            }
        );
        let bye = d
            .request(Method::Bye)
            .via("UDP", "10.0.0.2")
            .build()
            .unwrap();
        assert_eq!(bye.request_uri(), Some("sip:alice@10.0.0.1"));
        assert_eq!(
            bye.routes().collect::<Vec<_>>(),
            ["<sip:p1;lr>", "<sip:p2;lr>"]
        );
        assert_eq!(
            (bye.from_tag(), bye.to_tag(), bye.cseq()),
            (Some("bt"), Some("at"), 1)
        );
        let in_dialog = |n: u32, m: &str| {
            parse(&format!(
                "{m} sip:bob@b SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK{n}\nFrom: <sip:alice@a>;tag=at\nTo: <sip:bob@b>;tag=bt\nCall-ID: c1\nCSeq: {n} {m}\nContact: <sip:alice@10.0.0.9>\n\n"
            ))
        };
        assert_eq!(d.recv_request(&in_dialog(10, "ACK")), Ok(()));
        assert_eq!(
            d.recv_request(&in_dialog(9, "INFO")),
            Err(DialogError::CSeqOutOfOrder)
        );
        assert_eq!(d.recv_request(&in_dialog(11, "INVITE")), Ok(()));
        assert_eq!(
            d.remote_target(),
            "sip:alice@10.0.0.9",
            "re-INVITE refreshes the target"
        );
        assert_eq!(
            d.recv_request(&in_dialog(11, "BYE")),
            Err(DialogError::CSeqOutOfOrder)
        );
    }

    #[test]
    fn uac_dialog_reverses_record_route_and_acks_with_invite_cseq() {
        let inv = parse(INVITE);
        let ok = parse(
            "SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa
Record-Route: <sip:p1;lr>
Record-Route: <sip:p2>
From: <sip:alice@a>;tag=at
To: <sip:bob@b>;tag=bt
Call-ID: c1
CSeq: 10 INVITE
Contact: <sip:bob@10.0.0.2>

",
        );
        let mut d = Dialog::uac(&inv, &ok).unwrap();
        assert_eq!(d.route_set(), ["<sip:p2>", "<sip:p1;lr>"]);
        let ack = d.ack(10).via("UDP", "10.0.0.1").build().unwrap();
        assert_eq!((ack.cseq(), ack.cseq_method()), (10, &Method::Ack));
        // p2 is a strict router: it goes in the Request-URI, the remote target last in Route.
        assert_eq!(ack.request_uri(), Some("sip:p2"));
        assert_eq!(
            ack.routes().collect::<Vec<_>>(),
            ["<sip:p1;lr>", "sip:bob@10.0.0.2"]
        );
        let bye = d
            .request(Method::Bye)
            .via("UDP", "10.0.0.1")
            .build()
            .unwrap();
        assert_eq!(bye.cseq(), 11);
    }
}
