//! [`FetchError`]: everything that can go wrong fetching a URL.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::BoxError;

/// How many bytes of a non-2xx response body [`FetchError::Status`] keeps.
pub const STATUS_BODY_EXCERPT: usize = 4 * 1024;

/// Everything that can go wrong fetching a URL.
///
/// Every variant names the URL it was about (also available through
/// [`FetchError::url`]), and its `Display` says what failed and for which URL:
///
/// ```text
/// GET http://127.0.0.1:8080/users/9: server answered 404 Not Found: {"error":"no such user"}
/// GET http://127.0.0.1:8080/users/1: response is not valid JSON for the expected type at line 1, column 7: ...
/// ```
///
/// `FetchError` is `Send + Sync + 'static`, so it converts into
/// [`tower::BoxError`](crate::BoxError) and layers such as retry and the
/// circuit breaker can wrap an [`HttpClient`](super::HttpClient); get it back
/// with `err.downcast_ref::<FetchError>()`.
///
/// Match on it with `{ .. }` patterns: more fields may be added.
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The server answered with a status outside `200..=299` (Python's
    /// `response.raise_for_status()`). Redirects are not followed, so 3xx
    /// lands here too.
    ///
    /// Of the response's headers only the two a caller acts on are kept
    /// (never `Set-Cookie` or other credentials, which would otherwise end
    /// up in logs through `Debug`).
    Status {
        /// The URL that was fetched.
        url: String,
        /// The status the server sent.
        status: StatusCode,
        /// The first [`STATUS_BODY_EXCERPT`] bytes of the response body
        /// (fewer if the body was shorter or could not be read in time).
        body: Bytes,
        /// The server's `Retry-After` (seconds or an HTTP-date, measured
        /// when the answer arrived), if it sent a valid one: a 429 or 503
        /// says when to come back.
        retry_after: Option<Duration>,
        /// The server's `Content-Type`, if any: what `body` is.
        content_type: Option<HeaderValue>,
    },
    /// The body was not valid JSON, or not the JSON shape the caller asked for.
    Decode {
        /// The URL that was fetched.
        url: String,
        /// 1-based line of the body where decoding failed (0 if unknown,
        /// for example on an empty body).
        line: usize,
        /// 1-based column where decoding failed (0 if unknown).
        column: usize,
        /// The decoder's error.
        source: serde_json::Error,
    },
    /// No (complete) answer within the client's deadline, or the connection
    /// could not be set up within the connect timeout.
    Timeout {
        /// The URL that was fetched.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The response body is longer than the client allows
    /// ([`HttpClientBuilder::max_body_bytes`](super::HttpClientBuilder::max_body_bytes)).
    /// Detected as the body streams in (or up front from `Content-Length`):
    /// at most `limit` bytes are ever read.
    BodyTooLarge {
        /// The URL that was fetched.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Connecting, TLS, or reading / writing the connection failed.
    Transport {
        /// The URL that was fetched.
        url: String,
        /// The underlying error (a `hyper_util` or `hyper` error, usually
        /// wrapping an `io::Error` or a `rustls::Error`).
        source: BoxError,
    },
    /// The URL could not be used: it does not parse, has no host, or its
    /// scheme is not `http` (or `https` with the `tls` feature).
    InvalidUri {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: Cow<'static, str>,
    },
}

impl FetchError {
    /// The URL this error is about.
    pub fn url(&self) -> &str {
        match self {
            FetchError::Status { url, .. }
            | FetchError::Decode { url, .. }
            | FetchError::Timeout { url, .. }
            | FetchError::BodyTooLarge { url, .. }
            | FetchError::Transport { url, .. }
            | FetchError::InvalidUri { url, .. } => url,
        }
    }

    /// The HTTP status, for [`FetchError::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, for a [`FetchError::Status`] that
    /// carried one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// `true` for [`FetchError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, FetchError::Timeout { .. })
    }

    /// A [`FetchError::Status`] for a non-2xx answer with these headers
    /// and this body excerpt.
    pub(crate) fn status_of(
        url: String,
        status: StatusCode,
        head: StatusHead,
        body: Bytes,
    ) -> Self {
        FetchError::Status {
            url,
            status,
            body,
            retry_after: head.retry_after,
            content_type: head.content_type,
        }
    }

    pub(crate) fn decode(url: String, source: serde_json::Error) -> Self {
        FetchError::Decode {
            url,
            line: source.line(),
            column: source.column(),
            source,
        }
    }

    /// A transport error, or a timeout if the error chain says the
    /// connection attempt timed out.
    pub(crate) fn transport(url: String, source: BoxError, connect_timeout: Duration) -> Self {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(&*source);
        while let Some(err) = cause {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return FetchError::Timeout {
                        url,
                        after: connect_timeout,
                    };
                }
            }
            cause = err.source();
        }
        FetchError::Transport { url, source }
    }
}

