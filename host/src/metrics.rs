//! Gateway metrics and their Prometheus endpoint.
//!
//! Counters are relaxed atomics bumped on the hot path; rendering reads them and the plugin chain's
//! accounting when `/metrics` is scraped.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use callgate_sip::message::{Method, SipMessage};

use crate::http::Response;
use crate::plugin::Chain;
use crate::plugin::decision::CallOutcome;
use crate::plugin::stats::{FailureKind, Hook};

const METHODS: [&str; 14] = [
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "REFER",
    "NOTIFY",
    "MESSAGE",
    "PRACK",
    "SUBSCRIBE",
    "other",
];
const OUTCOMES: [CallOutcome; 6] = [
    CallOutcome::Answered,
    CallOutcome::Rejected,
    CallOutcome::Cancelled,
    CallOutcome::Redirected,
    CallOutcome::TimedOut,
    CallOutcome::Failed,
];

fn method_index(m: &Method) -> usize {
    METHODS
        .iter()
        .position(|x| *x == m.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn outcome_name(o: CallOutcome) -> &'static str {
    match o {
        CallOutcome::Answered => "answered",
        CallOutcome::Rejected => "rejected",
        CallOutcome::Cancelled => "cancelled",
        CallOutcome::Redirected => "redirected",
        CallOutcome::TimedOut => "timed-out",
        CallOutcome::Failed => "failed",
    }
}

/// The gateway's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    calls_active: AtomicI64,
    calls_lingering: AtomicI64,
    calls_started: AtomicU64,
    calls_answered: AtomicU64,
    calls_ended: [AtomicU64; OUTCOMES.len()],
    requests_in: [AtomicU64; METHODS.len()],
    requests_out: [AtomicU64; METHODS.len()],
    /// By status class 1xx..6xx.
    responses_in: [AtomicU64; 6],
    responses_out: [AtomicU64; 6],
    retransmissions: AtomicU64,
}

fn class(status: u16) -> usize {
    (status / 100).clamp(1, 6) as usize - 1
}

