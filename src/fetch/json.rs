//! JSON over HTTP: [`JsonLayer`] / [`Json`] (a response-to-`T` layer for any
//! HTTP service), [`fetch_json`] and [`fetch_all`].

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT};
use http::{Request, Response};
use http_body_util::Full;
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use super::body::Body;
use super::decode::{DecodeJson, Failure};
use super::error::FetchError;
use super::shared::DEFAULT_MAX_BODY_BYTES;
use super::uri::get_request;
use crate::error::check;
use crate::{BoxError, ConfigError};

pub(crate) const APPLICATION_JSON: &str = "application/json";

/// Fetches `url` with a `GET` through `service` and decodes its JSON body
/// into `T`.
///
/// `service` is an [`HttpClient`](super::HttpClient) or any stack of layers
/// over one (retry, circuit breaker, limits: whatever answers
/// `http::Request<Full<Bytes>>` with an `http::Response`), so the call goes
/// through every layer you stacked. It is cloned for the call, as
/// `ServiceExt::oneshot` needs an owned service; stacks of this crate's
/// layers and the client are cheap to clone and share their state.
///
/// Any `T: DeserializeOwned` works; `serde_json::Value` takes any JSON.
/// Sends `Accept: application/json`. The body is collected up to a limit
/// and decoded straight from the collected bytes: the client's
/// `max_body_bytes` when the answer is a [`fetch::Body`](super::Body) (the
/// client enforces it while the body streams in), otherwise
/// [`DEFAULT_MAX_BODY_BYTES`](super::DEFAULT_MAX_BODY_BYTES); for another
/// limit use [`JsonLayer::builder`].
///
/// The error type is the service's: [`FetchError`] for a bare
/// `HttpClient`, [`BoxError`] for a stack of layers (downcast it to
/// [`FetchError`], [`Open`](crate::circuit_breaker::Open), ...).
///
/// # Errors
///
/// - [`FetchError::InvalidUri`]: `url` does not parse or is not http(s).
/// - [`FetchError::Status`]: a non-2xx answer, with the start of its body.
/// - [`FetchError::Decode`]: the body is not JSON of type `T` (with line and column).
/// - [`FetchError::BodyTooLarge`], [`FetchError::Timeout`], [`FetchError::Transport`].
/// - Whatever a layer of the stack returns instead of an answer.
///
/// Never panics on a bad URL or bad JSON.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_patterns::BoxError> {
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_patterns::circuit_breaker::CircuitBreakerLayer;
/// use tower_patterns::classify::HttpClassify;
/// use tower_patterns::fetch::{self, HttpClient};
/// use tower_patterns::retry::RetryLayer;
///
/// #[derive(serde::Deserialize)]
/// struct User { id: u64, name: String }
///
/// // A bare client: errors are `FetchError`s.
/// let client = HttpClient::new();
/// let user: User = fetch::fetch_json(&client, "http://127.0.0.1:8080/users/1").await?;
///
/// // A stack: the same call, retried and guarded by a breaker.
/// let stack = ServiceBuilder::new()
///     .layer(RetryLayer::builder().classify(HttpClassify).build()?)
///     .layer(
///         CircuitBreakerLayer::builder()
///             .classify(HttpClassify)
///             .consecutive_failures(5)
///             .open_duration(Duration::from_secs(10))
///             .build()?,
///     )
///     .service(client);
/// let any: serde_json::Value = fetch::fetch_json(&stack, "http://127.0.0.1:8080/users/2").await?;
/// # Ok(()) }
/// ```
pub async fn fetch_json<T, S, B>(service: &S, url: impl AsRef<str>) -> Result<T, S::Error>
where
    T: DeserializeOwned,
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: From<FetchError>,
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Into<BoxError>,
{
    let req = get_request(url.as_ref(), Some(APPLICATION_JSON))?;
    let uri = req.uri().clone();
    let mut service = service.clone();
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    let core: DecodeJson<_, _, T, ()> = DecodeJson::new(service.call(req), uri, body_limit::<B>());
    match core.await {
        Ok(((), value)) => Ok(value),
        Err(Failure::Inner(e)) => Err(e),
        Err(Failure::Fetch(e)) => Err(e.into()),
    }
}

/// The limit [`fetch_json`] reads a body of type `B` up to: none of its
/// own for the client's [`Body`], which stops at the client's limit.
fn body_limit<B: 'static>() -> u64 {
    if TypeId::of::<B>() == TypeId::of::<Body>() {
        u64::MAX
    } else {
        DEFAULT_MAX_BODY_BYTES
    }
}

/// Fetches every URL as JSON through `service` with at most `limit`
/// requests in flight (Python's `asyncio.gather(..., return_exceptions=True)`
/// over a semaphore).
///
/// Returns one `Result` per URL, **in input order**. A failing URL is just
/// an `Err` in its slot; a slow one occupies one slot while the others keep
/// going (results are placed by index, so a slow head of the list never
/// holds back the rest), and nothing is cancelled. A `limit` of 0 is
/// treated as 1. Like [`fetch_json`], it takes a client or any stack of
/// layers over one, and the error type is the service's.
///
/// ```no_run
/// # async fn run() {
/// use tower_patterns::fetch::{self, FetchError, HttpClient};
///
/// let client = HttpClient::new();
/// let urls = (1..=50).map(|id| format!("http://127.0.0.1:8080/users/{id}"));
/// let all: Vec<Result<serde_json::Value, FetchError>> = fetch::fetch_all(&client, urls, 10).await;
/// assert_eq!(all.len(), 50);
/// # }
/// ```
pub async fn fetch_all<T, S, B, I>(service: &S, urls: I, limit: usize) -> Vec<Result<T, S::Error>>
where
    T: DeserializeOwned,
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: From<FetchError>,
    B: http_body::Body<Data = Bytes> + 'static,
    B::Error: Into<BoxError>,
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    crate::limit::join_bounded(
        urls.into_iter()
            .map(|url| async move { fetch_json::<T, S, B>(service, url).await }),
        limit,
    )
    .await
}

