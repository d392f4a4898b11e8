//! Cancellation, as a property: calls through each layer and service are
//! dropped at random points (after a random number of polls), interleaved by
//! a multi-thread runtime, and afterwards everything they took must be back:
//! a limit's permits, a breaker's half-open probe slots, a pool's slots, the
//! task queue's slots and tasks, the cache's loads.
//!
//! A case is a list of calls, each with how many times the inner service
//! yields, whether it fails, and after how many polls the caller gives up
//! (or never). The seeds are proptest's, so a failing schedule shrinks and
//! is kept in `tests/cancel.proptest-regressions`; the interleaving is the
//! runtime's. `TOWER_PATTERNS_CANCEL_CASES` sets the cases per property
//! (default 256).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tower::{service_fn, BoxError, Layer, ServiceBuilder, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::pool::{Manager, Pool};
use tower_patterns::queue::{Shutdown, TaskQueue};

fn config() -> ProptestConfig {
    let cases = std::env::var("TOWER_PATTERNS_CANCEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        max_shrink_iters: 500,
        ..ProptestConfig::default()
    }
}

/// One call of a case.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Which key (for the cache).
    key: u8,
    /// How many times the inner service yields before it answers.
    yields: u8,
    /// Whether the inner service fails.
    fail: bool,
    /// After how many polls the caller drops the call; `None`: never.
    cut: Option<u8>,
}

fn plans() -> impl Strategy<Value = Vec<Plan>> {
    proptest::collection::vec(
        (
            0u8..3,
            0u8..6,
            prop::bool::weighted(0.3),
            proptest::option::weighted(0.6, 0u8..8),
        )
            .prop_map(|(key, yields, fail, cut)| Plan {
                key,
                yields,
                fail,
                cut,
            }),
        1..24,
    )
}

/// Polls the future at most `cut` times, then drops it: a caller giving up
/// at an arbitrary point. It asks to be polled again after every pending
/// poll, so the count of polls, not a timer, decides where the cut falls.
struct Cut<F> {
    fut: Option<Pin<Box<F>>>,
    left: Option<u8>,
}

fn cut<F: Future>(fut: F, cut: Option<u8>) -> Cut<F> {
    Cut {
        fut: Some(Box::pin(fut)),
        left: cut,
    }
}

impl<F: Future> Future for Cut<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(left) = &mut self.left {
            if *left == 0 {
                self.fut = None; // dropped here, mid-flight
                return Poll::Ready(None);
            }
            *left -= 1;
        }
        let Some(fut) = self.fut.as_mut() else {
            return Poll::Ready(None);
        };
        match fut.as_mut().poll(cx) {
            Poll::Ready(v) => {
                self.fut = None;
                Poll::Ready(Some(v))
            }
            Poll::Pending => {
                if self.left.is_some() {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
        }
    }
}

