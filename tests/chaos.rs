//! Chaos layer behaviour: rates, determinism, latency in paused time, the
//! handle, validation, and how retry and a breaker see injected faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_patterns::chaos::{Chaos, ChaosLayer, ChaosRates, Injected};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
use tower_patterns::classify::{Classify, DefaultClassify, HttpClassify, Outcome};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};

type Echo = tower::util::ServiceFn<fn(u64) -> std::future::Ready<Result<u64, BoxError>>>;

fn echo() -> Echo {
    service_fn((|n: u64| std::future::ready(Ok(n))) as fn(u64) -> _)
}

/// Sends `n` calls one after another; returns the indices of the calls that
/// failed with `Injected`, checking the error names the same index.
async fn injected_indices(svc: &mut Chaos<Echo>, n: u64) -> Vec<u64> {
    let mut hit = Vec::new();
    for i in 0..n {
        match svc.ready().await.unwrap().call(i).await {
            Ok(v) => assert_eq!(v, i),
            Err(e) => {
                let injected = e.downcast_ref::<Injected>().expect("an Injected error");
                assert_eq!(injected.call_index(), i);
                hit.push(i);
            }
        }
    }
    hit
}

fn run(seed: u64) -> Chaos<Echo> {
    tower::Layer::layer(&ChaosLayer::errors(0.25, seed), echo())
}

#[tokio::test]
async fn rate_quarter_over_10k_seeded_calls_is_within_three_sigma_and_reproducible() {
    const N: u64 = 10_000;
    let sigma = (N as f64 * 0.25 * 0.75).sqrt(); // ≈ 43.3
    let first = injected_indices(&mut run(2026), N).await;
    let count = first.len() as f64;
    assert!(
        (count - 2_500.0).abs() <= 3.0 * sigma,
        "{count} faults, expected 2500 ± {:.0}",
        3.0 * sigma
    );
    // The same seed: exactly the same calls fail.
    let rerun = injected_indices(&mut run(2026), N).await;
    assert_eq!(first, rerun);
    // Another seed: a different set, still at the rate.
    let other = injected_indices(&mut run(7), N).await;
    assert_ne!(first, other);
    assert!((other.len() as f64 - 2_500.0).abs() <= 3.0 * sigma);
}

