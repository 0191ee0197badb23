//! A plugin version loaded into the runtime: compiled once, pre-instantiated, its `init` run once on
//! a probe instance to validate this deployment's config and learn which hooks it wants.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::Component;

use super::HookMask;
use super::artifact::hooks_export_version;
use super::cache::CompileError;
use super::ctx::{DeadlineExceeded, PluginCtx, PluginShared, arm_store};
use super::engine::Runtime;
use super::preinit;
use super::source::{self, FetchError, PluginSource};
use super::stats::{FailureKind, PluginCounters, PluginStats};
use super::wit::latest as contract;

fn default_reject_status() -> u16 {
    503
}
fn default_deadline_ms() -> u64 {
    10
}
fn default_memory_mib() -> u32 {
    32
}
fn empty_config() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// What a plugin does to its call when it fails (trap, deadline, memory cap, refused decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicyName {
    /// The call goes on as if the plugin had no opinion.
    #[default]
    Continue,
    /// A call still being set up is answered with `reject-status`.
    Reject,
}

/// The failure policy as the call layer applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Go on without the plugin.
    Continue,
    /// Answer a call in setup with this status.
    Reject {
        /// 500-599.
        status: u16,
    },
}

/// One plugin entry of the gateway's config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginSpec {
    /// The name used in logs, metrics and call detail records.
    pub name: String,
    /// Source: the component file (`.wasm`). Exactly one of `path`, `url` and `oci` is set (see
    /// [`PluginSpec::source`]).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Source: an `http://` or `https://` URL of the component; needs `sha256`.
    #[serde(default)]
    pub url: Option<String>,
    /// Source: a Wasm OCI artifact, `host[:port]/repository:tag` or `...@sha256:<manifest digest>`.
    #[serde(default)]
    pub oci: Option<String>,
    /// The SHA-256 of the component (hex, `sha256:` prefix optional): required with `url`,
    /// optional with `oci` (the layer's digest), not allowed with `path`.
    #[serde(default)]
    pub sha256: Option<String>,
    /// `continue` or `reject`.
    #[serde(default)]
    pub failure_policy: FailurePolicyName,
    /// The status a call in setup is answered with under the `reject` policy (500-599).
    #[serde(default = "default_reject_status")]
    pub reject_status: u16,
    /// Deadline of each hook call, in milliseconds of CPU time used by the plugin (time it spends
    /// suspended while the worker thread serves other calls, or preempted, does not count).
    #[serde(default = "default_deadline_ms")]
    pub deadline_ms: u64,
    /// Memory cap of each instance, in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u32,
    /// This deployment's config for the plugin, handed to its `init`.
    #[serde(default = "empty_config")]
    pub config: serde_json::Value,
    /// Run `init` once at load and start every call's instance from a snapshot of the result,
    /// instead of running `init` on each call. Turn off for a plugin whose `init` must run per call
    /// (one that opens host resources in `init`, or wants per-call randomness seeded there).
    #[serde(default = "yes")]
    pub pre_init: bool,
}

fn yes() -> bool {
    true
}

impl PluginSpec {
    /// A spec with the defaults, for the file `path` under `name`.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: Some(path.into()),
            url: None,
            oci: None,
            sha256: None,
            failure_policy: FailurePolicyName::Continue,
            reject_status: default_reject_status(),
            deadline_ms: default_deadline_ms(),
            memory_mib: default_memory_mib(),
            config: empty_config(),
            pre_init: true,
        }
    }

    /// A spec with the defaults, for the component at `url`, which must have SHA-256 `sha256`.
    pub fn from_url(
        name: impl Into<String>,
        url: impl Into<String>,
        sha256: impl Into<String>,
    ) -> Self {
        Self {
            path: None,
            url: Some(url.into()),
            sha256: Some(sha256.into()),
            ..Self::new(name, PathBuf::new())
        }
    }

    /// A spec with the defaults, for the Wasm OCI artifact `reference`, its component pinned to
    /// `sha256` if given.
    pub fn from_oci(
        name: impl Into<String>,
        reference: impl Into<String>,
        sha256: Option<String>,
    ) -> Self {
        Self {
            path: None,
            oci: Some(reference.into()),
            sha256,
            ..Self::new(name, PathBuf::new())
        }
    }

    /// Where the component comes from, checked: exactly one of `path`, `url`, `oci`, and the
    /// `sha256` pin where it is needed. The message names the keys.
    pub fn source(&self) -> Result<PluginSource, String> {
        PluginSource::parse(
            self.path.as_deref(),
            self.url.as_deref(),
            self.oci.as_deref(),
            self.sha256.as_deref(),
        )
    }

    /// The same spec with this config (a JSON object).
    pub fn with_config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// The same spec with the `reject` policy and this status.
    pub fn rejecting(mut self, status: u16) -> Self {
        self.failure_policy = FailurePolicyName::Reject;
        self.reject_status = status;
        self
    }

    /// The policy to apply.
    pub fn failure_policy(&self) -> FailurePolicy {
        match self.failure_policy {
            FailurePolicyName::Continue => FailurePolicy::Continue,
            FailurePolicyName::Reject => FailurePolicy::Reject {
                status: self.reject_status,
            },
        }
    }
}

