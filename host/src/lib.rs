//! Callgate: a SIP back-to-back user agent whose call logic runs in sandboxed WebAssembly plugins.
//!
//! Layers (see `../shared/design/architecture.md`): the SIP stack is the `callgate-sip` crate;
//! [`b2b`] bridges the two legs of each call; [`plugin`] runs the plugin chain; [`config`],
//! [`metrics`] and [`cdr`] serve operations.

pub mod b2b;
pub mod cdr;
pub mod config;
pub mod metrics;
pub mod plugin;

use std::sync::Arc;

/// Loads the configured plugins in order, failing on the first that does not load.
pub async fn load_chain(
    runtime: &plugin::Runtime,
    specs: &[plugin::PluginSpec],
) -> anyhow::Result<plugin::Chain> {
    let mut loaded = Vec::with_capacity(specs.len());
    for s in specs {
        loaded.push(runtime.load(s).await?);
    }
    Ok(plugin::Chain::new(loaded))
}

/// A whole gateway as `main` runs it: runtime, chain, transports, metrics endpoint.
pub struct Running {
    /// The SIP side.
    pub gateway: b2b::Gateway,
    /// The plugin runtime.
    pub runtime: plugin::Runtime,
    /// The gateway's counters.
    pub metrics: Arc<metrics::Metrics>,
    /// The metrics endpoint's address, if enabled.
    pub metrics_addr: Option<std::net::SocketAddr>,
    _metrics_task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = &self._metrics_task {
            t.abort();
        }
    }
}

/// Starts a gateway from a config.
pub async fn start(config: &config::Config) -> anyhow::Result<Running> {
    let runtime = plugin::Runtime::new(config.runtime.clone())?;
    let chain = load_chain(&runtime, &config.plugins).await?;
    let metrics = Arc::new(metrics::Metrics::default());
    let gateway = b2b::Gateway::start(config, chain, metrics.clone()).await?;
    let (metrics_addr, task) = match config.metrics.listen {
        Some(addr) => {
            let shared_chain = gateway.chain_source();
            let (a, t) = metrics::serve(addr, metrics.clone(), shared_chain).await?;
            (Some(a), Some(t))
        }
        None => (None, None),
    };
    Ok(Running {
        gateway,
        runtime,
        metrics,
        metrics_addr,
        _metrics_task: task,
    })
}
