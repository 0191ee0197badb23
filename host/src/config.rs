//! The gateway's configuration: a TOML file over embedded defaults. Every section and key is
//! documented here; an unknown key or a bad value is a start-up error naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::plugin::decision::MediaMode;
use crate::plugin::{PluginSpec, RuntimeConfig};

/// The defaults, also the reference config shipped as `callgate.toml`'s base.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The whole configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    /// Where the gateway listens for SIP.
    pub listen: ListenConfig,
    /// Where calls go when no plugin chooses a target.
    pub routing: RoutingConfig,
    /// RFC 3261 timers and the gateway's setup-phase limits.
    pub timers: TimersConfig,
    /// The plugin runtime as a whole.
    pub runtime: RuntimeConfig,
    /// The plugin chain, in order.
    #[serde(default)]
    pub plugins: Vec<PluginSpec>,
    /// REFER handling when no plugin decides.
    pub transfer: TransferConfig,
    /// The metrics endpoint.
    pub metrics: MetricsConfig,
    /// Call detail records.
    pub cdr: CdrConfig,
    /// The HTTP admin API.
    pub admin: AdminConfig,
    /// Reloading plugins while the gateway runs.
    pub reload: ReloadConfig,
    /// The threads that run SIP, calls and plugin hooks.
    pub threads: ThreadsConfig,
}

/// The worker threads.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ThreadsConfig {
    /// Worker threads; 0: one per CPU core.
    pub workers: usize,
    /// Threads receiving on the UDP port, each with its own socket of one `SO_REUSEPORT` group;
    /// 0: one per CPU core.
    pub udp_receivers: usize,
}

impl ThreadsConfig {
    /// The number of UDP receive threads, with 0 resolved to the number of CPU cores.
    pub fn udp_receivers(&self) -> usize {
        match self.udp_receivers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// Listening sockets.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListenConfig {
    /// UDP address, e.g. `127.0.0.1:5060`.
    pub udp: SocketAddr,
    /// TCP address; none to disable TCP.
    #[serde(default)]
    pub tcp: Option<SocketAddr>,
    /// The `host[:port]` written in our Via and Contact; defaults to the UDP address.
    #[serde(default)]
    pub advertise: Option<String>,
}

/// Routing defaults.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RoutingConfig {
    /// The B-leg Request-URI when no plugin sets a target (a SIP URI); none answers such calls 404.
    #[serde(default)]
    pub default_route: Option<String>,
    /// Media mode when no plugin chooses.
    pub media: MediaMode,
}

/// Timers, in milliseconds.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TimersConfig {
    /// RFC 3261 T1 (RTT estimate).
    pub t1_ms: u64,
    /// RFC 3261 T2 (maximum retransmit interval for non-INVITE requests and INVITE responses).
    pub t2_ms: u64,
    /// RFC 3261 T4 (maximum time a message stays in the network).
    pub t4_ms: u64,
    /// B leg: no provisional response this long after the INVITE: give up on it.
    pub no_provisional_ms: u64,
    /// B leg: no final response this long after the first provisional: CANCEL it.
    pub no_final_ms: u64,
    /// A leg: no ACK this long after our 2xx: hang up both legs.
    pub no_ack_ms: u64,
}

impl TimersConfig {
    /// The transaction layer's timer settings.
    pub fn sip(&self) -> callgate_sip::transaction::TimerConfig {
        callgate_sip::transaction::TimerConfig {
            t1: Duration::from_millis(self.t1_ms),
            t2: Duration::from_millis(self.t2_ms),
            t4: Duration::from_millis(self.t4_ms),
        }
    }
}

/// What to do with REFER when no plugin decides.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TransferConfig {
    /// `reject` (with `reject-status`) or `pass` (relay to the other party).
    pub default: TransferDefault,
    /// Status for `reject`.
    pub reject_status: u16,
}

/// The default REFER action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferDefault {
    /// Answer the REFER with an error.
    Reject,
    /// Relay it to the other party.
    Pass,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint (`/metrics`); none disables it. Keep it on loopback.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Call detail records.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CdrConfig {
    /// JSON-lines file the records are appended to; none disables them.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

/// The HTTP admin API: list the loaded plugins (name, digest, hooks) and reload one or all of them.
/// It can swap the code that handles calls, so it listens on loopback only and has no
/// authentication of its own: reach it through SSH or a local proxy.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdminConfig {
    /// Loopback address of the HTTP endpoint, e.g. `127.0.0.1:9091`; none disables it.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Reloading plugins in place. A reload loads the new version beside the old one (compile, link,
/// `init` with the plugin's config); only if that succeeds do new calls get it. Calls in flight
/// keep the version they started with; a failed reload is logged and the old version keeps serving.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReloadConfig {
    /// Reload a plugin when its file changes.
    pub watch: bool,
    /// How long a plugin's file must stay unchanged before it is reloaded, in milliseconds: a
    /// build or copy writes a file in several steps, and loading a half-written one would fail.
    pub debounce_ms: u64,
}

