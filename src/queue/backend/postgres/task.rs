//! What a caller hands in and reads out about single tasks:
//! [`TaskOptions`], [`TaskRecord`], [`DeadTask`].

use std::time::{Duration, SystemTime};

use crate::queue::{TaskId, TaskStatus};

/// When and how to submit a task: an idempotency key, a time to run at.
/// See [`PgQueue::submit_with`](super::PgQueue::submit_with).
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::queue::backend::postgres::TaskOptions;
///
/// let opts = TaskOptions::new()
///     .key("invoice-2041")
///     .after(Duration::from_secs(60));
/// # let _ = opts;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct TaskOptions {
    pub(super) key: Option<String>,
    pub(super) at: Option<SystemTime>,
    pub(super) after: Option<Duration>,
}

impl TaskOptions {
    /// Run now, no key.
    pub fn new() -> TaskOptions {
        TaskOptions::default()
    }

    /// An idempotency key: a later submit with the same key (while the
    /// first task's row is kept, see
    /// [`retain_results`](super::PgQueueBuilder::retain_results)) submits
    /// nothing and returns the first task's id.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Do not run before this time (the server compares it with its clock).
    pub fn at(mut self, at: SystemTime) -> Self {
        self.at = Some(at);
        self.after = None;
        self
    }

    /// Do not run before this long after the submit commits (measured on
    /// the server's clock).
    pub fn after(mut self, delay: Duration) -> Self {
        self.after = Some(delay);
        self.at = None;
        self
    }
}

/// A task's row, as [`PgQueue::record`](super::PgQueue::record) reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskRecord {
    /// Its status (`dead` reads as [`TaskStatus::Failed`]).
    pub status: TaskStatus,
    /// True if it is dead (failed its last attempt, or could not be
    /// decoded); see [`PgQueue::dead`](super::PgQueue::dead).
    pub dead: bool,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// The worker holding its lease, while it runs.
    pub worker_id: Option<String>,
    /// The request as stored (JSON).
    pub payload: String,
}

/// A dead task, as [`PgQueue::dead`](super::PgQueue::dead) lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadTask {
    /// The task.
    pub id: TaskId,
    /// Attempts it had.
    pub attempts: u32,
    /// Why its last attempt failed.
    pub last_error: Option<String>,
    /// The request as stored (JSON).
    pub payload: String,
}
