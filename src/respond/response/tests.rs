//! Tests of the error-to-answer mapping.

use super::*;
use crate::cache::SharedError;
use crate::circuit_breaker::{CircuitBreakerLayer, Open};
use crate::fetch::FetchError;
use crate::limit::Overloaded;
use crate::pool::{PoolClosed, PoolError};
use crate::queue::{QueueClosed, QueueFull};
use tower::{Service, ServiceExt};

/// An error that wraps another, as layers and applications do.
#[derive(Debug)]
struct Context(BoxError);
impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("while handling the request")
    }
}
impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}

async fn open_error(open_for: Duration) -> BoxError {
    let layer = CircuitBreakerLayer::consecutive(1, open_for);
    let mut svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: ()| async { Err::<(), BoxError>("down".into()) }),
    );
    let _ = svc.ready().await.unwrap().call(()).await;
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<Open>(), "{err}");
    err
}

#[tokio::test(start_paused = true)]
async fn open_is_503_with_retry_after_rounded_up() {
    let err = open_error(Duration::from_millis(2_500)).await;
    let answer = error_response(&err);
    assert_eq!(answer.kind(), ErrorKind::CircuitOpen);
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.retry_after(), Some(Duration::from_millis(2_500)));
    assert_eq!(answer.retry_after_secs(), Some(3));
    let res: http::Response<String> = answer.into_http();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()[header::RETRY_AFTER], "3");
    assert!(res.body().contains("try again later"));

    // Less than a second (or a half-open breaker's zero) still says 1.
    let err = open_error(Duration::from_millis(10)).await;
    assert_eq!(error_response(&err).retry_after_secs(), Some(1));
    let zero =
        ErrorResponse::from_kind(ErrorKind::CircuitOpen).with_retry_after(Some(Duration::ZERO));
    assert_eq!(zero.retry_after_secs(), Some(1));
    // The longest wait there is saturates instead of overflowing.
    let never =
        ErrorResponse::from_kind(ErrorKind::CircuitOpen).with_retry_after(Some(Duration::MAX));
    assert_eq!(never.retry_after_secs(), Some(u64::MAX));
}

#[tokio::test(start_paused = true)]
async fn held_open_breaker_has_no_retry_after() {
    let layer = CircuitBreakerLayer::consecutive(1, Duration::from_secs(5));
    layer.handle().force_open();
    let mut svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: ()| async { Ok::<(), BoxError>(()) }),
    );
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    let res: http::Response<String> = error_response(&err).into_http();
    assert_eq!(res.status(), 503);
    assert!(res.headers().get(header::RETRY_AFTER).is_none());
}

#[test]
fn overload_queue_and_pool_are_503_with_short_retry_after() {
    let errors: Vec<(BoxError, ErrorKind)> = vec![
        (
            Overloaded::new(8, Duration::ZERO).into(),
            ErrorKind::Overloaded,
        ),
        (QueueFull { capacity: 4 }.into(), ErrorKind::QueueFull),
    ];
    for (err, kind) in errors {
        let answer = error_response(&err);
        assert_eq!(answer.kind(), kind);
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        let res: http::Response<String> = answer.into_http();
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }
    for err in [BoxError::from(QueueClosed), BoxError::from(PoolClosed)] {
        let answer = error_response(&err);
        assert_eq!(answer.kind(), ErrorKind::ShuttingDown);
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after(), None);
    }
    // PoolError<E> is generic; its source is seen through.
    let closed: BoxError = PoolError::<std::io::Error>::Closed(PoolClosed).into();
    assert_eq!(error_response(&closed).kind(), ErrorKind::ShuttingDown);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_504() {
    let svc = tower::timeout::Timeout::new(
        tower::service_fn(|_: ()| std::future::pending::<Result<(), BoxError>>()),
        Duration::from_secs(1),
    );
    let err = svc.oneshot(()).await.unwrap_err();
    assert_eq!(error_response(&err).status(), StatusCode::GATEWAY_TIMEOUT);

    let err: BoxError = tokio::time::timeout(Duration::from_secs(1), std::future::pending::<()>())
        .await
        .unwrap_err()
        .into();
    assert_eq!(error_response(&err).kind(), ErrorKind::Timeout);
}

#[test]
fn fetch_errors_are_502_or_504_without_leaking_the_url() {
    let timeout: BoxError = FetchError::Timeout {
        url: "http://10.0.0.7/secret".into(),
        after: Duration::from_secs(3),
    }
    .into();
    let answer = error_response(&timeout);
    assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.kind(), ErrorKind::UpstreamTimeout);

    let status: BoxError = FetchError::Status {
        url: "http://10.0.0.7/secret".into(),
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: bytes::Bytes::from_static(b"stack trace"),
        retry_after: None,
        content_type: Some(HeaderValue::from_static("text/plain")),
    }
    .into();
    let res: http::Response<String> = error_response(&status).into_http();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert!(!res.body().contains("10.0.0.7"), "{}", res.body());
    assert!(!res.body().contains("stack trace"));
}

