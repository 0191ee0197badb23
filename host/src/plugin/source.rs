//! Where a plugin's component comes from: a local file (`path`), an HTTP(S) URL pinned by its
//! SHA-256 (`url` + `sha256`), or a Wasm OCI artifact in a registry (`oci`, optionally pinned by
//! `sha256`), and the code that fetches its bytes.
//!
//! OCI artifacts follow the CNCF TAG-Runtime "Wasm OCI artifact" layout (one `application/wasm`
//! layer, an `application/vnd.wasm.config.v0+json` config), read and written with the `oci-wasm`
//! crate over `oci-client`. Pulls are anonymous. Registries are spoken to over HTTPS, except
//! loopback ones (a local mirror or a test registry), which get plain HTTP: that traffic never
//! leaves the host.
//!
//! The `sha256` pin is the SHA-256 of the component itself (the OCI layer), the same digest that
//! `callgate plugin inspect` prints and the admin API reports: bytes that do not match it are
//! refused. With a cache directory, fetched artifacts are kept under `<cache-dir>/artifacts/`,
//! named by that digest, and a pinned source already there loads without the network.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{WASM_LAYER_MEDIA_TYPE, WasmClient, WasmConfig};

use super::artifact::digest;

/// The largest component a remote source may deliver: far above any plugin (the in-tree ones are
/// well under 1 MiB), low enough that a wrong URL cannot fill the gateway's memory.
pub const MAX_ARTIFACT_BYTES: u64 = 64 << 20;

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole fetch may take: a load holds up the reloads queued behind it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a plugin's component comes from, as checked by [`PluginSource::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A local file.
    Path(PathBuf),
    /// An HTTP(S) URL; the body must have this SHA-256.
    Url {
        /// `http://` or `https://`.
        url: String,
        /// Lower-case hex.
        sha256: String,
    },
    /// A Wasm OCI artifact.
    Oci {
        /// `host[:port]/repository:tag` or `...@sha256:<manifest digest>`.
        reference: String,
        /// If set, the component layer must have this SHA-256 (lower-case hex).
        sha256: Option<String>,
    },
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Path(p) => write!(f, "path {}", p.display()),
            PluginSource::Url { url, .. } => write!(f, "url {url}"),
            PluginSource::Oci { reference, .. } => write!(f, "oci {reference}"),
        }
    }
}

impl PluginSource {
    /// Checks the source keys of a plugin entry: exactly one of `path`, `url`, `oci`; `sha256`
    /// required with `url`, optional with `oci`, refused with `path`. The message names the keys.
    pub fn parse(
        path: Option<&Path>,
        url: Option<&str>,
        oci: Option<&str>,
        sha256: Option<&str>,
    ) -> Result<Self, String> {
        let given: Vec<&str> = [
            ("`path`", path.is_some()),
            ("`url`", url.is_some()),
            ("`oci`", oci.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if given.len() != 1 {
            let found = if given.is_empty() {
                "none is set".to_string()
            } else {
                format!("{} are set", given.join(" and "))
            };
            return Err(format!(
                "give exactly one of `path`, `url` or `oci` as the plugin's source; {found}"
            ));
        }
        let pin = sha256
            .map(|s| normalize_sha256(s).map_err(|e| format!("`sha256`: {e}")))
            .transpose()?;
        if let Some(p) = path {
            if pin.is_some() {
                return Err(
                    "`sha256` pins a `url` or `oci` source; a `path` source is not pinned".into(),
                );
            }
            return Ok(PluginSource::Path(p.to_path_buf()));
        }
        if let Some(url) = url {
            check_url(url).map_err(|e| format!("`url` {url:?}: {e}"))?;
            let Some(sha256) = pin else {
                return Err(format!(
                    "`url` {url:?} needs a `sha256` pin: the SHA-256 of the component file, as `callgate plugin inspect` prints it"
                ));
            };
            return Ok(PluginSource::Url {
                url: url.to_string(),
                sha256,
            });
        }
        let reference = oci.expect("exactly one source key is set");
        parse_reference(reference).map_err(|e| format!("`oci` {reference:?}: {e}"))?;
        Ok(PluginSource::Oci {
            reference: reference.to_string(),
            sha256: pin,
        })
    }

    /// The local file, for a `path` source.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PluginSource::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The SHA-256 the bytes must have, if pinned.
    pub fn pin(&self) -> Option<&str> {
        match self {
            PluginSource::Path(_) => None,
            PluginSource::Url { sha256, .. } => Some(sha256),
            PluginSource::Oci { sha256, .. } => sha256.as_deref(),
        }
    }
}

/// `<64 hex digits>` or `sha256:<64 hex digits>`, as lower-case hex.
fn normalize_sha256(s: &str) -> Result<String, String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not a SHA-256 (64 hex digits)"));
    }
    Ok(hex.to_ascii_lowercase())
}

