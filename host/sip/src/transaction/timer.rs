//! RFC 3261 timers (Table 4 of RFC 3261 17 and RFC 6026), and the table a transaction keeps them in.

use std::time::{Duration, Instant};

/// T1, T2 and T4 (RFC 3261 17.1.1.1 and Table 4). Other timers derive from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; the first retransmission interval. Default 500 ms.
    pub t1: Duration,
    /// Maximum retransmission interval for non-INVITE requests and INVITE responses. Default 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network. Default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The transaction timers. Each is armed only in the states the RFC names.
///
/// | timer | section | value (unreliable / reliable) | meaning on expiry |
/// |---|---|---|---|
/// | A | 17.1.1.2 | T1, doubling / not armed | retransmit INVITE |
/// | B | 17.1.1.2 | 64*T1 | INVITE transaction timeout |
/// | D | 17.1.1.2 | 32 s / 0 | leave Completed (absorbing final retransmits) |
/// | E | 17.1.2.2 | T1 doubling to T2 / not armed | retransmit non-INVITE |
/// | F | 17.1.2.2 | 64*T1 | non-INVITE transaction timeout |
/// | G | 17.2.1 | T1 doubling to T2 / not armed | retransmit INVITE final response |
/// | H | 17.2.1 | 64*T1 | wait for ACK ends |
/// | I | 17.2.1 | T4 / 0 | leave Confirmed (absorbing ACKs) |
/// | J | 17.2.2 | 64*T1 / 0 | leave Completed (non-INVITE server) |
/// | K | 17.1.2.2 | T4 / 0 | leave Completed (non-INVITE client) |
/// | L | RFC 6026 8.7 | 64*T1 | leave Accepted (INVITE server) |
/// | M | RFC 6026 8.4 | 64*T1 | leave Accepted (INVITE client) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// RFC 3261 17.1.1.2: INVITE request retransmission interval (unreliable transports).
    A,
    /// RFC 3261 17.1.1.2: INVITE transaction timeout.
    B,
    /// RFC 3261 17.1.1.2: wait time for response retransmissions in client INVITE Completed.
    D,
    /// RFC 3261 17.1.2.2: non-INVITE request retransmission interval (unreliable transports).
    E,
    /// RFC 3261 17.1.2.2: non-INVITE transaction timeout.
    F,
    /// RFC 3261 17.2.1: INVITE final response retransmission interval (unreliable transports).
    G,
    /// RFC 3261 17.2.1: wait time for ACK receipt.
    H,
    /// RFC 3261 17.2.1: wait time for ACK retransmissions.
    I,
    /// RFC 3261 17.2.2: wait time for non-INVITE request retransmissions.
    J,
    /// RFC 3261 17.1.2.2: wait time for non-INVITE response retransmissions.
    K,
    /// RFC 6026 8.7: wait time for INVITE retransmissions after a 2xx (server Accepted).
    L,
    /// RFC 6026 8.4: wait time for 2xx retransmissions (client Accepted).
    M,
}

const ALL: [Timer; 12] = [
    Timer::A,
    Timer::B,
    Timer::D,
    Timer::E,
    Timer::F,
    Timer::G,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
];

/// Deadlines indexed by [`Timer`] (quinn's `TimerTable`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable([Option<Instant>; 12]);

impl TimerTable {
    fn idx(t: Timer) -> usize {
        ALL.iter().position(|&x| x == t).unwrap_or(0)
    }
    pub(crate) fn set(&mut self, t: Timer, at: Instant) {
        self.0[Self::idx(t)] = Some(at);
    }
    pub(crate) fn stop(&mut self, t: Timer) {
        self.0[Self::idx(t)] = None;
    }
    pub(crate) fn stop_all(&mut self) {
        self.0 = [None; 12];
    }
    pub(crate) fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    /// The earliest timer due at `now`, cleared.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .0
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|&at| at <= now).map(|at| (i, at)))
            .min_by_key(|&(_, at)| at)?;
        self.0[i] = None;
        Some(ALL[i])
    }
}
