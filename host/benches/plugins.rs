//! Plugin runtime costs on the hot path, through real components:
//! - a fresh per-call instance plus `on-invite` returning ten headers (what every new call pays),
//! - a hook on a live instance (what every later event of the call pays),
//! - a chain of three plugins on a fresh call.
//!
//! Criterion reports means and medians; the tail matters as much for a gateway, so `main` also
//! prints p50/p90/p99 of the fresh-instance path of header-policy in Rust, C and Python.
//!
//! Run: `cargo bench -p callgate --bench plugins`.

/// The gateway binary's allocator (host/src/main.rs), so that these figures are what a call costs
/// there: with glibc's malloc the fresh-instance path spent ~15% in malloc and free.
#[global_allocator]
static ALLOCATOR: callgate::allocator::MiMalloc = callgate::allocator::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use callgate::plugin::decision::{CallInfo, HeaderView, Leg, RequestView, ResponseView};
use callgate::plugin::{Chain, ControlSupport, LoadedPlugin, PluginSpec, Runtime, RuntimeConfig};
use criterion::{Criterion, criterion_group};
use serde_json::json;

fn wasm(name: &str) -> PathBuf {
    PathBuf::from(env!("CALLGATE_PLUGIN_DIR")).join(format!("{name}.wasm"))
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn header_policy(rt: &tokio::runtime::Runtime, runtime: &Runtime, name: &str) -> Arc<LoadedPlugin> {
    let spec = PluginSpec::new(name, wasm("header-policy")).with_config(ten_headers());
    rt.block_on(runtime.load(&spec))
        .expect("header-policy loads")
}

fn info() -> CallInfo {
    CallInfo {
        call_ref: 1,
        call_id: "bench@127.0.0.1".into(),
        from: "sip:alice@127.0.0.1".into(),
        to: "sip:bob@127.0.0.1".into(),
        request_uri: "sip:bob@127.0.0.1".into(),
        source: "udp:127.0.0.1:5070".into(),
        ..Default::default()
    }
}

const HEADER_NAMES: [&str; 8] = [
    "X-In-0", "X-In-1", "X-In-2", "X-In-3", "X-In-4", "X-In-5", "X-In-6", "X-In-7",
];

fn invite() -> RequestView<'static> {
    RequestView {
        method: "INVITE",
        uri: "sip:bob@127.0.0.1",
        headers: HEADER_NAMES
            .iter()
            .map(|n| HeaderView::new(n, "some value"))
            .collect(),
        body_type: Some("application/sdp"),
    }
}

fn setup() -> (tokio::runtime::Runtime, Runtime) {
    let rt = tokio_rt();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    (rt, runtime)
}

fn bench(c: &mut Criterion) {
    let (rt, runtime) = setup();
    let one = Chain::new(vec![header_policy(&rt, &runtime, "hp")]);
    let req = invite();
    c.bench_function("fresh instance + on-invite (10 headers)", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut call = one.start_call(info(), ControlSupport::default()).unwrap();
                call.on_invite(&req).await
            })
        })
    });

    let probe = rt
        .block_on(runtime.load(&PluginSpec::new("probe", wasm("probe"))))
        .unwrap();
    let live_chain = Chain::new(vec![probe]);
    let mut live = live_chain
        .start_call(info(), ControlSupport::default())
        .unwrap();
    let resp = ResponseView {
        status: 180,
        reason: "Ringing",
        ..Default::default()
    };
    rt.block_on(live.on_response(Leg::B, "INVITE", &resp));
    c.bench_function("on-response on a live instance", |b| {
        b.iter(|| rt.block_on(live.on_response(Leg::B, "INVITE", &resp)))
    });

    let three = Chain::new(vec![
        header_policy(&rt, &runtime, "hp1"),
        header_policy(&rt, &runtime, "hp2"),
        header_policy(&rt, &runtime, "hp3"),
    ]);
    c.bench_function("chain of three: fresh instances + on-invite", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut call = three.start_call(info(), ControlSupport::default()).unwrap();
                call.on_invite(&req).await
            })
        })
    });
}

/// header-policy's config in the benchmarks: ten headers on the outgoing INVITE.
fn ten_headers() -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = (0..10)
        .map(|i| (format!("X-Bench-{i}"), json!(format!("value-{i}"))))
        .collect();
    json!({ "invite-headers": headers })
}

