//! `Duration::MAX` in every builder that takes a duration (the pool's are in
//! tests/pool.rs), and the largest `Retry-After` a server can send.
//!
//! The crate's rule (crate docs, "Durations"): a duration from configuration
//! or from the network meets the clock saturating, so `Duration::MAX` means
//! "no limit", never a panic. Each test builds with `Duration::MAX`, drives
//! the path that adds it to the clock under paused time, and checks what
//! "no limit" means there: still waiting after an hour, still cached after
//! a year.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio::time::{advance, sleep};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open, State, Window};
use tower_patterns::classify::HttpClassify;
use tower_patterns::fetch::{self, HttpClient};
use tower_patterns::limit::{AdaptiveLimitLayer, ConcurrencyLimitLayer};
use tower_patterns::queue::{Shutdown, TaskQueue, TaskStatus};
use tower_patterns::retry::{Backoff, Jitter, RetryBudget, RetryLayer};
use tower_patterns::upstream::UpstreamConfig;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// The crate's "never": 30 years ahead.
const NEVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// A service that fails its first `fails` calls, then answers its call
/// number; counts calls.
fn failing(
    fails: usize,
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = usize, Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |_: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n <= fails {
                Err::<usize, BoxError>(format!("failure {n}").into())
            } else {
                Ok(n)
            }
        }
    })
}

// ===== retry =====

#[tokio::test(start_paused = true)]
async fn retry_constant_backoff_of_max_waits_never() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::MAX))
        .build()
        .unwrap();
    let svc = layer.layer(failing(usize::MAX, calls.clone()));
    // The first failure arms the backoff sleep (the old code panicked
    // here adding Duration::MAX to the clock).
    let waited = tokio::time::timeout(HOUR, svc.oneshot(1)).await;
    assert!(waited.is_err(), "still backing off after an hour");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry yet");
    assert_eq!(layer.stats().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn retry_max_delay_of_max_is_no_cap() {
    // 1 s, then 10^300 s (too long for any clock): the cap is MAX, so the
    // second delay is not capped and waits "never".
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .backoff(
            Backoff::exponential(Duration::from_secs(1))
                .factor(1e300)
                .max_delay(Duration::MAX)
                .jitter(Jitter::None),
        )
        .build()
        .unwrap();
    let mut fut = Box::pin(layer.layer(failing(usize::MAX, calls.clone())).oneshot(1));
    assert!(tokio::time::timeout(Duration::from_millis(999), &mut fut)
        .await
        .is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(tokio::time::timeout(HOUR, &mut fut).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 2, "first retry after 1 s");
    assert!(tokio::time::timeout(YEAR, &mut fut).await.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the second delay is 'never'"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_deadline_of_max_is_no_limit() {
    // A day's backoff is not cut short by a deadline of MAX (the old code
    // panicked in `call` computing the deadline).
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(DAY))
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(layer.deadline(), Some(Duration::MAX));
    let mut fut = Box::pin(layer.layer(failing(2, calls.clone())).oneshot(1));
    assert!(tokio::time::timeout(DAY - Duration::from_secs(1), &mut fut)
        .await
        .is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let answer = tokio::time::timeout(DAY + HOUR, &mut fut)
        .await
        .expect("two one-day backoffs, then the answer")
        .expect("the third attempt succeeds");
    assert_eq!(answer, 3);
    assert_eq!(layer.stats().retries, 2);

    // Both "never": a backoff of MAX would end past a deadline of MAX, so
    // the layer gives up at once with the failure instead of hanging.
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::MAX))
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    let err = tokio::time::timeout(
        HOUR,
        layer.layer(failing(usize::MAX, calls.clone())).oneshot(1),
    )
    .await
    .expect("the deadline ends it")
    .unwrap_err();
    assert_eq!(err.to_string(), "failure 1");
}

#[test]
fn retry_budget_window_of_max_is_refused_by_its_documented_range() {
    // The budget's window is a semantic range (10 ms ..= 1 h), not a clock
    // guard: MAX stays refused.
    let err = RetryLayer::builder()
        .budget(RetryBudget::new(0.2, 10, Duration::MAX))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "budget.window");
}

/// A service answering 503 with `Retry-After: value`; counts calls.
fn unavailable(
    value: &'static str,
    calls: Arc<AtomicUsize>,
) -> impl Service<(), Response = http::Response<()>, Error = Infallible, Future = impl Send> + Clone
{
    service_fn(move |()| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok::<_, Infallible>(
                http::Response::builder()
                    .status(503)
                    .header("retry-after", value)
                    .body(())
                    .unwrap(),
            )
        }
    })
}

