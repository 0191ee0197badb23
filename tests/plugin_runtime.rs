//! The plugin runtime through real compiled components (built from `plugins/` by host/build.rs):
//! decisions, per-call isolation, the chain's merge rules, limits and failure policies.

use std::path::PathBuf;
use std::sync::Arc;

use callgate::plugin::decision::{
    CallInfo, CallOutcome, CallSummary, Header, HeaderView, InviteDecision, Leg, MediaChange,
    MediaSource, MediaState, RecordLegs, RecordStart, ReferDecision, RequestView, ResponseView,
    TransferRequest,
};
use callgate::plugin::stats::{FailureKind, Hook};
use callgate::plugin::{
    CallPlugins, Chain, ControlSupport, LoadError, LoadedPlugin, PluginSpec, Runtime, RuntimeConfig,
};
use serde_json::json;

#[path = "support/logs.rs"]
mod logs;

fn wasm(name: &str) -> PathBuf {
    PathBuf::from(env!("CALLGATE_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 64,
        ..Default::default()
    })
    .expect("runtime")
}

async fn load(rt: &Runtime, spec: PluginSpec) -> Arc<LoadedPlugin> {
    rt.load(&spec).await.expect("plugin loads")
}

async fn probe(rt: &Runtime, tag: &str, extra: serde_json::Value) -> Arc<LoadedPlugin> {
    let mut config = json!({ "tag": tag });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    load(rt, PluginSpec::new(tag, wasm("probe")).with_config(config)).await
}

static NEXT_CALL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn call(chain: &Chain) -> CallPlugins {
    let call_ref = NEXT_CALL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    chain
        .start_call(
            CallInfo {
                call_ref,
                call_id: format!("call-{call_ref}@127.0.0.1"),
                from: "sip:alice@127.0.0.1".into(),
                to: "sip:bob@127.0.0.1".into(),
                request_uri: "sip:bob@127.0.0.1:5080".into(),
                source: "udp:127.0.0.1:5070".into(),
                ..Default::default()
            },
            ControlSupport {
                hang_up: true,
                ..Default::default()
            },
        )
        .expect("instance slots")
}

fn invite<'a>(headers: &[(&'a str, &'a str)]) -> RequestView<'a> {
    RequestView {
        method: "INVITE",
        uri: "sip:bob@127.0.0.1:5080",
        headers: headers.iter().map(|(n, v)| HeaderView::new(n, v)).collect(),
        body_type: Some("application/sdp"),
    }
}

fn values<'a>(headers: &'a [Header], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
        .collect()
}

fn ok_200() -> ResponseView<'static> {
    ResponseView {
        status: 200,
        reason: "OK",
        ..Default::default()
    }
}

fn forward(d: InviteDecision) -> callgate::plugin::decision::Forward {
    match d {
        InviteDecision::Forward(f) => f,
        other => panic!("expected a forward decision, got {other:?}"),
    }
}

