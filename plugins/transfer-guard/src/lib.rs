//! `transfer-guard`: decides what happens to a REFER (a transfer request) from an ordered list of
//! rules on the Refer-To URI. See README.md.

use callgate_sdk::prelude::*;

/// What to do with a REFER.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    /// Answer the REFER with this status.
    Reject(u16),
    /// Relay the REFER to the other party.
    Pass,
    /// Carry out the transfer in the gateway, to `target` or to the Refer-To URI.
    Perform {
        target: Option<String>,
        headers: Vec<Header>,
    },
    /// Leave it to later plugins and the gateway's `transfer.default`.
    NoOpinion,
}

impl Action {
    /// Reads the action at `path` (a rule, or the `default` table): keys `action`, `status`,
    /// `target`, `headers`.
    fn from_config(config: &Config, path: &str) -> Result<Self, String> {
        let key = |k: &str| format!("{path}.{k}");
        let action = config.require_str(&key("action"))?;
        let headers = || -> Result<Vec<Header>, String> {
            config
                .table(&key("headers"))?
                .into_iter()
                .map(|(n, v)| {
                    let h = Header::new(n, v);
                    h.validate()
                        .map(|()| h)
                        .map_err(|e| format!("config `{path}.headers`: {e}"))
                })
                .collect()
        };
        Ok(match action {
            "reject" => {
                let status = match config.get_text(&key("status")) {
                    None => 403,
                    Some(s) => s
                        .parse::<u16>()
                        .ok()
                        .filter(|s| (400..=699).contains(s))
                        .ok_or_else(|| {
                            format!("config `{path}.status`: {s} is not a status from 400 to 699")
                        })?,
                };
                Action::Reject(status)
            }
            "pass" => Action::Pass,
            "perform" => Action::Perform {
                target: None,
                headers: headers()?,
            },
            "retarget" => {
                let target = config.require_str(&key("target"))?;
                if !callgate_sdk::is_sip_uri(target) {
                    return Err(format!(
                        "config `{path}.target`: {target:?} is not a sip: or sips: URI"
                    ));
                }
                Action::Perform {
                    target: Some(target.to_owned()),
                    headers: headers()?,
                }
            }
            "no-opinion" => Action::NoOpinion,
            other => {
                return Err(format!(
                    "config `{path}.action`: {other:?} is not one of reject, pass, perform, retarget, \
                     no-opinion"
                ));
            }
        })
    }

    /// The counter each REFER decided by this action adds to (`callgate_plugin_counter_total`).
    fn counter(&self) -> &'static str {
        match self {
            Action::Reject(_) => "refer_rejected",
            Action::Pass => "refer_passed",
            Action::Perform { .. } => "refer_performed",
            Action::NoOpinion => "refer_no_opinion",
        }
    }

    fn decision(&self) -> ReferDecision {
        match self {
            Action::Reject(status) => ReferDecision::Reject(*status),
            Action::Pass => ReferDecision::Pass,
            Action::Perform { target, headers } => ReferDecision::Perform {
                target: target.clone(),
                headers: headers.clone(),
            },
            Action::NoOpinion => ReferDecision::NoOpinion,
        }
    }
}

/// `*` matches any run of characters (also none); everything else matches itself, ASCII case
/// ignored.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently stretched to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi].eq_ignore_ascii_case(&t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The plugin: rules in config order, first match wins.
#[derive(Debug)]
pub struct TransferGuard {
    rules: Vec<(String, Action)>,
    default: Action,
}

