//! How cost grows with the work (issue 21), peers beside ours where the
//! peer has the same knob:
//!
//! - `growth/cache_hit/*/N`: a hit with N live entries (1k to 1M), keys
//!   visited in a scattered order so the working set is the whole cache;
//!   beside moka (look-aside `get`).
//! - `growth/cache_miss/*/N`: a miss at N live entries with the cache full,
//!   so every miss also inserts and evicts; beside moka (`get` + `insert`).
//! - `growth/limit/*/T tasks`, `growth/breaker/*/T tasks`: one call through
//!   a concurrency limit / closed breaker shared by T tasks on 2 worker
//!   threads; beside tower's `ConcurrencyLimit` / tower-resilience's breaker.
//! - `growth/queue/*/W workers`: 1,000 no-op tasks submitted and awaited
//!   through W workers; beside W tokio mpsc consumers fed round-robin,
//!   each replying on a oneshot (the floor with the same number of workers).
//! - `growth/pool/*/size N`: acquire + release by 2N tasks over a pool of N;
//!   beside deadpool.
//!
//! Run: `cargo bench --all-features --bench growth`, or through
//! `scripts/bench.py --bench growth` for BENCHMARKS.md's tables.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[path = "support/pool_managers.rs"]
mod pool_managers;

use pool_managers::{Ours, Theirs};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::sync::{mpsc, oneshot};
use tower::{Layer, Service, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::queue::TaskQueue;

const ENTRIES: [u64; 4] = [1_000, 10_000, 100_000, 1_000_000];
const TASKS: [usize; 3] = [1, 2, 8];

/// A service answering at once.
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

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// The i-th key of a walk that visits every key below `n` once per `n`
/// steps, in a scattered order (a stride coprime with `n`).
fn scattered(i: u64, n: u64) -> u64 {
    (i.wrapping_mul(7_919_993)) % n
}

// ---- cache ----------------------------------------------------------------

/// Echo behind our cache, keyed by the request, holding `entries` at most.
fn cached(entries: u64) -> impl Service<u64, Response = u64, Error = tower::BoxError> + Send {
    CacheLayer::builder()
        .key_fn(|k: &u64| *k)
        .ttl(Duration::from_secs(3600))
        .max_entries(entries as usize)
        .build()
        .unwrap()
        .layer(Echo)
}

fn cache_hit(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("growth/cache_hit");
    g.throughput(Throughput::Elements(1));
    for n in ENTRIES {
        // Room for every key, so all N stay live.
        let mut ours = cached(n + n / 4);
        rt.block_on(async {
            for k in 0..n {
                ours.ready().await.unwrap().call(k).await.unwrap();
            }
        });
        let mut cx = Context::from_waker(Waker::noop());
        let mut i = 0u64;
        g.bench_function(BenchmarkId::new("tower-patterns", n), |b| {
            b.iter(|| {
                i += 1;
                let key = scattered(i, n);
                assert!(ours.poll_ready(&mut cx).is_ready());
                match pin!(ours.call(black_box(key))).poll(&mut cx) {
                    Poll::Ready(r) => black_box(r.unwrap()),
                    Poll::Pending => panic!("not a hit"),
                }
            })
        });
        drop(ours);

        let moka = moka::sync::Cache::<u64, u64>::builder()
            .max_capacity(n + n / 4)
            .time_to_live(Duration::from_secs(3600))
            .build();
        for k in 0..n {
            moka.insert(k, k);
        }
        moka.run_pending_tasks();
        g.bench_function(BenchmarkId::new("moka", n), |b| {
            b.iter(|| {
                i += 1;
                black_box(moka.get(&scattered(i, n)).expect("a hit"))
            })
        });
    }
    g.finish();
}

fn cache_miss(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("growth/cache_miss");
    g.throughput(Throughput::Elements(1));
    for n in ENTRIES {
        // Full: every miss inserts one entry and evicts one.
        let mut ours = cached(n);
        rt.block_on(async {
            for k in 0..n {
                ours.ready().await.unwrap().call(k).await.unwrap();
            }
        });
        let mut next = n;
        g.bench_function(BenchmarkId::new("tower-patterns", n), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        next += 1;
                        let svc = ours.ready().await.unwrap();
                        black_box(svc.call(next).await.unwrap());
                    }
                    start.elapsed()
                })
            })
        });
        drop(ours);

        let moka = moka::sync::Cache::<u64, u64>::builder()
            .max_capacity(n)
            .time_to_live(Duration::from_secs(3600))
            .build();
        for k in 0..n {
            moka.insert(k, k);
        }
        moka.run_pending_tasks();
        let mut next = n;
        g.bench_function(BenchmarkId::new("moka", n), |b| {
            b.iter(|| {
                next += 1;
                let key = black_box(next);
                if moka.get(&key).is_none() {
                    moka.insert(key, key);
                }
            })
        });
    }
    g.finish();
}

// ---- limit and breaker: shared by T tasks -----------------------------------

/// `iters` calls split over `tasks` tasks on `rt`, each through its own
/// clone of `svc`; returns the wall time.
fn spread<S>(rt: &tokio::runtime::Runtime, tasks: usize, iters: u64, svc: &S) -> Duration
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    let per = iters.div_ceil(tasks as u64);
    rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        black_box(svc.ready().await.unwrap().call(i).await.unwrap());
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        start.elapsed()
    })
}

