//! The adaptive service.

use std::fmt;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::future::{FutureKind, ResponseFuture};
use super::shared::{Permit, Shared};
use crate::classify::{Classify, DefaultClassify};
use crate::limit::gate::{Acquire, LimitStats, Wait};
use crate::limit::Overloaded;
use crate::BoxError;

/// A service under an adaptive concurrency limit; made by
/// [`AdaptiveLimitLayer`](super::AdaptiveLimitLayer). Clones share the limit.
pub struct AdaptiveLimit<S, C = DefaultClassify> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) wait: Wait,
    pub(super) classify: C,
    pub(super) permit: Option<Permit>,
    pub(super) rejected: Option<Overloaded>,
    pub(super) acquire: Acquire,
}

impl<S, C> AdaptiveLimit<S, C> {
    /// A snapshot of the shared counters and the current limit.
    pub fn stats(&self) -> LimitStats {
        self.shared.stats()
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
            shared: self.shared.clone(),
            wait: self.wait,
            classify: self.classify.clone(),
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLimit<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("inner", &self.inner)
            .field("stats", &self.shared.stats())
            .field("has_permit", &self.permit.is_some())
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
        if self.permit.is_none() {
            if self.rejected.is_some() {
                return Poll::Ready(Ok(()));
            }
            match ready!(self.acquire.poll_acquire(&self.shared.gate, self.wait, cx)) {
                Ok(permit) => self.permit = Some(Permit::new(permit, self.shared.clone())),
                Err(overloaded) => {
                    self.rejected = Some(overloaded);
                    return Poll::Ready(Ok(()));
                }
            }
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                self.permit = None;
                Poll::Ready(Err(e.into()))
            }
            other => other.map_err(Into::into),
        }
    }

    /// # Panics
    ///
    /// When called without a successful `poll_ready` first (the `Service`
    /// contract).
    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(permit) = self.permit.take() {
            let future = self.inner.call(req);
            return ResponseFuture {
                kind: FutureKind::Called {
                    future,
                    permit: Some(permit),
                    started: Instant::now(),
                    classify: self.classify.clone(),
                },
            };
        }
        let overloaded = self.rejected.take().expect(
            "AdaptiveLimit::call without poll_ready: poll_ready must return Ready(Ok) first",
        );
        ResponseFuture {
            kind: FutureKind::Overloaded {
                error: Some(overloaded),
            },
        }
    }
}
