//! The demo's client stack (cache -> retry -> circuit breaker -> limit ->
//! HttpClient, from `examples/support/demo_stack.rs`) against the shared
//! `upstream` server through an outage.
//!
//! The server and the client talk over real loopback sockets, so these
//! tests cannot start with paused time: tokio would jump the clock to the
//! next timer (the client's request timeout) whenever it waits for a
//! socket. Nothing sleeps on the wall clock either: where the breaker's open
//! duration must pass, [`skip`] pauses tokio's clock, moves it forward by
//! exactly what the breaker reported (`Open::retry_after`) and resumes it,
//! so the wait is exact and instant.

#[path = "../examples/support/demo_stack.rs"]
mod demo_stack;

use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use tower::{BoxError, ServiceExt};
use tower_patterns::circuit_breaker::{Open, State};
use tower_patterns::retry::Jitter;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

use demo_stack::{get, DemoStack, Res, StackConfig};

const OPEN: Duration = Duration::from_millis(400);

/// Moves tokio's clock forward by `d` at once, with no socket I/O pending:
/// the breaker sees `d` pass, the wall clock does not.
async fn skip(d: Duration) {
    tokio::time::pause();
    tokio::time::advance(d).await;
    tokio::time::resume();
}

fn config() -> StackConfig {
    StackConfig {
        attempts: 3,
        base_delay: Duration::from_millis(1),
        // The server asks for `Retry-After: 1`; the cap keeps the test short.
        max_delay: Duration::from_millis(5),
        jitter: Jitter::None,
        budget: false,
        failures_to_open: 5,
        open_duration: OPEN,
        concurrency: 4,
        timeout: Duration::from_secs(10),
    }
}

async fn call(stack: &DemoStack, url: &str) -> Result<Res, BoxError> {
    stack.svc.clone().oneshot(get(url)).await
}

fn open_of(result: &Result<Res, BoxError>) -> Option<&Open> {
    result.as_ref().err().and_then(|e| e.downcast_ref::<Open>())
}

fn status(result: &Result<Res, BoxError>) -> Option<StatusCode> {
    result.as_ref().ok().map(|r| r.status())
}

