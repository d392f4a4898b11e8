//! Internal: the semaphore, the waiting policy and the counters that the
//! fixed and the adaptive limiters share.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use super::Overloaded;
use crate::trace::trace_event;

/// How long a caller may wait for a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Wait as long as it takes (tower's behaviour).
    Forever,
    /// Wait at most this long, then fail with [`Overloaded`].
    UpTo(Duration),
    /// Never wait: fail with [`Overloaded`] at once when no permit is free.
    Never,
}

impl Wait {
    pub(crate) fn up_to(d: Duration) -> Wait {
        if d.is_zero() {
            Wait::Never
        } else {
            Wait::UpTo(d)
        }
    }
}

/// The permits and counters behind every clone of one limiter.
#[derive(Debug)]
pub(crate) struct Gate {
    pub(crate) semaphore: Arc<Semaphore>,
    /// The limit in force (fixed, or the adaptive limiter's current value).
    pub(crate) limit: AtomicUsize,
    /// Callers currently queued for a permit.
    pub(crate) waiting: AtomicUsize,
    /// Calls refused with [`Overloaded`] since the limiter was built.
    pub(crate) rejected: AtomicU64,
}

impl Gate {
    pub(crate) fn new(limit: usize) -> Gate {
        Gate {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            waiting: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn reject(&self, waited: Duration) -> Overloaded {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        let limit = self.limit.load(Ordering::Relaxed);
        trace_event!(DEBUG, limit, waited = ?waited, "concurrency limit: call rejected");
        Overloaded::new(limit, waited)
    }
}

type WaitFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, Overloaded>> + Send + Sync>>;

/// The per-service half of acquiring a permit: idle, or queued.
///
/// Dropping it while queued gives the caller's place in the queue back
/// (tokio's semaphore removes the waiter), so cancellation leaks nothing.
#[derive(Default)]
pub(crate) enum Acquire {
    #[default]
    Idle,
    Waiting(WaitFuture),
}

impl std::fmt::Debug for Acquire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Acquire::Idle => f.write_str("Idle"),
            Acquire::Waiting(_) => f.write_str("Waiting"),
        }
    }
}

/// Decrements the `waiting` counter however the wait ends.
struct WaitingGuard(Arc<Gate>);

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Acquire {
    /// Polls for a permit under `wait`. The fast path (a free permit) does
    /// not allocate; queueing boxes one future for the whole wait.
    #[inline]
    pub(crate) fn poll_acquire(
        &mut self,
        gate: &Arc<Gate>,
        wait: Wait,
        cx: &mut Context<'_>,
    ) -> Poll<Result<OwnedSemaphorePermit, Overloaded>> {
        if let Acquire::Idle = self {
            match gate.semaphore.clone().try_acquire_owned() {
                Ok(permit) => return Poll::Ready(Ok(permit)),
                Err(TryAcquireError::Closed) => {
                    // We never close our semaphores; refuse rather than panic.
                    return Poll::Ready(Err(gate.reject(Duration::ZERO)));
                }
                Err(TryAcquireError::NoPermits) => {}
            }
            if wait == Wait::Never {
                return Poll::Ready(Err(gate.reject(Duration::ZERO)));
            }
            *self = Acquire::Waiting(Self::queue(gate.clone(), wait));
        }
        let Acquire::Waiting(fut) = self else {
            unreachable!("set to Waiting above")
        };
        let out = std::task::ready!(fut.as_mut().poll(cx));
        *self = Acquire::Idle;
        Poll::Ready(out)
    }

    fn queue(gate: Arc<Gate>, wait: Wait) -> WaitFuture {
        gate.waiting.fetch_add(1, Ordering::Relaxed);
        let guard = WaitingGuard(gate);
        Box::pin(async move {
            let started = Instant::now();
            let sem = guard.0.semaphore.clone();
            let acquired = match wait {
                Wait::UpTo(max) => match tokio::time::timeout(max, sem.acquire_owned()).await {
                    Ok(acquired) => acquired,
                    Err(_elapsed) => return Err(guard.0.reject(started.elapsed())),
                },
                Wait::Forever | Wait::Never => sem.acquire_owned().await,
            };
            acquired.map_err(|_closed| guard.0.reject(started.elapsed()))
        })
    }
}

/// A snapshot of a limiter's counters, from `stats()`.
///
/// Every clone of a limited service, and the layer that made them, see the
/// same numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LimitStats {
    /// The limit in force: fixed, or the adaptive limiter's current value.
    pub limit: usize,
    /// Permits held right now: reserved by `poll_ready`, held by running
    /// calls, or (with `hold_until_body_end`) by unread response bodies.
    pub in_flight: usize,
    /// Callers queued for a permit right now.
    pub waiting: usize,
    /// Calls refused with [`Overloaded`] since the limiter was built.
    pub rejected: u64,
}
