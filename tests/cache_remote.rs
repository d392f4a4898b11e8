//! The cache's remote tier through the `RemoteStore` trait, on an in-memory
//! store shared by "replicas" in one test: the tier logic without a server,
//! on paused time (leases expire on tokio's clock here).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};
use tower_patterns::cache::{
    CacheHandle, CacheLayer, JsonCodec, Lease, LeaseToken, RemoteEvent, RemoteFuture,
    RemoteListener, RemoteStore,
};
use tower_patterns::BoxError;

const SECS: Duration = Duration::from_secs(1);

/// A remote store in memory; clones share it (they are the replicas'
/// views of one server).
#[derive(Clone, Default)]
struct Shared(Arc<Inner>);

#[derive(Default)]
struct Inner {
    values: Mutex<HashMap<String, Bytes>>,
    leases: Mutex<HashMap<String, (LeaseToken, Instant)>>,
    listeners: Mutex<Vec<RemoteListener>>,
    gets: AtomicUsize,
    failing: AtomicBool,
}

impl Shared {
    fn check(&self) -> Result<(), BoxError> {
        if self.0.failing.load(Ordering::SeqCst) {
            Err("the remote store is down".into())
        } else {
            Ok(())
        }
    }

    fn tell(&self, event: RemoteEvent<'_>) {
        let listeners = self.0.listeners.lock().unwrap().clone();
        for l in listeners {
            l(event);
        }
    }

    fn gets(&self) -> usize {
        self.0.gets.load(Ordering::SeqCst)
    }
}

impl RemoteStore for Shared {
    fn get<'a>(&'a self, key: &'a str) -> RemoteFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            self.0.gets.fetch_add(1, Ordering::SeqCst);
            self.check()?;
            Ok(self.0.values.lock().unwrap().get(key).cloned())
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: Bytes, _: Option<Duration>) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.0.values.lock().unwrap().insert(key.to_owned(), value);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            self.0.values.lock().unwrap().remove(key);
            self.tell(RemoteEvent::Invalidated(key));
            Ok(())
        })
    }

    fn clear(&self) -> RemoteFuture<'_, ()> {
        Box::pin(async move {
            self.check()?;
            self.0.values.lock().unwrap().clear();
            self.tell(RemoteEvent::Cleared);
            Ok(())
        })
    }

    fn lease<'a>(&'a self, key: &'a str, ttl: Duration) -> RemoteFuture<'a, Lease> {
        Box::pin(async move {
            self.check()?;
            let now = Instant::now();
            let mut leases = self.0.leases.lock().unwrap();
            match leases.get(key) {
                Some(&(_, until)) if until > now => Ok(Lease::Busy {
                    expires_in: Some(until - now),
                }),
                _ => {
                    let token = LeaseToken::random();
                    leases.insert(key.to_owned(), (token, now + ttl));
                    Ok(Lease::Acquired(token))
                }
            }
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: LeaseToken) -> RemoteFuture<'a, ()> {
        Box::pin(async move {
            self.check()?;
            let mut leases = self.0.leases.lock().unwrap();
            if leases.get(key).is_some_and(|(t, _)| *t == token) {
                leases.remove(key);
            }
            drop(leases);
            self.tell(RemoteEvent::Released(key));
            Ok(())
        })
    }

    fn listen(&self, listener: RemoteListener) {
        self.0.listeners.lock().unwrap().push(listener);
    }
}

type Svc = BoxCloneSyncService<String, String, BoxError>;

/// A replica over `remote` whose inner service takes `delay` and counts
/// its calls in `calls`.
fn replica(
    remote: &Shared,
    calls: &Arc<AtomicUsize>,
    delay: Duration,
    name: &'static str,
) -> (Svc, CacheHandle<String, String>) {
    let layer = CacheLayer::<String, String>::builder()
        .key_fn(String::clone)
        .ttl(60 * SECS)
        .lease_ttl(5 * SECS)
        .build_with_remote(remote.clone(), JsonCodec)
        .unwrap();
    let handle = layer.handle();
    let calls = calls.clone();
    let inner = service_fn(move |key: String| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(delay).await;
            Ok::<_, BoxError>(format!("{name}#{n}:{key}"))
        }
    });
    (BoxCloneSyncService::new(layer.layer(inner)), handle)
}

#[tokio::test(start_paused = true)]
async fn memory_hits_never_touch_the_remote_store() {
    let remote = Shared::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, handle) = replica(&remote, &calls, Duration::ZERO, "a");
    a.clone().oneshot("k".to_owned()).await.unwrap();
    let gets = remote.gets();
    for _ in 0..100 {
        assert_eq!(a.clone().oneshot("k".to_owned()).await.unwrap(), "a#1:k");
    }
    assert_eq!(remote.gets(), gets);
    assert_eq!(handle.stats().hits, 100);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_replica_gets_the_holders_value() {
    let remote = Shared::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, _) = replica(&remote, &calls, 2 * SECS, "a");
    let (b, b_handle) = replica(&remote, &calls, 2 * SECS, "b");
    let (x, y) = tokio::join!(a.oneshot("k".to_owned()), async {
        // B misses once A holds the lease.
        tokio::time::sleep(SECS).await;
        b.oneshot("k".to_owned()).await
    });
    assert_eq!(x.unwrap(), "a#1:k");
    assert_eq!(y.unwrap(), "a#1:k");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(b_handle.stats().remote_hits, 1);
}

/// A lease whose holder vanished (never released) is waited out, then the
/// waiting replica loads: no give-up, no fallback.
#[tokio::test(start_paused = true)]
async fn an_orphaned_lease_is_waited_out() {
    let remote = Shared::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let orphan = LeaseToken::random();
    remote
        .0
        .leases
        .lock()
        .unwrap()
        .insert("k".to_owned(), (orphan, Instant::now() + 3 * SECS));
    let (b, handle) = replica(&remote, &calls, Duration::ZERO, "b");
    assert_eq!(b.oneshot("k".to_owned()).await.unwrap(), "b#1:k");
    let stats = handle.stats();
    assert_eq!(
        (stats.remote_fallbacks, stats.remote_hits),
        (0, 0),
        "{stats:?}"
    );
    // Released after the load: the lease is free again.
    assert!(remote.0.leases.lock().unwrap().get("k").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failing_remote_store_sends_misses_to_the_inner_service() {
    let remote = Shared::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, handle) = replica(&remote, &calls, Duration::ZERO, "a");
    a.clone().oneshot("warm".to_owned()).await.unwrap();
    remote.0.failing.store(true, Ordering::SeqCst);
    for i in 0..5 {
        let key = format!("m{i}");
        assert_eq!(
            a.clone().oneshot(key.clone()).await.unwrap(),
            format!("a#{}:{key}", i + 2)
        );
        assert_eq!(
            a.clone().oneshot("warm".to_owned()).await.unwrap(),
            "a#1:warm"
        );
    }
    let stats = handle.stats();
    assert_eq!((stats.remote_fallbacks, stats.hits), (5, 5), "{stats:?}");
}
