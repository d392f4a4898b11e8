//! Requests per second over loopback: the demo's full client stack
//! (cache -> retry -> circuit breaker -> concurrency limit -> HttpClient,
//! `examples/support/demo_stack.rs`) against the bare `HttpClient`, in one
//! run, against the in-process `upstream` server.
//!
//! Both sides read every body to the end (the stack's bottom `fetch::Collect`
//! adapter does that, and the bare client is wrapped in the same adapter),
//! so the difference is the cost of the four layers. In the "all misses"
//! case every request has its own URI, so the cache misses every time and
//! its miss path (lookup, the RFC 9111 storability decision, the insert
//! and S3-FIFO eviction once full) is measured along with retry, breaker
//! and limit; "all hits" shows what the cache saves. Requests go to
//! `/users/1` (`Cache-Control: max-age=60`, so the HTTP cache stores them).
//!
//! Variants that isolate the parts: the bare client with each call in a
//! spawned task, the bare client keeping
//! its last 10,000 responses (what holding responses costs), the stack
//! without its cache (retry, breaker, limit), and the cache alone over
//! `fetch::Collect<HttpClient>`.
//!
//! The server runs on its own one-thread runtime; the clients on a
//! current-thread runtime; each iteration is a batch of 32 requests with
//! at most 8 in flight.
//!
//! ```sh
//! cargo bench --all-features --bench http_stack
//! ```

#[path = "../examples/support/demo_stack.rs"]
mod demo_stack;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tower::{BoxError, Layer, ServiceExt};
use tower_patterns::fetch::{CollectLayer, HttpClient};
use tower_patterns::http_cache::HttpCacheLayer;
use tower_patterns::limit::join_bounded;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

use demo_stack::{get, DemoStack, StackConfig};

const BATCH: u64 = 32;
const IN_FLIGHT: usize = 8;

fn http_stack(c: &mut Criterion) {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = server_rt
        .block_on(Upstream::start(UpstreamConfig::default()))
        .unwrap();
    let base = upstream.url("/users/1");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bare, stack, cache_only) = {
        let _guard = rt.enter();
        let bare = CollectLayer::new().layer(HttpClient::new());
        let stack = DemoStack::build(&StackConfig {
            concurrency: 64,
            ..StackConfig::default()
        })
        .unwrap();
        // The demo's cache layer, alone over `fetch::Collect<HttpClient>` (errors
        // boxed, as the limit below the cache in the stack does).
        let cache_only = HttpCacheLayer::builder()
            .shared(false)
            .max_entries(10_000)
            .build()
            .unwrap()
            .layer(
                CollectLayer::new()
                    .layer(HttpClient::new())
                    .map_err(BoxError::from),
            );
        (bare, stack, cache_only)
    };
    // Retry -> breaker -> limit -> Collect<HttpClient>: the stack under
    // its cache (shares the stack's state).
    let no_cache = stack.svc.get_ref().clone();
    let counter = AtomicU64::new(0);
    let next_url = || format!("{base}?n={}", counter.fetch_add(1, Ordering::Relaxed));

    let mut group = c.benchmark_group("http_stack");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    group.bench_function("bare HttpClient", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| bare.clone().oneshot(get(&next_url())));
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
    group.bench_function("bare HttpClient, each call spawned", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| {
                let call = bare.clone().oneshot(get(&next_url()));
                async move { tokio::spawn(call).await.unwrap() }
            });
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
    // The bare client, but each response is kept (the last 10,000, as the
    // cache keeps them): shows what holding on to responses costs.
    let kept = std::cell::RefCell::new(std::collections::VecDeque::new());
    group.bench_function("bare HttpClient, responses kept", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| bare.clone().oneshot(get(&next_url())));
            let kept = &kept;
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    let r = r.unwrap();
                    assert_eq!(r.status(), 200);
                    let mut kept = kept.borrow_mut();
                    if kept.len() == 10_000 {
                        kept.pop_front();
                    }
                    kept.push_back(r);
                }
            }
        })
    });
    drop(kept);
    group.bench_function("retry+breaker+limit, no cache", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| no_cache.clone().oneshot(get(&next_url())));
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
    group.bench_function("cache alone, all misses", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| cache_only.clone().oneshot(get(&next_url())));
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
    group.bench_function("full stack, all cache misses", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| stack.svc.clone().oneshot(get(&next_url())));
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
    let hot = get(&base);
    group.bench_function("full stack, all cache hits", |b| {
        b.to_async(&rt).iter(|| {
            let reqs = (0..BATCH).map(|_| stack.svc.clone().oneshot(hot.clone()));
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
    group.finish();

    let s = stack.stats();
    assert_eq!(s.retry.retries, 0, "the healthy server needed no retries");
    eprintln!(
        "stack: {} cache hits, {} misses, {} attempts, {} requests at the server in all",
        s.cache.hits,
        s.cache.misses,
        s.retry.attempts,
        upstream.requests()
    );
    drop(upstream);
    drop(server_rt);
}

criterion_group!(benches, http_stack);
criterion_main!(benches);
