//! Fallback layer behaviour: value, function and backup service; HTTP
//! classification; the original error; readiness; statistics.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::classify::HttpClassify;
use tower_patterns::fallback::FallbackLayer;

/// Answers `n * 10`, or fails for odd `n`; counts its calls.
#[derive(Clone)]
struct Primary {
    calls: Arc<AtomicU32>,
}

impl Primary {
    fn new() -> Self {
        Primary {
            calls: Arc::new(AtomicU32::new(0)),
        }
    }
}

impl Service<u32> for Primary {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(if n % 2 == 1 {
            Err(format!("primary failed on {n}").into())
        } else {
            Ok(n * 10)
        })
    }
}

#[tokio::test]
async fn a_value_answers_failures_and_not_successes() {
    let layer = FallbackLayer::value(7_u32);
    let primary = Primary::new();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(primary.clone());
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 20);
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 7);
    assert_eq!(svc.ready().await.unwrap().call(4).await.unwrap(), 40);
    let stats = layer.stats();
    assert_eq!(
        (stats.calls, stats.fallbacks, stats.fallback_failures),
        (3, 1, 0)
    );
    assert_eq!(primary.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_function_gets_the_original_error() {
    let layer = FallbackLayer::from_fn(|failed: Result<u32, BoxError>| {
        let msg = failed.unwrap_err().to_string();
        assert_eq!(msg, "primary failed on 5");
        msg.len() as u32
    });
    let mut svc = layer.layer(Primary::new());
    assert_eq!(svc.ready().await.unwrap().call(6).await.unwrap(), 60);
    assert_eq!(
        svc.ready().await.unwrap().call(5).await.unwrap(),
        "primary failed on 5".len() as u32
    );
    assert_eq!(svc.stats().fallbacks, 1);
}

#[tokio::test]
async fn the_hook_sees_the_original_error_and_clones_share_stats() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = FallbackLayer::builder()
        .value(0_u32)
        .on_fallback({
            let seen = seen.clone();
            move |failed: &Result<u32, BoxError>| {
                let e = failed.as_ref().unwrap_err();
                seen.lock().unwrap().push(e.to_string());
            }
        })
        .build()
        .unwrap();
    let mut a = layer.layer(Primary::new());
    let mut b = a.clone();
    assert_eq!(a.ready().await.unwrap().call(1).await.unwrap(), 0);
    assert_eq!(b.ready().await.unwrap().call(3).await.unwrap(), 0);
    assert_eq!(b.ready().await.unwrap().call(2).await.unwrap(), 20);
    drop(b);
    assert_eq!(
        *seen.lock().unwrap(),
        ["primary failed on 1", "primary failed on 3"]
    );
    let stats = layer.stats();
    assert_eq!((stats.calls, stats.fallbacks), (3, 2));
    assert_eq!(a.stats(), stats);
}

#[tokio::test]
async fn a_backup_service_gets_the_same_request() {
    let backup_calls = Arc::new(Mutex::new(Vec::new()));
    let backup = service_fn({
        let backup_calls = backup_calls.clone();
        move |n: u32| {
            backup_calls.lock().unwrap().push(n);
            async move { Ok::<_, BoxError>(n + 1000) }
        }
    });
    let layer = FallbackLayer::backup(backup);
    let mut svc = layer.layer(Primary::new());
    assert_eq!(svc.ready().await.unwrap().call(8).await.unwrap(), 80);
    assert_eq!(svc.ready().await.unwrap().call(9).await.unwrap(), 1009);
    assert_eq!(*backup_calls.lock().unwrap(), [9]);
}