/// Why a plugin was not loaded. The previous version, if any, keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The spec itself is unusable.
    #[error("plugin `{name}`: {reason}")]
    BadSpec {
        /// Plugin name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be read.
    #[error("plugin `{name}`: cannot read {path}: {source}")]
    Read {
        /// Plugin name.
        name: String,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `url` or `oci` source could not be fetched.
    #[error("plugin `{name}`: cannot fetch {origin}: {reason}")]
    Fetch {
        /// Plugin name.
        name: String,
        /// The source (`url ...`, `oci ...`).
        origin: String,
        /// What went wrong.
        reason: String,
    },
    /// The fetched component is not the one its `sha256` pins: refused.
    #[error(
        "plugin `{name}`: {origin} delivered a component with sha256 {found}, but `sha256` pins {expected}: refused"
    )]
    DigestMismatch {
        /// Plugin name.
        name: String,
        /// The source (`url ...`, `oci ...`).
        origin: String,
        /// The pinned SHA-256.
        expected: String,
        /// The SHA-256 of what was delivered.
        found: String,
    },
    /// Not a valid component.
    #[error("plugin `{name}`: not a valid wasm component: {reason}")]
    Compile {
        /// Plugin name.
        name: String,
        /// Compiler message.
        reason: String,
    },
    /// The component does not export the hooks interface of a contract version this host speaks.
    #[error(
        "plugin `{name}` targets contract {found}, this gateway supports callgate:plugin@{supported}"
    )]
    Contract {
        /// Plugin name.
        name: String,
        /// What the component exports (`none` if no callgate hooks at all).
        found: String,
        /// What the host speaks.
        supported: String,
    },
    /// An import the host does not provide (e.g. filesystem or network beyond what is granted).
    #[error("plugin `{name}`: cannot link: {reason}")]
    Link {
        /// Plugin name.
        name: String,
        /// Linker message.
        reason: String,
    },
    /// `init` refused this deployment's config.
    #[error("plugin `{name}` refused its config: {message}")]
    Init {
        /// Plugin name.
        name: String,
        /// The plugin's own message.
        message: String,
    },
    /// `init` trapped, ran past its deadline or over its memory cap.
    #[error("plugin `{name}`: init failed ({kind}): {reason}")]
    InitFailed {
        /// Plugin name.
        name: String,
        /// Failure kind.
        kind: &'static str,
        /// Trap message.
        reason: String,
    },
}

/// A loaded plugin version. Calls hold an `Arc` to the version they started with, so a reload
/// never changes the plugin under a call in flight.
pub struct LoadedPlugin {
    pub(crate) shared: Arc<PluginShared>,
    pub(crate) pre: contract::Pre,
    pub(crate) runtime: Runtime,
    hooks: HookMask,
    policy: FailurePolicy,
    deadline: Duration,
    memory_cap: usize,
    stats: PluginStats,
    size: usize,
    /// `pre` is a snapshot taken after `init`: per-call instances skip `init`.
    preinitialized: bool,
    /// SHA-256 of the component file as loaded (lower-case hex): this version's identity.
    digest: String,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.shared.name)
            .field("hooks", &self.hooks)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A live instance and its store.