#[tokio::test]
async fn stats_count_each_fault_kind() {
    let layer = ChaosLayer::builder()
        .seed(1)
        .error_rate(0.2)
        .latency(0.3, Duration::ZERO)
        .substitute(0.1, || u64::MAX)
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer.clone()).service(echo());
    let (mut errors, mut substituted) = (0, 0);
    for i in 0..2_000 {
        match svc.ready().await.unwrap().call(i).await {
            Ok(u64::MAX) => substituted += 1,
            Ok(v) => assert_eq!(v, i),
            Err(_) => errors += 1,
        }
    }
    let stats = layer.stats();
    assert_eq!(stats.calls, 2_000);
    assert_eq!(stats.errors, errors);
    assert_eq!(stats.substitutions, substituted);
    for (got, rate) in [
        (stats.errors, 0.2),
        (stats.latencies, 0.3),
        (stats.substitutions, 0.1),
    ] {
        let expect = 2_000.0 * rate;
        let sigma: f64 = 2_000.0 * rate * (1.0 - rate);
        assert!(
            (got as f64 - expect).abs() <= 3.0 * sigma.sqrt(),
            "{got} vs {expect}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn latency_delays_by_exactly_the_configured_duration() {
    let layer = ChaosLayer::builder()
        .seed(3)
        .latency(1.0, Duration::from_millis(250))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(echo());
    let start = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(5).await.unwrap(), 5);
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    // Changed at run time.
    handle.set_latency(Duration::from_secs(2));
    let start = Instant::now();
    svc.ready().await.unwrap().call(6).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(handle.stats().latencies, 2);

    // Off: no delay at all.
    handle.disable();
    let start = Instant::now();
    svc.ready().await.unwrap().call(7).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn the_handle_switches_and_changes_rates_at_run_time() {
    let layer = ChaosLayer::off();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(echo());
    // Off: nothing injected, no calls counted.
    for i in 0..100 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    assert_eq!(handle.stats().calls, 0);

    handle.set_error_rate(1.0).unwrap();
    // Still off until enabled.
    svc.ready().await.unwrap().call(1).await.unwrap();
    handle.enable();
    for i in 0..10 {
        assert!(svc.ready().await.unwrap().call(i).await.is_err());
    }
    handle.set_error_rate(0.0).unwrap();
    for i in 0..10 {
        svc.ready().await.unwrap().call(i).await.unwrap();
    }
    handle.set_error_rate(1.0).unwrap();
    assert!(svc.ready().await.unwrap().call(0).await.is_err());
    handle.disable();
    svc.ready().await.unwrap().call(0).await.unwrap();
    // Calls at rate 0 draw no index: only the 11 active calls counted.
    let stats = handle.stats();
    assert_eq!((stats.calls, stats.errors), (11, 11));
}

#[tokio::test]
async fn set_seed_restarts_the_sequence() {
    let layer = ChaosLayer::errors(0.5, 11);
    let handle = layer.handle();
    let mut svc = tower::Layer::layer(&layer, echo());
    let first = injected_indices(&mut svc, 200).await;
    handle.set_seed(11);
    let again = injected_indices(&mut svc, 200).await;
    assert_eq!(first, again);
    assert_eq!(handle.seed(), 11);
}

#[test]
fn bad_config_names_the_field() {
    for (rate, field) in [
        (-0.1, "error_rate"),
        (1.5, "error_rate"),
        (f64::NAN, "error_rate"),
    ] {
        let err = ChaosLayer::builder().error_rate(rate).build().unwrap_err();
        assert_eq!(err.field(), field, "{rate}");
        assert_eq!(err.component(), "chaos");
    }
    let err = ChaosLayer::builder()
        .latency(2.0, Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "latency_rate");
    let err = ChaosLayer::builder()
        .error_rate(0.6)
        .latency(0.5, Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rates");
    let err = ChaosLayer::builder()
        .substitute(-1.0, || 0_u64)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "substitute_rate");

    let handle = ChaosLayer::off().handle();
    assert_eq!(
        handle.set_latency_rate(1.1).unwrap_err().field(),
        "latency_rate"
    );
    // No substituted response configured: a substitute rate is refused.
    assert_eq!(
        handle.set_substitute_rate(0.1).unwrap_err().field(),
        "substitute_rate"
    );
    let err = handle
        .set_rates(ChaosRates {
            error: 0.5,
            latency: 0.5,
            substitute: 0.0,
        })
        .map(|()| handle.set_error_rate(0.7));
    assert_eq!(err.unwrap().unwrap_err().field(), "rates");
    assert_eq!(handle.rates().error, 0.5);
}

#[tokio::test]
async fn injected_is_a_failure_not_a_rejection() {
    let mut svc = tower::Layer::layer(&ChaosLayer::errors(1.0, 0), echo());
    let err = svc.ready().await.unwrap().call(0).await.unwrap_err();
    let injected = *err.downcast_ref::<Injected>().unwrap();
    assert_eq!(injected.call_index(), 0);
    let boxed: Result<http::Response<()>, BoxError> = Err(err);
    assert_eq!(DefaultClassify.classify(&boxed), Outcome::Failure);
    assert_eq!(HttpClassify.classify(&boxed), Outcome::Failure);
    let bare: Result<(), Injected> = Err(injected);
    assert_eq!(DefaultClassify.classify(&bare), Outcome::Failure);
}

#[tokio::test]
async fn substituted_responses_replace_http_answers() {
    let layer = ChaosLayer::builder()
        .seed(5)
        .substitute(1.0, || {
            http::Response::builder()
                .status(503)
                .body(String::new())
                .unwrap()
        })
        .build()
        .unwrap();
    let reached = Arc::new(AtomicU64::new(0));
    let inner = service_fn({
        let reached = reached.clone();
        move |_: ()| {
            reached.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, BoxError>(http::Response::new("ok".to_string())) }
        }
    });
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    let res = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(reached.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_and_a_breaker_react_to_injected_errors() {
    let chaos = ChaosLayer::off();
    let handle = chaos.handle();
    chaos.handle().set_error_rate(1.0).unwrap();
    let breaker = CircuitBreakerLayer::consecutive(3, Duration::from_secs(10));
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(10)).jitter(Jitter::None))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(retry.clone())
        .layer(breaker.clone())
        .layer(chaos)
        .service(echo());
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);

    handle.enable();
    // Three attempts, each injected: the breaker counts all three and opens.
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(err.downcast_ref::<Injected>().is_some(), "{err}");
    assert_eq!(retry.stats().retries, 2);
    assert_eq!(breaker.handle().state(), State::Open);
    assert_eq!(handle.stats().errors, 3);

    // Off again: after the open duration the probe succeeds and it closes.
    handle.disable();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), 3);
    assert_eq!(breaker.handle().state(), State::Closed);
}

/// Under concurrency which request draws which index depends on timing,
/// but the set of faulty indices is the seed's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_get_the_same_set_of_faulty_indices() {
    async fn concurrent(seed: u64) -> Vec<u64> {
        let svc = run(seed);
        let mut tasks = Vec::new();
        for t in 0..4 {
            let mut svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let mut hit = Vec::new();
                for i in 0..500 {
                    if let Err(e) = svc.ready().await.unwrap().call(t * 1000 + i).await {
                        hit.push(e.downcast_ref::<Injected>().unwrap().call_index());
                    }
                }
                hit
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_unstable();
        all
    }
    let sequential = injected_indices(&mut run(99), 2_000).await;
    assert_eq!(concurrent(99).await, sequential);
}

/// A `ChaosLayer` wraps `fetch::HttpClient` directly: an injected fault is
/// a `FetchError::Transport` whose source is the `Injected` (the request
/// never left), which `HttpClassify` calls a failure; with injection off
/// the request goes through to the server.
#[tokio::test]
async fn chaos_wraps_the_http_client_and_injects_transport_errors() {
    use tower_patterns::fetch::{FetchError, HttpClient};
    use tower_patterns::upstream::{Upstream, UpstreamConfig};

    let upstream = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let chaos = ChaosLayer::errors(1.0, 7);
    let client = ServiceBuilder::new()
        .layer(chaos.clone())
        .service(HttpClient::new());
    let get = || tower_patterns::fetch::get(upstream.url("/users/1")).unwrap();

    let result = client.clone().oneshot(get()).await;
    let Err(FetchError::Transport { source, .. }) = &result else {
        panic!("expected an injected transport error, got {result:?}");
    };
    assert_eq!(
        source.downcast_ref::<Injected>().map(|i| i.call_index()),
        Some(0)
    );
    assert_eq!(HttpClassify.classify(&result), Outcome::Failure);
    assert_eq!(upstream.requests(), 0, "the request never left");

    chaos.handle().disable();
    let response = client.oneshot(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests(), 1);
}
