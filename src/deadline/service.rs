//! The [`Timeout`] service.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::carry::{Carry, TaskLocal};
use super::future::ResponseFuture;
use super::shared::{current, earliest, in_scope, Deadline, Meter};
use crate::time;
use crate::BoxError;

/// Fails a call that is not answered by its deadline, and makes that
/// deadline known to every layer below. Made by
/// [`TimeoutLayer`](super::TimeoutLayer); see the [module docs](super).
///
/// On each call the deadline is the tightest of: now plus the layer's
/// timeout, the deadline already in force ([`current`](super::current)),
/// and one the request carries (through `K`, a [`Carry`]). Then:
///
/// - if it has already passed, the call fails at once with
///   [`Elapsed`](super::Elapsed) (`sent() == false`) and the inner service
///   is not called;
/// - otherwise it is recorded on the request (for `http::Request` with
///   [`HttpExtensions`](super::HttpExtensions): in its extensions), the
///   inner service's `call` and every poll of its future run with it in
///   force, and the call fails with [`Elapsed`](super::Elapsed)
///   (`sent() == true`) when it passes, dropping the inner future.
///
/// Errors are [`BoxError`]s, as tower's `Timeout`. `poll_ready` is the
/// inner service's. `call` arms a tokio timer, so it needs a runtime with
/// time enabled (paused time works).
pub struct Timeout<S, K = TaskLocal> {
    inner: S,
    /// `None`: no limit of its own (only deadlines already in force).
    timeout: Option<Duration>,
    carry: K,
    meter: Meter,
}

impl<S, K> Timeout<S, K> {
    pub(crate) fn new(inner: S, timeout: Option<Duration>, carry: K, meter: Meter) -> Self {
        Timeout {
            inner,
            timeout,
            carry,
            meter,
        }
    }

    /// This layer's own time limit per call; `None` when it only passes on
    /// deadlines already in force.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
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

impl<S: Clone, K: Clone> Clone for Timeout<S, K> {
    fn clone(&self) -> Self {
        Timeout {
            inner: self.inner.clone(),
            timeout: self.timeout,
            carry: self.carry.clone(),
            meter: self.meter,
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug> fmt::Debug for Timeout<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("timeout", &self.timeout)
            .field("carry", &self.carry)
            .finish()
    }
}

impl<S, K, Req> Service<Req> for Timeout<S, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Carry<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Req) -> Self::Future {
        let now = Instant::now();
        let own = self.timeout.map(|t| Deadline::at(time::deadline(now, t)));
        let deadline = earliest(earliest(own, current()), self.carry.deadline(&req));
        let Some(deadline) = deadline else {
            return ResponseFuture::unbounded(self.inner.call(req));
        };
        if deadline.instant() <= now {
            crate::trace::trace_event!(DEBUG, "deadline: passed before the call started; not sent");
            crate::trace::record!(self.meter, |m| m.timeouts.increment(1));
            return ResponseFuture::expired();
        }
        self.carry.attach(&mut req, deadline);
        let allowed = deadline.instant() - now;
        let inner = &mut self.inner;
        let future = in_scope(deadline, || inner.call(req));
        ResponseFuture::bounded(future, deadline, allowed, self.meter)
    }
}
