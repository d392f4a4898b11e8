//! Overhead of the fallback and chaos layers on calls that neither fall
//! back nor get a fault, beside a bare call, in one run.
//!
//! Every variant wraps the same inner service (an always-ready
//! `service_fn` answering with `std::future::Ready`) and each iteration
//! does what a caller does: `poll_ready`, `call`, poll the response future
//! to completion. `bare` is the inner service alone; subtract it to get
//! each layer's overhead.
//!
//! - `fallback_success`: a `FallbackLayer::value` whose layer is kept (the
//!   usual case: a server or client keeps the layer or clones the service);
//! - `fallback_success_lone_handle`: the only handle to its layer, which
//!   makes each future hold the layer's state (one reference count);
//! - `chaos_off`: a `ChaosLayer` switched off;
//! - `chaos_on_rate_0`: switched on with every rate 0;
//! - `chaos_active_no_fault`: switched on with a substitute rate of one in
//!   a million, so nearly every call draws an index and finds no fault.
//!
//! Two groups: `plain`, whose error type has no drop glue (as retry's
//! bench uses `Infallible`; chaos needs `From<Injected>`), and `boxed`,
//! with `BoxError`, where every layer pays for dropping a `Result` that
//! could hold a box.

use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{service_fn, BoxError, Layer, Service};
use tower_patterns::chaos::{ChaosLayer, Injected};
use tower_patterns::fallback::FallbackLayer;

/// An error type with no drop glue.
#[derive(Debug)]
pub struct Plain;

impl From<Injected> for Plain {
    fn from(_: Injected) -> Self {
        Plain
    }
}

/// One caller round trip: readiness, call, drive the future.
#[inline(always)]
fn round_trip<S, E>(svc: &mut S, req: u64) -> u64
where
    S: Service<u64, Response = u64, Error = E>,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        _ => unreachable!("the inner service is always ready"),
    }
    let fut = pin!(svc.call(req));
    match fut.poll(&mut cx) {
        Poll::Ready(Ok(v)) => v,
        _ => unreachable!("the call succeeds at once"),
    }
}

fn inner<E>() -> impl Service<u64, Response = u64, Error = E, Future = Ready<Result<u64, E>>> + Clone
{
    service_fn(|x: u64| ready(Ok::<_, E>(x.wrapping_add(1))))
}

fn variants<E>(c: &mut Criterion, name: &str)
where
    E: From<Injected> + Send + 'static,
{
    let mut group = c.benchmark_group(format!("fallback_chaos/{name}"));

    let mut bare = inner::<E>();
    group.bench_function("bare", |b| b.iter(|| round_trip(&mut bare, black_box(1))));

    let layer = FallbackLayer::value(0_u64);
    let mut svc = layer.layer(inner::<E>());
    group.bench_function("fallback_success", |b| {
        b.iter(|| round_trip(&mut svc, black_box(1)))
    });

    let mut lone = FallbackLayer::value(0_u64).layer(inner::<E>());
    group.bench_function("fallback_success_lone_handle", |b| {
        b.iter(|| round_trip(&mut lone, black_box(1)))
    });

    let off = ChaosLayer::off();
    let mut svc = off.layer(inner::<E>());
    group.bench_function("chaos_off", |b| {
        b.iter(|| round_trip(&mut svc, black_box(1)))
    });

    let zero = ChaosLayer::builder().seed(1).build().expect("valid");
    let mut svc = zero.layer(inner::<E>());
    group.bench_function("chaos_on_rate_0", |b| {
        b.iter(|| round_trip(&mut svc, black_box(1)))
    });

    let active = ChaosLayer::builder()
        .seed(1)
        .substitute(0.000_001, || 0_u64)
        .build()
        .expect("valid");
    let mut svc = active.layer(inner::<E>());
    group.bench_function("chaos_active_no_fault", |b| {
        b.iter(|| round_trip(&mut svc, black_box(1)))
    });

    group.finish();
}

fn success_path(c: &mut Criterion) {
    variants::<Plain>(c, "plain");
    variants::<BoxError>(c, "boxed");
}

criterion_group!(benches, success_path);
criterion_main!(benches);