/// The inner service: yields `plan.yields` times, then answers or fails.
async fn work(plan: Plan) -> Result<u8, BoxError> {
    for _ in 0..plan.yields {
        tokio::task::yield_now().await;
    }
    if plan.fail {
        Err("planned failure".into())
    } else {
        Ok(plan.key)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `fut`, or a failure: nothing here should take more than a few seconds.
async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: a hang"))
}

/// Runs every plan as its own task, each through `call`, and waits for all.
async fn run_all<F, Fut>(plans: &[Plan], call: F)
where
    F: Fn(Plan) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send,
{
    let tasks: Vec<_> = plans
        .iter()
        .map(|&p| tokio::spawn(cut(call(p), p.cut)))
        .collect();
    for t in tasks {
        bounded("a call", t).await.unwrap();
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_limit_gets_every_permit_back(plans in plans()) {
        runtime().block_on(async {
            let limit = ConcurrencyLimitLayer::new(3);
            let svc = limit.layer(service_fn(work));
            run_all(&plans, |p| svc.clone().oneshot(p)).await;
            let stats = limit.stats();
            assert_eq!((stats.in_flight, stats.waiting), (0, 0), "{stats:?}");
            // All three permits can be taken at once again.
            let mut held = Vec::new();
            for _ in 0..3 {
                let mut s = svc.clone();
                bounded("a permit", s.ready()).await.unwrap();
                held.push(s);
            }
            assert_eq!(limit.stats().in_flight, 3);
        });
    }

    #[test]
    fn an_adaptive_limit_gets_every_permit_back(plans in plans()) {
        runtime().block_on(async {
            let limit = tower_patterns::limit::AdaptiveLimitLayer::builder()
                .aimd()
                .initial_limit(3)
                .max_limit(6)
                .build()
                .unwrap();
            let svc = limit.layer(service_fn(work));
            run_all(&plans, |p| svc.clone().oneshot(p)).await;
            let stats = limit.stats();
            assert_eq!(stats.in_flight, 0, "{stats:?}");
            // As many permits as the limit now allows can be held at once.
            let mut held = Vec::new();
            for _ in 0..stats.limit {
                let mut s = svc.clone();
                bounded("a permit", s.ready()).await.unwrap();
                held.push(s);
            }
            assert_eq!(limit.stats().in_flight, stats.limit);
        });
    }

    #[test]
    fn a_breaker_gets_every_probe_slot_back(plans in plans()) {
        runtime().block_on(async {
            let breaker = CircuitBreakerLayer::builder()
                .consecutive_failures(1)
                .open_duration(Duration::from_millis(1))
                .half_open_calls(2)
                .build()
                .unwrap();
            let handle = breaker.handle();
            let svc = breaker.layer(service_fn(work));
            // Open it, and let the open period pass: the calls below meet
            // a half-open breaker, then whatever they make of it.
            let _ = svc.clone().oneshot(Plan { key: 0, yields: 0, fail: true, cut: None }).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            run_all(&plans, |p| svc.clone().oneshot(p)).await;
            assert_eq!(handle.probes_in_flight(), 0, "{:?}", handle.stats());
            // Not stuck: successes close it again within a few open periods.
            bounded("the breaker closes", async {
                loop {
                    let ok = Plan { key: 0, yields: 0, fail: false, cut: None };
                    if svc.clone().oneshot(ok).await.is_ok()
                        && handle.state() == tower_patterns::circuit_breaker::State::Closed
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
        });
    }

    #[test]
    fn a_pool_gets_every_slot_back(plans in plans()) {
        runtime().block_on(async {
            let pool = Arc::new(
                Pool::builder()
                    .max_size(3)
                    .acquire_timeout(Duration::from_secs(10))
                    .build(Slow(AtomicUsize::new(0)))
                    .unwrap(),
            );
            run_all(&plans, |p| {
                let pool = pool.clone();
                async move {
                    let conn = pool.acquire().await.map_err(|e| e.to_string())?;
                    // Held across yields, then given back (or dropped with
                    // the call).
                    work(Plan { fail: false, ..p }).await.map_err(|e| e.to_string())?;
                    drop(conn);
                    Ok::<_, String>(())
                }
            })
            .await;
            let stats = pool.stats();
            assert_eq!((stats.in_use, stats.waiting), (0, 0), "{stats:?}");
            assert!(stats.size <= 3, "{stats:?}");
            // All three slots can be held at once again.
            let held = bounded(
                "three connections",
                futures::future::try_join_all((0..3).map(|_| pool.acquire())),
            )
            .await
            .unwrap();
            assert_eq!(held.len(), 3);
            drop(held);
            bounded("close", pool.close()).await;
        });
    }

    #[test]
    fn a_queue_accounts_for_every_task(plans in plans()) {
        runtime().block_on(async {
            let queue = Arc::new(
                TaskQueue::builder()
                    .workers(2)
                    .capacity(8)
                    .build(service_fn(work))
                    .unwrap(),
            );
            let submitted = Arc::new(AtomicUsize::new(0));
            run_all(&plans, |p| {
                let (queue, submitted) = (queue.clone(), submitted.clone());
                async move {
                    // The submit, then the wait for the result: either may
                    // be where the caller gives up.
                    let id = queue.submit(p).await.map_err(|e| e.to_string())?;
                    submitted.fetch_add(1, Ordering::SeqCst);
                    let _ = queue.result(id).await;
                    Ok::<_, String>(())
                }
            })
            .await;
            bounded("shutdown", queue.shutdown(Shutdown::Graceful(Duration::from_secs(10)))).await;
            let stats = queue.stats();
            assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");
            // Every accepted task ended one way or another.
            let ended = stats.completed + stats.failed + stats.panicked + stats.cancelled + stats.expired;
            assert_eq!(stats.submitted, ended, "{stats:?}");
            assert!(stats.submitted >= submitted.load(Ordering::SeqCst) as u64, "{stats:?}");
        });
    }

    #[test]
    fn a_cache_never_leaves_a_load_behind(plans in plans()) {
        runtime().block_on(async {
            let calls = Arc::new(AtomicUsize::new(0));
            let layer = CacheLayer::builder()
                .ttl(Duration::from_secs(60))
                .key_fn(|p: &Plan| p.key)
                .build()
                .unwrap();
            let handle = layer.handle();
            let inner = {
                let calls = calls.clone();
                service_fn(move |p: Plan| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    work(p)
                })
            };
            let svc = ServiceBuilder::new().layer(layer).service(inner);
            run_all(&plans, |p| svc.clone().oneshot(p)).await;
            // Every key answers now: no load was left behind for a caller
            // to wait on forever. A call may still join a load a dropped
            // caller started (it runs on, for whoever waits) and get that
            // load's planned failure; failures are not stored, so the call
            // after it loads afresh.
            for key in 0..3 {
                let ok = Plan { key, yields: 0, fail: false, cut: None };
                let first = bounded("a call after the storm", svc.clone().oneshot(ok)).await;
                let got = match first {
                    Ok(v) => v,
                    Err(_) => bounded("the call after", svc.clone().oneshot(ok)).await.unwrap(),
                };
                assert_eq!(got, key);
            }
            let stats = handle.stats();
            assert!(stats.entries <= 3, "{stats:?}");
        });
    }
}

/// Counts the inner calls alive: +1 when one starts, -1 when its future is
/// dropped, finished or not.
#[derive(Clone, Default)]
struct Alive(Arc<AtomicUsize>);

struct AliveGuard(Arc<AtomicUsize>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Alive {
    fn now(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// [`work`], counted while its future lives.
    fn work(&self, plan: Plan) -> impl Future<Output = Result<u8, BoxError>> + Send + 'static {
        self.0.fetch_add(1, Ordering::SeqCst);
        let guard = AliveGuard(self.0.clone());
        async move {
            let _guard = guard;
            work(plan).await
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The client stack of `layer_order`, every layer in its place (chaos
    /// injecting failures at the bottom): when
    /// the callers give up at random points, no attempt is left running
    /// (retries, hedges and timeouts included), and no permit or probe slot
    /// is held.
    #[test]
    fn the_whole_client_stack_leaves_nothing_running(plans in plans()) {
        runtime().block_on(async {
            use tower_patterns::{deadline, fallback, hedge, retry};
            let alive = Alive::default();
            let breaker = CircuitBreakerLayer::builder()
                .consecutive_failures(3)
                .open_duration(Duration::from_millis(1))
                .half_open_calls(2)
                .build()
                .unwrap();
            let handle = breaker.handle();
            let limit = ConcurrencyLimitLayer::new(4);
            let retry = retry::RetryLayer::builder()
                .max_attempts(3)
                .backoff(retry::Backoff::constant(Duration::from_micros(50)))
                .build()
                .unwrap();
            let hedge = hedge::HedgeLayer::builder()
                .delay(Duration::from_micros(100))
                .eligible(hedge::AnyRequest)
                .build()
                .unwrap();
            let svc = ServiceBuilder::new()
                .layer(
                    fallback::FallbackLayer::builder()
                        .value(255u8)
                        .build()
                        .unwrap(),
                )
                .layer(deadline::TimeoutLayer::new(Duration::from_millis(50)))
                .layer(retry)
                .layer(hedge)
                .layer(breaker)
                .layer(limit.clone())
                .layer(deadline::TimeoutLayer::new(Duration::from_millis(20)))
                .layer(
                    tower_patterns::chaos::ChaosLayer::builder()
                        .error_rate(0.1)
                        .seed(7)
                        .build()
                        .unwrap(),
                )
                .service(service_fn({
                    let alive = alive.clone();
                    move |p: Plan| alive.work(p)
                }));
            run_all(&plans, |p| svc.clone().oneshot(p)).await;
            // Whatever a dropped caller started has ended or been dropped.
            bounded("every attempt ends", async {
                while alive.now() != 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            let stats = limit.stats();
            assert_eq!((stats.in_flight, stats.waiting), (0, 0), "{stats:?}");
            assert_eq!(handle.probes_in_flight(), 0, "{:?}", handle.stats());
        });
    }
}

/// A pool manager whose connections take a few yields to make.
struct Slow(AtomicUsize);

impl Manager for Slow {
    type Resource = usize;
    type Error = std::io::Error;

    async fn create(&self) -> Result<usize, std::io::Error> {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }

    async fn recycle(&self, _conn: &mut usize) -> Result<(), std::io::Error> {
        tokio::task::yield_now().await;
        Ok(())
    }
}

mod common;

proptest! {
    #![proptest_config(ProptestConfig { cases: config().cases.min(64), ..config() })]

    /// HTTP calls over real sockets, dropped at random points (connecting,
    /// waiting for the head, reading the body): afterwards the client has
    /// nothing in flight and answers the next call.
    #[test]
    fn the_http_client_leaves_nothing_in_flight(plans in plans()) {
        use bytes::Bytes;
        use http_body_util::Full;
        use tower_patterns::fetch::{CollectLayer, HttpClient};
        use tower_patterns::upstream::UpstreamConfig;
        runtime().block_on(async {
            let upstream = common::upstream(UpstreamConfig {
                latency: Duration::from_millis(1),
                ..UpstreamConfig::default()
            })
            .await;
            let client = HttpClient::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let svc = CollectLayer::new().layer(client.clone());
            let url = upstream.url("/users/1");
            run_all(&plans, |_| {
                let req = http::Request::get(url.as_str()).body(Full::new(Bytes::new())).unwrap();
                svc.clone().oneshot(req)
            })
            .await;
            assert_eq!(client.stats().in_flight, 0, "{:?}", client.stats());
            let req = http::Request::get(url.as_str()).body(Full::new(Bytes::new())).unwrap();
            let resp = bounded("a call after the storm", svc.clone().oneshot(req)).await.unwrap();
            assert_eq!(resp.status(), 200);
            upstream.shutdown().await;
        });
    }
}

proptest! {
    #![proptest_config(config())]

    /// A walk over pages with prefetch, given up after a random number of
    /// polls (mid-page, mid-prefetch): no page request is left running, and
    /// a fresh walk still reads every item.
    #[test]
    fn a_paginated_walk_leaves_no_page_request_running(
        prefetch in 0usize..4,
        cut_at in proptest::option::weighted(0.8, 0u8..40),
        yields in 0u8..6,
    ) {
        use futures::TryStreamExt;
        use tower_patterns::paginate::{Page, PageNumber, PageRequest, Paginator};
        runtime().block_on(async {
            let alive = Alive::default();
            let api = service_fn({
                let alive = alive.clone();
                move |req: PageRequest| {
                    let plan = Plan { key: 0, yields, fail: false, cut: None };
                    let call = alive.work(plan);
                    async move {
                        call.await?;
                        let first = (req.page - 1) * req.per_page;
                        let items: Vec<u64> = (first..(first + req.per_page).min(95)).collect();
                        Ok::<_, BoxError>(Page::new(items))
                    }
                }
            });
            let walk = Paginator::new(api.clone(), PageNumber::new(1, 10))
                .prefetch(prefetch)
                .items()
                .try_collect::<Vec<u64>>();
            let _ = bounded("the walk", tokio::spawn(cut(walk, cut_at))).await;
            bounded("every page request ends", async {
                while alive.now() != 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            let all: Vec<u64> = bounded(
                "a fresh walk",
                Paginator::new(api, PageNumber::new(1, 10)).prefetch(prefetch).items().try_collect(),
            )
            .await
            .unwrap();
            assert_eq!(all, (0..95).collect::<Vec<_>>());
        });
    }
}