#[tokio::test]
async fn on_invite_returns_the_plugins_forward_decision() {
    let rt = runtime();
    let chain = Chain::new(vec![
        probe(&rt, "a", json!({ "target": "sip:bob@127.0.0.1:5090" })).await,
    ]);
    let mut c = call(&chain);
    let out = c.on_invite(&invite(&[])).await;
    assert_eq!(out.decided_by, None);
    let f = forward(out.decision);
    assert_eq!(f.target.as_deref(), Some("sip:bob@127.0.0.1:5090"));
    assert_eq!(values(&f.invite_headers, "X-Probe"), ["a"]);
    assert_eq!(values(&f.invite_headers, "X-Probe-Count"), ["1"]);
    assert_eq!(values(&f.response_headers, "X-Probe-Resp"), ["a"]);
    assert_eq!(f.pass_through, ["X-Pass-a"]);
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance_and_its_own_state() {
    let rt = runtime();
    let chain = Chain::new(vec![
        probe(&rt, "a", json!({})).await,
        probe(&rt, "b", json!({})).await,
        probe(&rt, "c", json!({})).await,
    ]);
    for _ in 0..3 {
        let mut c = call(&chain);
        let f = forward(c.on_invite(&invite(&[])).await.decision);
        // A counter kept in the plugin's memory starts from zero in every call.
        assert_eq!(values(&f.invite_headers, "X-Probe-Count"), ["1", "1", "1"]);
        // Call state is shared along the chain within a call, and empty at the start of the next.
        assert_eq!(
            values(&f.invite_headers, "X-Probe-State"),
            ["probe-a", "probe-a,probe-b", "probe-a,probe-b,probe-c"]
        );
        assert_eq!(
            c.state()
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>(),
            ["probe-a", "probe-b", "probe-c"]
        );
    }
}

#[tokio::test]
async fn a_pre_initialised_plugin_decides_as_one_that_runs_init_per_call() {
    let rt = runtime();
    let config = json!({ "target": "sip:bob@127.0.0.1:5090" });
    let snap = probe(&rt, "snap", config.clone()).await;
    let mut spec = PluginSpec::new("probe-plain", wasm("probe"))
        .with_config(json!({ "tag": "snap", "target": "sip:bob@127.0.0.1:5090" }));
    spec.pre_init = false;
    let plain = load(&rt, spec).await;
    assert!(
        snap.pre_initialized(),
        "probe starts calls from its snapshot"
    );
    assert!(!plain.pre_initialized());
    let decide = |p: Arc<LoadedPlugin>| async move {
        let chain = Chain::new(vec![p]);
        let mut out = Vec::new();
        for _ in 0..2 {
            let f = forward(call(&chain).on_invite(&invite(&[])).await.decision);
            out.push((f.target, f.invite_headers, f.pass_through));
        }
        out
    };
    let (a, b) = (decide(snap).await, decide(plain).await);
    assert_eq!(a, b);
    // The config read in `init` is in the snapshot; the per-call counter still starts at one.
    assert_eq!(values(&a[1].1, "X-Probe"), ["snap"]);
    assert_eq!(values(&a[1].1, "X-Probe-Count"), ["1"]);
}

#[tokio::test]
async fn a_chain_of_three_merges_as_the_contract_says() {
    let rt = runtime();
    let chain = Chain::new(vec![
        probe(&rt, "a", json!({})).await,
        probe(&rt, "b", json!({ "target": "sip:b@127.0.0.1" })).await,
        probe(&rt, "c", json!({ "target": "sip:c@127.0.0.1" })).await,
    ]);

    // Forwards: headers accumulate in chain order, the last target wins.
    let f = forward(call(&chain).on_invite(&invite(&[])).await.decision);
    assert_eq!(values(&f.invite_headers, "X-Probe"), ["a", "b", "c"]);
    assert_eq!(values(&f.response_headers, "X-Probe-Resp"), ["a", "b", "c"]);
    assert_eq!(f.pass_through, ["X-Pass-a", "X-Pass-b", "X-Pass-c"]);
    assert_eq!(f.target.as_deref(), Some("sip:c@127.0.0.1"));

    // The first reject wins and later plugins are not asked.
    let c_instances = chain.plugins()[2].stats().instances();
    let mut c = call(&chain);
    let out = c
        .on_invite(&invite(&[
            ("X-Probe-Reject-b", "486"),
            ("X-Probe-Reject-c", "403"),
        ]))
        .await;
    assert_eq!(out.decided_by.as_deref(), Some("b"));
    match out.decision {
        InviteDecision::Reject(r) => {
            assert_eq!(r.status, 486);
            assert_eq!(r.reason.as_deref(), Some("probe b rejects"));
            assert_eq!(values(&r.headers, "X-Rejected-By"), ["b"]);
        }
        other => panic!("expected reject, got {other:?}"),
    }
    assert_eq!(chain.plugins()[2].stats().instances(), c_instances);

    // A redirect is a final answer too.
    let out = call(&chain)
        .on_invite(&invite(&[(
            "X-Probe-Redirect-a",
            "sip:elsewhere@127.0.0.1",
        )]))
        .await;
    match out.decision {
        InviteDecision::Redirect(r) => {
            assert_eq!(r.status, 302);
            assert_eq!(r.contacts, ["sip:elsewhere@127.0.0.1"]);
        }
        other => panic!("expected redirect, got {other:?}"),
    }
}

#[tokio::test]
async fn response_refer_recording_and_events_reach_the_plugins() {
    let rt = runtime();
    let chain = Chain::new(vec![
        probe(&rt, "a", json!({ "refer": "pass", "record": true })).await,
        probe(&rt, "b", json!({ "refer": "reject" })).await,
    ]);
    let mut c = call(&chain);
    let ringing = ResponseView {
        status: 180,
        reason: "Ringing",
        ..Default::default()
    };
    let edits = c.on_response(Leg::B, "INVITE", &ringing).await;
    assert_eq!(
        values(&edits.add, "X-Probe-Seen"),
        ["a:b:INVITE:180", "b:b:INVITE:180"]
    );

    // The first decision other than no-opinion wins: a passes before b rejects.
    let refer = TransferRequest {
        refer_to: "sip:carol@127.0.0.1".into(),
        ..Default::default()
    };
    assert_eq!(c.on_refer(Leg::A, &refer).await, ReferDecision::Pass);

    let rec = c.recording_policy().await.expect("a asks to record");
    assert_eq!(rec.legs, RecordLegs { a: true, b: true });
    assert_eq!(rec.start, RecordStart::OnAnswer);
    assert_eq!(rec.tags, [("probe".to_string(), "a".to_string())]);

    c.on_media_state(
        Leg::A,
        MediaChange {
            old: MediaState::Connecting,
            new: MediaState::Connected,
            source: MediaSource::Packets,
        },
    )
    .await;
    let last = |c: &CallPlugins, key: &str| {
        c.state()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        last(&c, "probe-b-last-event").as_deref(),
        Some("media:a:connecting->connected")
    );
    c.on_call_end(&CallSummary {
        outcome: CallOutcome::Answered,
        status: 200,
        reason: "BYE from callee".into(),
        ended_by: callgate::plugin::decision::Initiator::Callee,
        setup_ms: 10,
        talk_ms: 1000,
    })
    .await;
    assert_eq!(
        last(&c, "probe-a-last-event").as_deref(),
        Some("end:answered:200")
    );

    // b alone: reject(403).
    let chain_b = Chain::new(vec![chain.plugins()[1].clone()]);
    assert_eq!(
        call(&chain_b).on_refer(Leg::B, &refer).await,
        ReferDecision::Reject(403)
    );
}

fn misbehave_spec(policy_reject: bool) -> PluginSpec {
    let mut s = PluginSpec::new("misbehave", wasm("misbehave"));
    if policy_reject {
        s = s.rejecting(503);
    }
    s.deadline_ms = 100;
    s.memory_mib = 8;
    s
}

#[tokio::test]
async fn a_looping_plugin_is_cut_at_its_deadline_and_the_call_continues() {
    let rt = runtime();
    let bad = load(&rt, misbehave_spec(false)).await;
    let chain = Chain::new(vec![bad.clone(), probe(&rt, "a", json!({})).await]);
    let f = forward(
        call(&chain)
            .on_invite(&invite(&[("X-Misbehave", "loop")]))
            .await
            .decision,
    );
    // The continue policy: the call goes on with the rest of the chain.
    assert_eq!(values(&f.invite_headers, "X-Probe"), ["a"]);
    assert!(values(&f.invite_headers, "X-Survived").is_empty());
    assert_eq!(
        bad.stats()
            .hook(Hook::Invite)
            .failures_of(FailureKind::Deadline),
        1
    );
}

/// Runs `on-invite` on `plugin` alone, which must trap once; returns the log captured so far.
async fn trap_in_on_invite(plugin: &Arc<LoadedPlugin>, headers: &[(&str, &str)]) -> String {
    let chain = Chain::new(vec![plugin.clone()]);
    call(&chain).on_invite(&invite(headers)).await;
    assert_eq!(
        plugin
            .stats()
            .hook(Hook::Invite)
            .failures_of(FailureKind::Trap),
        1
    );
    logs::text()
}

#[tokio::test]
async fn what_a_plugin_writes_to_stderr_reaches_the_log_under_its_name() {
    logs::capture();
    let rt = runtime();
    // A name of its own, to find this test's lines among the binary's.
    let bad = load(&rt, PluginSpec::new("stderr-writer", wasm("misbehave"))).await;
    let log = trap_in_on_invite(&bad, &[("X-Misbehave", "trap")]).await;
    // The panic message, written by the guest through WASI's stderr before it trapped.
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("plugin=stderr-writer")
            && l.contains("stream=\"stderr\"")
            && l.contains("misbehave: asked to trap")),
        "{log}"
    );
}