fn check_url(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("scheme {:?} is not http or https", u.scheme()));
    }
    if u.host_str().is_none() {
        return Err("no host".into());
    }
    Ok(())
}

/// Parses an OCI reference that names its registry: without one, the reference would silently
/// mean Docker Hub.
fn parse_reference(s: &str) -> Result<Reference, String> {
    let r: Reference = s.parse().map_err(|e| format!("{e}"))?;
    let first = s.split('/').next().unwrap_or_default();
    if !s.contains('/') || first != r.registry() {
        return Err("name the registry: host[:port]/repository:tag or ...@sha256:<digest>".into());
    }
    Ok(r)
}

/// Whether `registry` (`host[:port]`) is on this host.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a source's bytes could not be had.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// A `path` source's file could not be read.
    Read(std::io::Error),
    /// A remote source failed: network, server, registry layout, size.
    Fetch(String),
    /// The bytes are not the pinned ones.
    DigestMismatch {
        /// The pin (lower-case hex).
        expected: String,
        /// What arrived.
        found: String,
    },
}

/// Fetches the component of `source`: reads the file, or serves a pinned artifact from
/// `<cache_dir>/artifacts/`, or downloads it (and then stores it there).
pub(crate) async fn fetch(
    source: &PluginSource,
    cache_dir: Option<&Path>,
) -> Result<Vec<u8>, FetchError> {
    if let PluginSource::Path(p) = source {
        return tokio::fs::read(p).await.map_err(FetchError::Read);
    }
    let started = Instant::now();
    let artifacts = cache_dir.map(|d| d.join("artifacts"));
    if let (Some(dir), Some(pin)) = (&artifacts, source.pin()) {
        let (dir, pin) = (dir.clone(), pin.to_string());
        if let Ok(Some(bytes)) = tokio::task::spawn_blocking(move || cache_read(&dir, &pin)).await {
            log_fetched(source, &bytes, "cache", started);
            return Ok(bytes);
        }
    }
    let download = async {
        match source {
            PluginSource::Url { url, .. } => get_url(url).await,
            PluginSource::Oci { reference, sha256 } => pull_oci(reference, sha256.as_deref()).await,
            PluginSource::Path(_) => unreachable!("handled above"),
        }
    };
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, download)
        .await
        .map_err(|_| {
            FetchError::Fetch(format!(
                "no complete answer within {} s",
                FETCH_TIMEOUT.as_secs()
            ))
        })??;
    let found = digest(&bytes);
    if let Some(expected) = source.pin()
        && expected != found
    {
        return Err(FetchError::DigestMismatch {
            expected: expected.to_string(),
            found,
        });
    }
    log_fetched(source, &bytes, "network", started);
    if let Some(dir) = artifacts {
        let copy = bytes.clone();
        // Storing is best effort: the load goes on with the bytes it has.
        let _ = tokio::task::spawn_blocking(move || cache_write(&dir, &found, &copy)).await;
    }
    Ok(bytes)
}

fn log_fetched(source: &PluginSource, bytes: &[u8], from: &'static str, started: Instant) {
    tracing::info!(
        %source,
        digest = %digest(bytes),
        size = bytes.len(),
        from,
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
        "plugin artifact fetched"
    );
}

/// An error and its causes on one line: reqwest's and oci-client's top-level messages alone
/// ("error sending request") hide the reason.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn too_large() -> String {
    format!(
        "the artifact is larger than {} MiB",
        MAX_ARTIFACT_BYTES >> 20
    )
}

