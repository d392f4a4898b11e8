//! Integration tests for `tower_patterns::limit`, through the public API.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::time::{sleep, Instant};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::classify::HttpClassify;
use tower_patterns::limit::{self, AdaptiveLimitLayer, ConcurrencyLimitLayer, Overloaded};
use tower_patterns::BoxError;

/// Counts calls running right now and the most ever seen at once.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

struct GaugeGuard(Gauge);

impl Gauge {
    fn enter(&self) -> GaugeGuard {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        GaugeGuard(self.clone())
    }
    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A service that sleeps `ms` milliseconds (its request) and returns it.
fn sleeper(
    gauge: &Gauge,
) -> impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone + Send {
    let gauge = gauge.clone();
    service_fn(move |ms: u64| {
        let guard = gauge.enter();
        async move {
            sleep(Duration::from_millis(ms)).await;
            drop(guard);
            Ok::<_, BoxError>(ms)
        }
    })
}

fn overloaded(err: &BoxError) -> &Overloaded {
    err.downcast_ref::<Overloaded>()
        .unwrap_or_else(|| panic!("expected Overloaded, got {err}"))
}

// ---------------------------------------------------------------- fixed

#[tokio::test(start_paused = true)]
async fn ten_one_second_calls_through_a_limit_of_two_take_five_seconds() {
    let gauge = Gauge::default();
    let layer = ConcurrencyLimitLayer::new(2);
    let svc = layer.layer(sleeper(&gauge));
    let start = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(svc.clone().oneshot(1000)))
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1000);
    }
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(gauge.max(), 2, "never more than 2 in flight");
    assert_eq!(gauge.calls(), 10);
    let stats = layer.stats();
    assert_eq!((stats.limit, stats.in_flight, stats.waiting), (2, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served() {
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = order.clone();
    let svc = ConcurrencyLimitLayer::new(1).layer(service_fn(move |id: u32| {
        log.lock().unwrap().push(id);
        async move {
            sleep(Duration::from_millis(10)).await;
            Ok::<_, BoxError>(id)
        }
    }));
    let mut tasks = Vec::new();
    for id in 0..20 {
        tasks.push(tokio::spawn(svc.clone().oneshot(id)));
        // Let each task queue up before the next is spawned.
        tokio::task::yield_now().await;
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn max_wait_gives_up_with_overloaded_and_frees_the_waiters_place() {
    let gauge = Gauge::default();
    let layer = ConcurrencyLimitLayer::new(1).max_wait(Duration::from_millis(50));
    let svc = layer.layer(sleeper(&gauge));
    let start = Instant::now();

    // t=0: A takes the only permit for 100 ms.
    let a = tokio::spawn(svc.clone().oneshot(100));
    tokio::task::yield_now().await;
    assert_eq!(layer.stats().in_flight, 1);

    // t=0: B queues, and gives up at t=50 ms.
    let b = tokio::spawn(svc.clone().oneshot(5));
    tokio::task::yield_now().await;
    assert_eq!(layer.stats().waiting, 1);
    let err = b.await.unwrap().unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    let o = overloaded(&err);
    assert_eq!(o.limit(), 1);
    assert_eq!(o.waited(), Duration::from_millis(50));
    assert!(err.to_string().contains("waiting 50ms"), "{err}");
    assert_eq!(gauge.calls(), 1, "B never reached the inner service");
    let stats = layer.stats();
    assert_eq!((stats.waiting, stats.rejected), (0, 1));

    // t=60: C queues. B's place is gone, so when A ends at t=100 the permit
    // goes to C at once (40 ms of waiting, within C's 50 ms).
    sleep(Duration::from_millis(10)).await;
    let c = tokio::spawn(svc.clone().oneshot(5));
    assert_eq!(c.await.unwrap().unwrap(), 5);
    assert_eq!(start.elapsed(), Duration::from_millis(105));
    a.await.unwrap().unwrap();
    let stats = layer.stats();
    assert_eq!((stats.in_flight, stats.waiting, stats.rejected), (0, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn reject_when_full_never_waits() {
    let gauge = Gauge::default();
    let layer = ConcurrencyLimitLayer::new(2).reject_when_full();
    let svc = layer.layer(sleeper(&gauge));
    let a = tokio::spawn(svc.clone().oneshot(1000));
    let b = tokio::spawn(svc.clone().oneshot(1000));
    tokio::task::yield_now().await;

    let start = Instant::now();
    for _ in 0..5 {
        let err = svc.clone().oneshot(1).await.unwrap_err();
        let o = overloaded(&err);
        assert_eq!((o.limit(), o.waited()), (2, Duration::ZERO));
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "rejections are immediate");
    assert_eq!(gauge.calls(), 2);
    assert_eq!(layer.stats().rejected, 5);
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    assert_eq!(svc.clone().oneshot(1).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_reserves_the_permit_and_dropping_the_service_frees_it() {
    let layer = ConcurrencyLimitLayer::new(1).reject_when_full();
    let mut a = layer.layer(sleeper(&Gauge::default()));
    a.ready().await.unwrap();
    assert_eq!(layer.stats().in_flight, 1);
    // Another clone is refused while `a` holds the reservation.
    let err = a.clone().oneshot(1).await.unwrap_err();
    overloaded(&err);
    drop(a);
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn every_service_from_one_layer_shares_the_limit() {
    let gauge = Gauge::default();
    let layer = ConcurrencyLimitLayer::new(3);
    let one = layer.layer(sleeper(&gauge));
    let two = layer.layer(sleeper(&gauge));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let svc = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(svc.oneshot(100))
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(gauge.max(), 3);
}

#[tokio::test(start_paused = true)]
async fn thousands_of_random_cancellations_leak_no_permits() {
    let gauge = Gauge::default();
    let layer = ConcurrencyLimitLayer::new(3).max_wait(Duration::from_millis(40));
    let svc = layer.layer(sleeper(&gauge));
    let mut rng = fastrand::Rng::with_seed(7);
    let mut tasks = Vec::new();
    for i in 0..3000u32 {
        let svc = svc.clone();
        let work = rng.u64(1..30);
        let cancel_after = rng.u64(0..60);
        let mode = rng.u8(0..4);
        tasks.push(tokio::spawn(async move {
            match mode {
                // Dropped at a random point: waiting, or running.
                0 | 1 => {
                    let _ = tokio::time::timeout(
                        Duration::from_millis(cancel_after),
                        svc.oneshot(work),
                    )
                    .await;
                }
                // Reserve a permit in poll_ready, then drop the service.
                2 => {
                    let mut svc = svc;
                    let _ = tokio::time::timeout(Duration::from_millis(cancel_after), svc.ready())
                        .await;
                    sleep(Duration::from_millis(work)).await;
                }
                // Run to completion (or Overloaded).
                _ => {
                    let _ = svc.oneshot(work).await;
                }
            }
        }));
        if i % 7 == 0 {
            sleep(Duration::from_millis(1)).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(gauge.max() <= 3);
    assert_eq!(gauge.now(), 0);
    let stats = layer.stats();
    assert_eq!((stats.in_flight, stats.waiting), (0, 0), "{stats:?}");
    assert!(stats.rejected > 0, "the scenario exercised max_wait");
    // All three permits really are free: three reservations succeed at once.
    let mut held: Vec<_> = (0..3).map(|_| svc.clone()).collect();
    for s in &mut held {
        assert!(s.ready().now_or_never().is_some());
    }
    assert_eq!(layer.stats().in_flight, 3);
}

#[tokio::test(start_paused = true)]
async fn builder_validates_the_limit() {
    let err = ConcurrencyLimitLayer::builder()
        .limit(0)
        .build()
        .unwrap_err();
    assert_eq!(
        (err.component(), err.field(), err.value()),
        ("concurrency_limit", "limit", "0")
    );
    let err = ConcurrencyLimitLayer::builder().build().unwrap_err();
    assert_eq!(err.field(), "limit");
    let layer = ConcurrencyLimitLayer::builder()
        .limit(4)
        .reject_when_full()
        .build()
        .unwrap();
    assert_eq!(layer.stats().limit, 4);
    // `new(0)` does not panic or deadlock: it is raised to 1.
    let svc = ConcurrencyLimitLayer::new(0).layer(sleeper(&Gauge::default()));
    assert_eq!(svc.stats().limit, 1);
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
}

#[test]
fn overloaded_display_says_what_happened() {
    let layer = ConcurrencyLimitLayer::new(1).reject_when_full();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut held = layer.layer(sleeper(&Gauge::default()));
        held.ready().await.unwrap();
        let err = held.clone().oneshot(1).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "overloaded: all 1 permits are in use and this limiter does not wait \
             (shed load, retry later, or raise the limit)"
        );
    });
}

// ---------------------------------------------------------------- gather

#[derive(Debug)]
struct Odd(u64);
impl std::fmt::Display for Odd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is odd", self.0)
    }
}
impl std::error::Error for Odd {}

#[tokio::test(start_paused = true)]
async fn gather_keeps_input_order_and_returns_per_input_errors() {
    let gauge = Gauge::default();
    let g = gauge.clone();
    // Later inputs finish first; odd inputs fail.
    let svc = service_fn(move |n: u64| {
        let guard = g.enter();
        async move {
            sleep(Duration::from_millis(100 - n)).await;
            drop(guard);
            if n % 2 == 1 {
                Err(BoxError::from(Odd(n)))
            } else {
                Ok(n * 10)
            }
        }
    });
    let start = Instant::now();
    let results = limit::gather(svc, 0..20u64, 4).await;
    assert_eq!(results.len(), 20);
    for (n, r) in results.iter().enumerate() {
        let n = n as u64;
        if n % 2 == 1 {
            let err = r.as_ref().unwrap_err();
            assert_eq!(err.downcast_ref::<Odd>().unwrap().0, n);
        } else {
            assert_eq!(*r.as_ref().unwrap(), n * 10);
        }
    }
    assert_eq!(gauge.max(), 4, "at most 4 at once");
    assert_eq!(gauge.calls(), 20, "failures cancel nothing");
    assert!(start.elapsed() < Duration::from_millis(100 * 20 / 4 + 1));
}

#[tokio::test(start_paused = true)]
async fn gather_through_a_limiter_and_with_zero_concurrency() {
    let gauge = Gauge::default();
    let svc = ConcurrencyLimitLayer::new(2).layer(sleeper(&gauge));
    let results = limit::gather(svc, vec![10; 9], 100).await;
    assert!(results.iter().all(|r| *r.as_ref().unwrap() == 10));
    assert_eq!(gauge.max(), 2, "the inner limiter still bounds the calls");

    let gauge = Gauge::default();
    let results = limit::gather(sleeper(&gauge), vec![10; 3], 0).await;
    assert_eq!(results.len(), 3);
    assert_eq!(gauge.max(), 1, "0 is treated as 1");
    assert!(limit::gather(sleeper(&gauge), Vec::<u64>::new(), 3)
        .await
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn dropping_gather_cancels_the_calls_in_flight() {
    let gauge = Gauge::default();
    let gather = limit::gather(sleeper(&gauge), vec![1000; 10], 3);
    let out = tokio::time::timeout(Duration::from_millis(1500), gather).await;
    assert!(out.is_err(), "timed out, so the gather future was dropped");
    assert_eq!(gauge.now(), 0, "in-flight calls were dropped");
    assert_eq!(
        gauge.calls(),
        6,
        "3 finished, 3 started then cancelled, none after"
    );
    sleep(Duration::from_secs(10)).await;
    assert_eq!(gauge.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn gather_unordered_yields_in_completion_order() {
    let gauge = Gauge::default();
    let delays = vec![50u64, 10, 40, 20, 30];
    let got: Vec<u64> = limit::gather_unordered(sleeper(&gauge), delays.clone(), 5)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(got, vec![10, 20, 30, 40, 50]);

    let indexed: Vec<usize> = limit::gather_unordered_indexed(sleeper(&gauge), delays, 5)
        .map(|(i, r)| {
            r.unwrap();
            i
        })
        .collect()
        .await;
    assert_eq!(indexed, vec![1, 3, 4, 2, 0]);
}

// ---------------------------------------------------------------- adaptive

/// A backend with `workers` workers and 10 ms of work per call: beyond
/// `workers` calls at once, calls queue and latency rises (the knee).
#[derive(Clone)]
struct Backend {
    workers: Arc<tokio::sync::Semaphore>,
}

impl Backend {
    fn new(workers: usize) -> Self {
        Backend {
            workers: Arc::new(tokio::sync::Semaphore::new(workers)),
        }
    }

    fn set_workers(&self, from: usize, to: usize) {
        if to > from {
            self.workers.add_permits(to - from);
        } else {
            let workers = self.workers.clone();
            let n = (from - to) as u32;
            tokio::spawn(async move { workers.acquire_many(n).await.unwrap().forget() });
        }
    }

    fn service(
        &self,
    ) -> impl Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone {
        let workers = self.workers.clone();
        service_fn(move |()| {
            let workers = workers.clone();
            async move {
                let _worker = workers.acquire().await.unwrap();
                sleep(Duration::from_millis(10)).await;
                Ok::<_, BoxError>(())
            }
        })
    }
}

/// `clients` callers in a loop until `stop`; records the limit every 50 ms.
async fn load<S>(svc: S, clients: usize, run_for: Duration, stats: impl Fn() -> usize) -> Vec<usize>
where
    S: Service<(), Error = BoxError> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Future: Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let svc = svc.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = svc.clone().oneshot(()).await;
                }
            })
        })
        .collect();
    let mut seen = Vec::new();
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        sleep(Duration::from_millis(50)).await;
        seen.push(stats());
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    seen
}

fn second_half(seen: &[usize]) -> (usize, usize) {
    let half = &seen[seen.len() / 2..];
    (*half.iter().min().unwrap(), *half.iter().max().unwrap())
}

#[tokio::test(start_paused = true)]
async fn gradient_converges_near_the_knee_and_recovers() {
    let backend = Backend::new(20);
    let layer = AdaptiveLimitLayer::builder()
        .initial_limit(5)
        .build()
        .unwrap();
    let svc = layer.layer(backend.service());
    let stats = {
        let layer = layer.clone();
        move || layer.stats().limit
    };

    // 80 eager clients against 20 workers: starting from 5, the limit
    // settles near 20 instead of letting 80 calls pile into the backend.
    let seen = load(svc.clone(), 80, Duration::from_secs(6), &stats).await;
    let (lo, hi) = second_half(&seen);
    assert!(
        lo >= 18 && hi <= 26,
        "knee 20: limit ranged {lo}..={hi}: {seen:?}"
    );

    // The backend degrades to 5 workers: latency rises, the limit follows.
    backend.set_workers(20, 5);
    let seen = load(svc.clone(), 80, Duration::from_secs(6), &stats).await;
    let (lo, hi) = second_half(&seen);
    assert!(
        lo >= 4 && hi <= 8,
        "knee 5: limit ranged {lo}..={hi}: {seen:?}"
    );

    // And recovers: latency falls, the limit climbs back near 20.
    backend.set_workers(5, 20);
    let seen = load(svc.clone(), 80, Duration::from_secs(6), &stats).await;
    let (lo, hi) = second_half(&seen);
    assert!(
        lo >= 18 && hi <= 26,
        "recovered: limit ranged {lo}..={hi}: {seen:?}"
    );
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn aimd_halves_on_failures_and_grows_back() {
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let backend = service_fn(move |()| {
        let fail = f.load(Ordering::Relaxed);
        async move {
            sleep(Duration::from_millis(10)).await;
            let status = if fail { 503 } else { 200 };
            Ok::<_, Infallible>(http::Response::builder().status(status).body(()).unwrap())
        }
    });
    // The classifier is set on the builder: 503s count as failures.
    let layer = AdaptiveLimitLayer::builder()
        .aimd()
        .initial_limit(10)
        .max_limit(40)
        .classify(HttpClassify)
        .build()
        .unwrap();
    let svc = layer.layer(backend);
    let stats = {
        let layer = layer.clone();
        move || layer.stats().limit
    };

    // Busy and healthy: +1 per call up to the max.
    load(svc.clone(), 60, Duration::from_millis(500), &stats).await;
    assert_eq!(layer.stats().limit, 40);

    // One burst of failures (every call in flight fails): halve, once.
    failing.store(true, Ordering::Relaxed);
    let results = limit::gather(svc.clone(), vec![(); 40], 40).await;
    assert!(results.iter().all(|r| r.as_ref().unwrap().status() == 503));
    assert_eq!(
        layer.stats().limit,
        20,
        "one congestion event halves the limit"
    );

    // Failures keep coming: keep halving down to the minimum.
    load(svc.clone(), 60, Duration::from_millis(500), &stats).await;
    assert_eq!(layer.stats().limit, 1);

    // Healthy again: additive increase.
    failing.store(false, Ordering::Relaxed);
    let seen = load(svc.clone(), 60, Duration::from_millis(300), &stats).await;
    assert!(seen.windows(2).all(|w| w[1] >= w[0]), "{seen:?}");
    assert!(layer.stats().limit > 20);
}

#[tokio::test(start_paused = true)]
async fn adaptive_cancellations_leak_nothing_and_permits_match_the_limit() {
    let backend = Backend::new(4);
    let layer = AdaptiveLimitLayer::aimd().max_wait(Duration::from_millis(30));
    let svc = layer.layer(backend.service());
    let mut rng = fastrand::Rng::with_seed(11);
    let mut tasks = Vec::new();
    for i in 0..2000u32 {
        let svc = svc.clone();
        let cancel_after = rng.u64(0..40);
        tasks.push(tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_millis(cancel_after), svc.oneshot(())).await;
        }));
        if i % 5 == 0 {
            sleep(Duration::from_millis(1)).await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = layer.stats();
    assert_eq!((stats.in_flight, stats.waiting), (0, 0), "{stats:?}");
    // Exactly `limit` permits exist: that many reservations succeed, one
    // more is refused.
    let strict = layer.clone().reject_when_full();
    let mut held: Vec<_> = (0..stats.limit)
        .map(|_| strict.layer(backend.service()))
        .collect();
    for s in &mut held {
        s.ready().await.unwrap();
    }
    let err = strict
        .layer(backend.service())
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(overloaded(&err).limit(), stats.limit);
}

#[tokio::test(start_paused = true)]
async fn adaptive_builder_validates() {
    let cases: Vec<(&str, Result<AdaptiveLimitLayer, _>)> = vec![
        (
            "min_limit",
            AdaptiveLimitLayer::builder().min_limit(0).build(),
        ),
        (
            "max_limit",
            AdaptiveLimitLayer::builder()
                .min_limit(10)
                .max_limit(5)
                .build(),
        ),
        (
            "initial_limit",
            AdaptiveLimitLayer::builder()
                .max_limit(10)
                .initial_limit(11)
                .build(),
        ),
        (
            "smoothing",
            AdaptiveLimitLayer::builder().smoothing(0.0).build(),
        ),
        (
            "smoothing",
            AdaptiveLimitLayer::builder().smoothing(f64::NAN).build(),
        ),
        (
            "queue_size",
            AdaptiveLimitLayer::builder().queue_size(0).build(),
        ),
        (
            "long_window",
            AdaptiveLimitLayer::builder().long_window(0).build(),
        ),
        (
            "backoff_ratio",
            AdaptiveLimitLayer::builder()
                .aimd()
                .backoff_ratio(1.0)
                .build(),
        ),
        (
            "timeout",
            AdaptiveLimitLayer::builder()
                .aimd()
                .timeout(Duration::ZERO)
                .build(),
        ),
    ];
    for (field, result) in cases {
        let err = result.unwrap_err();
        assert_eq!(
            (err.component(), err.field()),
            ("adaptive_limit", field),
            "{err}"
        );
    }
    // An unset initial limit is kept inside an explicit range.
    let layer = AdaptiveLimitLayer::builder().max_limit(8).build().unwrap();
    assert_eq!(layer.stats().limit, 8);
    assert_eq!(AdaptiveLimitLayer::gradient().stats().limit, 20);
    assert_eq!(AdaptiveLimitLayer::aimd().stats().limit, 20);
}

#[test]
fn adaptive_builder_refuses_gradient_settings_under_aimd() {
    // Before or after `.aimd()`: never silently dropped.
    let cases = [
        (
            "smoothing",
            AdaptiveLimitLayer::builder().aimd().smoothing(0.3).build(),
        ),
        (
            "queue_size",
            AdaptiveLimitLayer::builder().queue_size(4).aimd().build(),
        ),
        (
            "long_window",
            AdaptiveLimitLayer::builder()
                .aimd()
                .long_window(100)
                .build(),
        ),
    ];
    for (field, result) in cases {
        let err = result.unwrap_err();
        assert_eq!((err.component(), err.field()), ("adaptive_limit", field));
        assert!(err.allowed().contains("Gradient2 only"), "{err}");
    }
    let err = AdaptiveLimitLayer::builder()
        .aimd()
        .smoothing(0.3)
        .build()
        .unwrap_err();
    assert_eq!(err.value(), "0.3");
    // AIMD takes its own tuning.
    let layer = AdaptiveLimitLayer::builder()
        .aimd()
        .backoff_ratio(0.7)
        .timeout(Duration::from_secs(1))
        .build();
    assert!(layer.is_ok());
}

#[test]
fn adaptive_builder_refuses_aimd_settings_under_gradient() {
    // Gradient2 is the default, or chosen again after `.aimd()`.
    let cases = [
        (
            "backoff_ratio",
            AdaptiveLimitLayer::builder().backoff_ratio(0.7).build(),
        ),
        (
            "timeout",
            AdaptiveLimitLayer::builder()
                .aimd()
                .timeout(Duration::from_secs(1))
                .gradient()
                .build(),
        ),
    ];
    for (field, result) in cases {
        let err = result.unwrap_err();
        assert_eq!((err.component(), err.field()), ("adaptive_limit", field));
        assert!(err.allowed().contains("AIMD only"), "{err}");
    }
    // Gradient2 takes its own tuning.
    let layer = AdaptiveLimitLayer::builder()
        .smoothing(0.2)
        .queue_size(2)
        .long_window(100)
        .build();
    assert!(layer.is_ok());
}

#[test]
fn builders_stats_and_reservations_follow_one_spelling() {
    use tower_patterns::limit::{
        AdaptiveLimitLayerBuilder, ConcurrencyLimit, ConcurrencyLimitLayerBuilder, LimitStats,
    };
    let fixed: ConcurrencyLimitLayerBuilder = ConcurrencyLimitLayer::builder().limit(3);
    let fixed = fixed.build().unwrap();
    let adaptive: AdaptiveLimitLayerBuilder = AdaptiveLimitLayer::builder().max_limit(5);
    let adaptive = adaptive.build().unwrap();
    assert_eq!(LimitStats::default().limit, 0);
    // Every layer and every service reports the same shared counters.
    let echo = service_fn(|n: u32| async move { Ok::<_, BoxError>(n) });
    let mut svc = fixed.layer(echo);
    let mut other = svc.clone();
    assert!(svc.ready().now_or_never().is_some());
    assert_eq!((fixed.stats().in_flight, other.stats().in_flight), (1, 1));
    // A clone reserves its own permit.
    assert!(other.ready().now_or_never().is_some());
    assert_eq!(svc.stats().in_flight, 2);
    drop((svc, other));
    assert_eq!(fixed.stats().in_flight, 0);
    let svc = adaptive.layer(echo);
    assert_eq!((svc.stats().limit, adaptive.stats().limit), (5, 5));
    // The service alone, with a limit of its own.
    let mut alone = ConcurrencyLimit::new(echo, 0);
    assert_eq!(alone.stats().limit, 1);
    assert!(alone.ready().now_or_never().is_some());
    assert_eq!(alone.stats().in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn adaptive_layer_works_in_a_service_builder_stack() {
    let layer = AdaptiveLimitLayer::gradient();
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(sleeper(&Gauge::default()));
    assert_eq!(svc.oneshot(5).await.unwrap(), 5);
    assert_eq!(layer.stats().in_flight, 0);
}

// ---------------------------------------------------------------- http bodies

mod http_bodies {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, StreamBody};
    use hyper::body::Frame;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::sync::mpsc;

    type Chunks = mpsc::Sender<Result<Frame<Bytes>, Infallible>>;

    /// A hyper server on 127.0.0.1:0 whose every response streams a body
    /// the test writes chunk by chunk: the sender of each response's body
    /// is handed to the test through the returned channel.
    async fn streaming_server() -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Chunks>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (bodies_tx, bodies_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let bodies_tx = bodies_tx.clone();
                let handler = hyper::service::service_fn(move |_req| {
                    let (tx, rx) = mpsc::channel(4);
                    bodies_tx.send(tx).unwrap();
                    let body = StreamBody::new(futures::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|frame| (frame, rx))
                    }));
                    async move { Ok::<_, Infallible>(http::Response::new(body)) }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler),
                );
            }
        });
        (addr, bodies_rx)
    }

    fn get(addr: std::net::SocketAddr) -> http::Request<Empty<Bytes>> {
        http::Request::get(format!("http://{addr}/stream"))
            .body(Empty::new())
            .unwrap()
    }

    async fn chunk(tx: &Chunks, data: &'static str) {
        tx.send(Ok(Frame::data(Bytes::from_static(data.as_bytes()))))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn hold_until_body_end_keeps_the_permit_while_the_body_streams() {
        let (addr, mut bodies) = streaming_server().await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let layer = ConcurrencyLimitLayer::new(1).hold_until_body_end();
        let svc = ServiceBuilder::new().layer(layer.clone()).service(client);

        let response = svc.clone().oneshot(get(addr)).await.unwrap();
        let tx = bodies.recv().await.unwrap();
        let mut body = response.into_body();
        chunk(&tx, "hello ").await;
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, "hello ");

        // Headers and a chunk are in, the body is not finished: the permit
        // is still held, so a second request cannot start.
        assert!(body.holds_permit());
        assert_eq!(layer.stats().in_flight, 1);
        let mut next = svc.clone();
        assert!(
            next.ready().now_or_never().is_none(),
            "no permit for a second call"
        );
        assert_eq!(layer.stats().waiting, 1);

        // Finish the body: the permit goes to the second request.
        chunk(&tx, "world").await;
        drop(tx);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "world");
        next.ready().await.unwrap();
        let second = next.call(get(addr)).await.unwrap();
        let tx2 = bodies.recv().await.unwrap();
        assert_eq!(layer.stats().in_flight, 1);

        // Dropping an unfinished body releases the permit too.
        chunk(&tx2, "partial").await;
        drop(second);
        assert_eq!(layer.stats().in_flight, 0);
    }

    #[tokio::test]
    async fn by_default_the_permit_is_released_with_the_response_head() {
        let (addr, mut bodies) = streaming_server().await;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let layer = ConcurrencyLimitLayer::new(1);
        let svc = ServiceBuilder::new().layer(layer.clone()).service(client);

        let response = svc.clone().oneshot(get(addr)).await.unwrap();
        let tx = bodies.recv().await.unwrap();
        // The body is still streaming, but the limit no longer counts it.
        assert_eq!(layer.stats().in_flight, 0);
        chunk(&tx, "done").await;
        drop(tx);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "done");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_permits_stay_consistent_across_threads() {
    // Random failures move the AIMD limit up and down while calls race on
    // two threads; afterwards exactly `limit` permits must exist.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let backend = service_fn(move |()| {
        let n = c.fetch_add(1, Ordering::Relaxed);
        async move {
            for _ in 0..(n % 4) {
                tokio::task::yield_now().await;
            }
            // A concrete error type: with `BoxError` here, rustc cannot
            // prove the spawned future `Send` (the same holds for tower's
            // own `Into<BoxError>` layers such as `Timeout`).
            if n.is_multiple_of(7) {
                Err(std::io::Error::other("boom"))
            } else {
                Ok(())
            }
        }
    });
    let layer = AdaptiveLimitLayer::builder()
        .aimd()
        .initial_limit(8)
        .max_limit(16)
        .build()
        .unwrap();
    let svc = layer.layer(backend);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    let _ = svc.clone().oneshot(()).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::Relaxed), 3200);
    let stats = layer.stats();
    assert_eq!((stats.in_flight, stats.waiting), (0, 0), "{stats:?}");
    let strict = layer.clone().reject_when_full();
    let mut held: Vec<_> = (0..stats.limit)
        .map(|_| strict.layer(service_fn(|()| async { Ok::<_, BoxError>(()) })))
        .collect();
    for s in &mut held {
        s.ready().await.unwrap();
    }
    let err = strict
        .layer(service_fn(|()| async { Ok::<_, BoxError>(()) }))
        .oneshot(())
        .await
        .unwrap_err();
    assert_eq!(overloaded(&err).limit(), stats.limit);
}

#[tokio::test(start_paused = true)]
async fn gather_reads_requests_lazily() {
    // An endless request iterator: only as many calls start as results are
    // taken, plus the few in flight.
    let gauge = Gauge::default();
    let got: Vec<_> = limit::gather_unordered(sleeper(&gauge), (1u64..).map(|n| n % 5 + 1), 3)
        .take(10)
        .collect()
        .await;
    assert_eq!(got.len(), 10);
    assert!(gauge.calls() <= 13, "started {}", gauge.calls());
    assert_eq!(gauge.now(), 0, "the dropped stream cancelled the rest");
}
