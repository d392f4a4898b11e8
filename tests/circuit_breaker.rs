//! Circuit breaker behaviour, with paused tokio time.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::{ChangeReason, CircuitBreakerLayer, Open, State, Window};
use tower_patterns::classify::{HttpClassify, Outcome};

/// What the mock service does with a request.
#[derive(Clone, Debug)]
enum Call {
    Ok,
    Fail,
    /// Succeeds with a status the classifier ignores.
    Ignored,
    /// Succeeds after this long.
    SlowOk(Duration),
    /// Waits for a permit on the gate, then succeeds (or fails).
    Gated(bool),
}

#[derive(Clone)]
struct Mock {
    calls: Arc<AtomicUsize>,
    ready_polls: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Mock {
    fn new() -> Self {
        Mock {
            calls: Arc::default(),
            ready_polls: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<Call> for Mock {
    type Response = u16;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u16, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.ready_polls.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.clone();
        Box::pin(async move {
            match call {
                Call::Ok => Ok(200),
                Call::Fail => Err("boom".into()),
                Call::Ignored => Ok(404),
                Call::SlowOk(d) => {
                    tokio::time::sleep(d).await;
                    Ok(200)
                }
                Call::Gated(ok) => {
                    gate.acquire().await.unwrap().forget();
                    if ok {
                        Ok(200)
                    } else {
                        Err("boom".into())
                    }
                }
            }
        })
    }
}

/// 404 is ignored, other `Ok`s succeed, `Err`s fail.
fn classify(r: &Result<u16, BoxError>) -> Outcome {
    match r {
        Ok(404) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

async fn send<S>(svc: &mut S, call: Call) -> Result<u16, BoxError>
where
    S: Service<Call, Response = u16, Error = BoxError>,
{
    svc.ready().await?.call(call).await
}

fn open_err(r: Result<u16, BoxError>) -> Open {
    let e = r.expect_err("expected the breaker to reject");
    *e.downcast_ref::<Open>()
        .unwrap_or_else(|| panic!("not an Open error: {e}"))
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn consecutive_model_opens_probes_and_closes() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::consecutive(5, 60 * SEC);
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());

    // Four failures, a success: the run starts over.
    for _ in 0..4 {
        assert!(send(&mut svc, Call::Fail).await.is_err());
    }
    send(&mut svc, Call::Ok).await.unwrap();
    for _ in 0..4 {
        assert!(send(&mut svc, Call::Fail).await.is_err());
    }
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.stats().consecutive_failures, 4);
    assert!(send(&mut svc, Call::Fail).await.is_err());
    assert_eq!(handle.state(), State::Open);
    assert_eq!(mock.calls(), 10);

    // The 6th call fails fast without reaching the inner service.
    let open = open_err(send(&mut svc, Call::Ok).await);
    assert_eq!(open.state(), State::Open);
    assert_eq!(open.retry_after(), Some(60 * SEC));
    assert_eq!(mock.calls(), 10);

    tokio::time::sleep(59 * SEC).await;
    let open = open_err(send(&mut svc, Call::Ok).await);
    assert_eq!(open.retry_after(), Some(SEC));
    assert!(open.to_string().ends_with("in 1.0s"), "{open}");
    assert_eq!(mock.calls(), 10);

    // After 60 s one probe goes through; its failure re-opens the breaker.
    tokio::time::sleep(SEC).await;
    assert!(send(&mut svc, Call::Fail).await.is_err());
    assert_eq!(mock.calls(), 11);
    assert_eq!(handle.state(), State::Open);
    open_err(send(&mut svc, Call::Ok).await);
    assert_eq!(mock.calls(), 11);

    // Next probe succeeds: closed again, and the run count starts at zero.
    tokio::time::sleep(60 * SEC).await;
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(send(&mut svc, Call::Ok).await.unwrap(), 200);
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(mock.calls(), 12);
    let s = handle.stats();
    assert_eq!(
        (s.successes, s.failures, s.rejected, s.opened),
        (2, 10, 3, 2)
    );
    assert_eq!(s.consecutive_failures, 0);
}

/// An inner service that never becomes ready.
#[derive(Clone)]
struct NeverReady(Arc<AtomicUsize>);

impl Service<()> for NeverReady {
    type Response = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(), Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Poll::Pending
    }
    fn call(&mut self, _: ()) -> Self::Future {
        panic!("NeverReady was called")
    }
}

#[tokio::test(start_paused = true)]
async fn open_breaker_is_ready_without_polling_inner() {
    let polls = Arc::new(AtomicUsize::new(0));
    let layer = CircuitBreakerLayer::consecutive(1, 10 * SEC);
    let mut svc = layer.layer(NeverReady(polls.clone()));
    // Closed: readiness is the inner service's.
    assert!(futures::poll!(svc.ready()).is_pending());
    assert_eq!(polls.load(Ordering::SeqCst), 1);

    layer.handle().force_open();
    let mut svc = layer.layer(NeverReady(polls.clone()));
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<Open>());
    assert_eq!(polls.load(Ordering::SeqCst), 1, "inner polled while open");
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_count_as_neither() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .classify(classify)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock);
    send(&mut svc, Call::Fail).await.unwrap_err();
    // A 404 neither resets the run nor extends it.
    assert_eq!(send(&mut svc, Call::Ignored).await.unwrap(), 404);
    assert_eq!(handle.stats().consecutive_failures, 1);
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
    let s = handle.stats();
    assert_eq!((s.successes, s.failures, s.ignored), (0, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn http_classify_ignores_client_errors() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .classify(HttpClassify)
        .build()
        .unwrap();
    let mut svc = layer.layer(tower::service_fn(|code: u16| async move {
        Ok::<_, Infallible>(http::Response::builder().status(code).body(()).unwrap())
    }));
    for _ in 0..3 {
        svc.ready().await.unwrap().call(404).await.unwrap();
    }
    assert_eq!(layer.handle().state(), State::Closed);
    svc.ready().await.unwrap().call(503).await.unwrap();
    assert_eq!(layer.handle().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn rate_model_count_window() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Count(10))
        .minimum_calls(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());

    // 3 failures out of 3: 100 %, but below minimum_calls.
    for _ in 0..3 {
        send(&mut svc, Call::Fail).await.unwrap_err();
    }
    assert_eq!(handle.state(), State::Closed);
    // The 4th call is a success: 3/4 = 75 % >= 50 % with 4 calls: open.
    send(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Open);

    // Below the rate it stays closed however many calls there are.
    handle.force_closed();
    for i in 0..40 {
        let call = if i % 3 == 2 { Call::Fail } else { Call::Ok };
        let _ = send(&mut svc, call).await;
    }
    assert_eq!(handle.state(), State::Closed);
    let s = handle.stats();
    assert_eq!(s.window_calls, 10);
    assert!(s.failure_rate().unwrap() < 0.5);

    // The window holds the last 10 calls: 10 successes push every failure
    // out, then 5 failures out of 10 open it exactly at the 5th.
    for _ in 0..10 {
        send(&mut svc, Call::Ok).await.unwrap();
    }
    assert_eq!(handle.stats().window_failures, 0);
    for i in 1..=5 {
        send(&mut svc, Call::Fail).await.unwrap_err();
        let want = if i < 5 { State::Closed } else { State::Open };
        assert_eq!(handle.state(), want, "after {i} failures");
    }
}

#[tokio::test(start_paused = true)]
async fn rate_model_time_window_ages_calls_out() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Time(20 * SEC))
        .minimum_calls(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());

