//! The cache with a Redis tier (issue 15), peers in the same run:
//!
//! - `cache_redis/tier1_hit`: a hit in memory, today's `CacheLayer::build()`
//!   beside the same layer built with a Redis tier. Target: equal within
//!   noise (the remote tier is consulted on misses only).
//! - `cache_redis/tier2_hit`: memory empty for the key, the value in Redis:
//!   the whole cache call (flight, load task, `GET`, decode, fill) beside a
//!   bare redis-rs `GET` of the same bytes through the same kind of
//!   connection (a `ConnectionManager` to the same server). Target: within
//!   10%. Memory is kept empty with `local_ttl(1 ns)`.
//! - `cache_redis/stampede`: 100 concurrent misses for one fresh key over 4
//!   replicas sharing the Redis (exactly 1 inner call, checked), beside 4
//!   in-memory caches (4 inner calls).
//!
//! Needs a Redis: `eval "$(bash .ci/redis.sh | tail -1)"`, then
//! `cargo bench --all-features --bench cache_redis`. Without
//! TOWER_PATTERNS_REDIS_URL it says so and measures nothing.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::future::join_all;
use redis::aio::ConnectionManager;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_patterns::cache::{CacheLayer, JsonCodec, RedisStore};
use tower_patterns::BoxError;

const KEYS: u64 = 1024;

type Svc = BoxCloneSyncService<u64, String, BoxError>;

fn backend(
    calls: Arc<AtomicUsize>,
) -> impl Service<u64, Response = String, Error = BoxError, Future: Send> + Clone + Send + Sync + 'static
{
    service_fn(move |k: u64| {
        calls.fetch_add(1, Ordering::Relaxed);
        async move {
            Ok::<_, BoxError>(format!(
                "value of {k}, long enough to be a small JSON string"
            ))
        }
    })
}

fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url)
        .key_prefix(prefix)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// poll_ready + call + one poll; panics if it was not a hit.
fn hit<S: Service<u64, Response = String>>(svc: &mut S, cx: &mut Context<'_>, key: u64) -> String
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

/// This thread's CPU time so far (Linux; zero elsewhere).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// 100,000 hits; the time per hit.
fn hit_batch<S: Service<u64, Response = String>>(
    svc: &mut S,
    cx: &mut Context<'_>,
    k: &mut u64,
) -> Duration
where
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..100_000 {
        *k = (*k + 1) & (KEYS - 1);
        black_box(hit(svc, cx, black_box(*k)));
    }
    start.elapsed() / 100_000
}

