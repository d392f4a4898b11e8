//! Feature `metrics`: every layer and service records through the `metrics`
//! facade, each metric labelled with the instance's `.name(..)`, and what
//! is recorded is what `tower_patterns::metrics::TABLE` (and so the docs'
//! table) says.
//!
//! Each test installs its own recorder for its thread
//! (`metrics::set_default_local_recorder`) and runs on a current-thread
//! runtime, so spawned tasks (queue workers, cache loads) record into it too
//! and tests never see each other's values.
#![cfg(feature = "metrics")]

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::chaos::ChaosLayer;
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open};
use tower_patterns::deadline::{Elapsed, TimeoutLayer};
use tower_patterns::fallback::FallbackLayer;
use tower_patterns::fetch::{self, HttpClient};
use tower_patterns::hedge::{AnyRequest, HedgeLayer};
use tower_patterns::limit::{AdaptiveLimitLayer, ConcurrencyLimitLayer, Overloaded};
use tower_patterns::metrics::TABLE;
use tower_patterns::pool::{Manager, Pool};
use tower_patterns::queue::TaskQueue;
use tower_patterns::rate_limit::RateLimitLayer;
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
use tower_patterns::BoxError;

mod common;

use common::recorder::TestRecorder;

// ---------------------------------------------------------------------------
// Services to drive.

fn ok_service(
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    service_fn(|n: u32| async move { Ok::<_, BoxError>(n) })
}

fn failing(
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    service_fn(|_: u32| async move { Err::<u32, BoxError>("down".into()) })
}

/// Fails its first `n` calls, then succeeds.
fn fails_first(
    n: u32,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    let calls = Arc::new(AtomicU32::new(0));
    service_fn(move |x: u32| {
        let k = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if k < n {
                Err::<u32, BoxError>("flaky".into())
            } else {
                Ok(x)
            }
        }
    })
}

/// Sleeps `ms` (on tokio's clock), then answers.
fn slow(
    ms: u64,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static {
    service_fn(move |x: u32| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, BoxError>(x)
    })
}

struct Numbers(AtomicU32);

impl Manager for Numbers {
    type Resource = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed))
    }

    async fn recycle(&self, _: &mut u32) -> Result<(), std::io::Error> {
        Ok(())
    }
}

struct Broken;

impl Manager for Broken {
    type Resource = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Err(std::io::Error::other("no database"))
    }

    async fn recycle(&self, _: &mut u32) -> Result<(), std::io::Error> {
        Ok(())
    }
}

fn n(name: &'static str) -> (&'static str, &'static str) {
    ("name", name)
}

// ---------------------------------------------------------------------------

