//! Requests from URL strings: [`get`], [`post`], [`put`], [`delete`] and
//! [`request`], each checked the way [`HttpClient`](super::HttpClient)
//! checks what it sends.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;

use super::error::FetchError;
use super::uri::build_request;

/// A `GET` request for `url`, ready for [`HttpClient`](super::HttpClient) or
/// any stack of layers over it.
///
/// # Errors
///
/// [`FetchError::InvalidUri`] when `url` does not parse, has no host, or its
/// scheme is not `http` (or `https` with the `tls` feature). Never panics.
///
/// ```
/// use tower_patterns::fetch::{self, FetchError};
///
/// let req = fetch::get("http://127.0.0.1:8080/users/1")?;
/// assert_eq!(req.method(), http::Method::GET);
/// assert!(matches!(fetch::get("not a url"), Err(FetchError::InvalidUri { .. })));
/// # Ok::<(), FetchError>(())
/// ```
pub fn get(url: impl AsRef<str>) -> Result<Request<Full<Bytes>>, FetchError> {
    build_request(Method::GET, url.as_ref(), Bytes::new(), None)
}

/// A `DELETE` request for `url`; errors as for [`get`].
pub fn delete(url: impl AsRef<str>) -> Result<Request<Full<Bytes>>, FetchError> {
    build_request(Method::DELETE, url.as_ref(), Bytes::new(), None)
}

/// A `POST` request for `url` carrying `body`; errors as for [`get`].
///
/// Set the content type on the result when the server needs one:
///
/// ```
/// use http::header::{HeaderValue, CONTENT_TYPE};
/// use tower_patterns::fetch;
///
/// let mut req = fetch::post("http://127.0.0.1:8080/users", r#"{"name":"ada"}"#)?;
/// req.headers_mut()
///     .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
/// # Ok::<(), tower_patterns::fetch::FetchError>(())
/// ```
pub fn post(
    url: impl AsRef<str>,
    body: impl Into<Bytes>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    build_request(Method::POST, url.as_ref(), body.into(), None)
}

/// A `PUT` request for `url` carrying `body`; errors as for [`get`].
pub fn put(
    url: impl AsRef<str>,
    body: impl Into<Bytes>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    build_request(Method::PUT, url.as_ref(), body.into(), None)
}

/// A request with any method for `url`, carrying `body` (empty for none);
/// errors as for [`get`].
pub fn request(
    method: Method,
    url: impl AsRef<str>,
    body: impl Into<Bytes>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    build_request(method, url.as_ref(), body.into(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn helpers_set_method_uri_and_body() {
        let req = post("http://h/x", "hi").unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "http://h/x");
        assert_eq!(req.into_body().collect().await.unwrap().to_bytes(), "hi");
        assert_eq!(
            put("http://h/", Bytes::new()).unwrap().method(),
            Method::PUT
        );
        assert_eq!(delete("http://h/").unwrap().method(), Method::DELETE);
        assert_eq!(
            request(Method::PATCH, " http://h/y ", "").unwrap().uri(),
            "http://h/y"
        );
        for bad in ["", "ftp://h/", "http://"] {
            assert!(
                matches!(get(bad), Err(FetchError::InvalidUri { .. })),
                "{bad}"
            );
        }
    }
}
