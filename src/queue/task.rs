//! Task identity and status.

use std::fmt;

/// Identifies one submitted task. Ids are unique within a queue and never
/// reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The id as a number (ids count up from 1 in submission order).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// Where a task is in its life. `Completed`, `Failed` and `Cancelled` are
/// terminal: every accepted task reaches exactly one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// A worker is running it (waiting for the inner service's readiness or
    /// its response).
    Running,
    /// The inner service returned a response.
    Completed,
    /// The inner service returned an error, or the task panicked.
    Failed,
    /// Not started because its deadline had passed, or cancelled by
    /// [`TaskQueue::cancel`](super::TaskQueue::cancel),
    /// [`TaskHandle::cancel`](super::TaskHandle::cancel) or a shutdown before it finished.
    Cancelled,
}

impl TaskStatus {
    /// True for `Completed`, `Failed` and `Cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        })
    }
}
