//! The worker loop: take a job, drive the inner service (readiness first),
//! catch panics, honour cancellation, record the outcome.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::cell::Cell;
use super::error::TaskError;
use super::jobs::Job;
use super::shared::Shared;
use crate::deadline::{Elapsed, Scope};

/// One worker: runs jobs one at a time until the queue is closed and empty.
pub(crate) async fn run_worker<S, Req>(
    shared: Arc<Shared<Req, S::Response, S::Error>>,
    mut service: S,
    index: usize,
) where
    S: Service<Req>,
    Req: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    let mut guard = WorkerGuard {
        shared,
        current: None,
        batch: VecDeque::new(),
        index,
    };
    while let Some(job) = (NextJob {
        shared: &guard.shared,
        index,
        batch: &mut guard.batch,
    })
    .await
    {
        let Job { cell, req } = job;
        if !guard.shared.start(&cell) {
            // Cancelled while pending: already accounted for.
            continue;
        }
        let deadline = cell.deadline;
        if let Some(d) = deadline.filter(|d| d.at.has_passed()) {
            let late = Err(TaskError::DeadlineExceeded(Elapsed::new(d.allowed, false)));
            guard.shared.finish(&cell, late);
            tokio::task::consume_budget().await;
            continue;
        }
        guard.current = Some(cell);
        let cell_ref = guard.current.as_deref().expect("just set");
        let run = Run {
            service: &mut service,
            req: Some(req),
            future: None,
            cell: cell_ref,
        };
        // A task submitted under a deadline runs with it in force, as in
        // the submitter's task: layers inside the queue (retry, a timeout)
        // honour it.
        #[cfg(feature = "metrics")]
        let started = tokio::time::Instant::now();
        let out = match deadline {
            Some(d) => Scope::new(Some(d.at), run).await,
            None => run.await,
        };
        #[cfg(feature = "metrics")]
        guard
            .shared
            .metrics
            .with(|m| m.run.record(started.elapsed()));
        let cell = guard.current.take().expect("set above");
        guard.shared.finish(&cell, out);
        // Keep a worker fed by a long queue of instant tasks from hogging
        // its runtime thread.
        tokio::task::consume_budget().await;
    }
}

/// Accounts for the worker's end, however it ends: a task it was running
/// when dropped (runtime shutdown) is reported `Cancelled`; the last worker
/// to stop closes the queue and cancels whatever is still pending, so no
/// waiter hangs.
struct WorkerGuard<Req, Res, E> {
    shared: Arc<Shared<Req, Res, E>>,
    current: Option<Arc<Cell<Res, E>>>,
    /// Jobs claimed from the queue, not started yet.
    batch: VecDeque<Job<Req, Res, E>>,
    index: usize,
}

impl<Req, Res, E> Drop for WorkerGuard<Req, Res, E> {
    fn drop(&mut self) {
        if let Some(cell) = self.current.take() {
            self.shared.finish(&cell, Err(TaskError::Cancelled));
        }
        for job in self.batch.drain(..) {
            self.shared.cancel_claimed(&job.cell);
        }
        self.shared.worker_stopped(self.index);
    }
}

/// Waits for the next job; `None` once the queue is closed and empty.
struct NextJob<'a, Req, Res, E> {
    shared: &'a Shared<Req, Res, E>,
    index: usize,
    batch: &'a mut VecDeque<Job<Req, Res, E>>,
}

impl<Req, Res, E> Future for NextJob<'_, Req, Res, E> {
    type Output = Option<Job<Req, Res, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.shared.poll_next_job(cx, this.index, this.batch)
    }
}

/// What one poll of the task's service or future came to, panics caught.
enum Step<T, E> {
    Ready(T),
    Pending,
    /// The task ends here: the service or its future failed or panicked.
    Finished(TaskError<E>),
}

/// Polls under `catch_unwind`, turning an error or a panic into the task's end.
fn guarded<T, E>(poll: impl FnOnce() -> Poll<Result<T, E>>) -> Step<T, E> {
    match catch_unwind(AssertUnwindSafe(poll)) {
        Ok(Poll::Ready(Ok(value))) => Step::Ready(value),
        Ok(Poll::Ready(Err(e))) => Step::Finished(TaskError::Failed(e)),
        Ok(Poll::Pending) => Step::Pending,
        Err(payload) => Step::Finished(TaskError::Panicked(panic_message(payload))),
    }
}

pin_project! {
    /// Runs one task on the inner service: `poll_ready`, then `call`, then
    /// the response future, each under `catch_unwind`, checking for
    /// cancellation before every step. Dropping it drops the task's future.
    struct Run<'a, S, Req, Res, E>
    where
        S: Service<Req>,
    {
        service: &'a mut S,
        req: Option<Req>,
        #[pin]
        future: Option<S::Future>,
        cell: &'a Cell<Res, E>,
    }
}

impl<S, Req> Future for Run<'_, S, Req, S::Response, S::Error>
where
    S: Service<Req>,
{
    type Output = Result<S::Response, TaskError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if this.cell.cancel_requested() {
                this.future.set(None);
                return Poll::Ready(Err(TaskError::Cancelled));
            }
            if let Some(fut) = this.future.as_mut().as_pin_mut() {
                match guarded(|| fut.poll(cx)) {
                    Step::Ready(res) => return Poll::Ready(Ok(res)),
                    Step::Finished(err) => {
                        this.future.set(None);
                        return Poll::Ready(Err(err));
                    }
                    Step::Pending if this.cell.park_worker(cx.waker()) => continue,
                    Step::Pending => return Poll::Pending,
                }
            }
            let service = &mut **this.service;
            match guarded(|| service.poll_ready(cx)) {
                Step::Ready(()) => {}
                Step::Finished(err) => return Poll::Ready(Err(err)),
                Step::Pending if this.cell.park_worker(cx.waker()) => continue,
                Step::Pending => return Poll::Pending,
            }
            let Some(req) = this.req.take() else {
                // Unreachable: the request is taken exactly once, right
                // before the future is stored.
                return Poll::Ready(Err(TaskError::Cancelled));
            };
            match catch_unwind(AssertUnwindSafe(|| service.call(req))) {
                Ok(fut) => this.future.set(Some(fut)),
                Err(payload) => {
                    return Poll::Ready(Err(TaskError::Panicked(panic_message(payload))));
                }
            }
        }
    }
}

/// A panic payload as text.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<&'static str>() {
        Ok(s) => (*s).to_owned(),
        Err(payload) => match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(_) => "panic with a non-string payload".to_owned(),
        },
    }
}
