//! `record-policy`: records calls whose INVITE matches a configured rule (a header, or a number
//! prefix). See README.md.

use callgate_sdk::prelude::*;

/// What a rule looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Test {
    /// A header is present (`value: None`) or one of its occurrences has exactly this value.
    Header { name: String, value: Option<String> },
    /// The user part of the To URI or of the Request-URI starts with this.
    NumberPrefix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    tests: Vec<Test>,
    legs: Legs,
    tags: Vec<(String, String)>,
}

impl Rule {
    fn matches(&self, call: &CallInfo, request: &Request) -> bool {
        self.tests.iter().all(|test| match test {
            Test::Header { name, value: None } => request.header(name).is_some(),
            Test::Header {
                name,
                value: Some(want),
            } => request.headers_named(name).any(|v| v.trim() == want),
            Test::NumberPrefix(prefix) => [call.to.as_str(), request.uri.as_str()]
                .iter()
                .any(|uri| user_part(uri).is_some_and(|user| user.starts_with(prefix.as_str()))),
        })
    }
}

/// The user part of a `sip:`, `sips:` or `tel:` URI, without user parameters:
/// `sip:+442071234567;npdi@gw` -> `+442071234567`, `tel:+4420;phone-context=x` -> `+4420`.
fn user_part(uri: &str) -> Option<&str> {
    let (scheme, rest) = uri.split_once(':')?;
    let user = if scheme.eq_ignore_ascii_case("tel") {
        rest
    } else {
        rest.split_once('@')?.0
    };
    let user = user.split(';').next().unwrap_or(user);
    let user = user.split(':').next().unwrap_or(user); // `user:password@host`
    (!user.is_empty()).then_some(user)
}

/// The plugin. `matched` is the index of the rule the call's INVITE matched (instances are per call).
#[derive(Debug)]
pub struct RecordPolicy {
    rules: Vec<Rule>,
    tags: Vec<(String, String)>,
    matched: Option<usize>,
}

