//! One plugin, three languages: `header-policy` in Rust, C and Python (built from `plugins/` by
//! host/build.rs) must make the same decision for every case of the shared table
//! `tests/cases/header-policy.json`, through the real runtime: load with the case's config (init
//! refuses or accepts it), then one call's `on-invite`.

use std::path::PathBuf;

use callgate::plugin::decision::{
    CallInfo, Forward, Header, HeaderView, InviteDecision, RequestView,
};
use callgate::plugin::stats::Hook;
use callgate::plugin::{Chain, ControlSupport, LoadError, PluginSpec, Runtime, RuntimeConfig};
use serde::Deserialize;
use serde_json::Value;

/// The same plugin in each language: its directory under `plugins/`, which names the component.
const IMPLEMENTATIONS: [&str; 3] = ["header-policy", "header-policy-c", "header-policy-py"];

#[derive(Deserialize)]
struct Table {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    config: Value,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expect {
    /// Only `"refused"`.
    Word(String),
    Forward(ExpectedForward),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct ExpectedForward {
    invite_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    pass_through: Vec<String>,
    remove_headers: Vec<String>,
    target: Option<String>,
}

/// What a plugin did with a case, in a form the three languages can be compared by.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// `init` refused the config (the message is the plugin's own and differs by language).
    Refused,
    /// `init` accepted it and `on-invite` returned this forward decision.
    Forward(Forward),
}

impl Case {
    /// The config to load with: `{"__nest__": n}` stands for `{"x": [[...]]}` with `n` lists, too deep
    /// to write in the table (serde_json, which reads the table, stops at 128 levels itself).
    fn config(&self) -> Value {
        match self.config.get("__nest__").and_then(Value::as_u64) {
            Some(n) => {
                let mut v = Value::Array(Vec::new());
                for _ in 1..n {
                    v = Value::Array(vec![v]);
                }
                serde_json::json!({ "x": v })
            }
            None => self.config.clone(),
        }
    }

    fn expected(&self) -> Outcome {
        match &self.expect {
            Expect::Word(w) => {
                assert_eq!(w, "refused", "case {:?}: unknown expectation", self.name);
                Outcome::Refused
            }
            Expect::Forward(f) => {
                let headers = |pairs: &[(String, String)]| {
                    pairs
                        .iter()
                        .map(|(n, v)| Header::new(n.as_str(), v.as_str()))
                        .collect()
                };
                Outcome::Forward(Forward {
                    target: f.target.clone(),
                    invite_headers: headers(&f.invite_headers),
                    pass_through: f.pass_through.clone(),
                    remove_headers: f.remove_headers.clone(),
                    response_headers: headers(&f.response_headers),
                    media: None,
                })
            }
        }
    }
}

fn cases() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/cases/header-policy.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let table: Table =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    table.cases
}

fn invite() -> RequestView<'static> {
    RequestView {
        method: "INVITE",
        uri: "sip:bob@127.0.0.1:5080",
        headers: vec![
            HeaderView::new("X-Correlation-Id", "abc-123"),
            HeaderView::new("X-Internal-Debug", "1"),
        ],
        body_type: Some("application/sdp"),
    }
}

/// Loads `implementation` with the case's config and, if it loads, asks it about one call.
async fn run(rt: &Runtime, implementation: &str, case: &Case, call_ref: u64) -> Outcome {
    let wasm = PathBuf::from(env!("CALLGATE_PLUGIN_DIR")).join(format!("{implementation}.wasm"));
    let mut spec = PluginSpec::new(implementation, wasm).with_config(case.config());
    // The test is about decisions, not speed: a slow shared machine must not turn a per-call `init`
    // (Python's takes milliseconds) into a deadline failure.
    spec.deadline_ms = 2_000;
    // Pre-initialising a componentize-py component fails today (Wizer's state accessors run past
    // the load deadline on CPython's memory) and the runtime falls back to `init` per call, after
    // seconds of work per load; skip straight to that.
    spec.pre_init = !implementation.ends_with("-py");
    let plugin = match rt.load(&spec).await {
        Ok(p) => p,
        Err(LoadError::Init { message, .. }) => {
            assert!(
                !message.trim().is_empty(),
                "{implementation}, case {:?}: refused without a message",
                case.name
            );
            return Outcome::Refused;
        }
        // A trap, a link error or a missing file is a broken plugin, not a decision.
        Err(e) => panic!("{implementation}, case {:?}: {e}", case.name),
    };
    assert_eq!(
        plugin.hooks().hooks().collect::<Vec<_>>(),
        [Hook::Invite],
        "{implementation}: init must ask for on-invite only"
    );
    let chain = Chain::new(vec![plugin]);
    let mut call = chain
        .start_call(
            CallInfo {
                call_ref,
                call_id: format!("languages-{call_ref}@127.0.0.1"),
                from: "sip:alice@127.0.0.1".into(),
                to: "sip:bob@127.0.0.1".into(),
                request_uri: "sip:bob@127.0.0.1:5080".into(),
                source: "udp:127.0.0.1:5070".into(),
                ..Default::default()
            },
            ControlSupport::default(),
        )
        .expect("instance slots");
    let out = call.on_invite(&invite()).await;
    // A failed hook would read as "no opinion" under the `continue` policy: rule that out.
    let stats = chain.plugins()[0].stats();
    for hook in [Hook::Init, Hook::Invite] {
        let failures: u64 = stats.hook(hook).failures.iter().sum();
        assert_eq!(
            failures,
            0,
            "{implementation}, case {:?}: {} failed",
            case.name,
            hook.name()
        );
    }
    assert_eq!(
        stats.refused_headers(),
        0,
        "{implementation}, case {:?}: the host refused headers of the decision",
        case.name
    );
    assert_eq!(out.decided_by, None);
    match out.decision {
        InviteDecision::Forward(f) => Outcome::Forward(f),
        other => panic!(
            "{implementation}, case {:?}: expected a forward decision, got {other:?}",
            case.name
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_decides_every_case_alike() {
    // Every case loads each plugin anew; a compile cache (fresh for this run) makes that one
    // Cranelift compilation per component, instead of one per case (the Python one takes seconds).
    let cache_dir = std::env::temp_dir().join(format!("callgate-languages-{}", std::process::id()));
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 16,
        cache_dir: Some(cache_dir.clone()),
        ..Default::default()
    })
    .expect("runtime");
    let cases = cases();
    assert!(cases.len() >= 40, "the table lost cases");
    let mut disagreements = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let expected = case.expected();
        for implementation in IMPLEMENTATIONS {
            let got = run(&rt, implementation, case, i as u64 + 1).await;
            if got != expected {
                disagreements.push(format!(
                    "{implementation}, case {:?}:\n  expected {expected:?}\n  got      {got:?}",
                    case.name
                ));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
    assert!(
        disagreements.is_empty(),
        "{} disagreement(s):\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
