//! Plugins replaced while the gateway runs, through the real paths: a file rewritten in the plugin
//! directory, the admin API over HTTP, SIGHUP to the real binary, and a reload every second under
//! sipp load. Each version is told apart by a header it adds, seen at the far end.

#[path = "support/artifact.rs"]
mod artifact;
#[path = "support/b2b_ua.rs"]
mod b2b_ua;
#[path = "support/http.rs"]
mod http;
#[path = "support/sipp.rs"]
mod sipp;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::path::{Path, PathBuf};
use std::time::Duration;

use artifact::sha256_of;
use b2b_ua::*;
use callgate::plugin::PluginSpec;
use callgate_sip::message::Method;
use http::free_tcp_port;
use serde_json::json;

/// How long a reload may take to show (compile and pre-initialise on a busy CI machine).
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// One config both versions accept: the probe reads `tag`, header-policy `invite-headers`.
fn both_versions_config() -> serde_json::Value {
    json!({ "tag": "old", "invite-headers": { "X-Version": "new" } })
}

/// Puts `from`'s content at `to` the way a deploy does: written beside it, then renamed over it.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http::request(addr, method, path)
        .await
        .expect("admin API answers");
    (status, serde_json::from_str(&body).unwrap_or(json!(body)))
}

/// The admin API's entry for the one plugin.
async fn serving(admin: std::net::SocketAddr) -> serde_json::Value {
    let (status, body) = http(admin, "GET", "/plugins").await;
    assert_eq!(status, 200, "{body}");
    body["plugins"][0].clone()
}