impl Metrics {
    /// A message arrived.
    pub fn message_in(&self, msg: &SipMessage) {
        match (msg.method(), msg.status()) {
            (Some(m), _) => self.requests_in[method_index(m)].fetch_add(1, Ordering::Relaxed),
            (None, Some(s)) => self.responses_in[class(s)].fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// We sent a request (first transmission).
    pub fn request_out(&self, m: &Method) {
        self.requests_out[method_index(m)].fetch_add(1, Ordering::Relaxed);
    }

    /// We sent a response.
    pub fn response_out(&self, status: u16) {
        self.responses_out[class(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// We re-sent a message because its answer did not come.
    pub fn retransmission(&self) {
        self.retransmissions.fetch_add(1, Ordering::Relaxed);
    }

    /// A call started.
    pub fn call_started(&self) {
        self.calls_started.fetch_add(1, Ordering::Relaxed);
        self.calls_active.fetch_add(1, Ordering::Relaxed);
        self.calls_lingering.fetch_add(1, Ordering::Relaxed);
    }

    /// The B leg answered.
    pub fn call_answered(&self) {
        self.calls_answered.fetch_add(1, Ordering::Relaxed);
    }

    /// A call ended with this outcome.
    pub fn call_ended(&self, o: CallOutcome) {
        self.calls_ended[o as usize].fetch_add(1, Ordering::Relaxed);
        self.calls_active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A call's actor stopped (its transactions quiet, or its linger over).
    pub fn call_closed(&self) {
        self.calls_lingering.fetch_sub(1, Ordering::Relaxed);
    }

    /// Call actors alive: calls in progress, and ended ones whose transactions still work.
    pub fn call_actors(&self) -> i64 {
        self.calls_lingering.load(Ordering::Relaxed)
    }

    /// Calls in progress.
    pub fn calls_active(&self) -> i64 {
        self.calls_active.load(Ordering::Relaxed)
    }

    /// Calls that ended with `o`.
    pub fn calls_ended(&self, o: CallOutcome) -> u64 {
        self.calls_ended[o as usize].load(Ordering::Relaxed)
    }

    /// Retransmissions so far.
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of the gateway and the plugin chain.
    pub fn render(&self, chain: &Chain) -> String {
        let mut o = String::with_capacity(8192);
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            o,
            "# HELP callgate_calls_active Calls in progress.\n# TYPE callgate_calls_active gauge"
        );
        let _ = writeln!(o, "callgate_calls_active {}", self.calls_active());
        let _ = writeln!(
            o,
            "# HELP callgate_call_actors Call actors alive: calls in progress, and ended ones whose transactions still work.\n# TYPE callgate_call_actors gauge"
        );
        let _ = writeln!(o, "callgate_call_actors {}", self.call_actors());
        let _ = writeln!(
            o,
            "# HELP callgate_calls_started_total Calls received.\n# TYPE callgate_calls_started_total counter"
        );
        let _ = writeln!(
            o,
            "callgate_calls_started_total {}",
            ld(&self.calls_started)
        );
        let _ = writeln!(
            o,
            "# HELP callgate_calls_answered_total Calls the B leg answered.\n# TYPE callgate_calls_answered_total counter"
        );
        let _ = writeln!(
            o,
            "callgate_calls_answered_total {}",
            ld(&self.calls_answered)
        );
        let _ = writeln!(
            o,
            "# HELP callgate_calls_total Calls ended, by outcome.\n# TYPE callgate_calls_total counter"
        );
        for oc in OUTCOMES {
            let _ = writeln!(
                o,
                "callgate_calls_total{{outcome=\"{}\"}} {}",
                outcome_name(oc),
                self.calls_ended(oc)
            );
        }
        let _ = writeln!(
            o,
            "# HELP callgate_sip_requests_total SIP requests by direction and method.\n# TYPE callgate_sip_requests_total counter"
        );
        for (i, m) in METHODS.iter().enumerate() {
            let _ = writeln!(
                o,
                "callgate_sip_requests_total{{direction=\"in\",method=\"{m}\"}} {}",
                ld(&self.requests_in[i])
            );
            let _ = writeln!(
                o,
                "callgate_sip_requests_total{{direction=\"out\",method=\"{m}\"}} {}",
                ld(&self.requests_out[i])
            );
        }
        let _ = writeln!(
            o,
            "# HELP callgate_sip_responses_total SIP responses by direction and status class.\n# TYPE callgate_sip_responses_total counter"
        );
        for c in 0..6 {
            let _ = writeln!(
                o,
                "callgate_sip_responses_total{{direction=\"in\",class=\"{}xx\"}} {}",
                c + 1,
                ld(&self.responses_in[c])
            );
            let _ = writeln!(
                o,
                "callgate_sip_responses_total{{direction=\"out\",class=\"{}xx\"}} {}",
                c + 1,
                ld(&self.responses_out[c])
            );
        }
        let _ = writeln!(
            o,
            "# HELP callgate_sip_retransmissions_total Messages re-sent for lack of an answer.\n# TYPE callgate_sip_retransmissions_total counter"
        );
        let _ = writeln!(
            o,
            "callgate_sip_retransmissions_total {}",
            self.retransmissions()
        );
        render_plugins(&mut o, chain);
        o
    }
}

/// Upper bounds (microseconds) of the hook latency histogram buckets.
const LATENCY_BUCKETS_US: [u64; 10] = [5, 10, 25, 50, 100, 250, 1000, 5000, 10_000, 100_000];

fn render_plugins(o: &mut String, chain: &Chain) {
    let _ = writeln!(
        o,
        "# HELP callgate_plugin_instances_total Plugin instances created.\n# TYPE callgate_plugin_instances_total counter"
    );
    for p in chain.plugins() {
        let _ = writeln!(
            o,
            "callgate_plugin_instances_total{{plugin=\"{}\"}} {}",
            p.name(),
            p.stats().instances()
        );
    }
    let _ = writeln!(
        o,
        "# HELP callgate_plugin_counter_total Counters plugins keep themselves (metrics.counter-add).\n# TYPE callgate_plugin_counter_total counter"
    );
    for p in chain.plugins() {
        for (name, n) in p.counters().snapshot() {
            let _ = writeln!(
                o,
                "callgate_plugin_counter_total{{plugin=\"{}\",name=\"{name}\"}} {n}",
                p.name()
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP callgate_plugin_refused_headers_total Headers dropped from plugin decisions.\n# TYPE callgate_plugin_refused_headers_total counter"
    );
    for p in chain.plugins() {
        let _ = writeln!(
            o,
            "callgate_plugin_refused_headers_total{{plugin=\"{}\"}} {}",
            p.name(),
            p.stats().refused_headers()
        );
    }
    let _ = writeln!(
        o,
        "# HELP callgate_plugin_hook_failures_total Hook failures by kind.\n# TYPE callgate_plugin_hook_failures_total counter"
    );
    for p in chain.plugins() {
        for s in p.stats().snapshot() {
            for k in FailureKind::ALL {
                let n = s.failures_of(k);
                if n > 0 {
                    let _ = writeln!(
                        o,
                        "callgate_plugin_hook_failures_total{{plugin=\"{}\",hook=\"{}\",kind=\"{}\"}} {n}",
                        p.name(),
                        s.hook.name(),
                        k.name()
                    );
                }
            }
        }
    }
    let _ = writeln!(
        o,
        "# HELP callgate_plugin_hook_seconds Hook call latency.\n# TYPE callgate_plugin_hook_seconds histogram"
    );
    for p in chain.plugins() {
        for s in p.stats().snapshot() {
            if s.calls == 0 || (s.hook != Hook::Init && !p.hooks().contains(s.hook)) {
                continue;
            }
            let labels = format!("plugin=\"{}\",hook=\"{}\"", p.name(), s.hook.name());
            for b in LATENCY_BUCKETS_US {
                let n = s.latency_us.count_between(0, b);
                let _ = writeln!(
                    o,
                    "callgate_plugin_hook_seconds_bucket{{{labels},le=\"{}\"}} {n}",
                    b as f64 / 1e6
                );
            }
            let _ = writeln!(
                o,
                "callgate_plugin_hook_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.latency_us.len()
            );
            let sum = s.latency_us.mean() * s.latency_us.len() as f64 / 1e6;
            let _ = writeln!(o, "callgate_plugin_hook_seconds_sum{{{labels}}} {sum}");
            let _ = writeln!(
                o,
                "callgate_plugin_hook_seconds_count{{{labels}}} {}",
                s.calls
            );
        }
    }
}

/// Serves `GET /metrics` on `addr` until the returned task is aborted.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    chain: impl Fn() -> Arc<Chain> + Send + Sync + 'static,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let chain = Arc::new(chain);
    let handler: crate::http::Handler = Arc::new(move |req| {
        let (metrics, chain) = (metrics.clone(), chain.clone());
        Box::pin(async move {
            if req.method == "GET" && req.path == "/metrics" {
                Response::ok("text/plain; version=0.0.4", metrics.render(&chain()))
            } else {
                Response::error(404, "not found")
            }
        })
    });
    Ok(crate::http::serve(addr, handler).await?)
}
