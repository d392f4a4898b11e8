//! Internal: the per-service half of a limit, shared by the fixed and the
//! adaptive limiter: the permit `poll_ready` reserved (or the refusal the
//! next `call` answers with) and the queued wait for a permit.
//!
//! The shared half, the [`Gate`], sits below: a service is a
//! [`Reservation`] on some [`Limiter`] plus the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, TryAcquireError};
use tokio::time::Instant;
use tower_service::Service;

use super::error::Overloaded;
use super::gate::{Gate, LimitStats, Wait};
use crate::time;
use crate::trace::record;
use crate::BoxError;

/// The state every clone of one limiter shares: where a [`Reservation`]
/// takes its permits from.
pub(super) trait Limiter: Clone {
    /// What a service holds from `poll_ready` until its call completes.
    type Permit;

    /// The semaphore and counters.
    fn gate(&self) -> &Arc<Gate>;

    /// Turns a semaphore permit into this limiter's permit.
    fn grant(&self, permit: OwnedSemaphorePermit) -> Self::Permit;

    /// Takes a free permit at once, if there is one (the fast path of
    /// `poll_ready`).
    #[inline]
    fn try_grant(&self) -> Result<Self::Permit, TryAcquireError> {
        let permit = self.gate().semaphore.clone().try_acquire_owned()?;
        Ok(self.grant(permit))
    }

    /// A snapshot of the counters.
    fn stats(&self) -> LimitStats;
}

/// The fixed limit: the gate alone, and the semaphore's own permit.
impl Limiter for Arc<Gate> {
    type Permit = super::gate::Permit;

    #[inline]
    fn gate(&self) -> &Arc<Gate> {
        self
    }

    #[inline]
    fn grant(&self, permit: OwnedSemaphorePermit) -> super::gate::Permit {
        #[cfg(feature = "metrics")]
        let permit = super::gate::Permit::new(permit, self.clone());
        permit
    }

    /// With metrics, no semaphore `Arc` is cloned: the permit holds the
    /// gate's, as it must to sample the gauge when given back.
    #[cfg(feature = "metrics")]
    #[inline]
    fn try_grant(&self) -> Result<super::gate::Permit, TryAcquireError> {
        super::gate::Permit::try_take(self)
    }

    fn stats(&self) -> LimitStats {
        Gate::stats(self)
    }
}

/// One service's reservation on a limiter: idle, holding a permit, holding
/// a refusal, or queued for a permit.
///
/// A clone shares the limiter but reserves nothing: each clone takes its
/// own permit in `poll_ready`.
pub(super) struct Reservation<L: Limiter> {
    limiter: L,
    wait: Wait,
    permit: Option<L::Permit>,
    rejected: Option<Overloaded>,
    acquire: Acquire,
}

impl<L: Limiter> Reservation<L> {
    pub(super) fn new(limiter: L, wait: Wait) -> Self {
        Reservation {
            limiter,
            wait,
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
        }
    }

    /// The shared state.
    pub(super) fn limiter(&self) -> &L {
        &self.limiter
    }

    /// `poll_ready` of a limited service: reserves a permit under the
    /// waiting policy, then polls `inner`.
    ///
    /// A refusal is not an error here: it returns `Ready(Ok)` and the next
    /// [`take`](Self::take) hands it over, so it travels as the call's
    /// response and the inner service is never called. A failed inner
    /// service gives its permit back.
    #[inline]
    pub(super) fn poll_ready<S, Req>(
        &mut self,
        inner: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), BoxError>>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        if self.permit.is_none() {
            if self.rejected.is_some() {
                // The next `call` answers `Overloaded` without the inner service.
                return Poll::Ready(Ok(()));
            }
            match ready!(self.acquire.poll_acquire(&self.limiter, self.wait, cx)) {
                Ok(permit) => self.permit = Some(permit),
                Err(overloaded) => {
                    self.rejected = Some(overloaded);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // A failed inner service should not sit on a permit.
                self.permit = None;
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    /// Hands the reservation to `call`: the permit, or the refusal to
    /// answer with.
    ///
    /// # Panics
    ///
    /// When `poll_ready` did not return `Ready(Ok)` first (the `Service`
    /// contract), as tower's limiter does; `service` names the caller.
    #[inline]
    pub(super) fn take(&mut self, service: &'static str) -> Result<L::Permit, Overloaded> {
        if let Some(permit) = self.permit.take() {
            return Ok(permit);
        }
        match self.rejected.take() {
            Some(overloaded) => Err(overloaded),
            None => not_ready(service),
        }
    }
}

#[cold]
#[inline(never)]
fn not_ready(service: &'static str) -> ! {
    panic!("{service}::call without poll_ready: poll_ready must return Ready(Ok) first")
}

impl<L: Limiter> Clone for Reservation<L> {
    /// Shares the limiter; holds no permit.
    fn clone(&self) -> Self {
        Reservation::new(self.limiter.clone(), self.wait)
    }
}

impl<L: Limiter> fmt::Debug for Reservation<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("stats", &self.limiter.stats())
            .field("wait", &self.wait)
            .field("has_permit", &self.permit.is_some())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Waiting for a permit.

type WaitFuture =
    Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, Overloaded>> + Send + Sync>>;

/// Acquiring a permit: idle, or queued.
///
/// Dropping it while queued gives the caller's place in the queue back
/// (tokio's semaphore removes the waiter), so cancellation leaks nothing.
#[derive(Default)]
enum Acquire {
    #[default]
    Idle,
    Waiting(WaitFuture),
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
    fn poll_acquire<L: Limiter>(
        &mut self,
        limiter: &L,
        wait: Wait,
        cx: &mut Context<'_>,
    ) -> Poll<Result<L::Permit, Overloaded>> {
        let gate = limiter.gate();
        if let Acquire::Idle = self {
            match limiter.try_grant() {
                Ok(permit) => {
                    gate.sample_in_flight();
                    return Poll::Ready(Ok(permit));
                }
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
        let out = ready!(fut.as_mut().poll(cx));
        *self = Acquire::Idle;
        Poll::Ready(out.map(|permit| limiter.grant(permit)))
    }

    fn queue(gate: Arc<Gate>, wait: Wait) -> WaitFuture {
        gate.waiting.fetch_add(1, Ordering::Relaxed);
        let guard = WaitingGuard(gate);
        Box::pin(async move {
            let started = Instant::now();
            let sem = guard.0.semaphore.clone();
            let acquired = match wait {
                Wait::UpTo(max) => {
                    match tokio::time::timeout(time::capped(max), sem.acquire_owned()).await {
                        Ok(acquired) => acquired,
                        Err(_elapsed) => return Err(guard.0.reject(started.elapsed())),
                    }
                }
                Wait::Forever | Wait::Never => sem.acquire_owned().await,
            };
            let acquired = acquired.map_err(|_closed| guard.0.reject(started.elapsed()))?;
            record!(guard.0.metrics, |m| m
                .wait
                .record(crate::metrics::Elapsed(Some(started))));
            guard.0.sample_in_flight();
            Ok(acquired)
        })
    }
}
