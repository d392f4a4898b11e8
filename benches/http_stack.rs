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
//! The all-miss stack runs at two cache sizes: the demo's 10,000 entries
//! and 100 (`full stack, all cache misses, 100 entries`).
//!
//! Variants that isolate the parts: the bare client with each call in a
//! spawned task, the bare client keeping
//! its last 10,000 responses (what holding responses costs), the stack
//! without its cache (retry, breaker, limit), the HTTP cache alone over
//! `fetch::Collect<HttpClient>`, and the generic `cache::CacheLayer` keyed
//! by URI alone over the same (its miss path, for non-HTTP services). The
//! paired section after criterion's runs also drives a floor: the least
//! any cache that keeps its misses does (see [`Floor`]).
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

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tower::{BoxError, Layer, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::fetch::{CollectLayer, HttpClient};
use tower_patterns::http_cache::HttpCacheLayer;
use tower_patterns::limit::join_bounded;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

use demo_stack::{get, Collected, DemoStack, Req, StackConfig};

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
            .layer(collected_client());
        (bare, stack, cache_only)
    };
    // Retry -> breaker -> limit -> Collect<HttpClient>: the stack under
    // its cache (shares the stack's state).
    let no_cache = stack.svc.get_ref().clone();
    // The same, with a cache of 100 entries on top (the full stack at a
    // small cache: insert and evict on hot memory).
    let small_stack = {
        let _guard = rt.enter();
        HttpCacheLayer::builder()
            .shared(false)
            .max_entries(100)
            .build()
            .unwrap()
            .layer(no_cache.clone())
    };
    // `cache::CacheLayer` keyed by URI alone over the same client: the
    // generic cache's miss path (single-flight load, store, eviction), which
    // non-HTTP services use.
    let generic_cache = {
        let _guard = rt.enter();
        CacheLayer::<Req, Collected>::builder()
            .ttl(Duration::from_secs(60))
            .max_entries(10_000)
            .key_fn(|r: &Req| r.uri().to_string())
            .build()
            .unwrap()
            .layer(collected_client())
    };
    let floor = Floor::new(collected_client(), 10_000);
    let counter = AtomicU64::new(0);
    let next_url = || format!("{base}?n={}", counter.fetch_add(1, Ordering::Relaxed));

    let mut group = c.benchmark_group("http_stack");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    batches(&mut group, &rt, "bare HttpClient", &bare, || {
        get(&next_url())
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
    batches(
        &mut group,
        &rt,
        "retry+breaker+limit, no cache",
        &no_cache,
        || get(&next_url()),
    );
    batches(
        &mut group,
        &rt,
        "cache alone, all misses",
        &cache_only,
        || get(&next_url()),
    );
    batches(
        &mut group,
        &rt,
        "CacheLayer by URI alone, all misses",
        &generic_cache,
        || get(&next_url()),
    );
    batches(
        &mut group,
        &rt,
        "full stack, all cache misses",
        &stack.svc,
        || get(&next_url()),
    );
    batches(
        &mut group,
        &rt,
        "full stack, all cache misses, 100 entries",
        &small_stack,
        || get(&next_url()),
    );
    let hot = get(&base);
    batches(
        &mut group,
        &rt,
        "full stack, all cache hits",
        &stack.svc,
        || hot.clone(),
    );
    group.finish();

    // Criterion measures one variant after the other, and on a shared
    // machine the loopback round trip drifts by more than the cache costs.
    // Alternate short batches of the bare client and the all-miss stacks
    // too, and print the ratios of the medians: wall time, and this
    // thread's CPU time (the client runtime's only thread; the server's
    // thread is left out), which other processes sway less.
    if !std::env::args().any(|a| a == "--list" || a == "--test") {
        paired(
            &rt,
            &next_url,
            &bare,
            &stack.svc,
            &small_stack,
            &cache_only,
            &generic_cache,
            &floor,
        );
    }

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

/// The bare client under `fetch::Collect`, errors boxed (as the limit below
/// the cache in the demo's stack boxes them).
fn collected_client(
) -> impl tower::Service<Req, Response = Collected, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    CollectLayer::new()
        .layer(HttpClient::new())
        .map_err(BoxError::from)
}

/// One criterion benchmark: batches of `BATCH` requests made by `req`, at
/// most `IN_FLIGHT` at a time, each answered 200.
fn batches<R>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    svc: &impl Batchable<R>,
    req: impl Fn() -> Req,
) {
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let reqs = (0..BATCH).map(|_| svc.clone().oneshot(req()));
            async move {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            }
        })
    });
}

/// A service the paired batches can drive: the demo's requests in, an
/// HTTP response of any body out.
trait Batchable<R>:
    tower::Service<Req, Response = http::Response<R>, Error: std::fmt::Debug> + Clone
{
}

impl<R, S> Batchable<R> for S where
    S: tower::Service<Req, Response = http::Response<R>, Error: std::fmt::Debug> + Clone
{
}

