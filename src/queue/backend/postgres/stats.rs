//! [`PgQueueStats`]: what this process's handle of a
//! [`PgQueue`](super::PgQueue) has done.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of one process's counters for a [`PgQueue`](super::PgQueue)
/// (clones share them); other processes on the same table count their own.
/// The table itself is the truth: see
/// [`PgQueue::record`](super::PgQueue::record) and
/// [`PgQueue::dead`](super::PgQueue::dead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgQueueStats {
    /// Tasks this handle submitted (committed; an idempotent repeat counts
    /// in `deduplicated` instead).
    pub submitted: u64,
    /// Submits that found their idempotency key taken and returned the
    /// first task's id.
    pub deduplicated: u64,
    /// Tasks this process's workers claimed.
    pub claimed: u64,
    /// Tasks this process holds now: running, or claimed and waiting to
    /// start (see `prefetch`).
    pub running: u64,
    /// Tasks completed here (result stored).
    pub completed: u64,
    /// Failed attempts put back to wait for their backoff.
    pub retried: u64,
    /// Tasks that went dead here: failed their last attempt, or could not
    /// be decoded (`corrupt`), or ran out of lease on their last attempt.
    pub dead: u64,
    /// Of the dead, rows whose payload could not be decoded.
    pub corrupt: u64,
    /// Results or acks refused because this worker had lost the task's
    /// lease (reclaimed, or cancelled) by the time it finished.
    pub refused: u64,
    /// Running tasks dropped because a heartbeat found the lease gone.
    pub lease_lost: u64,
    /// Expired leases (of any worker) this process put back or buried.
    pub reaped: u64,
    /// Claimed tasks handed back by a shutdown.
    pub released: u64,
    /// Rows removed by retention cleanup.
    pub cleaned: u64,
    /// Database errors the workers met and waited out.
    pub db_errors: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) submitted: AtomicU64,
    pub(super) deduplicated: AtomicU64,
    pub(super) claimed: AtomicU64,
    pub(super) running: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) corrupt: AtomicU64,
    pub(super) refused: AtomicU64,
    pub(super) lease_lost: AtomicU64,
    pub(super) reaped: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) cleaned: AtomicU64,
    pub(super) db_errors: AtomicU64,
}

/// Adds `n` to a counter.
pub(super) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(super) fn snapshot(&self) -> PgQueueStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PgQueueStats {
            submitted: get(&self.submitted),
            deduplicated: get(&self.deduplicated),
            claimed: get(&self.claimed),
            running: get(&self.running),
            completed: get(&self.completed),
            retried: get(&self.retried),
            dead: get(&self.dead),
            corrupt: get(&self.corrupt),
            refused: get(&self.refused),
            lease_lost: get(&self.lease_lost),
            reaped: get(&self.reaped),
            released: get(&self.released),
            cleaned: get(&self.cleaned),
            db_errors: get(&self.db_errors),
        }
    }
}
