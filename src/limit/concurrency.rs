//! The fixed concurrency limit: layer, service, response future.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_layer::Layer;
use tower_service::Service;

use super::body::LimitBody;
use super::gate::{Acquire, Gate, LimitStats, Wait};
use super::Overloaded;
use crate::{BoxError, ConfigError};

mod sealed {
    pub trait Sealed {}
}

/// When a call gives its permit back. Implemented by [`ReleaseOnResponse`]
/// (the default) and [`HoldUntilBodyEnd`]; sealed.
pub trait ReleasePolicy<Res>: sealed::Sealed {
    /// The response type the limited service returns.
    type Response;

    /// Pairs the inner service's response with the call's permit.
    #[doc(hidden)]
    fn attach(response: Res, permit: Option<OwnedSemaphorePermit>) -> Self::Response;
}

/// The default [`ReleasePolicy`]: the permit is released as soon as the
/// response future completes (or is dropped).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReleaseOnResponse;

/// [`ReleasePolicy`] for `http::Response<B>`: the permit travels with the
/// response body ([`LimitBody`]) and is released when the body has been read
/// to its end, fails, or is dropped. Chosen with
/// [`ConcurrencyLimitLayer::hold_until_body_end`].
#[derive(Clone, Copy, Debug, Default)]
pub struct HoldUntilBodyEnd;

impl sealed::Sealed for ReleaseOnResponse {}
impl sealed::Sealed for HoldUntilBodyEnd {}

impl<Res> ReleasePolicy<Res> for ReleaseOnResponse {
    type Response = Res;

    #[inline]
    fn attach(response: Res, permit: Option<OwnedSemaphorePermit>) -> Res {
        drop(permit);
        response
    }
}

impl<B: http_body::Body> ReleasePolicy<http::Response<B>> for HoldUntilBodyEnd {
    type Response = http::Response<LimitBody<B>>;

    fn attach(
        response: http::Response<B>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> http::Response<LimitBody<B>> {
        response.map(|body| LimitBody::new(body, permit))
    }
}

/// Applies a fixed concurrency limit to a service: at most `limit` calls
/// run at once across every service this layer makes and all their clones.
///
/// The permit is reserved in `poll_ready` and released when the response
/// future completes or is dropped. Callers that find every permit taken
/// queue first come, first served, and by default wait as long as it takes
/// (as tower's `ConcurrencyLimit` does); [`max_wait`](Self::max_wait) and
/// [`reject_when_full`](Self::reject_when_full) bound the wait and fail with
/// [`Overloaded`] instead.
///
/// Unlike tower's layer, the permits live in the layer: every service it
/// makes shares one limit (an axum `Router` applying the layer to each route
/// still gets one limit), and [`stats`](Self::stats) reports for all of
/// them. A fresh limit comes from a fresh layer.
pub struct ConcurrencyLimitLayer<P = ReleaseOnResponse> {
    gate: Arc<Gate>,
    wait: Wait,
    _policy: PhantomData<fn() -> P>,
}

impl<P> Clone for ConcurrencyLimitLayer<P> {
    fn clone(&self) -> Self {
        ConcurrencyLimitLayer {
            gate: self.gate.clone(),
            wait: self.wait,
            _policy: PhantomData,
        }
    }
}

impl<P> fmt::Debug for ConcurrencyLimitLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitLayer")
            .field("limit", &self.gate.limit.load(Ordering::Relaxed))
            .field("wait", &self.wait)
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

impl ConcurrencyLimitLayer {
    /// At most `limit` calls at once; callers wait for a permit as long as
    /// it takes.
    ///
    /// A `limit` of 0 would block every call forever, so it is raised to 1,
    /// and values above [`Semaphore::MAX_PERMITS`] are lowered to it; use
    /// [`builder`](Self::builder) to get a [`ConfigError`] instead.
    pub fn new(limit: usize) -> Self {
        Self::with(limit.clamp(1, Semaphore::MAX_PERMITS), Wait::Forever)
    }

    /// A builder that validates the limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::limit::ConcurrencyLimitLayer;
    ///
    /// let layer = ConcurrencyLimitLayer::builder()
    ///     .limit(10)
    ///     .max_wait(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.stats().limit, 10);
    ///
    /// let err = ConcurrencyLimitLayer::builder().limit(0).build().unwrap_err();
    /// assert_eq!(err.field(), "limit");
    /// ```
    pub fn builder() -> ConcurrencyLimitBuilder {
        ConcurrencyLimitBuilder {
            limit: None,
            wait: Wait::Forever,
        }
    }

    fn with(limit: usize, wait: Wait) -> Self {
        ConcurrencyLimitLayer {
            gate: Arc::new(Gate::new(limit)),
            wait,
            _policy: PhantomData,
        }
    }