impl ReloadConfig {
    /// The debounce as a duration.
    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }
}

impl Config {
    /// The embedded defaults.
    pub fn defaults() -> Self {
        Self::from_toml(DEFAULT_TOML).expect("embedded default config is valid")
    }

    /// Parses a config: `text` is merged over the embedded defaults, table by table.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let mut base: toml::Table = DEFAULT_TOML.parse().context("embedded defaults")?;
        let over: toml::Table = text.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
        merge(&mut base, over);
        // Deserialise from text so that an error carries the line and key it is about.
        let merged = toml::to_string(&base).context("re-serialising the merged config")?;
        let cfg: Config = toml::from_str(&merged).map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("config {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        use crate::plugin::validate::check_sip_uri;
        if let Some(r) = &self.routing.default_route {
            check_sip_uri(r).map_err(|e| anyhow::anyhow!("routing.default-route: {e}"))?;
        }
        anyhow::ensure!(
            self.routing.media == MediaMode::Direct,
            "routing.media = \"anchored\" is not available yet: this build relays SDP end to end"
        );
        let t = &self.timers;
        for (k, v) in [
            ("timers.t1-ms", t.t1_ms),
            ("timers.t2-ms", t.t2_ms),
            ("timers.t4-ms", t.t4_ms),
            ("timers.no-provisional-ms", t.no_provisional_ms),
            ("timers.no-final-ms", t.no_final_ms),
            ("timers.no-ack-ms", t.no_ack_ms),
        ] {
            anyhow::ensure!(v > 0, "{k} must be positive");
        }
        anyhow::ensure!(
            t.t2_ms >= t.t1_ms,
            "timers.t2-ms must be at least timers.t1-ms"
        );
        anyhow::ensure!(
            (400..=699).contains(&self.transfer.reject_status),
            "transfer.reject-status must be 400-699"
        );
        if let Some(a) = self.admin.listen {
            // It can replace the code that handles calls and has no authentication of its own.
            anyhow::ensure!(
                a.ip().is_loopback(),
                "admin.listen {a} is not a loopback address: the admin API must not be reachable from the network"
            );
            anyhow::ensure!(
                a.port() == 0 || self.metrics.listen != Some(a),
                "admin.listen and metrics.listen are the same address {a}"
            );
        }
        anyhow::ensure!(
            self.reload.debounce_ms > 0,
            "reload.debounce-ms must be positive"
        );
        let mut names = std::collections::HashSet::new();
        for p in &self.plugins {
            anyhow::ensure!(
                names.insert(&p.name),
                "plugins: name `{}` appears twice",
                p.name
            );
            p.source()
                .map_err(|e| anyhow::anyhow!("plugins: `{}`: {e}", p.name))?;
        }
        Ok(())
    }
}

