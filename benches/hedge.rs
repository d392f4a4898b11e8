//! Overhead of a hedge layer when nothing is hedged (the inner service
//! answers on the first poll), ours beside a bare call, retry's first
//! attempt and tower's own `Hedge`, in one run.
//!
//! Every variant wraps the same inner service (an always-ready
//! `service_fn` answering with `std::future::Ready`) and each iteration
//! does what a caller does: `poll_ready`, `call`, poll the response future
//! to completion. `bare` is the inner service alone; subtract it to get
//! each layer's overhead.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, Layer, Service};
use tower_patterns::hedge::{AnyRequest, HedgeLayer};
use tower_patterns::retry::{Backoff, RetryLayer};

/// One caller round trip: readiness, call, drive the future.
#[inline(always)]
fn round_trip<S>(svc: &mut S, req: u64) -> u64
where
    S: Service<u64, Response = u64>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("the inner service is always ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(v)) => v,
        _ => unreachable!("the inner service answers at once"),
    }
}

fn inner(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x.wrapping_add(1))))
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone)]
struct Every;

impl tower::hedge::Policy<u64> for Every {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        Some(*req)
    }

    fn can_retry(&self, _req: &u64) -> bool {
        true
    }
}

fn nothing_hedged(c: &mut Criterion) {
    // tower's Hedge arms a timer per call: give it a runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    let mut group = c.benchmark_group("hedge/nothing_hedged");

    let mut bare = inner();
    group.bench_function("bare service (no hedge)", |b| {
        b.iter(|| round_trip(&mut bare, black_box(1)))
    });

    let mut fixed = HedgeLayer::builder()
        .delay(Duration::from_millis(10))
        .eligible(AnyRequest)
        .build()
        .expect("valid config")
        .layer(inner());
    group.bench_function("tower-patterns Hedge (fixed delay)", |b| {
        b.iter(|| round_trip(&mut fixed, black_box(1)))
    });

    let mut learned = HedgeLayer::builder()
        .percentile(95.0)
        .eligible(AnyRequest)
        .build()
        .expect("valid config")
        .layer(inner());
    group.bench_function("tower-patterns Hedge (percentile)", |b| {
        b.iter(|| round_trip(&mut learned, black_box(1)))
    });

    let mut ineligible = HedgeLayer::builder()
        .eligible(|_: &u64| false)
        .build()
        .expect("valid config")
        .layer(inner());
    group.bench_function("tower-patterns Hedge (request not eligible)", |b| {
        b.iter(|| round_trip(&mut ineligible, black_box(1)))
    });

    let mut retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(100)))
        .build()
        .expect("valid config")
        .layer(inner());
    group.bench_function("tower-patterns Retry (first attempt)", |b| {
        b.iter(|| round_trip(&mut retry, black_box(1)))
    });

    let mut towers =
        tower::hedge::Hedge::new::<u64>(inner(), Every, 100, 0.95, Duration::from_secs(10));
    group.bench_function("tower::hedge::Hedge", |b| {
        b.iter(|| round_trip(&mut towers, black_box(1)))
    });

    group.finish();
}

criterion_group!(benches, nothing_hedged);
criterion_main!(benches);