#[tokio::test(start_paused = true)]
async fn largest_retry_after_cannot_panic_the_retry_layer() {
    // The largest values the header grammar allows: delta-seconds of any
    // length (1*DIGIT), and the last HTTP-date there is.
    for value in ["99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"] {
        // Uncapped: the server's wish is waited in full, i.e. never.
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = RetryLayer::builder()
            .max_attempts(2)
            .backoff(Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::MAX))
            .classify(HttpClassify)
            .build()
            .unwrap();
        let waited = tokio::time::timeout(
            YEAR,
            layer.layer(unavailable(value, calls.clone())).oneshot(()),
        )
        .await;
        assert!(waited.is_err(), "{value}: still waiting after a year");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{value}");

        // Uncapped, with a deadline: the wait would end past it, so the
        // 503 comes back at once.
        let calls = Arc::new(AtomicUsize::new(0));
        let layer = RetryLayer::builder()
            .max_attempts(2)
            .backoff(Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::MAX))
            .deadline(Duration::from_secs(30))
            .classify(HttpClassify)
            .build()
            .unwrap();
        let res = tokio::time::timeout(
            Duration::from_millis(1),
            layer.layer(unavailable(value, calls.clone())).oneshot(()),
        )
        .await
        .expect("the deadline ends it at once")
        .unwrap();
        assert_eq!(res.status(), 503, "{value}");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{value}");

        // Any other cap: the cap is waited, then the retry happens.
        for cap in [Duration::from_secs(10), YEAR] {
            let calls = Arc::new(AtomicUsize::new(0));
            let layer = RetryLayer::builder()
                .max_attempts(2)
                .backoff(Backoff::exponential(Duration::from_millis(100)).max_delay(cap))
                .classify(HttpClassify)
                .build()
                .unwrap();
            let mut fut = Box::pin(layer.layer(unavailable(value, calls.clone())).oneshot(()));
            assert!(
                tokio::time::timeout(cap - Duration::from_millis(1), &mut fut)
                    .await
                    .is_err()
            );
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{value}, cap {cap:?}");
            let res = tokio::time::timeout(Duration::from_millis(2), &mut fut)
                .await
                .expect("retried once the cap passed")
                .unwrap();
            assert_eq!(res.status(), 503);
            assert_eq!(calls.load(Ordering::SeqCst), 2, "{value}, cap {cap:?}");
        }
    }
}

// ===== circuit breaker =====

/// A breaker service over `ok`-or-fail calls.
fn switch() -> impl Service<bool, Response = (), Error = BoxError, Future = impl Send> + Clone {
    service_fn(|ok: bool| async move {
        if ok {
            Ok(())
        } else {
            Err::<(), BoxError>("down".into())
        }
    })
}