// ===== layer =====

/// A [`Layer`] that turns an HTTP service's responses into decoded `T`s:
/// non-2xx answers become [`FetchError::Status`], bad JSON
/// [`FetchError::Decode`].
///
/// Wraps any `Service<http::Request<ReqBody>, Response = http::Response<B>>`
/// ([`HttpClient`](super::HttpClient), or one with retry and circuit breaking around it).
/// Errors are [`BoxError`]: the inner service's errors pass through
/// unchanged, and the layer's own are [`FetchError`]s (downcast them).
///
/// ```no_run
/// # async fn run() -> Result<(), tower_patterns::BoxError> {
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_patterns::fetch::{HttpClient, JsonLayer};
///
/// #[derive(serde::Deserialize)]
/// struct User { id: u64 }
///
/// let svc = ServiceBuilder::new()
///     .layer(JsonLayer::<User>::new())
///     .service(HttpClient::new());
/// let req = http::Request::get("http://127.0.0.1:8080/users/1").body(Full::new(Bytes::new()))?;
/// let user: User = svc.oneshot(req).await?;
/// # Ok(()) }
/// ```
pub struct JsonLayer<T> {
    max_body_bytes: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> JsonLayer<T> {
    /// A layer that decodes bodies of up to 10 MiB.
    pub fn new() -> Self {
        JsonLayer {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            _t: PhantomData,
        }
    }

    /// A builder to set the body limit.
    pub fn builder() -> JsonLayerBuilder<T> {
        JsonLayerBuilder {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            _t: PhantomData,
        }
    }

    /// The largest body this layer collects, in bytes.
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }
}

impl<T> Default for JsonLayer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonLayer<T> {
    fn clone(&self) -> Self {
        JsonLayer {
            max_body_bytes: self.max_body_bytes,
            _t: PhantomData,
        }
    }
}

impl<T> fmt::Debug for JsonLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLayer")
            .field("type", &std::any::type_name::<T>())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl<S, T> Layer<S> for JsonLayer<T> {
    type Service = Json<S, T>;

    fn layer(&self, inner: S) -> Json<S, T> {
        Json {
            inner,
            max_body_bytes: self.max_body_bytes,
            _t: PhantomData,
        }
    }
}

/// Configures a [`JsonLayer`]; made by [`JsonLayer::builder`].
#[must_use]
pub struct JsonLayerBuilder<T> {
    max_body_bytes: u64,
    _t: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for JsonLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLayerBuilder")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl<T> JsonLayerBuilder<T> {
    /// Largest body collected for decoding, in bytes (default 10 MiB; at
    /// least 1). Larger bodies fail with [`FetchError::BodyTooLarge`] as
    /// soon as they cross the limit.
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `max_body_bytes` is 0.
    pub fn build(self) -> Result<JsonLayer<T>, ConfigError> {
        check::at_least("fetch", "max_body_bytes", self.max_body_bytes, 1)?;
        Ok(JsonLayer {
            max_body_bytes: self.max_body_bytes,
            _t: PhantomData,
        })
    }
}

/// The service made by [`JsonLayer`]: calls the inner HTTP service and
/// decodes the response body into `T`.
pub struct Json<S, T> {
    inner: S,
    max_body_bytes: u64,
    _t: PhantomData<fn() -> T>,
}

impl<S, T> Json<S, T> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, T> Clone for Json<S, T> {
    fn clone(&self) -> Self {
        Json {
            inner: self.inner.clone(),
            max_body_bytes: self.max_body_bytes,
            _t: PhantomData,
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for Json<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Json")
            .field("inner", &self.inner)
            .field("type", &std::any::type_name::<T>())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl<S, T, ReqBody, B> Service<Request<ReqBody>> for Json<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: DeserializeOwned,
{
    type Response = T;
    type Error = BoxError;
    type Future = JsonFuture<S::Future, B, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        if !req.headers().contains_key(ACCEPT) {
            req.headers_mut()
                .insert(ACCEPT, HeaderValue::from_static(APPLICATION_JSON));
        }
        let uri = req.uri().clone();
        JsonFuture {
            core: DecodeJson::new(self.inner.call(req), uri, self.max_body_bytes),
        }
    }
}

pin_project! {
    /// The future of [`Json`]: the decoded `T`, or a [`BoxError`] holding
    /// the inner service's error or a [`FetchError`].
    #[must_use = "futures do nothing unless polled"]
    pub struct JsonFuture<F, B, T> {
        #[pin]
        core: DecodeJson<F, B, T, ()>,
    }
}

impl<F, B, T> fmt::Debug for JsonFuture<F, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonFuture")
            .field("uri", self.core.uri())
            .finish_non_exhaustive()
    }
}

impl<F, E, B, T> Future for JsonFuture<F, B, T>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: DeserializeOwned,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = ready!(self.project().core.poll(cx));
        Poll::Ready(match out {
            Ok(((), value)) => Ok(value),
            Err(Failure::Inner(e)) => Err(e.into()),
            Err(Failure::Fetch(e)) => Err(Box::new(e) as BoxError),
        })
    }
}