    // Three failures now...
    for _ in 0..3 {
        send(&mut svc, Call::Fail).await.unwrap_err();
    }
    assert_eq!(handle.stats().window_calls, 3);
    // ...have aged out 20 s later: the 4th call finds an almost empty window.
    tokio::time::sleep(20 * SEC).await;
    assert_eq!(handle.stats().window_calls, 0);
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.stats().window_failures, 1);

    // Within the window: 3 more failures and one success = 4/5 over 4 calls.
    tokio::time::sleep(5 * SEC).await;
    send(&mut svc, Call::Ok).await.unwrap();
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(
        handle.state(),
        State::Closed,
        "3 calls is below minimum_calls"
    );
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_breaker() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .sliding_window(Window::Count(4))
        .minimum_calls(4)
        .slow_call(2 * SEC, 0.75)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());

    send(&mut svc, Call::SlowOk(3 * SEC)).await.unwrap();
    send(&mut svc, Call::SlowOk(2 * SEC)).await.unwrap(); // not slower than 2 s
    send(&mut svc, Call::SlowOk(3 * SEC)).await.unwrap();
    send(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "2 slow of 4 is under 75 %");
    let s = handle.stats();
    assert_eq!((s.slow, s.window_slow, s.successes), (2, 2, 4));

    // Every slow call is a success, yet 3 of the last 4 slow opens it.
    send(&mut svc, Call::SlowOk(5 * SEC)).await.unwrap(); // evicts a slow one
    assert_eq!(handle.state(), State::Closed);
    send(&mut svc, Call::SlowOk(5 * SEC)).await.unwrap();
    assert_eq!(handle.state(), State::Open);

    // A slow probe is a failed probe.
    tokio::time::sleep(60 * SEC).await;
    send(&mut svc, Call::SlowOk(3 * SEC)).await.unwrap();
    assert_eq!(handle.state(), State::Open);
    tokio::time::sleep(60 * SEC).await;
    send(&mut svc, Call::SlowOk(SEC)).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_exactly_the_probe_limit_under_concurrency() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .half_open_calls(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());
    send(&mut svc, Call::Fail).await.unwrap_err();
    tokio::time::sleep(10 * SEC).await;

    // 10 concurrent callers, each with its own clone; the gate holds the
    // admitted probes in flight.
    fn spawn_callers(
        svc: &tower_patterns::circuit_breaker::CircuitBreaker<Mock>,
        calls: &[bool],
    ) -> Vec<tokio::task::JoinHandle<Result<u16, BoxError>>> {
        calls
            .iter()
            .map(|&ok| {
                let mut svc = svc.clone();
                tokio::spawn(async move { send(&mut svc, Call::Gated(ok)).await })
            })
            .collect()
    }
    let tasks = spawn_callers(&svc, &[true; 10]);
    tokio::time::sleep(Duration::from_millis(1)).await; // every task runs until it blocks
    assert_eq!(mock.calls(), 4, "exactly 3 probes reach the service");
    assert_eq!(handle.probes_in_flight(), 3);
    assert_eq!(handle.state(), State::HalfOpen);
    mock.gate.add_permits(3);
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.downcast_ref::<Open>().unwrap().state(), State::HalfOpen),
        }
    }
    assert_eq!(ok, 3);
    assert_eq!(
        handle.state(),
        State::Closed,
        "3 successful probes close it"
    );

    // Again with a failing probe in the middle: the breaker opens at the
    // failure, and the success that completes afterwards is not counted.
    send(&mut svc, Call::Fail).await.unwrap_err();
    tokio::time::sleep(10 * SEC).await;
    let probes = spawn_callers(&svc, &[true, false, true]);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(handle.probes_in_flight(), 3);
    open_err(send(&mut svc.clone(), Call::Ok).await);
    for want in [State::HalfOpen, State::Open, State::Open] {
        mock.gate.add_permits(1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(handle.state(), want);
    }
    for t in probes {
        let _ = t.await.unwrap();
    }
    assert_eq!(mock.calls(), 8);
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_reopens_despite_successful_ones() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .half_open_calls(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());
    send(&mut svc, Call::Fail).await.unwrap_err();
    tokio::time::sleep(10 * SEC).await;
    send(&mut svc, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), State::HalfOpen, "1 of 2 probes done");
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_gives_its_slot_back() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::consecutive(1, 10 * SEC);
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());
    send(&mut svc, Call::Fail).await.unwrap_err();
    tokio::time::sleep(10 * SEC).await;

    // A probe in flight, then dropped.
    let mut probe = svc.ready().await.unwrap().call(Call::Gated(true));
    assert!(futures::poll!(&mut probe).is_pending());
    assert_eq!(handle.probes_in_flight(), 1);
    let mut other = svc.clone();
    open_err(send(&mut other, Call::Ok).await);
    drop(probe);
    assert_eq!(handle.probes_in_flight(), 0);
    assert_eq!(
        handle.state(),
        State::HalfOpen,
        "a cancelled probe is no verdict"
    );
    assert_eq!(handle.stats().cancelled, 1);

    // A service dropped between poll_ready and call gives its slot back too.
    let mut ready = svc.clone();
    ready.ready().await.unwrap();
    assert_eq!(handle.probes_in_flight(), 1);
    drop(ready);
    assert_eq!(handle.probes_in_flight(), 0);

    // The slot is usable: a successful probe closes the breaker.
    send(&mut other, Call::Ok).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(mock.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn cancelled_closed_calls_count_as_neither() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::consecutive(1, 10 * SEC);
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());
    for _ in 0..3 {
        let mut f = svc.ready().await.unwrap().call(Call::Gated(false));
        assert!(futures::poll!(&mut f).is_pending());
        drop(f);
    }
    assert_eq!(handle.state(), State::Closed);
    let s = handle.stats();
    assert_eq!((s.cancelled, s.failures, s.successes), (3, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn open_durations_grow_per_consecutive_opening() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .open_duration_max(35 * SEC)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());
    send(&mut svc, Call::Fail).await.unwrap_err();
    for want in [10, 20, 35, 35] {
        let open = open_err(send(&mut svc, Call::Ok).await);
        assert_eq!(open.retry_after(), Some(want * SEC));
        tokio::time::sleep((want - 1) * SEC).await;
        assert_eq!(handle.state(), State::Open);
        tokio::time::sleep(SEC).await;
        assert_eq!(handle.state(), State::HalfOpen);
        send(&mut svc, Call::Fail).await.unwrap_err(); // failed probe
    }
    // A close resets the growth.
    tokio::time::sleep(35 * SEC).await;
    send(&mut svc, Call::Ok).await.unwrap();
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(
        open_err(send(&mut svc, Call::Ok).await).retry_after(),
        Some(10 * SEC)
    );
}