/// Calls `svc` with `ok`; returns the breaker's rejection, if it rejected.
async fn call<S>(svc: &mut S, ok: bool) -> Option<Open>
where
    S: Service<bool, Response = (), Error = BoxError>,
{
    match svc.ready().await.ok()?.call(ok).await {
        Ok(()) => None,
        Err(e) => e.downcast_ref::<Open>().cloned(),
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_open_duration_of_max_stays_open() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::MAX)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(switch());
    assert!(
        call(&mut svc, false).await.is_none(),
        "the failure itself passes through"
    );
    assert_eq!(handle.state(), State::Open);
    advance(YEAR).await;
    let open = call(&mut svc, true).await.expect("still open after a year");
    // The wait it reports is the crate's "never", minus the year gone.
    assert_eq!(open.retry_after(), Some(NEVER - YEAR));
    handle.reset();
    assert!(call(&mut svc, true).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn breaker_open_duration_max_of_max_doubles_up_to_never() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .open_duration_max(Duration::MAX)
        .build()
        .unwrap();
    let mut svc = layer.layer(switch());
    assert!(call(&mut svc, false).await.is_none());
    // Each failed probe doubles the open duration: 1 s, 2 s, 4 s, ...,
    // until 2^30 s (34 years) passes "never" and stays there.
    for k in 0..34u32 {
        let expected = Duration::from_secs(1u64 << k).min(NEVER);
        let open = call(&mut svc, true).await.expect("open");
        assert_eq!(open.retry_after(), Some(expected), "opening {k}");
        advance(expected).await;
        assert!(call(&mut svc, false).await.is_none(), "probe {k} fails");
    }
    assert_eq!(layer.stats().state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn breaker_time_window_of_max_keeps_every_call() {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Time(Duration::MAX))
        .minimum_calls(2)
        .open_duration(HOUR)
        .build()
        .unwrap();
    let mut svc = layer.layer(switch());
    assert!(call(&mut svc, false).await.is_none());
    assert_eq!(layer.stats().state, State::Closed, "one call: no verdict");
    advance(YEAR).await;
    // A year later the failure is still in the window: 1 of 2 fails.
    assert!(call(&mut svc, true).await.is_none());
    let stats = layer.stats();
    assert_eq!((stats.window_calls, stats.window_failures), (2, 1));
    assert_eq!(stats.state, State::Open);
}

#[tokio::test(start_paused = true)]
async fn breaker_slow_call_threshold_of_max_is_never_slow() {
    let layer = CircuitBreakerLayer::builder()
        .failure_rate_threshold(1.0)
        .sliding_window(Window::Count(2))
        .slow_call(Duration::MAX, 0.5)
        .build()
        .unwrap();
    let slow = service_fn(|d: Duration| async move {
        sleep(d).await;
        Ok::<_, BoxError>(())
    });
    let mut svc = layer.layer(slow);
    for d in [YEAR, DAY] {
        svc.ready().await.unwrap().call(d).await.unwrap();
    }
    let stats = layer.stats();
    assert_eq!((stats.window_calls, stats.slow), (2, 0), "no call is slow");
    assert_eq!(stats.state, State::Closed);
}

// ===== limits =====

/// A service whose calls wait for a permit on `gate`.
fn gated(
    gate: Arc<Semaphore>,
) -> impl Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |()| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, BoxError>(())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn concurrency_limit_max_wait_of_max_waits_as_long_as_it_takes() {
    let gate = Arc::new(Semaphore::new(0));
    let layer = ConcurrencyLimitLayer::builder()
        .limit(1)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let svc = layer.layer(gated(gate.clone()));
    let first = tokio::spawn(svc.clone().oneshot(()));
    tokio::task::yield_now().await;
    assert_eq!(layer.stats().in_flight, 1);
    let mut second = Box::pin(svc.clone().oneshot(()));
    assert!(
        tokio::time::timeout(DAY, &mut second).await.is_err(),
        "still waiting after a day"
    );
    assert_eq!(layer.stats().rejected, 0);
    assert_eq!(layer.stats().waiting, 1);
    gate.add_permits(2);
    first.await.unwrap().unwrap();
    second.await.expect("gets the permit once it is free");
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_durations_of_max() {
    // AIMD: a call slower than `timeout` counts as a failure; MAX: none.
    let layer = AdaptiveLimitLayer::builder()
        .aimd()
        .initial_limit(2)
        .min_limit(1)
        .max_limit(2)
        .timeout(Duration::MAX)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let slow = service_fn(|d: Duration| async move {
        sleep(d).await;
        Ok::<_, BoxError>(())
    });
    layer.layer(slow).oneshot(YEAR).await.unwrap();
    assert_eq!(layer.stats().limit, 2, "a year-long call is not a timeout");

    // max_wait MAX: a caller waits for a permit as long as it takes.
    let gate = Arc::new(Semaphore::new(0));
    let svc = layer.layer(gated(gate.clone()));
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(svc.clone().oneshot(())))
        .collect();
    tokio::task::yield_now().await;
    let mut third = Box::pin(svc.clone().oneshot(()));
    assert!(
        tokio::time::timeout(DAY, &mut third).await.is_err(),
        "still waiting after a day"
    );
    assert_eq!(layer.stats().rejected, 0);
    gate.add_permits(3);
    for h in held {
        h.await.unwrap().unwrap();
    }
    third.await.expect("gets a permit once one is free");
}

// ===== cache =====

#[tokio::test(start_paused = true)]
async fn cache_durations_of_max_never_expire() {
    let calls = Arc::new(AtomicUsize::new(0));
    let backend = {
        let calls = calls.clone();
        service_fn(move |k: u64| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Ok::<_, BoxError>(format!("{k}@v{n}")) }
        })
    };
    // ttl MAX (refused as "over 100 years" before): a hit a year later.
    let layer = CacheLayer::<u64, String>::builder()
        .ttl(Duration::MAX)
        .key_fn(|k: &u64| *k)
        .build()
        .expect("Duration::MAX means no limit");
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(backend.clone());
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), "1@v1");
    advance(YEAR).await;
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), "1@v1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(layer.stats().hits, 1);

    // Stale windows of MAX: a year after going stale, an entry is still
    // served at once and refreshed behind the caller.
    let layer = CacheLayer::<u64, String>::builder()
        .ttl(Duration::from_secs(1))
        .stale_while_revalidate(Duration::MAX)
        .stale_if_error(Duration::MAX)
        .cache_errors(Duration::MAX)
        .key_fn(|k: &u64| *k)
        .build()
        .expect("Duration::MAX means no limit");
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(backend);
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), "2@v2");
    advance(YEAR).await;
    assert_eq!(
        svc.ready().await.unwrap().call(2).await.unwrap(),
        "2@v2",
        "stale, served at once"
    );
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "refreshed in the background"
    );
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), "2@v3");
}

