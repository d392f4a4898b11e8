//! The durable queue on PostgreSQL beside apalis (issue 16): our `PgQueue`
//! and apalis 0.7's `PostgresStorage` (apalis-sql), on the same server, in
//! the same process and run.
//!
//! - `queue_apalis/submit_to_completion/*`: 200 no-op `u64` tasks
//!   submitted 8 at a time, each by its own insert, and run until every
//!   result is stored, with 1 and 4 workers; throughput is tasks/s. Ours
//!   with `prefetch` 0 (the default), equal to the workers, and as many as
//!   apalis's buffer holds beyond its running tasks (10 claimed in all).
//! - `queue_apalis/submit_to_start`: printed p50 / p99 / max from submit to
//!   the task starting on an idle queue (20-42 ms idle before each sample),
//!   200 samples per side, the sides taking turns.
//! - `queue_apalis/drain_backlog`: printed, once per side: 200 tasks
//!   submitted while no worker runs, then one worker started and timed
//!   until all 200 are stored. No submit notifies anyone meanwhile.
//!
//! Each side on its own fresh storage: ours on a new table per
//! configuration (`migrate`), apalis on a new `apalis` schema (its
//! migrations, `PostgresStorage::setup`). Pools: `workers + 8` connections
//! on both sides.
//!
//! What each side does per task:
//!
//! - **Ours** (defaults but `retain_results(0)`, so `cleanup` empties the
//!   table between batches): the submit inserts the row and `NOTIFY`s in
//!   one statement; a worker asleep on `LISTEN` claims as many tasks as it
//!   has free slots (`FOR UPDATE SKIP LOCKED`, writing its worker id,
//!   attempt and lease end), runs the task, and stores the result with one
//!   `UPDATE` guarded by worker id and attempt, which also `NOTIFY`s
//!   `result()` waiters. Completed = that update is done
//!   (`PgQueueStats::completed`).
//! - **apalis** (the documented defaults: `Config` with 100 ms poll,
//!   buffer 10, keep-alive 30 s; one worker with `.concurrency(workers)`,
//!   apalis 0.6+'s replacement of several workers; `PgListen` wired so
//!   `NOTIFY` wakes it): the submit is an insert whose statement trigger
//!   `NOTIFY`s; the worker's poller, woken by the notification or its
//!   100 ms interval, claims up to 10 tasks with `apalis.get_jobs` (`FOR
//!   UPDATE SKIP LOCKED`, writing worker id and lock time) and queues them
//!   for the service; the service runs the task; its ack is batched with
//!   others ready at that moment into one `UPDATE` that stores status,
//!   result and attempts. Completed = the row is `Done`: the handler counts
//!   runs, and once it has run all 200 the bench polls
//!   `count(*) WHERE status = 'Done'` every 200 µs until all acks landed.
//!   No lease: orphans are found by the worker's keep-alive row.
//!
//! apalis 0.7.4's `PgListen` wakes the storages whose namespace equals the
//! notification's payload, and its trigger always sends the payload
//! `insert`: the listening storage is named `insert` here so that its
//! `LISTEN` path works at all (any other name leaves it to the 100 ms
//! poll). The submit-to-start loop also shows apalis without a listener,
//! as its docs' example runs it (poll only); its throughput there is
//! bounded by 10 tasks per 100 ms poll and is not benchmarked.
//!
//! A package of its own (sqlx is heavy; CI does not build it): needs a
//! PostgreSQL, `eval "$(bash .ci/postgres.sh | tail -1)"; export
//! TOWER_PATTERNS_PG_URL`, then from the main crate's root
//! `scripts/bench.py --bench queue_apalis` or
//! `cargo bench --manifest-path benches/peers/apalis_postgres/Cargo.toml`.
//! Without TOWER_PATTERNS_PG_URL it says so and measures nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::*;
use apalis_sql::postgres::{PgListen, PgPool, PostgresStorage};
use apalis_sql::sqlx::postgres::PgPoolOptions;
use apalis_sql::Config;
use criterion::Throughput;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tower_patterns::queue::Shutdown;

#[path = "../../../support/pg_queue.rs"]
mod pg_queue;

use pg_queue::{Side, BATCH};

