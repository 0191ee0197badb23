//! What a plugin instance's store holds: WASI state, the memory limiter, the hook deadline, and the
//! call scope that host imports read and write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::decision::{CallInfo, IssuedCommand};
use super::stats::PluginCounters;

/// What every instance of one loaded plugin version shares.
#[derive(Debug)]
pub(crate) struct PluginShared {
    /// The plugin's configured name, used in every log line about it.
    pub name: Arc<str>,
    /// This deployment's config as JSON text, handed to `init`.
    pub config_json: Arc<str>,
    /// The same config, for the `config` import's path look-ups.
    pub config: serde_json::Value,
    /// The plugin's own counters (`metrics.counter-add`).
    pub counters: PluginCounters,
}

/// Which `call-control` commands the embedding call layer can carry out; the rest are refused with
/// `not-supported` at once, so a plugin learns it in the hook instead of by silence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlSupport {
    /// `hang-up`.
    pub hang_up: bool,
    /// `start/pause/resume/stop-recording`.
    pub recording: bool,
    /// `play-prompt`, `stop-prompt`.
    pub prompts: bool,
    /// `transfer`.
    pub transfer: bool,
}

/// Limits of the per-call key/value store (documented in `wit/`).
pub(crate) const STATE_MAX_KEYS: usize = 64;
pub(crate) const STATE_MAX_KEY: usize = 128;
pub(crate) const STATE_MAX_VALUE: usize = 4096;

/// The per-call state the chain shares. It moves into the store of the plugin whose hook runs and
/// back out afterwards, so host imports reach it without locks.
#[derive(Debug, Default)]
pub(crate) struct CallScope {
    /// The call, as the `call` import reports it.
    pub info: CallInfo,
    /// Key/value state shared by the chain, in insertion order.
    pub state: Vec<(String, String)>,
    /// Commands queued by `call-control`.
    pub commands: Vec<IssuedCommand>,
    /// The next prompt handle.
    pub next_handle: u64,
    /// What the call layer supports.
    pub support: ControlSupport,
}

/// Records whether the memory cap was what stopped a guest, so that the resulting trap is counted as
/// `memory` rather than as a generic trap.
#[derive(Debug)]
pub(crate) struct CapLimiter {
    pub memory_cap: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for CapLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; no sane plugin needs more than this.
        Ok(desired <= 100_000)
    }
}

/// The data of one plugin instance's store.
pub(crate) struct PluginCtx {
    /// Built on the guest's first WASI call: most calls of a plugin make none (its `init`, where
    /// std's setup happens, ran before the snapshot), and building one was ~3k instructions of
    /// every call's instance (random generators seeded, clocks, streams).
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub limiter: CapLimiter,
    pub plugin: Arc<PluginShared>,
    /// The call this instance serves; 0 for the load-time instance.
    pub call_ref: u64,
    /// Present while a hook of a call runs.
    pub scope: Option<CallScope>,
    /// The running hook's budget of execution time.
    budget: Duration,
    /// Execution time the running hook has used so far.
    used: Duration,
    /// The thread's CPU time at the start of the current stretch of execution; `None` until the
    /// hook's first epoch tick (see [`Self::arm`]).
    stretch_start: Option<Duration>,
    /// When the running hook was armed (wall clock).
    armed_at: Instant,
    /// The epoch tick: the most the stretch before a hook's first tick is charged.
    tick: Duration,
    /// Set when the guest yielded; the yield future records the resuming thread's CPU time.
    resumed_at: Option<Arc<Mutex<Duration>>>,
    /// Alternates so that a guest resumed after a yield runs a full tick before yielding again.
    yielded: bool,
}

impl PluginCtx {
    pub fn new(
        plugin: Arc<PluginShared>,
        call_ref: u64,
        memory_cap: usize,
        tick: Duration,
    ) -> Self {
        Self {
            wasi: None,
            table: ResourceTable::new(),
            limiter: CapLimiter {
                memory_cap,
                hit: false,
            },
            plugin,
            call_ref,
            scope: None,
            budget: Duration::ZERO,
            used: Duration::ZERO,
            stretch_start: None,
            armed_at: Instant::now(),
            tick,
            resumed_at: None,
            yielded: false,
        }
    }
}

