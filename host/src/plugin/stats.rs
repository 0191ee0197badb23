//! Per plugin and hook accounting: calls, failures by kind, and latency.
//!
//! Recorded on every hook call, so it must stay cheap: counters are relaxed atomics and the latency
//! histogram sits behind an uncontended mutex (a hook call on one call actor at a time per plugin
//! version and hook, so contention is rare and short).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// Most counters one plugin version may keep.
pub const MAX_COUNTERS: usize = 64;

/// Longest counter name.
const MAX_COUNTER_NAME: usize = 64;

/// The counters a plugin keeps itself (`metrics.counter-add`), in creation order. A short vector
/// behind a mutex: a plugin has a handful of counters, and a call actor adds to them once or twice
/// per call.
#[derive(Debug, Default)]
pub struct PluginCounters {
    counters: Mutex<Vec<(Box<str>, u64)>>,
    warned: AtomicBool,
}

impl PluginCounters {
    /// Adds `delta` to `name`, creating it; refuses a bad name or one counter too many.
    pub(crate) fn add(&self, name: &str, delta: u64) -> Result<(), &'static str> {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, n)) = counters.iter_mut().find(|(c, _)| &**c == name) {
            *n = n.saturating_add(delta);
            return Ok(());
        }
        let mut bytes = name.bytes();
        let well_formed = name.len() <= MAX_COUNTER_NAME
            && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !well_formed {
            return Err(
                "a counter name is 1-64 ASCII letters, digits and `_`, starting with a letter",
            );
        }
        if counters.len() == MAX_COUNTERS {
            return Err("the plugin already has 64 counters");
        }
        counters.push((name.into(), delta));
        Ok(())
    }

    /// True from the second time on: a refused counter is logged once per plugin version.
    pub(crate) fn warned(&self) -> bool {
        self.warned.swap(true, Ordering::Relaxed)
    }

    /// The counters and their values, in creation order.
    pub fn snapshot(&self) -> Vec<(Box<str>, u64)> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_COUNTERS, PluginCounters};

    #[test]
    fn counters_accumulate_and_refuse_bad_names_and_the_65th() {
        let c = PluginCounters::default();
        c.add("tagged", 1).unwrap();
        c.add("tagged", 2).unwrap();
        c.add("refused_403", 1).unwrap();
        for bad in [
            "",
            "9lives",
            "has space",
            "dash-ed",
            "quote\"",
            &"x".repeat(65),
        ] {
            assert!(c.add(bad, 1).is_err(), "{bad:?}");
        }
        assert_eq!(
            c.snapshot(),
            vec![("tagged".into(), 3), ("refused_403".into(), 1)]
        );
        for i in 2..MAX_COUNTERS {
            c.add(&format!("c{i}"), 1).unwrap();
        }
        assert!(c.add("one_too_many", 1).is_err());
        c.add("tagged", 1).unwrap();
        assert!(!c.warned());
        assert!(c.warned());
    }
}