/// This thread's CPU time so far (Linux; zero elsewhere).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Alternating batches of the bare client and each all-miss variant; prints
/// each variant's median wall and CPU time per request over the bare
/// client's.
#[allow(clippy::too_many_arguments)]
fn paired<R0, R1, R2, R3, R4, R5>(
    rt: &tokio::runtime::Runtime,
    next_url: &impl Fn() -> String,
    bare: &impl Batchable<R0>,
    stack: &impl Batchable<R1>,
    small: &impl Batchable<R2>,
    cache: &impl Batchable<R3>,
    generic: &impl Batchable<R4>,
    floor: &impl Batchable<R5>,
) {
    const ROUNDS: usize = 40;
    const ITERS: u32 = 10;
    fn batch<R>(
        rt: &tokio::runtime::Runtime,
        next_url: &impl Fn() -> String,
        svc: &impl Batchable<R>,
    ) -> (Duration, Duration) {
        let (start, cpu) = (std::time::Instant::now(), thread_cpu());
        for _ in 0..ITERS {
            let reqs: Vec<_> = (0..BATCH)
                .map(|_| svc.clone().oneshot(get(&next_url())))
                .collect();
            rt.block_on(async {
                for r in join_bounded(reqs, IN_FLIGHT).await {
                    assert_eq!(r.unwrap().status(), 200);
                }
            });
        }
        (start.elapsed(), thread_cpu() - cpu)
    }
    let names = [
        "full stack, all misses",
        "full stack, all misses, 100 entries",
        "HttpCacheLayer alone, all misses",
        "CacheLayer by URI alone, all misses",
        "floor (a map by URI, FIFO eviction), all misses",
    ];
    let mut times: [Vec<(Duration, Duration)>; 6] = Default::default();
    for _ in 0..ROUNDS {
        times[0].push(batch(rt, next_url, bare));
        times[1].push(batch(rt, next_url, stack));
        times[2].push(batch(rt, next_url, small));
        times[3].push(batch(rt, next_url, cache));
        times[4].push(batch(rt, next_url, generic));
        times[5].push(batch(rt, next_url, floor));
    }
    let median = |v: &[(Duration, Duration)], cpu: bool| {
        let mut v: Vec<Duration> = v.iter().map(|t| if cpu { t.1 } else { t.0 }).collect();
        v.sort();
        v[v.len() / 2]
    };
    let per_req = |d: Duration| d / (ITERS * BATCH as u32);
    for (i, name) in names.iter().enumerate() {
        for cpu in [false, true] {
            let (ours, peer) = (median(&times[i + 1], cpu), median(&times[0], cpu));
            println!(
                "http_stack paired ({}): {name} {:?}/req, bare {:?}/req: bare's requests/s x {:.3}",
                if cpu { "thread cpu" } else { "wall" },
                per_req(ours),
                per_req(peer),
                peer.as_secs_f64() / ours.as_secs_f64(),
            );
        }
    }
}

/// The floor for a cache's miss path: the least a cache that keeps its
/// misses must do, written as tight as I could. It builds the key (the
/// URI's authority and path, one allocation, no formatting), hashes it
/// once (an Fx-style hash), and looks it up under a lock; on a miss it
/// calls the client, copies the response (status, fields, body handle)
/// into the table, evicting the oldest entry once `max` are held (a FIFO
/// of hashes and sequence numbers, so nothing is cloned to evict), and
/// returns it. No HTTP rules, no single flight, no expiry, no metrics;
/// one boxed future per call. Whatever a real cache costs on a miss
/// beyond this is its own. (Before 2026-12-03 the floor keyed a SipHash
/// `HashMap` by `uri.to_string()` and cloned the key for its FIFO: about
/// 1.5K instructions a miss more.)
#[derive(Clone)]
struct Floor<S> {
    inner: S,
    max: usize,
    store: Arc<Mutex<FloorStore>>,
}

/// The floor's table (key, response, sequence number) and its FIFO of
/// (hash, sequence number), oldest first.
#[derive(Default)]
struct FloorStore {
    table: hashbrown::HashTable<(Box<str>, Collected, u64)>,
    order: VecDeque<(u64, u64)>,
    seq: u64,
}

/// An Fx-style hash of a key (the bench needs no resistance to chosen
/// keys).
fn floor_hash(key: &str) -> u64 {
    let mut h = 0u64;
    let mut chunks = key.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    for &b in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    h
}

impl<S> Floor<S> {
    fn new(inner: S, max: usize) -> Self {
        Floor {
            inner,
            max,
            store: Arc::default(),
        }
    }
}

fn copy(r: &Collected) -> Collected {
    let mut out = Collected::new(r.body().clone());
    *out.status_mut() = r.status();
    *out.version_mut() = r.version();
    *out.headers_mut() = r.headers().clone();
    out
}

impl<S> tower::Service<Req> for Floor<S>
where
    S: tower::Service<Req, Response = Collected, Error = BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Collected;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Collected, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let uri = req.uri();
        let authority = uri.authority().map_or("", |a| a.as_str());
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut key = String::with_capacity(authority.len() + path.len());
        key.push_str(authority);
        key.push_str(path);
        let key = key.into_boxed_str();
        let hash = floor_hash(&key);
        let hit = {
            let st = self.store.lock().unwrap();
            st.table.find(hash, |e| e.0 == key).map(|e| copy(&e.1))
        };
        if let Some(hit) = hit {
            return Box::pin(async move { Ok(hit) });
        }
        let (store, max) = (self.store.clone(), self.max);
        let load = self.inner.call(req);
        Box::pin(async move {
            let resp = load.await?;
            let mut st = store.lock().unwrap();
            let st = &mut *st;
            if st.table.len() >= max {
                if let Some((h, seq)) = st.order.pop_front() {
                    if let Ok(old) = st.table.find_entry(h, |e| e.2 == seq) {
                        old.remove();
                    }
                }
            }
            st.seq += 1;
            let seq = st.seq;
            st.table
                .insert_unique(hash, (key, copy(&resp), seq), |e| floor_hash(&e.0));
            st.order.push_back((hash, seq));
            Ok(resp)
        })
    }
}

criterion_group!(benches, http_stack);
criterion_main!(benches);
