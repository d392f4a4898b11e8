//! `cache::RedisStore` as the cache's shared tier, against real
//! redis-servers: the one `.ci/redis.sh` starts (TOWER_PATTERNS_REDIS_URL)
//! and, for the outage tests, servers a test starts, pauses and kills.
//!
//! Each "replica" is its own `CacheLayer` with its own `RedisStore` (its own
//! connections and tier 1), as separate processes would have. These run on
//! the wall clock (expiry in Redis is wall-clock time); waits poll a
//! condition under a deadline.
#![cfg(feature = "redis")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::redis_server::{fresh_key, raw, redis_url, wait_for, wait_until, OwnServer};
use futures::future::join_all;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};
use tower_patterns::cache::{CacheHandle, CacheLayer, JsonCodec, RedisStore};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
use tower_patterns::BoxError;

const MS: Duration = Duration::from_millis(1);
const SECS: Duration = Duration::from_secs(1);

type Svc = BoxCloneSyncService<String, String, BoxError>;

/// One replica: its store, its cache handle, and its service.
struct Replica {
    store: RedisStore,
    handle: CacheHandle<String, String>,
    svc: Svc,
}

impl Replica {
    async fn get(&self, key: &str) -> String {
        self.svc.clone().oneshot(key.to_owned()).await.unwrap()
    }
}

/// The inner service every replica of a test shares: counts its calls and
/// answers `"{name}#{call}:{key}"` after `delay`.
#[derive(Clone)]
struct Backend {
    calls: Arc<AtomicUsize>,
    delay: Duration,
}

impl Backend {
    fn new(delay: Duration) -> Self {
        Backend {
            calls: Arc::new(AtomicUsize::new(0)),
            delay,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(&self, name: &'static str) -> Svc {
        let calls = self.calls.clone();
        let delay = self.delay;
        BoxCloneSyncService::new(service_fn(move |key: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, BoxError>(format!("{name}#{n}:{key}"))
            }
        }))
    }
}

fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url)
        .key_prefix(prefix)
        .timeout(SECS)
        .build()
        .unwrap()
}

type Builder = tower_patterns::cache::CacheLayerBuilder<
    String,
    String,
    tower_patterns::cache::FnKey<fn(&String) -> String>,
>;

fn builder() -> Builder {
    CacheLayer::<String, String>::builder()
        .key_fn(String::clone as fn(&String) -> String)
        .ttl(60 * SECS)
        .lease_ttl(2 * SECS)
}

/// A replica over `store`, made by `builder`, calling `backend` as `name`.
async fn replica_with(
    store: RedisStore,
    builder: Builder,
    backend: &Backend,
    name: &'static str,
) -> Replica {
    let layer = builder.build_with_remote(store.clone(), JsonCodec).unwrap();
    let handle = layer.handle();
    let svc = BoxCloneSyncService::new(layer.layer(backend.service(name)));
    // Listening before the test starts, so no broadcast is missed.
    let s = store.clone();
    wait_until("the events subscription", 10 * SECS, || {
        s.stats().subscribed
    })
    .await;
    Replica { store, handle, svc }
}

async fn replica(url: &str, prefix: &str, backend: &Backend, name: &'static str) -> Replica {
    replica_with(store(url, prefix), builder(), backend, name).await
}

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .unwrap()
        == 1
}

// ---- sharing ----------------------------------------------------------------

#[tokio::test]
async fn a_second_replica_answers_from_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("share");
    let backend = Backend::new(Duration::ZERO);
    let a = replica(&url, &prefix, &backend, "a").await;
    let b = replica(&url, &prefix, &backend, "b").await;

    assert_eq!(a.get("k").await, "a#1:k");
    assert_eq!(b.get("k").await, "a#1:k");
    assert_eq!(backend.calls(), 1);
    let stats = b.handle.stats();
    assert_eq!((stats.misses, stats.remote_hits), (1, 1));
    // Now in B's memory: a tier-1 hit.
    assert_eq!(b.get("k").await, "a#1:k");
    assert_eq!(b.handle.stats().hits, 1);
    assert_eq!(b.store.stats().errors, 0);
}

