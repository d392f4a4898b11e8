//! The [`TaskQueue`] handle: submission, lookups, cancellation, shutdown,
//! statistics, and its `Service<Req, Response = TaskId>` impl.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::cell::Cell;
use super::error::{QueueClosed, QueueFull, TrySubmitError};
use super::future::{ResponseFuture, Submit, SubmitWithHandle};
use super::handle::{Table, TaskResult, Waiter};
use super::shared::Shared;
use super::shutdown::{self, Shutdown, ShutdownSummary};
use super::stats::QueueStats;
use super::task::{TaskId, TaskStatus};
use crate::sync::lock;
use crate::BoxError;

/// A bounded queue of requests run by a fixed set of workers over an inner
/// [`Service`]: submit returns a [`TaskId`] at once, the result is fetched
/// later (or awaited through a [`TaskHandle`](super::TaskHandle)).
///
/// It is itself a `Service<Req, Response = TaskId>`: `poll_ready` waits for
/// room (backpressure) and `call` enqueues. Clones share the queue, its
/// tasks and its statistics. When the last clone is dropped without a
/// shutdown, the queue closes and the workers finish what was accepted.
///
/// See the [module docs](super) for an example.
pub struct TaskQueue<Req, Res, E> {
    shared: Arc<Shared<Req, Res, E>>,
    /// A slot reserved by `poll_ready` for the next `call`.
    reserved: bool,
    /// This clone's place among the futures waiting for room.
    key: Option<usize>,
}

impl<Req, Res, E> TaskQueue<Req, Res, E> {
    /// The first handle of a queue just built (`shared` counts it).
    pub(crate) fn from_shared(shared: Arc<Shared<Req, Res, E>>) -> Self {
        TaskQueue {
            shared,
            reserved: false,
            key: None,
        }
    }
}

impl<Req, Res, E> TaskQueue<Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    /// Submits a request, waiting for room if the queue is full; resolves to
    /// the task's id once it is accepted.
    ///
    /// # Errors
    ///
    /// [`QueueClosed`] if the queue is shut down. Dropping the future before
    /// it resolves submits nothing.
    pub fn submit(&self, req: Req) -> Submit<'_, Req, Res, E> {
        Submit::new(&self.shared, req)
    }

    /// Like [`submit`](Self::submit), but resolves to a [`TaskHandle`](super::TaskHandle): a
    /// future of the task's result that can also report its status and
    /// cancel it.
    ///
    /// # Errors
    ///
    /// [`QueueClosed`] if the queue is shut down.
    pub fn submit_with_handle(&self, req: Req) -> SubmitWithHandle<'_, Req, Res, E> {
        SubmitWithHandle::new(&self.shared, req)
    }

    /// Submits a request if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] when `capacity` tasks are pending,
    /// [`TrySubmitError::Closed`] after a shutdown; both hand the request
    /// back.
    pub fn try_submit(&self, req: Req) -> Result<TaskId, TrySubmitError<Req>> {
        let shared = &*self.shared;
        let cell = Cell::unnumbered(false);
        let mut jobs = lock(&shared.jobs);
        if jobs.closed {
            return Err(TrySubmitError::Closed(QueueClosed, req));
        }
        if !shared.has_room(&mut jobs) {
            return Err(TrySubmitError::Full(
                QueueFull {
                    capacity: shared.capacity,
                },
                req,
            ));
        }
        let (cell, wake) = shared.push_locked(&mut jobs, cell, req);
        drop(jobs);
        shared.track(&cell, false);
        if let Some(w) = wake {
            w.wake();
        }
        Ok(cell.id)
    }

    /// The task's status, or `None` if the id is unknown, its result was
    /// taken, or it expired.
    pub fn status(&self, id: TaskId) -> Option<TaskStatus> {
        self.shared.table.lookup(id).map(|cell| cell.status())
    }

    /// A future of the task's result: resolves as soon as the task
    /// finishes (the worker wakes it; there is no polling loop) and takes
    /// the result, after which the queue forgets the task. Wrap it in
    /// `tokio::time::timeout` to bound the wait; dropping it leaves the
    /// result in place for a later call.
    ///
    /// Resolves to [`TaskError::NotFound`] if the id is unknown, expired or
    /// already taken.
    ///
    /// [`TaskError::NotFound`]: super::TaskError::NotFound
    pub fn result(&self, id: TaskId) -> TaskResult<Res, E> {
        let cell = self.shared.table.lookup(id);
        TaskResult {
            waiter: Waiter::new(id, cell, self.shared.clone(), false),
        }
    }

    /// Cancels a task: a pending task never runs (its queue slot is freed at
    /// once), a running task's future is dropped by its worker. Either way
    /// it ends `Cancelled` and its waiters get [`TaskError::Cancelled`].
    /// Returns false if the task is unknown or already finished.
    ///
    /// [`TaskError::Cancelled`]: super::TaskError::Cancelled
    pub fn cancel(&self, id: TaskId) -> bool {
        Table::cancel(&*self.shared, id)
    }

    /// Stops the queue: no new tasks are accepted (submissions fail with
    /// [`QueueClosed`]), accepted tasks run to completion, and whatever is
    /// still pending or running at the deadline is cancelled. Resolves once
    /// every worker has stopped, with a summary; every accepted task then
    /// has a terminal status, and finished results stay available (subject
    /// to retention) through [`status`](Self::status) and
    /// [`result`](Self::result).
    ///
    /// `Graceful` times its deadline with `tokio::time`, so the runtime
    /// needs its time driver (`enable_time`), as for `tokio::time::timeout`.
    ///
    /// Calling it again (or on a clone) waits for the workers to stop and
    /// returns an empty summary. Dropping the future part-way leaves the
    /// queue closed, with accepted tasks still running.
    pub async fn shutdown(&self, how: Shutdown) -> ShutdownSummary {
        shutdown::shutdown(&self.shared, how).await
    }

    /// A snapshot of the queue's counters and sizes.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }

    /// The queue's capacity (most pending tasks).
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// True once the queue accepts no more tasks.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.jobs).closed
    }
}

