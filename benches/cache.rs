//! Cache hits: ours vs tower-resilience's cache layer vs moka, on 1 and 2
//! threads; the cost of the default MD5-of-JSON key; and the hit ratio of
//! a Zipf-distributed workload beside moka's at the same capacity.
//!
//! After criterion's hit rows, an interleaved section measures the
//! 2-thread scaling again, taking short samples of one thread, two threads
//! sharing a cache and two threads with a cache each in turn (see
//! `interleaved_hits`).
//!
//! Run: `cargo bench --all-features --bench cache`

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Serialize;
use tower::{service_fn, Service, ServiceExt};
use tower_patterns::cache::{CacheLayer, Md5Json};

#[path = "support/interleaved.rs"]
mod interleaved;

use interleaved::Figures;

const KEYS: u64 = 1024;
const CAPACITY: usize = 10_000;

fn backend(
) -> impl Service<u64, Response = u64, Error = std::io::Error, Future: Send> + Clone + Send + 'static
{
    service_fn(|k: u64| async move { Ok::<_, std::io::Error>(k * 2) })
}

/// One `poll_ready` + `call` + poll of the response, as tower drives a
/// service; panics if the response was not ready at once (not a hit).
#[inline]
fn hit<S: Service<u64, Response = u64>>(svc: &mut S, cx: &mut Context<'_>, key: u64) -> u64
where
    S::Error: std::fmt::Debug,
{
    assert!(svc.poll_ready(cx).is_ready());
    let fut = pin!(svc.call(key));
    match fut.poll(cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("not a hit"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ours() -> impl Service<u64, Response = u64, Error = tower::BoxError> + Clone + Send + 'static {
    let layer = CacheLayer::builder()
        .key_fn(|k: &u64| *k)
        .ttl(Duration::from_secs(3600))
        .max_entries(CAPACITY)
        .build()
        .unwrap();
    let mut svc = tower::Layer::layer(&layer, backend());
    rt().block_on(async {
        for k in 0..KEYS {
            svc.ready().await.unwrap().call(k).await.unwrap();
        }
    });
    svc
}

fn theirs() -> impl Service<u64, Response = u64, Error: std::fmt::Debug> + Clone + Send + 'static {
    let layer = tower_resilience::cache::CacheLayer::builder()
        .max_size(CAPACITY)
        .ttl(Duration::from_secs(3600))
        .key_extractor(|k: &u64| *k)
        .build()
        .unwrap();
    let mut svc = tower::Layer::layer(&layer, backend());
    rt().block_on(async {
        for k in 0..KEYS {
            svc.ready().await.unwrap().call(k).await.unwrap();
        }
    });
    svc
}

fn moka_future() -> moka::future::Cache<u64, u64> {
    let cache = moka::future::Cache::builder()
        .max_capacity(CAPACITY as u64)
        .time_to_live(Duration::from_secs(3600))
        .build();
    rt().block_on(async {
        for k in 0..KEYS {
            cache.insert(k, k * 2).await;
        }
    });
    cache
}

/// Runs `per_thread(thread_index, iters)` on `threads` threads at once
/// and returns the wall time they took together.
fn parallel<F>(threads: usize, iters: u64, per_thread: F) -> Duration
where
    F: Fn(usize, u64) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, per_thread) = (&barrier, &per_thread);
            s.spawn(move || {
                barrier.wait();
                per_thread(t, iters);
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Scope end joins every thread.
        start
    })
    .elapsed()
}

/// `n` hits on a clone of `svc` as thread `t` of a run (each thread
/// starts at a key of its own and walks all of them).
fn hit_run<S>(svc: &S, t: usize, n: u64)
where
    S: Service<u64, Response = u64> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut svc = svc.clone();
    let mut cx = Context::from_waker(Waker::noop());
    let mut k = t as u64 * 512;
    for _ in 0..n {
        k = (k + 1) & (KEYS - 1);
        black_box(hit(&mut svc, &mut cx, black_box(k)));
    }
}