#[tokio::test]
async fn a_stampede_over_four_replicas_makes_one_inner_call() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("stampede");
    let backend = Backend::new(100 * MS);
    let mut replicas = Vec::new();
    for name in ["r0", "r1", "r2", "r3"] {
        replicas.push(replica(&url, &prefix, &backend, name).await);
    }
    let answers = join_all((0..100).map(|i| replicas[i % 4].get("hot"))).await;
    assert_eq!(backend.calls(), 1, "one inner call for 100 misses");
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    let remote_hits: u64 = replicas.iter().map(|r| r.handle.stats().remote_hits).sum();
    assert_eq!(remote_hits, 3, "the three other replicas read the value");
    assert!(replicas
        .iter()
        .all(|r| r.handle.stats().remote_fallbacks == 0));
}

/// The lease holder dies mid-load (its runtime is shut down, as a process
/// would die): the key waits out the lease, then another replica loads it.
#[tokio::test]
async fn a_dead_lease_holder_hands_over_after_the_lease() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("dead");
    let lease = 500 * MS;

    // Replica A, on a runtime of its own, loads forever.
    let rt_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
    let a_layer = {
        let _enter = rt_a.enter();
        builder()
            .lease_ttl(lease)
            .build_with_remote(store(&url, &prefix), JsonCodec)
            .unwrap()
    };
    let a = a_layer.layer(service_fn(move |_: String| {
        if let Some(tx) = started_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        std::future::pending::<Result<String, BoxError>>()
    }));
    rt_a.spawn(a.oneshot("k".to_owned()));
    started.await.unwrap();
    // A holds the lease now; it dies without releasing it.
    rt_a.shutdown_background();

    let backend = Backend::new(Duration::ZERO);
    let b = replica_with(
        store(&url, &prefix),
        builder().lease_ttl(lease),
        &backend,
        "b",
    )
    .await;
    assert_eq!(b.get("k").await, "b#1:k");
    assert_eq!(backend.calls(), 1);
    // B took the lease over once it expired: it did not give up on Redis.
    let stats = b.handle.stats();
    assert_eq!(
        (stats.remote_fallbacks, stats.remote_hits),
        (0, 0),
        "{stats:?}"
    );
}

/// The lease holder's load panics: its lease is released at once, and the
/// replica waiting for it loads without waiting out the (long) lease.
#[tokio::test]
async fn a_panicking_load_releases_its_lease() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("panic");
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let (go, go_rx) = tokio::sync::oneshot::channel::<()>();
    let hooks = Arc::new(std::sync::Mutex::new(Some((started_tx, go_rx))));
    let a = builder()
        .lease_ttl(60 * SECS)
        .build_with_remote(store(&url, &prefix), JsonCodec)
        .unwrap()
        .layer(service_fn(move |_: String| {
            let hooks = hooks.lock().unwrap().take();
            async move {
                let (started, go) = hooks.expect("called once");
                let _ = started.send(());
                let _ = go.await;
                panic!("the inner service panics mid-load (on purpose)");
                #[allow(unreachable_code)]
                Ok::<String, BoxError>(String::new())
            }
        }));
    let a_call = tokio::spawn(a.oneshot("k".to_owned()));
    started.await.unwrap();

    let backend = Backend::new(Duration::ZERO);
    let b = replica_with(
        store(&url, &prefix),
        builder().lease_ttl(60 * SECS),
        &backend,
        "b",
    )
    .await;
    let b_call = tokio::spawn({
        let svc = b.svc.clone();
        async move { svc.oneshot("k".to_owned()).await }
    });
    // B has read and found the lease taken (a GET, then SET NX + PTTL).
    let s = b.store.clone();
    wait_until("B to wait for the lease", 5 * SECS, || s.stats().calls >= 2).await;
    go.send(()).unwrap();
    assert!(a_call.await.unwrap().is_err(), "A's load was abandoned");
    let answer = tokio::time::timeout(10 * SECS, b_call)
        .await
        .expect("B loads once the lease is released, not after 60 s")
        .unwrap()
        .unwrap();
    assert_eq!(answer, "b#1:k");
}

#[tokio::test]
async fn invalidate_on_one_replica_is_seen_by_the_others() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("invalidate");
    let backend = Backend::new(Duration::ZERO);
    let a = replica(&url, &prefix, &backend, "a").await;
    let b = replica(&url, &prefix, &backend, "b").await;
    assert_eq!(a.get("k").await, "a#1:k");
    assert_eq!(b.get("k").await, "a#1:k");
    assert_eq!(b.handle.stats().entries, 1);

    assert!(a.handle.invalidate(&"k".to_owned()));
    let h = b.handle.clone();
    wait_until("B to drop its copy", 5 * SECS, || h.stats().entries == 0).await;
    let mut conn = raw(&url).await;
    assert!(!exists(&mut conn, &b.store.redis_key("k")).await);
    assert_eq!(b.get("k").await, "b#2:k");
    assert_eq!(backend.calls(), 2);
}

