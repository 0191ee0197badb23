//! Per plugin and hook accounting: calls, failures by kind, and latency.
//!
//! Recorded on every hook call, so it must stay cheap: counters are relaxed atomics and the latency
//! histogram sits behind an uncontended mutex (a hook call on one call actor at a time per plugin
//! version and hook, so contention is rare and short).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// The hooks of the contract, as an index into the accounting tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `init`, on load and on each per-call instance.
    Init,
    /// `on-invite`.
    Invite,
    /// `on-response`.
    Response,
    /// `on-refer`.
    Refer,
    /// `recording-policy`.
    Recording,
    /// `on-media-state`.
    MediaState,
    /// `on-dtmf`.
    Dtmf,
    /// `on-call-end`.
    CallEnd,
}

impl Hook {
    /// Every hook, in table order.
    pub const ALL: [Hook; 8] = [
        Hook::Init,
        Hook::Invite,
        Hook::Response,
        Hook::Refer,
        Hook::Recording,
        Hook::MediaState,
        Hook::Dtmf,
        Hook::CallEnd,
    ];

    /// The WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Init => "init",
            Hook::Invite => "on-invite",
            Hook::Response => "on-response",
            Hook::Refer => "on-refer",
            Hook::Recording => "recording-policy",
            Hook::MediaState => "on-media-state",
            Hook::Dtmf => "on-dtmf",
            Hook::CallEnd => "on-call-end",
        }
    }
}

/// Why a plugin's part in a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// The guest trapped (a panic, unreachable, an out-of-bounds access) or its `init` failed.
    Trap,
    /// The hook ran past its deadline.
    Deadline,
    /// The instance hit its memory cap.
    Memory,
    /// The decision was refused by the host's checks.
    BadDecision,
    /// No instance could be created (pool exhausted or instantiation error).
    Instantiate,
}

impl FailureKind {
    /// Every kind, in table order.
    pub const ALL: [FailureKind; 5] = [
        FailureKind::Trap,
        FailureKind::Deadline,
        FailureKind::Memory,
        FailureKind::BadDecision,
        FailureKind::Instantiate,
    ];

    /// Name used in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Deadline => "deadline",
            FailureKind::Memory => "memory",
            FailureKind::BadDecision => "bad-decision",
            FailureKind::Instantiate => "instantiate",
        }
    }
}

struct HookStats {
    calls: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
    /// Microseconds; 1 us to 60 s at 2 significant digits.
    latency_us: Mutex<Histogram<u64>>,
}

impl HookStats {
    fn new() -> Self {
        Self {
            calls: AtomicU64::new(0),
            failures: Default::default(),
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 2).expect("static histogram bounds"),
            ),
        }
    }
}

/// The accounting of one loaded plugin version.
pub struct PluginStats {
    hooks: [HookStats; Hook::ALL.len()],
    instances: AtomicU64,
    refused_headers: AtomicU64,
}

impl Default for PluginStats {
    fn default() -> Self {
        Self {
            hooks: std::array::from_fn(|_| HookStats::new()),
            instances: AtomicU64::new(0),
            refused_headers: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for PluginStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginStats")
            .field("instances", &self.instances())
            .finish_non_exhaustive()
    }
}

/// A point-in-time copy of one hook's accounting.
#[derive(Debug, Clone)]
pub struct HookSnapshot {
    /// Which hook.
    pub hook: Hook,
    /// Calls made (successful or not).
    pub calls: u64,
    /// Failures by kind, in `FailureKind::ALL` order.
    pub failures: [u64; FailureKind::ALL.len()],
    /// Latency histogram in microseconds.
    pub latency_us: Histogram<u64>,
}

impl HookSnapshot {
    /// Failures of one kind.
    pub fn failures_of(&self, kind: FailureKind) -> u64 {
        self.failures[kind as usize]
    }
}

impl PluginStats {
    pub(crate) fn record_call(&self, hook: Hook, took: Duration) {
        let h = &self.hooks[hook as usize];
        h.calls.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut hist) = h.latency_us.lock() {
            hist.saturating_record(us);
        }
    }

    pub(crate) fn record_failure(&self, hook: Hook, kind: FailureKind) {
        self.hooks[hook as usize].failures[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_instance(&self) {
        self.instances.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_refused_headers(&self, n: usize) {
        self.refused_headers.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Per-call instances created so far.
    pub fn instances(&self) -> u64 {
        self.instances.load(Ordering::Relaxed)
    }

    /// Headers dropped from decisions by the host's checks.
    pub fn refused_headers(&self) -> u64 {
        self.refused_headers.load(Ordering::Relaxed)
    }

    /// A copy of one hook's accounting.
    pub fn hook(&self, hook: Hook) -> HookSnapshot {
        let h = &self.hooks[hook as usize];
        HookSnapshot {
            hook,
            calls: h.calls.load(Ordering::Relaxed),
            failures: std::array::from_fn(|i| h.failures[i].load(Ordering::Relaxed)),
            latency_us: h
                .latency_us
                .lock()
                .map(|g| g.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
        }
    }

    /// Copies of every hook's accounting.
    pub fn snapshot(&self) -> Vec<HookSnapshot> {
        Hook::ALL.iter().map(|&h| self.hook(h)).collect()
    }
}
