//! What a call costs the allocator: no layer's service clone or call asks
//! for an over-aligned allocation (alignment above 16 bytes). Those take
//! the allocator's slow path (glibc's `posix_memalign`, several hundred
//! instructions with its free, against a few dozen for a plain `malloc`),
//! and tower users clone a service per request (`svc.clone().oneshot(req)`,
//! and retry clones its inner service per attempt). And what an HTTP-cache
//! miss that may not be stored allocates: nothing of what storing needs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::chaos::ChaosLayer;
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::deadline::TimeoutLayer;
use tower_patterns::fallback::FallbackLayer;
use tower_patterns::hedge::{AnyRequest, HedgeLayer};
use tower_patterns::http_cache::HttpCacheLayer;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::rate_limit::RateLimitLayer;
use tower_patterns::retry::RetryLayer;
use tower_patterns::BoxError;

/// Counts, per thread, the allocations, and those aligned beyond 16 bytes.
struct Counting;

thread_local! {
    static OVER_ALIGNED: Cell<usize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note(layout: Layout) {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    if layout.align() > 16 {
        let _ = OVER_ALIGNED.try_with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only arithmetic on a thread-local cell (const-initialised,
// no destructor, so it never allocates).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(layout);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn over_aligned() -> usize {
    OVER_ALIGNED.with(Cell::get)
}

fn echo() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|x: u32| async move { Ok::<_, BoxError>(x) })
}

/// Clones `svc` and calls the clone `n` times; returns the over-aligned
/// allocations made on this thread meanwhile.
async fn per_clone_and_call<S>(svc: &S, n: u32) -> usize
where
    S: Service<u32, Response = u32, Error = BoxError> + Clone,
{
    let before = over_aligned();
    for i in 0..n {
        assert_eq!(svc.clone().oneshot(i).await.unwrap(), i);
    }
    over_aligned() - before
}

#[tokio::test(flavor = "current_thread")]
async fn no_layer_allocates_over_aligned_per_clone_or_call() {
    let breaker = CircuitBreakerLayer::builder()
        .build()
        .unwrap()
        .layer(echo());
    let limit = ConcurrencyLimitLayer::new(8).layer(echo());
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .build()
        .unwrap()
        .layer(echo());
    let cache = CacheLayer::builder()
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap()
        .layer(echo());
    let rate = RateLimitLayer::builder()
        .rate(1_000_000, Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(echo());
    let timeout = TimeoutLayer::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(echo());
    let hedge = HedgeLayer::builder()
        .delay(Duration::from_secs(1))
        .eligible(AnyRequest)
        .build()
        .unwrap()
        .layer(echo());
    let fallback = FallbackLayer::builder()
        .value(0_u32)
        .build()
        .unwrap()
        .layer(echo());
    let chaos = ChaosLayer::builder()
        .error_rate(0.0)
        .build()
        .unwrap()
        .layer(echo());
    // The demo's order: retry over a breaker over a limit.
    let stack = RetryLayer::builder()
        .max_attempts(3)
        .build()
        .unwrap()
        .layer(
            CircuitBreakerLayer::builder()
                .build()
                .unwrap()
                .layer(ConcurrencyLimitLayer::new(8).layer(echo())),
        );
    // One call each first: what a layer allocates once (its shared state,
    // a first registration) is not what this test is about.
    macro_rules! check {
        ($($svc:ident),*) => {
            $( per_clone_and_call(&$svc, 1).await; )*
            $( assert_eq!(per_clone_and_call(&$svc, 100).await, 0, stringify!($svc)); )*
        };
    }
    check!(breaker, limit, retry, cache, rate, timeout, hedge, fallback, chaos, stack);
}

/// Allocations on this thread while `n` GETs (each its own URI) go through
/// `svc` to an origin answering `Cache-Control: no-store` with fields the
/// size of a real API's.
async fn per_miss<S, B>(svc: &S, n: usize) -> usize
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    let before = ALLOCATIONS.with(Cell::get);
    for i in 0..n {
        let req = http::Request::get(format!("http://api.test/items/{i}"))
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), 200);
    }
    ALLOCATIONS.with(Cell::get) - before
}