#[tokio::test]
async fn a_plugin_built_without_wasi_logs_its_panic_under_its_name() {
    logs::capture();
    let rt = runtime();
    let spec = PluginSpec::new("panicker", wasm("probe")).with_config(json!({ "bad": "panic" }));
    let bad = load(&rt, spec).await;
    // The SDK's plugins import no WASI at all: nothing of the system beyond the contract.
    let artifact =
        callgate::plugin::Artifact::read(&std::fs::read(wasm("probe")).unwrap()).unwrap();
    assert!(
        artifact
            .imports
            .iter()
            .all(|i| i.starts_with("callgate:plugin/")),
        "{:?}",
        artifact.imports
    );
    let log = trap_in_on_invite(&bad, &[]).await;
    // The SDK's panic hook sent the message through the `log` import before the trap.
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("plugin=\"panicker\"")
            && l.contains("probe probe: asked to panic")),
        "{log}"
    );
}

#[tokio::test]
async fn the_reject_policy_answers_the_call_when_the_plugin_fails() {
    let rt = runtime();
    let bad = load(&rt, misbehave_spec(true)).await;
    let chain = Chain::new(vec![bad, probe(&rt, "a", json!({})).await]);
    let out = call(&chain)
        .on_invite(&invite(&[("X-Misbehave", "loop")]))
        .await;
    assert_eq!(out.decided_by.as_deref(), Some("misbehave"));
    match out.decision {
        InviteDecision::Reject(r) => assert_eq!(r.status, 503),
        other => panic!("expected 503, got {other:?}"),
    }
}

