//! The resource pool: database connections shared by many tasks, made,
//! checked, recycled and replaced for you.
//!
//! ```sh
//! cargo run --example pool                                   # in-memory "database"
//! cargo run --example pool --features postgres -- postgresql://user:pass@127.0.0.1:5432/db
//! ```
//!
//! With no argument it pools simulated connections (20 ms to connect, a
//! few go bad) and shows min-size filling, 100 concurrent acquirers over 5
//! connections, cancellation, a timeout, broken connections being replaced
//! and a clean close. Given a PostgreSQL URL (and the `postgres` feature),
//! it runs a real transaction: insert a user and bump a counter in one
//! transaction, then read both back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_patterns::pool::{Manager, Pool, PoolError};

/// A pretend database connection.
struct FakeConn {
    id: usize,
    queries: usize,
}

impl FakeConn {
    async fn query(&mut self, _sql: &str) -> usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.queries += 1;
        self.queries
    }
}

#[derive(Debug)]
struct FakeDbError(String);

impl std::fmt::Display for FakeDbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FakeDbError {}

/// Connects in 20 ms; every connection dies after 8 queries, which its
/// next recycle check notices.
#[derive(Default)]
struct FakeDb {
    next_id: AtomicUsize,
}

impl Manager for FakeDb {
    type Resource = FakeConn;
    type Error = FakeDbError;

    async fn create(&self) -> Result<FakeConn, FakeDbError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(FakeConn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            queries: 0,
        })
    }

    async fn recycle(&self, conn: &mut FakeConn) -> Result<(), FakeDbError> {
        if conn.queries >= 8 {
            return Err(FakeDbError(format!(
                "connection {} was reset by the server",
                conn.id
            )));
        }
        Ok(())
    }
}

async fn in_memory() -> Result<(), tower::BoxError> {
    let pool = Pool::builder()
        .min_size(3)
        .max_size(5)
        .acquire_timeout(Duration::from_secs(2))
        .max_lifetime(Some(Duration::from_secs(1800)))
        .idle_timeout(Some(Duration::from_secs(600)))
        .build(FakeDb::default())?;
    println!("built: {:?}", pool.stats());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = pool.stats();
    println!(
        "min_size filled in the background: size {} idle {}",
        s.size, s.idle
    );

    // 100 concurrent "requests" over at most 5 connections.
    let peak = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (pool, peak, out) = (pool.clone(), peak.clone(), out.clone());
            tokio::spawn(async move {
                let mut conn = pool.acquire().await?;
                peak.fetch_max(out.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                conn.query("SELECT 1").await;
                out.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, PoolError<FakeDbError>>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let s = pool.stats();
    println!(
        "100 requests: at most {} connections out at once (max_size 5); created {}, recycled {}, \
         replaced after a failed check {}",
        peak.load(Ordering::SeqCst),
        s.created,
        s.recycled,
        s.closed_by_reason.recycle_failed
    );

    // Cancel acquires half-way (while waiting or while connecting).
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.acquire())).await;
    for _ in 0..50 {
        let _ = tokio::time::timeout(Duration::from_millis(1), pool.acquire()).await;
    }
    drop(held);
    let s = pool.stats();
    println!(
        "50 cancelled acquires later: size {} idle {} in_use {} waiting {} (nothing leaked)",
        s.size, s.idle, s.in_use, s.waiting
    );

    // Exhaust the pool: the next acquire times out with a clear message.
    let held: Vec<_> = futures::future::join_all((0..5).map(|_| pool.acquire())).await;
    match pool.acquire().await {
        Err(err) => println!("pool exhausted: {err}"),
        Ok(_) => println!("unexpected: got a sixth connection"),
    }

    // Acquisition is a tower Service: stack a shorter timeout on it.
    let mut acquire = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(pool.clone());
    match acquire.ready().await?.call(()).await {
        Err(err) => println!("through tower's TimeoutLayer: {err}"),
        Ok(_) => println!("unexpected: got a sixth connection"),
    }
    drop(held);

    // Close: waits for checked-out connections, closes the idle ones.
    let conn = pool.acquire().await?;
    let closing = tokio::spawn({
        let pool = pool.clone();
        async move { pool.close().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    println!(
        "close() waiting for 1 checked-out connection: finished = {}",
        closing.is_finished()
    );
    drop(conn);
    closing.await?;
    println!("closed: {:?}", pool.stats());
    Ok(())
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<(), tower::BoxError> {
    use tower_patterns::pool::postgres::PgManager;

    let pool = Pool::builder()
        .min_size(2)
        .max_size(10)
        .acquire_timeout(Duration::from_secs(5))
        .build(PgManager::from_url(url)?)?;
    let conn = pool.acquire().await?;
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS example_users (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);
         CREATE TABLE IF NOT EXISTS example_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
         INSERT INTO example_counters VALUES ('signups', 0) ON CONFLICT DO NOTHING;",
    )
    .await?;
    drop(conn);

    // One transaction, two writes.
    let mut conn = pool.acquire().await?;
    let tx = conn.transaction().await?;
    let id: i64 = tx
        .query_one(
            "INSERT INTO example_users (name) VALUES ($1) RETURNING id",
            &[&"ada"],
        )
        .await?
        .get(0);
    tx.execute(
        "UPDATE example_counters SET value = value + 1 WHERE name = 'signups'",
        &[],
    )
    .await?;
    tx.commit().await?;
    drop(conn);

    let conn = pool.acquire().await?;
    let name: String = conn
        .query_one("SELECT name FROM example_users WHERE id = $1", &[&id])
        .await?
        .get(0);
    let signups: i64 = conn
        .query_one(
            "SELECT value FROM example_counters WHERE name = 'signups'",
            &[],
        )
        .await?
        .get(0);
    println!("user {id} = {name:?}; signups counter = {signups}");
    drop(conn);
    println!("stats: {:?}", pool.stats());
    pool.close().await;
    Ok(())
}

/// The resource pool: simulated connections, or PostgreSQL when given a
/// URL.
#[derive(Parser)]
struct Args {
    /// A PostgreSQL URL to run the transaction scenario against (needs the
    /// `postgres` feature); without it, an in-memory "database".
    url: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    match Args::parse().url {
        None => in_memory().await,
        #[cfg(feature = "postgres")]
        Some(url) => postgres(&url).await,
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            eprintln!("PostgreSQL needs the `postgres` feature: cargo run --example pool --features postgres -- <url>");
            std::process::exit(2);
        }
    }
}