#[callgate_sdk::plugin]
impl Plugin for RecordPolicy {
    fn new(config: &Config) -> Result<Self, String> {
        let mut rules = Vec::new();
        for i in config.keys("rules") {
            let key = |k: &str| format!("rules.{i}.{k}");
            let mut tests = Vec::new();
            if let Some(name) = config.opt_str(&key("header"))? {
                // Any header may be matched, also those the gateway owns (To, Contact, ...).
                if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
                    return Err(format!(
                        "config `{}`: {name:?} is not a header name",
                        key("header")
                    ));
                }
                let value = config.get_text(&key("value"));
                if value.is_none() && config.contains(&key("value")) {
                    return Err(format!("config `{}`: expected a string", key("value")));
                }
                tests.push(Test::Header {
                    name: name.to_owned(),
                    value,
                });
            } else if config.contains(&key("value")) {
                return Err(format!("config `rules.{i}`: `value` without `header`"));
            }
            if let Some(prefix) = config.get_text(&key("number-prefix")) {
                tests.push(Test::NumberPrefix(prefix));
            }
            if tests.is_empty() {
                return Err(format!(
                    "config `rules.{i}`: needs `header` or `number-prefix`"
                ));
            }
            let legs = match config.opt_str(&key("legs"))? {
                None | Some("both") => Legs::Both,
                Some("a") => Legs::A,
                Some("b") => Legs::B,
                Some(other) => {
                    return Err(format!(
                        "config `{}`: {other:?} is not a, b or both",
                        key("legs")
                    ));
                }
            };
            rules.push(Rule {
                tests,
                legs,
                tags: config.table(&key("tags"))?,
            });
        }
        Ok(Self {
            rules,
            tags: config.table("tags")?,
            matched: None,
        })
    }

    fn on_invite(&mut self, call: &CallInfo, request: &Request) -> InviteDecision {
        self.matched = self
            .rules
            .iter()
            .position(|rule| rule.matches(call, request));
        if let Some(i) = self.matched {
            debug!("call {}: recording rule {i} matched", call.call_id);
        }
        InviteDecision::no_opinion()
    }

    fn recording_policy(&mut self, _call: &CallInfo) -> RecordingDecision {
        let Some(i) = self.matched else {
            return RecordingDecision::None;
        };
        let rule = &self.rules[i];
        let mut options = RecordOptions::legs(rule.legs)
            .on_media_connected()
            .tag("rule", i.to_string());
        for (k, v) in self.tags.iter().chain(&rule.tags) {
            options = options.tag(k, v);
        }
        RecordingDecision::record(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<RecordPolicy, String> {
        RecordPolicy::new(&Config::from_json(json).unwrap())
    }

    fn call(to: &str) -> CallInfo {
        CallInfo::new(CallFacts {
            call_ref: 1,
            call_id: "c".into(),
            b_call_id: None,
            from: "sip:alice@a".into(),
            to: to.into(),
            request_uri: "sip:x@gw".into(),
            source: "udp:127.0.0.1:5060".into(),
        })
    }

    fn invite(uri: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "INVITE".into(),
            uri: uri.into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
            body_type: None,
        }
    }

    fn first_match(p: &RecordPolicy, c: &CallInfo, r: &Request) -> Option<usize> {
        p.rules.iter().position(|rule| rule.matches(c, r))
    }

    const RULES: &str = r#"{
        "rules": [
            {"header": "X-Record", "value": "yes", "legs": "a"},
            {"header": "X-Compliance"},
            {"number-prefix": "+4420", "tags": {"region": "london"}}
        ],
        "tags": {"purpose": "qa"}
    }"#;

    #[test]
    fn rules_match_in_order() {
        let p = build(RULES).unwrap();
        let c = call("sip:bob@example.com");
        assert_eq!(
            first_match(&p, &c, &invite("sip:bob@gw", &[("x-record", "yes")])),
            Some(0)
        );
        assert_eq!(
            first_match(&p, &c, &invite("sip:bob@gw", &[("X-Record", "no")])),
            None
        );
        assert_eq!(
            first_match(&p, &c, &invite("sip:bob@gw", &[("X-COMPLIANCE", "")])),
            Some(1)
        );
        assert_eq!(
            first_match(&p, &c, &invite("sip:+442071234567@gw", &[])),
            Some(2)
        );
        let c = call("sip:+442071234567;npdi@example.com");
        assert_eq!(first_match(&p, &c, &invite("sip:bob@gw", &[])), Some(2));
        assert_eq!(
            first_match(&p, &call("tel:+4420123"), &invite("sip:bob@gw", &[])),
            Some(2)
        );
        assert_eq!(
            first_match(&p, &call("sip:+4430@x"), &invite("sip:4420@gw", &[])),
            None
        );
    }

    #[test]
    fn recording_options_carry_the_rule() {
        let mut p = build(RULES).unwrap();
        p.matched = Some(2);
        assert_eq!(
            p.recording_policy(&call("sip:x@y")),
            RecordingDecision::record(
                RecordOptions::both()
                    .on_media_connected()
                    .tag("rule", "2")
                    .tag("purpose", "qa")
                    .tag("region", "london")
            )
        );
        p.matched = Some(0);
        let RecordingDecision::Record(o) = p.recording_policy(&call("sip:x@y")) else {
            panic!()
        };
        assert_eq!(o.legs, Legs::A);
        p.matched = None;
        assert_eq!(
            p.recording_policy(&call("sip:x@y")),
            RecordingDecision::None
        );
    }

    #[test]
    fn user_parts() {
        assert_eq!(user_part("sip:+4420@gw;transport=udp"), Some("+4420"));
        assert_eq!(user_part("sips:bob:secret@gw"), Some("bob"));
        assert_eq!(user_part("tel:+4420;phone-context=x"), Some("+4420"));
        assert_eq!(user_part("sip:gw.example"), None);
    }

    #[test]
    fn refuses_bad_config() {
        assert!(
            build(r#"{"rules": [{"legs": "a"}]}"#)
                .unwrap_err()
                .contains("needs")
        );
        assert!(build(r#"{"rules": [{"header": "X-R", "legs": "c"}]}"#).is_err());
        assert!(build(r#"{"rules": [{"header": "X R"}]}"#).is_err());
        assert!(build(r#"{"rules": [{"value": "x", "number-prefix": "1"}]}"#).is_err());
        assert!(build(r#"{"tags": ["x"]}"#).is_err());
    }
}
