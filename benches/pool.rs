//! Acquire + release cycles per second: 32 tasks sharing a pool of 16
//! resources on a Tokio runtime with 1 and 2 worker threads, our `Pool`
//! beside deadpool's managed pool in the same run.
//!
//! Each task holds its resource across a `yield_now`, so half the tasks
//! wait in line at any moment: the benchmark covers the waiter hand-off,
//! not only the idle-stack fast path. Our pool runs with its defaults
//! (acquire timeout 30 s, lifetimes on); deadpool with its defaults (no
//! timeouts). Run: `cargo bench --all-features --bench pool`.
//!
//! With two worker threads the cycle runs in one of two phases (about
//! 0.5 or about 1.5 us) that last seconds and come from the machine, and
//! criterion measures one pool after the other. After criterion's runs,
//! a paired section gives each short sample a fresh 2-thread runtime and
//! pool and alternates the two pools, then prints each one's median, how
//! many of its samples were slow, and the median of the pairs' ratios.

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

type OurPool = tower_patterns::pool::Pool<Ours>;
type TheirPool = deadpool::managed::Pool<Theirs>;

/// Our pool with its defaults, every resource created before timing.
fn our_pool(rt: &tokio::runtime::Runtime) -> OurPool {
    rt.block_on(async {
        let pool = OurPool::builder().max_size(POOL_SIZE).build(Ours).unwrap();
        drop(futures::future::join_all((0..POOL_SIZE).map(|_| pool.acquire())).await);
        pool
    })
}

/// Deadpool with its defaults, every resource created before timing.
fn their_pool(rt: &tokio::runtime::Runtime) -> TheirPool {
    rt.block_on(async {
        let pool = TheirPool::builder(Theirs)
            .max_size(POOL_SIZE)
            .build()
            .unwrap();
        drop(futures::future::join_all((0..POOL_SIZE).map(|_| pool.get())).await);
        pool
    })
}

/// `iters` cycles on our pool: acquire, hold across a `yield_now`, release.
fn cycle_ours(rt: &tokio::runtime::Runtime, pool: &OurPool, iters: u64) -> Duration {
    let pool = pool.clone();
    rt.block_on(run(iters, move || {
        let pool = pool.clone();
        async move {
            let conn = pool.acquire().await.unwrap();
            black_box(*conn);
            tokio::task::yield_now().await;
            drop(conn);
        }
    }))
}

/// The same cycles on deadpool.
fn cycle_theirs(rt: &tokio::runtime::Runtime, pool: &TheirPool, iters: u64) -> Duration {
    let pool = pool.clone();
    rt.block_on(run(iters, move || {
        let pool = pool.clone();
        async move {
            let conn = pool.get().await.unwrap();
            black_box(*conn);
            tokio::task::yield_now().await;
            drop(conn);
        }
    }))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool/acquire_release_32_tasks_pool_16");
    group.throughput(Throughput::Elements(1));
    for threads in [1, 2] {
        let rt = runtime(threads);
        let ours = our_pool(&rt);
        group.bench_function(format!("tower-patterns/{threads}-thread"), |b| {
            b.iter_custom(|iters| cycle_ours(&rt, &ours, iters))
        });
        let theirs = their_pool(&rt);
        group.bench_function(format!("deadpool/{threads}-thread"), |b| {
            b.iter_custom(|iters| cycle_theirs(&rt, &theirs, iters))
        });
    }
    group.finish();
}

/// One sample of `CYCLES` cycles on a fresh 2-thread runtime and pool:
/// ours if `ours`, else deadpool. Returns the time per cycle.
fn fresh_sample(ours: bool) -> Duration {
    const CYCLES: u64 = 20_000;
    let rt = runtime(2);
    let took = if ours {
        cycle_ours(&rt, &our_pool(&rt), CYCLES)
    } else {
        cycle_theirs(&rt, &their_pool(&rt), CYCLES)
    };
    took / CYCLES as u32
}

/// Alternating fresh 2-thread samples of both pools (see the module docs).
/// The ratio printed is the median of each adjacent pair's ratio, which
/// the phases sway less than a ratio of the two medians.
fn paired() {
    const SAMPLES: usize = 100;
    const SLOW: Duration = Duration::from_nanos(900);
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..SAMPLES {
        let first = i % 2 == 0;
        let a = fresh_sample(first);
        let b = fresh_sample(!first);
        let (o, t) = if first { (a, b) } else { (b, a) };
        ours.push(o);
        theirs.push(t);
        ratios.push(o.as_secs_f64() / t.as_secs_f64());
    }
    ours.sort();
    theirs.sort();
    ratios.sort_by(f64::total_cmp);
    let slow = |v: &[Duration]| v.iter().filter(|&&d| d > SLOW).count();
    println!(
        "pool paired (2 threads, fresh runtime per sample, {SAMPLES} pairs): ours median {:?} ({} slow), deadpool median {:?} ({} slow); ours / deadpool per pair: median {:.2}, middle half {:.2} - {:.2}",
        ours[SAMPLES / 2],
        slow(&ours),
        theirs[SAMPLES / 2],
        slow(&theirs),
        ratios[SAMPLES / 2],
        ratios[SAMPLES / 4],
        ratios[3 * SAMPLES / 4],
    );
}

fn all(c: &mut Criterion) {
    bench(c);
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        paired();
    }
}

criterion_group!(benches, all);
criterion_main!(benches);
