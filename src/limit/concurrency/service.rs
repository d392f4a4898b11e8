//! The fixed-limit service.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::sync::OwnedSemaphorePermit;
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{fixed_stats, ConcurrencyLimitLayer};
use super::policy::{ReleaseOnResponse, ReleasePolicy};
use crate::limit::gate::{Acquire, Gate, LimitStats, Wait};
use crate::limit::Overloaded;
use crate::BoxError;

/// A service with a fixed concurrency limit; made by [`ConcurrencyLimitLayer`].
///
/// Clones share the limit; each clone reserves its own permit in
/// `poll_ready`.
pub struct ConcurrencyLimit<S, P = ReleaseOnResponse> {
    pub(super) inner: S,
    pub(super) gate: Arc<Gate>,
    pub(super) wait: Wait,
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) rejected: Option<Overloaded>,
    pub(super) acquire: Acquire,
    pub(super) _policy: PhantomData<fn() -> P>,
}

impl<S> ConcurrencyLimit<S> {
    /// Wraps `inner` with its own limit of `limit` calls (see
    /// [`ConcurrencyLimitLayer::new`]).
    pub fn new(inner: S, limit: usize) -> Self {
        ConcurrencyLimitLayer::new(limit).layer(inner)
    }
}

impl<S, P> ConcurrencyLimit<S, P> {
    /// A snapshot of the shared counters.
    pub fn stats(&self) -> LimitStats {
        fixed_stats(&self.gate)
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
            gate: self.gate.clone(),
            wait: self.wait,
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
            _policy: PhantomData,
        }
    }
}

impl<S: fmt::Debug, P> fmt::Debug for ConcurrencyLimit<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("limit", &self.gate.limit.load(Ordering::Relaxed))
            .field("wait", &self.wait)
            .field("has_permit", &self.permit.is_some())
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
        if self.permit.is_none() {
            if self.rejected.is_some() {
                // The next `call` answers `Overloaded` without the inner service.
                return Poll::Ready(Ok(()));
            }
            match ready!(self.acquire.poll_acquire(&self.gate, self.wait, cx)) {
                Ok(permit) => self.permit = Some(permit),
                Err(overloaded) => {
                    self.rejected = Some(overloaded);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                // A failed inner service should not sit on a permit.
                self.permit = None;
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    /// # Panics
    ///
    /// When called without a successful `poll_ready` first (the `Service`
    /// contract), as tower's limiter does.
    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(permit) = self.permit.take() {
            return ResponseFuture::called(self.inner.call(req), permit);
        }
        let overloaded = self.rejected.take().expect(
            "ConcurrencyLimit::call without poll_ready: poll_ready must return Ready(Ok) first",
        );
        ResponseFuture::overloaded(overloaded)
    }
}
