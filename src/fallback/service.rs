//! The [`Fallback`] service.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::{falls_back, ResponseFuture};
use super::hook::OnFallback;
use super::shared::{FallbackStats, Shared, Slot};
use super::strategy::Strategy;
use crate::classify::{Classify, DefaultClassify};

/// Answers the calls its classifier calls a failure with a fallback: a
/// value, a function of the failure, or a backup service. Made by
/// [`FallbackLayer`](super::FallbackLayer); see [the module docs](super).
///
/// - **Readiness.** `poll_ready` is the primary's: a call waits for the
///   primary to be ready, as any layer's does (put a limit with a bounded
///   wait or a timeout below to turn a long wait into a failure that falls
///   back). If the primary's `poll_ready` *fails* with an error that falls
///   back, this service reports itself ready anyway and answers the next
///   call from the fallback, with that error as the original failure: a
///   primary that can no longer take calls does not stand between the
///   caller and the backup. A backup service waits for its own readiness
///   inside the response future, never in `poll_ready`.
/// - Clones share the layer's strategy, hook and [`FallbackStats`].
pub struct Fallback<S, St, C = DefaultClassify, H = ()> {
    inner: S,
    shared: Arc<Shared<St, H>>,
    slot: Slot,
    classify: C,
    // The primary's failed readiness (its error type, boxed), answered by
    // the fallback on the next call.
    broken: Option<Box<dyn Any + Send>>,
}

impl<S, St, C, H> Fallback<S, St, C, H> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<St, H>>, classify: C) -> Self {
        let slot = shared.counters.slot();
        Fallback {
            inner,
            shared,
            slot,
            classify,
            broken: None,
        }
    }

    /// A snapshot of the layer's counters (shared by every service it made).
    pub fn stats(&self) -> FallbackStats {
        self.slot.counters().stats()
    }

    /// The primary service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The primary service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the primary service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St, C: Clone, H> Clone for Fallback<S, St, C, H> {
    fn clone(&self) -> Self {
        Fallback::new(
            self.inner.clone(),
            Arc::clone(&self.shared),
            self.classify.clone(),
        )
    }
}

impl<S: fmt::Debug, St, C, H> fmt::Debug for Fallback<S, St, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("inner", &self.inner)
            .field("stats", &self.stats())
            .field("primary_unready", &self.broken.is_some())
            .finish_non_exhaustive()
    }
}

impl<S, St, C, H, Req> Service<Req> for Fallback<S, St, C, H>
where
    S: Service<Req>,
    S::Error: Send + 'static,
    St: Strategy<Req, S::Response, S::Error> + Send + Sync + 'static,
    H: OnFallback<S::Response, S::Error> + Send + Sync + 'static,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, St, C, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.broken.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(e)) => {
                let failed: Result<S::Response, S::Error> = Err(e);
                let fall = falls_back(&self.classify, &failed);
                let Err(e) = failed else {
                    unreachable!("an Err was just made")
                };
                if fall {
                    self.broken = Some(Box::new(e));
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(e))
                }
            }
            other => other,
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.slot.count();
        let saved = St::save(&req);
        // A lone handle may be dropped while its call is in flight (as
        // `oneshot` does), taking the layer's state with it: then, and only
        // then, the future holds the state itself. A plain load decides.
        if Arc::strong_count(&self.shared) == 1 || self.broken.is_some() {
            return self.call_slow(req, saved);
        }
        let future = self.inner.call(req);
        ResponseFuture::primary(future, saved, self.classify.clone(), self.shared.id(), None)
    }
}

impl<S, St, C, H> Fallback<S, St, C, H> {
    /// A call from a lone handle, or after the primary's readiness failed.
    #[cold]
    #[inline(never)]
    fn call_slow<Req>(&mut self, req: Req, saved: St::Saved) -> ResponseFuture<S, Req, St, C, H>
    where
        S: Service<Req>,
        S::Error: Send + 'static,
        St: Strategy<Req, S::Response, S::Error>,
        C: Clone,
    {
        let id = self.shared.id();
        let hold = (Arc::strong_count(&self.shared) == 1).then(|| Arc::clone(&self.shared));
        let classify = self.classify.clone();
        if let Some(broken) = self.broken.take() {
            if let Ok(e) = broken.downcast::<S::Error>() {
                return ResponseFuture::failed(Err(*e), saved, classify, id, hold);
            }
        }
        let future = self.inner.call(req);
        ResponseFuture::primary(future, saved, classify, id, hold)
    }
}
