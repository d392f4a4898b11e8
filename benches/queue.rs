//! Submit-to-completion throughput of no-op tasks: `TaskQueue` beside a bare
//! tokio mpsc + oneshot worker (the floor any queue pays), on multi-thread
//! runtimes with 1 and 2 worker threads.
//!
//! After criterion's rows, an interleaved section measures the issue-25
//! comparison (`TaskQueue` with one worker against the bare channel)
//! again: for each thread count, 100 rounds of one short sample of each
//! (50 batches), the order rotating, each sample on a fresh runtime, so
//! both see the same phases of the machine (criterion measures one for
//! seconds and then the other; single runs of the 2-thread ratio spread
//! from 0.71 to 1.65). It prints the median of the rounds' ratios and
//! writes each one's figures under `<target>/interleaved/`, where
//! `scripts/bench.py` collects them as the rows `queue/interleaved/...`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::sync::{mpsc, oneshot};
use tower::{service_fn, Service, ServiceExt};
use tower_patterns::queue::TaskQueue;

#[path = "support/interleaved.rs"]
mod interleaved;

use interleaved::Figures;

/// Tasks submitted, then awaited, per iteration.
const BATCH: u64 = 1_000;

fn noop(
) -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Clone + Send + 'static {
    service_fn(|n: u64| std::future::ready(Ok::<_, Infallible>(n)))
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A queue of `workers` workers over the no-op service (on `rt`).
fn queue(rt: &tokio::runtime::Runtime, workers: usize) -> TaskQueue<u64, u64, Infallible> {
    rt.block_on(async {
        TaskQueue::builder()
            .workers(workers)
            .capacity(BATCH as usize)
            .build(noop())
            .expect("valid config")
    })
}

/// One batch through the queue: submit every task, then await each.
async fn queue_batch(queue: &TaskQueue<u64, u64, Infallible>) {
    let mut handles = Vec::with_capacity(BATCH as usize);
    for n in 0..BATCH {
        handles.push(queue.submit_with_handle(n).await.expect("open"));
    }
    for handle in handles {
        black_box(handle.await.expect("no-op succeeds"));
    }
}

type Bare = mpsc::Sender<(u64, oneshot::Sender<u64>)>;

/// The baseline: one consumer task over a bounded mpsc, replying on a
/// oneshot (spawned on `rt`).
fn bare(rt: &tokio::runtime::Runtime) -> Bare {
    rt.block_on(async {
        let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(BATCH as usize);
        tokio::spawn(async move {
            let mut svc = noop();
            while let Some((n, reply)) = rx.recv().await {
                let res = svc.ready().await.expect("infallible").call(n).await;
                let _ = reply.send(res.expect("infallible"));
            }
        });
        tx
    })
}

/// One batch through the baseline.
async fn bare_batch(tx: &Bare) {
    let mut replies = Vec::with_capacity(BATCH as usize);
    for n in 0..BATCH {
        let (reply, rx) = oneshot::channel();
        tx.send((n, reply)).await.expect("consumer alive");
        replies.push(rx);
    }
    for rx in replies {
        black_box(rx.await.expect("replied"));
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue/submit_to_completion");
    group.throughput(Throughput::Elements(BATCH));
    for threads in [1, 2] {
        let rt = runtime(threads);

        for workers in [1, 4] {
            let queue = queue(&rt, workers);
            group.bench_function(
                BenchmarkId::new(
                    format!("tower-patterns TaskQueue workers={workers}"),
                    format!("{threads} threads"),
                ),
                |b| b.to_async(&rt).iter(|| queue_batch(&queue)),
            );
        }

        let tx = bare(&rt);
        group.bench_function(
            BenchmarkId::new("tokio mpsc + oneshot (bare)", format!("{threads} threads")),
            |b| b.to_async(&rt).iter(|| bare_batch(&tx)),
        );
    }
    group.finish();
}

/// Time per batch over 50 batches of `batch` on `rt`, after one batch to
/// warm up (the first allocates).
fn per_batch<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    batch: impl Fn() -> F,
) -> Duration {
    const BATCHES: u32 = 50;
    rt.block_on(async {
        batch().await;
        let start = Instant::now();
        for _ in 0..BATCHES {
            batch().await;
        }
        start.elapsed() / BATCHES
    })
}

/// The issue-25 comparison, interleaved (see the module docs).
fn interleaved(_: &mut Criterion) {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    const ROUNDS: usize = 100;
    for threads in [1, 2] {
        // A sample: a fresh runtime and contender, then its batches timed.
        let mut ours = || {
            let rt = runtime(threads);
            let queue = queue(&rt, 1);
            per_batch(&rt, || queue_batch(&queue))
        };
        let mut theirs = || {
            let rt = runtime(threads);
            let tx = bare(&rt);
            per_batch(&rt, || bare_batch(&tx))
        };
        let mut samples = interleaved::rounds(ROUNDS, &mut [&mut ours, &mut theirs]);
        let (t, o): (Vec<Duration>, Vec<Duration>) =
            (samples.pop().unwrap(), samples.pop().unwrap());
        let (ratio, low, high) = interleaved::paired_ratio(&o, &t);
        println!(
            "queue interleaved ({threads} thread(s), fresh runtime per sample, {ROUNDS} rounds): \
             TaskQueue / bare, median of the rounds' ratios {ratio:.3} (middle half {low:.3} - {high:.3})"
        );
        let id = |who: &str| format!("queue/interleaved/{who}/{threads} threads");
        Figures::of(o).write(&id("tower-patterns TaskQueue workers=1"), BATCH, 1);
        Figures::of(t).write(&id("tokio mpsc + oneshot (bare)"), BATCH, 1);
    }
}

criterion_group!(benches, bench, interleaved);
criterion_main!(benches);