pub(crate) struct Live {
    pub store: Store<PluginCtx>,
    pub hooks: contract::Hooks,
}

/// Why an instance could not be created or a hook failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: FailureKind,
    pub reason: String,
}

impl Failure {
    /// Classifies an error that came out of the guest.
    pub fn from_guest(err: &wasmtime::Error, ctx: &PluginCtx) -> Self {
        let kind = if ctx.limiter.hit {
            FailureKind::Memory
        } else if err.downcast_ref::<DeadlineExceeded>().is_some()
            || matches!(
                err.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            )
        {
            FailureKind::Deadline
        } else {
            FailureKind::Trap
        };
        Self {
            kind,
            reason: format!("{err:#}"),
        }
    }
}

impl LoadedPlugin {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The name as a shared string.
    pub fn name_arc(&self) -> Arc<str> {
        self.shared.name.clone()
    }

    /// The hooks the plugin asked for.
    pub fn hooks(&self) -> HookMask {
        self.hooks
    }

    /// Its failure policy.
    pub fn policy(&self) -> FailurePolicy {
        self.policy
    }

    /// Its accounting.
    pub fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// The counters the plugin keeps itself (`metrics.counter-add`).
    pub fn counters(&self) -> &PluginCounters {
        &self.shared.counters
    }

    /// The component's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The deadline of each hook call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// SHA-256 of the component file as it was loaded, lower-case hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether per-call instances start from a snapshot taken after `init` (see `pre-init`).
    pub fn pre_initialized(&self) -> bool {
        self.preinitialized
    }

    /// A store for one instance serving `call_ref` (0 for the load-time probe), with the memory cap
    /// and the deadline callback installed.
    fn new_store(&self, call_ref: u64) -> Store<PluginCtx> {
        let engine = &self.runtime.inner.engine;
        let tick = Duration::from_millis(self.runtime.inner.config.tick_ms);
        let mut store = Store::new(
            engine,
            PluginCtx::new(self.shared.clone(), call_ref, self.memory_cap, tick),
        );
        store.limiter(|c| &mut c.limiter);
        store.epoch_deadline_callback(|mut cx| cx.data_mut().on_epoch());
        store
    }

    /// Creates an instance for `call_ref` and runs `init` on it, within `deadline`.
    pub(crate) async fn instantiate(
        &self,
        call_ref: u64,
        deadline: Duration,
    ) -> Result<(Live, HookMask), InitError> {
        let mut store = self.new_store(call_ref);
        arm_store(&mut store, deadline);
        let hooks = match self.pre.instantiate(&mut store).await {
            Ok(b) => b,
            Err(e) => {
                let mut f = Failure::from_guest(&e, store.data());
                if f.kind == FailureKind::Trap {
                    f.kind = FailureKind::Instantiate;
                }
                return Err(InitError::Failed(f));
            }
        };
        self.stats.record_instance();
        if self.preinitialized {
            return Ok((Live { store, hooks }, self.hooks));
        }
        let started = Instant::now();
        let res = hooks.call_init(&mut store, &self.shared.config_json).await;
        self.stats
            .record_call(super::stats::Hook::Init, started.elapsed());
        match res {
            Ok(Ok(mask)) => Ok((Live { store, hooks }, mask)),
            Ok(Err(message)) => Err(InitError::Refused(message)),
            Err(e) => Err(InitError::Failed(Failure::from_guest(&e, store.data()))),
        }
    }
}

/// Why a fresh instance is not usable.
#[derive(Debug)]
pub(crate) enum InitError {
    /// `init` returned an error: the plugin's own message.
    Refused(String),
    /// Instantiation or `init` failed.
    Failed(Failure),
}

impl InitError {
    /// As a hook failure of a call.
    pub fn into_failure(self) -> Failure {
        match self {
            InitError::Refused(m) => Failure {
                kind: FailureKind::Trap,
                reason: format!("init refused: {m}"),
            },
            InitError::Failed(f) => f,
        }
    }
}

/// How long a load-time `init` may take: config parsing in a slow language must not be mistaken for
/// a hung plugin.
const LOAD_INIT_DEADLINE: Duration = Duration::from_secs(2);

