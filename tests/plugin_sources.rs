//! Plugins fetched from remote sources: a Wasm OCI artifact in a real registry (Debian's
//! `docker-registry`, the CNCF distribution registry, started on loopback by each test) and an HTTP
//! URL pinned by SHA-256 (a few-line server in the test). Each loaded plugin is seen at work through
//! the header it adds to the INVITE at the far end.

#[path = "support/artifact.rs"]
mod artifact;
#[path = "support/b2b_ua.rs"]
mod b2b_ua;
#[path = "support/http.rs"]
mod http;
#[path = "support/tempdir.rs"]
mod tempdir;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use artifact::sha256_of;
use b2b_ua::*;
use callgate::plugin::{LoadError, PluginSpec, Runtime, RuntimeConfig};
use callgate::reload::{Outcome, Trigger};
use callgate_sip::message::Method;
use http::free_tcp_port;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a registry may take to start answering (a loaded CI machine).
const REGISTRY_START: Duration = Duration::from_secs(30);

/// The status of `GET path` on `addr`, if anything answers.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    Some(http::request(addr, "GET", path).await?.0)
}

/// A `docker-registry` on a free loopback port, storing in a temporary directory; killed on drop.
struct Registry {
    child: Option<Child>,
    addr: SocketAddr,
    dir: tempdir::Dir,
}

impl Registry {
    async fn start() -> Self {
        let dir = tempdir::Dir::new("registry");
        let port = free_tcp_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `docker-registry` ({e}): these tests need Debian's docker-registry \
                     package, which `.ci/run` installs (apt-get install docker-registry)"
                )
            });
        let mut registry = Self {
            child: Some(child),
            addr,
            dir,
        };
        let deadline = Instant::now() + REGISTRY_START;
        while http_status(addr, "/v2/").await != Some(200) {
            let exited = registry.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "docker-registry did not serve on {addr} ({exited:?}): {}",
                    std::fs::read_to_string(registry.dir.path().join("registry.log"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        registry
    }

    /// `127.0.0.1:<port>/<repo_tag>`.
    fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback HTTP server answering `GET /<name>` with `body`, anything else 404; it counts the
/// requests and stops (closing its port) on drop.
struct FileServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    async fn start(name: &str, body: Vec<u8>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (path, body, counter) = (format!("/{name}"), Arc::new(body), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let (path, body) = (path.clone(), body.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let wanted = head.split(' ').nth(1) == Some(path.as_str());
                    let (status, body): (&str, &[u8]) = if wanted {
                        ("200 OK", &body)
                    } else {
                        ("404 Not Found", b"no such file")
                    };
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/wasm\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.write_all(body).await;
                });
            }
        });
        Self { addr, hits, task }
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Places one call through `gw` and returns the B-leg INVITE's values of `names`; the callee then
/// refuses the call (486), which ends it.
async fn invite_headers(
    gw: &callgate::Running,
    callee: &Ua,
    names: &[&str],
) -> Vec<Option<String>> {
    let mut caller = Caller::new(gw.gateway.udp_addr()).await;
    caller.invite(&[]).await;
    let (b, from) = callee.recv_request(Method::Invite).await;
    let values = names
        .iter()
        .map(|n| b.header(n).map(str::to_string))
        .collect();
    callee.respond(&b, from, 486, "busy", &[], false).await;
    assert_eq!(
        caller.ua.recv_final(Method::Invite).await.status(),
        Some(486)
    );
    values
}

fn some(s: &str) -> Option<String> {
    Some(s.to_string())
}

