//! The durable queue on PostgreSQL, end to end: `PgQueue` beside a plain
//! `FOR UPDATE SKIP LOCKED` loop written here (the floor: one claim per
//! round trip, no leases, no heartbeats, no attempts, no retries), on the
//! same server, in the same run.
//!
//! - `queue_postgres/submit_to_completion/*`: 200 no-op tasks submitted (8
//!   at a time) and run to completion with 1 and 4 workers (ours with and
//!   without `prefetch`); throughput is tasks/s. Completion is seen in-process for both (the workers' own
//!   counters), so neither pays for reading results back.
//! - `queue_postgres/submit_to_start`: printed p50 / p99 from submit to the
//!   task starting on an idle queue (workers asleep on `LISTEN`), 200
//!   samples each.
//!
//! apalis's PostgreSQL backend is not measured: it needs sqlx, too heavy to
//! build on the CI machine.
//!
//! Needs a PostgreSQL: `eval "$(bash .ci/postgres.sh | tail -1)"`, then
//! `cargo bench --all-features --bench queue_postgres`. Without
//! TOWER_PATTERNS_PG_URL it says so and measures nothing.

use std::future::poll_fn;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tower::{service_fn, BoxError};
use tower_patterns::pool::postgres::PgManager;
use tower_patterns::pool::Pool;
use tower_patterns::queue::backend::postgres::PgQueue;
use tower_patterns::queue::Shutdown;

const BATCH: u64 = 200;

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// A `LISTEN` connection that wakes `notify` on every notification.
async fn listen(url: &str, channel: &str, notify: Arc<Notify>) -> Client {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = poll_fn(|cx| conn.poll_message(cx)).await {
            if let Ok(AsyncMessage::Notification(_)) = m {
                notify.notify_waiters();
                notify.notify_one();
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    client
}

// ---- the peer: a plain SKIP LOCKED loop ------------------------------------

struct Plain {
    url: String,
    table: String,
    submitter: Client,
    insert: tokio_postgres::Statement,
    completed: Arc<AtomicU64>,
    /// The start instants of tasks, for the latency run.
    started: Option<mpsc::UnboundedSender<Instant>>,
    _listener: Client,
    notify: Arc<Notify>,
}

impl Plain {
    async fn new(url: &str, table: &str, started: Option<mpsc::UnboundedSender<Instant>>) -> Plain {
        let submitter = connect(url).await;
        submitter
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'pending',
                     payload jsonb NOT NULL, result jsonb);
                 CREATE INDEX ON {table} (id) WHERE status = 'pending';"
            ))
            .await
            .unwrap();
        let notify = Arc::new(Notify::new());
        let insert = submitter
            .prepare(&format!(
                "WITH i AS (INSERT INTO {table} (payload) VALUES ($1::text::jsonb) RETURNING id)
                 SELECT id, pg_notify('{table}_new', '')::text FROM i"
            ))
            .await
            .unwrap();
        Plain {
            insert,
            url: url.to_owned(),
            table: table.to_owned(),
            submitter,
            completed: Arc::new(AtomicU64::new(0)),
            started,
            _listener: listen(url, &format!("{table}_new"), notify.clone()).await,
            notify,
        }
    }

    async fn spawn_workers(&self, n: usize) {
        for _ in 0..n {
            let client = connect(&self.url).await;
            let t = &self.table;
            let claim = client
                .prepare(&format!(
                    "UPDATE {t} SET status = 'running' WHERE id = (
                       SELECT id FROM {t} WHERE status = 'pending' ORDER BY id
                       FOR UPDATE SKIP LOCKED LIMIT 1)
                     RETURNING id, payload::text"
                ))
                .await
                .unwrap();
            let done = client
                .prepare(&format!(
                    "UPDATE {t} SET status = 'done', result = $2::text::jsonb WHERE id = $1"
                ))
                .await
                .unwrap();
            let (completed, notify, started) = (
                self.completed.clone(),
                self.notify.clone(),
                self.started.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let notified = notify.notified();
                    match client.query_opt(&claim, &[]).await {
                        Ok(Some(row)) => {
                            if let Some(tx) = &started {
                                let _ = tx.send(Instant::now());
                            }
                            let id: i64 = row.get(0);
                            let n: u64 = serde_json::from_str(row.get(1)).unwrap();
                            let out = serde_json::to_string(&(n * 2)).unwrap();
                            if client.execute(&done, &[&id, &out]).await.is_err() {
                                return;
                            }
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(None) => {
                            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                        }
                        Err(_) => return, // the bench is over
                    }
                }
            });
        }
    }

    async fn submit(&self, n: u64) {
        let json = serde_json::to_string(&n).unwrap();
        self.submitter
            .query_one(&self.insert, &[&json])
            .await
            .unwrap();
    }
}