fn main() {
    let Some(url) = std::env::var("TOWER_PATTERNS_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "cache_redis: skipped, TOWER_PATTERNS_REDIS_URL is not set \
             (start Redis with `eval \"$(bash .ci/redis.sh | tail -1)\"`)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = format!("bench-cache-redis:{}:", std::process::id());
    let calls = Arc::new(AtomicUsize::new(0));
    let _enter = rt.enter();
    let mut c = Criterion::default().configure_from_args();

    // ---- tier-1 hits ----
    let today = CacheLayer::<u64, String>::builder()
        .key_fn(|k: &u64| *k)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap()
        .layer(backend(calls.clone()));
    let tiered = CacheLayer::<u64, String>::builder()
        .key_fn(|k: &u64| *k)
        .ttl(Duration::from_secs(3600))
        .build_with_remote(store(&url, &prefix), JsonCodec)
        .unwrap()
        .layer(backend(calls.clone()));
    let (mut today, mut tiered) = rt.block_on(async move {
        let (mut today, mut tiered) = (today, tiered);
        for k in 0..KEYS {
            today.ready().await.unwrap().call(k).await.unwrap();
            tiered.ready().await.unwrap().call(k).await.unwrap();
        }
        (today, tiered)
    });
    let mut g = c.benchmark_group("cache_redis/tier1_hit");
    let mut cx = Context::from_waker(Waker::noop());
    g.bench_function("today (CacheLayer::build)", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) & (KEYS - 1);
            black_box(hit(&mut today, &mut cx, black_box(k)))
        })
    });
    g.bench_function("with a Redis tier (build_with_remote)", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) & (KEYS - 1);
            black_box(hit(&mut tiered, &mut cx, black_box(k)))
        })
    });
    g.finish();
    // The same, alternating batches (criterion runs the two minutes apart).
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        let (mut t, mut o) = (Vec::new(), Vec::new());
        let mut k = 0;
        for _ in 0..30 {
            t.push(hit_batch(&mut today, &mut cx, &mut k));
            o.push(hit_batch(&mut tiered, &mut cx, &mut k));
        }
        t.sort();
        o.sort();
        let (t, o) = (t[t.len() / 2], o[o.len() / 2]);
        println!(
            "cache_redis/tier1_hit paired: with a Redis tier {o:?}, today {t:?}: ratio {:.3}",
            o.as_secs_f64() / t.as_secs_f64()
        );
    }

    // ---- tier-2 hits ----
    let redis = store(&url, &prefix);
    let tier2: Svc = BoxCloneSyncService::new(
        CacheLayer::<u64, String>::builder()
            .key_fn(|k: &u64| *k)
            .ttl(Duration::from_secs(3600))
            .local_ttl(Duration::from_nanos(1))
            .build_with_remote(redis.clone(), JsonCodec)
            .unwrap()
            .layer(backend(calls.clone())),
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let bare = rt.block_on(ConnectionManager::new(client)).unwrap();
    let bare_key = redis.redis_key("7");
    let bare_get = || {
        let mut conn = bare.clone();
        let key = bare_key.clone();
        async move {
            let v: Vec<u8> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            v
        }
    };
    let ours = || tier2.clone().oneshot(7);
    rt.block_on(async {
        let before = calls.load(Ordering::Relaxed);
        ours().await.unwrap();
        ours().await.unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), before, "tier-2 reads only");
        assert!(!bare_get().await.is_empty());
    });
    let mut g = c.benchmark_group("cache_redis/tier2_hit");
    g.bench_function("bare GET (redis ConnectionManager)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare_get().await) })
    });
    g.bench_function("RedisStore::get alone (link: breaker, timeout)", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                tower_patterns::cache::RemoteStore::get(&redis, "7")
                    .await
                    .unwrap(),
            )
        })
    });
    g.bench_function("ours (memory miss, Redis hit)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(ours().await.unwrap()) })
    });
    g.finish();

    // ---- stampede ----
    let replicas = |remote: bool| -> Vec<Svc> {
        (0..4)
            .map(|_| {
                let b = CacheLayer::<u64, String>::builder()
                    .key_fn(|k: &u64| *k)
                    .ttl(Duration::from_secs(3600))
                    .lease_ttl(Duration::from_secs(5));
                let layer = if remote {
                    b.build_with_remote(store(&url, &prefix), JsonCodec)
                        .unwrap()
                } else {
                    b.build().unwrap()
                };
                BoxCloneSyncService::new(layer.layer(backend(calls.clone())))
            })
            .collect()
    };
    let shared = replicas(true);
    // Let the replicas subscribe (a waiter hears the release at once).
    rt.block_on(tokio::time::sleep(Duration::from_millis(200)));
    let mut key = 1_000_000u64;
    let stampede =
        |svcs: &[Svc], key: u64| join_all((0..100).map(|i| svcs[i % 4].clone().oneshot(key)));
    let mut g = c.benchmark_group("cache_redis/stampede_100_over_4");
    g.sample_size(20);
    g.bench_function("4 in-memory caches (4 inner calls)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let calls = calls.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let svcs = replicas(false);
                    let before = calls.load(Ordering::Relaxed);
                    let start = Instant::now();
                    black_box(stampede(&svcs, 1).await);
                    total += start.elapsed();
                    assert_eq!(calls.load(Ordering::Relaxed) - before, 4);
                }
                total
            }
        })
    });
    g.bench_function("4 replicas sharing Redis (1 inner call)", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let calls = calls.clone();
            let keys: Vec<u64> = (0..iters)
                .map(|_| {
                    key += 1;
                    key
                })
                .collect();
            let shared = &shared;
            async move {
                let mut total = Duration::ZERO;
                for k in keys {
                    let before = calls.load(Ordering::Relaxed);
                    let start = Instant::now();
                    black_box(stampede(shared, k).await);
                    total += start.elapsed();
                    assert_eq!(calls.load(Ordering::Relaxed) - before, 1);
                }
                total
            }
        })
    });
    g.finish();

    // Criterion measures peers one after the other; a loopback round trip
    // drifts with the machine's load. Alternate short batches too and
    // report the ratio of the medians.
    // The thread's CPU time too (this runtime's one thread runs the
    // connection's tasks as well): less swayed by other processes than the
    // wall clock, and it leaves out the server's share.
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        let (mut o, mut b, mut o_cpu, mut b_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        rt.block_on(async {
            for _ in 0..30 {
                let (start, cpu) = (Instant::now(), thread_cpu());
                for _ in 0..300 {
                    black_box(bare_get().await);
                }
                b.push(start.elapsed() / 300);
                b_cpu.push((thread_cpu() - cpu) / 300);
                let (start, cpu) = (Instant::now(), thread_cpu());
                for _ in 0..300 {
                    black_box(ours().await.unwrap());
                }
                o.push(start.elapsed() / 300);
                o_cpu.push((thread_cpu() - cpu) / 300);
            }
        });
        for (what, o, b) in [("wall", o, b), ("thread cpu", o_cpu, b_cpu)] {
            let (mut o, mut b) = (o, b);
            o.sort();
            b.sort();
            let (o, b) = (o[o.len() / 2], b[b.len() / 2]);
            println!(
                "cache_redis/tier2_hit paired ({what}): ours {o:?}, bare GET {b:?}: ratio {:.3}",
                o.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    rt.block_on(async {
        let _ = tower_patterns::cache::RemoteStore::clear(&redis).await;
    });
    c.final_summary();
}