/// How long reading an initialised instance's state back for its snapshot may take.
const SNAPSHOT_DEADLINE: Duration = Duration::from_secs(60);

impl Runtime {
    /// Loads a plugin: reads, compiles (on a blocking thread), checks the contract version, links,
    /// and runs `init` on a probe instance. Any failure leaves nothing behind.
    pub async fn load(&self, spec: &PluginSpec) -> Result<Arc<LoadedPlugin>, LoadError> {
        let name = spec.name.clone();
        let bad = |reason: String| LoadError::BadSpec {
            name: name.clone(),
            reason,
        };
        if spec.memory_mib == 0 || spec.memory_mib > self.inner.config.max_memory_mib {
            return Err(bad(format!(
                "memory-mib {} is outside 1..={} (the runtime's max-memory-mib)",
                spec.memory_mib, self.inner.config.max_memory_mib
            )));
        }
        if spec.deadline_ms == 0 {
            return Err(bad("deadline-ms must be at least 1".into()));
        }
        if let FailurePolicy::Reject { status } = spec.failure_policy()
            && !(500..=599).contains(&status)
        {
            return Err(bad(format!("reject-status {status} is not 500-599")));
        }
        if !spec.config.is_object() {
            return Err(bad("config must be a table".into()));
        }
        let source = spec.source().map_err(&bad)?;
        let cache_dir = self.inner.config.cache_dir.as_deref();
        let bytes = match source::fetch(&source, cache_dir).await {
            Ok(bytes) => bytes,
            Err(FetchError::Read(io)) => {
                return Err(LoadError::Read {
                    name: name.clone(),
                    path: source.path().unwrap_or(Path::new("")).to_path_buf(),
                    source: io,
                });
            }
            Err(FetchError::Fetch(reason)) => {
                return Err(LoadError::Fetch {
                    name: name.clone(),
                    origin: source.to_string(),
                    reason,
                });
            }
            Err(FetchError::DigestMismatch { expected, found }) => {
                return Err(LoadError::DigestMismatch {
                    name: name.clone(),
                    origin: source.to_string(),
                    expected,
                    found,
                });
            }
        };
        let size = bytes.len();
        let component = match self.compile(bytes.clone()).await {
            Ok((component, _)) => component,
            Err(CompileError::Invalid(e)) => {
                return Err(LoadError::Compile {
                    name: name.clone(),
                    reason: format!("{e:#}"),
                });
            }
            Err(e) => return Err(bad(e.to_string())),
        };
        self.check_contract(&name, &component)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .and_then(contract::Pre::new)
            .map_err(|e| LoadError::Link {
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let shared = Arc::new(PluginShared {
            name: name.as_str().into(),
            config_json: spec.config.to_string().into(),
            config: spec.config.clone(),
            counters: PluginCounters::default(),
        });
        let mut plugin = LoadedPlugin {
            shared,
            pre,
            runtime: self.clone(),
            hooks: HookMask::default(),
            policy: spec.failure_policy(),
            deadline: Duration::from_millis(spec.deadline_ms),
            memory_cap: (spec.memory_mib as usize) << 20,
            stats: PluginStats::default(),
            size,
            preinitialized: false,
            digest: super::artifact::digest(&bytes),
        };
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| bad("runtime closed".into()))?;
        plugin.hooks = plugin.probe().await?;
        if spec.pre_init {
            match plugin.pre_initialize(bytes).await {
                Ok(pre) => {
                    plugin.pre = pre;
                    plugin.preinitialized = true;
                }
                Err(reason) => tracing::warn!(
                    plugin = %name,
                    %reason,
                    "pre-initialisation not possible; every call will run init"
                ),
            }
        }
        tracing::info!(plugin = %name, size, pre_init = plugin.preinitialized, hooks = ?plugin.hooks.hooks().map(|h| h.name()).collect::<Vec<_>>(), "plugin loaded");
        Ok(Arc::new(plugin))
    }

    fn check_contract(&self, name: &str, component: &Component) -> Result<(), LoadError> {
        let ty = component.component_type();
        let found = ty
            .exports(&self.inner.engine)
            .find_map(|(n, _)| hooks_export_version(n).map(str::to_string));
        if found.as_deref().is_some_and(speaks) {
            return Ok(());
        }
        let (maj, min, pat) = contract::VERSION;
        Err(LoadError::Contract {
            name: name.to_string(),
            found: found.map_or_else(
                || "none (no callgate:plugin/hooks or lean-hooks export)".to_string(),
                |v| format!("callgate:plugin@{v}"),
            ),
            supported: if maj == 0 {
                format!("0.{min}.0 to 0.{min}.{pat}")
            } else {
                format!("{maj}.0.0 to {maj}.{min}.{pat}")
            },
        })
    }
}

/// Whether this host runs a plugin that exports `hooks@version`: the same track (major, and minor
/// while the major is 0) at a patch no newer than the host's. A newer patch may import what this host
/// lacks, so it is refused by name rather than by a link error.
fn speaks(version: &str) -> bool {
    let (maj, min, pat) = contract::VERSION;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false; // also a pre-release: wasmtime matches those only exactly
    };
    a == maj && (if maj == 0 { b == min } else { b <= min }) && (b, c) <= (min, pat)
}