#[tokio::test(start_paused = true)]
async fn cache_stale_if_error_of_max_serves_a_year_old_entry() {
    let fail = Arc::new(AtomicUsize::new(0));
    let backend = {
        let fail = fail.clone();
        service_fn(move |k: u64| {
            let failing = fail.load(Ordering::SeqCst) > 0;
            async move {
                if failing {
                    Err::<String, BoxError>("down".into())
                } else {
                    Ok(format!("{k}"))
                }
            }
        })
    };
    let layer = CacheLayer::<u64, String>::builder()
        .ttl(Duration::from_secs(1))
        .stale_if_error(Duration::MAX)
        .key_fn(|k: &u64| *k)
        .build()
        .expect("Duration::MAX means no limit");
    let mut svc = ServiceBuilder::new().layer(layer).service(backend);
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), "7");
    advance(YEAR).await;
    fail.store(1, Ordering::SeqCst);
    assert_eq!(
        svc.ready().await.unwrap().call(7).await.unwrap(),
        "7",
        "the backend fails; the year-old entry is served"
    );
}

// ===== fetch =====

#[tokio::test(start_paused = true)]
async fn http_client_timeouts_of_max() {
    // The idle pool timer runs in a task of its own: a panic there (hyper
    // adding the idle timeout to the clock) would not fail the test by
    // itself, so count panics.
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));

    let server = common::upstream(UpstreamConfig::default()).await;
    let client = HttpClient::builder()
        .timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .pool_idle_timeout(Duration::MAX)
        .build()
        .expect("Duration::MAX means no limit");
    // Ten minutes of server think time (the upstream's longest; 20 times
    // the default timeout): no timeout fires.
    let slow: serde_json::Value = fetch::fetch_json(&client, server.url("/slow?ms=600000"))
        .await
        .expect("no limit: the answer comes");
    assert_eq!(slow["slept_ms"], 600_000);
    // The body read timeout: `stream_body` restarts it on every chunk.
    let mut chunks =
        fetch::stream_body(&client, server.url("/stream?bytes=65536&chunk=4096"), 4096)
            .await
            .unwrap();
    let mut n = 0;
    while let Some(chunk) = chunks.next().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, 65_536);
    // Let the pool's idle timer (armed when the connection went idle) run.
    sleep(HOUR).await;
    assert_eq!(client.stats().timeouts, 0);
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "no task panicked");
}

// ===== queue =====

#[tokio::test(start_paused = true)]
async fn queue_durations_of_max() {
    let svc = service_fn(|d: Duration| async move {
        sleep(d).await;
        Ok::<_, Infallible>(d.as_secs())
    });
    let queue = TaskQueue::builder()
        .workers(1)
        .retain_results(Duration::MAX)
        .build(svc)
        .unwrap();
    // retain MAX: a result nobody took is still there a year later.
    let kept = queue.submit(Duration::from_secs(1)).await.unwrap();
    sleep(Duration::from_secs(2)).await;
    assert_eq!(queue.status(kept), Some(TaskStatus::Completed));
    advance(YEAR).await;
    assert_eq!(queue.status(kept), Some(TaskStatus::Completed));
    assert_eq!(queue.result(kept).await.unwrap(), 1);

    // Graceful(MAX): shutdown waits for a two-hour task to finish.
    let long = queue.submit(2 * HOUR).await.unwrap();
    let summary = queue.shutdown(Shutdown::Graceful(Duration::MAX)).await;
    assert!(!summary.deadline_reached);
    assert_eq!(summary.completed, 1);
    assert!(summary.cancelled.is_empty());
    assert_eq!(queue.status(long), Some(TaskStatus::Completed));
}
