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
    BadTarget,
    BadStatus,
    BadName,
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

#[callgate_sdk::plugin]
impl Plugin for Probe {
    fn new(config: &Config) -> Result<Self, String> {
        let tag = config.opt_str("tag")?.unwrap_or("probe").to_owned();
        let bad = match config.opt_str("bad")? {
            None => None,
            Some("forbidden-header") => Some(Bad::ForbiddenHeader),
            Some("crlf") => Some(Bad::Crlf),
            Some("bad-target") => Some(Bad::BadTarget),
            Some("bad-status") => Some(Bad::BadStatus),
            Some("bad-name") => Some(Bad::BadName),
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
            invites_seen: 0,
        })
    }

    fn on_invite(&mut self, _call: &CallInfo, request: &Request) -> InviteDecision {
        self.invites_seen += 1;
        let tag = self.tag.as_str();

        let key = format!("probe-{tag}");
        if let Err(e) = call_state::set(&key, &self.invites_seen.to_string()) {
            warn!("probe {tag}: call_state::set({key}) failed: {e}");
        }

        if let Some(status) = request.header(&format!("X-Probe-Reject-{tag}")) {
            if let Ok(status) = status.trim().parse::<u16>() {
                return Reject::new(status)
                    .reason(format!("probe {tag} rejects"))
                    .header("X-Rejected-By", tag)
                    .into();
            }
        }
        if let Some(uri) = request.header(&format!("X-Probe-Redirect-{tag}")) {
            return Redirect::new(302).contact(uri.trim()).into();
        }
        if self.bad == Some(Bad::BadStatus) {
            return Reject::new(200).into();
        }

        let seen: Vec<&str> =
            STATE_KEYS.iter().copied().filter(|k| call_state::get(k).is_some()).collect();
        let mut forward = Forward::new()
            .invite_header("X-Probe", tag)
            .invite_header("X-Probe-Count", self.invites_seen.to_string())
            .invite_header("X-Probe-State", seen.join(","))
            .response_header("X-Probe-Resp", tag)
            .pass_through([format!("X-Pass-{tag}")]);
        if let Some(target) = &self.target {
            forward = forward.target(target);
        }
        forward = match self.bad {
            Some(Bad::ForbiddenHeader) => forward.invite_header("Via", "SIP/2.0/UDP evil"),
            Some(Bad::Crlf) => forward.invite_header("X-Evil", "a\r\nInjected: yes"),
            Some(Bad::BadTarget) => forward.target("http://example.com/"),
            Some(Bad::BadName) => forward.invite_header("X Bad Name", "v"),
            Some(Bad::BadStatus) | None => forward,
        };
        forward.into()
    }

    fn on_response(
        &mut self,
        _call: &CallInfo,
        leg: Leg,
        method: &str,
        response: &Response,
    ) -> HeaderEdits {
        HeaderEdits::new()
            .add("X-Probe-Seen", format!("{}:{leg}:{method}:{}", self.tag, response.status))
    }

    fn on_refer(&mut self, _call: &CallInfo, _leg: Leg, _transfer: &TransferRequest) -> ReferDecision {
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