fn hits(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_hit");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));

        let svc = ours();
        g.bench_function(format!("tower-patterns/{threads}t"), |b| {
            b.iter_custom(|iters| parallel(threads, iters, |t, n| hit_run(&svc, t, n)))
        });

        // The same hits with nothing shared between the threads: each has a
        // cache of its own (built and filled the same way). Beside the
        // shared cache's 2-thread row, it shows how much of the scaling
        // shortfall is the sharing and how much the machine.
        if threads == 2 {
            let own = [ours(), ours()];
            g.bench_function("tower-patterns, a cache per thread/2t", |b| {
                b.iter_custom(|iters| parallel(threads, iters, |t, n| hit_run(&own[t], t, n)))
            });
        }

        let svc = theirs();
        g.bench_function(format!("tower-resilience/{threads}t"), |b| {
            b.iter_custom(|iters| parallel(threads, iters, |t, n| hit_run(&svc, t, n)))
        });

        let cache = moka_future();
        g.bench_function(format!("moka-future-get/{threads}t"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |t, n| {
                    let cache = cache.clone();
                    let mut cx = Context::from_waker(Waker::noop());
                    let mut k = t as u64 * 512;
                    for _ in 0..n {
                        k = (k + 1) & (KEYS - 1);
                        let fut = pin!(cache.get(black_box(&k)));
                        match fut.poll(&mut cx) {
                            Poll::Ready(v) => {
                                black_box(v.unwrap());
                            }
                            Poll::Pending => panic!("moka get pending"),
                        }
                    }
                })
            })
        });

        // What a hit pays for its one clock read (the TTL check), in the
        // same run: `tokio::time::Instant::now()`, the vDSO's
        // `clock_gettime` outside paused tests.
        g.bench_function(format!("clock read alone/{threads}t"), |b| {
            b.iter_custom(|iters| {
                parallel(threads, iters, |_, n| {
                    for _ in 0..n {
                        black_box(tokio::time::Instant::now());
                    }
                })
            })
        });
    }
    g.finish();
}

/// The 2-thread scaling, interleaved: 100 rounds of one short sample
/// (100,000 hits a thread) each of one thread hitting, two threads
/// sharing one cache, and two threads with a cache each, so that all
/// three see the same phases of the machine (see `support/interleaved.rs`;
/// criterion measures them seconds apart). Prints the median of the
/// rounds' ratios and writes each one's figures for `scripts/bench.py`.
fn interleaved_hits(_: &mut Criterion) {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    const ROUNDS: usize = 100;
    const HITS: u64 = 100_000;
    let (svc, own) = (ours(), [ours(), ours()]);
    let mut samples = interleaved::rounds(
        ROUNDS,
        &mut [
            &mut || parallel(1, HITS, |t, n| hit_run(&svc, t, n)),
            &mut || parallel(2, HITS, |t, n| hit_run(&svc, t, n)),
            &mut || parallel(2, HITS, |t, n| hit_run(&own[t], t, n)),
        ],
    );
    let (apart, shared, one) = (
        samples.pop().unwrap(),
        samples.pop().unwrap(),
        samples.pop().unwrap(),
    );
    let (shared_one, _, _) = interleaved::paired_ratio(&shared, &one);
    let (apart_one, _, _) = interleaved::paired_ratio(&apart, &one);
    let (shared_apart, low, high) = interleaved::paired_ratio(&shared, &apart);
    println!(
        "cache hit interleaved ({ROUNDS} rounds): 2 threads / 1, per round median: \
         one shared cache {shared_one:.2}, a cache per thread {apart_one:.2}; \
         shared / a cache per thread {shared_apart:.2} (middle half {low:.2} - {high:.2})"
    );
    // A sample is HITS iterations (of one hit on each thread).
    Figures::of(one).write("cache_hit/interleaved/tower-patterns/1t", 1, HITS);
    Figures::of(shared).write("cache_hit/interleaved/tower-patterns/2t", 2, HITS);
    Figures::of(apart).write(
        "cache_hit/interleaved/tower-patterns, a cache per thread/2t",
        2,
        HITS,
    );
}

#[derive(Serialize)]
struct GetUser {
    id: u64,
    fields: Vec<&'static str>,
    region: &'static str,
}