    /// Keeps each call's permit until its `http::Response` body has been read
    /// to the end, has failed, or is dropped, rather than releasing it when
    /// the response head arrives.
    ///
    /// The service's response becomes `http::Response<`[`LimitBody<B>`]`>`.
    /// Use it when the body is what costs (a streamed download, a proxied
    /// response): the limit then bounds bodies in flight, not just headers.
    pub fn hold_until_body_end(self) -> ConcurrencyLimitLayer<HoldUntilBodyEnd> {
        ConcurrencyLimitLayer {
            gate: self.gate,
            wait: self.wait,
            _policy: PhantomData,
        }
    }
}

impl<P> ConcurrencyLimitLayer<P> {
    /// Waits at most `max_wait` for a permit; after that the call fails with
    /// [`Overloaded`] and gives its place in the queue back. A zero duration
    /// is the same as [`reject_when_full`](Self::reject_when_full).
    ///
    /// The refusal is the response of the next `call` (`poll_ready` returns
    /// `Ready(Ok)` so that the error travels like any other response error
    /// and the inner service is never called), as tower's `LoadShed` does.
    /// A bounded wait uses the tokio timer: it must run inside a tokio
    /// runtime with time enabled (the fast path, a free permit, does not).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// Never waits: when every permit is taken the call fails at once with
    /// [`Overloaded`] (load shedding).
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// A snapshot of the shared counters.
    pub fn stats(&self) -> LimitStats {
        fixed_stats(&self.gate)
    }
}

fn fixed_stats(gate: &Gate) -> LimitStats {
    let limit = gate.limit.load(Ordering::Relaxed);
    LimitStats {
        limit,
        in_flight: limit.saturating_sub(gate.semaphore.available_permits()),
        waiting: gate.waiting.load(Ordering::Relaxed),
        rejected: gate.rejected.load(Ordering::Relaxed),
    }
}

impl<S, P> Layer<S> for ConcurrencyLimitLayer<P> {
    type Service = ConcurrencyLimit<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            gate: self.gate.clone(),
            wait: self.wait,
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
            _policy: PhantomData,
        }
    }
}

/// Builds a [`ConcurrencyLimitLayer`], validating the limit.
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitBuilder {
    limit: Option<usize>,
    wait: Wait,
}

impl ConcurrencyLimitBuilder {
    /// The most calls allowed at once (required; 1 to [`Semaphore::MAX_PERMITS`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// See [`ConcurrencyLimitLayer::max_wait`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// See [`ConcurrencyLimitLayer::reject_when_full`].
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// The layer, or a [`ConfigError`] naming `limit` when it is missing,
    /// zero or too large.
    pub fn build(self) -> Result<ConcurrencyLimitLayer, ConfigError> {
        let allowed = || format!("must be between 1 and {}", Semaphore::MAX_PERMITS);
        match self.limit {
            None => Err(ConfigError::new(
                "concurrency_limit",
                "limit",
                "unset",
                allowed(),
            )),
            Some(n) if n == 0 || n > Semaphore::MAX_PERMITS => Err(ConfigError::new(
                "concurrency_limit",
                "limit",
                n.to_string(),
                allowed(),
            )),
            Some(n) => Ok(ConcurrencyLimitLayer::with(n, self.wait)),
        }
    }
}

/// A service with a fixed concurrency limit; made by [`ConcurrencyLimitLayer`].
///
/// Clones share the limit; each clone reserves its own permit in
/// `poll_ready`.
pub struct ConcurrencyLimit<S, P = ReleaseOnResponse> {
    inner: S,
    gate: Arc<Gate>,
    wait: Wait,
    permit: Option<OwnedSemaphorePermit>,
    rejected: Option<Overloaded>,
    acquire: Acquire,
    _policy: PhantomData<fn() -> P>,
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

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<OwnedSemaphorePermit>,
        },
        Overloaded {
            error: Option<Overloaded>,
        },
    }
}

pin_project! {
    /// The response future of [`ConcurrencyLimit`]: holds the call's permit
    /// until the inner future completes or this future is dropped.
    pub struct ResponseFuture<F, P = ReleaseOnResponse> {
        #[pin]
        kind: Kind<F>,
        _policy: PhantomData<fn() -> P>,
    }
}

impl<F, P> ResponseFuture<F, P> {
    fn called(future: F, permit: OwnedSemaphorePermit) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
            _policy: PhantomData,
        }
    }

    fn overloaded(error: Overloaded) -> Self {
        ResponseFuture {
            kind: Kind::Overloaded { error: Some(error) },
            _policy: PhantomData,
        }
    }
}

impl<F, P> fmt::Debug for ResponseFuture<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, P, Res, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    P: ReleasePolicy<Res>,
{
    type Output = Result<P::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => match ready!(future.poll(cx)) {
                Ok(response) => Poll::Ready(Ok(P::attach(response, permit.take()))),
                Err(e) => {
                    drop(permit.take());
                    Poll::Ready(Err(e.into()))
                }
            },
            KindProj::Overloaded { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
