//! Retry layer behaviour, with paused tokio time and a real hyper server.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::classify::{HttpClassify, Outcome};
use tower_patterns::retry::{Backoff, Jitter, Replay, Retry, RetryBudget, RetryLayer};

const MS: Duration = Duration::from_millis(1);

/// Records when each call happened; `outcome(n)` (n = 1 for the first
/// call) decides its result.
#[derive(Clone)]
struct Recorder {
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            calls: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Offsets of each call from `start`.
    fn offsets(&self, start: Instant) -> Vec<Duration> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.duration_since(start))
            .collect()
    }

    /// A service answering `Ok(n)` or `Err(n)` by `outcome(n)`.
    fn service<F>(
        &self,
        outcome: F,
    ) -> impl Service<u32, Response = u32, Error = String, Future = impl Send> + Clone + Send
    where
        F: Fn(usize) -> bool + Clone + Send + 'static,
    {
        let calls = self.calls.clone();
        service_fn(move |_req: u32| {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push(Instant::now());
                calls.len()
            };
            let ok = outcome(n);
            async move {
                if ok {
                    Ok(n as u32)
                } else {
                    Err(format!("call {n} failed"))
                }
            }
        })
    }
}

fn no_jitter(base: Duration) -> Backoff {
    Backoff::exponential(base).factor(2.0).jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn exact_backoff_without_jitter() {
    let rec = Recorder::new();
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter(100 * MS))
        .build()
        .unwrap();
    let mut svc = layer.layer(rec.service(|n| n >= 3));
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(7).await;
    assert_eq!(res, Ok(3));
    assert_eq!(start.elapsed(), 300 * MS);
    assert_eq!(rec.offsets(start), [Duration::ZERO, 100 * MS, 300 * MS]);
    let stats = svc.stats();
    assert_eq!(
        (stats.attempts, stats.retries, stats.budget_refusals),
        (3, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn last_error_is_returned_unchanged() {
    let rec = Recorder::new();
    let mut svc = RetryLayer::builder()
        .max_attempts(4)
        .backoff(no_jitter(10 * MS))
        .build()
        .unwrap()
        .layer(rec.service(|_| false));
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    // The inner error type and the *last* attempt's value, not a wrapper.
    assert_eq!(err, "call 4 failed");
    assert_eq!(rec.count(), 4);
}

#[tokio::test(start_paused = true)]
async fn successes_and_ignored_results_are_not_retried() {
    let calls = Arc::new(AtomicU32::new(0));
    let status = |code: u16| {
        let calls = calls.clone();
        service_fn(move |_req: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            let resp = http::Response::builder().status(code).body(()).unwrap();
            async move { Ok::<_, Infallible>(resp) }
        })
    };
    let layer = RetryLayer::builder()
        .classify(HttpClassify)
        .max_attempts(5)
        .build()
        .unwrap();
    for (code, want_calls) in [(200, 1), (404, 1), (500, 5)] {
        calls.store(0, Ordering::SeqCst);
        let mut svc = layer.layer(status(code));
        let resp = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(resp.status().as_u16(), code);
        assert_eq!(calls.load(Ordering::SeqCst), want_calls, "status {code}");
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_stays_inside_its_bounds() {
    for (jitter, lower_fraction) in [(Jitter::Full, 0.0), (Jitter::Equal, 0.5)] {
        for _ in 0..20 {
            let rec = Recorder::new();
            let mut svc = RetryLayer::builder()
                .max_attempts(4)
                .backoff(Backoff::exponential(100 * MS).jitter(jitter))
                .build()
                .unwrap()
                .layer(rec.service(|_| false));
            let start = Instant::now();
            let _ = svc.ready().await.unwrap().call(0).await;
            let t = rec.offsets(start);
            assert_eq!(t.len(), 4);
            for (i, nominal) in [100 * MS, 200 * MS, 400 * MS].into_iter().enumerate() {
                let gap = t[i + 1] - t[i];
                // Tokio's timer has millisecond resolution: allow 1 ms.
                assert!(
                    gap.as_secs_f64() >= nominal.as_secs_f64() * lower_fraction
                        && gap <= nominal + MS,
                    "{jitter:?}: gap {i} was {gap:?}, nominal {nominal:?}"
                );
            }
        }
    }
    // Decorrelated: each gap in [base, 3 × previous gap], capped.
    for _ in 0..20 {
        let rec = Recorder::new();
        let mut svc = RetryLayer::builder()
            .max_attempts(5)
            .backoff(
                Backoff::exponential(100 * MS)
                    .max_delay(500 * MS)
                    .jitter(Jitter::Decorrelated),
            )
            .build()
            .unwrap()
            .layer(rec.service(|_| false));
        let start = Instant::now();
        let _ = svc.ready().await.unwrap().call(0).await;
        let t = rec.offsets(start);
        let mut prev = 100 * MS;
        for i in 0..4 {
            let gap = t[i + 1] - t[i];
            assert!(gap >= 100 * MS, "gap {gap:?}");
            assert!(
                gap <= (prev * 3).min(500 * MS) + MS,
                "gap {gap:?} after {prev:?}"
            );
            prev = gap;
        }
    }
}

fn unavailable_then_ok(
    retry_after: &'static str,
) -> (
    Arc<Mutex<Vec<Instant>>>,
    impl Service<(), Response = http::Response<()>, Error = Infallible, Future = impl Send> + Clone,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let svc = service_fn({
        let calls = calls.clone();
        move |_req: ()| {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push(Instant::now());
                calls.len()
            };
            let resp = if n == 1 {
                http::Response::builder()
                    .status(503)
                    .header("retry-after", retry_after)
                    .body(())
            } else {
                http::Response::builder().status(200).body(())
            };
            async move { Ok::<_, Infallible>(resp.unwrap()) }
        }
    });
    (calls, svc)
}

#[tokio::test(start_paused = true)]
async fn retry_after_overrides_the_backoff() {
    let (calls, inner) = unavailable_then_ok("2");
    let mut svc = RetryLayer::builder()
        .classify(HttpClassify)
        .backoff(no_jitter(100 * MS))
        .build()
        .unwrap()
        .layer(inner);
    let start = Instant::now();
    let resp = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1] - start, Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped_by_max_delay() {
    let (calls, inner) = unavailable_then_ok("3600");
    let mut svc = RetryLayer::builder()
        .classify(HttpClassify)
        .backoff(no_jitter(100 * MS).max_delay(Duration::from_secs(5)))
        .build()
        .unwrap()
        .layer(inner);
    let start = Instant::now();
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(calls.lock().unwrap()[1] - start, Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_attempts() {
    let rec = Recorder::new();
    let mut svc = RetryLayer::builder()
        .max_attempts(10)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .deadline(Duration::from_millis(3500))
        .build()
        .unwrap()
        .layer(rec.service(|_| false));
    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    // Attempts at 0, 1, 2 and 3 s; one at 4 s would start past 3.5 s, so
    // the sleep towards it is not even begun.
    assert_eq!(err, "call 4 failed");
    assert_eq!(rec.count(), 4);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn deadline_counts_slow_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let slow = service_fn({
        let calls = calls.clone();
        move |_req: ()| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                Err::<(), _>("slow failure")
            }
        }
    });
    let mut svc = RetryLayer::builder()
        .max_attempts(10)
        .backoff(Backoff::constant(500 * MS))
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap()
        .layer(slow);
    let start = Instant::now();
    assert!(svc.ready().await.unwrap().call(()).await.is_err());
    // 0..2 s, then 2.5..4.5 s; a third would start past the deadline.
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), Duration::from_millis(4500));
}

#[tokio::test(start_paused = true)]
async fn budget_caps_retries_under_total_failure() {
    let rec = Recorder::new();
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(MS))
        .budget(RetryBudget::new(0.1, 1, Duration::from_secs(10)))
        .build()
        .unwrap();
    let svc = layer.layer(rec.service(|_| false));
    // 200 requests, all failing, all within one window (about 0.2 s).
    for _ in 0..200 {
        let mut svc = svc.clone();
        assert!(svc.ready().await.unwrap().call(0).await.is_err());
    }
    let stats = layer.stats();
    // Allowed: 10 % of 200 first attempts + 1/s × 10 s = 30. Without the
    // budget there would be 400 retries.
    assert!(
        stats.retries >= 10 && stats.retries <= 30,
        "retries: {}",
        stats.retries
    );
    assert_eq!(stats.attempts, 200 + stats.retries);
    assert_eq!(rec.count() as u64, stats.attempts);
    assert!(stats.budget_refusals >= 200 - 30, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn dropping_mid_backoff_makes_no_further_call() {
    let rec = Recorder::new();
    let mut svc = RetryLayer::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .build()
        .unwrap()
        .layer(rec.service(|_| false));
    let fut = svc.ready().await.unwrap().call(0);
    // Give up half-way through the first backoff sleep.
    let timed_out = tokio::time::timeout(500 * MS, fut).await;
    assert!(timed_out.is_err());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rec.count(), 1);
    assert_eq!(svc.stats().retries, 0);
}

/// Counts `poll_ready` calls and flags calls made without readiness.
#[derive(Clone)]
struct ReadyChecked {
    ready: bool,
    polls: Arc<AtomicUsize>,
    unready_calls: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Service<()> for ReadyChecked {
    type Response = ();
    type Error = &'static str;
    type Future = Pin<Box<dyn Future<Output = Result<(), &'static str>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Ready every other poll, so readiness really has to be awaited.
        let n = self.polls.fetch_add(1, Ordering::SeqCst);
        if n.is_multiple_of(2) {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: ()) -> Self::Future {
        if !std::mem::take(&mut self.ready) {
            self.unready_calls.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if n < 3 {
                Err("not yet")
            } else {
                Ok(())
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_before_every_attempt() {
    let inner = ReadyChecked {
        ready: false,
        polls: Arc::default(),
        unready_calls: Arc::default(),
        calls: Arc::default(),
    };
    let (polls, unready, calls) = (
        inner.polls.clone(),
        inner.unready_calls.clone(),
        inner.calls.clone(),
    );
    let mut svc = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter(MS))
        .build()
        .unwrap()
        .layer(inner);
    svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(unready.load(Ordering::SeqCst), 0);
    // Two polls (one pending, one ready) per attempt.
    assert_eq!(polls.load(Ordering::SeqCst), 6);
}

#[tokio::test(start_paused = true)]
async fn clones_and_services_of_one_layer_share_stats_and_budget() {
    let rec = Recorder::new();
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(MS))
        .budget(RetryBudget::new(0.0, 1, Duration::from_secs(5)))
        .build()
        .unwrap();
    let always_fail = |_| false;
    let a = layer.layer(rec.service(always_fail));
    let b = layer.layer(rec.service(always_fail));
    for mut svc in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .cycle()
        .take(20)
    {
        let _ = svc.ready().await.unwrap().call(0).await;
    }
    // The floor (1/s over 5 s) is shared: 5 retries in all, not per clone.
    assert_eq!(layer.stats().retries, 5);
    assert_eq!(a.stats(), b.stats());
    assert_eq!(a.stats().budget_refusals, 15);
    // A fresh layer starts fresh.
    let fresh = RetryLayer::exponential(3);
    assert_eq!(fresh.stats().attempts, 0);
}

#[tokio::test(start_paused = true)]
async fn closures_classify_and_non_clone_requests_replay() {
    /// Not `Clone`: replays itself only while `tries_left > 0`.
    struct Job {
        tries_left: u32,
    }
    impl Replay for Job {
        fn replay(&self) -> Option<Self> {
            (self.tries_left > 0).then(|| Job {
                tries_left: self.tries_left - 1,
            })
        }
    }
    let calls = Arc::new(AtomicU32::new(0));
    let inner = service_fn({
        let calls = calls.clone();
        move |_job: Job| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<u32, Infallible>(0) }
        }
    });
    // A closure classifier: even 0 counts as a failure here.
    let mut svc: Retry<_, _> = RetryLayer::builder()
        .max_attempts(10)
        .backoff(no_jitter(MS))
        .classify(|r: &Result<u32, Infallible>| match r {
            Ok(0) => Outcome::Failure,
            _ => Outcome::Success,
        })
        .build()
        .unwrap()
        .layer(inner);
    let res = svc.ready().await.unwrap().call(Job { tries_left: 2 }).await;
    assert_eq!(res, Ok(0));
    // The original plus two replays; the third replay was refused.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[test]
fn config_errors_name_the_field() {
    let base = || RetryLayer::builder();
    let cases = [
        (base().max_attempts(0).build().unwrap_err(), "max_attempts"),
        (
            base()
                .backoff(Backoff::exponential(MS).factor(0.5))
                .build()
                .unwrap_err(),
            "backoff.factor",
        ),
        (
            base()
                .backoff(Backoff::exponential(MS).factor(f64::INFINITY))
                .build()
                .unwrap_err(),
            "backoff.factor",
        ),
        (
            base()
                .backoff(
                    Backoff::exponential(Duration::from_secs(2)).max_delay(Duration::from_secs(1)),
                )
                .build()
                .unwrap_err(),
            "backoff.max_delay",
        ),
        (
            base()
                .budget(RetryBudget::new(-0.5, 1, Duration::from_secs(1)))
                .build()
                .unwrap_err(),
            "budget.ratio",
        ),
        (
            base()
                .budget(RetryBudget::new(0.5, 1, Duration::ZERO))
                .build()
                .unwrap_err(),
            "budget.window",
        ),
        (
            base().deadline(Duration::ZERO).build().unwrap_err(),
            "deadline",
        ),
    ];
    for (err, field) in cases {
        assert_eq!(err.field(), field);
        assert_eq!(err.component(), "retry");
        let msg = err.to_string();
        assert!(msg.contains(field), "{msg:?} should name {field}");
    }
    assert!(base().build().is_ok());
    assert_eq!(RetryLayer::exponential(0).max_attempts(), 1);
}

/// A server that answers 503 to its first request and echoes the body of
/// every later one; returns its address and the bodies it received.
async fn flaky_echo_server() -> (std::net::SocketAddr, Arc<Mutex<Vec<Bytes>>>) {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let body = req.into_body().collect().await?.to_bytes();
                            let n = {
                                let mut seen = seen.lock().unwrap();
                                seen.push(body.clone());
                                seen.len()
                            };
                            let resp = if n == 1 {
                                http::Response::builder()
                                    .status(503)
                                    .header("retry-after", "0")
                                    .body(Full::new(Bytes::from_static(b"try again")))
                            } else {
                                http::Response::builder().status(200).body(Full::new(body))
                            };
                            Ok::<_, hyper::Error>(resp.unwrap())
                        }
                    });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn http_requests_with_bodies_retry_through_a_real_server() {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let (addr, seen) = flaky_echo_server().await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let layer = RetryLayer::builder()
        .classify(HttpClassify)
        .max_attempts(3)
        .backoff(no_jitter(MS))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(client);

    let req = http::Request::post(format!("http://{addr}/echo"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let resp = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "payload");
    // The server saw the body twice: the 503'd attempt and the retry.
    assert_eq!(
        *seen.lock().unwrap(),
        [Bytes::from("payload"), Bytes::from("payload")]
    );
    assert_eq!(layer.stats().retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_exact_across_concurrent_clones() {
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap();
    // Odd requests fail once, so half the calls are retried once.
    let inner = service_fn(|n: u32| async move {
        if n % 2 == 1 {
            Err("odd")
        } else {
            Ok(n)
        }
    });
    let svc = layer.layer(inner);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for n in 0..500u32 {
                    let _ = svc.ready().await.unwrap().call(n).await;
                }
                // Dropping the clone here must not lose its counts.
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = layer.stats();
    assert_eq!(stats.retries, 8 * 250);
    assert_eq!(stats.attempts, 8 * 500 + 8 * 250);
    assert_eq!(svc.stats(), stats);
}

#[tokio::test(start_paused = true)]
async fn oneshot_on_a_one_off_layer_still_retries() {
    // Layer and service are dropped as soon as the call is made; the
    // future carries what it needs to go on retrying.
    let rec = Recorder::new();
    let svc = RetryLayer::builder()
        .max_attempts(3)
        .backoff(no_jitter(10 * MS))
        .build()
        .unwrap()
        .layer(rec.service(|n| n >= 3));
    assert_eq!(svc.oneshot(1).await, Ok(3));
    assert_eq!(rec.count(), 3);
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let layer = RetryLayer::builder()
        .classify(HttpClassify)
        .build()
        .unwrap();
    send_sync(&layer);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let mut svc = layer.layer(client);
    send_sync(&svc);
    let fut = svc.call(http::Request::new(Full::new(Bytes::new())));
    send(&fut);
}

mod backoff_properties {
    use super::*;
    use proptest::prelude::*;

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated)
        ]
    }

    proptest! {
        #[test]
        fn never_exceeds_max_delay(
            base_ms in 0u64..100_000,
            extra_ms in 0u64..1_000_000,
            factor in 1.0f64..1e6,
            retry in 0u32..u32::MAX,
            prev_ms in 0u64..10_000_000,
            jitter in jitter(),
        ) {
            let base = Duration::from_millis(base_ms);
            let max = base + Duration::from_millis(extra_ms);
            let b = Backoff::exponential(base).factor(factor).max_delay(max).jitter(jitter);
            prop_assert!(RetryLayer::builder().backoff(b).build().is_ok());
            let d = b.delay(retry, Duration::from_millis(prev_ms));
            prop_assert!(d <= max, "{d:?} > {max:?}");
        }

        #[test]
        fn without_jitter_delays_never_shrink(
            base_ms in 1u64..10_000,
            factor in 1.0f64..10.0,
            n in 1u32..200,
        ) {
            let b = Backoff::exponential(Duration::from_millis(base_ms))
                .factor(factor)
                .max_delay(Duration::from_secs(3600))
                .jitter(Jitter::None);
            prop_assert!(b.delay(n + 1, Duration::ZERO) >= b.delay(n, Duration::ZERO));
        }
    }
}

/// Fails its first call, then never becomes ready again.
#[derive(Clone)]
struct FailsThenStalls {
    calls: Arc<AtomicUsize>,
}

impl Service<()> for FailsThenStalls {
    type Response = ();
    type Error = &'static str;
    type Future = std::future::Ready<Result<(), &'static str>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.calls.load(Ordering::SeqCst) == 0 {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn call(&mut self, _req: ()) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Err("first call failed"))
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_the_wait_for_readiness() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = RetryLayer::builder()
        .max_attempts(5)
        .backoff(Backoff::constant(100 * MS))
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(FailsThenStalls {
            calls: calls.clone(),
        });
    let start = Instant::now();
    let res = svc.ready().await.unwrap().call(()).await;
    // The retry never got a ready service; at the deadline the caller
    // gets the first (and only) result.
    assert_eq!(res, Err("first call failed"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn zero_delay_retries_yield_to_the_executor() {
    // On a current-thread runtime, a task that retries an instantly
    // failing service must still let other tasks run now and then (it
    // spends tokio's cooperative budget, one unit per immediate retry).
    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                ticks.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        }
    });
    let rec = Recorder::new();
    let mut svc = RetryLayer::builder()
        .max_attempts(1000)
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap()
        .layer(rec.service(|_| false));
    let before = ticks.load(Ordering::SeqCst);
    let _ = svc.ready().await.unwrap().call(0).await;
    assert_eq!(rec.count(), 1000);
    assert!(ticks.load(Ordering::SeqCst) - before >= 2);
    ticker.abort();
}

#[tokio::test]
async fn retries_the_crate_http_client_against_the_shared_upstream() {
    use tower_patterns::fetch::HttpClient;
    use tower_patterns::upstream::{Upstream, UpstreamConfig};

    let upstream = Upstream::start(UpstreamConfig {
        retry_after_secs: 30,
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    let layer = RetryLayer::builder()
        .classify(HttpClassify)
        .max_attempts(3)
        // The server asks for 30 s; max_delay caps it.
        .backoff(no_jitter(MS).max_delay(20 * MS))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(HttpClient::new());
    let get = || {
        http::Request::get(upstream.url("/users/1"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };

    upstream.set_down(true);
    let resp = svc.ready().await.unwrap().call(get()).await.unwrap();
    // Exhausted: the last 503 comes back unchanged, after 3 requests and
    // two capped waits (the test would take a minute otherwise).
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(upstream.requests(), 3);

    upstream.set_down(false);
    let resp = svc.ready().await.unwrap().call(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.requests(), 4);
    let stats = layer.stats();
    assert_eq!((stats.attempts, stats.retries), (4, 2));
    upstream.shutdown().await;
}
