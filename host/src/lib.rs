//! Callgate: a SIP back-to-back user agent whose call logic runs in sandboxed WebAssembly plugins.
//!
//! Layers (see `../shared/design/architecture.md`): the SIP stack is the `callgate-sip` crate;
//! [`b2b`] bridges the two legs of each call; [`plugin`] runs the plugin chain; [`config`],
//! [`metrics`] and [`cdr`] serve operations.

pub mod allocator;
pub mod b2b;
pub mod cdr;
pub mod config;
pub mod http;
pub mod metrics;
pub mod plugin;
pub mod reload;
pub mod scaffold;

use std::sync::Arc;

/// A whole gateway as `main` runs it: runtime, chain, transports, metrics endpoint.
pub struct Running {
    /// The SIP side.
    pub gateway: b2b::Gateway,
    /// The plugin runtime.
    pub runtime: plugin::Runtime,
    /// The gateway's counters.
    pub metrics: Arc<metrics::Metrics>,
    /// The deployment's plugins, reloadable.
    pub plugins: Arc<reload::PluginSet>,
    /// The metrics endpoint's address, if enabled.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// The admin API's address, if enabled.
    pub admin_addr: Option<std::net::SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _watcher: Option<reload::Watcher>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a gateway from a config. SIGHUP reloading is left to the binary (`main`), since a
/// library embedding several gateways in one process cannot tell which one a signal is for.
pub async fn start(config: &config::Config) -> anyhow::Result<Running> {
    let runtime = plugin::Runtime::new(config.runtime.clone())?;
    let plugins = Arc::new(reload::PluginSet::load(runtime.clone(), &config.plugins).await?);
    let metrics = Arc::new(metrics::Metrics::default());
    let gateway = b2b::Gateway::start(config, plugins.chain().await, metrics.clone()).await?;
    plugins.publish_to(gateway.chain_sink());
    let mut tasks = Vec::new();
    let metrics_addr = match config.metrics.listen {
        Some(addr) => {
            let (a, t) = metrics::serve(addr, metrics.clone(), gateway.chain_source()).await?;
            tasks.push(t);
            Some(a)
        }
        None => None,
    };
    let admin_addr = match config.admin.listen {
        Some(addr) => {
            let (a, t) = http::serve(addr, reload::admin_handler(plugins.clone())).await?;
            tasks.push(t);
            Some(a)
        }
        None => None,
    };
    let watcher = if config.reload.watch && !config.plugins.is_empty() {
        Some(reload::Watcher::start(plugins.clone(), config.reload.debounce()).await?)
    } else {
        None
    };
    Ok(Running {
        gateway,
        runtime,
        metrics,
        plugins,
        metrics_addr,
        admin_addr,
        tasks,
        _watcher: watcher,
    })
}
