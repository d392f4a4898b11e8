//! [`ErrorResponse`]: what an error from our layers means for a caller.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use http::{header, HeaderValue, StatusCode};

use super::upstream::safe_body;
use crate::fetch::FetchError;
use crate::BoxError;

/// What went wrong, as far as a client of the server needs to know.
///
/// Found by walking the error's [`source`](Error::source) chain (outermost
/// first) and downcasting each link to this crate's public error types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`circuit_breaker::Open`](crate::circuit_breaker::Open): a
    /// dependency failed repeatedly and the breaker fails calls fast.
    CircuitOpen,
    /// [`limit::Overloaded`](crate::limit::Overloaded): every permit of a
    /// concurrency limit was taken.
    Overloaded,
    /// [`queue::QueueFull`](crate::queue::QueueFull): the task queue holds
    /// as many pending tasks as it may.
    QueueFull,
    /// [`rate_limit::RateLimited`](crate::rate_limit::RateLimited): the
    /// client is over its quota (429 with `Retry-After` and the
    /// `RateLimit` headers).
    RateLimited,
    /// [`pool::AcquireTimeout`](crate::pool::AcquireTimeout): no pooled
    /// resource (a database connection, say) became free in time.
    PoolTimeout,
    /// [`queue::QueueClosed`](crate::queue::QueueClosed) or
    /// [`pool::PoolClosed`](crate::pool::PoolClosed): the server is
    /// shutting down.
    ShuttingDown,
    /// `tower::timeout::error::Elapsed` or `tokio::time::error::Elapsed`:
    /// a deadline of this server passed.
    Timeout,
    /// [`deadline::Elapsed`](crate::deadline::Elapsed): the request's
    /// deadline (a [`TimeoutLayer`](crate::deadline::TimeoutLayer)'s, or
    /// the caller's own `grpc-timeout`) passed before it was answered, or
    /// before it could start (a queued task, say). 504, `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// [`fetch::FetchError::Timeout`](crate::fetch::FetchError::Timeout),
    /// or an upstream's `408 Request Timeout`: an upstream server did not
    /// answer in time (or gave up waiting for our request).
    UpstreamTimeout,
    /// A [`fetch::FetchError::Status`](crate::fetch::FetchError::Status)
    /// with a 4xx status (other than 401, 407 and 408): the upstream
    /// refused the request itself (404 Not Found, 409 Conflict, 422, 429,
    /// ...). Its status is passed through; see [`error_response`] for the
    /// body and headers.
    UpstreamClientError,
    /// Any other [`fetch::FetchError`](crate::fetch::FetchError) (a 5xx or
    /// 3xx status, a 401 or 407, a transport failure, a body that did not
    /// decode): an upstream server failed.
    Upstream,
    /// Nothing this crate recognises.
    Internal,
}

/// An HTTP answer for an error from our layers: status, optional
/// `Retry-After`, and a short message that is safe to show clients.
///
/// Build one with [`error_response`]. The message never contains the
/// error's own text (which may name internal hosts, URLs or queries):
/// log the error itself on the server if you need the details. The only
/// text from elsewhere it can carry is an upstream's own 4xx body, under
/// the rules in [`error_response`].
///
/// It becomes an `http::Response` with [`into_http`](Self::into_http).
/// With the `axum` feature it also implements axum's `IntoResponse`
/// (`answer.into_response()`); without that feature the method does not
/// exist, and the compiler's "no method named `into_response`" gives no
/// hint why: enable `tower-patterns/axum`, or call `into_http`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    kind: ErrorKind,
    status: StatusCode,
    retry_after: Option<Duration>,
    /// An upstream's 4xx body, passed on: (normalised content type, text).
    body: Option<(HeaderValue, String)>,
    /// The quota a [`ErrorKind::RateLimited`] answer was over: (calls,
    /// period), for the `RateLimit-Policy` header.
    quota: Option<(u32, Duration)>,
}

/// How long to ask clients to wait after a rejection that carries no
/// time of its own (overload, full queue, pool timeout): long enough to
/// let a burst drain, short enough not to idle a healthy server.
pub const SHORT_RETRY_AFTER: Duration = Duration::from_secs(1);

