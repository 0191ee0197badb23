//! The deployment's plugins while the gateway runs: the loaded version of each, and their
//! replacement on a change of a plugin's file, on SIGHUP, or on a request to the admin API.
//!
//! A reload loads the new version beside the old one, off the call path: read, compile (or take it
//! from the cache), link, pre-initialise with the plugin's config. Only a version that loaded
//! replaces the old one in the chain, in one atomic swap: new calls get it, calls in flight keep the
//! chain they started with to their end. A version that fails is refused with one log line and the
//! old version keeps serving.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::json;
use tokio::sync::Mutex;

use crate::http::{Handler, Response};
use crate::plugin::{Chain, LoadedPlugin, PluginSpec, Runtime};

/// What started a reload, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The plugin's file changed.
    FileChange,
    /// SIGHUP.
    Signal,
    /// The admin API.
    Admin,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::FileChange => "file-change",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
        }
    }
}

/// The result of reloading one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new version serves new calls.
    Reloaded {
        /// Digest of the version replaced.
        from: String,
        /// Digest of the version now serving.
        to: String,
    },
    /// The file is the version already serving (only checked for file changes).
    Unchanged,
    /// The new version was refused; the old one keeps serving.
    Refused(String),
}

/// One plugin's reload, as reported to the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The plugin's configured name.
    pub name: String,
    /// What happened.
    pub outcome: Outcome,
}

struct Entry {
    spec: PluginSpec,
    plugin: Arc<LoadedPlugin>,
    loaded_at: SystemTime,
    reloads: u64,
    last_refusal: Option<String>,
}

/// The configured plugins and the version of each that serves new calls.
pub struct PluginSet {
    runtime: Runtime,
    // A tokio mutex: reloads are serialised and one holds it across the load's awaits.
    entries: Mutex<Vec<Entry>>,
    publish: OnceLock<Box<dyn Fn(Chain) + Send + Sync>>,
}

impl std::fmt::Debug for PluginSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSet").finish_non_exhaustive()
    }
}

impl PluginSet {
    /// Loads every plugin of `specs` in order; the first that fails to load fails the start.
    pub async fn load(runtime: Runtime, specs: &[PluginSpec]) -> anyhow::Result<Self> {
        let mut entries = Vec::with_capacity(specs.len());
        for spec in specs {
            let plugin = runtime.load(spec).await?;
            entries.push(Entry {
                spec: spec.clone(),
                plugin,
                loaded_at: SystemTime::now(),
                reloads: 0,
                last_refusal: None,
            });
        }
        Ok(Self {
            runtime,
            entries: Mutex::new(entries),
            publish: OnceLock::new(),
        })
    }

    /// The chain of the versions serving now.
    pub async fn chain(&self) -> Chain {
        chain_of(&self.entries.lock().await)
    }

    /// Where reloaded chains go (the gateway); set once, after the gateway started.
    pub fn publish_to(&self, publish: impl Fn(Chain) + Send + Sync + 'static) {
        let _ = self.publish.set(Box::new(publish));
    }

    /// The configured names.
    pub async fn names(&self) -> Vec<String> {
        let entries = self.entries.lock().await;
        entries.iter().map(|e| e.spec.name.clone()).collect()
    }

    /// Reloads the plugin named `name`, or all with `None`. With `only_if_changed`, a plugin whose
    /// file holds the version already serving is left alone (a file watcher sees touches and
    /// rewrites of identical content). Returns `None` for an unknown name.
    pub async fn reload(
        &self,
        name: Option<&str>,
        only_if_changed: bool,
        trigger: Trigger,
    ) -> Option<Vec<Report>> {
        let mut entries = self.entries.lock().await;
        if let Some(n) = name
            && !entries.iter().any(|e| e.spec.name == n)
        {
            return None;
        }
        let mut reports = Vec::new();
        let mut changed = false;
        for entry in entries
            .iter_mut()
            .filter(|e| name.is_none_or(|n| e.spec.name == n))
        {
            let outcome = self.reload_one(entry, only_if_changed, trigger).await;
            changed |= matches!(outcome, Outcome::Reloaded { .. });
            reports.push(Report {
                name: entry.spec.name.clone(),
                outcome,
            });
        }
        if changed && let Some(publish) = self.publish.get() {
            publish(chain_of(&entries));
        }
        Some(reports)
    }

    async fn reload_one(
        &self,
        entry: &mut Entry,
        only_if_changed: bool,
        trigger: Trigger,
    ) -> Outcome {
        let name = entry.spec.name.clone();
        // Only a `path` source has a file to compare; a remote one is fetched again.
        if only_if_changed && let Some(path) = entry.spec.path.as_deref() {
            match tokio::fs::read(path).await {
                Ok(bytes) if crate::plugin::artifact::digest(&bytes) == entry.plugin.digest() => {
                    return Outcome::Unchanged;
                }
                Ok(_) => {}
                // Mid-replacement (deleted before the new file is renamed in): the next event
                // brings the new file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Unchanged,
                Err(_) => {}
            }
        }
        match self.runtime.load(&entry.spec).await {
            Ok(plugin) => {
                let from = entry.plugin.digest().to_string();
                let to = plugin.digest().to_string();
                tracing::info!(plugin = %name, trigger = trigger.name(), %from, %to, "plugin reloaded; new calls get the new version");
                entry.plugin = plugin;
                entry.loaded_at = SystemTime::now();
                entry.reloads += 1;
                entry.last_refusal = None;
                Outcome::Reloaded { from, to }
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(plugin = %name, trigger = trigger.name(), serving = %entry.plugin.digest(), error = %reason, "plugin reload refused; the previous version keeps serving");
                entry.last_refusal = Some(reason.clone());
                Outcome::Refused(reason)
            }
        }
    }