fn limit_and_breaker(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("growth/limit");
    g.throughput(Throughput::Elements(1));
    for t in TASKS {
        let ours = ConcurrencyLimitLayer::new(64).layer(Echo);
        g.bench_function(
            BenchmarkId::new("tower-patterns", format!("{t} tasks")),
            |b| b.iter_custom(|iters| spread(&rt, t, iters, &ours)),
        );
        let tower = tower::limit::ConcurrencyLimit::new(Echo, 64);
        g.bench_function(BenchmarkId::new("tower", format!("{t} tasks")), |b| {
            b.iter_custom(|iters| spread(&rt, t, iters, &tower))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("growth/breaker");
    g.throughput(Throughput::Elements(1));
    for t in TASKS {
        let ours = CircuitBreakerLayer::consecutive(5, Duration::from_secs(3600)).layer(Echo);
        g.bench_function(
            BenchmarkId::new("tower-patterns", format!("{t} tasks")),
            |b| b.iter_custom(|iters| spread(&rt, t, iters, &ours)),
        );
        let theirs = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .failure_rate_threshold(0.5)
            .sliding_window_size(100)
            .minimum_number_of_calls(10)
            .wait_duration_in_open(Duration::from_secs(3600))
            .build()
            .unwrap()
            .layer(Echo);
        g.bench_function(
            BenchmarkId::new("tower-resilience", format!("{t} tasks")),
            |b| b.iter_custom(|iters| spread(&rt, t, iters, &theirs)),
        );
    }
    g.finish();
}

// ---- queue: W workers -------------------------------------------------------

const BATCH: u64 = 1_000;

fn queue(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("growth/queue");
    g.throughput(Throughput::Elements(BATCH));
    for w in [1usize, 4, 16] {
        let q = rt.block_on(async {
            TaskQueue::builder()
                .workers(w)
                .capacity(BATCH as usize)
                .build(Echo)
                .unwrap()
        });
        g.bench_function(
            BenchmarkId::new("tower-patterns", format!("{w} workers")),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let mut handles = Vec::with_capacity(BATCH as usize);
                    for n in 0..BATCH {
                        handles.push(q.submit_with_handle(n).await.unwrap());
                    }
                    for h in handles {
                        black_box(h.await.unwrap());
                    }
                })
            },
        );

        // The floor with W workers: W consumers, fed round-robin.
        let senders: Vec<_> = rt.block_on(async {
            (0..w)
                .map(|_| {
                    let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(BATCH as usize);
                    tokio::spawn(async move {
                        while let Some((n, reply)) = rx.recv().await {
                            let _ = reply.send(Echo.call(n).await.unwrap());
                        }
                    });
                    tx
                })
                .collect()
        });
        g.bench_function(
            BenchmarkId::new("tokio mpsc + oneshot", format!("{w} workers")),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let mut replies = Vec::with_capacity(BATCH as usize);
                    for n in 0..BATCH {
                        let (reply, rx) = oneshot::channel();
                        senders[n as usize % w].send((n, reply)).await.unwrap();
                        replies.push(rx);
                    }
                    for rx in replies {
                        black_box(rx.await.unwrap());
                    }
                })
            },
        );
    }
    g.finish();
}

// ---- pool: N resources, 2N tasks ----------------------------------------------

/// `iters` acquire/release cycles over `tasks` tasks; returns the wall time.
async fn cycles<F, Fut>(tasks: usize, iters: u64, cycle: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per = iters.div_ceil(tasks as u64);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    cycle().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed()
}

fn pool(c: &mut Criterion) {
    let rt = runtime(2);
    let mut g = c.benchmark_group("growth/pool");
    g.throughput(Throughput::Elements(1));
    for size in [4usize, 16, 64] {
        let tasks = 2 * size;
        let ours = rt.block_on(async {
            let pool = tower_patterns::pool::Pool::builder()
                .max_size(size)
                .build(Ours)
                .unwrap();
            drop(futures::future::join_all((0..size).map(|_| pool.acquire())).await);
            pool
        });
        g.bench_function(
            BenchmarkId::new("tower-patterns", format!("size {size}")),
            |b| {
                b.iter_custom(|iters| {
                    let pool = ours.clone();
                    rt.block_on(cycles(tasks, iters, move || {
                        let pool = pool.clone();
                        async move {
                            let conn = pool.acquire().await.unwrap();
                            black_box(*conn);
                            tokio::task::yield_now().await;
                        }
                    }))
                })
            },
        );
        let theirs = rt.block_on(async {
            let pool = deadpool::managed::Pool::<Theirs>::builder(Theirs)
                .max_size(size)
                .build()
                .unwrap();
            drop(futures::future::join_all((0..size).map(|_| pool.get())).await);
            pool
        });
        g.bench_function(BenchmarkId::new("deadpool", format!("size {size}")), |b| {
            b.iter_custom(|iters| {
                let pool = theirs.clone();
                rt.block_on(cycles(tasks, iters, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get().await.unwrap();
                        black_box(*conn);
                        tokio::task::yield_now().await;
                    }
                }))
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    cache_hit,
    cache_miss,
    limit_and_breaker,
    queue,
    pool
);
criterion_main!(benches);