/// Pushes with the built binary, as an operator would; returns its stdout's manifest digest and
/// component SHA-256.
async fn push_with_cli(
    file: PathBuf,
    reference: String,
    insecure: bool,
) -> Result<(String, String), String> {
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callgate"));
        cmd.args(["plugin", "push"]).arg(&file).arg(&reference);
        if insecure {
            cmd.arg("--insecure");
        }
        cmd.env("RUST_LOG", "warn").output().unwrap()
    })
    .await
    .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let field = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no `{label}` line in {stdout:?}"))
    };
    Ok((field("digest "), field("sha256 ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_loads_its_plugin_from_an_oci_registry_and_re_pulls_it_on_reload() {
    let registry = Registry::start().await;
    let file = wasm("header-policy");
    let tag = registry.reference("callgate/header-policy:live");
    let (manifest_digest, sha256) = push_with_cli(file.clone(), tag.clone(), true)
        .await
        .expect("plugin push");
    assert_eq!(sha256, sha256_of(&file));
    assert!(
        manifest_digest.starts_with("sha256:") && manifest_digest.len() == 71,
        "{manifest_digest}"
    );
    // --insecure is refused for a registry off this host, before anything is sent.
    let e = push_with_cli(
        file.clone(),
        "registry.example.com/callgate/hp:1".into(),
        true,
    )
    .await
    .unwrap_err();
    assert!(e.contains("only allowed for a registry on loopback"), "{e}");

    let callee = Ua::new().await;
    let spec = PluginSpec::from_oci("policy", &tag, None).with_config(json!({
        "invite-headers": { "X-Source": "oci" },
        "tag": "re-pulled",
    }));
    let gw = gateway(callee.addr, vec![spec], |_| {}).await;
    assert_eq!(
        invite_headers(&gw, &callee, &["X-Source"]).await,
        [some("oci")]
    );
    let described = gw.plugins.describe().await;
    assert_eq!(described["plugins"][0]["source"], format!("oci {tag}"));
    assert_eq!(described["plugins"][0]["digest"], sha256);

    // By manifest digest, with the component pinned: the same plugin.
    let by_digest = registry.reference(&format!("callgate/header-policy@{manifest_digest}"));
    let p = gw
        .runtime
        .load(&PluginSpec::from_oci(
            "policy",
            &by_digest,
            Some(sha256.clone()),
        ))
        .await
        .unwrap();
    assert_eq!(p.digest(), sha256);

    // A pin the artifact does not match is refused, naming both digests.
    let probe_sha = sha256_of(&wasm("probe"));
    let e = gw
        .runtime
        .load(&PluginSpec::from_oci(
            "policy",
            &tag,
            Some(probe_sha.clone()),
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, LoadError::DigestMismatch { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&probe_sha) && msg.contains(&sha256), "{msg}");
    // A manifest digest the registry does not hold is a fetch error naming the reference.
    let unknown = registry.reference(&format!("callgate/header-policy@sha256:{probe_sha}"));
    let e = gw
        .runtime
        .load(&PluginSpec::from_oci("policy", &unknown, None))
        .await
        .unwrap_err();
    assert!(matches!(e, LoadError::Fetch { .. }), "{e}");
    assert!(e.to_string().contains(&unknown), "{e}");

    // The tag moves to another plugin; a reload (SIGHUP and the admin API take this path) pulls it.
    let pushed = callgate::plugin::source::push(std::fs::read(wasm("probe")).unwrap(), &tag, true)
        .await
        .unwrap();
    assert_eq!(pushed.sha256, probe_sha);
    let reports = gw
        .plugins
        .reload(None, false, Trigger::Admin)
        .await
        .unwrap();
    assert_eq!(
        reports[0].outcome,
        Outcome::Reloaded {
            from: sha256.clone(),
            to: probe_sha
        }
    );
    assert_eq!(
        invite_headers(&gw, &callee, &["X-Source", "X-Probe"]).await,
        [None, some("re-pulled")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_loads_its_plugin_from_a_url_pinned_by_sha256() {
    let file = wasm("header-policy");
    let sha256 = sha256_of(&file);
    let server = FileServer::start("header-policy.wasm", std::fs::read(&file).unwrap()).await;
    let url = server.url("header-policy.wasm");

    // Through the config file's keys.
    let callee = Ua::new().await;
    let mut c = callgate::config::Config::from_toml(&format!(
        r#"
[routing]
default-route = "sip:bob@{}"
[[plugins]]
name = "policy"
url = "{url}"
sha256 = "{sha256}"
config = {{ invite-headers = {{ X-Source = "url" }} }}
"#,
        callee.addr
    ))
    .unwrap();
    c.listen.udp = "127.0.0.1:0".parse().unwrap();
    let gw = callgate::start(&c).await.expect("gateway starts");
    assert_eq!(
        invite_headers(&gw, &callee, &["X-Source"]).await,
        [some("url")]
    );
    assert_eq!(
        gw.plugins.describe().await["plugins"][0]["source"],
        format!("url {url}")
    );
    assert_eq!(server.hits.load(Ordering::Relaxed), 1);

    // A wrong pin stops the gateway from starting, naming both digests.
    let wrong = sha256_of(&wasm("probe"));
    c.plugins = vec![PluginSpec::from_url("policy", &url, &wrong)];
    let e = format!("{:#}", callgate::start(&c).await.err().expect("refused"));
    assert!(
        e.contains(&wrong) && e.contains(&sha256) && e.contains("refused"),
        "{e}"
    );

    // A missing file: the error names the URL and the server's answer.
    let missing = server.url("nope.wasm");
    c.plugins = vec![PluginSpec::from_url("policy", &missing, &sha256)];
    let e = format!("{:#}", callgate::start(&c).await.err().expect("refused"));
    assert!(e.contains(&missing) && e.contains("404"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_share_one_artifact_each_with_its_own_config() {
    let registry = Registry::start().await;
    let reference = registry.reference("callgate/header-policy:1.0");
    let pushed = callgate::plugin::source::push(
        std::fs::read(wasm("header-policy")).unwrap(),
        &reference,
        true,
    )
    .await
    .unwrap();
    let deployment = |tenant: &str| {
        PluginSpec::from_oci("policy", &reference, Some(pushed.sha256.clone()))
            .with_config(json!({ "invite-headers": { "X-Tenant": tenant } }))
    };
    let (acme_callee, globex_callee) = (Ua::new().await, Ua::new().await);
    let acme = gateway(acme_callee.addr, vec![deployment("acme")], |_| {}).await;
    let globex = gateway(globex_callee.addr, vec![deployment("globex")], |_| {}).await;
    assert_eq!(
        invite_headers(&acme, &acme_callee, &["X-Tenant"]).await,
        [some("acme")]
    );
    assert_eq!(
        invite_headers(&globex, &globex_callee, &["X-Tenant"]).await,
        [some("globex")]
    );
    assert_eq!(
        invite_headers(&acme, &acme_callee, &["X-Tenant"]).await,
        [some("acme")]
    );

    // A config the plugin's init refuses: that deployment does not start, with the plugin's words.
    let mut c = callgate::config::Config::defaults();
    c.listen.udp = "127.0.0.1:0".parse().unwrap();
    c.plugins = vec![
        PluginSpec::from_oci("policy", &reference, Some(pushed.sha256.clone()))
            .with_config(json!({ "invite-headers": { "X Tenant": "initech" } })),
    ];
    let e = format!("{:#}", callgate::start(&c).await.err().expect("refused"));
    assert!(
        e.contains("plugin `policy` refused its config: header-policy: `invite-headers`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_artifacts_load_from_the_cache_with_their_origins_stopped() {
    let cache = tempdir::Dir::new("sources-cache");
    let mut registry = Registry::start().await;
    let oci_ref = registry.reference("callgate/header-policy:1.0");
    let pushed = callgate::plugin::source::push(
        std::fs::read(wasm("header-policy")).unwrap(),
        &oci_ref,
        true,
    )
    .await
    .unwrap();
    let probe = std::fs::read(wasm("probe")).unwrap();
    let probe_sha = callgate::plugin::artifact::digest(&probe);
    let server = FileServer::start("probe.wasm", probe.clone()).await;
    let url = server.url("probe.wasm");
    let specs = vec![
        PluginSpec::from_oci("policy", &oci_ref, Some(pushed.sha256.clone()))
            .with_config(json!({ "invite-headers": { "X-Source": "cache" } })),
        PluginSpec::from_url("probe", &url, &probe_sha).with_config(json!({ "tag": "cached" })),
    ];
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();

    let cold = Instant::now();
    for spec in &specs {
        runtime.load(spec).await.unwrap();
    }
    let cold = cold.elapsed();
    let artifacts = cache.path().join("artifacts");
    let cached_probe = artifacts.join(format!("{probe_sha}.wasm"));
    assert_eq!(std::fs::read(&cached_probe).unwrap(), probe);
    assert!(artifacts.join(format!("{}.wasm", pushed.sha256)).is_file());
    assert_eq!(server.hits.load(Ordering::Relaxed), 1);

    // A damaged entry is not used: it is fetched again and replaced.
    std::fs::write(&cached_probe, b"\0asm damaged").unwrap();
    let p = runtime.load(&specs[1]).await.unwrap();
    assert_eq!(p.digest(), probe_sha);
    assert_eq!(server.hits.load(Ordering::Relaxed), 2);
    assert_eq!(std::fs::read(&cached_probe).unwrap(), probe);

    // Both origins stop; the pinned sources still load, and serve calls.
    registry.stop();
    drop(server);
    assert_eq!(http_status(registry.addr, "/v2/").await, None);
    let callee = Ua::new().await;
    let warm = Instant::now();
    let gw = gateway(callee.addr, specs.clone(), |c| {
        c.runtime.cache_dir = Some(cache.path().to_path_buf());
    })
    .await;
    let warm = warm.elapsed();
    assert_eq!(
        invite_headers(&gw, &callee, &["X-Source", "X-Probe"]).await,
        [some("cache"), some("cached")]
    );
    eprintln!(
        "two pinned plugins: cold load {cold:?} (pull + compile), warm start {warm:?} (cache)"
    );

    // An unpinned source is always fetched: with its registry gone it does not load.
    let e = runtime
        .load(&PluginSpec::from_oci("policy", &oci_ref, None))
        .await
        .unwrap_err();
    assert!(matches!(e, LoadError::Fetch { .. }), "{e}");
}