#[tokio::test]
async fn breaker_opens_fails_fast_and_recovers_without_losing_or_doubling_requests() {
    let upstream = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let stack = DemoStack::build(&config()).unwrap();
    let url = |id: u64| upstream.url(&format!("/users/{id}"));

    // Healthy: one request each, no retries.
    for id in 1..=5 {
        let r = call(&stack, &url(id)).await;
        assert_eq!(status(&r), Some(StatusCode::OK));
    }
    assert_eq!(upstream.requests(), 5);
    let s = stack.stats();
    assert_eq!((s.retry.attempts, s.retry.retries), (5, 0));
    assert_eq!(s.breaker_state, State::Closed);

    upstream.set_down(true);

    // A: three attempts, all 503; retry gives up and hands back the last 503.
    let a = call(&stack, &url(11)).await;
    assert_eq!(status(&a), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(upstream.requests(), 5 + 3);
    assert_eq!(stack.breaker.state(), State::Closed);

    // B: two more failures make five in a row: the breaker opens, and B's
    // third attempt fails fast with `Open`, which retry does not retry.
    let b = call(&stack, &url(12)).await;
    assert!(open_of(&b).is_some(), "expected Open, got {b:?}");
    assert_eq!(upstream.requests(), 5 + 3 + 2);
    assert_eq!(stack.breaker.state(), State::Open);
    let s = stack.stats();
    assert_eq!((s.retry.attempts, s.retry.retries), (5 + 3 + 3, 4));
    assert_eq!(s.breaker_rejected, 1);

    // While open: every call fails fast and none reaches the server.
    let mut wait = Duration::ZERO;
    for id in 20..40 {
        let r = call(&stack, &url(id)).await;
        let open = open_of(&r).expect("fails fast with Open");
        wait = open.retry_after().expect("open with a timer");
        assert!(wait <= OPEN);
        assert_eq!(
            upstream.requests(),
            10,
            "a call reached the server while open"
        );
    }
    let s = stack.stats();
    assert_eq!(s.breaker_rejected, 21);
    // Open is not retried: 20 more attempts, no more retries.
    assert_eq!((s.retry.attempts, s.retry.retries), (11 + 20, 4));

    // The cache still answers for what it has, server down and breaker open.
    let hits = stack.cache.stats().hits;
    let cached = call(&stack, &url(1)).await;
    assert_eq!(status(&cached), Some(StatusCode::OK));
    let body = cached
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    assert!(std::str::from_utf8(&body).unwrap().contains("\"user-1\""));
    assert_eq!(stack.cache.stats().hits, hits + 1);
    assert_eq!(upstream.requests(), 10);

    // Recovery: the server comes back; after the open duration (as the
    // breaker itself reported) one probe goes through and closes it.
    upstream.set_down(false);
    skip(wait).await;
    let r = call(&stack, &url(50)).await;
    assert_eq!(status(&r), Some(StatusCode::OK));
    assert_eq!(upstream.requests(), 11);
    assert_eq!(stack.breaker.state(), State::Closed);

    let t = stack.transitions();
    let seq: Vec<_> = t.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        seq,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
    // (The log is written just after each transition: allow its delay.)
    let slack = Duration::from_millis(5);
    assert!(
        t[1].at + slack >= t[0].at + OPEN,
        "probed before the open duration: {t:?}"
    );

    // Nothing lost or doubled: every attempt that got past the breaker
    // reached the server exactly once, and the client agrees.
    let s = stack.stats();
    assert_eq!(s.retry.attempts - s.breaker_rejected, upstream.requests());
    assert_eq!(s.client_requests, upstream.requests());
    assert_eq!((s.retry.attempts, s.retry.retries), (32, 4));
    upstream.shutdown().await;
}

#[tokio::test]
async fn a_failed_probe_reopens_and_the_next_one_closes() {
    let upstream = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let stack = DemoStack::build(&config()).unwrap();
    let url = |id: u64| upstream.url(&format!("/users/{id}"));

    upstream.set_down(true);
    let _ = call(&stack, &url(1)).await; // 3 failures
    let r = call(&stack, &url(2)).await; // 2 more: open
    let wait = open_of(&r).and_then(Open::retry_after).expect("open");
    assert_eq!(upstream.requests(), 5);

    // Still down when the probe goes: it fails and the breaker opens again;
    // the caller's next attempt is refused at once.
    skip(wait).await;
    let r = call(&stack, &url(3)).await;
    let wait = open_of(&r).and_then(Open::retry_after).expect("open again");
    assert_eq!(upstream.requests(), 6, "exactly one probe");
    assert_eq!(stack.breaker.state(), State::Open);

    upstream.set_down(false);
    skip(wait).await;
    let r = call(&stack, &url(4)).await;
    assert_eq!(status(&r), Some(StatusCode::OK));
    assert_eq!(upstream.requests(), 7);

    let seq: Vec<_> = stack.transitions().iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(
        seq,
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed),
        ]
    );
    let s = stack.stats();
    assert_eq!(s.retry.attempts - s.breaker_rejected, upstream.requests());
    upstream.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_load_on_a_flaky_server_accounts_for_every_request() {
    let upstream = Upstream::start(UpstreamConfig {
        fail_rate: 0.3,
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    let stack = DemoStack::build(&config()).unwrap();
    let n = 300u64;
    let requests = (1..=n).map(|id| get(&upstream.url(&format!("/users/{id}"))));
    let results = tower_patterns::limit::gather(stack.svc.clone(), requests, 16).await;

    // One answer per request, each for its own URL.
    assert_eq!(results.len(), n as usize);
    let (mut ok, mut unavailable, mut open) = (0u64, 0u64, 0u64);
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(resp) if resp.status() == StatusCode::OK => {
                ok += 1;
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(v["id"], i as u64 + 1, "answer for the wrong request");
            }
            Ok(resp) => {
                assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
                unavailable += 1;
            }
            Err(e) => {
                assert!(e.downcast_ref::<Open>().is_some(), "unexpected error {e}");
                open += 1;
            }
        }
    }
    assert_eq!(ok + unavailable + open, n);
    assert!(ok > 0);

    // Every call made at most `attempts` attempts, and every attempt that
    // got past the breaker reached the server exactly once.
    let s = stack.stats();
    assert_eq!(s.retry.attempts, n + s.retry.retries);
    assert!(s.retry.retries <= 2 * n);
    assert_eq!(s.retry.attempts - s.breaker_rejected, upstream.requests());
    assert_eq!(s.client_requests, upstream.requests());
    // A 503 handed back means its three attempts all failed at the server.
    assert!(upstream.failures_sent() >= 3 * unavailable);
    assert_eq!(s.cache.misses, n);
    upstream.shutdown().await;
}
