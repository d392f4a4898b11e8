//! Pages over HTTP: JSON bodies, `Link` headers.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{HeaderValue, ACCEPT};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use tower::util::BoxCloneService;
use tower::BoxError;
use tower_service::Service;

use super::{LinkHeader, Page, Paginator, WalkError};

/// The largest page body [`JsonPages`] reads by default: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// Why an HTTP page walk ([`http_json`], [`JsonPages`]) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP client failed (connect, I/O, timeout, a layer's error...).
    Service {
        /// The page requested.
        uri: Uri,
        /// The client's error.
        source: BoxError,
    },
    /// The HTTP client refused to take requests (its `poll_ready` failed).
    Unavailable {
        /// The client's error.
        source: BoxError,
    },
    /// The server answered with a status other than 2xx.
    Status {
        /// The page requested.
        uri: Uri,
        /// The status it answered with.
        status: StatusCode,
    },
    /// Reading the body failed.
    Body {
        /// The page requested.
        uri: Uri,
        /// The body's error.
        source: BoxError,
    },
    /// The body was larger than the limit ([`JsonPages::max_body`]).
    TooLarge {
        /// The page requested.
        uri: Uri,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body was not JSON of the expected shape (an array of items, or
    /// the shape set with [`JsonPages::items_at`]).
    Json {
        /// The page requested.
        uri: Uri,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The walk itself stopped: a loop, or a bad `next` link.
    Walk(WalkError),
    /// The start URL given to [`http_json`] is not a valid URI.
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Error {
    /// The HTTP status, for [`Error::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// `true` when trying the same page again may succeed: a client or body
    /// error, or a 5xx, 429 or 408 status. Useful in a retry policy.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Service { .. } | Error::Unavailable { .. } | Error::Body { .. } => true,
            Error::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Service { uri, source } => write!(f, "page request to {uri} failed: {source}"),
            Error::Unavailable { source } => {
                write!(f, "the HTTP client cannot take page requests: {source}")
            }
            Error::Status { uri, status } => {
                write!(f, "page request to {uri} answered HTTP {status}")
            }
            Error::Body { uri, source } => {
                write!(f, "reading the page body from {uri} failed: {source}")
            }
            Error::TooLarge { uri, limit } => write!(
                f,
                "the page body from {uri} is larger than {limit} bytes \
                 (raise the limit with JsonPages::max_body)"
            ),
            Error::Json { uri, source } => {
                write!(f, "the page from {uri} is not the expected JSON: {source}")
            }
            Error::Walk(e) => e.fmt(f),
            Error::InvalidUrl { url, reason } => {
                write!(
                    f,
                    "cannot paginate from {url:?}: not a valid URI ({reason})"
                )
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Service { source, .. }
            | Error::Unavailable { source }
            | Error::Body { source, .. } => Some(&**source),
            Error::Json { source, .. } => Some(source),
            Error::Walk(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WalkError> for Error {
    fn from(e: WalkError) -> Self {
        Error::Walk(e)
    }
}

type Fetched = (http::response::Parts, Bytes);
type BoxFuture<O> = Pin<Box<dyn Future<Output = O> + Send>>;

/// A page service over an HTTP client: `GET <uri>` with
/// `Accept: application/json`, a 2xx status required, the body (at most
/// [`max_body`](JsonPages::max_body) bytes) decoded as a JSON array of `T`
/// (or found with [`items_at`](JsonPages::items_at), the next cursor with
/// [`next_at`](JsonPages::next_at)), and the response headers kept on the
/// [`Page`] for [`LinkHeader`].
///
/// The client is any `Service<http::Request<Full<Bytes>>, Response =
/// http::Response<B>>` (hyper-util's `Client`, this crate's `HttpClient`, a
/// tower stack around either). Its readiness is forwarded. To walk with
/// page numbers or cursors instead of `Link` headers, map their requests to
/// a `Uri` with `ServiceBuilder::map_request`.
pub struct JsonPages<T> {
    client: BoxCloneService<Request<Full<Bytes>>, Fetched, Error>,
    invalid: Option<(String, String)>,
    decode: Arc<Decode>,
    _items: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonPages<T> {
    fn clone(&self) -> Self {
        JsonPages {
            client: self.client.clone(),
            invalid: self.invalid.clone(),
            decode: self.decode.clone(),
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for JsonPages<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonPages").finish_non_exhaustive()
    }
}

impl<T> JsonPages<T> {
    /// JSON pages over `client`, reading at most [`DEFAULT_MAX_BODY`] per page.
    pub fn new<S, B>(client: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        Self::max_body(client, DEFAULT_MAX_BODY)
    }

    /// JSON pages over `client`, failing with [`Error::TooLarge`] on a body
    /// larger than `limit` bytes.
    pub fn max_body<S, B>(client: S, limit: usize) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        JsonPages {
            client: BoxCloneService::new(Fetch {
                inner: client,
                limit,
            }),
            invalid: None,
            decode: Arc::new(Decode::default()),
            _items: PhantomData,
        }
    }
}

impl<T> JsonPages<T> {
    /// Reads the items from the array at `pointer` (a JSON pointer,
    /// RFC 6901, such as `"/items"` or `"/data/users"`) instead of expecting
    /// the whole body to be the array.
    pub fn items_at(mut self, pointer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.decode).items_at = Some(pointer.into());
        self
    }

    /// Reads the next cursor from the string (or number) at `pointer`, such
    /// as `"/next_cursor"`, into [`Page::next_token`] for
    /// [`Cursor::from_page`](super::Cursor::from_page). `null` or a missing
    /// value means "last page".
    pub fn next_at(mut self, pointer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.decode).next_at = Some(pointer.into());
        self
    }
}

/// Where the items and the next cursor are in a body.
#[derive(Clone, Debug, Default)]
struct Decode {
    items_at: Option<String>,
    next_at: Option<String>,
}

impl Decode {
    fn page<T: DeserializeOwned>(&self, body: &[u8]) -> Result<Page<T>, serde_json::Error> {
        if self.items_at.is_none() && self.next_at.is_none() {
            return Ok(Page::new(serde_json::from_slice(body)?));
        }
        let mut value: serde_json::Value = serde_json::from_slice(body)?;
        let next = match self.next_at.as_deref().and_then(|p| value.pointer(p)) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let items = match self.items_at.as_deref() {
            Some(pointer) => value
                .pointer_mut(pointer)
                .map(serde_json::Value::take)
                .ok_or_else(|| {
                    <serde_json::Error as serde::de::Error>::custom(format!(
                        "no value at JSON pointer {pointer:?}"
                    ))
                })?,
            None => value,
        };
        Ok(Page::new(serde_json::from_value(items)?).with_next(next))
    }
}

impl<T> Service<Uri> for JsonPages<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Response = Page<T>;
    type Error = Error;
    type Future = BoxFuture<Result<Page<T>, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.invalid.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.client.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some((url, reason)) = self.invalid.clone() {
            return Box::pin(async move { Err(Error::InvalidUrl { url, reason }) });
        }
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        let fetched = self.client.call(request);
        let decode = self.decode.clone();
        Box::pin(async move {
            let (parts, body) = fetched.await?;
            let page = decode
                .page(&body)
                .map_err(|source| Error::Json { uri, source })?;
            Ok(page.with_headers(parts.headers))
        })
    }
}

/// The client, erased: sends, checks the status, reads the body.
#[derive(Clone)]
struct Fetch<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<Full<Bytes>>> for Fetch<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    type Response = Fetched;
    type Error = Error;
    type Future = BoxFuture<Result<Fetched, Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Unavailable { source: e.into() })
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        let uri = request.uri().clone();
        let limit = self.limit;
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = match response.await {
                Ok(response) => response,
                Err(e) => {
                    return Err(Error::Service {
                        uri,
                        source: e.into(),
                    })
                }
            };
            let (parts, body) = response.into_parts();
            if !parts.status.is_success() {
                return Err(Error::Status {
                    uri,
                    status: parts.status,
                });
            }
            let body = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<LengthLimitError>() => return Err(Error::TooLarge { uri, limit }),
                Err(source) => return Err(Error::Body { uri, source }),
            };
            Ok((parts, body))
        })
    }
}

