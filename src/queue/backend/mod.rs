//! Where a queue keeps its tasks: the [`Backend`] trait, implemented by the
//! in-memory [`TaskQueue`](super::TaskQueue) and (feature `postgres`) by
//! [`postgres::PgQueue`], a durable queue on PostgreSQL.
//!
//! Code written against [`Backend`] runs on either: submit, status, an
//! awaitable result, cancel and shutdown mean the same on both.
//!
//! ```
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_patterns::queue::backend::Backend;
//! use tower_patterns::queue::{Shutdown, TaskQueue, TaskStatus};
//!
//! /// Works on any backend: the in-memory queue here, `PgQueue` in production.
//! async fn double_it<B: Backend<u32, Response = u32>>(queue: &B) -> u32 {
//!     let id = queue.submit(21).await.expect("accepted");
//!     let out = queue.result(id).await.ok().expect("completed");
//!     assert_eq!(queue.status(id).await.unwrap(), None); // memory: taking forgets
//!     out
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_patterns::BoxError> {
//! let queue = TaskQueue::builder()
//!     .workers(2)
//!     .build(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) }))?;
//! assert_eq!(double_it(&queue).await, 42);
//! Backend::shutdown(&queue, Shutdown::Graceful(Duration::from_secs(1))).await;
//! # let _ = TaskStatus::Pending;
//! # Ok(())
//! # }
//! ```
//!
//! The in-memory queue keeps its own, faster inherent methods (its
//! `status` and `cancel` are synchronous); the trait adds no cost to them.
//! A PostgreSQL backend differs where durability makes it: its `result`
//! does not forget the task (finished rows stay until retention cleans them
//! up), and a shutdown hands unfinished tasks back to the database instead
//! of cancelling them.

use std::future::Future;

use super::{Shutdown, ShutdownSummary, TaskError, TaskId, TaskStatus};
use crate::BoxError;

mod memory;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

/// A task queue's storage and front: what both the in-memory
/// [`TaskQueue`](super::TaskQueue) and the PostgreSQL
/// [`PgQueue`](postgres::PgQueue) do. See the [module docs](self).
pub trait Backend<Req>: Send + Sync {
    /// What a completed task returns.
    type Response;
    /// How a failed task's error is kept (`E` in memory; the error's text
    /// in PostgreSQL).
    type Error;

    /// Submits a request; resolves to its id once the task is accepted
    /// (in PostgreSQL: committed).
    ///
    /// # Errors
    ///
    /// [`QueueClosed`](super::QueueClosed) after a shutdown; a backend's own
    /// error (a database error) otherwise.
    fn submit(&self, req: Req) -> impl Future<Output = Result<TaskId, BoxError>> + Send;

    /// The task's status, `None` if the id is unknown (or its result was
    /// taken or cleaned up).
    ///
    /// # Errors
    ///
    /// A backend's own error (the in-memory queue never fails).
    fn status(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Option<TaskStatus>, BoxError>> + Send;

    /// Waits for the task to finish (woken by the backend, not by polling)
    /// and resolves to its outcome.
    fn result(
        &self,
        id: TaskId,
    ) -> impl Future<Output = Result<Self::Response, TaskError<Self::Error>>> + Send;

    /// Cancels a pending or running task; false if it is unknown or
    /// already finished.
    ///
    /// # Errors
    ///
    /// A backend's own error (the in-memory queue never fails).
    fn cancel(&self, id: TaskId) -> impl Future<Output = Result<bool, BoxError>> + Send;

    /// Stops taking tasks, lets running ones finish until the deadline, and
    /// says what happened.
    fn shutdown(&self, how: Shutdown) -> impl Future<Output = ShutdownSummary> + Send;
}
