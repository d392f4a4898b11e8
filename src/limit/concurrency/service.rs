//! The fixed-limit service.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::ResponseFuture;
use super::policy::{ReleaseOnResponse, ReleasePolicy};
use crate::limit::gate::{Gate, LimitStats, Wait};
use crate::limit::reservation::{Limiter, Reservation};
use crate::BoxError;

/// A service with a fixed concurrency limit; made by
/// [`ConcurrencyLimitLayer`](super::ConcurrencyLimitLayer) or [`new`](Self::new).
///
/// Clones share the limit; each clone reserves its own permit in
/// `poll_ready`.
pub struct ConcurrencyLimit<S, P = ReleaseOnResponse> {
    inner: S,
    reservation: Reservation<Arc<Gate>>,
    _policy: PhantomData<fn() -> P>,
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner` with its own limit of `limit` calls; callers wait for
    /// a permit as long as it takes. As with
    /// [`ConcurrencyLimitLayer::new`](super::ConcurrencyLimitLayer::new), a
    /// `limit` of 0 is raised to 1 and values above
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS) are
    /// lowered to it.
    pub fn new(inner: S, limit: usize) -> Self {
        ConcurrencyLimit::with_gate(inner, Arc::new(Gate::clamped(limit)), Wait::Forever)
    }
}

impl<S, P> ConcurrencyLimit<S, P> {
    /// Wraps `inner` in the limit `gate`, shared with every other service
    /// built on it.
    pub(super) fn with_gate(inner: S, gate: Arc<Gate>, wait: Wait) -> Self {
        ConcurrencyLimit {
            inner,
            reservation: Reservation::new(gate, wait),
            _policy: PhantomData,
        }
    }

    /// A snapshot of the shared counters.
    pub fn stats(&self) -> LimitStats {
        self.reservation.limiter().stats()
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service (releasing any reserved permit).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, P> Clone for ConcurrencyLimit<S, P> {
    /// A clone shares the limit but holds no permit of its own.
    fn clone(&self) -> Self {
        ConcurrencyLimit {
            inner: self.inner.clone(),
            reservation: self.reservation.clone(),
            _policy: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for ConcurrencyLimit<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("reservation", &self.reservation)
            .finish()
    }
}

impl<S, P, Req> Service<Req> for ConcurrencyLimit<S, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    P: ReleasePolicy<S::Response>,
{
    type Response = P::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.reservation.poll_ready(&mut self.inner, cx)
    }

    /// # Panics
    ///
    /// When called without a successful `poll_ready` first (the `Service`
    /// contract), as tower's limiter does.
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.reservation.take("ConcurrencyLimit") {
            Ok(permit) => ResponseFuture::called(self.inner.call(req), permit),
            Err(overloaded) => ResponseFuture::overloaded(overloaded),
        }
    }
}