fn md5_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_md5_key");
    let req = GetUser {
        id: 42,
        fields: vec!["name", "email"],
        region: "eu-west-1",
    };
    g.bench_function("Md5Json::digest", |b| {
        b.iter(|| Md5Json::digest(black_box(&req)).unwrap())
    });

    // A whole hit with the default key.
    let layer = CacheLayer::builder()
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let inner = service_fn(|r: GetUser| async move { Ok::<_, std::io::Error>(r.id) });
    let mut svc = tower::Layer::layer(&layer, inner);
    let mk = || GetUser {
        id: 42,
        fields: vec!["name", "email"],
        region: "eu-west-1",
    };
    rt().block_on(async { svc.ready().await.unwrap().call(mk()).await.unwrap() });
    let mut cx = Context::from_waker(Waker::noop());
    g.bench_function("tower-patterns hit, md5 key", |b| {
        b.iter_batched(
            mk,
            |req| {
                assert!(svc.poll_ready(&mut cx).is_ready());
                let fut = pin!(svc.call(req));
                match fut.poll(&mut cx) {
                    Poll::Ready(r) => r.unwrap(),
                    Poll::Pending => panic!("not a hit"),
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Zipf(s) ranks over `n` keys by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 1..=n {
            sum += 1.0 / (i as f64).powf(s);
            cdf.push(sum);
        }
        for x in &mut cdf {
            *x /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let u = rng.f64();
        self.cdf.partition_point(|&c| c < u) as u64
    }
}

fn zipf_hit_ratio(c: &mut Criterion) {
    const UNIVERSE: usize = 100_000;
    const REQUESTS: usize = 1_000_000;
    let zipf = Zipf::new(UNIVERSE, 0.99);
    let mut rng = fastrand::Rng::with_seed(7);
    let trace: Vec<u64> = (0..REQUESTS).map(|_| zipf.sample(&mut rng)).collect();

    println!("\nZipf(0.99) over {UNIVERSE} keys, {REQUESTS} requests: hit ratio");
    println!("| capacity | tower-patterns | moka | tower-resilience (LRU) |");
    println!("|---|---|---|---|");
    for cap in [1_000usize, 10_000] {
        // Ours, through the layer.
        let layer = CacheLayer::builder()
            .key_fn(|k: &u64| *k)
            .ttl(Duration::from_secs(3600))
            .max_entries(cap)
            .build()
            .unwrap();
        let handle = layer.handle();
        let mut svc = tower::Layer::layer(&layer, backend());
        rt().block_on(async {
            for &k in &trace {
                svc.ready().await.unwrap().call(k).await.unwrap();
            }
        });
        let s = handle.stats();
        let ours = s.hits as f64 / (s.hits + s.misses + s.coalesced) as f64;

        // moka, as a look-aside cache.
        let moka = moka::sync::Cache::<u64, u64>::new(cap as u64);
        let mut moka_hits = 0usize;
        for &k in &trace {
            if moka.get(&k).is_some() {
                moka_hits += 1;
            } else {
                moka.insert(k, k);
            }
        }
        let moka_ratio = moka_hits as f64 / REQUESTS as f64;

        // tower-resilience, through its layer.
        let layer = tower_resilience::cache::CacheLayer::builder()
            .max_size(cap)
            .ttl(Duration::from_secs(3600))
            .key_extractor(|k: &u64| *k)
            .build()
            .unwrap();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = {
            let calls = calls.clone();
            service_fn(move |k: u64| {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async move { Ok::<_, std::io::Error>(k) }
            })
        };
        let mut svc = tower::Layer::layer(&layer, counted);
        rt().block_on(async {
            for &k in &trace {
                svc.ready().await.unwrap().call(k).await.unwrap();
            }
        });
        let theirs =
            1.0 - calls.load(std::sync::atomic::Ordering::Relaxed) as f64 / REQUESTS as f64;
        println!(
            "| {cap} | {:.1}% | {:.1}% | {:.1}% |",
            ours * 100.0,
            moka_ratio * 100.0,
            theirs * 100.0
        );
    }

    // Time per request of the mixed workload (hits and misses), ours vs moka.
    let mut g = c.benchmark_group("cache_zipf");
    g.throughput(Throughput::Elements(trace.len() as u64));
    g.sample_size(10);
    let layer = CacheLayer::builder()
        .key_fn(|k: &u64| *k)
        .ttl(Duration::from_secs(3600))
        .max_entries(10_000)
        .build()
        .unwrap();
    let mut svc = tower::Layer::layer(&layer, backend());
    let runtime = rt();
    g.bench_function("tower-patterns", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for &k in &trace {
                    black_box(svc.ready().await.unwrap().call(k).await.unwrap());
                }
            })
        })
    });
    let moka = moka::sync::Cache::<u64, u64>::new(10_000);
    g.bench_function("moka-sync (get, insert on miss)", |b| {
        b.iter(|| {
            for &k in &trace {
                if moka.get(&k).is_none() {
                    moka.insert(k, k);
                }
            }
        })
    });
    g.finish();
}

criterion_group!(benches, hits, interleaved_hits, md5_key, zipf_hit_ratio);
criterion_main!(benches);
