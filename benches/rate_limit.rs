//! Rate limits: the per-call cost of an in-process check, ours beside
//! governor (GCRA, the best in-process limiter) and tower's `RateLimit`
//! (a fixed window), on one thread and on two threads sharing one quota;
//! and a keyed limit with 100,000 live keys (ours beside governor's keyed
//! limiter), with the memory the keys take.
//!
//! Every quota is far above what the loop can reach, so no call waits or
//! is refused: this is the cost of deciding. Each iteration is one call
//! (`poll_ready`, `call`, one poll of the future) with a no-op waker.
//! governor has no tower service, so it is measured as the few lines a
//! user writes around `check()`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{Quota, RateLimiter};
use tower::{Layer, Service};
use tower_patterns::rate_limit::RateLimitLayer;

/// Counts live heap bytes, to weigh the key tables.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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

/// governor around a service, as a user would write it.
#[derive(Clone)]
struct Governed {
    limiter: Arc<
        RateLimiter<
            governor::state::NotKeyed,
            governor::state::InMemoryState,
            governor::clock::DefaultClock,
        >,
    >,
}

impl Service<u64> for Governed {
    type Response = u64;
    type Error = &'static str;
    type Future = Ready<Result<u64, &'static str>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: u64) -> Self::Future {
        ready(match self.limiter.check() {
            Ok(()) => Ok(req),
            Err(_) => Err("rate limited"),
        })
    }
}

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
        other => panic!("call did not complete: {:?}", other.map(|r| r.err())),
    }
}

fn huge() -> NonZeroU32 {
    NonZeroU32::new(u32::MAX).unwrap()
}

fn ours() -> RateLimitLayer {
    RateLimitLayer::builder()
        .rate(u32::MAX, Duration::from_secs(1))
        .burst(u32::MAX)
        .build()
        .unwrap()
}

fn governed() -> Governed {
    Governed {
        limiter: Arc::new(RateLimiter::direct(
            Quota::per_second(huge()).allow_burst(huge()),
        )),
    }
}

/// `threads` threads share clones of one service, `iters` calls in all.
fn on_threads<S>(svc: &S, threads: u64, iters: u64) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let mut svc = svc.clone();
            let handle = rt.handle().clone();
            scope.spawn(move || {
                let _guard = handle.enter();
                let mut cx = Context::from_waker(Waker::noop());
                for i in 0..iters / threads {
                    black_box(one_call(&mut svc, &mut cx, i));
                }
            });
        }
    });
    start.elapsed()
}

fn check(c: &mut Criterion) {
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut g = c.benchmark_group("rate_limit/clock");
        // What one clock read costs here: our limiter reads tokio's clock
        // once per call (so tests can pause it); governor reads the TSC.
        g.bench_function("tokio Instant::now", |b| {
            b.iter(|| black_box(tokio::time::Instant::now()))
        });
        g.bench_function("std Instant::now", |b| {
            b.iter(|| black_box(std::time::Instant::now()))
        });
        g.finish();
    }
    for threads in [1u64, 2] {
        let mut g = c.benchmark_group(format!("rate_limit/check/{threads}_thread"));
        g.bench_function("no limiter", |b| {
            b.iter_custom(|iters| on_threads(&Echo, threads, iters))
        });
        let tower_rl = tower::limit::RateLimitLayer::new(u64::MAX, Duration::from_secs(1));
        if threads == 1 {
            // tower's RateLimit is not Clone (tower#794): one thread only.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let _guard = rt.enter();
            let mut svc = tower_rl.layer(Echo);
            let mut cx = Context::from_waker(Waker::noop());
            g.bench_function("tower RateLimit", |b| {
                let mut i = 0u64;
                b.iter(|| {
                    i += 1;
                    black_box(one_call(&mut svc, &mut cx, i))
                })
            });
        }
        g.bench_function("governor check", |b| {
            let svc = governed();
            b.iter_custom(|iters| on_threads(&svc, threads, iters))
        });
        g.bench_function("tower-patterns RateLimit", |b| {
            let svc = ours().layer(Echo);
            b.iter_custom(|iters| on_threads(&svc, threads, iters))
        });
        g.finish();
    }
}

const KEYS: u64 = 100_000;

fn keyed(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut g = c.benchmark_group("rate_limit/keyed_100k_keys");

    let before = LIVE.load(Ordering::Relaxed);
    // One call an hour per key, any burst: every key stays live (an idle
    // key would be forgotten), and no call is ever refused.
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(3600))
        .burst(u32::MAX)
        .key_fn(|n: &u64| *n % KEYS)
        .max_keys(KEYS as usize)
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo);
    for i in 0..KEYS {
        one_call(&mut svc, &mut cx, i);
    }
    let ours_bytes = LIVE.load(Ordering::Relaxed) - before;

    let before = LIVE.load(Ordering::Relaxed);
    let gov = RateLimiter::keyed(Quota::per_hour(NonZeroU32::MIN).allow_burst(huge()));
    for i in 0..KEYS {
        gov.check_key(&i).unwrap();
    }
    let gov_bytes = LIVE.load(Ordering::Relaxed) - before;
    eprintln!(
        "rate_limit/keyed_100k_keys memory: tower-patterns {:.1} B/key ({} keys), governor {:.1} B/key ({} keys)",
        ours_bytes as f64 / KEYS as f64,
        layer.stats().keys,
        gov_bytes as f64 / KEYS as f64,
        gov.len()
    );

    g.bench_function("governor check_key", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(gov.check_key(&(i % KEYS)).is_ok())
        })
    });
    g.bench_function("tower-patterns RateLimit keyed", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i = i.wrapping_add(7919);
            black_box(one_call(&mut svc, &mut cx, i))
        })
    });
    g.finish();
}

criterion_group!(benches, check, keyed);
criterion_main!(benches);
