//! The durable-queue benches' shared parts: our `PgQueue` set up for a
//! bench, the batch that every side runs to completion, and the idle
//! submit-to-start loop. Included with `#[path]` by benches/queue_postgres.rs
//! (beside a plain SKIP LOCKED loop) and by the apalis peer's package,
//! benches/peers/apalis_postgres/ (beside apalis's `PostgresStorage`), so
//! every side is measured the same way.

use std::future::Future;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tower::{service_fn, BoxError};
use tower_patterns::pool::postgres::PgManager;
use tower_patterns::pool::Pool;
use tower_patterns::queue::backend::postgres::PgQueue;

/// Tasks per batch (one criterion iteration).
pub const BATCH: u64 = 200;
/// Submits in flight at once while a batch is submitted, on every side.
pub const SUBMIT_CONCURRENCY: usize = 8;
/// Samples of the idle submit-to-start loop, per side.
pub const LATENCY_SAMPLES: usize = 200;
/// The idle time before each submit-to-start sample, at least: every
/// side's workers are asleep (on `LISTEN`, or between polls) when the task
/// arrives. Sample `n` waits `IDLE + (n * 7 % 23)` ms, so that a side that
/// polls is not sampled in step with its poll interval.
pub const IDLE: Duration = Duration::from_millis(20);

/// TOWER_PATTERNS_PG_URL, or `None` after saying why `bench` measures
/// nothing.
pub fn pg_url(bench: &str) -> Option<String> {
    let url = std::env::var("TOWER_PATTERNS_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!(
            "{bench}: skipped, TOWER_PATTERNS_PG_URL is not set \
             (start PostgreSQL with `eval \"$(bash .ci/postgres.sh | tail -1)\"`)"
        );
    }
    url
}

/// The runtime every side runs on: 2 worker threads.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Criterion with 10 samples (an iteration is a whole batch).
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args()
}

/// Whether criterion was asked only to list or smoke-test the benchmarks
/// (then the submit-to-start loop is skipped).
pub fn listing_only() -> bool {
    std::env::args().any(|a| a == "--list" || a == "--test")
}

/// Ours, started on a fresh `table` with `workers` and `prefetch`: a
/// no-op `n -> n * 2` task that sends its start instant to `started` if
/// given. Results are kept for zero time, so `cleanup` empties the table
/// between batches.
pub async fn ours(
    url: &str,
    table: &str,
    workers: usize,
    prefetch: usize,
    started: Option<mpsc::UnboundedSender<Instant>>,
) -> PgQueue<u64, u64> {
    let q = ours_stopped(url, table, workers, prefetch).await;
    start_ours(&q, started).await;
    q
}

/// [`ours`], not started yet.
pub async fn ours_stopped(
    url: &str,
    table: &str,
    workers: usize,
    prefetch: usize,
) -> PgQueue<u64, u64> {
    let pool = Pool::builder()
        .max_size(workers + 8)
        .build(PgManager::from_url(url).unwrap())
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    conn.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {table}_schema"
    ))
    .await
    .unwrap();
    drop(conn);
    let q: PgQueue<u64, u64> = PgQueue::builder()
        .table(table)
        .workers(workers)
        .prefetch(prefetch)
        .retain_results(Duration::ZERO)
        .build(pool)
        .unwrap();
    q.migrate().await.unwrap();
    q
}

/// Starts `q`'s workers on the no-op task of [`ours`].
pub async fn start_ours(q: &PgQueue<u64, u64>, started: Option<mpsc::UnboundedSender<Instant>>) {
    q.start(service_fn(move |n: u64| {
        if let Some(tx) = &started {
            let _ = tx.send(Instant::now());
        }
        async move { Ok::<_, BoxError>(n * 2) }
    }))
    .await
    .unwrap();
}