/// Every layer and service, driven through a breaker opening, a cache miss
/// and hit, a limit's rejection and the rest; then every value, and the
/// table: every metric recorded is in `TABLE` with its kind and labels,
/// and every metric of `TABLE` but the HTTP client's (its own test) and
/// the cache's remote tier's (`tests/metrics_backends.rs`) was recorded.
#[tokio::test(start_paused = true)]
async fn every_layer_records_what_the_table_says() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);

    // Retry: one failure then success; then a call that exhausts.
    let retry = RetryLayer::builder()
        .name("users-retry")
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::from_millis(10)).jitter(Jitter::None))
        .build()
        .unwrap();
    let mut svc = retry.layer(fails_first(1));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    let mut down = retry.layer(failing());
    assert!(down.ready().await.unwrap().call(1).await.is_err());
    let r = [n("users-retry")];
    assert_eq!(
        rec.counter(
            "tower_patterns.retry.attempts",
            &[r[0], ("attempt", "first")]
        ),
        2
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.retry.attempts",
            &[r[0], ("attempt", "retry")]
        ),
        2
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.retry.gave_up",
            &[r[0], ("reason", "exhausted")]
        ),
        1
    );

    // Circuit breaker: two failures open it; the next call is rejected.
    let breaker = CircuitBreakerLayer::builder()
        .name("users-api")
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let b = n("users-api");
    assert_eq!(
        rec.gauge(
            "tower_patterns.circuit_breaker.state",
            &[b, ("state", "closed")]
        ),
        Some(1.0)
    );
    let mut svc = breaker.layer(failing());
    for _ in 0..2 {
        let _ = svc.ready().await.unwrap().call(1).await;
    }
    let err = match svc.ready().await {
        Ok(s) => s.call(1).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(err.downcast_ref::<Open>().is_some(), "{err}");
    assert_eq!(
        rec.gauge(
            "tower_patterns.circuit_breaker.state",
            &[b, ("state", "open")]
        ),
        Some(1.0)
    );
    assert_eq!(
        rec.gauge(
            "tower_patterns.circuit_breaker.state",
            &[b, ("state", "closed")]
        ),
        Some(0.0)
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.circuit_breaker.transitions",
            &[b, ("to", "open")]
        ),
        1
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.circuit_breaker.calls",
            &[b, ("outcome", "failure")]
        ),
        2
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.circuit_breaker.calls",
            &[b, ("outcome", "rejected")]
        ),
        1
    );
    // The half-open probe succeeds: closed again.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let mut healed = breaker.layer(ok_service());
    healed.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        rec.counter(
            "tower_patterns.circuit_breaker.transitions",
            &[b, ("to", "half_open")]
        ),
        1
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.circuit_breaker.transitions",
            &[b, ("to", "closed")]
        ),
        1
    );
    assert_eq!(
        rec.gauge(
            "tower_patterns.circuit_breaker.state",
            &[b, ("state", "closed")]
        ),
        Some(1.0)
    );

    // Concurrency limit of 1, refusing when full: one call holds the permit.
    let limit = ConcurrencyLimitLayer::builder()
        .name("users-limit")
        .limit(1)
        .reject_when_full()
        .build()
        .unwrap();
    let l = n("users-limit");
    assert_eq!(rec.gauge("tower_patterns.limit.limit", &[l]), Some(1.0));
    let mut first = limit.layer(slow(100));
    let held = first.ready().await.unwrap().call(1);
    assert_eq!(rec.gauge("tower_patterns.limit.in_flight", &[l]), Some(1.0));
    let mut second = limit.layer(slow(100));
    let refused = match second.ready().await {
        Ok(s) => s.call(2).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(refused.downcast_ref::<Overloaded>().is_some(), "{refused}");
    assert_eq!(rec.counter("tower_patterns.limit.rejections", &[l]), 1);
    held.await.unwrap();
    assert_eq!(
        rec.gauge("tower_patterns.limit.in_flight", &[l]),
        Some(0.0),
        "given back"
    );
    // A limit that waits: the second caller waits for the first's permit.
    let waiting = ConcurrencyLimitLayer::builder()
        .name("waiting-limit")
        .limit(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let svc = waiting.layer(slow(100));
    let (a, b2) = tokio::join!(svc.clone().oneshot(1), svc.clone().oneshot(2));
    a.unwrap();
    b2.unwrap();
    let waited = rec.histogram("tower_patterns.limit.wait.duration", &[n("waiting-limit")]);
    assert_eq!(waited, vec![0.1], "one call waited 100 ms");
    // The adaptive limit reports its limit too.
    let adaptive = AdaptiveLimitLayer::builder()
        .name("adaptive")
        .initial_limit(20)
        .build()
        .unwrap();
    adaptive.layer(ok_service()).oneshot(1).await.unwrap();
    assert_eq!(
        rec.gauge("tower_patterns.limit.limit", &[n("adaptive")]),
        Some(20.0)
    );
    assert_eq!(
        rec.gauge("tower_patterns.limit.in_flight", &[n("adaptive")]),
        Some(0.0)
    );

    // Rate limit: 1 a second; the second call waits, the third is refused.
    let rate = RateLimitLayer::builder()
        .name("users-rate")
        .rate(1, Duration::from_secs(1))
        .max_wait(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut svc = rate.layer(ok_service());
    svc.ready().await.unwrap().call(1).await.unwrap();
    svc.ready().await.unwrap().call(2).await.unwrap();
    let strict = RateLimitLayer::builder()
        .name("users-rate")
        .rate(1, Duration::from_secs(1))
        .reject()
        .build()
        .unwrap();
    let mut svc = strict.layer(ok_service());
    svc.ready().await.unwrap().call(1).await.unwrap();
    assert!(svc.ready().await.unwrap().call(2).await.is_err());
    let rl = n("users-rate");
    assert_eq!(
        rec.counter(
            "tower_patterns.rate_limit.requests",
            &[rl, ("outcome", "allowed")]
        ),
        3
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.rate_limit.requests",
            &[rl, ("outcome", "limited")]
        ),
        1
    );
    assert_eq!(rec.counter("tower_patterns.rate_limit.waits", &[rl]), 1);

    // Hedge: the first attempt hangs, the hedge wins.
    let hedge = HedgeLayer::builder()
        .name("users-hedge")
        .delay(Duration::from_millis(50))
        .eligible(AnyRequest)
        .build()
        .unwrap();
    let calls = Arc::new(AtomicU32::new(0));
    let lumpy = service_fn({
        let calls = calls.clone();
        move |x: u32| {
            let k = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let ms = if k == 0 { 1_000 } else { 10 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Infallible>(x)
            }
        }
    });
    hedge.layer(lumpy).oneshot(1).await.unwrap();
    let h = n("users-hedge");
    assert_eq!(
        rec.counter("tower_patterns.hedge.requests", &[h, ("kind", "primary")]),
        1
    );
    assert_eq!(
        rec.counter("tower_patterns.hedge.requests", &[h, ("kind", "hedge")]),
        1
    );
    assert_eq!(rec.counter("tower_patterns.hedge.wins", &[h]), 1);

    // Fallback: a failing call is served by the fallback.
    let fallback = FallbackLayer::builder()
        .name("users-fallback")
        .value(0_u32)
        .build()
        .unwrap();
    let mut svc = fallback.layer(failing());
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 0);
    let f = n("users-fallback");
    assert_eq!(rec.counter("tower_patterns.fallback.calls", &[f]), 1);
    assert_eq!(
        rec.counter(
            "tower_patterns.fallback.fallbacks",
            &[f, ("result", "served")]
        ),
        1
    );

    // Deadline: a call slower than the timeout.
    let timeout = TimeoutLayer::builder()
        .name("users-timeout")
        .timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let err = timeout.layer(slow(100)).oneshot(1).await.unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().is_some());
    assert_eq!(
        rec.counter("tower_patterns.deadline.timeouts", &[n("users-timeout")]),
        1
    );

    // Chaos: every call fails.
    let chaos = ChaosLayer::builder()
        .name("users-chaos")
        .error_rate(1.0)
        .build()
        .unwrap();
    assert!(chaos.layer(ok_service()).oneshot(1).await.is_err());
    assert_eq!(
        rec.counter(
            "tower_patterns.chaos.injected",
            &[n("users-chaos"), ("fault", "error")]
        ),
        1
    );

    // Cache: a miss (loaded in 20 ms), then a hit.
    let cache = CacheLayer::builder()
        .name("users-cache")
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(cache).service(slow(20));
    svc.ready().await.unwrap().call(7).await.unwrap();
    svc.ready().await.unwrap().call(7).await.unwrap();
    let c = n("users-cache");
    assert_eq!(
        rec.counter("tower_patterns.cache.requests", &[c, ("result", "miss")]),
        1
    );
    assert_eq!(
        rec.counter("tower_patterns.cache.requests", &[c, ("result", "hit")]),
        1
    );
    assert_eq!(
        rec.histogram("tower_patterns.cache.load.duration", &[c]),
        vec![0.02]
    );
    assert_eq!(rec.counter("tower_patterns.cache.evictions", &[c]), 0);

    // Queue: three tasks of 10 ms on one worker.
    let queue = TaskQueue::builder()
        .name("jobs")
        .workers(1)
        .build(slow(10))
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..3 {
        handles.push(queue.submit_with_handle(i).await.unwrap());
    }
    for h in handles {
        h.await.unwrap();
    }
    let q = n("jobs");
    assert_eq!(
        rec.counter("tower_patterns.queue.tasks", &[q, ("outcome", "completed")]),
        3
    );
    assert_eq!(rec.gauge("tower_patterns.queue.depth", &[q]), Some(0.0));
    assert_eq!(rec.gauge("tower_patterns.queue.running", &[q]), Some(0.0));
    assert_eq!(
        rec.histogram("tower_patterns.queue.run.duration", &[q]),
        vec![0.01; 3]
    );
    let mut waits = rec.histogram("tower_patterns.queue.wait.duration", &[q]);
    waits.sort_by(f64::total_cmp);
    assert_eq!(
        waits,
        vec![0.0, 0.01, 0.02],
        "each task waits for the ones before it"
    );

    // Instant tasks never wait: they are recorded once, with their outcome,
    // and the gauges still come back to zero; also with a gauge read while
    // a task waits behind a slow one.
    let instant = TaskQueue::builder()
        .name("instant-jobs")
        .workers(1)
        .build(ok_service())
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..3 {
        handles.push(instant.submit_with_handle(i).await.unwrap());
    }
    let i = n("instant-jobs");
    assert_eq!(rec.gauge("tower_patterns.queue.depth", &[i]), Some(3.0));
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(
        rec.counter("tower_patterns.queue.tasks", &[i, ("outcome", "completed")]),
        3
    );
    assert_eq!(rec.gauge("tower_patterns.queue.depth", &[i]), Some(0.0));
    assert_eq!(rec.gauge("tower_patterns.queue.running", &[i]), Some(0.0));
    assert_eq!(
        rec.histogram("tower_patterns.queue.run.duration", &[i]),
        vec![0.0; 3]
    );
    assert_eq!(
        rec.histogram("tower_patterns.queue.wait.duration", &[i]),
        vec![0.0; 3]
    );

    // Pool: one acquire; a manager that cannot create.
    let pool = Pool::builder()
        .name("db")
        .max_size(2)
        .build(Numbers(AtomicU32::new(0)))
        .unwrap();
    {
        let _conn = pool.acquire().await.unwrap();
        assert_eq!(
            rec.gauge("tower_patterns.pool.in_use", &[n("db")]),
            Some(1.0)
        );
    }
    assert_eq!(rec.gauge("tower_patterns.pool.size", &[n("db")]), Some(1.0));
    assert_eq!(
        rec.gauge("tower_patterns.pool.in_use", &[n("db")]),
        Some(0.0)
    );
    assert_eq!(
        rec.histogram("tower_patterns.pool.acquire.duration", &[n("db")])
            .len(),
        1
    );
    let broken = Pool::builder().name("broken-db").build(Broken).unwrap();
    assert!(broken.acquire().await.is_err());
    assert_eq!(
        rec.counter("tower_patterns.pool.create_errors", &[n("broken-db")]),
        1
    );

    // The table: kinds and label keys of everything recorded, and nothing
    // of the table left unrecorded (the HTTP client has its own test).
    let registered = rec.registered();
    for (name, (kind, keys)) in &registered {
        let Some(m) = TABLE.iter().find(|m| m.name == name) else {
            panic!("{name} is recorded but not in the table");
        };
        assert_eq!(m.kind, *kind, "{name}");
        let want: BTreeSet<String> = m
            .labels
            .iter()
            .map(|l| l.split('=').next().unwrap().to_owned())
            .collect();
        assert_eq!(&want, keys, "{name}'s labels");
        assert_eq!(
            rec.described.lock().unwrap().get(name.as_str()),
            Some(&Some(m.unit)),
            "{name} is described with its unit"
        );
    }
    let missing: Vec<&str> = TABLE
        .iter()
        .map(|m| m.name)
        .filter(|name| !name.starts_with("http.client.") && !registered.contains_key(*name))
        // The remote tier's and PgQueue's: tests/metrics_backends.rs.
        .filter(|name| !name.starts_with("tower_patterns.cache.remote."))
        .collect();
    assert!(
        missing.is_empty(),
        "in the table, never recorded: {missing:?}"
    );
}