#[tokio::test(start_paused = true)]
async fn force_open_force_closed_and_reset() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::consecutive(2, 10 * SEC);
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());

    handle.force_open();
    assert_eq!(handle.state(), State::Open);
    let open = open_err(send(&mut svc, Call::Ok).await);
    assert_eq!(open.retry_after(), None);
    assert!(open.to_string().contains("force_open"), "{open}");
    // Held open: no timer, no probe.
    tokio::time::sleep(3600 * SEC).await;
    assert_eq!(handle.state(), State::Open);
    open_err(send(&mut svc, Call::Ok).await);
    assert_eq!(mock.calls(), 0);

    handle.force_closed();
    assert_eq!(handle.state(), State::Closed);
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.stats().consecutive_failures, 1);
    // force_closed clears the run but keeps the counters.
    handle.force_closed();
    let s = handle.stats();
    assert_eq!((s.consecutive_failures, s.failures, s.rejected), (0, 1, 2));

    send(&mut svc, Call::Fail).await.unwrap_err();
    send(&mut svc, Call::Fail).await.unwrap_err();
    assert_eq!(handle.state(), State::Open);
    handle.reset();
    let s = handle.stats();
    assert_eq!(s.state, State::Closed);
    assert_eq!(
        (s.failures, s.rejected, s.opened, s.consecutive_failures),
        (0, 0, 0, 0)
    );
    send(&mut svc, Call::Ok).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn state_change_callback_fires_once_per_transition() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .open_duration(10 * SEC)
        .half_open_calls(2)
        .on_state_change(move |c| {
            log.lock()
                .unwrap()
                .push((c.from, c.to, c.reason, c.stats.failures, c.stats.successes))
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(mock.clone());
    let mut other = svc.clone();

    send(&mut svc, Call::Fail).await.unwrap_err();
    send(&mut other, Call::Fail).await.unwrap_err();
    // Rejections and state reads are not transitions.
    for _ in 0..3 {
        open_err(send(&mut svc, Call::Ok).await);
        handle.state();
    }
    tokio::time::sleep(10 * SEC).await;
    for _ in 0..3 {
        handle.state();
    }
    send(&mut svc, Call::Ok).await.unwrap();
    send(&mut other, Call::Ok).await.unwrap();
    handle.force_open();
    handle.force_open();
    handle.force_closed();
    handle.force_closed();
    use ChangeReason::*;
    use State::*;
    // Each with why, and the counters as it happened: the two failures
    // that opened it, the two probe successes that closed it.
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Closed, Open, ConsecutiveFailures, 2, 0),
            (Open, HalfOpen, OpenDurationElapsed, 2, 0),
            (HalfOpen, Closed, ProbesSucceeded, 2, 2),
            (Closed, Open, ForcedOpen, 2, 2),
            (Open, Closed, ForcedClosed, 2, 2),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn clones_share_a_breaker_and_new_layers_do_not() {
    let mock = Mock::new();
    let layer = CircuitBreakerLayer::consecutive(2, 10 * SEC);
    let mut a = ServiceBuilder::new()
        .layer(layer.clone())
        .service(mock.clone());
    let mut b = a.clone();
    let mut c = layer.layer(mock.clone());
    send(&mut a, Call::Fail).await.unwrap_err();
    send(&mut b, Call::Fail).await.unwrap_err();
    open_err(send(&mut c, Call::Ok).await);
    assert_eq!(a.handle().state(), State::Open);

    let fresh = CircuitBreakerLayer::consecutive(2, 10 * SEC);
    let mut d = fresh.layer(mock.clone());
    assert_eq!(send(&mut d, Call::Ok).await.unwrap(), 200);
    assert_eq!(fresh.handle().state(), State::Closed);
}

#[test]
fn builder_rejects_bad_values() {
    let field = |b: tower_patterns::circuit_breaker::CircuitBreakerLayerBuilder| {
        b.build().unwrap_err().field()
    };
    let b = CircuitBreakerLayer::builder;
    assert_eq!(
        field(b().failure_rate_threshold(0.0)),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b().failure_rate_threshold(1.01)),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b().failure_rate_threshold(f64::NAN)),
        "failure_rate_threshold"
    );
    assert_eq!(
        field(b().sliding_window(Window::Count(0))),
        "sliding_window"
    );
    assert_eq!(
        field(b().sliding_window(Window::Time(Duration::ZERO))),
        "sliding_window"
    );
    assert_eq!(field(b().minimum_calls(0)), "minimum_calls");
    assert_eq!(
        field(b().sliding_window(Window::Count(10)).minimum_calls(11)),
        "minimum_calls"
    );
    assert_eq!(field(b().slow_call(Duration::ZERO, 0.5)), "slow_call");
    assert_eq!(field(b().slow_call(SEC, 0.0)), "slow_call");
    assert_eq!(
        field(b().open_duration(10 * SEC).open_duration_max(SEC)),
        "open_duration_max"
    );
    assert_eq!(field(b().half_open_calls(0)), "half_open_calls");
    assert_eq!(field(b().consecutive_failures(0)), "consecutive_failures");
    assert_eq!(
        field(b().consecutive_failures(3).minimum_calls(3)),
        "minimum_calls"
    );
    let err = b().failure_rate_threshold(2.0).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid circuit_breaker config: failure_rate_threshold = 2.0 (must be between 0.0 and 1.0)"
    );
    // Time windows take any minimum.
    b().sliding_window(Window::Time(SEC))
        .minimum_calls(1000)
        .build()
        .unwrap();
}

