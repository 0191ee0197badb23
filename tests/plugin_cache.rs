//! The compiled-component cache and plugin artifacts, through real components built from
//! `plugins/` by host/build.rs: a restart finds what the first run compiled, a damaged entry is
//! rebuilt, and `Artifact::read` describes what the SDK stamped into a plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use callgate::plugin::decision::{CallInfo, Header, InviteDecision, RequestView};
use callgate::plugin::{
    Artifact, Chain, CompileOutcome, ControlSupport, PluginSpec, Runtime, RuntimeConfig,
};
use serde_json::json;

#[path = "support/logs.rs"]
mod logs;

fn wasm(name: &str) -> PathBuf {
    PathBuf::from(env!("CALLGATE_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "callgate-plugin-cache-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A runtime as the gateway builds it from `[runtime]`, with this cache directory. Building a
/// second one over the same directory is what a restart does.
fn runtime(cache_dir: Option<&Path>) -> Runtime {
    logs::capture();
    Runtime::new(RuntimeConfig {
        max_instances: 4,
        cache_dir: cache_dir.map(Path::to_path_buf),
        ..Default::default()
    })
    .expect("runtime")
}

/// The cache entries (not temporary files) in `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "cwasm"));
    v.sort();
    v
}

fn header_policy() -> Arc<[u8]> {
    std::fs::read(wasm("header-policy")).unwrap().into()
}

/// Loads `bytes` as header-policy through the loader (which compiles through `rt`'s cache) and
/// runs a call's `on-invite`: proof that the component, compiled or deserialised, actually runs.
async fn assert_header_policy_works(rt: &Runtime, bytes: &[u8]) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let file = std::env::temp_dir().join(format!(
        "callgate-cache-plugin-{}-{}.wasm",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&file, bytes).unwrap();
    let spec = PluginSpec::new("header-policy", &file)
        .with_config(json!({ "invite-headers": { "X-Tenant": "acme" } }));
    let loaded = rt.load(&spec).await;
    let _ = std::fs::remove_file(&file);
    let chain = Chain::new(vec![loaded.expect("header-policy loads")]);
    let call = CallInfo {
        call_ref: 1,
        call_id: "cache-test@127.0.0.1".into(),
        from: "sip:alice@127.0.0.1".into(),
        to: "sip:bob@127.0.0.1".into(),
        request_uri: "sip:bob@127.0.0.1:5080".into(),
        source: "udp:127.0.0.1:5070".into(),
        ..Default::default()
    };
    let request = RequestView {
        method: "INVITE",
        uri: "sip:bob@127.0.0.1:5080",
        headers: vec![],
        body_type: None,
    };
    let mut plugins = chain.start_call(call, ControlSupport::default()).unwrap();
    let decision = plugins.on_invite(&request).await.decision;
    let InviteDecision::Forward(f) = decision else {
        panic!("expected forward, got {decision:?}");
    };
    assert_eq!(f.invite_headers, [Header::new("X-Tenant", "acme")]);
}

#[tokio::test]
async fn a_restart_finds_the_compiled_component() {
    let dir = TempDir::new();
    let bytes = header_policy();

    let (_, cold) = runtime(Some(&dir.0)).compile(bytes.clone()).await.unwrap();
    assert!(matches!(cold, CompileOutcome::Compiled { .. }), "{cold:?}");
    assert_eq!(entries(&dir.0).len(), 1);

    // A new runtime over the same directory: what a restart of the gateway does.
    let rt = runtime(Some(&dir.0));
    let (_, warm) = rt.compile(bytes.clone()).await.unwrap();
    assert!(matches!(warm, CompileOutcome::Cached { .. }), "{warm:?}");
    assert_eq!(entries(&dir.0).len(), 1);
    assert_header_policy_works(&rt, &bytes).await;
    // Each outcome is logged with the digest `callgate plugin inspect` prints.
    let digest = Artifact::read(&bytes).unwrap().digest;
    for outcome in ["compiled", "cached"] {
        assert!(
            logs::text()
                .lines()
                .any(|l| l.contains(&digest) && l.contains(&format!("outcome=\"{outcome}\""))),
            "no {outcome} line for {digest} in:\n{}",
            logs::text()
        );
    }
    eprintln!(
        "header-policy ({} KiB): cold compile {:.1} ms, warm (cached) {:.1} ms",
        header_policy().len() / 1024,
        cold.elapsed().as_secs_f64() * 1e3,
        warm.elapsed().as_secs_f64() * 1e3,
    );
}

#[tokio::test]
async fn without_a_cache_dir_it_compiles_and_writes_nothing() {
    let rt = runtime(None);
    let (_, outcome) = rt.compile(header_policy()).await.unwrap();
    assert!(
        matches!(outcome, CompileOutcome::Uncached { .. }),
        "{outcome:?}"
    );
    assert_header_policy_works(&rt, &header_policy()).await;
}

#[tokio::test]
async fn a_damaged_entry_is_removed_and_rebuilt() {
    let dir = TempDir::new();
    let bytes = header_policy();
    runtime(Some(&dir.0)).compile(bytes.clone()).await.unwrap();
    let [entry] = &entries(&dir.0)[..] else {
        panic!("one entry expected");
    };
    let good = std::fs::read(entry).unwrap();
    // A flipped byte deep in the compiled code, then a truncated file: each must be caught before
    // wasmtime deserialises it, and the component must still come out working.
    let mut flipped = good.clone();
    let mid = good.len() / 2;
    flipped[mid] ^= 0x40;
    let corrupt_lines = || {
        logs::text()
            .lines()
            .filter(|l| l.contains("corrupt") && l.contains(&*entry.to_string_lossy()))
            .count()
    };
    for (round, damaged) in [flipped, good[..good.len() - 100].to_vec()]
        .into_iter()
        .enumerate()
    {
        std::fs::write(entry, &damaged).unwrap();
        let rt = runtime(Some(&dir.0));
        let (_, outcome) = rt.compile(bytes.clone()).await.unwrap();
        assert!(
            matches!(outcome, CompileOutcome::Compiled { .. }),
            "{outcome:?}"
        );
        assert_header_policy_works(&rt, &bytes).await;
        assert_eq!(corrupt_lines(), round + 1, "one warning per damaged entry");
        // The rebuilt entry is sound again: the next start uses it.
        assert_eq!(std::fs::read(entry).unwrap(), good);
        let (_, again) = runtime(Some(&dir.0)).compile(bytes.clone()).await.unwrap();
        assert!(matches!(again, CompileOutcome::Cached { .. }), "{again:?}");
    }
}

#[tokio::test]
async fn different_bytes_get_their_own_entry() {
    let dir = TempDir::new();
    let rt = runtime(Some(&dir.0));
    let original = header_policy();
    // The same program with one more custom section at the end: other bytes, same behaviour, so
    // only the key can tell them apart.
    let mut variant = original.to_vec();
    let name = b"callgate-test";
    variant.extend_from_slice(&[0x00, (1 + name.len() + 1) as u8, name.len() as u8]);
    variant.extend_from_slice(name);
    variant.push(1);

    let (_, a) = rt.compile(original.clone()).await.unwrap();
    let (_, b) = rt.compile(variant.clone()).await.unwrap();
    assert!(matches!(a, CompileOutcome::Compiled { .. }), "{a:?}");
    assert!(matches!(b, CompileOutcome::Compiled { .. }), "{b:?}");
    assert_eq!(entries(&dir.0).len(), 2);
    assert_header_policy_works(&rt, &variant).await;
    // Each is found under its own key afterwards.
    let (_, a) = rt.compile(original).await.unwrap();
    let (_, b) = rt.compile(variant).await.unwrap();
    assert!(matches!(a, CompileOutcome::Cached { .. }), "{a:?}");
    assert!(matches!(b, CompileOutcome::Cached { .. }), "{b:?}");
}

#[tokio::test]
async fn an_unusable_cache_dir_only_costs_the_cache() {
    let dir = TempDir::new();
    std::fs::create_dir_all(&dir.0).unwrap();
    // A file where the directory should be: creating the directory fails, even for root.
    let blocker = dir.0.join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let rt = runtime(Some(&blocker.join("cache")));
    let (_, outcome) = rt.compile(header_policy()).await.unwrap();
    assert!(
        matches!(outcome, CompileOutcome::Uncached { .. }),
        "{outcome:?}"
    );
    assert_header_policy_works(&rt, &header_policy()).await;
}

#[tokio::test]
async fn invalid_bytes_are_a_compile_error_and_leave_no_entry() {
    let dir = TempDir::new();
    let err = runtime(Some(&dir.0))
        .compile(b"not wasm".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(err, callgate::plugin::CompileError::Invalid(_)),
        "{err}"
    );
    assert!(entries(&dir.0).is_empty());
}

#[test]
fn inspect_describes_header_policy() {
    let path = wasm("header-policy");
    let bytes = std::fs::read(&path).unwrap();
    let a = Artifact::read(&bytes).unwrap();
    // Checked against coreutils' sha256sum, not against our own hashing.
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum (coreutils) runs");
    let sum = String::from_utf8(out.stdout).unwrap();
    assert_eq!(Some(a.digest.as_str()), sum.split_whitespace().next());
    assert_eq!(a.size, bytes.len());
    assert_eq!(a.contract.as_deref(), Some("0.1.2"));
    let meta = a.meta.expect("the SDK stamps its metadata");
    assert_eq!(meta.name, "header-policy");
    // The plugins and the SDK take the workspace's version, as this crate does.
    assert_eq!(meta.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(meta.sdk, env!("CARGO_PKG_VERSION"));
    assert_eq!(meta.hooks, ["on-invite"]);
    // Built without WASI: the contract's interfaces only.
    assert!(
        !a.imports.is_empty() && a.imports.iter().all(|i| i.starts_with("callgate:plugin/")),
        "{:?}",
        a.imports
    );
}