fn upstream_status(code: u16, content_type: &'static str, body: &'static str) -> BoxError {
    FetchError::Status {
        url: "http://10.0.0.7/users/9".into(),
        status: StatusCode::from_u16(code).unwrap(),
        body: bytes::Bytes::from_static(body.as_bytes()),
        retry_after: Some(Duration::from_secs(7)),
        content_type: Some(HeaderValue::from_static(content_type)),
    }
    .into()
}

#[test]
fn upstream_client_errors_pass_through() {
    let err = upstream_status(404, "application/json", r#"{"error":"no such user"}"#);
    let answer = error_response(&err);
    assert_eq!(answer.kind(), ErrorKind::UpstreamClientError);
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer.message(), "Not Found");
    assert_eq!(answer.upstream_body(), Some(r#"{"error":"no such user"}"#));
    // Only a 429's Retry-After is passed on.
    assert_eq!(answer.retry_after(), None);
    let res: http::Response<String> = answer.into_http();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(res.body(), r#"{"error":"no such user"}"#);

    // HTML is not shown under our origin: the reason phrase instead.
    let err = upstream_status(410, "text/html", "<script>steal()</script>");
    let res: http::Response<String> = error_response(&err).into_http();
    assert_eq!(res.status(), StatusCode::GONE);
    assert_eq!(res.body(), "Gone");
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );

    let err = upstream_status(429, "text/plain", "slow down");
    let res: http::Response<String> = error_response(&err).into_http();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    assert_eq!(res.body(), "slow down");
}

#[test]
fn upstream_auth_failures_are_502_and_408_is_504() {
    for code in [401, 407] {
        let err = upstream_status(code, "text/plain", "bad token for svc-account-7");
        let answer = error_response(&err);
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY, "{code}");
        let res: http::Response<String> = answer.into_http();
        assert!(!res.body().contains("svc-account"), "{}", res.body());
        assert!(res.headers().get(header::RETRY_AFTER).is_none());
    }
    let err = upstream_status(408, "text/plain", "too slow");
    let answer = error_response(&err);
    assert_eq!(answer.kind(), ErrorKind::UpstreamTimeout);
    assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
    // A redirect (not followed) and a 5xx are the upstream failing.
    for code in [302, 503] {
        let answer = error_response(&upstream_status(code, "text/plain", "x"));
        assert_eq!(answer.status(), StatusCode::BAD_GATEWAY, "{code}");
        assert_eq!(answer.upstream_body(), None);
    }
}

#[test]
fn unknown_errors_are_a_generic_500() {
    let err: BoxError = "password=hunter2 rejected by db-7".into();
    let answer = error_response(&err);
    assert_eq!(answer.kind(), ErrorKind::Internal);
    assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let res: http::Response<String> = answer.into_http();
    assert_eq!(res.body(), "internal server error");
    assert!(res.headers().get(header::RETRY_AFTER).is_none());
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
}

#[test]
fn walks_the_source_chain() {
    let wrapped: BoxError =
        Context(Context(Overloaded::new(1, Duration::ZERO).into()).into()).into();
    assert_eq!(error_response(&wrapped).kind(), ErrorKind::Overloaded);

    let shared: BoxError = SharedError::new(QueueFull { capacity: 1 }.into()).into();
    assert_eq!(error_response(&shared).kind(), ErrorKind::QueueFull);

    // The outermost recognised error wins.
    let outer: BoxError = FetchError::Transport {
        url: "http://u/".into(),
        source: Box::new(Overloaded::new(1, Duration::ZERO)),
    }
    .into();
    assert_eq!(error_response(&outer).kind(), ErrorKind::Upstream);
}

#[test]
fn rate_limited_is_429_with_retry_after_and_ratelimit_headers() {
    let err: BoxError = Box::new(crate::rejection::RateLimited {
        retry_after: Duration::from_millis(2_300),
        count: 100,
        period: Duration::from_secs(60),
    });
    let answer = error_response(&err);
    assert_eq!(answer.kind(), ErrorKind::RateLimited);
    let res: http::Response<String> = answer.into_http();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let h = res.headers();
    assert_eq!(h[header::RETRY_AFTER], "3");
    assert_eq!(h["ratelimit-policy"], "\"default\";q=100;w=60");
    assert_eq!(h["ratelimit"], "\"default\";r=0;t=3");
}
