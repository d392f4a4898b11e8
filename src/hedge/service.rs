//! The [`Hedge`] service.

use std::fmt;
use std::task::{Context, Poll};

use tower_service::Service;

use super::eligible::{Eligible, Idempotent};
use super::future::ResponseFuture;
use super::shared::{Config, HedgeStats, Slot};
use crate::classify::{Classify, DefaultClassify};
use crate::retry::Replay;

/// Sends hedged attempts for slow, eligible requests. Made by
/// [`HedgeLayer`](super::HedgeLayer); see the [module docs](super).
///
/// - The response and error types are the inner service's: the caller
///   gets one attempt's result unchanged.
/// - `poll_ready` is the inner service's; every hedged attempt waits for
///   the inner service to be ready again before it is sent (the future
///   holds a clone of the inner service for that).
/// - The inner service must be `Clone`, the request [`Replay`] and the
///   eligibility rule and classifier `Clone`.
/// - Clones share the layer's budget, latency estimate and [`HedgeStats`].
///   Cloning a handle (once per connection in hyper, axum or tonic)
///   registers its counters with the layer under a short lock; calls never
///   lock.
pub struct Hedge<S, E = Idempotent, C = DefaultClassify> {
    inner: S,
    slot: Slot,
    config: Config,
    eligible: E,
    classify: C,
}

impl<S, E, C> Hedge<S, E, C> {
    pub(crate) fn new(inner: S, slot: Slot, config: Config, eligible: E, classify: C) -> Self {
        Hedge {
            inner,
            slot,
            config,
            eligible,
            classify,
        }
    }

    /// A snapshot of the calls, hedges and outcomes of this service, its
    /// clones, and every other service made by the same layer.
    pub fn stats(&self) -> HedgeStats {
        self.slot.core().stats()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, E: Clone, C: Clone> Clone for Hedge<S, E, C> {
    fn clone(&self) -> Self {
        Hedge {
            inner: self.inner.clone(),
            slot: self.slot.core().slot(),
            config: self.config,
            eligible: self.eligible.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, E, C> fmt::Debug for Hedge<S, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S, E, C, Req> Service<Req> for Hedge<S, E, C>
where
    S: Service<Req> + Clone,
    Req: Replay,
    E: Eligible<Req>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Req, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        self.slot.count_call();
        let copy = if self.eligible.eligible(&req) {
            req.replay()
        } else {
            None
        };
        let id = self.slot.core().id();
        let classify = self.classify.clone();
        if copy.is_none() {
            // Sent once, never timed: no clone of the service either.
            self.slot.count_ineligible();
            let future = self.inner.call(req);
            return ResponseFuture::new(future, None, None, self.config, classify, id);
        }
        // Call the instance that was driven ready; the future keeps it for
        // hedges and `self` continues with a fresh clone (the tower idiom
        // for services whose readiness is per handle).
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let future = ready.call(req);
        ResponseFuture::new(future, Some(ready), copy, self.config, classify, id)
    }
}
