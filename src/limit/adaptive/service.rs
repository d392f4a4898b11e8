//! The adaptive service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::ResponseFuture;
use super::shared::Shared;
use crate::classify::{Classify, DefaultClassify};
use crate::limit::gate::{LimitStats, Wait};
use crate::limit::reservation::{Limiter, Reservation};
use crate::BoxError;

/// A service under an adaptive concurrency limit; made by
/// [`AdaptiveLimitLayer`](super::AdaptiveLimitLayer). Clones share the limit;
/// each clone reserves its own permit in `poll_ready`.
pub struct AdaptiveLimit<S, C = DefaultClassify> {
    inner: S,
    reservation: Reservation<Arc<Shared>>,
    classify: C,
}

impl<S, C> AdaptiveLimit<S, C> {
    /// Wraps `inner` in the limiter `shared`, shared with every other
    /// service built on it.
    pub(super) fn with_shared(inner: S, shared: Arc<Shared>, wait: Wait, classify: C) -> Self {
        AdaptiveLimit {
            inner,
            reservation: Reservation::new(shared, wait),
            classify,
        }
    }

    /// A snapshot of the shared counters and the current limit.
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

impl<S: Clone, C: Clone> Clone for AdaptiveLimit<S, C> {
    /// A clone shares the limit but holds no permit of its own.
    fn clone(&self) -> Self {
        AdaptiveLimit {
            inner: self.inner.clone(),
            reservation: self.reservation.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLimit<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .field("reservation", &self.reservation)
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLimit<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.reservation.poll_ready(&mut self.inner, cx)
    }

    /// # Panics
    ///
    /// When called without a successful `poll_ready` first (the `Service`
    /// contract).
    fn call(&mut self, req: Req) -> Self::Future {
        match self.reservation.take("AdaptiveLimit") {
            Ok(permit) => {
                ResponseFuture::called(self.inner.call(req), permit, self.classify.clone())
            }
            Err(overloaded) => ResponseFuture::overloaded(overloaded),
        }
    }
}
