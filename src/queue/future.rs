//! The futures of submission: [`Submit`], [`SubmitWithHandle`], and the
//! [`ResponseFuture`] of the `Service` impl.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::cell::Cell;
use super::error::QueueClosed;
use super::handle::{Table, TaskHandle, Waiter};
use super::shared::Shared;
use super::task::TaskId;
use crate::sync::lock;
use crate::BoxError;

/// The future of [`TaskQueue`](super::TaskQueue)'s `Service::call`: already resolved, since
/// `poll_ready` reserved the slot.
pub type ResponseFuture = std::future::Ready<Result<TaskId, BoxError>>;

/// Submission shared by [`Submit`] and [`SubmitWithHandle`].
struct Enqueue<'a, Req, Res, E> {
    shared: &'a Arc<Shared<Req, Res, E>>,
    req: Option<Req>,
    /// The task's cell, made on the first poll.
    cell: Option<Arc<Cell<Res, E>>>,
    key: Option<usize>,
    /// A `TaskHandle` will be made for the task.
    handle: bool,
}

impl<'a, Req, Res, E> Enqueue<'a, Req, Res, E> {
    fn new(shared: &'a Arc<Shared<Req, Res, E>>, req: Req, handle: bool) -> Self {
        Enqueue {
            shared,
            req: Some(req),
            cell: None,
            key: None,
            handle,
        }
    }

    fn poll_enqueue(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<Cell<Res, E>>, QueueClosed>> {
        let shared = &**self.shared;
        // Allocated outside the lock; kept while waiting for room.
        if self.cell.is_none() {
            self.cell = Some(Cell::unnumbered(self.handle));
        }
        let mut jobs = lock(&shared.jobs);
        if jobs.closed {
            jobs.space.remove(&mut self.key);
            return Poll::Ready(Err(QueueClosed));
        }
        if !shared.has_room(&mut jobs) && shared.wait_for_room(&mut jobs, &mut self.key, cx.waker())
        {
            return Poll::Pending;
        }
        jobs.space.remove(&mut self.key);
        let req = self
            .req
            .take()
            .expect("submit future polled after completion");
        let cell = self.cell.take().expect("made above");
        let (cell, wake) = shared.push_locked(&mut jobs, cell, req);
        drop(jobs);
        shared.track(&cell, self.handle);
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(Ok(cell))
    }
}

impl<Req, Res, E> Drop for Enqueue<'_, Req, Res, E> {
    fn drop(&mut self) {
        if self.key.is_some() {
            let mut jobs = lock(&self.shared.jobs);
            // Pass on a wake-up this future received but did not use.
            if jobs.space.remove(&mut self.key) && self.shared.has_room(&mut jobs) {
                if let Some(w) = jobs.space.notify_one() {
                    drop(jobs);
                    w.wake();
                }
            }
        }
    }
}

/// The future returned by [`TaskQueue::submit`](super::TaskQueue::submit).
#[must_use = "futures do nothing unless polled"]
pub struct Submit<'a, Req, Res, E> {
    inner: Enqueue<'a, Req, Res, E>,
}

impl<'a, Req, Res, E> Submit<'a, Req, Res, E> {
    pub(crate) fn new(shared: &'a Arc<Shared<Req, Res, E>>, req: Req) -> Self {
        Submit {
            inner: Enqueue::new(shared, req, false),
        }
    }
}

// The request is never pinned.
impl<Req, Res, E> Unpin for Submit<'_, Req, Res, E> {}

impl<Req, Res, E> Future for Submit<'_, Req, Res, E> {
    type Output = Result<TaskId, QueueClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .inner
            .poll_enqueue(cx)
            .map(|r| r.map(|cell| cell.id))
    }
}

impl<Req, Res, E> fmt::Debug for Submit<'_, Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submit").finish_non_exhaustive()
    }
}

/// The future returned by
/// [`TaskQueue::submit_with_handle`](super::TaskQueue::submit_with_handle).
#[must_use = "futures do nothing unless polled"]
pub struct SubmitWithHandle<'a, Req, Res, E> {
    inner: Enqueue<'a, Req, Res, E>,
}

impl<'a, Req, Res, E> SubmitWithHandle<'a, Req, Res, E> {
    pub(crate) fn new(shared: &'a Arc<Shared<Req, Res, E>>, req: Req) -> Self {
        SubmitWithHandle {
            inner: Enqueue::new(shared, req, true),
        }
    }
}

impl<Req, Res, E> Unpin for SubmitWithHandle<'_, Req, Res, E> {}

impl<Req, Res, E> Future for SubmitWithHandle<'_, Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<TaskHandle<Res, E>, QueueClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.get_mut().inner;
        inner.poll_enqueue(cx).map(|r| {
            r.map(|cell| {
                let table: Arc<dyn Table<Res, E>> = inner.shared.clone();
                TaskHandle {
                    waiter: Waiter::new(cell.id, Some(cell), table, true),
                }
            })
        })
    }
}

impl<Req, Res, E> fmt::Debug for SubmitWithHandle<'_, Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitWithHandle").finish_non_exhaustive()
    }
}