/// HTTP GET of a `url` source, size-limited.
async fn get_url(url: &str) -> Result<Vec<u8>, FetchError> {
    let fail = |e: reqwest::Error| FetchError::Fetch(chain(&e));
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("callgate/", env!("CARGO_PKG_VERSION")));
    if reqwest::Url::parse(url).is_ok_and(|u| u.host_str().is_some_and(is_loopback)) {
        // A proxy from the environment cannot reach this host's loopback.
        builder = builder.no_proxy();
    }
    let client = builder.build().map_err(fail)?;
    let mut response = client.get(url).send().await.map_err(fail)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Fetch(format!("the server answered {status}")));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ARTIFACT_BYTES)
    {
        return Err(FetchError::Fetch(too_large()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fail)? {
        if (body.len() + chunk.len()) as u64 > MAX_ARTIFACT_BYTES {
            return Err(FetchError::Fetch(too_large()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An oci-client for `reference`'s registry: plain HTTP only if the registry is on loopback and
/// `plain_http_to_loopback`.
fn oci_client(reference: &Reference, plain_http_to_loopback: bool) -> WasmClient {
    let registry = reference.resolve_registry();
    let protocol = if plain_http_to_loopback && is_loopback(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    };
    WasmClient::new(Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(Duration::from_secs(30)),
        user_agent: concat!("callgate/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    }))
}

/// Pulls the component layer of a Wasm OCI artifact.
async fn pull_oci(reference: &str, pin: Option<&str>) -> Result<Vec<u8>, FetchError> {
    let fail = |e: String| FetchError::Fetch(e);
    let r = parse_reference(reference).map_err(fail)?;
    let client = oci_client(&r, true);
    let auth = RegistryAuth::Anonymous;
    // Checks the Wasm artifact layout (manifest and config media types, one layer) and, for a
    // reference by digest, the manifest's digest.
    let (manifest, _config, _manifest_digest) = client
        .pull_manifest_and_config(&r, &auth)
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
    let layer = &manifest.layers[0];
    if layer.media_type != WASM_LAYER_MEDIA_TYPE {
        return Err(fail(format!(
            "the layer is {:?}, not {WASM_LAYER_MEDIA_TYPE:?}: not a Wasm OCI artifact",
            layer.media_type
        )));
    }
    // Refused before downloading: the manifest already says which component it is.
    if let Some(expected) = pin {
        let found = layer
            .digest
            .strip_prefix("sha256:")
            .unwrap_or(&layer.digest);
        if found != expected {
            return Err(FetchError::DigestMismatch {
                expected: expected.to_string(),
                found: found.to_string(),
            });
        }
    }
    if !(0..=MAX_ARTIFACT_BYTES as i64).contains(&layer.size) {
        return Err(fail(too_large()));
    }
    let mut out = Capped::default();
    // oci-client checks the layer's bytes against the manifest's digest for it.
    client
        .pull_blob(&r, layer, &mut out)
        .await
        .map_err(|e| fail(chain(&e)))?;
    Ok(out.0)
}

/// A buffer that refuses to grow past [`MAX_ARTIFACT_BYTES`], for `pull_blob`: a registry may
/// send more than the manifest declared.
#[derive(Default)]
struct Capped(Vec<u8>);

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let buf = &mut self.get_mut().0;
        if (buf.len() + data.len()) as u64 > MAX_ARTIFACT_BYTES {
            return Poll::Ready(Err(std::io::Error::other(too_large())));
        }
        buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn cache_file(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(format!("{sha256}.wasm"))
}

/// The cached artifact with this digest, if present and intact. A damaged one (torn write, disk
/// error) is logged, removed and treated as absent: the caller fetches it again.
fn cache_read(dir: &Path, sha256: &str) -> Option<Vec<u8>> {
    let path = cache_file(dir, sha256);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the cached plugin artifact; fetching it");
            return None;
        }
    };
    let found = digest(&bytes);
    if found == sha256 {
        return Some(bytes);
    }
    tracing::warn!(path = %path.display(), %found, "cached plugin artifact does not match its digest; removing it and fetching it");
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove the damaged cached artifact");
    }
    None
}

/// Tells apart the temporary files of concurrent stores within one process.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Stores an artifact under its digest atomically (a temporary file renamed over the name), so
/// that a reader sees all of it or nothing. Failures are logged: the cache is an optimisation.
fn cache_write(dir: &Path, sha256: &str, bytes: &[u8]) {
    let path = cache_file(dir, sha256);
    let tmp = dir.join(format!(
        ".{sha256}.{}.{}.tmp",
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        std::fs::create_dir_all(dir)?;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e, "cannot store the plugin artifact; the next load fetches it again");
    }
}

/// What [`push`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The reference pushed to, as given.
    pub reference: String,
    /// The manifest's digest (`sha256:<hex>`): `<repository>@<digest>` names this push for good.
    pub manifest_digest: String,
    /// The component's SHA-256 (lower-case hex), the value of a `sha256` pin.
    pub sha256: String,
}

/// Pushes a component to `reference` as a Wasm OCI artifact (`callgate plugin push`), anonymously.
/// `insecure` allows plain HTTP, and only to a loopback registry.
pub async fn push(component: Vec<u8>, reference: &str, insecure: bool) -> anyhow::Result<Pushed> {
    let r = parse_reference(reference).map_err(|e| anyhow::anyhow!("{reference:?}: {e}"))?;
    anyhow::ensure!(
        !insecure || is_loopback(r.resolve_registry()),
        "--insecure (plain HTTP) is only allowed for a registry on loopback, not {}",
        r.resolve_registry()
    );
    anyhow::ensure!(
        r.digest().is_none(),
        "{reference:?}: push to a tag; the registry names the pushed manifest's digest"
    );
    // Refuse what the gateway would refuse to load, before the registry sees it.
    let artifact = super::Artifact::read(&component)?;
    anyhow::ensure!(
        artifact.contract.is_some(),
        "not a Callgate plugin: the component exports no callgate:plugin/hooks or lean-hooks interface"
    );
    let sha256 = artifact.digest.clone();
    let (config, layer) = WasmConfig::from_raw_component(component, None)?;
    let annotations = artifact.meta.map(|m| {
        [
            ("org.opencontainers.image.title".to_string(), m.name),
            ("org.opencontainers.image.version".to_string(), m.version),
        ]
        .into_iter()
        .collect()
    });
    let client = oci_client(&r, insecure);
    let auth = RegistryAuth::Anonymous;
    let pushed = client
        .push(&r, &auth, layer, config, annotations)
        .await
        .map_err(|e| anyhow::anyhow!("pushing to {reference}: {e:#}"))?;
    // The registry's Location names the manifest by digest; ask it if it did not.
    let manifest_digest = match pushed.manifest_url.rsplit_once("/manifests/") {
        Some((_, d)) if d.starts_with("sha256:") && d.len() == 71 => d.to_string(),
        _ => client
            .fetch_manifest_digest(&r, &auth)
            .await
            .map_err(|e| anyhow::anyhow!("reading back the pushed digest: {}", chain(&e)))?,
    };
    Ok(Pushed {
        reference: reference.to_string(),
        manifest_digest,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIN: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn exactly_one_source_and_the_pins_it_needs() {
        let p = Path::new("x.wasm");
        assert_eq!(
            PluginSource::parse(Some(p), None, None, None),
            Ok(PluginSource::Path(p.into()))
        );
        let e = PluginSource::parse(None, None, None, None).unwrap_err();
        assert!(e.contains("none is set"), "{e}");
        let e = PluginSource::parse(Some(p), Some("http://h/x"), None, Some(PIN)).unwrap_err();
        assert!(e.contains("`path` and `url` are set"), "{e}");
        let e = PluginSource::parse(None, Some("http://h/x"), None, None).unwrap_err();
        assert!(e.contains("needs a `sha256` pin"), "{e}");
        let e = PluginSource::parse(Some(p), None, None, Some(PIN)).unwrap_err();
        assert!(e.contains("`sha256`"), "{e}");
        let upper = format!("sha256:{}", PIN.to_uppercase());
        assert_eq!(
            PluginSource::parse(None, Some("https://h/x.wasm"), None, Some(&upper)),
            Ok(PluginSource::Url {
                url: "https://h/x.wasm".into(),
                sha256: PIN.into()
            })
        );
        let e = PluginSource::parse(None, Some("ftp://h/x"), None, Some(PIN)).unwrap_err();
        assert!(e.contains("`url`") && e.contains("ftp"), "{e}");
        let e = PluginSource::parse(None, Some("http://h/x"), None, Some("abc")).unwrap_err();
        assert!(e.contains("`sha256`"), "{e}");
    }

    #[test]
    fn oci_references_must_name_their_registry() {
        let ok = PluginSource::parse(None, None, Some("127.0.0.1:5000/p/hp:1.0"), None).unwrap();
        assert_eq!(ok.pin(), None);
        let by_digest = format!("registry.example.com/p/hp@sha256:{PIN}");
        assert!(PluginSource::parse(None, None, Some(&by_digest), Some(PIN)).is_ok());
        for bad in ["hp:1.0", "library/hp:1.0", "Not A Reference"] {
            let e = PluginSource::parse(None, None, Some(bad), None).unwrap_err();
            assert!(e.contains("`oci`"), "{bad}: {e}");
        }
    }

    #[test]
    fn loopback_registries_are_told_apart() {
        for r in [
            "127.0.0.1:5000",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "registry.example.com",
            "10.0.0.1:5000",
            "[2001:db8::1]:5000",
            "localhost.evil",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }

    #[test]
    fn the_cache_serves_only_intact_artifacts() {
        let dir = std::env::temp_dir().join(format!(
            "callgate-artifacts-unit-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let bytes = b"\0asm component bytes".to_vec();
        let d = digest(&bytes);
        assert_eq!(cache_read(&dir, &d), None);
        cache_write(&dir, &d, &bytes);
        assert_eq!(cache_read(&dir, &d), Some(bytes.clone()));
        std::fs::write(cache_file(&dir, &d), b"\0asm damaged").unwrap();
        assert_eq!(cache_read(&dir, &d), None);
        assert!(
            !cache_file(&dir, &d).exists(),
            "the damaged entry is removed"
        );
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(names.is_empty(), "no temporary file left: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn the_capped_buffer_refuses_to_grow_past_the_limit() {
        use tokio::io::AsyncWriteExt as _;
        let mut out = Capped::default();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..(MAX_ARTIFACT_BYTES >> 20) {
            out.write_all(&chunk).await.unwrap();
        }
        let e = out.write_all(b"x").await.unwrap_err();
        assert!(e.to_string().contains("larger than 64 MiB"), "{e}");
        assert_eq!(out.0.len() as u64, MAX_ARTIFACT_BYTES);
    }
}