/// What [`FetchError::Status`] keeps of a non-2xx answer's headers.
#[derive(Debug, Default)]
pub(crate) struct StatusHead {
    retry_after: Option<Duration>,
    content_type: Option<HeaderValue>,
}

impl StatusHead {
    /// Reads `Retry-After` and `Content-Type` from `headers`.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        StatusHead {
            retry_after: crate::classify::parse_retry_after(headers, std::time::SystemTime::now()),
            content_type: headers.get(http::header::CONTENT_TYPE).cloned(),
        }
    }
}

/// Shows at most this many characters of a status body excerpt in `Display`.
const DISPLAY_EXCERPT_CHARS: usize = 200;

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GET {}: ", self.url())?;
        match self {
            FetchError::Status { status, body, .. } => {
                write!(f, "server answered {status}")?;
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if !text.is_empty() {
                    let mut chars = text.chars();
                    let shown: String = chars.by_ref().take(DISPLAY_EXCERPT_CHARS).collect();
                    write!(f, ": {shown}")?;
                    if chars.next().is_some() {
                        f.write_str("...")?;
                    }
                }
                Ok(())
            }
            FetchError::Decode {
                line,
                column,
                source,
                ..
            } => write!(
                f,
                "response is not valid JSON for the expected type at line {line}, column {column}: {source}"
            ),
            FetchError::Timeout { after, .. } => write!(
                f,
                "no complete answer within {after:?}; raise the client's timeout if the server is just slow"
            ),
            FetchError::BodyTooLarge { limit, .. } => write!(
                f,
                "response body is larger than the limit of {limit} bytes; raise max_body_bytes or use fetch::stream_body"
            ),
            FetchError::Transport { source, .. } => {
                write!(f, "transport error: {source}")?;
                // hyper_util's errors say little at the top level; show the root cause.
                let mut root: &(dyn StdError + 'static) = &**source;
                while let Some(next) = root.source() {
                    root = next;
                }
                if !std::ptr::addr_eq(root, &**source) {
                    write!(f, " ({root})")?;
                }
                Ok(())
            }
            FetchError::InvalidUri { reason, .. } => write!(f, "invalid URL: {reason}"),
        }
    }
}

impl StdError for FetchError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            FetchError::Decode { source, .. } => Some(source),
            FetchError::Transport { source, .. } => Some(&**source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_url_and_cause() {
        let e = FetchError::Status {
            url: "http://h/x".into(),
            status: StatusCode::NOT_FOUND,
            body: Bytes::from_static(b"  nope \n"),
            retry_after: None,
            content_type: None,
        };
        assert_eq!(
            e.to_string(),
            "GET http://h/x: server answered 404 Not Found: nope"
        );
        assert_eq!(e.status(), Some(StatusCode::NOT_FOUND));

        let long = FetchError::Status {
            url: "http://h/x".into(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
            body: Bytes::from(vec![b'a'; 1000]),
            retry_after: Some(Duration::from_secs(2)),
            content_type: None,
        };
        assert_eq!(long.retry_after(), Some(Duration::from_secs(2)));
        let s = long.to_string();
        assert!(s.ends_with("..."), "{s}");
        assert!(s.len() < 300, "{s}");

        let src = serde_json::from_str::<u32>("\n  x").unwrap_err();
        let d = FetchError::decode("http://h/j".into(), src);
        assert!(
            matches!(
                d,
                FetchError::Decode {
                    line: 2,
                    column: 3,
                    ..
                }
            ),
            "{d:?}"
        );
        assert!(d
            .to_string()
            .starts_with("GET http://h/j: response is not valid JSON"));
        assert!(d.source().is_some());

        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        let t = FetchError::transport("http://h/".into(), Box::new(io), Duration::from_secs(3));
        assert!(t.is_timeout());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let t = FetchError::transport("http://h/".into(), Box::new(io), Duration::from_secs(3));
        assert!(matches!(t, FetchError::Transport { .. }));
        assert_eq!(t.url(), "http://h/");
        assert!(t.to_string().contains("refused"));
    }

    #[test]
    fn is_box_error_compatible() {
        fn assert_bounds<E: StdError + Send + Sync + 'static>() {}
        assert_bounds::<FetchError>();
        let boxed: BoxError = FetchError::Timeout {
            url: "u".into(),
            after: Duration::from_secs(1),
        }
        .into();
        assert!(boxed.downcast_ref::<FetchError>().is_some());
    }
}