/// One worker thread: while a plugin loops in one call, the others scheduled on the same thread
/// must still complete, because a running hook yields at every epoch tick.
#[tokio::test(flavor = "current_thread")]
async fn a_looping_plugin_does_not_stall_other_calls_on_its_thread() {
    let rt = runtime();
    let mut spec = misbehave_spec(false);
    // Long enough that the other calls finish well within it even on a loaded machine; if the
    // running plugin did not yield, they could only finish after it.
    spec.deadline_ms = 3000;
    let bad = load(&rt, spec).await;
    let chain = Chain::new(vec![bad.clone()]);
    let done = Arc::new(std::sync::Mutex::new(Vec::new()));

    let looping = {
        let (chain, done) = (chain.clone(), done.clone());
        tokio::spawn(async move {
            call(&chain)
                .on_invite(&invite(&[("X-Misbehave", "loop")]))
                .await;
            done.lock().unwrap().push("looping");
        })
    };
    // Let the looping call enter the plugin first.
    tokio::task::yield_now().await;
    let mut others = Vec::new();
    for _ in 0..10 {
        let (chain, done) = (chain.clone(), done.clone());
        others.push(tokio::spawn(async move {
            let f = forward(call(&chain).on_invite(&invite(&[])).await.decision);
            assert_eq!(values(&f.invite_headers, "X-Survived"), ["yes"]);
            done.lock().unwrap().push("other");
        }));
    }
    for o in others {
        o.await.unwrap();
    }
    looping.await.unwrap();
    let order = done.lock().unwrap().clone();
    assert_eq!(order.len(), 11);
    assert_eq!(
        order.last(),
        Some(&"looping"),
        "the other calls finished while the plugin looped"
    );
    assert_eq!(
        bad.stats()
            .hook(Hook::Invite)
            .failures_of(FailureKind::Deadline),
        1
    );
    assert_eq!(bad.stats().hook(Hook::Invite).calls, 11);
}

#[tokio::test]
async fn a_memory_hog_is_stopped_at_its_cap() {
    let rt = runtime();
    let bad = load(&rt, misbehave_spec(false)).await;
    let chain = Chain::new(vec![bad.clone()]);
    let f = forward(
        call(&chain)
            .on_invite(&invite(&[("X-Misbehave", "hog")]))
            .await
            .decision,
    );
    assert_eq!(f, Default::default());
    assert_eq!(
        bad.stats()
            .hook(Hook::Invite)
            .failures_of(FailureKind::Memory),
        1
    );
    // And the next call gets a working instance.
    let f = forward(call(&chain).on_invite(&invite(&[])).await.decision);
    assert_eq!(values(&f.invite_headers, "X-Survived"), ["yes"]);
}

