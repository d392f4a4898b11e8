//! Hedging on paused time: when a hedge fires, which requests are hedged,
//! the budget, which answer wins, cancellation, the learned delay,
//! readiness and configuration errors.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::poll;
use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_patterns::hedge::{AnyRequest, HedgeLayer};
use tower_patterns::retry::Replay;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What call number `n` (from 0) does: how long it takes, and whether it
/// succeeds.
type Script = dyn Fn(u32) -> (Duration, bool) + Send + Sync;

/// A service whose calls follow a script. It counts calls, notices calls
/// dropped before they finished (cancelled), and can be closed: then
/// `poll_ready` is pending until it is opened again.
#[derive(Clone)]
struct Backend {
    state: Arc<State>,
}

struct State {
    script: Box<Script>,
    calls: AtomicU32,
    cancelled: AtomicU32,
    closed: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl Backend {
    fn new(script: impl Fn(u32) -> (Duration, bool) + Send + Sync + 'static) -> Self {
        Backend {
            state: Arc::new(State {
                script: Box::new(script),
                calls: AtomicU32::new(0),
                cancelled: AtomicU32::new(0),
                closed: AtomicBool::new(false),
                waiters: Mutex::new(Vec::new()),
            }),
        }
    }

    fn calls(&self) -> u32 {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> u32 {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    fn set_open(&self, open: bool) {
        self.state.closed.store(!open, Ordering::SeqCst);
        if open {
            for w in self.state.waiters.lock().unwrap().drain(..) {
                w.wake();
            }
        }
    }
}

/// Counts its call as cancelled if dropped before it finished.
struct InFlight {
    state: Arc<State>,
    finished: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<Req> Service<Req> for Backend {
    type Response = u32;
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        if self.state.closed.load(Ordering::SeqCst) {
            self.state.waiters.lock().unwrap().push(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        assert!(
            !self.state.closed.load(Ordering::SeqCst),
            "called while not ready"
        );
        let n = self.state.calls.fetch_add(1, Ordering::SeqCst);
        let (latency, ok) = (self.state.script)(n);
        let guard = InFlight {
            state: self.state.clone(),
            finished: false,
        };
        Box::pin(async move {
            let mut guard = guard;
            tokio::time::sleep(latency).await;
            guard.finished = true;
            if ok {
                Ok(n)
            } else {
                Err(format!("call {n} failed"))
            }
        })
    }
}

/// The first call takes `first`, every later one `rest`; all succeed.
fn first_slow(first: u64, rest: u64) -> Backend {
    Backend::new(move |n| (ms(if n == 0 { first } else { rest }), true))
}

/// Readiness, then the call, as a caller does.
async fn send<S: Service<R>, R>(svc: &mut S, req: R) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(req).await
}

fn any_request(delay: Duration) -> HedgeLayer<AnyRequest> {
    HedgeLayer::builder()
        .delay(delay)
        .eligible(AnyRequest)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_hedge_fires_exactly_at_its_delay() {
    let backend = first_slow(1_000, 10);
    let layer = any_request(ms(50));
    let mut svc = layer.layer(backend.clone());
    let started = Instant::now();
    let mut fut = pin!(ServiceExt::<()>::ready(&mut svc).await.unwrap().call(()));
    assert!(poll!(&mut fut).is_pending());
    advance(ms(49)).await;
    assert!(poll!(&mut fut).is_pending());
    assert_eq!(backend.calls(), 1, "no hedge 1 ms before the delay");
    advance(ms(1)).await;
    assert!(poll!(&mut fut).is_pending());
    assert_eq!(backend.calls(), 2, "the hedge is sent at the delay");
    assert_eq!(fut.await, Ok(1));
    assert_eq!(started.elapsed(), ms(60));
}

#[tokio::test(start_paused = true)]
async fn the_winner_answers_and_the_loser_is_cancelled() {
    // The hedge wins: the first attempt is dropped as soon as it answers.
    let backend = first_slow(1_000, 10);
    let layer = any_request(ms(50));
    let mut svc = layer.layer(backend.clone());
    // The response future itself (not `oneshot`, which would drop it on
    // completion): the loser must be dropped when the winner answers.
    let mut fut = pin!(ServiceExt::<()>::ready(&mut svc).await.unwrap().call(()));
    assert!(poll!(&mut fut).is_pending());
    advance(ms(50)).await;
    assert!(poll!(&mut fut).is_pending());
    assert_eq!((backend.calls(), backend.cancelled()), (2, 0));
    advance(ms(10)).await;
    assert_eq!(poll!(&mut fut), Poll::Ready(Ok(1)));
    assert_eq!(backend.cancelled(), 1, "the slow first attempt was dropped");
    let stats = layer.stats();
    assert_eq!(
        (stats.calls, stats.hedges, stats.hedge_wins, stats.cancelled),
        (1, 1, 1, 1)
    );

    // The first attempt wins: the hedge is the one dropped.
    let backend = Backend::new(|n| (ms(if n == 0 { 70 } else { 100 }), true));
    let layer = any_request(ms(50));
    let answer = layer.layer(backend.clone()).oneshot(()).await;
    assert_eq!(answer, Ok(0));
    assert_eq!((backend.calls(), backend.cancelled()), (2, 1));
    let stats = layer.stats();
    assert_eq!((stats.hedges, stats.hedge_wins, stats.cancelled), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_failure_does_not_win_while_another_attempt_runs() {
    // The first attempt fails at 60 ms, after the hedge was sent at 50 ms;
    // the hedge's success at 80 ms is the answer.
    let backend = Backend::new(|n| {
        if n == 0 {
            (ms(60), false)
        } else {
            (ms(30), true)
        }
    });
    let layer = any_request(ms(50));
    let started = Instant::now();
    assert_eq!(layer.layer(backend.clone()).oneshot(()).await, Ok(1));
    assert_eq!(started.elapsed(), ms(80));
    let stats = layer.stats();
    assert_eq!((stats.loser_errors, stats.hedge_wins), (1, 1));

    // Every attempt fails: the last failure is returned.
    let backend = Backend::new(|n| {
        if n == 0 {
            (ms(60), false)
        } else {
            (ms(30), false)
        }
    });
    let layer = any_request(ms(50));
    let answer = layer.layer(backend.clone()).oneshot(()).await;
    assert_eq!(answer, Err("call 1 failed".to_string()));
    assert_eq!(layer.stats().loser_errors, 1);

    // A failure with nothing else in flight is returned at once: hedging
    // is not retrying.
    let backend = Backend::new(|_| (ms(20), false));
    let layer = any_request(ms(50));
    let answer = layer.layer(backend.clone()).oneshot(()).await;
    assert_eq!(answer, Err("call 0 failed".to_string()));
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn ineligible_requests_are_never_hedged() {
    let backend = Backend::new(|_| (ms(1_000), true));
    // The default rule: idempotent HTTP methods only.
    let layer = HedgeLayer::builder().delay(ms(50)).build().unwrap();
    let mut svc = layer.layer(backend.clone());
    let post = http::Request::post("/orders").body(()).unwrap();
    send(&mut svc, post).await.unwrap();
    assert_eq!(backend.calls(), 1, "a POST is sent once");
    let get = http::Request::get("/orders/1").body(()).unwrap();
    send(&mut svc, get).await.unwrap();
    assert_eq!(backend.calls(), 3, "a GET is hedged");
    let stats = layer.stats();
    assert_eq!((stats.calls, stats.ineligible, stats.hedges), (2, 1, 1));

    // A closure rule, and a request that cannot be replayed.
    #[derive(Debug)]
    struct Once;
    impl Replay for Once {
        fn replay(&self) -> Option<Self> {
            None
        }
    }
    let backend = Backend::new(|_| (ms(1_000), true));
    let layer = HedgeLayer::builder()
        .delay(ms(50))
        .eligible(|_: &Once| true)
        .build()
        .unwrap();
    layer.layer(backend.clone()).oneshot(Once).await.unwrap();
    assert_eq!(
        backend.calls(),
        1,
        "a request without a replay is sent once"
    );
    assert_eq!(layer.stats().ineligible, 1);

    let backend = Backend::new(|_| (ms(1_000), true));
    let odd_only = HedgeLayer::builder()
        .delay(ms(50))
        .eligible(|n: &u32| n % 2 == 1)
        .build()
        .unwrap();
    odd_only.layer(backend.clone()).oneshot(2).await.unwrap();
    assert_eq!(backend.calls(), 1);
    odd_only.layer(backend.clone()).oneshot(3).await.unwrap();
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn hedges_never_exceed_the_budget() {
    // Every call is slow: each would be hedged without a budget.
    let backend = Backend::new(|_| (ms(100), true));
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .eligible(AnyRequest)
        .budget(0.1)
        .budget_floor(0)
        .build()
        .unwrap();
    let mut svc = layer.layer(backend.clone());
    for i in 0..200u32 {
        send(&mut svc, i).await.unwrap();
    }
    let stats = layer.stats();
    assert_eq!(stats.calls, 200);
    assert!(stats.hedges > 0, "the budget allows some hedges");
    assert!(
        stats.hedges * 10 <= stats.calls,
        "at most 10 % extra load: {stats:?}"
    );
    assert_eq!(stats.hedges + stats.budget_refusals, 200);
    assert_eq!(u64::from(backend.calls()), 200 + stats.hedges);
}

#[tokio::test(start_paused = true)]
async fn percentile_mode_learns_a_delay() {
    // Calls take 10 ms, except call 40 (1 s) and the ones after it.
    let backend = Backend::new(|n| (ms(if n == 40 { 1_000 } else { 10 }), true));
    let layer = HedgeLayer::builder()
        .percentile(90.0)
        .min_samples(20)
        .delay(ms(500)) // until 20 samples are in
        .eligible(AnyRequest)
        .build()
        .unwrap();
    assert_eq!(layer.learned_delay(), None);
    let mut svc = layer.layer(backend.clone());
    for i in 0..40u32 {
        send(&mut svc, i).await.unwrap();
    }
    let learned = layer.learned_delay().expect("40 samples are enough");
    assert!(
        learned >= ms(10) && learned <= ms(10) * 9 / 8,
        "learned {learned:?}"
    );
    // The slow call is hedged at the learned delay, not at 500 ms.
    let started = Instant::now();
    assert_eq!(send(&mut svc, 40u32).await, Ok(41));
    // (tokio's timer rounds a deadline up to the next millisecond.)
    let fired = ms(u64::try_from(learned.as_micros().div_ceil(1_000)).unwrap());
    assert_eq!(started.elapsed(), fired + ms(10));
    assert_eq!(layer.stats().hedges, 1);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_waits_for_readiness() {
    let backend = first_slow(1_000, 10);
    let layer = any_request(ms(50));
    let started = Instant::now();
    let mut fut = pin!(layer.layer(backend.clone()).oneshot(()));
    assert!(poll!(&mut fut).is_pending());
    backend.set_open(false);
    advance(ms(50)).await;
    assert!(poll!(&mut fut).is_pending());
    advance(ms(150)).await;
    assert!(poll!(&mut fut).is_pending());
    assert_eq!(
        backend.calls(),
        1,
        "no hedge while the service is not ready"
    );
    backend.set_open(true);
    assert!(poll!(&mut fut).is_pending());
    assert_eq!(
        backend.calls(),
        2,
        "the hedge goes once the service is ready"
    );
    assert_eq!(fut.await, Ok(1));
    assert_eq!(started.elapsed(), ms(210));
}

#[tokio::test(start_paused = true)]
async fn up_to_max_hedges_each_a_delay_apart() {
    let backend = Backend::new(|n| (ms(if n < 2 { 1_000 } else { 10 }), true));
    let layer = HedgeLayer::builder()
        .delay(ms(20))
        .max_hedges(3)
        .budget_floor(100)
        .eligible(AnyRequest)
        .build()
        .unwrap();
    let started = Instant::now();
    assert_eq!(layer.layer(backend.clone()).oneshot(()).await, Ok(2));
    // Hedges at 20 and 40 ms; the second answers at 50 ms.
    assert_eq!(started.elapsed(), ms(50));
    assert_eq!((backend.calls(), backend.cancelled()), (3, 2));
}

#[test]
fn bad_config_names_the_field() {
    let field = |b: Result<HedgeLayer, tower_patterns::ConfigError>| b.unwrap_err().field();
    assert_eq!(
        field(HedgeLayer::builder().max_hedges(0).build()),
        "max_hedges"
    );
    assert_eq!(
        field(HedgeLayer::builder().max_hedges(17).build()),
        "max_hedges"
    );
    assert_eq!(
        field(HedgeLayer::builder().percentile(0.0).build()),
        "percentile"
    );
    assert_eq!(
        field(HedgeLayer::builder().percentile(100.0).build()),
        "percentile"
    );
    assert_eq!(
        field(HedgeLayer::builder().percentile(f64::NAN).build()),
        "percentile"
    );
    assert_eq!(
        field(HedgeLayer::builder().min_samples(0).build()),
        "min_samples"
    );
    assert_eq!(
        field(HedgeLayer::builder().window(Duration::ZERO).build()),
        "window"
    );
    assert_eq!(field(HedgeLayer::builder().budget(-0.1).build()), "budget");
    assert_eq!(
        field(HedgeLayer::builder().budget(f64::NAN).build()),
        "budget"
    );
    let err = HedgeLayer::builder().max_hedges(0).build().unwrap_err();
    assert_eq!(err.component(), "hedge");
    assert!(HedgeLayer::builder().percentile(99.9).build().is_ok());
}

#[tokio::test(start_paused = true)]
async fn clones_share_the_stats_and_the_budget() {
    let backend = Backend::new(|_| (ms(100), true));
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .eligible(AnyRequest)
        .budget(0.0)
        .budget_floor(1) // 10 hedges over the 10 s window, for all clones together
        .build()
        .unwrap();
    let mut a = layer.layer(backend.clone());
    let mut b = a.clone();
    for i in 0..8u32 {
        send(&mut a, i).await.unwrap();
        send(&mut b, i).await.unwrap();
    }
    drop(b);
    let stats = layer.stats();
    assert_eq!(stats.calls, 16, "a dropped clone's calls still count");
    assert_eq!((stats.hedges, stats.budget_refusals), (10, 6));
    assert_eq!(a.stats(), stats);
}

/// A hedge is not sent when the deadline in force (a `TimeoutLayer` above)
/// leaves less time than the delay between attempts.
#[tokio::test(start_paused = true)]
async fn no_hedge_is_sent_too_close_to_the_deadline() {
    use tower_patterns::deadline::{Elapsed, TimeoutLayer};

    // An 80 ms deadline: at the 50 ms hedge point only 30 ms are left.
    let backend = first_slow(1_000, 10);
    let layer = any_request(ms(50));
    let svc = TimeoutLayer::new(ms(80)).layer(layer.layer(backend.clone()));
    let started = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    assert_eq!(started.elapsed(), ms(80));
    assert_eq!(backend.calls(), 1, "no hedge");
    let stats = layer.stats();
    assert_eq!((stats.hedges, stats.deadline_stops), (0, 1));

    // A 200 ms deadline: 150 ms are left at the hedge point, so it is sent.
    let backend = first_slow(1_000, 10);
    let layer = any_request(ms(50));
    let svc = TimeoutLayer::new(ms(200)).layer(layer.layer(backend.clone()));
    assert_eq!(svc.oneshot(()).await.unwrap(), 1);
    assert_eq!(backend.calls(), 2);
    let stats = layer.stats();
    assert_eq!((stats.hedges, stats.deadline_stops), (1, 0));
}