/// What `cached` allocates a miss beyond `origin` (each warmed by one
/// miss first), and what `origin` allocates, over 100 misses.
async fn extra_per_miss<S, C, B, D>(origin: &S, cached: &C) -> (usize, usize)
where
    S: Service<http::Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    C: Service<http::Request<Full<Bytes>>, Response = http::Response<D>> + Clone,
    C::Error: std::fmt::Debug,
{
    per_miss(origin, 1).await;
    per_miss(cached, 1).await;
    let bare = per_miss(origin, 100).await;
    let through = per_miss(cached, 100).await;
    ((through - bare) / 100, bare / 100)
}

#[tokio::test(flavor = "current_thread")]
async fn an_http_cache_miss_that_may_not_be_stored_copies_none_of_its_fields() {
    let origin = service_fn(|_: http::Request<Full<Bytes>>| async {
        let res = http::Response::builder()
            .header("cache-control", "no-store")
            .header("content-type", "application/json")
            .header("date", "Thu, 03 Dec 2026 01:00:00 GMT")
            .header("etag", "\"v1\"")
            .header("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736")
            .body(Full::new(Bytes::from_static(b"{\"id\":1}")))
            .unwrap();
        Ok::<_, BoxError>(res)
    });
    let cached = HttpCacheLayer::builder().build().unwrap().layer(origin);
    let (extra, bare) = extra_per_miss(&origin, &cached).await;
    // What the cache allocates of its own per pass (its key, the
    // coalescing flight, the request head it keeps, the boxed miss
    // future, the fields it judges, the parsed `Cache-Control`, the
    // answer's body wrapper) was 18 when this test was written. Copying
    // the fields, the request fields and the URI for storing, which a
    // response that may not be stored does not need, made it 22; not
    // copying them brought it back to 18. Judging the response's own
    // fields instead of a clone (this origin's values are copies that
    // allocate when first cloned, as hyper's do not) and a flight that
    // allocates only its key made it 8, and a `Cache-Control` parsed
    // off the heap 7 (2026-12-03).
    assert!(
        extra <= 7,
        "{extra} allocations a pass over the origin's {bare}"
    );
}

/// An origin answering a stored-size response with static values:
/// cloned without allocating, as hyper's slices of its read buffer are.
fn storable_origin() -> impl Service<
    http::Request<Full<Bytes>>,
    Response = http::Response<Full<Bytes>>,
    Error = BoxError,
    Future: Send,
> + Clone
       + Send {
    service_fn(|_: http::Request<Full<Bytes>>| async {
        let mut res = http::Response::new(Full::new(Bytes::from_static(b"{\"id\":1}")));
        for (name, value) in [
            ("cache-control", "max-age=60"),
            ("content-type", "application/json"),
            ("date", "Thu, 03 Dec 2026 01:00:00 GMT"),
            ("etag", "\"v1\""),
            ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ] {
            res.headers_mut()
                .insert(name, http::HeaderValue::from_static(value));
        }
        Ok::<_, BoxError>(res)
    })
}

#[tokio::test(flavor = "current_thread")]
async fn an_http_cache_miss_that_is_stored_allocates_little_beyond_what_it_keeps() {
    let origin = storable_origin();
    // Fewer entries than passes: every stored miss evicts one too.
    let cached = HttpCacheLayer::builder()
        .max_entries(32)
        .build()
        .unwrap()
        .layer(origin.clone());
    let (extra, bare) = extra_per_miss(&origin, &cached).await;
    // What a stored miss allocates of its own: its key, the boxed miss
    // future, the request head it keeps, the coalescing flight's key, the
    // parsed `Cache-Control`, the stored copy (fields in one buffer and
    // their map, the entry, the store's item). 21 when this
    // test was written, 20 with the `Cache-Control` parsed off the heap,
    // 18 with a lone variant kept without a list, 16 with the body
    // copied with the values into one buffer rather than gathered into
    // one of its own first, 14 with no copy of the URI kept (2026-12-03).
    assert!(
        extra <= 14,
        "{extra} allocations a pass over the origin's {bare}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_http_cache_over_collect_keeps_the_copy_collect_made() {
    // `fetch::Collect` copies a response's body and field values into one
    // buffer of their own; the cache above it stores them as they are.
    let collected = tower_patterns::fetch::CollectLayer::new().layer(storable_origin());
    let cached = HttpCacheLayer::builder()
        .max_entries(32)
        .build()
        .unwrap()
        .layer(collected.clone());
    let (extra, bare) = extra_per_miss(&collected, &cached).await;
    // Two fewer than over an origin whose fields it must copy (above):
    // neither the body nor the values are copied again (2026-12-03).
    assert!(
        extra <= 12,
        "{extra} allocations a pass over the collected origin's {bare}"
    );
}