impl PluginCtx {
    /// Gives the hook about to run `budget` of execution time. The store's epoch deadline must be
    /// re-armed with it ([`arm_store`]).
    ///
    /// No CPU clock is read here: that is a system call (~0.4 us), and almost every hook is over
    /// long before the next epoch tick, when [`Self::on_epoch`] first looks. The stretch from here
    /// to that tick is charged by wall time, at most one tick: the tick is the deadline's
    /// granularity anyway, and a hook preempted before its first tick is charged at most a tick
    /// for it.
    pub fn arm(&mut self, budget: Duration) {
        self.budget = budget;
        self.used = Duration::ZERO;
        self.stretch_start = None;
        self.armed_at = Instant::now();
        self.resumed_at = None;
        self.yielded = false;
    }

    /// Called at every epoch tick while the guest runs. The hook's deadline counts the CPU time the
    /// guest used, not wall time: time spent suspended after a yield while the worker thread serves
    /// other calls, or preempted by the kernel on a busy machine, is not the plugin's doing and must
    /// not cut it off under load. Past the budget the guest traps; before it, every other tick
    /// yields so that other calls on the same worker thread run.
    pub fn on_epoch(&mut self) -> wasmtime::Result<wasmtime::UpdateDeadline> {
        let now = thread_cpu_time();
        if let Some(r) = self.resumed_at.take() {
            // Resumed, possibly on another worker thread: the stretch began when it resumed there.
            self.stretch_start = Some(r.lock().map(|t| *t).unwrap_or(now));
        }
        self.used += match self.stretch_start {
            Some(start) => now.saturating_sub(start),
            None => self.armed_at.elapsed().min(self.tick),
        };
        self.stretch_start = Some(now);
        if self.used >= self.budget {
            return Err(DeadlineExceeded.into());
        }
        self.yielded = !self.yielded;
        if !self.yielded {
            return Ok(wasmtime::UpdateDeadline::Continue(1));
        }
        let resumed = Arc::new(Mutex::new(now));
        self.resumed_at = Some(resumed.clone());
        Ok(wasmtime::UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                if let Ok(mut t) = resumed.lock() {
                    *t = thread_cpu_time();
                }
            }),
        ))
    }
}

/// Arms `store` for a hook of `budget`: the context's accounting, and an epoch deadline one tick
/// from now. Without the latter, an instance that sat idle across ticks between two hooks would
/// stop at its first epoch check in the next hook, read the CPU clock and yield for nothing.
pub(crate) fn arm_store(store: &mut wasmtime::Store<PluginCtx>, budget: Duration) {
    store.data_mut().arm(budget);
    store.set_epoch_deadline(1);
}

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own; CLOCK_THREAD_CPUTIME_ID is always
    // available on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The WASI context of a plugin instance: no environment, arguments, preopened directories or
/// sockets; only clocks, random and the two output streams, which go to the log.
fn wasi_ctx(plugin: &Arc<str>, call_ref: u64) -> WasiCtx {
    let out = |stderr| GuestOutput {
        plugin: plugin.clone(),
        call_ref,
        stderr,
    };
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(out(false)).stderr(out(true));
    wasi.build()
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (plugin, call_ref) = (&self.plugin.name, self.call_ref);
        WasiCtxView {
            ctx: self.wasi.get_or_insert_with(|| wasi_ctx(plugin, call_ref)),
            table: &mut self.table,
        }
    }
}

/// The error a hook's deadline raises inside the guest.
#[derive(Debug, thiserror::Error)]
#[error("hook deadline exceeded")]
pub(crate) struct DeadlineExceeded;

/// A guest's stdout or stderr, written line by line into the log under the plugin's name.
#[derive(Clone)]
struct GuestOutput {
    plugin: Arc<str>,
    call_ref: u64,
    stderr: bool,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

/// Longest output line logged; a guest printing more in one write is cut.
const MAX_LOG_LINE: usize = 4096;

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LOG_LINE)]);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if self.stderr {
                tracing::warn!(plugin = %self.plugin, call_ref = self.call_ref, stream = "stderr", "{line}");
            } else {
                tracing::info!(plugin = %self.plugin, call_ref = self.call_ref, stream = "stdout", "{line}");
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LOG_LINE)
    }
}
