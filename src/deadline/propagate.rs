//! [`PropagateDeadlineLayer`]: the deadline in force, sent on as
//! `grpc-timeout` on outgoing `http::Request`s.

use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use super::grpc::{format_grpc_timeout, parse_grpc_timeout, GRPC_TIMEOUT};
use super::shared::{current, earliest, Deadline};

/// Applies [`PropagateDeadline`]: writes the time left until the deadline
/// in force as the `grpc-timeout` header of each outgoing request, so the
/// server (and the servers it calls) stop when the caller stops waiting.
///
/// Put it at the bottom of a client stack, right above the transport
/// (a tonic `Channel`, a hyper client), below retry: each attempt then
/// sends the time left when *it* starts, not when the call started.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
/// use tower_patterns::deadline::{PropagateDeadlineLayer, TimeoutLayer};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower_patterns::BoxError> {
/// let transport = service_fn(|req: http::Request<()>| async move {
///     Ok::<_, tower_patterns::BoxError>(req.headers()["grpc-timeout"].clone())
/// });
/// let mut client = ServiceBuilder::new()
///     .layer(TimeoutLayer::new(Duration::from_millis(250)))
///     .layer(PropagateDeadlineLayer::new())
///     .service(transport);
/// let sent = client.ready().await?.call(http::Request::new(())).await?;
/// assert_eq!(sent, "250000u");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateDeadlineLayer {
    _private: (),
}

impl PropagateDeadlineLayer {
    /// The layer (it has no settings).
    pub fn new() -> Self {
        PropagateDeadlineLayer::default()
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline { inner }
    }
}

/// Sets `grpc-timeout` on outgoing `http::Request`s from the deadline in
/// force: the tighter of [`current`](super::current) and a
/// [`Deadline`] in the request's extensions. Made by
/// [`PropagateDeadlineLayer`].
///
/// The value is the time left, rounded down (see
/// [`format_grpc_timeout`](super::format_grpc_timeout)), so the server
/// never gets more time than the caller has; a `grpc-timeout` already on
/// the request (tonic sets one from `Request::set_timeout`) is kept when
/// it is tighter. Without a deadline in force the request is untouched.
/// A deadline that has passed is sent as `0n`: this layer does not fail
/// calls (a [`Timeout`](super::Timeout) above does).
///
/// The response, error and future are the inner service's: it adds no
/// future of its own.
#[derive(Clone, Debug)]
pub struct PropagateDeadline<S> {
    inner: S,
}

impl<S> PropagateDeadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<http::Request<B>> for PropagateDeadline<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        let carried = req.extensions().get::<Deadline>().copied();
        if let Some(deadline) = earliest(current(), carried) {
            let mut left = deadline.remaining();
            if let Some(sent) = req
                .headers()
                .get(GRPC_TIMEOUT)
                .and_then(|v| parse_grpc_timeout(v).ok())
            {
                left = left.min(sent);
            }
            req.headers_mut()
                .insert(GRPC_TIMEOUT, format_grpc_timeout(left));
        }
        self.inner.call(req)
    }
}