/// Prints the latency distribution of the fresh-instance path for `plugin` (a component in
/// target/plugins), over `calls` timed calls after a warm-up.
fn percentiles(plugin: &str, calls: u32) {
    let (rt, runtime) = setup();
    let spec = PluginSpec::new(plugin, wasm(plugin)).with_config(ten_headers());
    let loaded = rt.block_on(runtime.load(&spec)).expect("plugin loads");
    let pre_init = loaded.pre_initialized();
    let one = Chain::new(vec![loaded]);
    let req = invite();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let warm_up = calls / 10;
    rt.block_on(async {
        for i in 0..warm_up + calls {
            let t = Instant::now();
            let mut call = one.start_call(info(), ControlSupport::default()).unwrap();
            let out = call.on_invite(&req).await;
            drop(call);
            let ns = t.elapsed().as_nanos() as u64;
            std::hint::black_box(out);
            if i >= warm_up {
                hist.record(ns).unwrap();
            }
        }
    });
    println!(
        "{plugin} (pre-init {pre_init}): fresh instance + on-invite (10 headers), {calls} calls: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.9) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

/// Prints, per hook, the latency distribution of a whole call's hooks through probe.wasm (which takes
/// every hook and keeps its instance for the call): what the gateway's plugin work per call is made
/// of under `bench/cps.sh`.
fn call_of_hooks(calls: u32) {
    use callgate::plugin::decision::{CallOutcome, CallSummary, Initiator};
    let (rt, runtime) = setup();
    let probe = rt
        .block_on(runtime.load(&PluginSpec::new("probe", wasm("probe"))))
        .expect("probe loads");
    let chain = Chain::new(vec![probe]);
    let req = invite();
    let ringing = ResponseView {
        status: 180,
        reason: "Ringing",
        ..Default::default()
    };
    let ok = ResponseView {
        status: 200,
        reason: "OK",
        ..Default::default()
    };
    let summary = CallSummary {
        outcome: CallOutcome::Answered,
        status: 200,
        reason: "BYE from caller".into(),
        ended_by: Initiator::Caller,
        setup_ms: 3,
        talk_ms: 1000,
    };
    const STEPS: [&str; 7] = [
        "fresh instance + on-invite",
        "recording-policy",
        "on-response 180",
        "on-response 200",
        "on-response BYE 200",
        "on-call-end",
        "drop (instance back to the pool)",
    ];
    let mut hists: Vec<_> = STEPS
        .iter()
        .map(|_| hdrhistogram::Histogram::<u64>::new(3).unwrap())
        .collect();
    let mut whole = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let warm_up = calls / 10;
    rt.block_on(async {
        for i in 0..warm_up + calls {
            let mut times = [0u64; STEPS.len()];
            let start = Instant::now();
            let mut t = start;
            let mut lap = |k: usize| {
                let now = Instant::now();
                times[k] = (now - t).as_nanos() as u64;
                t = now;
            };
            let mut call = chain.start_call(info(), ControlSupport::default()).unwrap();
            std::hint::black_box(call.on_invite(&req).await);
            lap(0);
            std::hint::black_box(call.recording_policy().await);
            lap(1);
            std::hint::black_box(call.on_response(Leg::B, "INVITE", &ringing).await);
            lap(2);
            std::hint::black_box(call.on_response(Leg::B, "INVITE", &ok).await);
            lap(3);
            std::hint::black_box(call.on_response(Leg::B, "BYE", &ok).await);
            lap(4);
            call.on_call_end(&summary).await;
            lap(5);
            drop(call);
            lap(6);
            if i >= warm_up {
                for (h, ns) in hists.iter_mut().zip(times) {
                    h.record(ns).unwrap();
                }
                whole.record(start.elapsed().as_nanos() as u64).unwrap();
            }
        }
    });
    let us = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("probe, a whole call's hooks, {calls} calls (p50 / p90 / p99 us):");
    for (name, h) in STEPS.iter().zip(&hists) {
        println!(
            "  {name:<34} {:>7.1} {:>7.1} {:>7.1}",
            us(h, 0.5),
            us(h, 0.9),
            us(h, 0.99)
        );
    }
    println!(
        "  {:<34} {:>7.1} {:>7.1} {:>7.1}",
        "whole call",
        us(&whole, 0.5),
        us(&whole, 0.9),
        us(&whole, 0.99)
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    // Skip the long distribution run when the bench binary runs as a test (`cargo test --benches`).
    if std::env::args().any(|a| a == "--bench") {
        // CALLGATE_BENCH_PLUGIN=<name> measures one of them alone (e.g. under `perf`).
        let only = std::env::var("CALLGATE_BENCH_PLUGIN").ok();
        for (plugin, calls) in [
            ("header-policy", 20_000),
            ("header-policy-c", 20_000),
            ("header-policy-py", 2_000),
        ] {
            if only.as_deref().is_none_or(|o| o == plugin) {
                // CALLGATE_BENCH_CALLS=<n> times more calls (a longer window for a profiler).
                let calls = std::env::var("CALLGATE_BENCH_CALLS")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(calls);
                percentiles(plugin, calls);
            }
        }
        if only.as_deref().is_none_or(|o| o == "probe") {
            call_of_hooks(20_000);
        }
    }
    Criterion::default().configure_from_args().final_summary();
}
