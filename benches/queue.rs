//! Submit-to-completion throughput of no-op tasks: `TaskQueue` beside a bare
//! tokio mpsc + oneshot worker (the floor any queue pays), on multi-thread
//! runtimes with 1 and 2 worker threads.

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::sync::{mpsc, oneshot};
use tower::{service_fn, Service, ServiceExt};
use tower_patterns::queue::TaskQueue;

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

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue/submit_to_completion");
    group.throughput(Throughput::Elements(BATCH));
    for threads in [1, 2] {
        let rt = runtime(threads);

        for workers in [1, 4] {
            let queue = rt.block_on(async {
                TaskQueue::builder()
                    .workers(workers)
                    .capacity(BATCH as usize)
                    .build(noop())
                    .expect("valid config")
            });
            group.bench_function(
                BenchmarkId::new(
                    format!("tower-patterns TaskQueue workers={workers}"),
                    format!("{threads} threads"),
                ),
                |b| {
                    b.to_async(&rt).iter(|| async {
                        let mut handles = Vec::with_capacity(BATCH as usize);
                        for n in 0..BATCH {
                            handles.push(queue.submit_with_handle(n).await.expect("open"));
                        }
                        for handle in handles {
                            black_box(handle.await.expect("no-op succeeds"));
                        }
                    })
                },
            );
        }

        // Baseline: one consumer task over a bounded mpsc, replying on a oneshot.
        let tx = rt.block_on(async {
            let (tx, mut rx) = mpsc::channel::<(u64, oneshot::Sender<u64>)>(BATCH as usize);
            tokio::spawn(async move {
                let mut svc = noop();
                while let Some((n, reply)) = rx.recv().await {
                    let res = svc.ready().await.expect("infallible").call(n).await;
                    let _ = reply.send(res.expect("infallible"));
                }
            });
            tx
        });
        group.bench_function(
            BenchmarkId::new("tokio mpsc + oneshot (bare)", format!("{threads} threads")),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let mut replies = Vec::with_capacity(BATCH as usize);
                    for n in 0..BATCH {
                        let (reply, rx) = oneshot::channel();
                        tx.send((n, reply)).await.expect("consumer alive");
                        replies.push(rx);
                    }
                    for rx in replies {
                        black_box(rx.await.expect("replied"));
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