impl LoadedPlugin {
    /// Runs `init` on an instrumented instance and compiles the snapshot of its state into the
    /// template per-call instances start from.
    async fn pre_initialize(&self, bytes: Vec<u8>) -> Result<contract::Pre, String> {
        let runtime = &self.runtime.inner;
        let err = |e: wasmtime::Error| format!("{e:#}");
        let instrumented = preinit::instrument(&bytes).map_err(err)?;
        let component = self
            .runtime
            .compile(instrumented)
            .await
            .map_err(|e| e.to_string())?
            .0;
        let pre = runtime.linker.instantiate_pre(&component).map_err(err)?;
        let mut store = self.new_store(0);
        arm_store(&mut store, LOAD_INIT_DEADLINE.max(self.deadline));
        let instance = pre.instantiate_async(&mut store).await.map_err(err)?;
        let hooks = contract::Pre::new(pre).map_err(err)?.hooks_of(instance);
        hooks
            .call_init(&mut store, &self.shared.config_json)
            .await
            .map_err(err)?
            .map_err(|m| format!("init refused on the second run: {m}"))?;
        // Reading the state back runs the instrumented accessors, host-driven and proportional
        // to the memory (CPython's is 12 MiB): not the plugin's budget.
        arm_store(&mut store, SNAPSHOT_DEADLINE);
        // Wizer reports a component it cannot read back by panicking: contain it to this load.
        let image =
            tokio::spawn(async move { preinit::snapshot(&bytes, &mut store, instance).await })
                .await
                .map_err(|e| format!("snapshot failed: {e}"))?
                .map_err(err)?;
        let component = self
            .runtime
            .compile(image)
            .await
            .map_err(|e| e.to_string())?
            .0;
        runtime
            .linker
            .instantiate_pre(&component)
            .and_then(contract::Pre::new)
            .map_err(err)
    }

    /// Runs `init` once on a fresh instance to validate the config and learn the hooks.
    async fn probe(&self) -> Result<HookMask, LoadError> {
        let name = self.shared.name.to_string();
        match self
            .instantiate(0, LOAD_INIT_DEADLINE.max(self.deadline))
            .await
        {
            Ok((_live, hooks)) => Ok(hooks),
            Err(InitError::Refused(message)) => Err(LoadError::Init { name, message }),
            Err(InitError::Failed(f)) => Err(LoadError::InitFailed {
                name,
                kind: f.kind.name(),
                reason: f.reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::speaks;

    #[test]
    fn earlier_patches_of_the_track_are_spoken_newer_ones_and_other_tracks_not() {
        assert_eq!(
            super::contract::VERSION,
            (0, 1, 2),
            "update these cases with the contract"
        );
        for (v, ok) in [
            ("0.1.0", true),
            ("0.1.1", true),
            ("0.1.2", true),
            ("0.1.3", false),
            ("0.2.0", false),
            ("0.0.1", false),
            ("1.1.0", false),
            ("0.1.0-rc.1", false),
            ("0.1", false),
            ("0.1.0.0", false),
        ] {
            assert_eq!(speaks(v), ok, "{v}");
        }
    }
}
