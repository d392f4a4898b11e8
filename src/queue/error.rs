//! Why a task could not be submitted ([`QueueFull`], [`QueueClosed`],
//! [`TrySubmitError`]), and why a task produced no response ([`TaskError`]).

use std::fmt;

use super::task::{TaskId, TaskStatus};
use crate::deadline::Elapsed;

pub use crate::rejection::QueueFull;

/// The queue no longer accepts tasks: it was shut down, every
/// [`TaskQueue`](super::TaskQueue) handle was dropped, or its workers were
/// stopped (for example because the tokio runtime shut down).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueClosed;

impl fmt::Display for QueueClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task queue is shut down and accepts no new tasks")
    }
}

impl std::error::Error for QueueClosed {}

/// Why [`TaskQueue::try_submit`](super::TaskQueue::try_submit) refused a
/// request; the request is handed back.
pub enum TrySubmitError<Req> {
    /// The queue holds `capacity` pending tasks already.
    Full(QueueFull, Req),
    /// The queue is shut down.
    Closed(QueueClosed, Req),
}

impl<Req> TrySubmitError<Req> {
    /// The request that was not submitted.
    pub fn into_request(self) -> Req {
        match self {
            TrySubmitError::Full(_, req) | TrySubmitError::Closed(_, req) => req,
        }
    }

    /// True when the queue was full (a later attempt may succeed).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySubmitError::Full(..))
    }

    /// True when the queue is shut down (no later attempt can succeed).
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySubmitError::Closed(..))
    }
}

impl<Req> fmt::Debug for TrySubmitError<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(e, _) => f.debug_tuple("Full").field(e).finish_non_exhaustive(),
            TrySubmitError::Closed(e, _) => {
                f.debug_tuple("Closed").field(e).finish_non_exhaustive()
            }
        }
    }
}

impl<Req> fmt::Display for TrySubmitError<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySubmitError::Full(e, _) => e.fmt(f),
            TrySubmitError::Closed(e, _) => e.fmt(f),
        }
    }
}

impl<Req> std::error::Error for TrySubmitError<Req> {}

/// Why a task produced no response. `E` is the inner service's error.
///
/// `TaskError<E>` implements [`std::error::Error`] whenever `E` is
/// `Debug + Display` (so `TaskError<tower::BoxError>` converts with `?`);
/// match on [`TaskError::Failed`] to get the inner error back.
#[derive(Debug)]
pub enum TaskError<E> {
    /// The inner service (its `poll_ready` or its response future) returned
    /// this error.
    Failed(E),
    /// The task panicked (in `poll_ready`, `call` or its future); the
    /// message is the panic's payload. The worker survived.
    Panicked(String),
    /// The task was cancelled before it finished: by `cancel`, by a
    /// shutdown deadline, or because the workers stopped.
    Cancelled,
    /// The task was submitted under a deadline (see
    /// [`deadline`](crate::deadline)) that had passed when a worker came to
    /// start it, so it was not run; its status is
    /// [`TaskStatus::Cancelled`]. The [`Elapsed`] (not
    /// [`sent`](Elapsed::sent)) is also the error's
    /// [`source`](std::error::Error::source), so
    /// [`respond`](crate::respond) answers it with 504.
    DeadlineExceeded(Elapsed),
    /// There is no result for this id: it was never issued by this queue,
    /// its result expired (`retain_results` / `max_retained`), or another
    /// waiter already took it.
    NotFound(TaskId),
}

impl<E> TaskError<E> {
    /// The terminal status this error corresponds to (`None` for `NotFound`).
    pub fn status(&self) -> Option<TaskStatus> {
        match self {
            TaskError::Failed(_) | TaskError::Panicked(_) => Some(TaskStatus::Failed),
            TaskError::Cancelled | TaskError::DeadlineExceeded(_) => Some(TaskStatus::Cancelled),
            TaskError::NotFound(_) => None,
        }
    }

    /// The inner service's error, if that is what this is.
    pub fn into_failed(self) -> Option<E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// True for [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// True for [`TaskError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => write!(f, "task failed: {e}"),
            TaskError::Panicked(msg) => write!(f, "task panicked: {msg}"),
            TaskError::Cancelled => f.write_str("task was cancelled before it finished"),
            TaskError::DeadlineExceeded(e) => write!(f, "task not run: {e}"),
            TaskError::NotFound(id) => write!(
                f,
                "no result for {id}: unknown id, result expired (see retain_results) or already taken"
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TaskError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TaskError::DeadlineExceeded(e) => Some(e),
            _ => None,
        }
    }
}
