//! Acquire + release cycles per second: 32 tasks sharing a pool of 16
//! resources on a Tokio runtime with 1 and 2 worker threads, our `Pool`
//! beside deadpool's managed pool in the same run.
//!
//! Each task holds its resource across a `yield_now`, so half the tasks
//! wait in line at any moment: the benchmark covers the waiter hand-off,
//! not only the idle-stack fast path. Our pool runs with its defaults
//! (acquire timeout 30 s, lifetimes on); deadpool with its defaults (no
//! timeouts). Run: `cargo bench --all-features --bench pool`.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "support/pool_managers.rs"]
mod pool_managers;

use pool_managers::{Ours, Theirs};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const POOL_SIZE: usize = 16;
const TASKS: u64 = 32;

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `iters` cycles split over `TASKS` tasks; returns the wall time.
async fn run<F, Fut>(iters: u64, cycle: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(TASKS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let cycle = cycle.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    cycle().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool/acquire_release_32_tasks_pool_16");
    group.throughput(Throughput::Elements(1));
    for threads in [1, 2] {
        let rt = runtime(threads);

        let ours = rt.block_on(async {
            let pool = tower_patterns::pool::Pool::builder()
                .max_size(POOL_SIZE)
                .build(Ours)
                .unwrap();
            // Warm: all resources created before timing.
            let all: Vec<_> =
                futures::future::join_all((0..POOL_SIZE).map(|_| pool.acquire())).await;
            drop(all);
            pool
        });
        group.bench_function(format!("tower-patterns/{threads}-thread"), |b| {
            b.iter_custom(|iters| {
                let pool = ours.clone();
                rt.block_on(run(iters, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.acquire().await.unwrap();
                        black_box(*conn);
                        tokio::task::yield_now().await;
                        drop(conn);
                    }
                }))
            })
        });

        let theirs = rt.block_on(async {
            let pool = deadpool::managed::Pool::<Theirs>::builder(Theirs)
                .max_size(POOL_SIZE)
                .build()
                .unwrap();
            let all: Vec<_> = futures::future::join_all((0..POOL_SIZE).map(|_| pool.get())).await;
            drop(all);
            pool
        });
        group.bench_function(format!("deadpool/{threads}-thread"), |b| {
            b.iter_custom(|iters| {
                let pool = theirs.clone();
                rt.block_on(run(iters, move || {
                    let pool = pool.clone();
                    async move {
                        let conn = pool.get().await.unwrap();
                        black_box(*conn);
                        tokio::task::yield_now().await;
                        drop(conn);
                    }
                }))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
