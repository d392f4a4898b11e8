//! The traps a new user fell into on day one (issue 24), each pinned by a
//! test: stacks that compiled and then misbehaved without a word.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::time::Instant;
use tower::{service_fn, BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open, State};
use tower_patterns::classify::{ClassifyExt, HttpClassify};
use tower_patterns::fetch::{self, FetchError, HttpClient};
use tower_patterns::limit::{ConcurrencyLimitLayer, Overloaded};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
use tower_patterns::upstream::UpstreamConfig;

type Res = http::Response<Full<Bytes>>;

fn answer(status: u16, retry_after: Option<&str>) -> Res {
    let mut b = http::Response::builder().status(status);
    if let Some(secs) = retry_after {
        b = b.header("retry-after", secs);
    }
    b.body(Full::new(Bytes::from_static(b"{}"))).unwrap()
}

/// A reject-mode limit inside a breaker, the order the crate docs show:
/// a burst the limit sheds must not open the breaker over a healthy backend.
#[tokio::test(start_paused = true)]
async fn a_reject_mode_limit_inside_a_breaker_never_opens_it() {
    let breaker = CircuitBreakerLayer::builder()
        .classify(HttpClassify)
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let limit = ConcurrencyLimitLayer::builder()
        .limit(2)
        .reject_when_full()
        .build()
        .unwrap();
    let healthy = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Infallible>(answer(200, None))
    });
    let svc = ServiceBuilder::new()
        .layer(breaker.clone())
        .layer(limit)
        .service(healthy);

    let calls = (0..8).map(|_| svc.clone().oneshot(()));
    let results = futures::future::join_all(calls).await;

    let ok = results.iter().filter(|r| r.is_ok()).count();
    let shed = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.is::<Overloaded>()))
        .count();
    assert_eq!((ok, shed), (2, 6), "two permits, six shed");
    let stats = breaker.stats();
    assert_eq!(breaker.handle().state(), State::Closed, "{stats:?}");
    assert_eq!((stats.failures, stats.ignored, stats.opened), (0, 6, 0));

    // The backend is still reachable through the same stack.
    assert_eq!(svc.oneshot(()).await.unwrap().status(), 200);
}

/// Retry outside a breaker, both with `HttpClassify`: during an outage a
/// call fails at once with `Open`, instead of sleeping through its backoff
/// against a breaker that will say the same.
#[tokio::test(start_paused = true)]
async fn retry_does_not_retry_an_open_breaker() {
    let calls = Arc::new(AtomicU32::new(0));
    let backend = {
        let calls = Arc::clone(&calls);
        service_fn(move |_: ()| {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, Infallible>(answer(503, None)) }
        })
    };
    let retry = RetryLayer::builder()
        .classify(HttpClassify)
        .max_attempts(4)
        .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::None))
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder()
        .classify(HttpClassify)
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let svc = retry.layer(breaker.layer(backend));

    // The first call opens the breaker on its second attempt; the retry of
    // the third attempt meets the open breaker and stops there.
    let err = svc.clone().oneshot(()).await.unwrap_err();
    assert!(err.is::<Open>(), "{err}");
    assert_eq!(calls.load(Ordering::Relaxed), 2);

    // During the outage: no sleep, no retry, the breaker's own error.
    let retries_before = retry.stats().retries;
    let start = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    let took = start.elapsed();
    let open = err.downcast_ref::<Open>().expect("the breaker's Open");
    assert!(open.retry_after().is_some());
    assert!(
        took < Duration::from_millis(1),
        "took {took:?} of tokio time"
    );
    assert_eq!(
        retry.stats().retries,
        retries_before,
        "an Open is not retried"
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        2,
        "the backend was not called"
    );
}

/// A classifier built with a combinator keeps the server's `Retry-After`
/// (a closure written for the same purpose would lose it).
#[tokio::test(start_paused = true)]
async fn a_combinator_classifier_honours_retry_after() {
    let calls = Arc::new(AtomicU32::new(0));
    let backend = {
        let calls = Arc::clone(&calls);
        service_fn(move |_: ()| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                Ok::<_, BoxError>(if n == 0 {
                    answer(503, Some("2"))
                } else {
                    answer(200, None)
                })
            }
        })
    };
    let retry = RetryLayer::builder()
        .classify(HttpClassify.ignoring::<Overloaded>())
        .backoff(Backoff::exponential(Duration::from_millis(10)).jitter(Jitter::None))
        .build()
        .unwrap();
    let start = Instant::now();
    let res = retry.layer(backend).oneshot(()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "waited Retry-After"
    );
}

