//! `media-announcer`: follows the media state of both legs and plays a prompt to the caller once
//! audio really flows both ways. See README.md.

use callgate_sdk::prelude::*;

/// The plugin. Its fields are per call (one instance per call).
#[derive(Debug)]
pub struct MediaAnnouncer {
    prompt: String,
    /// The last state seen of leg A and leg B.
    state: [Option<MediaState>; 2],
    changes: u32,
    /// Whether both legs have been `connected` at the same time yet.
    announced: bool,
    /// The outcome of `play_prompt`, for the summary line.
    played: Option<Result<u64, String>>,
}

fn index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl MediaAnnouncer {
    /// Records the change; true if it makes both legs `connected` for the first time.
    fn track(&mut self, leg: Leg, change: MediaChange) -> bool {
        self.state[index(leg)] = Some(change.new);
        self.changes += 1;
        let both = self.state == [Some(MediaState::Connected); 2];
        let first = both && !self.announced;
        self.announced |= both;
        first
    }

    fn announce(&mut self, call: &CallInfo) {
        match call_control::play_prompt(Leg::A, &self.prompt, 1) {
            Ok(handle) => {
                info!(
                    "call {}: media connected, playing {:?} to leg a",
                    call.call_id, self.prompt
                );
                self.played = Some(Ok(handle.0));
            }
            Err(e) => {
                // Refused at once (e.g. a gateway without prompts): log it and carry on.
                warn!("call {}: cannot play {:?}: {e}", call.call_id, self.prompt);
                self.played = Some(Err(e.to_string()));
            }
        }
    }
}

#[callgate_sdk::plugin]
impl Plugin for MediaAnnouncer {
    fn new(config: &Config) -> Result<Self, String> {
        let prompt = config.opt_str("prompt")?.unwrap_or("welcome");
        if prompt.is_empty() || prompt.contains(['/', '\\']) {
            return Err(format!(
                "config `prompt`: {prompt:?} must be a file name without a path"
            ));
        }
        Ok(Self {
            prompt: prompt.to_owned(),
            state: [None; 2],
            changes: 0,
            announced: false,
            played: None,
        })
    }

    fn on_media_state(&mut self, call: &CallInfo, leg: Leg, change: MediaChange) {
        info!(
            "call {}: leg {leg} media {} -> {} (from {})",
            call.call_id, change.old, change.new, change.source
        );
        if self.track(leg, change) {
            self.announce(call);
        }
    }

    fn on_call_end(&mut self, call: &CallInfo, summary: &CallSummary) {
        let show = |s: Option<MediaState>| s.map_or("none", MediaState::as_str);
        let prompt = match &self.played {
            None => "not played".to_owned(),
            Some(Ok(handle)) => format!("played (handle {handle})"),
            Some(Err(e)) => format!("refused ({e})"),
        };
        info!(
            "call {} ended: {} {} by {} ({}); setup {} ms, talk {} ms; media a={} b={} after {} \
             changes; prompt {prompt}",
            call.call_id,
            summary.outcome,
            summary.status,
            summary.ended_by,
            summary.reason,
            summary.setup_ms,
            summary.talk_ms,
            show(self.state[0]),
            show(self.state[1]),
            self.changes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(old: MediaState, new: MediaState) -> MediaChange {
        MediaChange {
            old,
            new,
            source: MediaSource::Packets,
        }
    }

    #[test]
    fn announces_once_when_both_legs_connect() {
        use MediaState::*;
        let mut p = MediaAnnouncer::new(&Config::default()).unwrap();
        assert_eq!(p.prompt, "welcome");
        assert!(!p.track(Leg::A, change(Connecting, Connected)));
        assert!(!p.track(Leg::B, change(Negotiating, Connecting)));
        assert!(p.track(Leg::B, change(Connecting, Connected)));
        assert!(!p.track(Leg::B, change(Connected, Held)));
        assert!(!p.track(Leg::B, change(Held, Connected)));
        assert_eq!(p.changes, 5);
    }

    #[test]
    fn prompt_from_config() {
        let c = Config::from_json(r#"{"prompt": "hello-en"}"#).unwrap();
        assert_eq!(MediaAnnouncer::new(&c).unwrap().prompt, "hello-en");
        let c = Config::from_json(r#"{"prompt": "../etc/passwd"}"#).unwrap();
        assert!(MediaAnnouncer::new(&c).is_err());
    }
}