/// apalis's default `buffer_size`: tasks one worker claims at a time.
const APALIS_BUFFER: usize = 10;

/// The namespace apalis 0.7.4's `PgListen` wakes (see the module docs).
const LISTENING: &str = "insert";

/// What the apalis handler reports: tasks run, and start instants.
#[derive(Clone)]
struct Probe {
    ran: Arc<AtomicU64>,
    started: Option<mpsc::UnboundedSender<Instant>>,
}

async fn task(n: u64, probe: Data<Probe>) -> Result<u64, Error> {
    if let Some(tx) = &probe.started {
        let _ = tx.send(Instant::now());
    }
    probe.ran.fetch_add(1, Ordering::Relaxed);
    Ok(n * 2)
}

/// An apalis worker on `PostgresStorage`, run by a `Monitor`.
struct Apalis {
    storage: PostgresStorage<u64>,
    pool: PgPool,
    ran: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    monitor: JoinHandle<()>,
    listener: Option<JoinHandle<()>>,
}

impl Apalis {
    /// A fresh `apalis` schema on `url` (every table and function dropped,
    /// then apalis's migrations).
    async fn fresh_schema(url: &str) {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap();
        for sql in [
            "DROP SCHEMA IF EXISTS apalis CASCADE",
            "DROP TABLE IF EXISTS _sqlx_migrations",
        ] {
            apalis_sql::sqlx::query(sql).execute(&pool).await.unwrap();
        }
        PostgresStorage::setup(&pool).await.unwrap();
        pool.close().await;
    }

    /// One worker with `concurrency`, on namespace `namespace`, woken by
    /// `PgListen` if `listen`.
    async fn start(
        url: &str,
        namespace: &str,
        concurrency: usize,
        listen: bool,
        started: Option<mpsc::UnboundedSender<Instant>>,
    ) -> Apalis {
        let pool = PgPoolOptions::new()
            .max_connections(concurrency as u32 + 8)
            .connect(url)
            .await
            .unwrap();
        let mut storage: PostgresStorage<u64> =
            PostgresStorage::new_with_config(pool.clone(), Config::new(namespace));
        let listener = if listen {
            let mut l = PgListen::new(pool.clone()).await.unwrap();
            l.subscribe_with(&mut storage);
            Some(tokio::spawn(async move {
                let _ = l.listen().await;
            }))
        } else {
            None
        };
        let ran = Arc::new(AtomicU64::new(0));
        let worker = WorkerBuilder::new(format!("bench-{namespace}-{concurrency}"))
            .concurrency(concurrency)
            .data(Probe {
                ran: ran.clone(),
                started,
            })
            .backend(storage.clone())
            .build_fn(task);
        let (stop, stopped) = oneshot::channel();
        let monitor = tokio::spawn(async move {
            Monitor::new()
                .register(worker)
                .run_with_signal(async {
                    let _ = stopped.await;
                    Ok(())
                })
                .await
                .unwrap();
        });
        Apalis {
            storage,
            pool,
            ran,
            stop,
            monitor,
            listener,
        }
    }

    async fn submit(&self, n: u64) {
        self.storage.clone().push(n).await.unwrap();
    }

    /// Tasks run since the last reset until all have run, then the rows
    /// whose ack has landed (`Done`).
    async fn done(&self) -> u64 {
        let ran = self.ran.load(Ordering::Relaxed);
        if ran < BATCH {
            return ran;
        }
        let row: (i64,) = apalis_sql::sqlx::query_as(
            "SELECT count(*) FROM apalis.jobs WHERE status = 'Done' AND job_type = $1",
        )
        .bind(self.storage.config().namespace())
        .fetch_one(&self.pool)
        .await
        .unwrap();
        row.0 as u64
    }

    async fn reset(&self) {
        apalis_sql::sqlx::query("DELETE FROM apalis.jobs WHERE job_type = $1")
            .bind(self.storage.config().namespace())
            .execute(&self.pool)
            .await
            .unwrap();
        self.ran.store(0, Ordering::Relaxed);
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.monitor).await;
        if let Some(l) = self.listener {
            l.abort();
        }
        self.pool.close().await;
    }
}

