//! Stopping a queue: [`Shutdown`] (how), [`ShutdownSummary`] (what it did)
//! and the steps of [`TaskQueue::shutdown`](super::TaskQueue::shutdown).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::shared::Shared;
use super::task::TaskId;
use crate::time;
use crate::trace::trace_event;

/// How to stop a queue; see [`TaskQueue::shutdown`](super::TaskQueue::shutdown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop taking tasks, let the workers finish every accepted task, and
    /// cancel whatever is still pending or running when the deadline passes.
    /// `Duration::MAX` means no limit: wait for every accepted task.
    Graceful(Duration),
    /// Stop taking tasks and cancel every pending and running task now.
    Now,
}

/// What a [`TaskQueue::shutdown`](super::TaskQueue::shutdown) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Tasks that completed between the start of the shutdown and its end.
    pub completed: u64,
    /// Tasks that failed (error or panic) between the start of the shutdown
    /// and its end.
    pub failed: u64,
    /// Tasks the shutdown cancelled because they had not finished by the
    /// deadline (all of them, pending and running, for [`Shutdown::Now`]).
    /// Each has status [`TaskStatus::Cancelled`] and its waiters get
    /// [`TaskError::Cancelled`].
    ///
    /// [`TaskStatus::Cancelled`]: super::TaskStatus::Cancelled
    /// [`TaskError::Cancelled`]: super::TaskError::Cancelled
    pub cancelled: Vec<TaskId>,
    /// True if accepted work was still unfinished at the deadline.
    pub deadline_reached: bool,
    /// Tasks handed back to a durable backend unfinished (lease cleared,
    /// pending again) for another worker to run: claimed but not started,
    /// or still running at the deadline. Always empty for the in-memory
    /// [`TaskQueue`](super::TaskQueue), which cancels instead.
    pub released: Vec<TaskId>,
}

/// Closes the queue, waits for the workers (until the deadline, for
/// `Graceful`), cancels what is left, and waits for the workers to stop.
pub(crate) async fn shutdown<Req, Res, E>(
    shared: &Shared<Req, Res, E>,
    how: Shutdown,
) -> ShutdownSummary {
    let completed = shared.counters.completed.load(Ordering::Acquire);
    let failed = shared.counters.failed.load(Ordering::Acquire);
    trace_event!(INFO, mode = ?how, "task queue shutting down");
    shared.close();
    let mut stopped = shared.stopped.subscribe();
    let deadline_reached = match how {
        Shutdown::Graceful(deadline) => {
            tokio::time::timeout(time::capped(deadline), stopped.wait_for(|s| *s))
                .await
                .is_err()
        }
        Shutdown::Now => !*stopped.borrow(),
    };
    let mut cancelled = if deadline_reached {
        shared.cancel_all()
    } else {
        Vec::new()
    };
    // Every task is now finished or cancelled, so the workers stop
    // promptly. The sender lives in `shared`, so this cannot fail.
    let _ = stopped.wait_for(|s| *s).await;
    // Tasks the workers cancelled themselves, seeing the shutdown.
    let late = shared.active.take_late();
    if !late.is_empty() {
        cancelled.extend(late);
        cancelled.sort_unstable();
    }
    ShutdownSummary {
        completed: shared.counters.completed.load(Ordering::Acquire) - completed,
        failed: shared.counters.failed.load(Ordering::Acquire) - failed,
        cancelled,
        deadline_reached,
        released: Vec::new(),
    }
}
