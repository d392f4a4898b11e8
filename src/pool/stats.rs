//! [`PoolStats`], the snapshot [`Pool::stats`](super::Pool::stats) returns,
//! and the counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a pool, from [`Pool::stats`](super::Pool::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Resources open or being created: `idle + in_use`.
    pub size: usize,
    /// Resources idle in the pool.
    pub idle: usize,
    /// Resources checked out, being created or checked, or being handed
    /// to a waiter.
    pub in_use: usize,
    /// Acquirers waiting in line.
    pub waiting: usize,
    /// The configured `min_size`.
    pub min_size: usize,
    /// The configured `max_size`.
    pub max_size: usize,
    /// Resources created since the pool was built.
    pub created: u64,
    /// Checkouts of an existing resource that passed [`Manager::recycle`](super::Manager::recycle).
    pub recycled: u64,
    /// Acquires that failed with [`PoolError::Timeout`](super::PoolError::Timeout).
    pub timed_out: u64,
    /// [`Manager::create`](super::Manager::create) calls that failed (or, in the background, timed out).
    pub create_failed: u64,
    /// Resources that left the pool, by reason.
    pub closed_by_reason: ClosedByReason,
}

/// Resources that left a pool, by reason; part of [`PoolStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedByReason {
    /// [`Manager::recycle`](super::Manager::recycle) failed, so the resource was closed and replaced.
    pub recycle_failed: u64,
    /// Older than `max_lifetime`.
    pub max_lifetime: u64,
    /// Idle longer than `idle_timeout` while the pool was above `min_size`.
    pub idle_timeout: u64,
    /// Taken out of the pool with [`Pooled::detach`](super::Pooled::detach).
    pub detached: u64,
    /// The acquire checking the resource was cancelled mid-`recycle`.
    pub interrupted: u64,
    /// Closed by [`Pool::close`](super::Pool::close).
    pub pool_closed: u64,
}

impl ClosedByReason {
    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.recycle_failed
            + self.max_lifetime
            + self.idle_timeout
            + self.detached
            + self.interrupted
            + self.pool_closed
    }
}

/// Why a resource left the pool; indexes [`Counters`]' closed counts and
/// names a field of [`ClosedByReason`].
#[derive(Clone, Copy, Debug)]
pub(super) enum Reason {
    RecycleFailed = 0,
    MaxLifetime = 1,
    IdleTimeout = 2,
    Detached = 3,
    Interrupted = 4,
    PoolClosed = 5,
}

/// The counters behind [`PoolStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) created: AtomicU64,
    pub(super) recycled: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) create_failed: AtomicU64,
    closed: [AtomicU64; 6],
}

impl Counters {
    /// Counts `n` resources that left the pool for `reason`.
    #[inline]
    pub(super) fn count_closed(&self, reason: Reason, n: u64) {
        self.closed[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// The closed counts, by reason.
    pub(super) fn closed_by_reason(&self) -> ClosedByReason {
        let closed = |r: Reason| self.closed[r as usize].load(Ordering::Relaxed);
        ClosedByReason {
            recycle_failed: closed(Reason::RecycleFailed),
            max_lifetime: closed(Reason::MaxLifetime),
            idle_timeout: closed(Reason::IdleTimeout),
            detached: closed(Reason::Detached),
            interrupted: closed(Reason::Interrupted),
            pool_closed: closed(Reason::PoolClosed),
        }
    }
}
