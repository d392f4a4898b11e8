//! Circuit breakers side by side: ours, tower-resilience's and failsafe's,
//! on the closed path (a no-op inner service that always succeeds) and on
//! the open path (rejection), with 1 and 2 threads sharing one breaker.
//!
//! Each call goes through the `Service` trait (failsafe, which has no tower
//! layer, is wrapped in a minimal service) and is driven by hand:
//! `poll_ready`, `call`, poll the future with a no-op waker. So the numbers
//! are the breaker's own cost, not an executor's; "no breaker (harness)"
//! is the inner service alone. A future that is pending (tower-resilience's
//! async mutex under contention) is polled again at once. With 2 threads every thread has its own service clone (as
//! hyper or axum clone a service per connection) and the reported time is
//! wall time divided by the total number of calls: perfect scaling halves
//! it.
//!
//! Run: `cargo bench --all-features --bench circuit_breaker`

use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tower::{Layer, Service};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Window};

/// The inner service: answers at once, successfully or not.
#[derive(Clone, Copy)]
struct Noop {
    fail: bool,
}

impl Service<u32> for Noop {
    type Response = u32;
    type Error = std::io::Error;
    type Future = Ready<Result<u32, std::io::Error>>;
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    #[inline]
    fn call(&mut self, req: u32) -> Self::Future {
        ready(if self.fail {
            Err(std::io::Error::other("down"))
        } else {
            Ok(req)
        })
    }
}

/// The harness plus the one clock read an open breaker makes per call to
/// know whether its open period is over: what a rejection costs when the
/// breaker itself costs nothing more.
#[derive(Clone, Copy)]
struct ClockedNoop(Noop);

impl Service<u32> for ClockedNoop {
    type Response = u32;
    type Error = std::io::Error;
    type Future = Ready<Result<u32, std::io::Error>>;
    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }
    #[inline]
    fn call(&mut self, req: u32) -> Self::Future {
        black_box(tokio::time::Instant::now());
        self.0.call(req)
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

/// Runs `iters` calls of `one` split over `threads` threads (each with its
/// own clone of `state`) and returns the wall time.
fn run_threads<T, F>(
    state: &T,
    one: F,
    threads: usize,
    iters: u64,
    rt: &tokio::runtime::Runtime,
) -> Duration
where
    T: Clone + Send,
    F: Fn(&mut T, u32) + Sync,
{
    if threads == 1 {
        let _g = rt.enter();
        let mut state = state.clone();
        let start = Instant::now();
        for i in 0..iters {
            one(&mut state, black_box(i as u32));
        }
        return start.elapsed();
    }
    let barrier = Barrier::new(threads + 1);
    let per = iters / threads as u64;
    std::thread::scope(|s| {
        for _ in 0..threads {
            let mut state = state.clone();
            let (barrier, one) = (&barrier, &one);
            s.spawn(move || {
                let _g = rt.enter();
                barrier.wait();
                for i in 0..per {
                    one(&mut state, black_box(i as u32));
                }
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    })
}

/// failsafe has no tower layer: this wraps its breaker as a service, so
/// every breaker is measured through the same `Service` calls.
#[derive(Clone)]
struct Failsafe<B> {
    breaker: B,
    inner: Noop,
}

impl<B: failsafe::futures::CircuitBreaker> Service<u32> for Failsafe<B> {
    type Response = u32;
    type Error = failsafe::Error<std::io::Error>;
    type Future = failsafe::futures::ResponseFuture<
        Ready<Result<u32, std::io::Error>>,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;
    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
    #[inline]
    fn call(&mut self, req: u32) -> Self::Future {
        self.breaker.call(self.inner.call(req))
    }
}

fn failsafe_breaker() -> impl failsafe::futures::CircuitBreaker + Clone + Send + Sync {
    let policy = failsafe::failure_policy::consecutive_failures(
        5,
        failsafe::backoff::constant(Duration::from_secs(3600)),
    );
    failsafe::Config::new().failure_policy(policy).build()
}

fn ours_consecutive(fail: bool) -> impl Service<u32> + Clone + Send {
    CircuitBreakerLayer::consecutive(5, Duration::from_secs(3600)).layer(Noop { fail })
}

fn ours_count_window(fail: bool) -> impl Service<u32> + Clone + Send {
    CircuitBreakerLayer::builder()
        .sliding_window(Window::Count(100))
        .minimum_calls(10)
        .open_duration(Duration::from_secs(3600))
        .build()
        .unwrap()
        .layer(Noop { fail })
}

fn resilience(fail: bool) -> impl Service<u32> + Clone + Send {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .failure_rate_threshold(0.5)
        .sliding_window_size(100)
        .minimum_number_of_calls(10)
        .wait_duration_in_open(Duration::from_secs(3600))
        .build()
        .unwrap()
        .layer(Noop { fail })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    for (path, fail) in [("closed", false), ("open", true)] {
        for threads in [1usize, 2] {
            let mut g = c.benchmark_group(format!("circuit_breaker/{path}/{threads}_thread"));
            macro_rules! service {
                ($name:expr, $svc:expr) => {{
                    let mut svc = $svc;
                    if fail {
                        // Trip it: the inner service fails until the breaker opens.
                        let _g = rt.enter();
                        for i in 0..200 {
                            let _ = drive(&mut svc, i);
                        }
                    }
                    g.bench_function($name, |b| {
                        b.iter_custom(|iters| {
                            run_threads(
                                &svc,
                                |s, i| {
                                    let _ = black_box(drive(s, i));
                                },
                                threads,
                                iters,
                                &rt,
                            )
                        })
                    });
                }};
            }
            service!("tower-patterns (consecutive)", ours_consecutive(fail));
            service!("tower-patterns (count window 100)", ours_count_window(fail));
            if fail {
                // Held open by `force_open`: no deadline, so no clock read.
                let layer = CircuitBreakerLayer::consecutive(5, Duration::from_secs(3600));
                layer.handle().force_open();
                service!("tower-patterns (force_open)", layer.layer(Noop { fail }));
            }
            service!("tower-resilience", resilience(fail));

            service!(
                "failsafe",
                Failsafe {
                    breaker: failsafe_breaker(),
                    inner: Noop { fail }
                }
            );
            // The harness alone: the inner service with no breaker.
            service!("no breaker (harness)", Noop { fail });
            if fail {
                service!(
                    "no breaker (harness + one clock read)",
                    ClockedNoop(Noop { fail })
                );
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
