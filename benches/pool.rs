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
//! The machine this runs on has phases: the same cycle takes about 0.3,
//! 0.5 or 1.5 us for a second or more at a time, at one thread and at two.
//! Criterion measures one pool for its whole measurement time and then the
//! other, and its slope weighs the last, longest samples most, so its
//! ratio of the two is often the ratio of two phases. After criterion's
//! runs, an interleaved section measures the comparison instead: 100 pairs
//! of short samples (20,000 cycles), each on a fresh runtime and pool, the
//! two pools alternated, so both see the same phases. It prints each
//! pool's mean and median, how many of its samples were slow and the
//! median of the pairs' ratios, and writes each pool's mean and median to
//! `<target>/interleaved/`, where `scripts/bench.py` collects them as
//! the rows `pool/interleaved/...`. Last it prints the machine's
//! cross-core round trip (one cache line passed between two threads) over
//! a second, which shows the phases: about 70-110 ns in the fast ones and
//! about 500 ns in the slow ones on the 2-core VM these figures come from.

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "support/interleaved.rs"]
mod interleaved;
#[path = "support/pool_managers.rs"]
mod pool_managers;

use interleaved::Figures;

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

/// One sample of `CYCLES` cycles on a fresh runtime with `threads` workers
/// and a fresh pool: ours if `ours`, else deadpool. Returns the time per
/// cycle.
fn fresh_sample(threads: usize, ours: bool) -> Duration {
    const CYCLES: u64 = 20_000;
    let rt = runtime(threads);
    let took = if ours {
        cycle_ours(&rt, &our_pool(&rt), CYCLES)
    } else {
        cycle_theirs(&rt, &their_pool(&rt), CYCLES)
    };
    took.div_f64(CYCLES as f64)
}

/// Alternating fresh samples of both pools on `threads` worker threads
/// (see the module docs). Prints each pool's mean and median, its slow
/// samples and the median of the pairs' ratios, and writes both pools'
/// figures where `scripts/bench.py` collects them.
fn interleaved(threads: usize) {
    const PAIRS: usize = 100;
    const SLOW: Duration = Duration::from_nanos(900);
    let mut samples = interleaved::rounds(
        PAIRS,
        &mut [&mut || fresh_sample(threads, true), &mut || {
            fresh_sample(threads, false)
        }],
    );
    let (t, o) = (samples.pop().unwrap(), samples.pop().unwrap());
    let (ratio, low, high) = interleaved::paired_ratio(&o, &t);
    let (o, t) = (Figures::of(o), Figures::of(t));
    println!(
        "pool interleaved ({threads} thread(s), fresh runtime per sample, {PAIRS} pairs): \
         ours mean {:?}, median {:?} ({} slow), deadpool mean {:?}, median {:?} ({} slow); \
         ours / deadpool: means {:.2}, per pair median {ratio:.2}, middle half {low:.2} - {high:.2}",
        o.mean,
        o.median,
        o.slower(SLOW),
        t.mean,
        t.median,
        t.slower(SLOW),
        o.mean.as_secs_f64() / t.mean.as_secs_f64(),
    );
    o.write(
        &format!("pool/interleaved/tower-patterns/{threads}-thread"),
        1,
        1,
    );
    t.write(&format!("pool/interleaved/deadpool/{threads}-thread"), 1, 1);
}

/// The machine's phases, seen directly: the round trip of one cache line
/// between two threads (one writes, the other answers, spinning), in 20
/// windows of 50 ms. Printed as the lowest, median and highest window.
fn cross_core_round_trip() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    #[repr(align(128))]
    struct Line(AtomicU64);
    let (line, stop) = (Line(AtomicU64::new(0)), AtomicBool::new(false));
    let mut windows: Vec<f64> = std::thread::scope(|s| {
        s.spawn(|| {
            // Answers every odd value with the next even one.
            while !stop.load(Ordering::Relaxed) {
                let v = line.0.load(Ordering::Acquire);
                if v % 2 == 1 {
                    line.0.store(v + 1, Ordering::Release);
                }
            }
        });
        let windows = (0..20)
            .map(|_| {
                let (start, mut trips) = (Instant::now(), 0u32);
                while start.elapsed() < Duration::from_millis(50) {
                    for _ in 0..100 {
                        let v = line.0.load(Ordering::Relaxed);
                        line.0.store(v + 1, Ordering::Release);
                        while line.0.load(Ordering::Acquire) == v + 1 {
                            std::hint::spin_loop();
                        }
                    }
                    trips += 100;
                }
                start.elapsed().as_nanos() as f64 / f64::from(trips)
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        windows
    });
    windows.sort_by(f64::total_cmp);
    println!(
        "machine: cross-core round trip of one cache line, 20 windows of 50 ms: lowest {:.0} ns, median {:.0} ns, highest {:.0} ns",
        windows[0], windows[10], windows[19]
    );
}

fn all(c: &mut Criterion) {
    bench(c);
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        for threads in [1, 2] {
            interleaved(threads);
        }
        cross_core_round_trip();
    }
}

criterion_group!(benches, all);
criterion_main!(benches);
