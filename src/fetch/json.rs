//! JSON over HTTP: [`JsonLayer`] / [`Json`] (a response-to-`T` layer for any
//! HTTP service), [`fetch_json`] and [`fetch_all`].

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT};
use http::{Request, Response};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use super::client::HttpClient;
use super::decode::{DecodeJson, Failure};
use super::error::FetchError;
use super::shared::DEFAULT_MAX_BODY_BYTES;
use super::uri::get_request;
use crate::error::check;
use crate::{BoxError, ConfigError};

pub(crate) const APPLICATION_JSON: &str = "application/json";

/// Fetches `url` with a `GET` and decodes its JSON body into `T` (the seed's
/// `fetch_data`).
///
/// Any `T: DeserializeOwned` works; `serde_json::Value` takes any JSON.
/// Sends `Accept: application/json`. The body is collected up to the
/// client's `max_body_bytes` (refused as it streams in, never buffered past
/// the limit) and decoded straight from the collected bytes.
///
/// # Errors
///
/// - [`FetchError::InvalidUri`]: `url` does not parse or is not http(s).
/// - [`FetchError::Status`]: a non-2xx answer, with the start of its body.
/// - [`FetchError::Decode`]: the body is not JSON of type `T` (with line and column).
/// - [`FetchError::BodyTooLarge`], [`FetchError::Timeout`], [`FetchError::Transport`].
///
/// Never panics on a bad URL or bad JSON.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_patterns::fetch::FetchError> {
/// use tower_patterns::fetch::{self, HttpClient};
///
/// #[derive(serde::Deserialize)]
/// struct User { id: u64, name: String }
///
/// let client = HttpClient::new();
/// let user: User = fetch::fetch_json(&client, "http://127.0.0.1:8080/users/1").await?;
/// let any: serde_json::Value = fetch::fetch_json(&client, "http://127.0.0.1:8080/users/2").await?;
/// # Ok(()) }
/// ```
pub async fn fetch_json<T: DeserializeOwned>(
    client: &HttpClient,
    url: impl AsRef<str>,
) -> Result<T, FetchError> {
    let req = get_request(url.as_ref(), Some(APPLICATION_JSON))?;
    let uri = req.uri().clone();
    // The client's body already stops at its limit.
    let core: DecodeJson<_, _, T, ()> = DecodeJson::new(client.request(req), uri, u64::MAX);
    match core.await {
        Ok(((), value)) => Ok(value),
        Err(Failure::Inner(e) | Failure::Fetch(e)) => Err(e),
    }
}

/// Fetches every URL as JSON with at most `limit` requests in flight (the
/// seed's `fetch_multiple_urls`, with gather's `return_exceptions`).
///
/// Returns one `Result` per URL, **in input order**. A failing URL is just
/// an `Err` in its slot; a slow one occupies one slot while the others keep
/// going (results are placed by index, so a slow head of the list never
/// holds back the rest), and nothing is cancelled. A `limit` of 0 is
/// treated as 1.
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
pub async fn fetch_all<T, I>(
    client: &HttpClient,
    urls: I,
    limit: usize,
) -> Vec<Result<T, FetchError>>
where
    T: DeserializeOwned,
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    crate::limit::join_bounded(
        urls.into_iter()
            .map(|url| async move { fetch_json::<T>(client, url).await }),
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
/// ([`HttpClient`], or one with retry and circuit breaking around it).
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