#[tokio::test]
async fn a_trap_ends_only_that_plugins_part_in_that_call() {
    let rt = runtime();
    let bad = load(&rt, misbehave_spec(false)).await;
    let chain = Chain::new(vec![bad.clone(), probe(&rt, "a", json!({})).await]);
    let mut trapped = call(&chain);
    let f = forward(
        trapped
            .on_invite(&invite(&[("X-Misbehave", "trap")]))
            .await
            .decision,
    );
    assert_eq!(values(&f.invite_headers, "X-Probe"), ["a"]);
    assert_eq!(
        bad.stats()
            .hook(Hook::Invite)
            .failures_of(FailureKind::Trap),
        1
    );
    // The failed plugin gets no more hooks in that call; the others still do.
    let edits = trapped.on_response(Leg::B, "INVITE", &ok_200()).await;
    assert_eq!(values(&edits.add, "X-Probe-Seen"), ["a:b:INVITE:200"]);
    assert_eq!(bad.stats().hook(Hook::Response).calls, 0);

    // A call in progress beside it, and the next call, are unaffected.
    let f = forward(call(&chain).on_invite(&invite(&[])).await.decision);
    assert_eq!(values(&f.invite_headers, "X-Survived"), ["yes"]);
}

#[tokio::test]
async fn bad_headers_are_dropped_and_bad_targets_refuse_the_decision() {
    let rt = runtime();
    for (bad, dropped) in [
        ("forbidden-header", "Via"),
        ("crlf", "X-Evil"),
        ("bad-name", "X Bad Name"),
    ] {
        let p = probe(&rt, "a", json!({ "bad": bad })).await;
        let f = forward(
            call(&Chain::new(vec![p.clone()]))
                .on_invite(&invite(&[]))
                .await
                .decision,
        );
        assert!(values(&f.invite_headers, dropped).is_empty(), "{bad}");
        assert_eq!(values(&f.invite_headers, "X-Probe"), ["a"], "{bad}");
        assert_eq!(p.stats().refused_headers(), 1, "{bad}");
    }
    for bad in ["bad-target", "bad-status"] {
        let p = probe(&rt, "a", json!({ "bad": bad })).await;
        let f = forward(
            call(&Chain::new(vec![p.clone()]))
                .on_invite(&invite(&[]))
                .await
                .decision,
        );
        assert_eq!(
            f,
            Default::default(),
            "{bad}: the decision is dropped whole"
        );
        assert_eq!(
            p.stats()
                .hook(Hook::Invite)
                .failures_of(FailureKind::BadDecision),
            1,
            "{bad}"
        );
        let mut spec = PluginSpec::new("strict", wasm("probe"))
            .with_config(json!({ "tag": "a", "bad": bad }))
            .rejecting(500);
        spec.deadline_ms = 50;
        let strict = load(&rt, spec).await;
        let out = call(&Chain::new(vec![strict]))
            .on_invite(&invite(&[]))
            .await;
        assert_eq!(out.decided_by.as_deref(), Some("strict"));
        assert!(matches!(out.decision, InviteDecision::Reject(r) if r.status == 500));
    }
}

#[tokio::test]
async fn a_config_the_plugin_refuses_stops_the_load_with_its_message() {
    let rt = runtime();
    let spec = misbehave_spec(false).with_config(json!({ "on-init": "fail" }));
    match rt.load(&spec).await {
        Err(LoadError::Init { name, message }) => {
            assert_eq!(name, "misbehave");
            assert_eq!(message, "misbehave: init refused by config");
        }
        other => panic!("expected an init refusal, got {other:?}"),
    }
    let spec = misbehave_spec(false).with_config(json!({ "on-init": "loop" }));
    match rt.load(&spec).await {
        Err(LoadError::InitFailed { kind, .. }) => assert_eq!(kind, "deadline"),
        other => panic!("expected init to be cut off, got {other:?}"),
    }
}

