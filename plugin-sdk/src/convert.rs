//! Every conversion between the hand-written types and the generated ones, in one place.

use crate::__wit::callgate::plugin::types as w;
use crate::__wit::exports::callgate::plugin::lean_hooks as h;
use crate::types::*;

impl From<w::Header> for Header {
    fn from(x: w::Header) -> Self {
        Header {
            name: x.name,
            value: x.value,
        }
    }
}

impl From<Header> for w::Header {
    fn from(x: Header) -> Self {
        w::Header {
            name: x.name,
            value: x.value,
        }
    }
}

pub(crate) fn headers_out(v: Vec<Header>) -> Vec<w::Header> {
    v.into_iter().map(Into::into).collect()
}

impl From<w::Leg> for Leg {
    fn from(x: w::Leg) -> Self {
        match x {
            w::Leg::A => Leg::A,
            w::Leg::B => Leg::B,
        }
    }
}

impl From<Leg> for w::Leg {
    fn from(x: Leg) -> Self {
        match x {
            Leg::A => w::Leg::A,
            Leg::B => w::Leg::B,
        }
    }
}

impl From<w::CallInfo> for CallFacts {
    fn from(x: w::CallInfo) -> Self {
        CallFacts {
            call_ref: x.call_ref,
            call_id: x.call_id,
            b_call_id: x.b_call_id,
            from: x.from,
            to: x.to,
            request_uri: x.request_uri,
            source: x.source,
        }
    }
}

impl From<h::Request> for Request {
    fn from(x: h::Request) -> Self {
        Request {
            method: x.method,
            uri: x.uri,
            headers: Headers::from_head(x.head),
            body_type: x.body_type,
        }
    }
}

impl From<h::Response> for Response {
    fn from(x: h::Response) -> Self {
        Response {
            status: x.status,
            reason: x.reason,
            headers: Headers::from_head(x.head),
            body_type: x.body_type,
        }
    }
}

impl From<HeaderEdits> for w::HeaderEdits {
    fn from(x: HeaderEdits) -> Self {
        w::HeaderEdits {
            add: headers_out(x.add),
            remove: x.remove,
        }
    }
}

impl From<MediaMode> for w::MediaMode {
    fn from(x: MediaMode) -> Self {
        match x {
            MediaMode::Anchored => w::MediaMode::Anchored,
            MediaMode::Direct => w::MediaMode::Direct,
        }
    }
}

impl From<Forward> for h::Forward {
    fn from(x: Forward) -> Self {
        h::Forward {
            target: x.target,
            invite_headers: headers_out(x.invite_headers),
            pass_through: x.pass_through,
            remove_headers: x.remove_headers,
            response_headers: headers_out(x.response_headers),
            media: x.media.map(Into::into),
        }
    }
}

impl From<InviteDecision> for h::InviteDecision {
    fn from(x: InviteDecision) -> Self {
        match x {
            InviteDecision::Forward(f) => h::InviteDecision::Forward(f.into()),
            InviteDecision::Reject(r) => h::InviteDecision::Reject(h::Reject {
                status: r.status,
                reason: r.reason,
                headers: headers_out(r.headers),
            }),
            InviteDecision::Redirect(r) => h::InviteDecision::Redirect(h::Redirect {
                status: r.status,
                contacts: r.contacts,
                headers: headers_out(r.headers),
            }),
        }
    }
}

impl From<h::TransferRequest> for TransferRequest {
    fn from(x: h::TransferRequest) -> Self {
        TransferRequest {
            refer_to: x.refer_to,
            referred_by: x.referred_by,
            replaces: x.replaces,
            headers: Headers::from_head(x.head),
        }
    }
}

impl From<ReferDecision> for h::ReferDecision {
    fn from(x: ReferDecision) -> Self {
        match x {
            ReferDecision::NoOpinion => h::ReferDecision::NoOpinion,
            ReferDecision::Reject(status) => h::ReferDecision::Reject(status),
            ReferDecision::Pass => h::ReferDecision::Pass,
            ReferDecision::Perform { target, headers } => {
                h::ReferDecision::Perform(h::PerformTransfer {
                    target,
                    headers: headers_out(headers),
                })
            }
        }
    }
}

impl From<Legs> for w::Legs {
    fn from(x: Legs) -> Self {
        match x {
            Legs::A => w::Legs::A,
            Legs::B => w::Legs::B,
            Legs::Both => w::Legs::A | w::Legs::B,
        }
    }
}

impl From<RecordStart> for w::RecordStart {
    fn from(x: RecordStart) -> Self {
        match x {
            RecordStart::OnAnswer => w::RecordStart::OnAnswer,
            RecordStart::OnMediaConnected => w::RecordStart::OnMediaConnected,
        }
    }
}

