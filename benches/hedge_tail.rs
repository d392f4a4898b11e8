//! Tail latency with hedging: no hedging, tower's `tower::hedge::Hedge`
//! and ours, against the same upstream, in one process.
//!
//! ```sh
//! cargo bench --bench hedge_tail                 # 3 runs of 40,000 calls per variant
//! cargo bench --bench hedge_tail -- --runs 5 --calls 100000
//! ```
//!
//! The upstream is an in-process service: 2 % of its calls sleep 100 ms,
//! the rest 1 ms (tokio's timer, so about 1-2 ms: it fires on the next
//! millisecond tick). In process rather than the crate's `upstream` server
//! over loopback so that what is measured is the hedging decision, not
//! hyper and the loopback stack sharing two busy cores with the client;
//! the latencies are the same either way, and this gets enough calls for a
//! meaningful p99.9 in seconds.
//!
//! Each variant gets a warm-up (so the percentile estimators have data),
//! then `--calls` calls, 100 at a time, on a current-thread runtime, each
//! timed from `oneshot` to its answer. Extra load is inner calls over
//! requests, minus one, over the measured calls. tower's hedge is run at
//! several latency percentiles (its only knob for extra load) so that one
//! of them can be read at the same extra load as ours.
//!
//! Prints a markdown table (median of the runs, and the min-max spread)
//! and writes every run to `benches/results/hedge_tail.json`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_patterns::hedge::{AnyRequest, HedgeLayer};
use tower_patterns::retry::Replay;

const SLOW_RATE: f64 = 0.02;
const SLOW: Duration = Duration::from_millis(100);
const FAST: Duration = Duration::from_millis(1);
const CONCURRENCY: usize = 100;
/// tower's hedge reads the latency histogram of the last full period, so
/// its period must be well inside a variant's run (about a second).
const TOWER_PERIOD: Duration = Duration::from_millis(250);
const WARM_UP: u64 = 20_000;

/// tower's hedge policy: every request may be hedged.
#[derive(Clone)]
struct Every;

impl tower::hedge::Policy<u64> for Every {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        req.replay()
    }

    fn can_retry(&self, _req: &u64) -> bool {
        true
    }
}

/// The long-tailed upstream; `calls` counts every call it gets.
fn upstream(
    calls: Arc<AtomicU64>,
) -> impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone + Send {
    service_fn(move |x: u64| {
        calls.fetch_add(1, Ordering::Relaxed);
        let latency = if fastrand::f64() < SLOW_RATE {
            SLOW
        } else {
            FAST
        };
        async move {
            tokio::time::sleep(latency).await;
            Ok::<_, BoxError>(x)
        }
    })
}

#[derive(Clone, Copy, Debug)]
struct Row {
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    extra_load: f64,
}

/// `n` calls, `CONCURRENCY` at a time, through one service handle (tower's
/// `Hedge` is not `Clone`): readiness, call, and the response futures
/// driven together. Latencies in microseconds, from call to answer.
async fn drive<S>(svc: &mut S, n: u64) -> Vec<u64>
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    let mut in_flight = FuturesUnordered::new();
    let mut lat = Vec::with_capacity(n as usize);
    let mut next = 0;
    while next < n || !in_flight.is_empty() {
        while next < n && in_flight.len() < CONCURRENCY {
            svc.ready().await.expect("the upstream is always ready");
            let t = Instant::now();
            let fut = svc.call(next);
            in_flight.push(async move {
                fut.await.expect("the upstream always answers");
                t.elapsed()
            });
            next += 1;
        }
        if let Some(d) = in_flight.next().await {
            lat.push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        }
    }
    lat
}

async fn measure<S>(mut svc: S, calls: &AtomicU64, n: u64) -> Row
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    drive(&mut svc, WARM_UP).await;
    let before = calls.load(Ordering::Relaxed);
    let mut lat = drive(&mut svc, n).await;
    let sent = calls.load(Ordering::Relaxed) - before;
    lat.sort_unstable();
    let at = |q: f64| lat[((q * n as f64).ceil() as usize).clamp(1, lat.len()) - 1];
    Row {
        p50_us: at(0.50),
        p99_us: at(0.99),
        p999_us: at(0.999),
        extra_load: sent as f64 / n as f64 - 1.0,
    }
}

