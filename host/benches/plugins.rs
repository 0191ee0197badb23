//! Plugin runtime costs on the hot path, through real components:
//! - a fresh per-call instance plus `on-invite` returning ten headers (what every new call pays),
//! - a hook on a live instance (what every later event of the call pays),
//! - a chain of three plugins on a fresh call.
//!
//! Criterion reports means and medians; the tail matters as much for a gateway, so `main` also
//! prints p50/p90/p99 of the fresh-instance path from 20,000 timed iterations.
//!
//! Run: `cargo bench -p callgate --bench plugins`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use callgate::plugin::decision::{CallInfo, Header, Leg, RequestView, ResponseView};
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
    let headers: serde_json::Map<String, serde_json::Value> = (0..10)
        .map(|i| (format!("X-Bench-{i}"), json!(format!("value-{i}"))))
        .collect();
    let spec = PluginSpec::new(name, wasm("header-policy"))
        .with_config(json!({ "invite-headers": headers }));
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

fn invite() -> RequestView {
    RequestView {
        method: "INVITE".into(),
        uri: "sip:bob@127.0.0.1".into(),
        headers: (0..8)
            .map(|i| Header::new(format!("X-In-{i}"), "some value"))
            .collect(),
        body_type: Some("application/sdp".into()),
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
        reason: "Ringing".into(),
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

/// Prints the latency distribution of the fresh-instance path.
fn percentiles() {
    let (rt, runtime) = setup();
    let one = Chain::new(vec![header_policy(&rt, &runtime, "hp")]);
    let req = invite();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    rt.block_on(async {
        for i in 0..22_000u32 {
            let t = Instant::now();
            let mut call = one.start_call(info(), ControlSupport::default()).unwrap();
            let out = call.on_invite(&req).await;
            drop(call);
            let ns = t.elapsed().as_nanos() as u64;
            std::hint::black_box(out);
            if i >= 2_000 {
                hist.record(ns).unwrap();
            }
        }
    });
    println!(
        "fresh instance + on-invite (10 headers), 20000 calls: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.9) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    // Skip the long distribution run when the bench binary runs as a test (`cargo test --benches`).
    if std::env::args().any(|a| a == "--bench") {
        percentiles();
    }
    Criterion::default().configure_from_args().final_summary();
}