#[tokio::test]
async fn clear_empties_every_replica_and_only_its_namespace() {
    let Some(url) = redis_url() else { return };
    // A glob character in the prefix: `SCAN MATCH` must take it literally.
    let base = fresh_key("clear");
    let prefix = format!("{base}[*]:");
    let backend = Backend::new(Duration::ZERO);
    let a = replica(&url, &prefix, &backend, "a").await;
    let b = replica(&url, &prefix, &backend, "b").await;
    for k in ["x", "y", "z"] {
        a.get(k).await;
        b.get(k).await;
    }
    let mut conn = raw(&url).await;
    // A neighbour that the unescaped pattern `{base}[*]:*` would match.
    let neighbour = format!("{base}*:v:x");
    let () = redis::cmd("SET")
        .arg(&neighbour)
        .arg("keep me")
        .query_async(&mut conn)
        .await
        .unwrap();
    b.handle.clear();
    let h = a.handle.clone();
    wait_until("A to drop its copies", 5 * SECS, || h.stats().entries == 0).await;
    for k in ["x", "y", "z"] {
        assert!(!exists(&mut conn, &a.store.redis_key(k)).await, "{k}");
    }
    assert!(
        exists(&mut conn, &neighbour).await,
        "another namespace was cleared"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&neighbour)
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// Both replicas hold the entry when it goes stale; both keep answering
/// with it and the refresh happens once, for both.
#[tokio::test]
async fn stale_while_revalidate_across_replicas_refreshes_once() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("swr");
    let ttl = 300 * MS;
    let backend = Backend::new(50 * MS);
    let b = || builder().ttl(ttl).stale_while_revalidate(60 * SECS);
    let a = replica_with(store(&url, &prefix), b(), &backend, "a").await;
    let c = replica_with(store(&url, &prefix), b(), &backend, "c").await;
    assert_eq!(a.get("k").await, "a#1:k");
    assert_eq!(c.get("k").await, "a#1:k");
    let loaded = std::time::Instant::now();
    wait_until("the entry to go stale", 5 * SECS, || {
        loaded.elapsed() > ttl + 20 * MS
    })
    .await;

    // Stale answers at once, on both, while one refresh runs.
    let answers = join_all((0..20).map(|i| if i % 2 == 0 { a.get("k") } else { c.get("k") })).await;
    assert!(answers.iter().all(|x| x == "a#1:k"), "{answers:?}");
    for r in [&a, &c] {
        let r = r.svc.clone();
        wait_for("the refreshed value", 5 * SECS, || {
            let r = r.clone();
            async move { (r.oneshot("k".to_owned()).await.unwrap() != "a#1:k").then_some(()) }
        })
        .await;
    }
    assert_eq!(backend.calls(), 2, "one refresh across both replicas");
    assert_eq!(a.get("k").await, c.get("k").await);
}

// ---- bad input --------------------------------------------------------------

#[tokio::test]
async fn bad_bytes_under_a_key_are_a_counted_miss() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("bad");
    let backend = Backend::new(Duration::ZERO);
    let a = replica(&url, &prefix, &backend, "a").await;
    let mut conn = raw(&url).await;
    // Garbage; a valid frame head over bytes that are not JSON; a frame
    // kept for less time than it is fresh.
    let mut head = vec![0xC1];
    head.extend_from_slice(&u64::MAX.to_be_bytes());
    head.extend_from_slice(&u64::MAX.to_be_bytes());
    let mut not_json = head.clone();
    not_json.extend_from_slice(b"\xff{");
    let mut inverted = vec![0xC1];
    inverted.extend_from_slice(&u64::MAX.to_be_bytes());
    inverted.extend_from_slice(&1u64.to_be_bytes());
    inverted.extend_from_slice(b"\"v\"");
    let cases: [&[u8]; 4] = [b"", b"\x00garbage", &not_json, &inverted];
    for (i, bytes) in cases.into_iter().enumerate() {
        let key = format!("k{i}");
        let () = redis::cmd("SET")
            .arg(a.store.redis_key(&key))
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(a.get(&key).await, format!("a#{}:{key}", i + 1));
    }
    assert_eq!(a.handle.stats().remote_bad_entries, 4);
    assert_eq!(backend.calls(), 4);
    // The loads wrote good entries over the bad ones.
    let b = replica(&url, &prefix, &backend, "b").await;
    assert_eq!(b.get("k2").await, "a#3:k2");
    assert_eq!(b.handle.stats().remote_hits, 1);
}