// ---- ours ------------------------------------------------------------------

async fn ours(
    url: &str,
    table: &str,
    workers: usize,
    prefetch: usize,
    started: Option<mpsc::UnboundedSender<Instant>>,
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
        .retain_results(Duration::ZERO) // so cleanup empties the table between batches
        .build(pool)
        .unwrap();
    q.migrate().await.unwrap();
    q.start(service_fn(move |n: u64| {
        if let Some(tx) = &started {
            let _ = tx.send(Instant::now());
        }
        async move { Ok::<_, BoxError>(n * 2) }
    }))
    .await
    .unwrap();
    q
}

/// Waits until `done()` reaches `target` (checked every 200 µs).
async fn until(target: u64, done: impl Fn() -> u64) {
    while done() < target {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let Some(url) = std::env::var("TOWER_PATTERNS_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "queue_postgres: skipped, TOWER_PATTERNS_PG_URL is not set \
             (start PostgreSQL with `eval \"$(bash .ci/postgres.sh | tail -1)\"`)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pid = std::process::id();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    let mut group = c.benchmark_group("queue_postgres/submit_to_completion");
    group.throughput(Throughput::Elements(BATCH));
    for workers in [1usize, 4] {
        let plain = rt.block_on(async {
            let p = Plain::new(&url, &format!("bench_plain_{workers}_{pid}"), None).await;
            p.spawn_workers(workers).await;
            p
        });
        group.bench_function(format!("plain SKIP LOCKED loop/workers={workers}"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let plain = &plain;
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        plain
                            .submitter
                            .batch_execute(&format!("DELETE FROM {}", plain.table))
                            .await
                            .unwrap();
                        let target = plain.completed.load(Ordering::Relaxed) + BATCH;
                        let start = Instant::now();
                        futures::stream::iter(0..BATCH)
                            .for_each_concurrent(8, |n| plain.submit(n))
                            .await;
                        until(target, || plain.completed.load(Ordering::Relaxed)).await;
                        total += start.elapsed();
                    }
                    total
                }
            })
        });
        for prefetch in [0, workers] {
            let q = rt.block_on(ours(
                &url,
                &format!("bench_pgq_{workers}_{prefetch}_{pid}"),
                workers,
                prefetch,
                None,
            ));
            group.bench_function(
                format!("tower-patterns PgQueue/workers={workers} prefetch={prefetch}"),
                |b| {
                    b.to_async(&rt).iter_custom(|iters| {
                        let q = &q;
                        async move {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                black_box(q.cleanup().await.unwrap());
                                let target = q.stats().completed + BATCH;
                                let start = Instant::now();
                                futures::stream::iter(0..BATCH)
                                    .for_each_concurrent(8, |n| async move {
                                        q.submit(n).await.unwrap();
                                    })
                                    .await;
                                until(target, || q.stats().completed).await;
                                total += start.elapsed();
                            }
                            total
                        }
                    })
                },
            );
            rt.block_on(q.shutdown(Shutdown::Graceful(Duration::from_secs(5))));
        }
    }
    group.finish();

    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    // Submit to start on an idle queue: one task at a time, the worker
    // asleep on LISTEN before each.
    const SAMPLES: usize = 200;
    rt.block_on(async {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let plain = Plain::new(&url, &format!("bench_plain_lat_{pid}"), Some(tx)).await;
        plain.spawn_workers(1).await;
        let (tx, mut qrx) = mpsc::unbounded_channel();
        let q = ours(&url, &format!("bench_pgq_lat_{pid}"), 1, 0, Some(tx)).await;
        let (mut theirs, mut mine) = (Vec::new(), Vec::new());
        for i in 0..SAMPLES as u64 {
            tokio::time::sleep(Duration::from_millis(20)).await; // idle
            let t0 = Instant::now();
            plain.submit(i).await;
            theirs.push(rx.recv().await.unwrap() - t0);
            tokio::time::sleep(Duration::from_millis(20)).await; // idle
            let t0 = Instant::now();
            q.submit(i).await.unwrap();
            mine.push(qrx.recv().await.unwrap() - t0);
        }
        theirs.sort();
        mine.sort();
        for (name, v) in [
            ("plain SKIP LOCKED loop", &theirs),
            ("tower-patterns PgQueue", &mine),
        ] {
            println!(
                "queue_postgres/submit_to_start/{name}: p50 {:?} p99 {:?} ({SAMPLES} samples)",
                percentile(v, 0.5),
                percentile(v, 0.99)
            );
        }
        q.shutdown(Shutdown::Graceful(Duration::from_secs(5))).await;
        let _ = plain
            .submitter
            .batch_execute(&format!("DROP TABLE {}", plain.table))
            .await;
    });
    c.final_summary();
}