async fn wait_for_digest(admin: std::net::SocketAddr, digest: &str) {
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    loop {
        if serving(admin).await["digest"] == digest {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload to {digest}: {}",
            serving(admin).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn plugin_dir() -> tempdir::Dir {
    tempdir::Dir::new("reload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_serves_new_calls_while_the_call_in_flight_keeps_its_version() {
    let dir = plugin_dir();
    let file = dir.path().join("policy.wasm");
    install(&wasm("probe"), &file);
    let callee = Ua::new().await;
    let spec = PluginSpec::new("policy", &file).with_config(both_versions_config());
    let gw = gateway(callee.addr, vec![spec], |c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.reload.debounce_ms = 100;
    })
    .await;
    let admin = gw.admin_addr.unwrap();

    // Call 1 starts on the old version and rings.
    let mut first = Caller::new(gw.gateway.udp_addr()).await;
    first.invite(&[]).await;
    let (b1, from1) = callee.recv_request(Method::Invite).await;
    assert_eq!(b1.header("X-Probe"), Some("old"));
    assert_eq!(b1.header("X-Version"), None);
    callee.respond(&b1, from1, 180, "t1", &[], false).await;

    // A deploy replaces the file; the watcher reloads it.
    install(&wasm("header-policy"), &file);
    wait_for_digest(admin, &sha256_of(&wasm("header-policy"))).await;
    assert_eq!(serving(admin).await["reloads"], 1);

    // Call 2 gets the new version.
    let mut second = Caller::new(gw.gateway.udp_addr()).await;
    second.invite(&[]).await;
    let (b2, from2) = callee
        .recv_where("the second call's INVITE", |m| {
            m.method() == Some(&Method::Invite) && m.call_id() != b1.call_id()
        })
        .await;
    assert_eq!(b2.header("X-Version"), Some("new"));
    assert_eq!(b2.header("X-Probe"), None);

    // Call 1 is answered and finishes on the old version: its on-response edit reaches the caller.
    callee.respond(&b1, from1, 200, "t1", &[], true).await;
    let ok1 = first.ua.recv_final(Method::Invite).await;
    assert_eq!(ok1.status(), Some(200));
    assert_eq!(ok1.header("X-Probe-Seen"), Some("old:b:INVITE:200"));
    first.ack(&ok1).await;
    callee.recv_request(Method::Ack).await;

    callee.respond(&b2, from2, 200, "t2", &[], true).await;
    let ok2 = second.ua.recv_final(Method::Invite).await;
    assert_eq!(ok2.status(), Some(200));
    assert_eq!(ok2.header("X-Probe-Seen"), None);
    second.ack(&ok2).await;

    for caller in [&mut first, &mut second] {
        caller.in_dialog(Method::Bye, &[], None).await;
        let (bye, from) = callee.recv_request(Method::Bye).await;
        callee.respond(&bye, from, 200, "-", &[], false).await;
        assert_eq!(caller.ua.recv_final(Method::Bye).await.status(), Some(200));
    }
}

/// A copy of a plugin that claims another contract version: same bytes, the export renamed (the
/// SDK's plugins export `lean-hooks`).
fn other_contract(dir: &Path, version: &str) -> PathBuf {
    let bytes = std::fs::read(wasm("header-policy")).unwrap();
    let (old, new) = (
        b"callgate:plugin/lean-hooks@0.1.2".as_slice(),
        format!("callgate:plugin/lean-hooks@{version}"),
    );
    assert_eq!(old.len(), new.len(), "same length keeps the binary valid");
    let mut out = bytes.clone();
    let mut i = 0;
    while let Some(at) = out[i..].windows(old.len()).position(|w| w == old) {
        out[i + at..i + at + old.len()].copy_from_slice(new.as_bytes());
        i += at + old.len();
    }
    assert_ne!(out, bytes, "the export name was found");
    let p = dir.join(format!("contract-{version}.wasm"));
    std::fs::write(&p, out).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_versions_are_refused_while_the_old_serves_and_an_older_contract_loads() {
    let dir = plugin_dir();
    let file = dir.path().join("policy.wasm");
    install(&wasm("header-policy"), &file);
    let good = sha256_of(&file);
    let callee = Ua::new().await;
    // `on-init = fail` makes the misbehave plugin refuse this config; header-policy ignores it.
    let config = json!({ "invite-headers": { "X-Version": "good" }, "on-init": "fail" });
    let spec = PluginSpec::new("policy", &file).with_config(config);
    let gw = gateway(callee.addr, vec![spec], |c| {
        c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
        c.reload.watch = false;
    })
    .await;
    let admin = gw.admin_addr.unwrap();

    let not_wasm = dir.path().join("garbage.wasm");
    std::fs::write(&not_wasm, b"\0asm this is not a component").unwrap();
    let cases = [
        (not_wasm, "not a valid wasm component"),
        (wasm("misbehave"), "init refused by config"),
        (other_contract(dir.path(), "9.1.0"), "9.1.0"),
        // A newer patch of our own track may import what this gateway lacks.
        (other_contract(dir.path(), "0.1.3"), "0.1.3"),
    ];
    for (version, expect) in &cases {
        install(version, &file);
        let (status, body) = http(admin, "POST", "/plugins/policy/reload").await;
        assert_eq!(status, 409, "{body}");
        let reload = &body["reloads"][0];
        assert_eq!(reload["outcome"], "refused", "{body}");
        let reason = reload["reason"].as_str().unwrap();
        assert!(reason.contains(expect), "{expect:?} not in {reason:?}");
        let now = serving(admin).await;
        assert_eq!(now["digest"], good);
        assert_eq!(now["last-refusal"], reason);

        // The old version still serves calls.
        let b = busy_call(&gw, &callee).await;
        assert_eq!(b.header("X-Version"), Some("good"));
    }
    // The contract refusal names both versions.
    let reason = serving(admin).await["last-refusal"].clone();
    assert!(
        reason.as_str().unwrap().contains("0.1.0 to 0.1.2"),
        "supported versions named: {reason}"
    );

    let (status, _) = http(admin, "POST", "/plugins/nosuch/reload").await;
    assert_eq!(status, 404);
    install(&wasm("header-policy"), &file);
    let (status, body) = http(admin, "POST", "/plugins/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloads"][0]["outcome"], "reloaded");

    // A plugin built against the older contract 0.1.0 of the same track loads and decides.
    install(&wasm("contract-0-1-0"), &file);
    let (status, body) = http(admin, "POST", "/plugins/policy/reload").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reloads"][0]["outcome"], "reloaded", "{body}");
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(&[]).await;
    let (b, from) = callee.recv_request(Method::Invite).await;
    assert_eq!(b.header("X-Contract"), Some("0.1.0"));
    // `hooks` (unlike `lean-hooks`) receive the call's facts as an argument.
    assert_eq!(b.header("X-Contract-Call"), Some(caller.call_id.as_str()));
    callee.respond(&b, from, 486, "busy", &[], false).await;
    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(486)
    );
}

/// A call the callee answers 486, which reaches the caller; returns the INVITE the callee got.
async fn busy_call(gw: &callgate::Running, callee: &Ua) -> callgate_sip::message::SipMessage {
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(&[]).await;
    let (b, from) = callee.recv_request(Method::Invite).await;
    callee.respond(&b, from, 486, "busy", &[], false).await;
    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(486)
    );
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binarys_plugins() {
    let dir = plugin_dir();
    let file = dir.path().join("policy.wasm");
    install(&wasm("probe"), &file);
    let (sip, admin) = (sipp::free_udp_port(), free_tcp_port());
    let config = dir.path().join("callgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listen]
udp = "127.0.0.1:{sip}"
[routing]
default-route = "sip:bob@127.0.0.1:9"
[admin]
listen = "127.0.0.1:{admin}"
[reload]
watch = false
[[plugins]]
name = "policy"
path = "{}"
config = {{ tag = "old" }}
"#,
            file.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_callgate"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "binary never served"
        );
        assert!(child.try_wait().unwrap().is_none(), "binary exited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    install(&wasm("header-policy"), &file);
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    wait_for_digest(admin, &sha256_of(&wasm("header-policy"))).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_every_second_under_sipp_load_drops_no_call() {
    sipp::require_sipp();
    let dir = plugin_dir();
    let file = dir.path().join("policy.wasm");
    install(&wasm("header-policy"), &file);
    let uas_port = sipp::free_udp_port();
    let uas = sipp::Sipp::uas("uas.xml", uas_port).spawn();
    let mut c = callgate::config::Config::defaults();
    c.listen.udp = "127.0.0.1:0".parse().unwrap();
    c.routing.default_route = Some(format!("sip:service@127.0.0.1:{uas_port}"));
    c.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    c.reload.watch = false;
    c.runtime.cache_dir = Some(dir.path().join("cache"));
    c.plugins = vec![PluginSpec::new("policy", &file).with_config(both_versions_config())];
    let gw = callgate::start(&c).await.expect("gateway starts");
    let admin = gw.admin_addr.unwrap();

    // 200 calls/s for 30 s; each call lasts 500 ms, so every reload has calls in flight.
    let calls = 6000;
    let uac = sipp::Sipp::uac("uac.xml", gw.gateway.udp_addr())
        .calls(calls)
        .rate(200.0)
        .call_length(Duration::from_millis(500))
        .spawn();
    let versions = [wasm("probe"), wasm("header-policy")];
    let mut reloaded = 0;
    // The issue's load pattern: one reload a second, while the calls keep coming.
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.tick().await;
    for i in 0..30 {
        every_second.tick().await;
        install(&versions[i % 2], &file);
        let (status, body) = http(admin, "POST", "/plugins/reload").await;
        assert_eq!(status, 200, "{body}");
        reloaded += 1;
    }
    let out = tokio::task::spawn_blocking(move || uac.wait(Duration::from_secs(90)))
        .await
        .unwrap();
    out.assert_all_successful(calls);
    drop(uas);
    assert_eq!(serving(admin).await["reloads"], reloaded);
}