/// Many tasks on a multi-thread runtime hammer one breaker (through their
/// own clones) with a mix of outcomes and cancellations while it opens,
/// probes and closes: every call is counted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_no_lost_or_double_counted_outcomes() {
    #[derive(Default)]
    struct Tally {
        ok: AtomicUsize,
        failed: AtomicUsize,
        ignored: AtomicUsize,
        rejected: AtomicUsize,
        cancelled: AtomicUsize,
    }
    let inner_calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let inner_calls = inner_calls.clone();
        tower::service_fn(move |kind: u8| {
            inner_calls.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::task::yield_now().await;
                match kind {
                    0 => Err::<u16, BoxError>("boom".into()),
                    1 => Ok(404),
                    _ => Ok(200),
                }
            }
        })
    };
    for layer in [
        CircuitBreakerLayer::builder()
            .consecutive_failures(3)
            .open_duration(Duration::from_millis(1))
            .half_open_calls(2)
            .classify(classify)
            .build()
            .unwrap(),
        CircuitBreakerLayer::builder()
            .sliding_window(Window::Count(20))
            .minimum_calls(10)
            .failure_rate_threshold(0.3)
            .open_duration(Duration::from_millis(1))
            .half_open_calls(3)
            .classify(classify)
            .build()
            .unwrap(),
    ] {
        inner_calls.store(0, Ordering::Relaxed);
        let handle = layer.handle();
        let svc = layer.layer(inner.clone());
        let tally = Arc::new(Tally::default());
        const TASKS: usize = 16;
        const CALLS: usize = 1500;
        let tasks: Vec<_> = (0..TASKS as u64)
            .map(|seed| {
                let mut svc = svc.clone();
                let tally = tally.clone();
                tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(seed);
                    for _ in 0..CALLS {
                        // 30 % failures, 10 % ignored, 10 % cancelled.
                        let kind = match rng.u8(0..10) {
                            0..=2 => 0,
                            3 => 1,
                            _ => 2,
                        };
                        let cancel = rng.u8(0..10) == 0;
                        let fut = svc.ready().await.unwrap().call(kind);
                        if cancel {
                            match futures::FutureExt::now_or_never(fut) {
                                None => {
                                    tally.cancelled.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                Some(Err(e)) if e.is::<Open>() => {
                                    tally.rejected.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                Some(_) => unreachable!("the inner future yields first"),
                            }
                        }
                        let counter = match fut.await {
                            Ok(404) => &tally.ignored,
                            Ok(_) => &tally.ok,
                            Err(e) if e.is::<Open>() => &tally.rejected,
                            Err(_) => &tally.failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if rng.u8(0..50) == 0 {
                            // Let wall-clock time pass so open periods end.
                            tokio::time::sleep(Duration::from_micros(1200)).await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let s = handle.stats();
        let get = |a: &AtomicUsize| a.load(Ordering::Relaxed) as u64;
        assert_eq!(s.successes, get(&tally.ok));
        assert_eq!(s.failures, get(&tally.failed));
        assert_eq!(s.ignored, get(&tally.ignored));
        assert_eq!(s.rejected, get(&tally.rejected));
        assert_eq!(s.cancelled, get(&tally.cancelled));
        assert_eq!(
            s.successes + s.failures + s.ignored + s.rejected + s.cancelled,
            (TASKS * CALLS) as u64
        );
        assert_eq!(
            get(&inner_calls),
            s.successes + s.failures + s.ignored + s.cancelled
        );
        assert!(
            s.opened >= 2 && s.rejected > 0,
            "the run never cycled the breaker: {s:?}"
        );
        assert!(s.window_calls <= 20);
        // No probe slot leaked: nothing is in flight any more.
        assert_eq!(handle.probes_in_flight(), 0, "{s:?}");
    }
}

/// An inner service whose readiness is controlled by the test.
#[derive(Clone)]
struct Gate(Arc<AtomicBool>);

impl Service<()> for Gate {
    type Response = ();
    type Error = Infallible;
    type Future = std::future::Ready<Result<(), Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.0.load(Ordering::SeqCst) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
    fn call(&mut self, _: ()) -> Self::Future {
        std::future::ready(Ok(()))
    }
}

#[tokio::test(start_paused = true)]
async fn a_caller_waiting_on_readiness_fails_fast_once_the_breaker_opens() {
    let open = Arc::new(AtomicBool::new(false));
    let layer = CircuitBreakerLayer::consecutive(1, 10 * SEC);
    let mut svc = layer.layer(Gate(open.clone()));
    // Admitted while closed, then stuck behind the inner service...
    assert!(futures::poll!(svc.ready()).is_pending());
    // ...when the breaker opens: the next poll is ready at once.
    layer.handle().force_open();
    let ready = tokio::time::timeout(SEC, svc.ready()).await;
    let svc = ready
        .expect("an open breaker waited for the inner service")
        .unwrap();
    let err = svc.call(()).await.unwrap_err();
    assert!(err.is::<Open>());
    assert!(!open.load(Ordering::SeqCst));
}