#[callgate_sdk::plugin]
impl Plugin for TransferGuard {
    fn new(config: &Config) -> Result<Self, String> {
        let mut rules = Vec::new();
        for i in config.keys("rules") {
            let path = format!("rules.{i}");
            let pattern = config.require_str(&format!("{path}.match"))?.to_owned();
            rules.push((pattern, Action::from_config(config, &path)?));
        }
        let default = if let Some(action) = config.get_str("default") {
            // The short form: `default = "pass"`.
            let json = format!(r#"{{"default": {{"action": {action:?}}}}}"#);
            Action::from_config(&Config::from_json(&json)?, "default")?
        } else if config.contains("default") {
            Action::from_config(config, "default")?
        } else {
            Action::Reject(403)
        };
        Ok(Self { rules, default })
    }

    fn on_refer(&mut self, call: &CallInfo, leg: Leg, transfer: &TransferRequest) -> ReferDecision {
        let rule = self
            .rules
            .iter()
            .position(|(pattern, _)| glob_match(pattern, &transfer.refer_to));
        let action = rule.map_or(&self.default, |i| &self.rules[i].1);
        let which = rule.map_or_else(|| "default".to_owned(), |i| format!("rule {i}"));
        info!(
            "REFER from leg {leg} of call {} to {}: {which} says {action:?}",
            call.call_id, transfer.refer_to
        );
        metrics::count(action.counter());
        action.decision()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<TransferGuard, String> {
        TransferGuard::new(&Config::from_json(json).unwrap())
    }

    fn decide(g: &TransferGuard, uri: &str) -> ReferDecision {
        let i = g.rules.iter().position(|(p, _)| glob_match(p, uri));
        i.map_or(&g.default, |i| &g.rules[i].1).decision()
    }

    #[test]
    fn globs() {
        assert!(glob_match(
            "sip:*@trusted.example",
            "sip:bob@trusted.example"
        ));
        assert!(glob_match(
            "sip:*@trusted.example",
            "SIP:bob@Trusted.Example"
        ));
        assert!(!glob_match(
            "sip:*@trusted.example",
            "sip:bob@trusted.example.evil"
        ));
        assert!(glob_match("*", ""));
        assert!(glob_match(
            "sip:*@*.example*",
            "sip:a@b.c.example;transport=tcp"
        ));
        assert!(glob_match("sip:1*2", "sip:1a2b2"));
        assert!(!glob_match("sip:1*2", "sip:1a2b"));
        assert!(!glob_match("sip:bob@x", "sip:bob@xy"));
    }

    #[test]
    fn first_matching_rule_wins() {
        let g = build(
            r#"{"rules": [
                {"match": "sip:*@evil.example", "action": "reject", "status": 603},
                {"match": "sip:*@trusted.example", "action": "perform", "headers": {"X-Transferred": "yes"}},
                {"match": "sip:9*", "action": "retarget", "target": "sip:operator@pbx"},
                {"match": "sip:*", "action": "pass"}
            ], "default": "no-opinion"}"#,
        )
        .unwrap();
        assert_eq!(decide(&g, "sip:x@evil.example"), ReferDecision::Reject(603));
        assert_eq!(
            decide(&g, "sip:bob@trusted.example"),
            ReferDecision::perform().with_header("X-Transferred", "yes")
        );
        assert_eq!(
            decide(&g, "sip:900@pbx"),
            ReferDecision::perform_to("sip:operator@pbx")
        );
        assert_eq!(decide(&g, "sip:carol@other"), ReferDecision::Pass);
        assert_eq!(decide(&g, "tel:+44"), ReferDecision::NoOpinion);
    }

    #[test]
    fn default_is_reject_403() {
        let g = build("{}").unwrap();
        assert_eq!(decide(&g, "sip:a@b"), ReferDecision::Reject(403));
        let g = build(r#"{"default": {"action": "reject", "status": 488}}"#).unwrap();
        assert_eq!(decide(&g, "sip:a@b"), ReferDecision::Reject(488));
        let g = build(r#"{"rules": [{"match": "*", "action": "reject"}]}"#).unwrap();
        assert_eq!(decide(&g, "sip:a@b"), ReferDecision::Reject(403));
    }

    #[test]
    fn refuses_bad_config() {
        assert!(
            build(r#"{"rules": [{"action": "pass"}]}"#)
                .unwrap_err()
                .contains("rules.0.match")
        );
        assert!(build(r#"{"rules": [{"match": "*", "action": "maybe"}]}"#).is_err());
        assert!(
            build(r#"{"rules": [{"match": "*", "action": "reject", "status": 200}]}"#).is_err()
        );
        assert!(build(r#"{"rules": [{"match": "*", "action": "retarget"}]}"#).is_err());
        assert!(
            build(r#"{"rules": [{"match": "*", "action": "retarget", "target": "http://x"}]}"#)
                .is_err()
        );
        assert!(
            build(r#"{"rules": [{"match": "*", "action": "perform", "headers": {"To": "x"}}]}"#)
                .is_err()
        );
        assert!(build(r#"{"default": "nope"}"#).is_err());
    }
}