    /// The admin API's view of the plugins.
    pub async fn describe(&self) -> serde_json::Value {
        let entries = self.entries.lock().await;
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                let p = &e.plugin;
                let loaded_at = e
                    .loaded_at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                json!({
                    "name": p.name(),
                    "path": e.spec.path,
                    "source": e.spec.source().map_or_else(|e| e, |s| s.to_string()),
                    "digest": p.digest(),
                    "size": p.size(),
                    "hooks": p.hooks().hooks().map(|h| h.name()).collect::<Vec<_>>(),
                    "pre-initialized": p.pre_initialized(),
                    "loaded-at": loaded_at,
                    "reloads": e.reloads,
                    "last-refusal": e.last_refusal,
                })
            })
            .collect();
        json!({ "plugins": list })
    }

    /// The plugin files to watch (of `path` sources: a `url` or `oci` one reloads on SIGHUP or
    /// the admin API), with the names of the plugins each one is.
    fn watched_files(entries: &[Entry]) -> HashMap<PathBuf, Vec<String>> {
        let mut files: HashMap<PathBuf, Vec<String>> = HashMap::new();
        for e in entries {
            let Some(path) = e.spec.path.as_deref() else {
                continue;
            };
            files
                .entry(absolute(path))
                .or_default()
                .push(e.spec.name.clone());
        }
        files
    }
}

fn chain_of(entries: &[Entry]) -> Chain {
    Chain::new(entries.iter().map(|e| e.plugin.clone()).collect())
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn outcome_json(r: &Report) -> serde_json::Value {
    match &r.outcome {
        Outcome::Reloaded { from, to } => {
            json!({ "name": r.name, "outcome": "reloaded", "from": from, "to": to })
        }
        Outcome::Unchanged => json!({ "name": r.name, "outcome": "unchanged" }),
        Outcome::Refused(reason) => {
            json!({ "name": r.name, "outcome": "refused", "reason": reason })
        }
    }
}

/// The admin API: `GET /plugins` lists the plugins; `POST /plugins/reload` reloads all of them and
/// `POST /plugins/{name}/reload` one. A reload answers 200 when every plugin reloaded, 409 when
/// one was refused (its old version serves on), 404 for an unknown name.
pub fn admin_handler(set: Arc<PluginSet>) -> Handler {
    Arc::new(move |req| {
        let set = set.clone();
        Box::pin(async move {
            let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
            let target = match (req.method.as_str(), segments.as_slice()) {
                ("GET", ["plugins"]) => return Response::json(200, &set.describe().await),
                ("POST", ["plugins", "reload"]) => None,
                ("POST", ["plugins", name, "reload"]) => Some(name.to_string()),
                (_, ["plugins", ..]) => return Response::error(405, "method not allowed"),
                _ => return Response::error(404, "not found"),
            };
            match set.reload(target.as_deref(), false, Trigger::Admin).await {
                None => Response::error(404, "no such plugin"),
                Some(reports) => {
                    let refused = reports
                        .iter()
                        .any(|r| matches!(r.outcome, Outcome::Refused(_)));
                    let body =
                        json!({ "reloads": reports.iter().map(outcome_json).collect::<Vec<_>>() });
                    Response::json(if refused { 409 } else { 200 }, &body)
                }
            }
        })
    })
}

/// Reloads all plugins on every SIGHUP, until the task is aborted.
pub fn on_sighup(set: Arc<PluginSet>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            set.reload(None, false, Trigger::Signal).await;
        }
    }))
}

/// Watches the plugins' files and reloads a plugin once its file has changed and then stayed
/// unchanged for `debounce`. Directories are watched, not files: an editor or a build replaces a
/// file by renaming a new one over it, which a watch on the old file would miss.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// Starts watching.
    pub async fn start(set: Arc<PluginSet>, debounce: Duration) -> notify::Result<Self> {
        use notify::Watcher as _;
        let files = PluginSet::watched_files(&set.entries.lock().await);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(ev) = res
                    && !matches!(ev.kind, notify::EventKind::Access(_))
                {
                    for p in ev.paths {
                        let _ = tx.send(p);
                    }
                }
            })?;
        let dirs: std::collections::HashSet<PathBuf> = files
            .keys()
            .filter_map(|f| f.parent().map(Path::to_path_buf))
            .collect();
        for d in &dirs {
            watcher.watch(d, notify::RecursiveMode::NonRecursive)?;
        }
        let task = tokio::spawn(async move {
            // Plugin name -> when its file last changed.
            let mut pending: HashMap<String, tokio::time::Instant> = HashMap::new();
            loop {
                let next = pending.values().min().copied();
                tokio::select! {
                    path = rx.recv() => {
                        let Some(path) = path else { return };
                        if let Some(names) = files.get(&absolute(&path)) {
                            for n in names {
                                pending.insert(n.clone(), tokio::time::Instant::now() + debounce);
                            }
                        }
                    }
                    _ = sleep_until(next) => {
                        let now = tokio::time::Instant::now();
                        let due: Vec<String> = pending
                            .iter()
                            .filter(|(_, t)| **t <= now)
                            .map(|(n, _)| n.clone())
                            .collect();
                        for n in due {
                            pending.remove(&n);
                            set.reload(Some(&n), true, Trigger::FileChange).await;
                        }
                    }
                }
            }
        });
        Ok(Self {
            _watcher: watcher,
            task,
        })
    }
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