/// `max_retry_after` caps a server's delay without touching the backoff.
#[tokio::test(start_paused = true)]
async fn max_retry_after_caps_the_servers_delay() {
    let run = |max_retry_after: Option<Duration>| async move {
        let calls = Arc::new(AtomicU32::new(0));
        let backend = service_fn(move |_: ()| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                Ok::<_, Infallible>(if n == 0 {
                    answer(429, Some("1"))
                } else {
                    answer(200, None)
                })
            }
        });
        let mut builder = RetryLayer::builder()
            .classify(HttpClassify)
            .backoff(Backoff::exponential(Duration::from_millis(20)).jitter(Jitter::None));
        if let Some(max) = max_retry_after {
            builder = builder.max_retry_after(max);
        }
        let start = Instant::now();
        let res = builder.build().unwrap().layer(backend).oneshot(()).await;
        assert_eq!(res.unwrap().status(), 200);
        start.elapsed()
    };
    // Unset, the backoff's max_delay (10 s) is the cap: the server's 1 s holds.
    assert_eq!(run(None).await, Duration::from_secs(1));
    assert_eq!(
        run(Some(Duration::from_millis(200))).await,
        Duration::from_millis(200)
    );
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct User {
    id: u64,
    name: String,
}

/// `fetch_json` over a whole stack: every layer sees the call.
#[tokio::test]
async fn fetch_json_goes_through_a_full_stack() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let retry = RetryLayer::builder()
        .classify(HttpClassify)
        .max_attempts(2)
        .max_retry_after(Duration::from_millis(1))
        .build()
        .unwrap();
    let breaker = CircuitBreakerLayer::builder()
        .classify(HttpClassify)
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let limit = ConcurrencyLimitLayer::new(4);
    let client = HttpClient::new();
    let stack = ServiceBuilder::new()
        .layer(retry.clone())
        .layer(breaker.clone())
        .layer(limit.clone())
        .service(client.clone());

    let user: User = fetch::fetch_json(&stack, server.url("/users/7"))
        .await
        .unwrap();
    assert_eq!(user.id, 7);
    assert_eq!(breaker.stats().successes, 1);
    assert_eq!(retry.stats().attempts, 1);

    // A 404 is the server's answer: not retried, not a breaker failure,
    // and still a FetchError::Status under the stack's BoxError.
    let err = fetch::fetch_json::<User, _, _>(&stack, server.url("/users/0"))
        .await
        .unwrap_err();
    let fetch_err = err.downcast_ref::<FetchError>().expect("a FetchError");
    assert_eq!(fetch_err.status(), Some(http::StatusCode::NOT_FOUND));

    // An outage: the stack retries (Retry-After capped to 1 ms), then gives
    // the 503 back.
    server.set_down(true);
    let err = fetch::fetch_json::<User, _, _>(&stack, server.url("/users/7"))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<FetchError>()
            .and_then(FetchError::status),
        Some(http::StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(retry.stats().retries, 1);
    assert_eq!(breaker.stats().failures, 2);
    server.set_down(false);

    // fetch_all over the same stack, results in input order.
    let urls = [
        server.url("/users/1"),
        "not a url".into(),
        server.url("/users/3"),
    ];
    let all: Vec<Result<User, BoxError>> = fetch::fetch_all(&stack, &urls, 2).await;
    assert_eq!(all[0].as_ref().unwrap().id, 1);
    assert!(all[1].as_ref().unwrap_err().is::<FetchError>());
    assert_eq!(all[2].as_ref().unwrap().id, 3);
    assert_eq!(
        client.stats().requests,
        6,
        "every request went through the client"
    );

    // Requests built by the helpers go through the same stack.
    let res = stack
        .clone()
        .oneshot(fetch::get(server.url("/health")).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