impl ErrorResponse {
    /// An answer for a given kind of error, with the status and
    /// `Retry-After` [`error_response`] would choose (no `Retry-After`
    /// for [`ErrorKind::CircuitOpen`]: use [`with_retry_after`](Self::with_retry_after)).
    /// [`ErrorKind::UpstreamClientError`] carries the upstream's status,
    /// which a kind alone does not know: it gives 400.
    pub fn from_kind(kind: ErrorKind) -> Self {
        let (status, retry_after) = match kind {
            ErrorKind::CircuitOpen | ErrorKind::ShuttingDown => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            // 503, not 429: the server is over its capacity, the client is
            // not over a quota of its own. 429 tells a client that *it*
            // sends too much; here every client is turned away alike.
            ErrorKind::Overloaded | ErrorKind::QueueFull | ErrorKind::PoolTimeout => {
                (StatusCode::SERVICE_UNAVAILABLE, Some(SHORT_RETRY_AFTER))
            }
            ErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, Some(SHORT_RETRY_AFTER)),
            ErrorKind::Timeout | ErrorKind::DeadlineExceeded | ErrorKind::UpstreamTimeout => {
                (StatusCode::GATEWAY_TIMEOUT, None)
            }
            ErrorKind::UpstreamClientError => (StatusCode::BAD_REQUEST, None),
            ErrorKind::Upstream => (StatusCode::BAD_GATEWAY, None),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        ErrorResponse {
            kind,
            status,
            retry_after,
            body: None,
            quota: None,
        }
    }

    /// The same answer with another `Retry-After` (`None` removes it).
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// What kind of error this answers.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// How long the client should wait before trying again, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// `Retry-After` in whole seconds: rounded up, and at least 1 (a
    /// `Retry-After: 0` invites an immediate stampede).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| {
            let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
            secs.max(1)
        })
    }

    /// The upstream's own body for an
    /// [`ErrorKind::UpstreamClientError`], when it was safe to pass on
    /// (see [`error_response`]); [`into_http`](Self::into_http) sends it
    /// instead of the [`message`](Self::message).
    pub fn upstream_body(&self) -> Option<&str> {
        self.body.as_ref().map(|(_, text)| text.as_str())
    }

    /// A short message for the client, free of internal details.
    pub fn message(&self) -> &'static str {
        match self.kind {
            ErrorKind::UpstreamClientError => self
                .status
                .canonical_reason()
                .unwrap_or("the upstream service refused the request"),
            ErrorKind::CircuitOpen => "a dependency is failing; try again later",
            ErrorKind::Overloaded => "the server is at capacity; try again shortly",
            ErrorKind::QueueFull => "the work queue is full; try again shortly",
            ErrorKind::RateLimited => "too many requests; slow down and try again later",
            ErrorKind::PoolTimeout => {
                "no backend connection became free in time; try again shortly"
            }
            ErrorKind::ShuttingDown => "the server is shutting down",
            ErrorKind::Timeout => "the request timed out",
            ErrorKind::DeadlineExceeded => "the request's deadline passed before it was answered",
            ErrorKind::UpstreamTimeout => "an upstream service did not answer in time",
            ErrorKind::Upstream => "an upstream service failed",
            ErrorKind::Internal => "internal server error",
        }
    }

    /// The answer as an `http::Response`: the status, `Retry-After` when
    /// known, and as the body either the [`upstream_body`](Self::upstream_body)
    /// with its content type, or the [`message`](Self::message) as
    /// `text/plain; charset=utf-8`.
    ///
    /// `B` is any body that can be made from a `&'static str` and a
    /// `String`: `String`, `http_body_util::Full<Bytes>`, `axum::body::Body`.
    pub fn into_http<B: From<&'static str> + From<String>>(self) -> http::Response<B> {
        let message = self.message();
        let retry_after = self.retry_after_secs();
        let (content_type, body) = match self.body {
            Some((content_type, text)) => (content_type, B::from(text)),
            None => (
                HeaderValue::from_static("text/plain; charset=utf-8"),
                B::from(message),
            ),
        };
        let mut res = http::Response::new(body);
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, content_type);
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some((count, period)) = self.quota {
            // draft-ietf-httpapi-ratelimit-headers: the policy, and none of
            // it left for `t` seconds.
            let window = period.as_secs() + u64::from(period.subsec_nanos() > 0);
            let policy = format!("\"default\";q={count};w={}", window.max(1));
            let left = format!("\"default\";r=0;t={}", retry_after.unwrap_or(1));
            for (name, value) in [("ratelimit-policy", policy), ("ratelimit", left)] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        res
    }
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message())
    }
}

