//! `probe`: a testing plugin that implements every hook deterministically, to test the gateway's
//! hook plumbing and chain merging. Not an example: see README.md for the exact contract.

use callgate_sdk::prelude::*;

/// The call-state keys `X-Probe-State` reports on.
const STATE_KEYS: [&str; 3] = ["probe-a", "probe-b", "probe-c"];

/// A deliberately bad decision, from config `bad`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bad {
    ForbiddenHeader,
    Crlf,
    Target,
    Status,
    Name,
    Panic,
}

/// What to answer to REFER, from config `refer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refer {
    NoOpinion,
    Reject,
    Pass,
    Perform,
}

/// The plugin. `invites_seen` lives in the instance, so it counts per call.
pub struct Probe {
    tag: String,
    target: Option<String>,
    bad: Option<Bad>,
    refer: Refer,
    refer_target: Option<String>,
    record: bool,
    echo: bool,
    invites_seen: u64,
}

impl Probe {
    fn note_event(&self, description: String) {
        let key = format!("probe-{}-last-event", self.tag);
        if let Err(e) = call_state::set(&key, &description) {
            warn!("probe {}: call_state::set({key}) failed: {e}", self.tag);
        }
        log::info(&description);
    }
}

/// What the plugin knows of the call, for `echo`: `<call-id> <b-call-id or -> <request-uri>`.
fn call_line(call: &CallInfo) -> String {
    format!(
        "{} {} {}",
        call.call_id,
        call.b_call_id.as_deref().unwrap_or("-"),
        call.request_uri
    )
}

#[callgate_sdk::plugin]
impl Plugin for Probe {
    fn new(config: &Config) -> Result<Self, String> {
        let tag = config.opt_str("tag")?.unwrap_or("probe").to_owned();
        let bad = match config.opt_str("bad")? {
            None => None,
            Some("forbidden-header") => Some(Bad::ForbiddenHeader),
            Some("crlf") => Some(Bad::Crlf),
            Some("bad-target") => Some(Bad::Target),
            Some("bad-status") => Some(Bad::Status),
            Some("bad-name") => Some(Bad::Name),
            Some("panic") => Some(Bad::Panic),
            Some(other) => return Err(format!("probe: unknown `bad` value {other:?}")),
        };
        let refer = match config.opt_str("refer")? {
            None => Refer::NoOpinion,
            Some("reject") => Refer::Reject,
            Some("pass") => Refer::Pass,
            Some("perform") => Refer::Perform,
            Some(other) => return Err(format!("probe: unknown `refer` value {other:?}")),
        };
        Ok(Probe {
            tag,
            target: config.opt_str("target")?.map(str::to_owned),
            bad,
            refer,
            refer_target: config.opt_str("refer-target")?.map(str::to_owned),
            record: config.get_bool("record").unwrap_or(false),
            echo: config.get_bool("echo").unwrap_or(false),
            invites_seen: 0,
        })
    }

    fn on_invite(&mut self, call: &CallInfo, request: &Request) -> InviteDecision {
        self.invites_seen += 1;
        let tag = self.tag.as_str();

        let key = format!("probe-{tag}");
        if let Err(e) = call_state::set(&key, &self.invites_seen.to_string()) {
            warn!("probe {tag}: call_state::set({key}) failed: {e}");
        }

        if let Some(Ok(status)) = request
            .header(&format!("X-Probe-Reject-{tag}"))
            .map(|v| v.trim().parse::<u16>())
        {
            return Reject::new(status)
                .reason(format!("probe {tag} rejects"))
                .header("X-Rejected-By", tag)
                .into();
        }
        if let Some(uri) = request.header(&format!("X-Probe-Redirect-{tag}")) {
            return Redirect::new(302).contact(uri.trim()).into();
        }
        if self.bad == Some(Bad::Status) {
            return Reject::new(200).into();
        }

        let seen: Vec<&str> = STATE_KEYS
            .iter()
            .copied()
            .filter(|k| call_state::get(k).is_some())
            .collect();
        let mut forward = Forward::new()
            .invite_header("X-Probe", tag)
            .invite_header("X-Probe-Count", self.invites_seen.to_string())
            .invite_header("X-Probe-State", seen.join(","))
            .response_header("X-Probe-Resp", tag)
            .pass_through([format!("X-Pass-{tag}")]);
        if let Some(target) = &self.target {
            forward = forward.target(target);
        }
        if self.echo {
            forward = forward.invite_header("X-Probe-Call", call_line(call));
        }
        forward = match self.bad {
            Some(Bad::ForbiddenHeader) => forward.invite_header("Via", "SIP/2.0/UDP evil"),
            Some(Bad::Crlf) => forward.invite_header("X-Evil", "a\r\nInjected: yes"),
            Some(Bad::Target) => forward.target("http://example.com/"),
            Some(Bad::Name) => forward.invite_header("X Bad Name", "v"),
            Some(Bad::Panic) => panic!("probe {}: asked to panic", self.tag),
            Some(Bad::Status) | None => forward,
        };
        forward.into()
    }