/// Every variant once, in a fixed order.
async fn run(n: u64) -> Vec<(String, Row)> {
    let mut rows = Vec::new();

    let calls = Arc::new(AtomicU64::new(0));
    let bare = upstream(calls.clone());
    rows.push(("no hedging".to_string(), measure(bare, &calls, n).await));

    for p in [95.0, 90.0, 80.0] {
        let calls = Arc::new(AtomicU64::new(0));
        let layer = HedgeLayer::builder()
            .percentile(p)
            .delay(Duration::from_millis(5))
            .min_samples(100)
            .budget(0.05)
            .eligible(AnyRequest)
            .build()
            .expect("valid config");
        let ours = tower::Layer::layer(&layer, upstream(calls.clone()));
        let row = measure(ours, &calls, n).await;
        eprintln!(
            "  (p{p}: learned delay {:?}, {:?})",
            layer.learned_delay(),
            layer.stats()
        );
        rows.push((
            format!("tower-patterns `HedgeLayer`, p{p}, budget 5 %"),
            row,
        ));
    }

    for q in [0.80_f32, 0.90, 0.95, 0.98] {
        let calls = Arc::new(AtomicU64::new(0));
        let towers =
            tower::hedge::Hedge::new::<u64>(upstream(calls.clone()), Every, 100, q, TOWER_PERIOD);
        let row = measure(towers, &calls, n).await;
        rows.push((format!("tower `hedge::Hedge`, p{}", q * 100.0), row));
    }
    rows
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs = arg("--runs", 3).max(1);
    let n = arg("--calls", 40_000).max(1_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut all: Vec<Vec<(String, Row)>> = Vec::new();
    for r in 1..=runs {
        let rows = rt.block_on(run(n));
        eprintln!("run {r}/{runs}:");
        for (name, row) in &rows {
            eprintln!("  {name:<44} {row:?}");
        }
        all.push(rows);
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "| variant | p50 (ms) | p99 (ms) | p99.9 (ms) | extra load |\n|---|---|---|---|---|"
    );
    let cell = |vals: Vec<f64>, scale: f64, pct: bool| {
        let (lo, hi) = vals
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let m = median(vals);
        if pct {
            format!("{:.1} % ({:.1}-{:.1})", m * 100.0, lo * 100.0, hi * 100.0)
        } else {
            format!("{:.1} ({:.1}-{:.1})", m / scale, lo / scale, hi / scale)
        }
    };
    for (i, (name, _)) in all[0].iter().enumerate() {
        let col = |f: fn(&Row) -> f64| all.iter().map(|rows| f(&rows[i].1)).collect::<Vec<_>>();
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {} | {} |",
            cell(col(|r| r.p50_us as f64), 1000.0, false),
            cell(col(|r| r.p99_us as f64), 1000.0, false),
            cell(col(|r| r.p999_us as f64), 1000.0, false),
            cell(col(|r| r.extra_load), 1.0, true),
        );
    }
    println!("\n{runs} runs of {n} calls per variant (median, min-max):\n\n{table}");

    let mut json = String::from("{\"bench\": \"hedge_tail\", ");
    let _ = write!(
        json,
        "\"settings\": {{\"calls\": {n}, \"runs\": {runs}, \"concurrency\": {CONCURRENCY}, \"warm_up\": {WARM_UP}, \"slow_rate\": {SLOW_RATE}, \"slow_ms\": {}, \"fast_ms\": {}}}, \"rows\": {{",
        SLOW.as_millis(),
        FAST.as_millis()
    );
    for (i, (name, _)) in all[0].iter().enumerate() {
        let list = |f: fn(&Row) -> String| {
            all.iter()
                .map(|rows| f(&rows[i].1))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = write!(
            json,
            "{}\n  \"{}\": {{\"p50_us\": [{}], \"p99_us\": [{}], \"p999_us\": [{}], \"extra_load\": [{}]}}",
            if i == 0 { "" } else { "," },
            name.replace('`', ""),
            list(|r| r.p50_us.to_string()),
            list(|r| r.p99_us.to_string()),
            list(|r| r.p999_us.to_string()),
            list(|r| format!("{:.4}", r.extra_load)),
        );
    }
    json.push_str("\n}}\n");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/results/hedge_tail.json"
    );
    match std::fs::write(path, json) {
        Ok(()) => eprintln!("wrote {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}
