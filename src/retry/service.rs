//! The [`Retry`] service.

use std::fmt;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use super::replay::Replay;
use super::shared::{Config, RetryStats, Slot};
use crate::classify::{Classify, DefaultClassify};
use crate::time;

/// Retries the calls its classifier calls a failure. Made by
/// [`RetryLayer`](super::RetryLayer).
///
/// - The response and error types are the inner service's: after the last
///   attempt the caller gets that attempt's result unchanged.
/// - `poll_ready` is the inner service's; every retry waits for the inner
///   service to be ready again before it is sent. If that readiness check
///   fails, its error is returned (as `tower::retry` does): the service
///   can no longer take requests.
/// - The inner service must be `Clone` (each response future keeps a clone
///   to send retries through), the request [`Replay`] and the classifier
///   `Clone` (each future carries its own copy).
/// - Clones share the layer's budget and [`RetryStats`]. Cloning a handle
///   (once per connection in hyper, axum or tonic) registers a counter
///   with the layer under a short lock; calls never lock.
pub struct Retry<S, C = DefaultClassify> {
    inner: S,
    slot: Slot,
    config: Config,
    classify: C,
}

impl<S, C> Retry<S, C> {
    pub(crate) fn new(inner: S, slot: Slot, config: Config, classify: C) -> Self {
        Retry {
            inner,
            slot,
            config,
            classify,
        }
    }

    /// A snapshot of the attempts, retries and budget refusals of this
    /// service, its clones, and every other service made by the same layer.
    pub fn stats(&self) -> RetryStats {
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

impl<S: Clone, C: Clone> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            slot: self.slot.core().slot(),
            config: self.config,
            classify: self.classify.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S, C, Req> Service<Req> for Retry<S, C>
where
    S: Service<Req> + Clone,
    Req: Replay,
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
        let copy = if self.config.max_attempts > 1 {
            req.replay()
        } else {
            None
        };
        let deadline = self
            .config
            .deadline
            .map(|d| time::deadline(Instant::now(), d));
        self.slot.count_first_attempt();
        // Call the instance that was driven ready; the future keeps it for
        // retries and `self` continues with a fresh clone (the tower idiom
        // for services whose readiness is per handle).
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let future = ready.call(req);
        ResponseFuture::new(
            future,
            ready,
            copy,
            self.config,
            self.classify.clone(),
            self.slot.core().id(),
            deadline,
        )
    }
}