    fn on_response(
        &mut self,
        call: &CallInfo,
        leg: Leg,
        method: &str,
        response: &Response,
    ) -> HeaderEdits {
        let seen = HeaderEdits::new().add(
            "X-Probe-Seen",
            format!("{}:{leg}:{method}:{}", self.tag, response.status),
        );
        if !self.echo {
            return seen;
        }
        // What the plugin was told of the call and of the response, for the far end to check.
        seen.add("X-Probe-Call", call_line(call)).add(
            "X-Probe-Echo",
            response
                .headers_named("X-Echo")
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    fn on_refer(
        &mut self,
        _call: &CallInfo,
        _leg: Leg,
        _transfer: &TransferRequest,
    ) -> ReferDecision {
        match self.refer {
            Refer::NoOpinion => ReferDecision::NoOpinion,
            Refer::Reject => ReferDecision::Reject(403),
            Refer::Pass => ReferDecision::Pass,
            Refer::Perform => ReferDecision::Perform {
                target: self.refer_target.clone(),
                headers: vec![Header::new("X-Probe-Transfer", &self.tag)],
            },
        }
    }

    fn recording_policy(&mut self, _call: &CallInfo) -> RecordingDecision {
        if self.record {
            RecordingDecision::record(RecordOptions::both().on_answer().tag("probe", &self.tag))
        } else {
            RecordingDecision::None
        }
    }

    fn on_media_state(&mut self, _call: &CallInfo, leg: Leg, change: MediaChange) {
        self.note_event(format!("media:{leg}:{}->{}", change.old, change.new));
    }

    fn on_dtmf(&mut self, _call: &CallInfo, leg: Leg, dtmf: Dtmf) {
        self.note_event(format!("dtmf:{leg}:{}:{}", dtmf.digit, dtmf.duration_ms));
    }

    fn on_call_end(&mut self, _call: &CallInfo, summary: &CallSummary) {
        self.note_event(format!("end:{}:{}", summary.outcome, summary.status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgate_sdk::__private::{Export, HookSet};

    #[test]
    fn asks_for_every_hook() {
        assert_eq!(<Probe as Export>::hooks(), HookSet::all());
    }

    #[test]
    fn config() {
        let p = Probe::new(&Config::default()).unwrap();
        assert_eq!(
            (p.tag.as_str(), p.bad, p.refer, p.record),
            ("probe", None, Refer::NoOpinion, false)
        );
        let c =
            Config::from_json(r#"{"tag": "b", "bad": "crlf", "refer": "perform", "record": true}"#);
        let p = Probe::new(&c.unwrap()).unwrap();
        assert_eq!(
            (p.tag.as_str(), p.bad, p.refer, p.record),
            ("b", Some(Bad::Crlf), Refer::Perform, true)
        );
        assert!(Probe::new(&Config::from_json(r#"{"bad": "nope"}"#).unwrap()).is_err());
        assert!(Probe::new(&Config::from_json(r#"{"refer": "nope"}"#).unwrap()).is_err());
    }

    fn call() -> CallInfo {
        CallInfo::new(CallFacts {
            call_ref: 7,
            call_id: "c7".into(),
            b_call_id: None,
            from: "sip:alice@a".into(),
            to: "sip:bob@b".into(),
            request_uri: "sip:bob@gw".into(),
            source: "udp:127.0.0.1:5070".into(),
        })
    }

    fn invite(headers: &[(&str, &str)]) -> Request {
        Request {
            method: "INVITE".into(),
            uri: "sip:bob@gw".into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body_type: None,
        }
    }

    fn probe(json: &str) -> Probe {
        Probe::new(&Config::from_json(json).unwrap()).unwrap()
    }

    #[test]
    fn forward_counts_and_sees_state() {
        call_state::clear();
        let mut a = probe(r#"{"tag": "a"}"#);
        let mut b = probe(r#"{"tag": "b", "target": "sip:t@x"}"#);
        let InviteDecision::Forward(f) = a.on_invite(&call(), &invite(&[])) else {
            panic!()
        };
        assert_eq!(
            f.invite_headers,
            [
                Header::new("X-Probe", "a"),
                Header::new("X-Probe-Count", "1"),
                Header::new("X-Probe-State", "probe-a")
            ]
        );
        assert_eq!(f.response_headers, [Header::new("X-Probe-Resp", "a")]);
        assert_eq!(f.pass_through, ["X-Pass-a"]);
        assert_eq!(f.target, None);
        let InviteDecision::Forward(f) = b.on_invite(&call(), &invite(&[])) else {
            panic!()
        };
        assert_eq!(
            f.invite_headers[2],
            Header::new("X-Probe-State", "probe-a,probe-b")
        );
        assert_eq!(f.target.as_deref(), Some("sip:t@x"));
        let InviteDecision::Forward(f) = a.on_invite(&call(), &invite(&[])) else {
            panic!()
        };
        assert_eq!(f.invite_headers[1], Header::new("X-Probe-Count", "2"));
        assert_eq!(call_state::get("probe-a").as_deref(), Some("2"));
    }

    #[test]
    fn reject_and_redirect_by_header() {
        call_state::clear();
        let mut a = probe(r#"{"tag": "a"}"#);
        let d = a.on_invite(
            &call(),
            &invite(&[("x-probe-reject-b", "486"), ("X-PROBE-REJECT-A", "480")]),
        );
        assert_eq!(
            d,
            Reject::new(480)
                .reason("probe a rejects")
                .header("X-Rejected-By", "a")
                .into()
        );
        let d = a.on_invite(
            &call(),
            &invite(&[("X-Probe-Redirect-a", "sip:elsewhere@x")]),
        );
        assert_eq!(d, Redirect::new(302).contact("sip:elsewhere@x").into());
        let d = a.on_invite(&call(), &invite(&[("X-Probe-Reject-a", "soon")]));
        assert!(matches!(d, InviteDecision::Forward(_)));
    }

    #[test]
    fn bad_decisions() {
        call_state::clear();
        let d = probe(r#"{"bad": "bad-status"}"#).on_invite(&call(), &invite(&[]));
        assert_eq!(d, Reject::new(200).into());
        let InviteDecision::Forward(f) =
            probe(r#"{"bad": "crlf"}"#).on_invite(&call(), &invite(&[]))
        else {
            panic!()
        };
        assert_eq!(
            f.invite_headers.last(),
            Some(&Header::new("X-Evil", "a\r\nInjected: yes"))
        );
        let InviteDecision::Forward(f) = probe(r#"{"bad": "bad-target", "target": "sip:ok@x"}"#)
            .on_invite(&call(), &invite(&[]))
        else {
            panic!()
        };
        assert_eq!(f.target.as_deref(), Some("http://example.com/"));
    }

    #[test]
    fn other_hooks() {
        call_state::clear();
        let mut p = probe(r#"{"tag": "c", "refer": "perform", "record": true}"#);
        let r = Response {
            status: 183,
            reason: "Session Progress".into(),
            headers: Headers::default(),
            body_type: None,
        };
        assert_eq!(
            p.on_response(&call(), Leg::B, "INVITE", &r),
            HeaderEdits::new().add("X-Probe-Seen", "c:b:INVITE:183")
        );
        let t = TransferRequest {
            refer_to: "sip:x@y".into(),
            referred_by: None,
            replaces: None,
            headers: Headers::default(),
        };
        assert_eq!(
            p.on_refer(&call(), Leg::A, &t),
            ReferDecision::perform().with_header("X-Probe-Transfer", "c")
        );
        assert_eq!(
            p.recording_policy(&call()),
            RecordOptions::both().on_answer().tag("probe", "c").into()
        );
        p.on_media_state(
            &call(),
            Leg::A,
            MediaChange {
                old: MediaState::Connecting,
                new: MediaState::Connected,
                source: MediaSource::Packets,
            },
        );
        assert_eq!(
            call_state::get("probe-c-last-event").as_deref(),
            Some("media:a:connecting->connected")
        );
        p.on_dtmf(
            &call(),
            Leg::B,
            Dtmf {
                digit: '5',
                duration_ms: 160,
                source: DtmfSource::Rfc4733,
            },
        );
        assert_eq!(
            call_state::get("probe-c-last-event").as_deref(),
            Some("dtmf:b:5:160")
        );
        let s = CallSummary {
            outcome: CallOutcome::TimedOut,
            status: 408,
            reason: String::new(),
            ended_by: Initiator::Gateway,
            setup_ms: 0,
            talk_ms: 0,
        };
        p.on_call_end(&call(), &s);
        assert_eq!(
            call_state::get("probe-c-last-event").as_deref(),
            Some("end:timed-out:408")
        );
        assert_eq!(
            probe("{}").on_refer(&call(), Leg::A, &t),
            ReferDecision::NoOpinion
        );
        assert_eq!(
            probe("{}").recording_policy(&call()),
            RecordingDecision::None
        );
    }
}
