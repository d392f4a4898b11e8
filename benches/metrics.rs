//! What recording metrics costs each layer on its success path: the same
//! layer over a no-op service, driven by hand (`poll_ready`, `call`, poll
//! with a no-op waker, as `benches/circuit_breaker.rs` does), in three
//! settings:
//!
//! - `feature off`: built without the `metrics` feature (nothing of it is
//!   compiled in): `cargo bench --bench metrics`;
//! - `no recorder`: the feature on, no recorder installed (recording is a
//!   look at the current recorder and a no-op handle);
//! - `atomic recorder`: the feature on and a recorder whose handles are
//!   plain atomics (the cheapest real recorder: what is left is our cost,
//!   not an exporter's): `cargo bench --features metrics --bench metrics`.
//!
//! "bare service" is the no-op service alone. The metrics each layer
//! touches per successful call: retry 1 (first attempt), circuit breaker 1
//! (success), concurrency limit 2 (in flight when the permit is taken and
//! when it is given back), rate limit 1 (allowed), cache hit 1 (hit),
//! fallback 1 (calls), timeout 0 (only timeouts are counted).
//!
//! Run both builds, then compare the ids: `metrics/<layer>/feature off`
//! against `metrics/<layer>/no recorder` and `.../atomic recorder`.

use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use tower::{Layer, Service};
use tower_patterns::cache::CacheLayer;
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::deadline::TimeoutLayer;
use tower_patterns::fallback::FallbackLayer;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::rate_limit::RateLimitLayer;
use tower_patterns::retry::RetryLayer;
use tower_patterns::BoxError;

/// The inner service: answers at once.
#[derive(Clone, Copy)]
struct Noop;

impl Service<u32> for Noop {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    #[inline]
    fn call(&mut self, req: u32) -> Self::Future {
        ready(Ok(req))
    }
}

/// poll_ready, call, poll to completion, with a no-op waker.
#[inline]
fn drive<S: Service<u32>>(svc: &mut S, req: u32) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(r) = svc.poll_ready(&mut cx) {
            r?;
            break;
        }
    }
    let mut fut = pin!(svc.call(req));
    loop {
        if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
            return r;
        }
    }
}

fn bench<S>(g: &mut BenchmarkGroup<'_, WallTime>, layer: &str, setting: &str, mut svc: S)
where
    S: Service<u32>,
    S::Error: std::fmt::Debug,
{
    g.bench_function(format!("{layer}/{setting}"), |b| {
        b.iter(|| black_box(drive(&mut svc, black_box(7)).expect("success path")))
    });
}

/// Every layer, in one setting.
fn layers(g: &mut BenchmarkGroup<'_, WallTime>, setting: &str) {
    bench(g, "bare service", setting, Noop);
    bench(
        g,
        "retry",
        setting,
        RetryLayer::builder()
            .max_attempts(3)
            .build()
            .unwrap()
            .layer(Noop),
    );
    bench(
        g,
        "circuit breaker",
        setting,
        CircuitBreakerLayer::builder().build().unwrap().layer(Noop),
    );
    bench(
        g,
        "concurrency limit",
        setting,
        ConcurrencyLimitLayer::builder()
            .limit(64)
            .build()
            .unwrap()
            .layer(Noop),
    );
    bench(
        g,
        "rate limit",
        setting,
        RateLimitLayer::builder()
            .rate(u32::MAX, Duration::from_secs(1))
            .burst(u32::MAX)
            .build()
            .unwrap()
            .layer(Noop),
    );
    let mut cache = CacheLayer::builder()
        .key_fn(|k: &u32| *k)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap()
        .layer(Noop);
    // Load the key once: the benchmark measures hits.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tower::ServiceExt;
            cache.ready().await.unwrap().call(7).await.unwrap();
        });
    bench(g, "cache hit", setting, cache);
    bench(
        g,
        "fallback",
        setting,
        FallbackLayer::builder()
            .value(0_u32)
            .build()
            .unwrap()
            .layer(Noop),
    );
    bench(
        g,
        "timeout",
        setting,
        TimeoutLayer::new(Duration::from_secs(60)).layer(Noop),
    );
}

fn metrics(c: &mut Criterion) {
    // Timers (the timeout's sleep) need a runtime to be entered.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("metrics");
    if cfg!(feature = "metrics") {
        layers(&mut g, "no recorder");
        #[cfg(feature = "metrics")]
        {
            let recorder = atomic::AtomicRecorder::default();
            let _guard = ::metrics::set_default_local_recorder(&recorder);
            layers(&mut g, "atomic recorder");
        }
    } else {
        layers(&mut g, "feature off");
    }
    g.finish();
}

/// A recorder whose handles are plain atomics, shared per key.
#[cfg(feature = "metrics")]
mod atomic {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU64;
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    /// Sums what is recorded (a stand-in for a real histogram).
    #[derive(Default)]
    struct Sum(AtomicU64);

    impl HistogramFn for Sum {
        fn record(&self, value: f64) {
            self.0
                .fetch_add(value.to_bits() >> 40, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[derive(Default)]
    pub struct AtomicRecorder {
        atomics: Mutex<HashMap<Key, Arc<AtomicU64>>>,
        sums: Mutex<HashMap<Key, Arc<Sum>>>,
    }

    impl AtomicRecorder {
        fn atomic(&self, key: &Key) -> Arc<AtomicU64> {
            self.atomics
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .clone()
        }
    }

    impl Recorder for AtomicRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.atomic(key))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(self.atomic(key))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(
                self.sums
                    .lock()
                    .unwrap()
                    .entry(key.clone())
                    .or_default()
                    .clone(),
            )
        }
    }
}

criterion_group!(benches, metrics);
criterion_main!(benches);
