//! Pages over HTTP: [`JsonPages`] (JSON bodies through [`fetch`](crate::fetch)'s
//! decoding) and [`json_link_paginator`] (a walk that follows `Link` headers).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{HeaderValue, ACCEPT};
use http::{HeaderMap, Request, Response, Uri};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceExt};
use tower_service::Service;

use super::error::PaginateError;
use super::page::Page;
use super::paginator::Paginator;
use super::strategy::LinkHeader;
use crate::fetch::{DecodeJson, Failure, FetchError, APPLICATION_JSON, DEFAULT_MAX_BODY_BYTES};

type PageBody = UnsyncBoxBody<Bytes, BoxError>;
type Client = BoxCloneService<Request<Full<Bytes>>, Response<PageBody>, BoxError>;
type BoxFuture<O> = Pin<Box<dyn Future<Output = O> + Send>>;

/// The walk [`json_link_paginator`] returns: JSON pages over HTTP, from one
/// `Link: <...>; rel="next"` to the next. Configure it, then take its
/// [`items`](Paginator::items) or [`pages`](Paginator::pages).
pub type JsonLinkPaginator<T> = Paginator<JsonPages<T>, LinkHeader, T>;

/// A page service over an HTTP client: `GET <uri>` with
/// `Accept: application/json`; the answer decoded by the same code as
/// [`fetch::Json`](crate::fetch::Json) (a 2xx status, at most
/// [`max_body_bytes`](JsonPages::max_body_bytes), JSON of the wanted shape),
/// as a JSON array of `T` (or found with [`items_at`](JsonPages::items_at),
/// the next cursor with [`next_at`](JsonPages::next_at)); the response
/// headers are kept on the [`Page`] for [`LinkHeader`].
///
/// The client is any `Service<http::Request<Full<Bytes>>, Response =
/// http::Response<B>>` (hyper-util's `Client`, this crate's `HttpClient`, a
/// tower stack around either). Its readiness is forwarded. To walk with
/// page numbers or cursors instead of `Link` headers, map their requests to
/// a `Uri` with `ServiceBuilder::map_request`.
///
/// Errors are [`PaginateError`]s: the client's own as
/// [`Service`](PaginateError::Service) and
/// [`Unavailable`](PaginateError::Unavailable), the answer's as
/// [`Fetch`](PaginateError::Fetch).
pub struct JsonPages<T> {
    client: Client,
    invalid: Option<(String, String)>,
    decode: Arc<Decode>,
    max_body_bytes: u64,
    _items: PhantomData<fn() -> T>,
}

impl<T> Clone for JsonPages<T> {
    fn clone(&self) -> Self {
        JsonPages {
            client: self.client.clone(),
            invalid: self.invalid.clone(),
            decode: self.decode.clone(),
            max_body_bytes: self.max_body_bytes,
            _items: PhantomData,
        }
    }
}

impl<T> fmt::Debug for JsonPages<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonPages")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("items_at", &self.decode.items_at)
            .field("next_at", &self.decode.next_at)
            .finish_non_exhaustive()
    }
}

impl<T> JsonPages<T> {
    /// JSON pages over `client`, reading at most
    /// [`DEFAULT_MAX_BODY_BYTES`] (10 MiB) per page.
    pub fn new<S, B>(client: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        let client = client
            .map_response(|response: Response<B>| response.map(page_body))
            .map_err(Into::into);
        JsonPages {
            client: BoxCloneService::new(client),
            invalid: None,
            decode: Arc::new(Decode::default()),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            _items: PhantomData,
        }
    }

    /// The largest page body read, in bytes (default
    /// [`DEFAULT_MAX_BODY_BYTES`], 10 MiB, as for
    /// [`fetch::JsonLayer`](crate::fetch::JsonLayer)). A larger page fails
    /// with [`FetchError::BodyTooLarge`] as soon as it crosses the limit.
    pub fn max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

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

/// Any body as one with `Bytes` frames (zero-copy when they already are).
fn page_body<B>(body: B) -> PageBody
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    body.map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
        .map_err(Into::into)
        .boxed_unsync()
}