#[tokio::test]
async fn a_failing_backup_is_returned_and_counted() {
    let backup = service_fn(|_: u32| async { Err::<u32, BoxError>("backup down".into()) });
    let seen = Arc::new(Mutex::new(String::new()));
    let layer = FallbackLayer::builder()
        .backup(backup)
        .on_fallback({
            let seen = seen.clone();
            move |failed: &Result<u32, BoxError>| {
                *seen.lock().unwrap() = failed.as_ref().unwrap_err().to_string();
            }
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(Primary::new());
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    // The caller gets the backup's error; the hook saw the primary's.
    assert_eq!(err.to_string(), "backup down");
    assert_eq!(*seen.lock().unwrap(), "primary failed on 1");
    let stats = layer.stats();
    assert_eq!((stats.fallbacks, stats.fallback_failures), (1, 1));
}

#[tokio::test]
async fn a_503_response_falls_back_with_http_classify() {
    let upstream = service_fn(|status: u16| async move {
        Ok::<_, BoxError>(
            http::Response::builder()
                .status(status)
                .body(format!("upstream {status}"))
                .unwrap(),
        )
    });
    let layer = FallbackLayer::builder()
        .from_fn(|failed: Result<http::Response<String>, BoxError>| {
            let status = failed.map(|r| r.status().as_u16()).unwrap_or(0);
            http::Response::new(format!("fallback after {status}"))
        })
        .classify(HttpClassify)
        .build()
        .unwrap();
    let mut svc = layer.layer(upstream);
    let body = |r: http::Response<String>| r.into_body();
    assert_eq!(
        body(svc.ready().await.unwrap().call(200).await.unwrap()),
        "upstream 200"
    );
    // A 404 is an answer, not a failure.
    assert_eq!(
        body(svc.ready().await.unwrap().call(404).await.unwrap()),
        "upstream 404"
    );
    assert_eq!(
        body(svc.ready().await.unwrap().call(503).await.unwrap()),
        "fallback after 503"
    );
    assert_eq!(layer.stats().fallbacks, 1);
}

#[tokio::test]
async fn an_open_breaker_falls_back() {
    let breaker = CircuitBreakerLayer::consecutive(1, Duration::from_secs(60));
    breaker.handle().force_open();
    let primary = Primary::new();
    let mut svc = ServiceBuilder::new()
        .layer(FallbackLayer::value(1_u32))
        .layer(breaker)
        .service(primary.clone());
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 1);
    assert_eq!(primary.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_lone_handle_in_oneshot_still_falls_back() {
    // The layer is gone and `oneshot` drops the service once it has called
    // it: the future must still be able to answer.
    let svc = ServiceBuilder::new()
        .layer(FallbackLayer::value(5_u32))
        .service(Primary::new());
    let answer = svc.oneshot(1).await.unwrap();
    assert_eq!(answer, 5);
}

/// Ready only once its gate time has come (tokio time); answers `n + 500`.
struct SlowToBeReady {
    gate: Pin<Box<Sleep>>,
}

impl Clone for SlowToBeReady {
    fn clone(&self) -> Self {
        SlowToBeReady {
            gate: Box::pin(tokio::time::sleep_until(self.gate.deadline())),
        }
    }
}

impl Service<u32> for SlowToBeReady {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.gate.as_mut().poll(cx).map(Ok)
    }

    fn call(&mut self, n: u32) -> Self::Future {
        std::future::ready(Ok(n + 500))
    }
}

/// A primary whose readiness fails: it can take no calls.
#[derive(Clone)]
struct Broken;

impl Service<u32> for Broken {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("primary closed".into()))
    }

    fn call(&mut self, _: u32) -> Self::Future {
        panic!("called without being ready")
    }
}

#[tokio::test(start_paused = true)]
async fn a_backup_waits_for_its_own_readiness_only_when_used() {
    let backup = SlowToBeReady {
        gate: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
    };
    let mut svc = FallbackLayer::backup(backup).layer(Primary::new());
    // A success does not wait for the backup.
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 20);
    assert_eq!(start.elapsed(), Duration::ZERO);
    // A failure waits for the backup to be ready, then calls it.
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 503);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn a_primary_whose_readiness_fails_is_answered_by_the_backup() {
    let seen = Arc::new(Mutex::new(String::new()));
    let backup = service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 500) });
    let layer = FallbackLayer::builder()
        .backup(backup)
        .on_fallback({
            let seen = seen.clone();
            move |failed: &Result<u32, BoxError>| {
                *seen.lock().unwrap() = failed.as_ref().unwrap_err().to_string();
            }
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(Broken);
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 501);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), 502);
    assert_eq!(*seen.lock().unwrap(), "primary closed");
    assert_eq!(layer.stats().fallbacks, 2);
}

#[test]
fn a_builder_without_a_strategy_names_the_field() {
    let err = FallbackLayer::builder()
        .classify(HttpClassify)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "strategy");
    assert_eq!(err.component(), "fallback");
}
