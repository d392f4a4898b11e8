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
//! apalis's PostgreSQL backend is measured beside ours in a package of its
//! own, benches/peers/apalis_postgres/ (sqlx is heavy; CI does not build
//! it): `scripts/bench.py --bench queue_apalis`. Both benches share the
//! batch and submit-to-start loops of benches/support/pg_queue.rs.
//!
//! Needs a PostgreSQL: `eval "$(bash .ci/postgres.sh | tail -1)"`, then
//! `cargo bench --all-features --bench queue_postgres`. Without
//! TOWER_PATTERNS_PG_URL it says so and measures nothing.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Throughput;
use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tower_patterns::queue::Shutdown;

#[path = "support/pg_queue.rs"]
mod pg_queue;

use pg_queue::{Side, BATCH};

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

// ---- the run ---------------------------------------------------------------

fn main() {
    let Some(url) = pg_queue::pg_url("queue_postgres") else {
        return;
    };
    let rt = pg_queue::runtime();
    let pid = std::process::id();
    let mut c = pg_queue::criterion();
    let mut group = c.benchmark_group("queue_postgres/submit_to_completion");
    group.throughput(Throughput::Elements(BATCH));
    for workers in [1usize, 4] {
        let plain = rt.block_on(async {
            let p = Plain::new(&url, &format!("bench_plain_{workers}_{pid}"), None).await;
            p.spawn_workers(workers).await;
            p
        });
        let plain = &plain;
        pg_queue::bench_batches(
            &mut group,
            &rt,
            format!("plain SKIP LOCKED loop/workers={workers}"),
            || async move {
                plain
                    .submitter
                    .batch_execute(&format!("DELETE FROM {}", plain.table))
                    .await
                    .unwrap();
            },
            |n| plain.submit(n),
            || async move { plain.completed.load(Ordering::Relaxed) },
        );
        for prefetch in [0, workers] {
            pg_queue::bench_ours(
                &mut group,
                &rt,
                &url,
                &format!("bench_pgq_{workers}_{prefetch}_{pid}"),
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
        let (tx, rx) = mpsc::unbounded_channel();
        let plain = Plain::new(&url, &format!("bench_plain_lat_{pid}"), Some(tx)).await;
        plain.spawn_workers(1).await;
        let (tx, qrx) = mpsc::unbounded_channel();
        let q = pg_queue::ours(&url, &format!("bench_pgq_lat_{pid}"), 1, 0, Some(tx)).await;
        let (plain, q) = (&plain, &q);
        pg_queue::submit_to_start(
            "queue_postgres",
            &mut [
                Side::new("plain SKIP LOCKED loop", rx, |n| plain.submit(n)),
                Side::new("tower-patterns PgQueue", qrx, |n| async move {
                    q.submit(n).await.unwrap();
                }),
            ],
        )
        .await;
        q.shutdown(Shutdown::Graceful(Duration::from_secs(5))).await;
        let _ = plain
            .submitter
            .batch_execute(&format!("DROP TABLE {}", plain.table))
            .await;
    });
    c.final_summary();
}
