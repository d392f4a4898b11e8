//! [`PgQueue`]: a durable task queue on PostgreSQL (feature `postgres`).
//!
//! ```no_run
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_patterns::pool::{postgres::PgManager, Pool};
//! use tower_patterns::queue::backend::postgres::{PgQueue, TaskOptions};
//! use tower_patterns::queue::Shutdown;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder()
//!     .max_size(8)
//!     .build(PgManager::from_url("postgresql://app:secret@127.0.0.1/app")?)?;
//! let queue: PgQueue<String, usize> = PgQueue::builder()
//!     .table("word_counts")
//!     .workers(4)
//!     .lease(Duration::from_secs(30))
//!     .max_attempts(5)
//!     .build(pool)?;
//! queue.migrate().await?; // creates or upgrades the table; safe in every process
//!
//! // Any process can run workers; any number of processes share the table.
//! let count = service_fn(|text: String| async move {
//!     Ok::<_, std::io::Error>(text.split_whitespace().count())
//! });
//! queue.start(count).await?;
//!
//! let id = queue.submit("the quick brown fox".to_owned()).await?; // committed
//! assert_eq!(queue.result(id).await?, 4); // woken by NOTIFY, no polling loop
//!
//! // Scheduled, and idempotent: the second submit returns the first id.
//! let opts = TaskOptions::new().key("report-2026-12").after(Duration::from_secs(3600));
//! let first = queue.submit_with("a b".to_owned(), opts.clone()).await?;
//! assert_eq!(queue.submit_with("a b".to_owned(), opts).await?, first);
//!
//! for dead in queue.dead(100).await? {
//!     eprintln!("{}: {:?}", dead.id, dead.last_error);
//!     queue.requeue(dead.id).await?;
//! }
//! let summary = queue.shutdown(Shutdown::Graceful(Duration::from_secs(30))).await;
//! assert!(summary.released.is_empty() || summary.deadline_reached);
//! # Ok(())
//! # }
//! ```
//!
//! # How it works, and what it guarantees
//!
//! - **Committed means kept.** `submit` resolves once the row is
//!   committed; the request and, later, the result are stored as JSON
//!   (`Req: Serialize`, `Res: DeserializeOwned` on the submitting side; the
//!   reverse on the workers).
//! - **At-least-once with leases.** Workers claim with
//!   `FOR UPDATE SKIP LOCKED`, as many tasks as they have free slots, and
//!   write their worker id, the attempt number and a lease end into the
//!   row; a worker that stores a success claims its next task in the same
//!   statement (one round trip per task while there is work); a running
//!   task renews its lease every `heartbeat`. A task whose
//!   worker died is reclaimed once its lease runs out. Every write a worker
//!   makes about a task is guarded by its worker id and attempt number: a
//!   worker that lost the lease (a zombie that paused past it) has its
//!   result refused ([`PgQueueStats::refused`]) and cannot overwrite a
//!   newer attempt.
//! - **Retries wait in the table.** A failed attempt goes back to pending
//!   with a run-at time from the [`Backoff`](crate::retry::Backoff); after
//!   `max_attempts` the task is dead with its last error, listed by
//!   [`PgQueue::dead`] and put back by [`PgQueue::requeue`]. A row whose
//!   payload does not decode as `Req` (bad shape, an old version) is dead
//!   at once with the decoder's message; the worker carries on.
//! - **No busy polling.** Submits and retries `NOTIFY`; idle workers and
//!   `result` waiters `LISTEN` on a connection of their own (not a pooled
//!   one) and also look every `poll_interval` as a safety net. An idle
//!   worker also sleeps exactly until the next scheduled task or expiring
//!   lease.
//! - **Graceful shutdown loses nothing.** [`PgQueue::shutdown`] stops
//!   claiming, hands back claimed tasks that had not started (lease
//!   cleared), lets running ones finish until the deadline, and hands back
//!   those still running then.
//! - **Versioned schema.** [`PgQueue::migrate`] creates `<table>` and
//!   `<table>_schema` and applies missing migrations in order, under an
//!   advisory lock; a table from a newer crate is refused
//!   ([`PgQueueError::SchemaTooNew`]).
//! - **Bounded table.** Finished rows are deleted after `retain_results`
//!   (dead ones after `retain_dead`) by [`PgQueue::cleanup`], which running
//!   workers call every `cleanup_interval`.
//!
//! # Connections
//!
//! The connections come from the crate's own [`Pool`](crate::pool::Pool)
//! of [`PgManager`](crate::pool::postgres::PgManager)s (without TLS). A
//! handle (with its clones) keeps some checked out once used: one for
//! submitters and waiters, and `min(workers, 4)` for its workers. Statements are
//! prepared once per connection and pipelined, so each costs one round
//! trip. A connection that fails is handed back to the pool and replaced.
//! [`PgQueue::migrate`] borrows a third for its transaction. The `LISTEN`
//! connection is opened with the pool's settings but outside it (its
//! notifications arrive on the connection itself). A service run by the
//! workers may share the pool: leave it room for those.

// Imports run downward: builder -> queue -> worker -> recording -> shared -> lane,
// listen, config -> sql; schema, error, stats and task stand alone.

mod builder;
mod config;
mod error;
mod lane;
mod listen;
mod queue;
mod recording;
mod schema;
mod shared;
mod sql;
mod stats;
mod task;
mod worker;

pub use builder::PgQueueBuilder;
pub use error::PgQueueError;
pub use queue::PgQueue;
pub use stats::PgQueueStats;
pub use task::{DeadTask, TaskOptions, TaskRecord};