/// One criterion benchmark of `group`: per iteration, `reset` (not timed),
/// then [`BATCH`] tasks submitted [`SUBMIT_CONCURRENCY`] at a time and the
/// wait until `done` (a count of completed tasks that only grows between
/// resets) has grown by [`BATCH`], checked every 200 µs.
pub fn bench_batches<R, RF, S, SF, D, DF>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: String,
    reset: R,
    submit: S,
    done: D,
) where
    R: Fn() -> RF,
    RF: Future<Output = ()>,
    S: Fn(u64) -> SF,
    SF: Future<Output = ()>,
    D: Fn() -> DF,
    DF: Future<Output = u64>,
{
    let (reset, submit, done) = (&reset, &submit, &done);
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                reset().await;
                let target = done().await + BATCH;
                let start = Instant::now();
                futures::stream::iter(0..BATCH)
                    .for_each_concurrent(SUBMIT_CONCURRENCY, submit)
                    .await;
                while done().await < target {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                total += start.elapsed();
            }
            total
        })
    });
}

/// Our side's batch benchmark: a fresh `PgQueue` in table `table` with
/// `workers` and `prefetch`, measured by [`bench_batches`] under the id
/// `tower-patterns PgQueue/workers=W prefetch=P`, then shut down.
pub fn bench_ours(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    url: &str,
    table: &str,
    workers: usize,
    prefetch: usize,
) {
    let q = rt.block_on(ours(url, table, workers, prefetch, None));
    let q = &q;
    bench_batches(
        group,
        rt,
        format!("tower-patterns PgQueue/workers={workers} prefetch={prefetch}"),
        || async move {
            q.cleanup().await.unwrap();
        },
        |n| async move {
            q.submit(n).await.unwrap();
        },
        || async move { q.stats().completed },
    );
    rt.block_on(q.shutdown(tower_patterns::queue::Shutdown::Graceful(
        Duration::from_secs(5),
    )));
}

/// One side of the submit-to-start loop: how to submit task `n`, and the
/// start instants its worker sends.
pub struct Side<'a> {
    pub name: &'a str,
    pub submit: Box<dyn Fn(u64) -> BoxFuture<'a, ()> + 'a>,
    pub started: mpsc::UnboundedReceiver<Instant>,
}

impl<'a> Side<'a> {
    pub fn new<F, Fut>(name: &'a str, started: mpsc::UnboundedReceiver<Instant>, submit: F) -> Self
    where
        F: Fn(u64) -> Fut + 'a,
        Fut: Future<Output = ()> + Send + 'a,
    {
        Side {
            name,
            submit: Box::new(move |n| Box::pin(submit(n))),
            started,
        }
    }
}

/// Submit to start on an idle queue, the sides taking turns: before each
/// sample at least [`IDLE`] passes, then one task is submitted and the time until
/// its worker starts it recorded. Prints p50 and p99 per side as
/// `{bench}/submit_to_start/{name}`. Each side first runs one task
/// untimed, so that no side's first sample pays for preparing statements.
pub async fn submit_to_start(bench: &str, sides: &mut [Side<'_>]) {
    for side in sides.iter_mut() {
        (side.submit)(u64::MAX / 4).await;
        side.started.recv().await.unwrap();
    }
    let mut samples = vec![Vec::with_capacity(LATENCY_SAMPLES); sides.len()];
    for n in 0..LATENCY_SAMPLES as u64 {
        for (side, out) in sides.iter_mut().zip(&mut samples) {
            tokio::time::sleep(IDLE + Duration::from_millis(n * 7 % 23)).await;
            let t0 = Instant::now();
            (side.submit)(n).await;
            out.push(side.started.recv().await.unwrap() - t0);
        }
    }
    for (side, v) in sides.iter().zip(&mut samples) {
        v.sort();
        println!(
            "{bench}/submit_to_start/{}: p50 {:?} p99 {:?} max {:?} ({LATENCY_SAMPLES} samples)",
            side.name,
            percentile(v, 0.5),
            percentile(v, 0.99),
            v[v.len() - 1],
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}
