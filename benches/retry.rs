//! Overhead of a retry layer when the first attempt succeeds (the common
//! case), ours beside tower's own `Retry` and tower-resilience's, in one run.
//!
//! Every variant wraps the same inner service (an always-ready
//! `service_fn` answering with `std::future::Ready`) and each iteration
//! does what a caller does: `poll_ready`, `call`, poll the response future
//! to completion. `bare` is the inner service alone; subtract it to get
//! each layer's overhead.
//!
//! A second group measures the retry path: every request fails once and
//! is retried at once.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_patterns::retry::{Backoff, RetryBudget, RetryLayer};

/// One caller round trip: readiness, call, drive the future.
#[inline(always)]
fn round_trip<S>(svc: &mut S, req: u64) -> u64
where
    S: Service<u64, Response = u64, Error = Infallible>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("the inner service is always ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(v)) => v,
        _ => unreachable!("the first attempt succeeds at once"),
    }
}

fn inner(
) -> impl Service<u64, Response = u64, Error = Infallible, Future = Ready<Result<u64, Infallible>>> + Clone
{
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x.wrapping_add(1))))
}

/// The simplest useful tower policy: up to `0` more attempts on `Err`.
#[derive(Clone)]
struct Attempts(usize);

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.0 > 0 => {
                self.0 -= 1;
                Some(ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn first_attempt_succeeds(c: &mut Criterion) {
    // tower-resilience's boxed future may touch tokio; give it a context.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = rt.enter();

    let mut group = c.benchmark_group("retry/first_attempt_succeeds");

    let mut bare = inner();
    group.bench_function("bare service (no retry)", |b| {
        b.iter(|| round_trip(&mut bare, black_box(1)))
    });

    let mut ours = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(100)))
        .build()
        .expect("valid config")
        .layer(inner());
    group.bench_function("tower-patterns Retry", |b| {
        b.iter(|| round_trip(&mut ours, black_box(1)))
    });

    let mut ours_budget = RetryLayer::builder()
        .max_attempts(3)
        .budget(RetryBudget::default())
        .build()
        .expect("valid config")
        .layer(inner());
    group.bench_function("tower-patterns Retry + budget", |b| {
        b.iter(|| round_trip(&mut ours_budget, black_box(1)))
    });

    let mut towers = tower::retry::RetryLayer::new(Attempts(2)).layer(inner());
    group.bench_function("tower::retry::Retry", |b| {
        b.iter(|| round_trip(&mut towers, black_box(1)))
    });

    let mut resilience = tower_resilience::retry::RetryLayer::<u64, u64, Infallible>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_millis(100))
        .build()
        .layer(inner());
    group.bench_function("tower-resilience retry", |b| {
        b.iter(|| round_trip(&mut resilience, black_box(1)))
    });

    group.finish();
}

/// An inner service whose calls alternate: fail, succeed, fail, ...
fn fails_every_other_call(
) -> impl Service<u64, Response = u64, Error = &'static str, Future = Ready<Result<u64, &'static str>>>
       + Clone {
    let flip = Arc::new(AtomicBool::new(false));
    service_fn(move |x: u64| {
        let ok = flip.fetch_xor(true, Ordering::Relaxed);
        ready(if ok { Ok(x) } else { Err("transient") })
    })
}

/// One retry per request (zero backoff): the cost of the retry path
/// itself. Driven by `block_on` on a current-thread runtime (the
/// timers of tower-resilience need one), so absolute numbers include it.
fn one_retry(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("retry/one_retry_zero_backoff");

    let mut ours = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .expect("valid config")
        .layer(fails_every_other_call());
    group.bench_function("tower-patterns Retry", |b| {
        b.iter(|| rt.block_on(async { ours.ready().await?.call(black_box(1)).await }))
    });

    let mut towers = tower::retry::RetryLayer::new(Attempts(2)).layer(fails_every_other_call());
    group.bench_function("tower::retry::Retry", |b| {
        b.iter(|| rt.block_on(async { towers.ready().await?.call(black_box(1)).await }))
    });

    let mut resilience = tower_resilience::retry::RetryLayer::<u64, u64, &'static str>::builder()
        .max_attempts(3)
        .fixed_backoff(Duration::ZERO)
        .build()
        .layer(fails_every_other_call());
    group.bench_function("tower-resilience retry", |b| {
        b.iter(|| rt.block_on(async { resilience.ready().await?.call(black_box(1)).await }))
    });

    group.finish();
}

criterion_group!(benches, first_attempt_succeeds, one_retry);
criterion_main!(benches);
