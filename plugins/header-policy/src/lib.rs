//! `header-policy`: adds, copies and removes headers on every call, and optionally overrides the
//! B-leg target, all from config. See README.md.

use callgate_sdk::prelude::*;

/// The plugin: the decision is the same for every call, so it is built once in `new`.
#[derive(Debug)]
pub struct HeaderPolicy {
    decision: Forward,
}

fn headers(config: &Config, key: &str) -> Result<Vec<Header>, String> {
    config
        .table(key)?
        .into_iter()
        .map(|(name, value)| {
            let header = Header::new(name, value);
            header
                .validate()
                .map_err(|e| format!("header-policy: `{key}`: {e}"))?;
            Ok(header)
        })
        .collect()
}

fn names(config: &Config, key: &str) -> Result<Vec<String>, String> {
    let names = config.list(key)?;
    for name in &names {
        callgate_sdk::check_header_name(name)
            .map_err(|e| format!("header-policy: `{key}`: {e}"))?;
    }
    Ok(names)
}

#[callgate_sdk::plugin]
impl Plugin for HeaderPolicy {
    fn new(config: &Config) -> Result<Self, String> {
        let mut decision = Forward {
            invite_headers: headers(config, "invite-headers")?,
            response_headers: headers(config, "response-headers")?,
            pass_through: names(config, "pass-through")?,
            remove_headers: names(config, "remove-headers")?,
            ..Forward::new()
        };
        if let Some(target) = config.opt_str("target")? {
            if !callgate_sdk::is_sip_uri(target) {
                return Err(format!(
                    "header-policy: `target` {target:?} is not a sip: or sips: URI"
                ));
            }
            decision = decision.target(target);
        }
        Ok(Self { decision })
    }

    fn on_invite(&mut self, _call: &CallInfo, _request: &Request) -> InviteDecision {
        self.decision.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(json: &str) -> Result<HeaderPolicy, String> {
        HeaderPolicy::new(&Config::from_json(json).unwrap())
    }

    #[test]
    fn builds_the_forward_from_config() {
        let p = build(
            r#"{"invite-headers": {"X-Tenant": "acme", "X-Zone": "eu"},
                "response-headers": {"X-Handled-By": "gw1"},
                "pass-through": ["X-Correlation-Id"], "remove-headers": ["X-Internal"],
                "target": "sip:core@10.0.0.1"}"#,
        )
        .unwrap();
        let f = &p.decision;
        assert_eq!(
            f.invite_headers,
            [Header::new("X-Tenant", "acme"), Header::new("X-Zone", "eu")]
        );
        assert_eq!(f.response_headers, [Header::new("X-Handled-By", "gw1")]);
        assert_eq!(f.pass_through, ["X-Correlation-Id"]);
        assert_eq!(f.remove_headers, ["X-Internal"]);
        assert_eq!(f.target.as_deref(), Some("sip:core@10.0.0.1"));
    }

    #[test]
    fn empty_config_is_no_opinion() {
        assert!(build("{}").unwrap().decision.is_empty());
    }

    #[test]
    fn refuses_bad_config() {
        assert!(
            build(r#"{"invite-headers": {"Via": "x"}}"#)
                .unwrap_err()
                .contains("owns")
        );
        assert!(build(r#"{"invite-headers": {"X A": "x"}}"#).is_err());
        assert!(build(r#"{"remove-headers": ["Call-ID"]}"#).is_err());
        assert!(
            build(r#"{"pass-through": "X-One"}"#)
                .unwrap_err()
                .contains("expected a list")
        );
        assert!(
            build(r#"{"target": "http://x/"}"#)
                .unwrap_err()
                .contains("not a sip")
        );
    }
}

#[cfg(test)]
mod hook_tests {
    use super::*;
    use callgate_sdk::__private::{Export, HookSet};

    #[test]
    fn asks_for_invite_only() {
        assert_eq!(<HeaderPolicy as Export>::hooks(), HookSet::INVITE);
    }
}
