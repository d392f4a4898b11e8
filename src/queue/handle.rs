//! The futures that wait for one task's result: [`TaskHandle`] and
//! [`TaskResult`], and the [`Table`] they report to.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::cell::{Cell, Taken};
use super::error::TaskError;
use super::task::{TaskId, TaskStatus};

/// What waiters need from the queue, without its request type.
pub(crate) trait Table<Res, E>: Send + Sync {
    /// The result of `id` was taken: forget the task.
    fn taken(&self, id: TaskId);
    /// The finished result of `id` has nobody waiting: keep it until it
    /// expires or is taken.
    fn park(&self, id: TaskId);
    /// Cancels `id` (see `TaskQueue::cancel`).
    fn cancel(&self, id: TaskId) -> bool;
    /// Cancels the task of `cell` (see `TaskHandle::cancel`).
    fn cancel_cell(&self, cell: &Cell<Res, E>) -> bool;
    /// Lists the task of `cell`, submitted with a handle, once its id was
    /// read (see `Cell::list`).
    fn list(&self, cell: &Arc<Cell<Res, E>>);
}

/// Waits for one task's result (shared by [`TaskHandle`] and
/// [`TaskResult`]).
pub(crate) struct Waiter<Res, E> {
    id: TaskId,
    cell: Option<Arc<Cell<Res, E>>>,
    table: Arc<dyn Table<Res, E>>,
    key: Option<usize>,
    /// The status once the cell was let go of.
    last: Option<TaskStatus>,
    /// This is the task's `TaskHandle` (see `Cell::leave`).
    handle: bool,
}

impl<Res, E> Waiter<Res, E> {
    pub(crate) fn new(
        id: TaskId,
        cell: Option<Arc<Cell<Res, E>>>,
        table: Arc<dyn Table<Res, E>>,
        handle: bool,
    ) -> Self {
        Waiter {
            id,
            cell,
            table,
            key: None,
            last: None,
            handle,
        }
    }

    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<Res, TaskError<E>>> {
        let Some(cell) = &self.cell else {
            return Poll::Ready(Err(TaskError::NotFound(self.id)));
        };
        let taken = match cell.poll_take(&mut self.key, cx.waker()) {
            Poll::Ready(taken) => taken,
            Poll::Pending => return Poll::Pending,
        };
        self.cell = None;
        match taken {
            Taken::Result(status, out, listed) => {
                self.last = Some(status);
                if listed {
                    self.table.taken(self.id);
                }
                Poll::Ready(out)
            }
            Taken::Gone(status) => {
                self.last = Some(status);
                Poll::Ready(Err(TaskError::NotFound(self.id)))
            }
        }
    }

    fn status(&self) -> Option<TaskStatus> {
        match &self.cell {
            Some(c) => Some(c.status()),
            None => self.last,
        }
    }
}

impl<Res, E> Drop for Waiter<Res, E> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else { return };
        if cell.leave(&mut self.key, self.handle) {
            self.table.park(self.id);
        }
    }
}

/// A future of one task's result, returned by
/// [`TaskQueue::submit_with_handle`](super::TaskQueue::submit_with_handle).
///
/// Awaiting it takes the result (the task is then forgotten by the queue).
/// Dropping it does **not** cancel the task; call [`TaskHandle::cancel`] to
/// cancel.
///
/// The handle alone holds its task until [`id`](Self::id) is called:
/// nothing else can name the task, so the queue does not list it in its
/// table of ids, and a result nobody can take is not kept. Once the id has
/// been read, the task is listed like one from
/// [`submit`](super::TaskQueue::submit): the queue's
/// [`status`](super::TaskQueue::status), [`result`](super::TaskQueue::result)
/// and [`cancel`](super::TaskQueue::cancel) find it, and if the handle is
/// dropped its result is kept for later (see `retain_results`).
pub struct TaskHandle<Res, E> {
    pub(crate) waiter: Waiter<Res, E>,
}

impl<Res, E> TaskHandle<Res, E> {
    /// The task's id. Reading it lists the task for lookups by id (see
    /// above).
    pub fn id(&self) -> TaskId {
        if let Some(cell) = &self.waiter.cell {
            self.waiter.table.list(cell);
        }
        self.waiter.id
    }

    /// The task's current status (still known after the result was taken
    /// through this handle).
    pub fn status(&self) -> TaskStatus {
        // Only a result another waiter took leaves no status behind.
        self.waiter.status().unwrap_or(TaskStatus::Completed)
    }

    /// Cancels the task: a pending task never runs, a running task's future
    /// is dropped. Returns false if it had already finished.
    pub fn cancel(&self) -> bool {
        match &self.waiter.cell {
            Some(cell) => self.waiter.table.cancel_cell(cell),
            // The result was taken through this handle: finished.
            None => false,
        }
    }
}

impl<Res, E> Future for TaskHandle<Res, E> {
    type Output = Result<Res, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().waiter.poll_result(cx)
    }
}

impl<Res, E> fmt::Debug for TaskHandle<Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.waiter.id)
            .finish_non_exhaustive()
    }
}

/// The future returned by [`TaskQueue::result`](super::TaskQueue::result):
/// resolves when the task finishes (woken by the worker, no polling loop)
/// and takes its result. Dropping it leaves the result in place.
#[must_use = "futures do nothing unless polled"]
pub struct TaskResult<Res, E> {
    pub(crate) waiter: Waiter<Res, E>,
}

impl<Res, E> Future for TaskResult<Res, E> {
    type Output = Result<Res, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().waiter.poll_result(cx)
    }
}

impl<Res, E> fmt::Debug for TaskResult<Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskResult")
            .field("id", &self.waiter.id)
            .finish_non_exhaustive()
    }
}