/// Maps an error from our layers to an HTTP answer.
///
/// Walks `err` and its [`source`](Error::source) chain, outermost first,
/// and answers for the first link it recognises:
///
/// | error | status | `Retry-After` |
/// |---|---|---|
/// | [`circuit_breaker::Open`](crate::circuit_breaker::Open) | 503 | until the next probe (seconds, rounded up, at least 1); none when held open by `force_open` |
/// | [`rate_limit::RateLimited`](crate::rate_limit::RateLimited) | 429, with `RateLimit-Policy` and `RateLimit` headers | until a call would conform (seconds, rounded up, at least 1) |
/// | [`limit::Overloaded`](crate::limit::Overloaded) | 503 | [`SHORT_RETRY_AFTER`] |
/// | [`queue::QueueFull`](crate::queue::QueueFull) | 503 | [`SHORT_RETRY_AFTER`] |
/// | [`pool::AcquireTimeout`](crate::pool::AcquireTimeout) | 503 | [`SHORT_RETRY_AFTER`] |
/// | [`queue::QueueClosed`](crate::queue::QueueClosed), [`pool::PoolClosed`](crate::pool::PoolClosed) | 503 | none |
/// | [`deadline::Elapsed`](crate::deadline::Elapsed) (also inside a queue's [`TaskError::DeadlineExceeded`](crate::queue::TaskError::DeadlineExceeded)) | 504 | none |
/// | `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed` | 504 | none |
/// | [`fetch::FetchError::Timeout`](crate::fetch::FetchError::Timeout), or a [`Status`](crate::fetch::FetchError::Status) of 408 | 504 | none |
/// | a [`Status`](crate::fetch::FetchError::Status) of 4xx, but 401, 407 and 408 | the same 4xx | the upstream's, for 429 |
/// | any other [`fetch::FetchError`](crate::fetch::FetchError) (5xx, 3xx, 401, 407, transport, decode) | 502 | none |
/// | anything else | 500 | none |
///
/// Overload is a 503 and not a 429 on purpose: 429 says "*you* sent too
/// many requests" (a per-client quota), while a full limiter turns every
/// client away because the *server* is at capacity.
///
/// # Upstream answers
///
/// A proxy that fetched a missing resource should say "not found", not
/// "bad gateway": an upstream 4xx is about the request, which came from
/// our client, so its status passes through. What passes with it, and why:
///
/// - **401 and 407 become 502.** They are about *our* credentials for the
///   upstream, not the client's; passing them on would ask the client to
///   log in to the wrong server (and a 401 without the upstream's
///   `WWW-Authenticate`, which is not passed, is malformed).
/// - **408 becomes 504**: the upstream gave up waiting for our request.
/// - **429 keeps its `Retry-After`**, when the upstream sent a valid one
///   (kept as [`FetchError::retry_after`](crate::fetch::FetchError::retry_after)),
///   so the client backs off as long as the upstream asked. It stays a
///   429 although the quota may be our server's, not the client's: either
///   way the answer to the client is "slow down, come back then".
/// - **No other upstream header** is passed: not `Set-Cookie` (cookies of
///   the upstream's domain would land on ours), not `WWW-Authenticate`,
///   `Location` or caching headers.
/// - **The body** is passed only when it is safe to show as it is: its
///   `Content-Type` is `text/plain` (UTF-8 or US-ASCII) or JSON
///   (`application/json` or any `+json`, such as RFC 9457's
///   `application/problem+json`), it is valid UTF-8, and it is complete
///   (shorter than the [`STATUS_BODY_EXCERPT`](crate::fetch::STATUS_BODY_EXCERPT) that
///   [`FetchError::Status`](crate::fetch::FetchError::Status) keeps, so a
///   cut JSON document is never sent). HTML and anything else could run
///   script or mislead under our origin, and is replaced by the status'
///   reason phrase ("Not Found") as `text/plain`. The content type sent is
///   the media type alone (`text/plain; charset=utf-8` for text).
///
/// To answer every upstream status with 502 as before, replace an answer
/// of kind [`ErrorKind::UpstreamClientError`] with
/// `ErrorResponse::from_kind(ErrorKind::Upstream)`.
///
/// Wrappers such as [`cache::SharedError`](crate::cache::SharedError) and
/// [`pool::PoolError`](crate::pool::PoolError) expose the error they wrap
/// as their source, so they are seen through.
pub fn error_response(err: &BoxError) -> ErrorResponse {
    let root: &(dyn Error + 'static) = &**err;
    error_response_for(root)
}

/// [`error_response`] for any error, not only a boxed one.
pub fn error_response_for(err: &(dyn Error + 'static)) -> ErrorResponse {
    let mut link = Some(err);
    while let Some(e) = link {
        if let Some(found) = recognise(e) {
            return found;
        }
        link = e.source();
    }
    ErrorResponse::from_kind(ErrorKind::Internal)
}

fn recognise(e: &(dyn Error + 'static)) -> Option<ErrorResponse> {
    use crate::{circuit_breaker, deadline, limit, pool, queue, rate_limit};

    if let Some(limited) = e.downcast_ref::<rate_limit::RateLimited>() {
        let mut answer = ErrorResponse::from_kind(ErrorKind::RateLimited)
            .with_retry_after(Some(limited.retry_after()));
        answer.quota = Some((limited.count(), limited.period()));
        return Some(answer);
    }
    if let Some(open) = e.downcast_ref::<circuit_breaker::Open>() {
        return Some(
            ErrorResponse::from_kind(ErrorKind::CircuitOpen).with_retry_after(open.retry_after()),
        );
    }
    let kind = if e.is::<limit::Overloaded>() {
        ErrorKind::Overloaded
    } else if e.is::<queue::QueueFull>() {
        ErrorKind::QueueFull
    } else if e.is::<pool::AcquireTimeout>() {
        ErrorKind::PoolTimeout
    } else if e.is::<queue::QueueClosed>() || e.is::<pool::PoolClosed>() {
        ErrorKind::ShuttingDown
    } else if e.is::<deadline::Elapsed>() {
        ErrorKind::DeadlineExceeded
    } else if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
        ErrorKind::Timeout
    } else if let Some(fetch) = e.downcast_ref::<FetchError>() {
        return Some(upstream_answer(fetch));
    } else {
        return None;
    };
    Some(ErrorResponse::from_kind(kind))
}

/// The answer for a failed fetch (see "Upstream answers" on
/// [`error_response`]).
fn upstream_answer(err: &FetchError) -> ErrorResponse {
    let FetchError::Status {
        status,
        body,
        retry_after,
        content_type,
        ..
    } = err
    else {
        return ErrorResponse::from_kind(if err.is_timeout() {
            ErrorKind::UpstreamTimeout
        } else {
            ErrorKind::Upstream
        });
    };
    match *status {
        StatusCode::REQUEST_TIMEOUT => ErrorResponse::from_kind(ErrorKind::UpstreamTimeout),
        StatusCode::UNAUTHORIZED | StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
            ErrorResponse::from_kind(ErrorKind::Upstream)
        }
        s if s.is_client_error() => ErrorResponse {
            kind: ErrorKind::UpstreamClientError,
            status: s,
            retry_after: if s == StatusCode::TOO_MANY_REQUESTS {
                *retry_after
            } else {
                None
            },
            body: safe_body(content_type.as_ref(), body),
            quota: None,
        },
        _ => ErrorResponse::from_kind(ErrorKind::Upstream),
    }
}

#[cfg(test)]
mod tests;
