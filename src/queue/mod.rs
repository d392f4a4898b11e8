//! A task queue with workers, as a tower [`Service`](tower_service::Service).
//!
//! [`TaskQueue`] wraps any `Service<Req>`: submitting a request returns a
//! [`TaskId`] at once; a fixed set of workers runs the tasks (calling the
//! inner service's `poll_ready` before each `call`, so layers inside the
//! queue apply per task); the result is fetched later with
//! [`TaskQueue::result`] or awaited through a [`TaskHandle`].
//!
//! ```
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_patterns::queue::{Shutdown, TaskError, TaskQueue, TaskStatus};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_patterns::BoxError> {
//! let double = service_fn(|n: u32| async move {
//!     if n == 13 {
//!         Err("unlucky")
//!     } else {
//!         Ok(n * 2)
//!     }
//! });
//! let queue = TaskQueue::builder()
//!     .workers(5)
//!     .capacity(1_000)
//!     .retain_results(Duration::from_secs(300))
//!     .build(double)?;
//!
//! let id = queue.submit(21).await?;
//! assert_eq!(queue.result(id).await?, 42);
//!
//! let unlucky = queue.submit(13).await?;
//! let waited = tokio::time::timeout(Duration::from_secs(1), queue.result(unlucky)).await?;
//! assert!(matches!(waited, Err(TaskError::Failed("unlucky"))));
//!
//! let handle = queue.submit_with_handle(5).await?;
//! assert_eq!(handle.await?, 10);
//!
//! let last = queue.submit(1).await?;
//! let summary = queue.shutdown(Shutdown::Graceful(Duration::from_secs(30))).await;
//! assert!(summary.cancelled.is_empty());
//! assert_eq!(queue.status(last), Some(TaskStatus::Completed));
//! let stats = queue.stats();
//! assert_eq!((stats.submitted, stats.completed, stats.failed), (4, 3, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Every accepted task ends in exactly one terminal status**
//!   ([`TaskStatus::Completed`], `Failed` or `Cancelled`) and its result or
//!   error reaches whoever waits for it. A panic in the task becomes
//!   [`TaskError::Panicked`]; the worker carries on.
//! - **Backpressure.** At most `capacity` tasks wait: `submit` and
//!   `poll_ready` wait for room, [`TaskQueue::try_submit`] returns
//!   [`QueueFull`].
//! - **No polling.** `result` futures are woken by the worker that finishes
//!   the task.
//! - **Bounded memory.** A finished result is forgotten when taken, after
//!   `retain_results`, or when more than `max_retained` are kept; the task
//!   table never holds more than `capacity + workers + max_retained` tasks
//!   (plus results being handed to their waiters).
//! - **Cancellation.** [`TaskQueue::cancel`]: a pending task never runs, a
//!   running task's future is dropped. Dropping any future of this module
//!   (submit, result, handle, shutdown) leaks nothing and cancels no task.
//! - **Shutdown.** [`TaskQueue::shutdown`] stops intake, lets accepted
//!   tasks finish, cancels what is left at the deadline, and reports it in
//!   a [`ShutdownSummary`].
//!
//! Finished results whose waiters have gone are kept like any other, so a
//! status table can still be printed after the work is done. A task
//! submitted with [`TaskQueue::submit_with_handle`] is the exception until
//! its id is read with [`TaskHandle::id`]: nothing but its handle can name
//! it, so the queue keeps no entry for it by id (which is most of a task's
//! bookkeeping), and a result whose handle was dropped unread is not kept.
//!
//! # Backends
//!
//! This queue keeps its tasks in memory. [`backend::Backend`] is the front
//! it shares with `backend::postgres::PgQueue` (feature `postgres`), a
//! durable queue whose tasks live in a PostgreSQL table and are shared by
//! worker processes.
//!
//! # Deadlines
//!
//! A task submitted under a deadline (below a
//! [`TimeoutLayer`](crate::deadline::TimeoutLayer), or inside
//! [`deadline::scope`](crate::deadline::scope)) carries it to its worker:
//!
//! - a worker does not start a task whose deadline has passed: it ends
//!   [`TaskStatus::Cancelled`] with [`TaskError::DeadlineExceeded`], counted
//!   in [`QueueStats::expired`] (and `cancelled`);
//! - a task that starts in time runs with its deadline in force, so layers
//!   inside the queue honour it as in the submitter's task (retry stops
//!   retrying; a [`TimeoutLayer`](crate::deadline::TimeoutLayer) inside,
//!   even with `Duration::MAX`, cuts the task off at the deadline).
//!
//! The queue does not cut off a running task by itself. A task submitted
//! without a deadline costs one thread-local read more, at submission.

// Imports run downward: builder -> service -> future, shutdown, cancel ->
// shared -> active, jobs, table, handle -> cell -> error, task, waiters.
// The worker imports only the shared state below it; `stats` stands alone.

mod active;
pub mod backend;
mod builder;
mod cancel;
mod cell;
mod error;
mod future;
mod handle;
mod jobs;
mod service;
mod shared;
mod shutdown;
mod stats;
mod table;
mod task;
mod waiters;
mod worker;

pub use builder::TaskQueueBuilder;
pub use error::{QueueClosed, QueueFull, TaskError, TrySubmitError};
pub use future::{ResponseFuture, Submit, SubmitWithHandle};
pub use handle::{TaskHandle, TaskResult};
pub use service::TaskQueue;
pub use shutdown::{Shutdown, ShutdownSummary};
pub use stats::QueueStats;
pub use task::{TaskId, TaskStatus};
