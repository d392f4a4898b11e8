//! [`CollectLayer`] and [`Collect`]: a response's body read to the end, so
//! the response is `Clone` (and so cacheable).

use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use tower_layer::Layer;
use tower_service::Service;

use super::collect_future::CollectFuture;
use super::error::FetchError;
use super::shared::DEFAULT_MAX_BODY_BYTES;

/// Reads the body of every response of the service it wraps to the end:
/// `http::Response<B>` becomes `http::Response<Full<Bytes>>`.
///
/// The answer is still an HTTP response, but now a `Clone` one:
/// [`CacheLayer`](crate::cache::CacheLayer) can keep it and hand out
/// copies, and [`HttpClassify`](crate::classify::HttpClassify),
/// [`JsonLayer`](super::JsonLayer) and paginate's walkers work on it
/// unchanged. Put it directly over the client, under the cache (and under
/// retry, the breaker and a limit, so that a body cut short is a failure
/// they see and a permit covers the whole exchange):
///
/// ```
/// # use std::time::Duration;
/// # use bytes::Bytes;
/// # use http_body_util::Full;
/// use tower::ServiceBuilder;
/// use tower_patterns::cache::CacheLayer;
/// use tower_patterns::fetch::{CollectLayer, HttpClient};
///
/// type Req = http::Request<Full<Bytes>>;
/// let cache = CacheLayer::builder()
///     .ttl(Duration::from_secs(60))
///     .key_fn(|req: &Req| req.uri().to_string())
///     .build()?;
/// let svc = ServiceBuilder::new()
///     .layer(cache)
///     .layer(CollectLayer::new())
///     .service(HttpClient::new());
/// # let _ = svc;
/// # Ok::<(), tower_patterns::ConfigError>(())
/// ```
///
/// # Limits
///
/// At most [`max_body_bytes`](Self::max_body_bytes) are read (default
/// [`DEFAULT_MAX_BODY_BYTES`], 10 MiB, the client's default); a longer body
/// (or a `Content-Length` over the limit) fails with
/// [`FetchError::BodyTooLarge`] after reading at most the limit. Over an
/// [`HttpClient`](super::HttpClient) the client's own limit applies too,
/// and the smaller one wins: if you raise the client's, raise this one.
///
/// # Errors
///
/// The service's error type is the inner service's, `S::Error`, so over an
/// [`HttpClient`](super::HttpClient) it stays [`FetchError`]: the
/// classifiers and [`respond`](crate::respond) see the same errors with or
/// without this layer. That takes two bounds, both met by `FetchError`
/// and by [`BoxError`](crate::BoxError):
///
/// - `S::Error: From<FetchError>`, for a body over the limit;
/// - `B::Error: Into<S::Error>`, for a body that fails as it streams
///   ([`fetch::Body`](super::Body)'s errors are already `FetchError`s, with
///   the URL; hyper's `Incoming` fails with `hyper::Error`, which goes into
///   a `BoxError`).
///
/// Trailers are dropped.
#[derive(Clone, Copy, Debug)]
pub struct CollectLayer {
    limit: u64,
}

impl CollectLayer {
    /// A layer that reads bodies of up to [`DEFAULT_MAX_BODY_BYTES`].
    pub fn new() -> Self {
        CollectLayer {
            limit: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// The longest body to read, in bytes (default
    /// [`DEFAULT_MAX_BODY_BYTES`], 10 MiB; any value, 0 allowing only empty
    /// bodies). Memory per response is at most this plus its headers.
    #[must_use = "a setter returns the changed layer"]
    pub fn max_body_bytes(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }
}

impl Default for CollectLayer {
    fn default() -> Self {
        CollectLayer::new()
    }
}

impl<S> Layer<S> for CollectLayer {
    type Service = Collect<S>;

    fn layer(&self, inner: S) -> Collect<S> {
        Collect {
            inner,
            limit: self.limit,
        }
    }
}

/// A service whose responses' bodies have been read to the end; made by
/// [`CollectLayer`] (see there).
///
/// `poll_ready` is the inner service's. Clones share what the inner
/// service's clones share.
#[derive(Clone, Debug)]
pub struct Collect<S> {
    inner: S,
    limit: u64,
}

impl<S> Collect<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the layer's service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, B> Service<http::Request<ReqB>> for Collect<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<B>>,
    S::Error: From<FetchError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<S::Error>,
{
    type Response = http::Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = CollectFuture<S::Future, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqB>) -> Self::Future {
        // Kept only to name the URL if the body is over the limit.
        let uri = req.uri().clone();
        CollectFuture::new(self.inner.call(req), uri, self.limit)
    }
}