/// The HTTP client records OpenTelemetry's request duration, by status
/// class, and the body sizes it read.
#[tokio::test]
async fn http_client_records_duration_by_status_class_and_body_size() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let server = common::upstream(Default::default()).await;
    let client = HttpClient::builder().name("users-http").build().unwrap();
    let _: serde_json::Value = fetch::fetch_json(&client, server.url("/users/3"))
        .await
        .unwrap();
    let missing =
        fetch::fetch_json::<serde_json::Value, _, _>(&client, server.url("/users/999999")).await;
    assert!(missing.is_err());
    let h = n("users-http");
    assert_eq!(
        rec.histogram(
            "http.client.request.duration",
            &[h, ("status_class", "2xx")]
        )
        .len(),
        1
    );
    assert_eq!(
        rec.histogram(
            "http.client.request.duration",
            &[h, ("status_class", "4xx")]
        )
        .len(),
        1
    );
    let sizes = rec.histogram("http.client.response.body.size", &[h]);
    assert!(
        !sizes.is_empty() && sizes.iter().all(|s| *s > 0.0),
        "{sizes:?}"
    );
}

/// Layers built, and even used, before any recorder exists report into the
/// recorder installed later: nothing stays silent (the bug a library
/// whose handles were fixed at build time would have).
#[tokio::test(start_paused = true)]
async fn a_recorder_installed_after_the_layers_is_used() {
    let breaker = CircuitBreakerLayer::builder().name("late").build().unwrap();
    let cache = CacheLayer::builder().name("late").build().unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(breaker)
        .layer(cache)
        .service(ok_service());
    // Traffic before any recorder: recorded nowhere.
    svc.ready().await.unwrap().call(1).await.unwrap();

    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    svc.ready().await.unwrap().call(1).await.unwrap();
    svc.ready().await.unwrap().call(2).await.unwrap();
    let late = n("late");
    assert_eq!(
        rec.counter("tower_patterns.cache.requests", &[late, ("result", "hit")]),
        1
    );
    assert_eq!(
        rec.counter("tower_patterns.cache.requests", &[late, ("result", "miss")]),
        1
    );
    assert_eq!(
        rec.counter(
            "tower_patterns.circuit_breaker.calls",
            &[late, ("outcome", "success")]
        ),
        2
    );
    // The state gauge is set on registration, with no transition needed.
    assert_eq!(
        rec.gauge(
            "tower_patterns.circuit_breaker.state",
            &[late, ("state", "closed")]
        ),
        Some(1.0)
    );

    // And a second recorder after that one gets the next calls.
    drop(_guard);
    let again = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&again);
    svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(
        again.counter("tower_patterns.cache.requests", &[late, ("result", "hit")]),
        1
    );
    assert_eq!(
        rec.counter("tower_patterns.cache.requests", &[late, ("result", "hit")]),
        1
    );
}

/// Two instances of one layer are told apart by their names; unnamed ones
/// carry the module's name.
#[tokio::test(start_paused = true)]
async fn instances_are_told_apart_by_name() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let a = CircuitBreakerLayer::builder().name("a").build().unwrap();
    let b = CircuitBreakerLayer::builder().name("b").build().unwrap();
    let unnamed = CircuitBreakerLayer::builder().build().unwrap();
    a.layer(ok_service()).oneshot(1).await.unwrap();
    for _ in 0..2 {
        b.layer(ok_service()).oneshot(1).await.unwrap();
    }
    unnamed.layer(failing()).oneshot(1).await.unwrap_err();
    let calls = "tower_patterns.circuit_breaker.calls";
    assert_eq!(rec.counter(calls, &[n("a"), ("outcome", "success")]), 1);
    assert_eq!(rec.counter(calls, &[n("b"), ("outcome", "success")]), 2);
    assert_eq!(
        rec.counter(calls, &[n("circuit_breaker"), ("outcome", "failure")]),
        1
    );
}