/// Where the items and the next cursor are in a body.
#[derive(Clone, Debug, Default)]
struct Decode {
    items_at: Option<String>,
    next_at: Option<String>,
}

impl Decode {
    /// Awaits the answer for `uri` and decodes it into a page.
    async fn page<T, F>(&self, response: F, uri: Uri, limit: u64) -> Result<Page<T>, PaginateError>
    where
        T: DeserializeOwned,
        F: Future<Output = Result<Response<PageBody>, BoxError>>,
    {
        let failed = |failure: Failure<BoxError>| match failure {
            Failure::Inner(source) => PaginateError::Service {
                uri: uri.clone(),
                source,
            },
            Failure::Fetch(e) => PaginateError::Fetch(e),
        };
        if self.items_at.is_none() && self.next_at.is_none() {
            let decoded: DecodeJson<F, PageBody, Vec<T>, HeaderMap> =
                DecodeJson::new(response, uri.clone(), limit);
            let (headers, items) = decoded.await.map_err(failed)?;
            return Ok(Page::new(items).with_headers(headers));
        }
        let decoded: DecodeJson<F, PageBody, serde_json::Value, HeaderMap> =
            DecodeJson::new(response, uri.clone(), limit);
        let (headers, mut value) = decoded.await.map_err(failed)?;
        let decode_error = |e| PaginateError::Fetch(FetchError::decode(uri.to_string(), e));
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
                    decode_error(<serde_json::Error as serde::de::Error>::custom(format!(
                        "no value at JSON pointer {pointer:?}"
                    )))
                })?,
            None => value,
        };
        let items = serde_json::from_value(items).map_err(decode_error)?;
        Ok(Page::new(items).with_next(next).with_headers(headers))
    }
}

impl<T> Service<Uri> for JsonPages<T>
where
    T: DeserializeOwned + Send + 'static,
{
    type Response = Page<T>;
    type Error = PaginateError;
    type Future = BoxFuture<Result<Page<T>, PaginateError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PaginateError>> {
        if self.invalid.is_some() {
            return Poll::Ready(Ok(()));
        }
        self.client
            .poll_ready(cx)
            .map_err(|source| PaginateError::Unavailable { source })
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if let Some((url, reason)) = self.invalid.clone() {
            let reason = reason.into();
            return Box::pin(async move {
                Err(PaginateError::Fetch(FetchError::InvalidUri { url, reason }))
            });
        }
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static(APPLICATION_JSON));
        let response = self.client.call(request);
        let decode = self.decode.clone();
        let limit = self.max_body_bytes;
        Box::pin(async move { decode.page(response, uri, limit).await })
    }
}

/// Walks a JSON API that paginates with `Link: <...>; rel="next"` headers
/// (as GitHub's does), starting at `url`: each page is `GET` over `client`
/// and its body decoded as a JSON array of `T` (see [`JsonPages`]).
///
/// Returns the walk, a [`JsonLinkPaginator`]: configure it (`prefetch`,
/// `max_pages`, ...) then take its [`items`](Paginator::items) or
/// [`pages`](Paginator::pages). Errors are [`PaginateError`]s; an invalid
/// `url` is reported as a [`FetchError::InvalidUri`] by the first poll of
/// the stream.
///
/// ```no_run
/// use futures::TryStreamExt;
/// use hyper_util::client::legacy::Client;
/// use hyper_util::rt::TokioExecutor;
/// use tower_patterns::paginate::{self, PaginateError};
///
/// #[derive(serde::Deserialize)]
/// struct User {
///     id: u64,
/// }
///
/// # async fn run() -> Result<(), PaginateError> {
/// let client = Client::builder(TokioExecutor::new()).build_http();
/// let users: Vec<User> =
///     paginate::json_link_paginator::<User>(client, "http://127.0.0.1:8080/users?per_page=100")
///         .prefetch(1)
///         .items()
///         .try_collect()
///         .await?;
/// # Ok(())
/// # }
/// ```
pub fn json_link_paginator<T>(
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
) -> JsonLinkPaginator<T>
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
