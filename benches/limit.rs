//! Fixed and adaptive concurrency limits: the per-call overhead of each
//! limiter on an always-ready service, ours beside tower's `ConcurrencyLimit`
//! and tower-resilience's bulkhead / adaptive limiter, in one run.
//!
//! Each iteration is one uncontended call: `poll_ready` (takes the permit),
//! `call`, and one poll of the response future (releases it), driven with a
//! no-op waker so runtime scheduling is not measured.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service};
use tower_patterns::limit::{AdaptiveLimitLayer, ConcurrencyLimitLayer};

/// The cheapest possible inner service.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(Ok(req))
    }
}

/// One call, start to finish; panics if the limiter ever makes it wait.
#[inline]
fn one_call<S>(svc: &mut S, cx: &mut Context<'_>, req: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    match svc.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("limiter not ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(cx) {
        Poll::Ready(Ok(res)) => res,
        _ => panic!("call did not complete"),
    }
}

fn bench_one<S>(c: &mut Criterion, group: &str, name: &str, mut svc: S)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group(group);
    group.bench_function(name, |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(one_call(&mut svc, &mut cx, black_box(i)))
        })
    });
    group.finish();
}

fn fixed(c: &mut Criterion) {
    // The time source must exist for the limiters that read the clock.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let group = "limit/fixed (uncontended call)";

    bench_one(c, group, "no limiter", Echo);
    bench_one(
        c,
        group,
        "tower ConcurrencyLimit",
        tower::limit::ConcurrencyLimit::new(Echo, 10),
    );
    bench_one(
        c,
        group,
        "ours ConcurrencyLimit",
        ConcurrencyLimitLayer::new(10).layer(Echo),
    );
    bench_one(
        c,
        group,
        "ours ConcurrencyLimit max_wait",
        ConcurrencyLimitLayer::new(10)
            .max_wait(Duration::from_millis(50))
            .layer(Echo),
    );
    let bulkhead = tower_resilience::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(10)
        .backpressure()
        .build()
        .unwrap();
    bench_one(
        c,
        group,
        "tower-resilience Bulkhead (backpressure)",
        bulkhead.layer(Echo),
    );
}

fn adaptive(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let group = "limit/adaptive (uncontended call)";

    bench_one(
        c,
        group,
        "ours Gradient2",
        AdaptiveLimitLayer::gradient().layer(Echo),
    );
    bench_one(
        c,
        group,
        "ours AIMD",
        AdaptiveLimitLayer::aimd().layer(Echo),
    );
    let aimd = tower_resilience::adaptive::Aimd::builder()
        .initial_limit(20)
        .min_limit(1)
        .max_limit(200)
        .build()
        .unwrap();
    bench_one(
        c,
        group,
        "tower-resilience AdaptiveLimiter (AIMD)",
        tower_resilience::adaptive::AdaptiveLimiterLayer::new(aimd).layer(Echo),
    );
}

criterion_group!(benches, fixed, adaptive);
criterion_main!(benches);
