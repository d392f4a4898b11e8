//! Behaviour of `tower_patterns::cache` through its public API, in paused time.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use futures::FutureExt;
use serde::Serialize;
use tokio::time::{advance, sleep, Instant};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_patterns::cache::{
    CacheLayer, Entry, LoadAbandoned, Md5Json, MemoryStore, SharedError, Store,
};
use tower_patterns::classify::HttpClassify;
use tower_patterns::BoxError;

#[derive(Debug, Clone, PartialEq)]
struct Boom(u64);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom #{}", self.0)
    }
}

impl std::error::Error for Boom {}

/// A backend with a switchable delay, failure mode and readiness; it
/// answers `"<key>@v<version>"` where `version` counts its calls.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<AtomicU64>,
    fail: Arc<AtomicBool>,
    not_ready: Arc<AtomicBool>,
    panic: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

impl Backend {
    fn slow(ms: u64) -> Self {
        let b = Backend::default();
        b.delay_ms.store(ms, Ordering::SeqCst);
        b
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Service<u64> for Backend {
    type Response = String;
    type Error = Boom;
    type Future = BoxFuture<'static, Result<String, Boom>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Boom>> {
        // Never wakes: a caller that waits for readiness hangs (in paused
        // time the runtime would report the test as stuck).
        if self.not_ready.load(Ordering::SeqCst) {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, key: u64) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let fail = self.fail.load(Ordering::SeqCst);
        let panic = self.panic.load(Ordering::SeqCst);
        let delay = Duration::from_millis(self.delay_ms.load(Ordering::SeqCst));
        Box::pin(async move {
            if !delay.is_zero() {
                sleep(delay).await;
            }
            assert!(!panic, "backend panicked on purpose");
            if fail {
                Err(Boom(n))
            } else {
                Ok(format!("{key}@v{n}"))
            }
        })
    }
}

type Svc = tower_patterns::cache::Cache<
    Backend,
    u64,
    String,
    tower_patterns::cache::FnKey<fn(&u64) -> u64>,
    tower_patterns::classify::DefaultClassify,
>;

fn by_id(k: &u64) -> u64 {
    *k
}

fn layer(
    f: impl FnOnce(
        tower_patterns::cache::CacheLayerBuilder<
            u64,
            String,
            tower_patterns::cache::FnKey<fn(&u64) -> u64>,
        >,
    ) -> tower_patterns::cache::CacheLayerBuilder<
        u64,
        String,
        tower_patterns::cache::FnKey<fn(&u64) -> u64>,
    >,
    backend: &Backend,
) -> (Svc, tower_patterns::cache::CacheHandle<u64, String>) {
    let builder = CacheLayer::<u64, String>::builder()
        .ttl(Duration::from_secs(10))
        .key_fn(by_id as fn(&u64) -> u64);
    let layer = f(builder).build().unwrap();
    let handle = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service(backend.clone());
    (svc, handle)
}

async fn get(svc: &mut Svc, key: u64) -> Result<String, BoxError> {
    svc.ready().await?.call(key).await
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_ttl() {
    let backend = Backend::default();
    let (mut svc, handle) = layer(|b| b, &backend);

    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v1");
    advance(Duration::from_secs(9)).await;
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v1");
    assert_eq!(backend.calls(), 1);

    advance(Duration::from_secs(1)).await;
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v2");
    assert_eq!(backend.calls(), 2);

    let s = handle.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn cleanup_and_invalidate_remove_entries() {
    let backend = Backend::default();
    let (mut svc, handle) = layer(|b| b, &backend);
    for k in 0..5 {
        get(&mut svc, k).await.unwrap();
    }
    assert_eq!(handle.stats().entries, 5);
    assert!(handle.invalidate(&3));
    assert!(!handle.invalidate(&3));
    assert_eq!(handle.stats().entries, 4);
    assert_eq!(handle.cleanup(), 0, "nothing has expired yet");

    advance(Duration::from_secs(11)).await;
    assert_eq!(handle.cleanup(), 4);
    assert_eq!(handle.stats().entries, 0);

    get(&mut svc, 1).await.unwrap();
    handle.clear();
    assert_eq!(handle.stats().entries, 0);
    get(&mut svc, 1).await.unwrap();
    assert_eq!(backend.calls(), 7);
}

#[tokio::test(start_paused = true)]
async fn hundred_concurrent_identical_requests_make_one_call() {
    let backend = Backend::slow(100);
    let (svc, handle) = layer(|b| b, &backend);

    let calls = (0..100).map(|_| {
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(42).await }
    });
    let results = join_all(calls).await;

    assert_eq!(backend.calls(), 1);
    for r in results {
        assert_eq!(r.unwrap(), "42@v1");
    }
    let s = handle.stats();
    assert_eq!((s.misses, s.coalesced, s.hits), (1, 99, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_first_caller_does_not_strand_the_others() {
    let backend = Backend::slow(100);
    let (mut svc, handle) = layer(|b| b, &backend);

    let mut first = svc.ready().await.unwrap().call(7);
    assert!((&mut first).now_or_never().is_none());
    let second = svc.ready().await.unwrap().call(7);
    let third = svc.ready().await.unwrap().call(7);
    drop(first);

    let (a, b) = tokio::join!(second, third);
    assert_eq!(a.unwrap(), "7@v1");
    assert_eq!(b.unwrap(), "7@v1");
    assert_eq!(backend.calls(), 1);

    // Even with every caller gone, the load finishes and fills the cache.
    let lone = svc.ready().await.unwrap().call(8);
    drop(lone);
    sleep(Duration::from_millis(200)).await;
    assert_eq!(get(&mut svc, 8).await.unwrap(), "8@v2");
    assert_eq!(backend.calls(), 2);
    assert_eq!(handle.stats().hits, 1);
}

#[tokio::test(start_paused = true)]
async fn a_lone_miss_loads_in_its_callers_future_until_a_second_caller_joins() {
    let backend = Backend::slow(100);
    let (mut svc, handle) = layer(|b| b, &backend);
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };

    let mut first = svc.ready().await.unwrap().call(7);
    assert!((&mut first).now_or_never().is_none());
    assert_eq!(backend.calls(), 1);
    assert_eq!(tasks(), 0, "a lone miss needs no task");

    // A second caller joins; the first is not polled again until the
    // second has its answer: the second must not wait on it.
    let second = svc.ready().await.unwrap().call(7);
    assert_eq!(tasks(), 1, "the load moved to a task");
    let got = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second caller was stalled by the first");
    assert_eq!(got.unwrap(), "7@v1");
    assert_eq!(first.await.unwrap(), "7@v1");
    assert_eq!(backend.calls(), 1);
    let s = handle.stats();
    assert_eq!((s.misses, s.coalesced), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_load_releases_its_waiters() {
    let backend = Backend::slow(10);
    backend.panic.store(true, Ordering::SeqCst);
    let (svc, _handle) = layer(|b| b, &backend);

    let results = join_all((0..3).map(|_| {
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(1).await }
    }))
    .await;
    for r in results {
        assert!(r.unwrap_err().downcast_ref::<LoadAbandoned>().is_some());
    }

    backend.panic.store(false, Ordering::SeqCst);
    let mut svc = svc.clone();
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v2");
}

#[tokio::test(start_paused = true)]
async fn a_lone_panicking_load_answers_abandoned_like_a_shared_one() {
    // A lone miss loads in its caller's future; a panic there is caught
    // and answered as it is when the load runs in a task.
    let backend = Backend::slow(10);
    backend.panic.store(true, Ordering::SeqCst);
    let (mut svc, _handle) = layer(|b| b, &backend);
    let err = get(&mut svc, 1).await.unwrap_err();
    assert!(err.downcast_ref::<LoadAbandoned>().is_some(), "{err}");

    backend.panic.store(false, Ordering::SeqCst);
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v2");
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_old_value_and_refreshes_once() {
    let backend = Backend::slow(50);
    let (mut svc, handle) = layer(
        |b| b.stale_while_revalidate(Duration::from_secs(30)),
        &backend,
    );

    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v1");
    advance(Duration::from_secs(11)).await;

    // Stale: every call answers at once, with the old value.
    for _ in 0..20 {
        let fut = svc.ready().await.unwrap().call(1);
        let res = fut.now_or_never().expect("stale hit must not wait");
        assert_eq!(res.unwrap(), "1@v1");
    }
    // One background refresh, not twenty.
    sleep(Duration::from_millis(100)).await;
    assert_eq!(backend.calls(), 2);
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v2");
    assert_eq!(backend.calls(), 2);

    let s = handle.stats();
    assert_eq!(s.stale_served, 20);
    assert_eq!(s.hits, 21);

    // Past the stale window the entry is a plain miss again.
    advance(Duration::from_secs(41)).await;
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v3");
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_old_value_when_the_inner_call_fails() {
    let backend = Backend::default();
    let (mut svc, handle) = layer(|b| b.stale_if_error(Duration::from_secs(60)), &backend);

    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v1");
    advance(Duration::from_secs(11)).await;
    backend.fail.store(true, Ordering::SeqCst);

    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v1");
    assert_eq!(backend.calls(), 2, "the failed refresh was attempted");
    assert_eq!(handle.stats().stale_served, 1);

    // Once the window has passed the failure comes through.
    advance(Duration::from_secs(60)).await;
    let err = get(&mut svc, 1).await.unwrap_err();
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom(3)));

    // And a recovered backend refills the cache.
    backend.fail.store(false, Ordering::SeqCst);
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v4");
}

#[tokio::test(start_paused = true)]
async fn a_hit_returns_while_the_inner_service_is_not_ready() {
    let backend = Backend::default();
    let (mut svc, handle) = layer(|b| b, &backend);
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v1");

    backend.not_ready.store(true, Ordering::SeqCst);
    let ready = svc.ready().now_or_never().expect("cache must be ready");
    let res = ready
        .unwrap()
        .call(1)
        .now_or_never()
        .expect("hit must not wait");
    assert_eq!(res.unwrap(), "1@v1");

    // A miss does wait for the inner service.
    let mut miss = svc.ready().await.unwrap().call(2);
    assert!((&mut miss).now_or_never().is_none());
    sleep(Duration::from_secs(1)).await;
    assert!((&mut miss).now_or_never().is_none());
    assert_eq!(backend.calls(), 1);
    backend.not_ready.store(false, Ordering::SeqCst);
    drop(miss);
    assert_eq!(handle.stats().hits, 1);
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_cached() {
    let backend = Backend::default();
    let (mut svc, handle) = layer(|b| b, &backend);

    backend.fail.store(true, Ordering::SeqCst);
    let err = get(&mut svc, 1).await.unwrap_err();
    // An unshared failure reaches the caller unchanged.
    assert_eq!(err.downcast_ref::<Boom>(), Some(&Boom(1)));
    assert_eq!(handle.stats().entries, 0);

    backend.fail.store(false, Ordering::SeqCst);
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v2");
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_shared_failure_reaches_every_waiter() {
    let backend = Backend::slow(10);
    backend.fail.store(true, Ordering::SeqCst);
    let (svc, _handle) = layer(|b| b, &backend);
    let results = join_all((0..3).map(|_| {
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(1).await }
    }))
    .await;
    assert_eq!(backend.calls(), 1);
    for r in results {
        let err = r.unwrap_err();
        let shared = err.downcast_ref::<SharedError>().expect("shared error");
        assert_eq!(shared.downcast_ref::<Boom>(), Some(&Boom(1)));
    }
}

#[tokio::test(start_paused = true)]
async fn cache_errors_caches_failures_for_their_own_ttl() {
    let backend = Backend::default();
    let (mut svc, _handle) = layer(|b| b.cache_errors(Duration::from_secs(2)), &backend);

    backend.fail.store(true, Ordering::SeqCst);
    let e1 = get(&mut svc, 1).await.unwrap_err();
    let e2 = get(&mut svc, 1).await.unwrap_err();
    assert_eq!(backend.calls(), 1);
    for e in [e1, e2] {
        let shared = e.downcast_ref::<SharedError>().expect("cached error");
        assert_eq!(shared.downcast_ref::<Boom>(), Some(&Boom(1)));
    }

    backend.fail.store(false, Ordering::SeqCst);
    advance(Duration::from_secs(2)).await;
    assert_eq!(get(&mut svc, 1).await.unwrap(), "1@v2");
}

#[tokio::test(start_paused = true)]
async fn http_failures_and_ignored_statuses_are_not_cached() {
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |path: &'static str| {
            calls.fetch_add(1, Ordering::SeqCst);
            let status = match path {
                "/missing" => 404,
                "/broken" => 503,
                _ => 200,
            };
            async move {
                Ok::<_, std::io::Error>(
                    http::Response::builder().status(status).body(path).unwrap(),
                )
            }
        })
    };
    let layer = CacheLayer::builder()
        .key_fn(|p: &&'static str| *p)
        .classify(HttpClassify)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    for path in ["/ok", "/missing", "/broken"] {
        for _ in 0..2 {
            svc.ready().await.unwrap().call(path).await.unwrap();
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "only /ok was cached");
    assert_eq!(handle.stats().entries, 1);
}

#[derive(Serialize, Clone)]
struct Search {
    q: String,
    filters: HashMap<String, String>,
}

#[tokio::test(start_paused = true)]
async fn md5_json_keys_ignore_map_order() {
    let pairs: Vec<(String, String)> = (0..32)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let forward: HashMap<_, _> = pairs.iter().cloned().collect();
    let mut backward = HashMap::with_capacity(1);
    for (k, v) in pairs.iter().rev() {
        backward.insert(k.clone(), v.clone());
    }
    // Different insertion orders and capacities: iteration orders differ.
    let a = Search {
        q: "rust".into(),
        filters: forward,
    };
    let b = Search {
        q: "rust".into(),
        filters: backward,
    };
    assert_eq!(Md5Json::digest(&a).unwrap(), Md5Json::digest(&b).unwrap());
    let c = Search {
        q: "tower".into(),
        filters: a.filters.clone(),
    };
    assert_ne!(Md5Json::digest(&a).unwrap(), Md5Json::digest(&c).unwrap());

    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |req: Search| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(req.q) }
        })
    };
    let layer = CacheLayer::builder().build().unwrap();
    assert_eq!(layer.key_of(&a), Some(Md5Json::digest(&a).unwrap()));
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(inner);
    svc.ready().await.unwrap().call(a.clone()).await.unwrap();
    svc.ready().await.unwrap().call(b).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(handle.invalidate(&Md5Json::digest(&a).unwrap()));
}

#[tokio::test(start_paused = true)]
async fn max_entries_holds_through_the_service() {
    let backend = Backend::default();
    let (mut svc, handle) = layer(|b| b.max_entries(100), &backend);
    for k in 0..5_000 {
        get(&mut svc, k).await.unwrap();
        if k % 100 == 0 {
            assert!(handle.stats().entries <= 100);
        }
    }
    let s = handle.stats();
    assert!(s.entries <= 100 && s.entries >= 90, "{s:?}");
    assert_eq!(s.evictions, 5_000 - s.entries as u64);
}

#[test]
fn max_entries_holds_under_a_million_distinct_keys() {
    // The layer's own bounded store, driven directly: a million inserts
    // through the service would take minutes in a debug build.
    let store = MemoryStore::<u64, u64>::new(1_000);
    let now = Instant::now();
    let hot: Vec<u64> = (0..50).collect();
    for &k in &hot {
        store.insert(k, entry(k, now));
    }
    for k in 1_000u64..1_001_000 {
        store.insert(k, entry(k, now));
        if k % 1_000 == 0 {
            assert!(store.len() <= 1_000);
            // Keep the hot keys hot; they must survive the flood.
            for h in &hot {
                assert!(store.get(h, now).is_some(), "hot key {h} evicted at {k}");
            }
        }
    }
    assert!(store.len() <= 1_000);
    assert!(store.evictions() >= 1_000_000 - 1_000);
}

fn entry(v: u64, now: Instant) -> Entry<u64> {
    Entry {
        value: v,
        fresh_until: now + Duration::from_secs(60),
        keep_until: now + Duration::from_secs(60),
    }
}

#[test]
fn builder_rejects_bad_values() {
    let e = CacheLayer::<u64, u64>::builder()
        .ttl(Duration::ZERO)
        .key_fn(|k: &u64| *k)
        .build();
    assert_eq!(e.unwrap_err().field(), "ttl");
    let e = CacheLayer::<u64, u64>::builder()
        .max_entries(0)
        .key_fn(|k: &u64| *k)
        .build();
    assert_eq!(e.unwrap_err().field(), "max_entries");
    let e = CacheLayer::<u64, u64>::builder()
        .cache_errors(Duration::ZERO)
        .key_fn(|k: &u64| *k)
        .build();
    assert_eq!(e.unwrap_err().field(), "cache_errors");
    // Long durations are not refused: they saturate to "never" (issue 23;
    // tests/durations.rs drives them).
    CacheLayer::<u64, u64>::builder()
        .stale_while_revalidate(Duration::MAX)
        .key_fn(|k: &u64| *k)
        .build()
        .expect("Duration::MAX means no limit");
}

/// A store of our own: the in-memory one, counting what the layer asks.
struct Counting {
    inner: MemoryStore<u64, tower_patterns::cache::Cached<String>>,
    gets: AtomicUsize,
    inserts: AtomicUsize,
}

impl Store<u64, tower_patterns::cache::Cached<String>> for Counting {
    fn get(&self, key: &u64, now: Instant) -> Option<Entry<tower_patterns::cache::Cached<String>>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key, now)
    }
    fn insert(&self, key: u64, entry: Entry<tower_patterns::cache::Cached<String>>) {
        self.inserts.fetch_add(1, Ordering::SeqCst);
        self.inner.insert(key, entry)
    }
    fn remove(&self, key: &u64) -> bool {
        self.inner.remove(key)
    }
    fn clear(&self) {
        self.inner.clear()
    }
    fn cleanup(&self, now: Instant) -> usize {
        self.inner.cleanup(now)
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_store_is_used() {
    let store = Arc::new(Counting {
        inner: MemoryStore::new(10),
        gets: AtomicUsize::new(0),
        inserts: AtomicUsize::new(0),
    });
    struct Shared(Arc<Counting>);
    impl Store<u64, tower_patterns::cache::Cached<String>> for Shared {
        fn get(
            &self,
            key: &u64,
            now: Instant,
        ) -> Option<Entry<tower_patterns::cache::Cached<String>>> {
            self.0.get(key, now)
        }
        fn insert(&self, key: u64, entry: Entry<tower_patterns::cache::Cached<String>>) {
            self.0.insert(key, entry)
        }
        fn remove(&self, key: &u64) -> bool {
            self.0.remove(key)
        }
        fn clear(&self) {
            self.0.clear()
        }
        fn cleanup(&self, now: Instant) -> usize {
            self.0.cleanup(now)
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn evictions(&self) -> u64 {
            self.0.evictions()
        }
    }
    let backend = Backend::default();
    let layer = CacheLayer::<u64, String>::builder()
        .key_fn(|k: &u64| *k)
        .build_with_store(Shared(store.clone()))
        .unwrap();
    let handle = layer.handle();
    let mut svc = ServiceBuilder::new().layer(layer).service(backend.clone());
    svc.ready().await.unwrap().call(1).await.unwrap();
    svc.ready().await.unwrap().call(1).await.unwrap();
    assert_eq!(backend.calls(), 1);
    assert_eq!(store.inserts.load(Ordering::SeqCst), 1);
    assert!(store.gets.load(Ordering::SeqCst) >= 2);
    assert_eq!(handle.stats().entries, 1);
}

#[tokio::test(start_paused = true)]
async fn services_from_one_layer_share_the_cache() {
    let layer = CacheLayer::<u64, String>::builder()
        .key_fn(|k: &u64| *k)
        .build()
        .unwrap();
    let (a, b) = (Backend::default(), Backend::default());
    let mut svc_a = ServiceBuilder::new()
        .layer(layer.clone())
        .service(a.clone());
    let mut svc_b = ServiceBuilder::new()
        .layer(layer.clone())
        .service(b.clone());
    assert_eq!(svc_a.ready().await.unwrap().call(1).await.unwrap(), "1@v1");
    assert_eq!(svc_b.ready().await.unwrap().call(1).await.unwrap(), "1@v1");
    assert_eq!((a.calls(), b.calls()), (1, 0));
    let s = layer.handle().stats();
    assert_eq!((s.hits, s.misses), (1, 1));
    // The layer and every service it made report the same counters.
    assert_eq!(layer.stats(), s);
    assert_eq!(svc_a.stats(), s);
    assert_eq!(svc_b.stats(), s);
}

#[test]
fn max_entries_is_refused_with_a_store_of_ones_own() {
    let e = CacheLayer::<u64, String>::builder()
        .max_entries(10)
        .key_fn(|k: &u64| *k)
        .build_with_store(MemoryStore::new(10))
        .unwrap_err();
    assert_eq!(e.field(), "max_entries");
}