fn main() {
    let Some(url) = pg_queue::pg_url("queue_apalis") else {
        return;
    };
    let rt = pg_queue::runtime();
    let pid = std::process::id();
    let mut c = pg_queue::criterion();
    let mut group = c.benchmark_group("queue_apalis/submit_to_completion");
    group.throughput(Throughput::Elements(BATCH));
    for workers in [1usize, 4] {
        let theirs = rt.block_on(async {
            Apalis::fresh_schema(&url).await;
            Apalis::start(&url, LISTENING, workers, true, None).await
        });
        let apalis = &theirs;
        pg_queue::bench_batches(
            &mut group,
            &rt,
            format!("apalis PostgresStorage/workers={workers}"),
            || apalis.reset(),
            |n| apalis.submit(n),
            || apalis.done(),
        );
        rt.block_on(theirs.stop());
        // 0 (our default), one per worker, and apalis's buffer: 10 tasks
        // claimed per worker, `workers` of them running.
        for prefetch in [0, workers, APALIS_BUFFER - workers] {
            pg_queue::bench_ours(
                &mut group,
                &rt,
                &url,
                &format!("bench_apalis_pgq_{workers}_{prefetch}_{pid}"),
                workers,
                prefetch,
            );
        }
    }
    group.finish();

    if pg_queue::listing_only() {
        return;
    }
    rt.block_on(async {
        Apalis::fresh_schema(&url).await;
        let (tx, listening_rx) = mpsc::unbounded_channel();
        let listening = Apalis::start(&url, LISTENING, 1, true, Some(tx)).await;
        let (tx, polling_rx) = mpsc::unbounded_channel();
        let polling = Apalis::start(&url, "bench-poll", 1, false, Some(tx)).await;
        let (tx, qrx) = mpsc::unbounded_channel();
        let q = pg_queue::ours(&url, &format!("bench_apalis_pgq_lat_{pid}"), 1, 0, Some(tx)).await;
        {
            let (listening, polling, q) = (&listening, &polling, &q);
            pg_queue::submit_to_start(
                "queue_apalis",
                &mut [
                    Side::new("tower-patterns PgQueue", qrx, |n| async move {
                        q.submit(n).await.unwrap();
                    }),
                    Side::new("apalis PostgresStorage (PgListen)", listening_rx, |n| {
                        listening.submit(n)
                    }),
                    Side::new(
                        "apalis PostgresStorage (poll only, 100 ms)",
                        polling_rx,
                        |n| polling.submit(n),
                    ),
                ],
            )
            .await;
        }
        q.shutdown(Shutdown::Graceful(Duration::from_secs(5))).await;
        listening.stop().await;
        polling.stop().await;
    });
    rt.block_on(async {
        let t = drain_backlog_apalis(&url).await;
        let q = pg_queue::ours_stopped(&url, &format!("bench_apalis_pgq_drain_{pid}"), 1, 0).await;
        for n in 0..BATCH {
            q.submit(n).await.unwrap();
        }
        let start = Instant::now();
        pg_queue::start_ours(&q, None).await;
        while q.stats().completed < BATCH {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let ours = start.elapsed();
        q.shutdown(Shutdown::Graceful(Duration::from_secs(5))).await;
        for (name, d) in [
            ("tower-patterns PgQueue/workers=1 prefetch=0", ours),
            ("apalis PostgresStorage/workers=1", t),
        ] {
            println!(
                "queue_apalis/drain_backlog/{name}: {BATCH} tasks in {d:?} ({:.0} tasks/s)",
                BATCH as f64 / d.as_secs_f64()
            );
        }
    });
    c.final_summary();
}

/// [`BATCH`] tasks pushed while no apalis worker runs, then the time from
/// starting one until all are `Done`.
async fn drain_backlog_apalis(url: &str) -> Duration {
    Apalis::fresh_schema(url).await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let mut storage: PostgresStorage<u64> =
        PostgresStorage::new_with_config(pool.clone(), Config::new(LISTENING));
    for n in 0..BATCH {
        storage.push(n).await.unwrap();
    }
    let start = Instant::now();
    let apalis = Apalis::start(url, LISTENING, 1, true, None).await;
    while apalis.done().await < BATCH {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let took = start.elapsed();
    apalis.stop().await;
    pool.close().await;
    took
}
