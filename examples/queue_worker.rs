//! A durable task queue on PostgreSQL, shared by worker processes.
//!
//! Start some workers, each in its own terminal (or `&`), then submit:
//!
//! ```text
//! cargo run --features postgres --example queue_worker -- worker --url postgresql://...
//! cargo run --features postgres --example queue_worker -- worker --url postgresql://...
//! cargo run --features postgres --example queue_worker -- submit --url postgresql://... --count 100 --wait
//! ```
//!
//! Each worker prints the tasks it runs; `submit --wait` prints how the work
//! was shared. Kill a worker with `kill -9` mid-run: its tasks are run by
//! the others once their lease runs out. `smoke` runs two workers and a
//! submitter in one process and checks the outcome (CI runs it).
//! The URL defaults to `$TOWER_PATTERNS_PG_URL` (`.ci/postgres.sh` prints one).

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};
use tower::{service_fn, BoxError};
use tower_patterns::pool::postgres::PgManager;
use tower_patterns::pool::Pool;
use tower_patterns::queue::backend::postgres::PgQueue;
use tower_patterns::queue::Shutdown;

/// A task: square `n`, taking `ms` milliseconds.
#[derive(Serialize, Deserialize)]
struct Job {
    n: u64,
    ms: u64,
}

/// What a worker stores: the answer and who computed it.
#[derive(Serialize, Deserialize)]
struct Done {
    square: u64,
    by: String,
}

/// Worker and submitter for a task queue kept in PostgreSQL.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run workers until Ctrl-C (then shut down gracefully).
    Worker {
        #[command(flatten)]
        db: Db,
        /// Tasks run at once by this process.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Submit tasks, and with --wait, wait for every result.
    Submit {
        #[command(flatten)]
        db: Db,
        /// How many tasks.
        #[arg(long, default_value_t = 20)]
        count: u64,
        /// How long each task takes, in milliseconds.
        #[arg(long, default_value_t = 50)]
        ms: u64,
        /// Wait for the results and print which worker ran how many.
        #[arg(long)]
        wait: bool,
    },
    /// Two workers and a submitter in this process; exits non-zero unless
    /// every task completes.
    Smoke {
        #[command(flatten)]
        db: Db,
    },
}

#[derive(Args)]
struct Db {
    /// PostgreSQL URL (default: $TOWER_PATTERNS_PG_URL).
    #[arg(long)]
    url: Option<String>,
    /// The queue's table.
    #[arg(long, default_value = "queue_worker_example")]
    table: String,
}

fn url(db: &Db) -> Result<String, BoxError> {
    match &db.url {
        Some(url) => Ok(url.clone()),
        None => Ok(std::env::var("TOWER_PATTERNS_PG_URL")
            .map_err(|_| "give --url or set TOWER_PATTERNS_PG_URL")?),
    }
}

/// Removes the smoke run's tables.
async fn drop_tables(db: &Db) -> Result<(), BoxError> {
    let pool = Pool::builder().build(PgManager::from_url(&url(db)?)?)?;
    let t = &db.table;
    pool.acquire()
        .await?
        .batch_execute(&format!("DROP TABLE {t}; DROP TABLE {t}_schema"))
        .await?;
    Ok(())
}

fn queue(db: &Db, workers: usize, id: Option<String>) -> Result<PgQueue<Job, Done>, BoxError> {
    let pool = Pool::builder()
        .max_size(workers + 4)
        .build(PgManager::from_url(&url(db)?)?)?;
    let mut b = PgQueue::builder()
        .table(db.table.clone())
        .workers(workers)
        .lease(Duration::from_secs(5));
    if let Some(id) = id {
        b = b.worker_id(id);
    }
    Ok(b.build(pool)?)
}

/// Starts workers on `q` that square numbers and say who did it.
async fn start(q: &PgQueue<Job, Done>, quiet: bool) -> Result<(), BoxError> {
    let me = q.worker_id().to_owned();
    q.start(service_fn(move |job: Job| {
        let by = me.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(job.ms)).await;
            if !quiet {
                println!("{by}: {}² = {}", job.n, job.n * job.n);
            }
            Ok::<_, BoxError>(Done {
                square: job.n * job.n,
                by,
            })
        }
    }))
    .await?;
    Ok(())
}

/// Submits `count` tasks; with `wait`, returns how many each worker ran.
async fn submit(
    q: &PgQueue<Job, Done>,
    count: u64,
    ms: u64,
    wait: bool,
) -> Result<BTreeMap<String, u64>, BoxError> {
    let mut ids = Vec::new();
    for n in 1..=count {
        ids.push((n, q.submit(Job { n, ms }).await?));
    }
    println!("submitted {count} tasks");
    let mut by = BTreeMap::new();
    if wait {
        for (n, id) in ids {
            let done = tokio::time::timeout(Duration::from_secs(60), q.result(id)).await??;
            if done.square != n * n {
                return Err(format!("task {id}: {n}² came back as {}", done.square).into());
            }
            *by.entry(done.by).or_insert(0) += 1;
        }
        for (worker, n) in &by {
            println!("{worker} ran {n}");
        }
    }
    Ok(by)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match Cli::parse().command {
        Command::Worker { db, workers } => {
            let q = queue(&db, workers, None)?;
            q.migrate().await?;
            start(&q, false).await?;
            println!(
                "worker {} on table {}: Ctrl-C to stop",
                q.worker_id(),
                q.table()
            );
            tokio::signal::ctrl_c().await?;
            let summary = q
                .shutdown(Shutdown::Graceful(Duration::from_secs(10)))
                .await;
            println!("stopped: {summary:?}");
        }
        Command::Submit {
            db,
            count,
            ms,
            wait,
        } => {
            let q = queue(&db, 1, None)?;
            q.migrate().await?;
            submit(&q, count, ms, wait).await?;
        }
        Command::Smoke { db } => {
            let table = format!("{}_smoke_{}", db.table, std::process::id());
            let db = Db { table, ..db };
            let a = queue(&db, 2, Some("worker-a".into()))?;
            let b = queue(&db, 2, Some("worker-b".into()))?;
            a.migrate().await?;
            start(&a, true).await?;
            start(&b, true).await?;
            let by = submit(&a, 40, 5, true).await?;
            let total: u64 = by.values().sum();
            for q in [&a, &b] {
                q.shutdown(Shutdown::Graceful(Duration::from_secs(10)))
                    .await;
            }
            drop_tables(&db).await?;
            if total != 40 {
                return Err(format!("{total} of 40 tasks completed").into());
            }
            println!("smoke: ok, 40 tasks over {} workers", by.len());
        }
    }
    Ok(())
}