#[tokio::test]
async fn oversize_entries_are_served_but_not_shared() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("big");
    let backend = Backend::new(Duration::ZERO);
    let a = replica_with(
        store(&url, &prefix),
        builder().max_entry_bytes(64),
        &backend,
        "a",
    )
    .await;
    let long = "x".repeat(100);
    assert_eq!(a.get(&long).await, format!("a#1:{long}"));
    assert_eq!(a.get("short").await, "a#2:short");
    assert_eq!(a.handle.stats().remote_too_large, 1);
    let mut conn = raw(&url).await;
    assert!(!exists(&mut conn, &a.store.redis_key(&long)).await);
    assert!(exists(&mut conn, &a.store.redis_key("short")).await);
}

// ---- Redis down -------------------------------------------------------------

fn outage_store(server: &OwnServer, prefix: &str) -> RedisStore {
    RedisStore::builder(server.url(""))
        .key_prefix(prefix)
        .timeout(100 * MS)
        .circuit_breaker(CircuitBreakerLayer::consecutive(3, 300 * MS))
        .build()
        .unwrap()
}

/// Misses until the remote tier is read and written again.
async fn until_shared_again(r: &Replica, url: &str) {
    let conn = raw(url).await;
    let mut n = 0;
    wait_for("the cache to use Redis again", 10 * SECS, || {
        n += 1;
        let key = format!("again{n}");
        let svc = r.svc.clone();
        let redis_key = r.store.redis_key(&key);
        let mut conn = conn.clone();
        async move {
            svc.oneshot(key).await.unwrap();
            exists(&mut conn, &redis_key).await.then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn a_paused_redis_costs_timeouts_then_nothing_and_recovers() {
    if redis_url().is_none() {
        return;
    }
    let server = OwnServer::start(&[]).await;
    let backend = Backend::new(Duration::ZERO);
    let a = replica_with(outage_store(&server, "p:"), builder(), &backend, "a").await;
    assert_eq!(a.get("warm").await, "a#1:warm");

    server.signal("STOP");
    // Tier-1 hits go on; misses go to the inner service.
    for i in 0..10 {
        assert_eq!(a.get("warm").await, "a#1:warm");
        assert_eq!(a.get(&format!("m{i}")).await, format!("a#{}:m{i}", i + 2));
    }
    let stats = a.handle.stats();
    assert_eq!(stats.remote_fallbacks, 10, "{stats:?}");
    let redis = a.store.stats();
    assert!(redis.timeouts >= 3, "{redis:?}");
    assert!(redis.rejected_by_breaker >= 1, "{redis:?}");
    assert_ne!(redis.breaker, State::Closed);

    server.signal("CONT");
    until_shared_again(&a, &server.url("")).await;
    assert_eq!(a.store.stats().breaker, State::Closed);
}

#[tokio::test]
async fn a_stopped_redis_falls_back_and_recovers_after_restart() {
    if redis_url().is_none() {
        return;
    }
    let mut server = OwnServer::start(&[]).await;
    let backend = Backend::new(Duration::ZERO);
    let a = replica_with(outage_store(&server, "s:"), builder(), &backend, "a").await;
    assert_eq!(a.get("warm").await, "a#1:warm");

    server.kill().await;
    for i in 0..10 {
        assert_eq!(a.get("warm").await, "a#1:warm");
        assert_eq!(a.get(&format!("m{i}")).await, format!("a#{}:m{i}", i + 2));
    }
    assert_eq!(a.handle.stats().remote_fallbacks, 10);
    let redis = a.store.stats();
    assert!(redis.redis_errors + redis.timeouts >= 3, "{redis:?}");
    assert!(redis.rejected_by_breaker >= 1, "{redis:?}");

    server.restart().await;
    until_shared_again(&a, &server.url("")).await;
    // The subscription came back too, and tier 1 was dropped with it (it
    // may have missed invalidations): "warm" is read again.
    let s = a.store.clone();
    wait_until("the subscription to come back", 10 * SECS, || {
        s.stats().resyncs >= 1 && s.stats().subscribed
    })
    .await;
    assert_ne!(a.get("warm").await, "a#1:warm");
}