#[tokio::test]
async fn files_that_are_not_plugins_are_refused() {
    let rt = runtime();
    let dir = std::env::temp_dir().join(format!("callgate-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x0d\0\x01\0 definitely not a component").unwrap();
    assert!(matches!(
        rt.load(&PluginSpec::new("garbage", &garbage)).await,
        Err(LoadError::Compile { .. })
    ));
    assert!(matches!(
        rt.load(&PluginSpec::new("missing", dir.join("missing.wasm")))
            .await,
        Err(LoadError::Read { .. })
    ));
    // A valid component that does not speak the contract.
    let empty = dir.join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    match rt.load(&PluginSpec::new("empty", &empty)).await {
        Err(LoadError::Contract {
            found, supported, ..
        }) => {
            assert!(found.starts_with("none"), "{found}");
            assert_eq!(supported, "0.1.0 to 0.1.2");
        }
        other => panic!("expected a contract refusal, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn calls_beyond_the_instance_pool_are_refused_up_front() {
    let rt = Runtime::new(RuntimeConfig {
        max_instances: 3,
        ..Default::default()
    })
    .unwrap();
    let chain = Chain::new(vec![probe(&rt, "a", json!({})).await]);
    let first = call(&chain);
    let _second = call(&chain);
    let _third = call(&chain);
    assert!(
        chain
            .start_call(CallInfo::default(), ControlSupport::default())
            .is_err()
    );
    drop(first);
    let mut again = call(&chain);
    assert!(matches!(
        again.on_invite(&invite(&[])).await.decision,
        InviteDecision::Forward(_)
    ));
}

// ---- the example plugins, through their real components ----

async fn examples_chain(rt: &Runtime, specs: Vec<PluginSpec>) -> Chain {
    let mut v = Vec::new();
    for s in specs {
        v.push(load(rt, s).await);
    }
    Chain::new(v)
}

#[tokio::test]
async fn header_policy_adds_passes_and_removes_headers_as_configured() {
    let rt = runtime();
    let chain = examples_chain(
        &rt,
        vec![
            PluginSpec::new("hp", wasm("header-policy")).with_config(json!({
                "invite-headers": { "X-Tenant": "acme", "X-Zone": "eu" },
                "response-headers": { "X-Handled-By": "callgate" },
                "pass-through": ["X-Correlation-Id"],
                "remove-headers": ["X-Internal"],
                "target": "sip:core@127.0.0.1:5090",
            })),
        ],
    )
    .await;
    let f = forward(call(&chain).on_invite(&invite(&[])).await.decision);
    assert_eq!(
        f.invite_headers,
        [Header::new("X-Tenant", "acme"), Header::new("X-Zone", "eu")]
    );
    assert_eq!(
        f.response_headers,
        [Header::new("X-Handled-By", "callgate")]
    );
    assert_eq!(f.pass_through, ["X-Correlation-Id"]);
    assert_eq!(f.remove_headers, ["X-Internal"]);
    assert_eq!(f.target.as_deref(), Some("sip:core@127.0.0.1:5090"));
    // A header the gateway owns in its config: the plugin refuses to load, with its own message.
    let bad = PluginSpec::new("hp", wasm("header-policy"))
        .with_config(json!({ "invite-headers": { "Via": "x" } }));
    assert!(matches!(rt.load(&bad).await, Err(LoadError::Init { .. })));
}

#[tokio::test]
async fn transfer_guard_decides_refer_by_its_rules() {
    let rt = runtime();
    let chain =
        examples_chain(
            &rt,
            vec![PluginSpec::new("tg", wasm("transfer-guard")).with_config(json!({
            "default": "reject",
            "rules": [
                { "match": "sip:*@evil.example", "action": "reject", "status": 603 },
                { "match": "sip:*@partner.example", "action": "pass" },
                { "match": "sip:*@trusted.example", "action": "perform",
                  "headers": { "X-Transferred-By": "callgate" } },
                { "match": "sip:9*", "action": "retarget", "target": "sip:operator@127.0.0.1" },
            ],
        }))],
        )
        .await;
    let refer = |to: &str| TransferRequest {
        refer_to: to.into(),
        ..Default::default()
    };
    let mut c = call(&chain);
    assert_eq!(
        c.on_refer(Leg::A, &refer("sip:mallory@evil.example")).await,
        ReferDecision::Reject(603)
    );
    assert_eq!(
        c.on_refer(Leg::A, &refer("sip:carol@partner.example"))
            .await,
        ReferDecision::Pass
    );
    assert_eq!(
        c.on_refer(Leg::B, &refer("sip:dave@trusted.example")).await,
        ReferDecision::Perform {
            target: None,
            headers: vec![Header::new("X-Transferred-By", "callgate")]
        }
    );
    assert!(matches!(
        c.on_refer(Leg::A, &refer("sip:9001@127.0.0.1")).await,
        ReferDecision::Perform { target: Some(t), .. } if t == "sip:operator@127.0.0.1"
    ));
    assert_eq!(
        c.on_refer(Leg::A, &refer("sip:eve@elsewhere.example"))
            .await,
        ReferDecision::Reject(403)
    );
}

#[tokio::test]
async fn record_policy_records_matching_calls_once_media_is_connected() {
    let rt = runtime();
    let chain = examples_chain(
        &rt,
        vec![
            PluginSpec::new("rp", wasm("record-policy")).with_config(json!({
                "rules": [
                    { "header": "X-Record", "value": "yes", "legs": "a" },
                    { "number-prefix": "+4420" },
                ],
                "tags": { "purpose": "compliance" },
            })),
        ],
    )
    .await;
    let mut c = call(&chain);
    c.on_invite(&invite(&[("X-Record", "yes")])).await;
    let rec = c.recording_policy().await.expect("rule 0 matches");
    assert_eq!(rec.legs, RecordLegs { a: true, b: false });
    assert_eq!(rec.start, RecordStart::OnMediaConnected);
    assert!(rec.tags.contains(&("purpose".into(), "compliance".into())));

    let mut c = call(&chain);
    let mut req = invite(&[]);
    req.uri = "sip:+442071234567@127.0.0.1";
    c.on_invite(&req).await;
    let rec = c
        .recording_policy()
        .await
        .expect("rule 1 matches the number");
    assert_eq!(rec.legs, RecordLegs { a: true, b: true });

    let mut c = call(&chain);
    c.on_invite(&invite(&[("X-Record", "no")])).await;
    assert_eq!(c.recording_policy().await, None);
}

#[tokio::test]
async fn media_announcer_plays_its_prompt_once_both_legs_are_connected() {
    let rt = runtime();
    let chain = examples_chain(
        &rt,
        vec![
            PluginSpec::new("ma", wasm("media-announcer"))
                .with_config(json!({ "prompt": "welcome" })),
        ],
    )
    .await;
    let change = |old, new| MediaChange {
        old,
        new,
        source: MediaSource::Packets,
    };
    let mut c = chain
        .start_call(
            CallInfo {
                call_ref: 99,
                ..Default::default()
            },
            ControlSupport {
                prompts: true,
                ..Default::default()
            },
        )
        .unwrap();
    c.on_media_state(
        Leg::A,
        change(MediaState::Connecting, MediaState::Connected),
    )
    .await;
    assert!(c.take_commands().is_empty(), "one leg is not enough");
    c.on_media_state(
        Leg::B,
        change(MediaState::Connecting, MediaState::Connected),
    )
    .await;
    let cmds = c.take_commands();
    assert_eq!(cmds.len(), 1);
    assert!(matches!(
        &cmds[0].command,
        callgate::plugin::decision::CallCommand::PlayPrompt { leg: Leg::A, prompt, repeat: 1, .. } if prompt == "welcome"
    ));
    // Held and reconnected: no second prompt.
    c.on_media_state(Leg::B, change(MediaState::Connected, MediaState::Held))
        .await;
    c.on_media_state(Leg::B, change(MediaState::Held, MediaState::Connected))
        .await;
    assert!(c.take_commands().is_empty());

    // Where the gateway cannot play prompts, the plugin is told and nothing is queued.
    let mut c = call(&chain);
    c.on_media_state(
        Leg::A,
        change(MediaState::Connecting, MediaState::Connected),
    )
    .await;
    c.on_media_state(
        Leg::B,
        change(MediaState::Connecting, MediaState::Connected),
    )
    .await;
    assert!(c.take_commands().is_empty());
}

#[tokio::test]
async fn an_established_call_keeps_only_the_instances_it_may_still_need() {
    let rt = runtime();
    let chain = Chain::new(vec![
        load(&rt, PluginSpec::new("hp", wasm("header-policy"))).await,
        probe(&rt, "a", json!({})).await,
    ]);
    let mut c = call(&chain);
    c.on_invite(&invite(&[])).await;
    assert_eq!(c.live_instances(), 2);
    c.setup_done();
    // header-policy takes only on-invite: its instance is gone; the probe still listens.
    assert_eq!(c.live_instances(), 1);
    let edits = c.on_response(Leg::B, "INVITE", &ok_200()).await;
    assert_eq!(values(&edits.add, "X-Probe-Seen"), ["a:b:INVITE:200"]);
}
