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

use super::cell::{Cancel, Cell};
use super::error::TaskError;
use super::jobs::Job;
use super::shared::{stamp, Ran, Shared, Stamp};
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
    // When the last task ended, while the worker has not waited since:
    // the next task starts then (one clock read between two tasks, with
    // `metrics`; none without).
    let mut ended: Option<Stamp> = None;
    loop {
        let mut waited = false;
        let next = NextJob {
            shared: &guard.shared,
            index,
            batch: &mut guard.batch,
            waited: &mut waited,
        };
        let Some(job) = next.await else { break };
        let now = match ended.take() {
            Some(at) if !waited => at,
            _ => stamp(),
        };
        let Job { cell, req } = job;
        if guard.shared.cancelling() {
            // A shutdown is cancelling everything: a job this worker took
            // is its to cancel (the table may not list it), and to report.
            if guard.shared.cancel_claimed(&cell) {
                guard.shared.active.cancelled_late(cell.id);
            }
            ended = Some(now);
            continue;
        }
        if !guard.shared.start(&cell) {
            // Cancelled while pending: already accounted for.
            ended = Some(now);
            continue;
        }
        let deadline = cell.deadline.as_deref().copied();
        if let Some(d) = deadline.filter(|d| d.at.has_passed()) {
            let late = Err(TaskError::DeadlineExceeded(Elapsed::new(d.allowed, false)));
            let ran = Ran {
                started: now,
                ended: None,
                waited: false,
            };
            guard.shared.finish(&cell, late, ran);
            if !yield_if_out_of_budget().await {
                ended = Some(now);
            }
            continue;
        }
        guard.current = Some(cell);
        let mut task_waited = false;
        let run = Run {
            service: &mut service,
            req: Some(req),
            future: None,
            cell: guard.current.as_ref().expect("just set"),
            shared: &guard.shared,
            index,
            started: now,
            waited: &mut task_waited,
        };
        // A task submitted under a deadline runs with it in force, as in
        // the submitter's task: layers inside the queue (retry, a timeout)
        // honour it.
        let out = match deadline {
            Some(d) => Scope::new(Some(d.at), run).await,
            None => run.await,
        };
        let end = stamp();
        let cell = guard.current.take().expect("set above");
        let ran = Ran {
            started: now,
            ended: Some(end),
            waited: task_waited,
        };
        guard.shared.finish(&cell, out, ran);
        if !yield_if_out_of_budget().await {
            ended = Some(end);
        }
    }
}

/// Keeps a worker fed by a long queue of instant tasks from hogging its
/// runtime thread: consumes a unit of tokio's task budget, and yields once
/// it is spent. Resolves to whether it yielded (time passed meanwhile).
async fn yield_if_out_of_budget() -> bool {
    let mut budget = std::pin::pin!(tokio::task::consume_budget());
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        let poll = budget.as_mut().poll(cx);
        yielded |= poll.is_pending();
        poll
    })
    .await;
    yielded
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
            // Dropped while its future waited: shown as running.
            let ran = Ran {
                started: stamp(),
                ended: None,
                waited: true,
            };
            self.shared.finish(&cell, Err(TaskError::Cancelled), ran);
        }
        self.shared.active.clear(self.index);
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
    /// Set once the worker had to wait (time may have passed).
    waited: &'a mut bool,
}

impl<Req, Res, E> Future for NextJob<'_, Req, Res, E> {
    type Output = Option<Job<Req, Res, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let poll = this.shared.poll_next_job(cx, this.index, this.batch);
        *this.waited |= poll.is_pending();
        poll
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
    #[project = RunProj]
    struct Run<'a, S, Req, Res, E>
    where
        S: Service<Req>,
    {
        service: &'a mut S,
        req: Option<Req>,
        #[pin]
        future: Option<S::Future>,
        cell: &'a Arc<Cell<Res, E>>,
        shared: &'a Shared<Req, Res, E>,
        index: usize,
        // When the worker took the task.
        started: Stamp,
        // Set once the task waited: it is in the worker's slot of `Active`
        // until it ends, and shown as running (`Shared::waits`).
        waited: &'a mut bool,
    }
}

impl<S, Req> Future for Run<'_, S, Req, S::Response, S::Error>
where
    S: Service<Req>,
{
    type Output = Result<S::Response, TaskError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let poll = drive(&mut this, cx);
        if poll.is_ready() && **this.waited {
            this.shared.active.clear(*this.index);
        }
        poll
    }
}

/// One poll of [`Run`]: readiness, call, and the response future, until
/// the task ends or waits.
fn drive<S, Req>(
    this: &mut RunProj<'_, '_, S, Req, S::Response, S::Error>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, TaskError<S::Error>>>
where
    S: Service<Req>,
{
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
                Step::Pending if waits(this, cx) => continue,
                Step::Pending => return Poll::Pending,
            }
        }
        let service = &mut **this.service;
        match guarded(|| service.poll_ready(cx)) {
            Step::Ready(()) => {}
            Step::Finished(err) => return Poll::Ready(Err(err)),
            Step::Pending if waits(this, cx) => continue,
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

/// The task waits: leaves the worker's waker for `cancel`, and the first
/// time, sets the task in the worker's slot for a shutdown to find. True if
/// the task must stop instead (a cancel came, or a shutdown that may have
/// missed it: then it is reported as cancelled by the shutdown).
fn waits<S, Req>(
    this: &mut RunProj<'_, '_, S, Req, S::Response, S::Error>,
    cx: &mut Context<'_>,
) -> bool
where
    S: Service<Req>,
{
    if this.cell.park_worker(cx.waker()) {
        return true;
    }
    if !**this.waited {
        **this.waited = true;
        this.shared.waits(this.cell, *this.started);
        this.shared.active.set(*this.index, this.cell);
        // After the slot is set; `cancel_all` sets the flag before it reads
        // the slots: one of the two sees the other.
        if this.shared.cancelling() {
            if let Cancel::Running = this.cell.cancel() {
                this.shared.active.cancelled_late(this.cell.id);
            }
            return true;
        }
    }
    false
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