impl<Req, Res, E> Clone for TaskQueue<Req, Res, E> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        TaskQueue {
            shared: self.shared.clone(),
            reserved: false,
            key: None,
        }
    }
}

impl<Req, Res, E> Drop for TaskQueue<Req, Res, E> {
    fn drop(&mut self) {
        if self.reserved || self.key.is_some() {
            let mut jobs = lock(&self.shared.jobs);
            let mut free = jobs.space.remove(&mut self.key);
            if self.reserved {
                jobs.reserved -= 1;
                free = true;
            }
            let wake = if free { jobs.space.notify_one() } else { None };
            drop(jobs);
            if let Some(w) = wake {
                w.wake();
            }
        }
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.close();
        }
    }
}

impl<Req, Res, E> fmt::Debug for TaskQueue<Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskQueue")
            .field("workers", &self.shared.workers)
            .field("capacity", &self.shared.capacity)
            .field("retain_results", &self.shared.table.retain())
            .finish_non_exhaustive()
    }
}

impl<Req, Res, E> Service<Req> for TaskQueue<Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    type Response = TaskId;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Reserves room for one task, waiting while the queue is full. Fails
    /// with [`QueueClosed`] after a shutdown.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        let mut jobs = lock(&self.shared.jobs);
        if jobs.closed {
            jobs.space.remove(&mut self.key);
            return Poll::Ready(Err(QueueClosed.into()));
        }
        let shared = &*self.shared;
        if shared.has_room(&mut jobs) || !shared.wait_for_room(&mut jobs, &mut self.key, cx.waker())
        {
            jobs.reserved += 1;
            self.reserved = true;
            jobs.space.remove(&mut self.key);
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Enqueues the request in the slot `poll_ready` reserved. Without a
    /// reservation it enqueues only if there is room, else fails with
    /// [`QueueFull`]; after a shutdown it fails with [`QueueClosed`].
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &*self.shared;
        let cell = Cell::unnumbered(false);
        let mut jobs = lock(&shared.jobs);
        if std::mem::take(&mut self.reserved) {
            jobs.reserved -= 1;
        } else if !jobs.closed && !shared.has_room(&mut jobs) {
            return std::future::ready(Err(QueueFull {
                capacity: shared.capacity,
            }
            .into()));
        }
        if jobs.closed {
            return std::future::ready(Err(QueueClosed.into()));
        }
        let (cell, wake) = shared.push_locked(&mut jobs, cell, req);
        drop(jobs);
        shared.track(&cell, false);
        if let Some(w) = wake {
            w.wake();
        }
        std::future::ready(Ok(cell.id))
    }
}
