//! The service: admission in `poll_ready`, the call in `call`.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::BoxError;
use tower_service::Service;

use super::core::{Admit, Core};
use super::error::Open;
use super::future::{Guard, ResponseFuture, Shard};
use super::handle::CircuitBreakerHandle;
use super::stats::CircuitBreakerStats;
use super::ticket::Ticket;
use crate::classify::Classify;
use crate::sync::Spaced;

/// The admission a service holds between `poll_ready` and `call`, packed
/// in one word (`NO_PERMIT`, `REJECTED`, or `GO | ticket bits`) so the hot
/// path moves 8 bytes, not an enum with an error inside.
const NO_PERMIT: u64 = 0;
const GO: u64 = 1 << 62;
const REJECTED: u64 = 1 << 63;

/// A service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// - **Closed**: `poll_ready` waits for the inner service; the call goes
///   through and its outcome is recorded.
/// - **Open**: `poll_ready` is ready at once, without polling the inner
///   service, and `call` returns a future that fails with [`Open`] without
///   calling it.
/// - **Half-open**: `poll_ready` takes one of the probe slots (or, when all
///   are taken, behaves as open) and keeps it until `call`; dropping the
///   service or the response future gives the slot back.
///
/// Clones share the breaker.
pub struct CircuitBreaker<S, C = crate::classify::DefaultClassify> {
    inner: S,
    shard: Arc<Spaced<Shard<C>>>,
    permit: u64,
    /// Why, when `permit` is `REJECTED`.
    rejection: Option<Open>,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn new(inner: S, core: Arc<Core>, classify: C) -> Self {
        let stripe = core.stripe();
        CircuitBreaker {
            inner,
            shard: Arc::new(Spaced::new(Shard {
                core,
                classify,
                stripe,
            })),
            permit: NO_PERMIT,
            rejection: None,
        }
    }

    /// A handle on the breaker this service shares with its layer.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shard.core.clone())
    }

    /// A snapshot of the breaker's state and counters (shared with the
    /// layer and every clone); the same as `self.handle().stats()`.
    pub fn stats(&self) -> CircuitBreakerStats {
        self.shard.core.stats(&Instant::now)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn release(&mut self) {
        let permit = std::mem::replace(&mut self.permit, NO_PERMIT);
        if permit & GO != 0 {
            self.shard.core.release(Ticket::from_bits(permit));
        }
    }

    #[inline]
    fn admit(&mut self) -> u64 {
        match self.shard.core.admit(&Instant::now) {
            Admit::Go(t) => GO | t.bits(),
            Admit::Reject(open) => {
                self.rejection = Some(open);
                REJECTED
            }
        }
    }

    #[cold]
    fn reject<F>(&mut self) -> ResponseFuture<F, C> {
        self.shard.core.rejected(self.shard.stripe);
        ResponseFuture::rejected(self.rejection.take().unwrap_or_else(Open::probes_busy))
    }
}

#[cfg(feature = "redis")]
impl<S: Clone, C> CircuitBreaker<S, C> {
    /// `poll_ready` and `call` in one step, through `&self`: admits the
    /// call (or fails it with [`Open`]) and calls a clone of the inner
    /// service, with the same admission and recording as the two. For a
    /// crate-internal inner service that is always ready and cheap to
    /// clone (the Redis link's), so a call costs no clone of the breaker.
    pub(crate) fn call_now<Req>(&self, req: Req) -> ResponseFuture<S::Future, C>
    where
        S: Service<Req>,
    {
        let shard = &self.shard;
        let core = &shard.core;
        match core.admit(&Instant::now) {
            Admit::Go(ticket) => {
                let start = if core.times_calls() {
                    core.nanos(Instant::now()) + 1
                } else {
                    0
                };
                let fut = self.inner.clone().call(req);
                ResponseFuture::called(fut, Guard::new(shard.clone(), ticket, start))
            }
            Admit::Reject(open) => {
                core.rejected(shard.stripe);
                ResponseFuture::rejected(open)
            }
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone shares the breaker but not this service's admission.
        CircuitBreaker::new(
            self.inner.clone(),
            self.shard.core.clone(),
            self.shard.classify.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.shard.core)
            .finish()
    }
}

impl<S, C> Drop for CircuitBreaker<S, C> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit & GO != 0 && !self.shard.core.still_valid(Ticket::from_bits(self.permit)) {
            // Admitted earlier, but the breaker has moved since (it may have
            // opened while we waited for the inner service): decide again.
            self.release();
        }
        if self.permit == NO_PERMIT {
            self.permit = self.admit();
        }
        if self.permit == REJECTED {
            // Open: no need for the inner service to be ready to fail fast.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.release();
                Poll::Ready(Err(e.into()))
            }
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let permit = std::mem::replace(&mut self.permit, NO_PERMIT);
        let mut ticket = Ticket::from_bits(permit);
        // The hot path: admitted, and the breaker has not moved since.
        if permit & GO == 0 || !self.shard.core.still_valid(ticket) {
            if permit & GO != 0 {
                self.shard.core.release(ticket);
            }
            // Rejected in `poll_ready`, or the breaker moved (or `call` came
            // without `poll_ready`): decide again.
            let again = if permit == REJECTED {
                REJECTED
            } else {
                self.admit()
            };
            if again == REJECTED {
                return self.reject();
            }
            ticket = Ticket::from_bits(again);
        }
        let core = &self.shard.core;
        let start = if core.times_calls() {
            core.nanos(Instant::now()) + 1
        } else {
            0
        };
        // The inner call first, then the guard straight into the future
        // (building the guard first would park it on the stack and copy it).
        let fut = self.inner.call(req);
        ResponseFuture::called(fut, Guard::new(self.shard.clone(), ticket, start))
    }
}