/// Merges `over` into `base`: tables recursively, everything else (arrays included) replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse() {
        let c = Config::defaults();
        assert_eq!(c.listen.udp.port(), 5060);
        assert!(c.plugins.is_empty());
        assert_eq!(c.threads.workers, 0);
    }

    #[test]
    fn worker_threads_are_configurable() {
        assert_eq!(
            Config::from_toml("[threads]\nworkers = 1\n")
                .unwrap()
                .threads
                .workers,
            1
        );
        let e = Config::from_toml("[threads]\nworkers = -1\n").unwrap_err();
        assert!(e.to_string().contains("workers"), "{e}");
        let c = Config::from_toml("[threads]\nudp-receivers = 3\n").unwrap();
        assert_eq!((c.threads.workers, c.threads.udp_receivers()), (0, 3));
        assert!(Config::defaults().threads.udp_receivers() >= 1);
    }

    #[test]
    fn a_file_overrides_one_key_and_keeps_the_rest() {
        let c = Config::from_toml("[timers]\nt1-ms = 250\n").unwrap();
        assert_eq!(c.timers.t1_ms, 250);
        assert_eq!(c.timers.t2_ms, 4000);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_toml("[timers]\nt1-msec = 250\n").unwrap_err();
        assert!(format!("{e:#}").contains("t1-msec"), "{e:#}");
        let e = Config::from_toml("[routing]\ndefault-route = \"http://x\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("routing.default-route"), "{e:#}");
        let e = Config::from_toml("[listen]\nudp = \"not an address\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("udp"), "{e:#}");
    }

    #[test]
    fn admin_and_reload_defaults_and_checks() {
        let c = Config::defaults();
        assert_eq!(c.admin.listen, None);
        assert!(c.reload.watch);
        assert_eq!(c.reload.debounce(), Duration::from_millis(250));
        assert_eq!(c.runtime.cache_dir, None);
        let c = Config::from_toml(
            "[admin]\nlisten = \"[::1]:9091\"\n[reload]\nwatch = false\ndebounce-ms = 50\n",
        )
        .unwrap();
        assert_eq!(c.admin.listen, Some("[::1]:9091".parse().unwrap()));
        assert!(!c.reload.watch);
        assert_eq!(c.reload.debounce_ms, 50);
        let e = Config::from_toml("[admin]\nlisten = \"0.0.0.0:9091\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("admin.listen"), "{e:#}");
        let e = Config::from_toml(
            "[admin]\nlisten = \"127.0.0.1:9090\"\n[metrics]\nlisten = \"127.0.0.1:9090\"\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("metrics.listen"), "{e:#}");
        let e = Config::from_toml("[reload]\ndebounce-ms = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("reload.debounce-ms"), "{e:#}");
        let e = Config::from_toml("[reload]\nwatched = true\n").unwrap_err();
        assert!(format!("{e:#}").contains("watched"), "{e:#}");
        let c = Config::from_toml("[runtime]\ncache-dir = \"target/plugin-cache\"\n").unwrap();
        assert_eq!(
            c.runtime.cache_dir.as_deref(),
            Some(Path::new("target/plugin-cache"))
        );
    }

    #[test]
    fn plugins_with_their_config() {
        let c = Config::from_toml(
            r#"
            [[plugins]]
            name = "hp"
            path = "target/plugins/header-policy.wasm"
            failure-policy = "reject"
            [plugins.config]
            invite-headers = { X-Tenant = "acme" }
            "#,
        )
        .unwrap();
        assert_eq!(c.plugins[0].name, "hp");
        assert_eq!(c.plugins[0].config["invite-headers"]["X-Tenant"], "acme");
    }

    #[test]
    fn plugin_sources_are_exactly_one_of_path_url_oci() {
        use crate::plugin::PluginSource;
        let pin = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let plugin = |keys: &str| Config::from_toml(&format!("[[plugins]]\nname = \"hp\"\n{keys}"));
        let c = plugin(&format!(
            "url = \"https://plugins.example.com/hp.wasm\"\nsha256 = \"{pin}\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.plugins[0].source(),
            Ok(PluginSource::Url {
                url: "https://plugins.example.com/hp.wasm".into(),
                sha256: pin.into()
            })
        );
        let c = plugin("oci = \"registry.example.com:5000/callgate/hp:1.2\"\n").unwrap();
        assert_eq!(
            c.plugins[0].source(),
            Ok(PluginSource::Oci {
                reference: "registry.example.com:5000/callgate/hp:1.2".into(),
                sha256: None
            })
        );
        let c = plugin(&format!(
            "oci = \"registry.example.com/hp@sha256:{pin}\"\nsha256 = \"sha256:{pin}\"\n"
        ))
        .unwrap();
        assert_eq!(c.plugins[0].source().unwrap().pin(), Some(pin));
        for (keys, expect) in [
            (String::new(), "none is set"),
            (
                "path = \"hp.wasm\"\noci = \"r.example.com/hp:1\"\n".into(),
                "`path` and `oci` are set",
            ),
            (
                "url = \"https://h/hp.wasm\"\n".into(),
                "`url` \"https://h/hp.wasm\" needs a `sha256` pin",
            ),
            (
                format!("url = \"https://h/hp.wasm\"\nsha256 = \"{}\"\n", &pin[1..]),
                "`sha256`",
            ),
            (
                format!("path = \"hp.wasm\"\nsha256 = \"{pin}\"\n"),
                "`sha256` pins a `url` or `oci` source",
            ),
            (
                "oci = \"hp:1.2\"\n".into(),
                "`oci` \"hp:1.2\": name the registry",
            ),
            (
                format!("url = \"file:///hp.wasm\"\nsha256 = \"{pin}\"\n"),
                "`url`",
            ),
            ("uri = \"https://h/hp.wasm\"\n".into(), "uri"),
        ] {
            let e = format!("{:#}", plugin(&keys).unwrap_err());
            assert!(e.contains(expect), "{keys:?}: {expect:?} not in {e}");
            if !keys.starts_with("uri") {
                assert!(e.contains("plugins: `hp`"), "{e}");
            }
        }
    }
}
