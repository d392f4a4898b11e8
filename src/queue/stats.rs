//! [`QueueStats`], the snapshot [`TaskQueue::stats`](super::TaskQueue::stats) returns.

/// A snapshot of a queue's counters; see
/// [`TaskQueue::stats`](super::TaskQueue::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Tasks accepted since the queue was built.
    pub submitted: u64,
    /// Tasks waiting for a worker now.
    pub queued: u64,
    /// Tasks a worker is running now.
    pub running: u64,
    /// Tasks that completed (the inner service returned a response).
    pub completed: u64,
    /// Tasks that failed (an error, or a panic: see `panicked`).
    pub failed: u64,
    /// Of the failed tasks, those that panicked.
    pub panicked: u64,
    /// Tasks cancelled (by `cancel`, a shutdown, or stopped workers), or
    /// not started because their deadline had passed (see `expired`).
    pub cancelled: u64,
    /// Of the cancelled tasks, those a worker did not start because the
    /// deadline they were submitted under had passed (their result is
    /// [`TaskError::DeadlineExceeded`](super::TaskError::DeadlineExceeded)).
    pub expired: u64,
    /// Finished results kept for later `status` / `result` calls now.
    pub retained: usize,
    /// Tasks the queue lists by id now (pending + running + retained):
    /// bounded by `capacity + workers + max_retained` (plus results whose
    /// waiters are about to take them). A task submitted with a handle is
    /// listed only once [`TaskHandle::id`](super::TaskHandle::id) was read.
    pub tracked: usize,
}