/// Walks a JSON API that paginates with `Link: <...>; rel="next"` headers
/// (as GitHub's does), starting at `url`: each page is `GET` over `client`
/// and its body decoded as a JSON array of `T` (see [`JsonPages`]).
///
/// Returns the [`Paginator`]: configure it (`prefetch`, `max_pages`, ...)
/// then take its [`items`](Paginator::items) or [`pages`](Paginator::pages).
/// Errors are [`paginate::Error`](Error); an invalid `url` is reported as
/// [`Error::InvalidUrl`] by the first poll of the stream.
///
/// ```no_run
/// use futures::TryStreamExt;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_patterns::paginate;
///
/// #[derive(serde::Deserialize)]
/// struct User {
///     id: u64,
/// }
///
/// # async fn run() -> Result<(), paginate::Error> {
/// let client = Client::builder(TokioExecutor::new()).build_http();
/// let users: Vec<User> = paginate::http_json::<User>(client, "http://127.0.0.1:8080/users?per_page=100")
///     .prefetch(1)
///     .items()
///     .try_collect()
///     .await?;
/// # Ok(())
/// # }
/// ```
pub fn http_json<T>(
    client: impl Service<
            Request<Full<Bytes>>,
            Response = Response<
                impl Body<Data = impl Buf + Send, Error = impl Into<BoxError>> + Send + 'static,
            >,
            Error = impl Into<BoxError>,
            Future = impl Send + 'static,
        > + Clone
        + Send
        + 'static,
    url: impl AsRef<str>,
) -> Paginator<JsonPages<T>, LinkHeader, T>
where
    T: DeserializeOwned + Send + 'static,
{
    let url = url.as_ref();
    let mut pages = JsonPages::new(client);
    let first = match Uri::try_from(url) {
        Ok(uri) => uri,
        Err(e) => {
            pages.invalid = Some((url.to_owned(), e.to_string()));
            Uri::default()
        }
    };
    Paginator::new(pages, LinkHeader::new(first))
}
