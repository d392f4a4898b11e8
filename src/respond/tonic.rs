//! tonic glue: errors from our layers as [`tonic::Status`].

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::{error_response_for, ErrorKind};
use crate::BoxError;

/// gRPC's name for "retry after": the delay in milliseconds, which gRPC
/// clients with a retry policy honour (the gRFC A6 "server pushback"), as
/// does [`GrpcClassify`](crate::classify::GrpcClassify) for our retry
/// layer.
pub const RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// Maps an error from our layers to a [`tonic::Status`].
///
/// | error | code |
/// |---|---|
/// | a [`tonic::Status`] anywhere in the source chain | passed through unchanged |
/// | [`circuit_breaker::Open`](crate::circuit_breaker::Open) | `UNAVAILABLE` |
/// | [`limit::Overloaded`](crate::limit::Overloaded), [`queue::QueueFull`](crate::queue::QueueFull), [`pool::AcquireTimeout`](crate::pool::AcquireTimeout), [`rate_limit::RateLimited`](crate::rate_limit::RateLimited) | `RESOURCE_EXHAUSTED` |
/// | [`queue::QueueClosed`](crate::queue::QueueClosed), [`pool::PoolClosed`](crate::pool::PoolClosed) | `UNAVAILABLE` |
/// | [`deadline::Elapsed`](crate::deadline::Elapsed), `tower::timeout::error::Elapsed`, `tokio::time::error::Elapsed`, [`FetchError::Timeout`](crate::fetch::FetchError::Timeout), an upstream 408 | `DEADLINE_EXCEEDED` |
/// | an upstream 4xx ([`ErrorKind::UpstreamClientError`]) | by status: 400, 422 `INVALID_ARGUMENT`; 403 `PERMISSION_DENIED`; 404, 410 `NOT_FOUND`; 409 `ABORTED`; 412 `FAILED_PRECONDITION`; 429 `RESOURCE_EXHAUSTED`; others `FAILED_PRECONDITION` |
/// | any other [`fetch::FetchError`](crate::fetch::FetchError) | `UNAVAILABLE` |
/// | anything else | `UNKNOWN`, with a generic message |
///
/// The message is the same client-safe text as
/// [`ErrorResponse::message`](super::ErrorResponse::message); when the
/// wait is known (an open breaker, an overload) the status carries it as
/// [`RETRY_PUSHBACK_MS`] metadata. The original error is the status'
/// [`source`](std::error::Error::source), for logging on this side; it
/// does not cross the wire.
pub fn to_status(err: &BoxError) -> Status {
    match map(err) {
        Ok(passed) | Err(passed) => passed,
    }
}

/// `Ok` with a status found in the chain, `Err` with one made here.
fn map(err: &BoxError) -> Result<Status, Status> {
    let mut link: Option<&(dyn std::error::Error + 'static)> = Some(&**err);
    while let Some(e) = link {
        if let Some(status) = e.downcast_ref::<Status>() {
            return Ok(status.clone());
        }
        link = e.source();
    }
    let answer = error_response_for(&**err);
    let code = match answer.kind() {
        ErrorKind::CircuitOpen | ErrorKind::ShuttingDown | ErrorKind::Upstream => Code::Unavailable,
        ErrorKind::Overloaded
        | ErrorKind::QueueFull
        | ErrorKind::PoolTimeout
        | ErrorKind::RateLimited => Code::ResourceExhausted,
        ErrorKind::Timeout | ErrorKind::DeadlineExceeded | ErrorKind::UpstreamTimeout => {
            Code::DeadlineExceeded
        }
        ErrorKind::UpstreamClientError => match answer.status().as_u16() {
            400 | 422 => Code::InvalidArgument,
            403 => Code::PermissionDenied,
            404 | 410 => Code::NotFound,
            409 => Code::Aborted,
            429 => Code::ResourceExhausted,
            _ => Code::FailedPrecondition,
        },
        // `Internal` and any kind added later.
        _ => Code::Unknown,
    };
    let mut status = Status::new(code, answer.message());
    if let Some(wait) = answer.retry_after() {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        status
            .metadata_mut()
            .insert(RETRY_PUSHBACK_MS, MetadataValue::from(ms));
    }
    Err(status)
}

/// [`to_status`] taking the error by value, for
/// [`ServiceBuilder::map_err`](tower::ServiceBuilder::map_err) on both
/// sides of a tonic connection:
///
/// - **Server:** tonic's server answers a service error with a gRPC
///   status only if the error *is* (or wraps) a [`tonic::Status`];
///   anything else resets the HTTP/2 stream and the client sees a bare
///   protocol error. Put `map_err(respond::into_status)` outermost in
///   the layer given to `Server::builder().layer(...)`.
/// - **Client:** tonic turns a channel error it does not know into
///   `UNKNOWN`; with `map_err(respond::into_status)` outermost in the
///   stack around a `Channel`, an open breaker reaches the caller as
///   `UNAVAILABLE` and an overload as `RESOURCE_EXHAUSTED`.
///
/// The status keeps `err` as its source.
pub fn into_status(err: BoxError) -> Status {
    let err = match err.downcast::<Status>() {
        Ok(status) => return *status,
        Err(err) => err,
    };
    match map(&err) {
        Ok(passed) => passed,
        Err(mut made) => {
            // Kept for logging on this side; not sent to the peer.
            made.set_source(std::sync::Arc::from(err));
            made
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::time::Duration;

    use super::*;
    use crate::fetch::FetchError;
    use crate::limit::Overloaded;
    use crate::queue::QueueFull;

    #[test]
    fn maps_our_errors_to_codes() {
        let overloaded: BoxError = Overloaded::new(2, Duration::ZERO).into();
        let s = to_status(&overloaded);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.metadata().get(RETRY_PUSHBACK_MS).unwrap(), "1000");

        let full: BoxError = QueueFull { capacity: 1 }.into();
        assert_eq!(to_status(&full).code(), Code::ResourceExhausted);

        let slow: BoxError = FetchError::Timeout {
            url: "http://internal/".into(),
            after: Duration::from_secs(1),
        }
        .into();
        let s = to_status(&slow);
        assert_eq!(s.code(), Code::DeadlineExceeded);
        assert!(!s.message().contains("internal/"));

        let missing: BoxError = FetchError::Status {
            url: "http://internal/users/9".into(),
            status: http::StatusCode::NOT_FOUND,
            body: bytes::Bytes::new(),
            retry_after: None,
            content_type: None,
        }
        .into();
        assert_eq!(to_status(&missing).code(), Code::NotFound);

        let unknown: BoxError = "secret detail".into();
        let s = into_status(unknown);
        assert_eq!(s.code(), Code::Unknown);
        assert!(!s.message().contains("secret"));
        // The original error stays attached locally.
        assert_eq!(s.source().unwrap().to_string(), "secret detail");
    }

    #[test]
    fn an_inner_status_passes_through() {
        let inner: BoxError = Status::not_found("no such service").into();
        let s = into_status(inner);
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "no such service");

        #[derive(Debug)]
        struct Wrap(Status);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl Error for Wrap {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let wrapped: BoxError = Wrap(Status::permission_denied("nope")).into();
        assert_eq!(to_status(&wrapped).code(), Code::PermissionDenied);
    }
}
