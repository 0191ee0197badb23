//! The process-wide engine: compilation settings, the pooling allocator, the epoch ticker that drives
//! hook deadlines, and the permits that keep instantiation from ever failing for lack of a slot.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::ctx::PluginCtx;
use super::wit;

/// Settings of the plugin runtime as a whole (per-plugin limits are in [`super::PluginSpec`]).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Plugin instances alive at once, over all calls and plugins. A call needs one per plugin of the
    /// chain; a call that cannot get them is refused up front (503) instead of failing mid-call.
    pub max_instances: u32,
    /// The largest memory cap any plugin may be given, in MiB: the size of each pooled memory slot.
    pub max_memory_mib: u32,
    /// Epoch tick: the granularity of hook deadlines and how often a long-running hook yields its
    /// worker thread to other calls, in milliseconds.
    pub tick_ms: u64,
    /// Directory of compiled components, so that a restart or reload of an unchanged plugin skips
    /// compilation (see `Runtime::compile`); created on first use. None compiles every time. Only
    /// the gateway's user may write it: a cached artifact is native code the gateway runs.
    pub cache_dir: Option<PathBuf>,
    /// Per pooled memory and table: how much of what a finished instance wrote is reset in place
    /// for the next instance, in KiB, rather than handed back to the kernel. Faster calls (no page
    /// faults, no TLB shootdowns) for resident memory: up to this much per slot ever used, usually
    /// far less (a plugin writes a few pages per call). 0 hands everything back.
    pub keep_resident_kib: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 10_000,
            max_memory_mib: 64,
            tick_ms: 5,
            // None, so that a library user (and every test) stays hermetic unless it asks.
            cache_dir: None,
            keep_resident_kib: 1024,
        }
    }
}

/// The plugin runtime: clone it freely, all clones share one engine.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub engine: Engine,
    pub linker: Linker<PluginCtx>,
    pub permits: Arc<Semaphore>,
    pub config: RuntimeConfig,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(config.max_instances > 0, "max-instances must be at least 1");
        anyhow::ensure!(config.tick_ms > 0, "tick-ms must be at least 1");
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        // A component instance is made of several core instances, memories and tables (a Rust
        // plugin has a handful, a componentize-py one 14 modules): size the totals for that.
        let max_memory = u64::from(config.max_memory_mib) << 20;
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(16))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_core_instances_per_component(64)
            .max_memories_per_component(16)
            .max_tables_per_component(64)
            .max_memory_size(max_memory as usize);
        // A finished instance's written pages are copied back from the memory image in place
        // (found with Linux's PAGEMAP_SCAN, 6.7+) instead of being dropped with madvise: the drop
        // costs a TLB shootdown and the next instance in the slot a page fault per page it touches.
        // That halved the fresh-instance benchmark (62 -> 30 us). Elsewhere wasmtime falls back to
        // madvise.
        let keep = (config.keep_resident_kib as usize) << 10;
        pool.linear_memory_keep_resident(keep)
            .table_keep_resident(keep)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut c = Config::new();
        c.wasm_component_model(true)
            .epoch_interruption(true)
            .memory_init_cow(true)
            // Reserve only what a plugin may use (plus a guard), not 4 GiB per memory: the pool
            // holds thousands of slots and must fit the address space.
            .memory_reservation(max_memory)
            .memory_guard_size(2 << 20)
            .memory_reservation_for_growth(0)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&c)
            .map_err(anyhow::Error::from)
            .context("creating the wasm engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wit::latest::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let tick = Duration::from_millis(config.tick_ms);
        let (e, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("callgate-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    e.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                permits: Arc::new(Semaphore::new(n as usize)),
                config,
                ticker_stop,
            }),
        })
    }

    /// The runtime's settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Instance permits currently free.
    pub fn free_instances(&self) -> usize {
        self.inner.permits.available_permits()
    }
}