impl From<RecordOptions> for w::RecordOptions {
    fn from(x: RecordOptions) -> Self {
        w::RecordOptions {
            legs: x.legs.into(),
            start: x.start.into(),
            tags: x.tags,
        }
    }
}

impl From<RecordingDecision> for h::RecordingDecision {
    fn from(x: RecordingDecision) -> Self {
        match x {
            RecordingDecision::None => h::RecordingDecision::None,
            RecordingDecision::Record(o) => h::RecordingDecision::Record(o.into()),
        }
    }
}

impl From<w::MediaState> for MediaState {
    fn from(x: w::MediaState) -> Self {
        match x {
            w::MediaState::Negotiating => MediaState::Negotiating,
            w::MediaState::Connecting => MediaState::Connecting,
            w::MediaState::Connected => MediaState::Connected,
            w::MediaState::Held => MediaState::Held,
            w::MediaState::Stalled => MediaState::Stalled,
            w::MediaState::Ended => MediaState::Ended,
        }
    }
}

impl From<w::MediaChange> for MediaChange {
    fn from(x: w::MediaChange) -> Self {
        MediaChange {
            old: x.old.into(),
            new: x.new.into(),
            source: match x.source {
                w::MediaSource::Packets => MediaSource::Packets,
                w::MediaSource::Sdp => MediaSource::Sdp,
            },
        }
    }
}

impl From<w::Dtmf> for Dtmf {
    fn from(x: w::Dtmf) -> Self {
        Dtmf {
            digit: x.digit,
            duration_ms: x.duration_ms,
            source: match x.source {
                w::DtmfSource::Rfc4733 => DtmfSource::Rfc4733,
                w::DtmfSource::SipInfo => DtmfSource::SipInfo,
            },
        }
    }
}

impl From<w::CallSummary> for CallSummary {
    fn from(x: w::CallSummary) -> Self {
        CallSummary {
            outcome: match x.outcome {
                w::CallOutcome::Answered => CallOutcome::Answered,
                w::CallOutcome::Rejected => CallOutcome::Rejected,
                w::CallOutcome::Cancelled => CallOutcome::Cancelled,
                w::CallOutcome::Redirected => CallOutcome::Redirected,
                w::CallOutcome::TimedOut => CallOutcome::TimedOut,
                w::CallOutcome::Failed => CallOutcome::Failed,
            },
            status: x.status,
            reason: x.reason,
            ended_by: match x.ended_by {
                w::Initiator::Caller => Initiator::Caller,
                w::Initiator::Callee => Initiator::Callee,
                w::Initiator::Gateway => Initiator::Gateway,
                w::Initiator::Plugin => Initiator::Plugin,
            },
            setup_ms: x.setup_ms,
            talk_ms: x.talk_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_lines_are_read_in_place_in_order() {
        let h = Headers::from_head("X-A: 1\r\nSubject: a: b\r\nX-Empty: \r\nx-a:2\r\n".into());
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [
                ("X-A", "1"),
                ("Subject", "a: b"),
                ("X-Empty", ""),
                ("x-a", "2")
            ]
        );
        assert_eq!(h.get_all("x-A").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.get("subject"), Some("a: b"));
        assert_eq!(h.get("X-Missing"), None);
        let built: Headers = vec![Header::new("X-A", "1"), Header::new("Subject", "a: b")].into();
        assert_eq!(
            built.iter().collect::<Vec<_>>(),
            [("X-A", "1"), ("Subject", "a: b")]
        );
        assert!(Headers::from_head(String::new()).is_empty());
    }

    #[test]
    fn both_legs_are_two_flags() {
        assert_eq!(w::Legs::from(Legs::Both), w::Legs::A | w::Legs::B);
        assert_eq!(w::Legs::from(Legs::B), w::Legs::B);
    }

    #[test]
    fn forward_keeps_everything() {
        let f: InviteDecision = Forward::new()
            .target("sip:b@x")
            .invite_header("X-A", "1")
            .pass_through(["X-P"])
            .remove_header("X-R")
            .response_header("X-S", "2")
            .media(MediaMode::Direct)
            .into();
        let f: h::InviteDecision = f.into();
        let h::InviteDecision::Forward(f) = f else {
            panic!("not a forward")
        };
        assert_eq!(f.target.as_deref(), Some("sip:b@x"));
        assert_eq!(
            (
                f.invite_headers[0].name.as_str(),
                f.invite_headers[0].value.as_str()
            ),
            ("X-A", "1")
        );
        assert_eq!(f.pass_through, ["X-P"]);
        assert_eq!(f.remove_headers, ["X-R"]);
        assert_eq!(f.response_headers[0].name, "X-S");
        assert!(matches!(f.media, Some(w::MediaMode::Direct)));
    }
}
