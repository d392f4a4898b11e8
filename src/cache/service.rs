//! The [`Cache`] service: hits, misses, single-flight loads and
//! background refreshes.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::{Oneshot, ServiceExt};
use tower_service::Service;

use super::core::{later, Cached, Core, Policy};
use super::error::SharedError;
use super::flight::{BoxLoad, Flight, Output};
use super::future::ResponseFuture;
use super::handle::CacheHandle;
use super::key::KeyFn;
use super::stats::CacheStats;
use super::store::tiered::{Claim, Read};
use super::store::{Entry, LeaseToken, Store};
use crate::classify::{Classify, Outcome};
use crate::trace::{record, trace_event};
use crate::BoxError;

/// A service that answers from the cache when it can; made by
/// [`CacheLayer`](super::CacheLayer).
///
/// `poll_ready` is always ready: a hit never waits for the inner service.
/// On a miss the cache calls a clone of the inner service (with
/// [`ServiceExt::oneshot`], which waits for that clone's readiness) from
/// the caller's own response future; when a second caller asks for the
/// same key meanwhile, the load moves to a tokio task of its own, which
/// both wait on (so neither depends on the other being polled). Clones
/// share the cache.
pub struct Cache<S, Req, Res, KF: KeyFn<Req>, C> {
    inner: S,
    core: Arc<Core<KF::Key, Res>>,
    policy: Arc<Policy<KF, C>>,
    _req: PhantomData<fn(Req)>,
}

impl<S, Req, Res, KF: KeyFn<Req>, C> Cache<S, Req, Res, KF, C> {
    pub(crate) fn new(inner: S, core: Arc<Core<KF::Key, Res>>, policy: Arc<Policy<KF, C>>) -> Self {
        Cache {
            inner,
            core,
            policy,
            _req: PhantomData,
        }
    }

    /// A handle on the cache this service uses (shared with the layer
    /// that made it and every clone).
    pub fn handle(&self) -> CacheHandle<KF::Key, Res> {
        CacheHandle::new(self.core.clone())
    }

    /// A snapshot of the counters of the cache this service uses (shared
    /// with the layer that made it and every clone).
    pub fn stats(&self) -> CacheStats
    where
        Res: Clone + Send + Sync,
    {
        self.core.stats()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the cache, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, Req, Res, KF: KeyFn<Req>, C> Clone for Cache<S, Req, Res, KF, C> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
            core: self.core.clone(),
            policy: self.policy.clone(),
            _req: PhantomData,
        }
    }
}

impl<S: fmt::Debug, Req, Res, KF: KeyFn<Req>, C> fmt::Debug for Cache<S, Req, Res, KF, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("inner", &self.inner)
            .field("ttl", &self.core.ttl)
            .finish_non_exhaustive()
    }
}

impl<S, Req, Res, KF, C> Service<Req> for Cache<S, Req, Res, KF, C>
where
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
    Req: Send + 'static,
    Res: Clone + Send + Sync + 'static,
    KF: KeyFn<Req> + Send + Sync + 'static,
    C: Classify<Res, S::Error> + Send + Sync + 'static,
{
    type Response = Res;
    type Error = BoxError;
    type Future = ResponseFuture<Oneshot<S, Req>, Res>;

    /// Always ready: readiness of the inner service is awaited only on a
    /// miss, on the clone that makes the call.
    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(key) = self.policy.key_fn.key(&req) else {
            return ResponseFuture::direct(self.inner.clone().oneshot(req));
        };
        let core = &*self.core;
        let now = Instant::now();
        if let Some(entry) = core.store.get(&key, now) {
            if now < entry.fresh_until {
                core.counters.hit();
                return ResponseFuture::ready(entry.value.into_result());
            }
            if let Cached::Response(stale) = entry.value {
                if now < later(entry.fresh_until, core.swr) {
                    core.counters.stale_hit();
                    self.refresh(key, req, now);
                    return ResponseFuture::ready(Ok(stale));
                }
            }
        }
        self.load(key, req, now)
    }
}

impl<S, Req, Res, KF, C> Cache<S, Req, Res, KF, C>
where
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send,
    S::Future: Send,
    Req: Send + 'static,
    Res: Clone + Send + Sync + 'static,
    KF: KeyFn<Req> + Send + Sync + 'static,
    C: Classify<Res, S::Error> + Send + Sync + 'static,
{
    /// Serves a miss: joins the load in flight for `key`, or starts one.
    #[cold]
    fn load(
        &mut self,
        key: KF::Key,
        req: Req,
        now: Instant,
    ) -> ResponseFuture<Oneshot<S, Req>, Res> {
        let core = self.core.clone();
        // Hashed once more here, not on the hit path: the store's lookups,
        // the loads in flight and the load's own insert share this hash.
        let hash = core.hash(&key);
        let mut flights = core.flights();
        if let Some(flight) = flights.get(hash, &key) {
            let waiter = flight.join();
            drop(flights);
            core.counters.coalesced();
            return ResponseFuture::waiting(waiter);
        }
        // A load may have finished between our lookup and taking the lock.
        if let Some(entry) = core.store.get_hashed(hash, &key, now) {
            if now < entry.fresh_until {
                drop(flights);
                core.counters.hit();
                return ResponseFuture::ready(entry.value.into_result());
            }
        }
        core.counters.miss();
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime to share a load on: call through, uncached.
            drop(flights);
            return ResponseFuture::direct(self.inner.clone().oneshot(req));
        }
        // The load runs inline, in this caller's future, until a second
        // caller joins (see `flight.rs`).
        let flight = Flight::leading();
        let waiter = flight.lead();
        flights.insert(hash, key.clone(), flight.clone());
        drop(flights);
        trace_event!(DEBUG, "cache miss: loading");
        flight
            .clone()
            .park(Box::pin(self.load_task(key, hash, req, flight)));
        ResponseFuture::waiting(waiter)
    }

    /// Starts a background refresh of a stale `key`, unless one is
    /// already running or the entry was refreshed meanwhile.
    #[cold]
    fn refresh(&mut self, key: KF::Key, req: Req, now: Instant) {
        let core = self.core.clone();
        let hash = core.hash(&key);
        let mut flights = core.flights();
        if flights.get(hash, &key).is_some() {
            return;
        }
        if matches!(core.store.get_hashed(hash, &key, now), Some(e) if now < e.fresh_until) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let flight = Flight::new();
        flights.insert(hash, key.clone(), flight.clone());
        drop(flights);
        trace_event!(DEBUG, "cache entry stale: refreshing in the background");
        rt.spawn(self.load_task(key, hash, req, flight));
    }

    /// The load that calls the inner service once for `key`, stores what
    /// may be stored and hands the outcome to every waiter; with a remote
    /// tier it reads that first (and may be served there). Boxed: it is
    /// parked in its flight or spawned.
    fn load_task(&self, key: KF::Key, hash: u64, req: Req, flight: Arc<Flight<Res>>) -> BoxLoad {
        // The guard first: from here on, a panic (even in the inner
        // service's `clone`) completes the flight.
        let guard = LoadGuard {
            key,
            reg: Registration {
                core: self.core.clone(),
                hash,
                flight,
                done: false,
            },
        };
        let inner = self.inner.clone();
        let policy = self.policy.clone();
        if guard.reg.core.remote.is_none() {
            // Without a remote tier the load stays small.
            return Box::pin(call_inner(guard, inner, policy, req, None));
        }
        // Read the remote tier, then take the key's lease or wait for the
        // replica that holds it; all in the load's one future.
        Box::pin(async move {
            match before_load(guard.reg.core.clone(), guard).await {
                Before::Served => {}
                Before::Load { guard, lease } => call_inner(guard, inner, policy, req, lease).await,
            }
        })
    }
}

/// The inner call of a load (after [`before_load`], with a remote tier):
/// stores what may be stored, answers the waiters, then shares the value
/// with the remote tier under `remote`'s key and releases its lease.
async fn call_inner<S, Req, Res, K, KF, C>(
    guard: LoadGuard<K, Res>,
    inner: S,
    policy: Arc<Policy<KF, C>>,
    req: Req,
    remote: Option<(String, Option<LeaseHeld<K, Res>>)>,
) where
    S: Service<Req, Response = Res>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + Send + Sync,
    Res: Clone + Send + Sync,
    C: Classify<Res, S::Error>,
{
    let core = guard.reg.core.clone();
    let keep = core.swr.max(core.sie);
    // Read for the load-time histogram only (the feature `metrics`).
    #[cfg(feature = "metrics")]
    let started = Instant::now();
    let result = inner.oneshot(req).await;
    let outcome = policy.classify.classify(&result);
    let now = Instant::now();
    record!(core.counters.metrics, |m| m.load.record(now - started));
    let shared: Option<Res> = 'outcome: {
        match (result, outcome) {
            (Ok(res), Outcome::Success) => {
                let entry = core.entry(Cached::Response(res.clone()), now, core.ttl, keep);
                // The key moves into the store: the load needs it no more.
                let LoadGuard { key, reg } = guard;
                core.store.insert_hashed(reg.hash, key, entry);
                record!(core.counters.metrics, |m| m
                    .evictions
                    .absolute(core.store.evictions()));
                let value = remote.is_some().then(|| res.clone());
                reg.finish(|_| Output::Value { value: res });
                value
            }
            (result, outcome) => {
                if outcome.is_failure() && !core.sie.is_zero() {
                    if let Some(Entry {
                        value: Cached::Response(stale),
                        fresh_until,
                        ..
                    }) = core.store.get_hashed(guard.reg.hash, &guard.key, now)
                    {
                        if now < later(fresh_until, core.sie) {
                            trace_event!(DEBUG, "cache load failed: serving stale entry");
                            let counters = &core.counters;
                            guard.reg.finish(|n| {
                                counters.stale_served(n as u64);
                                Output::Value { value: stale }
                            });
                            break 'outcome None;
                        }
                    }
                }
                match core.error_ttl {
                    Some(ttl) => {
                        let cached = match result {
                            Ok(res) => Cached::Response(res),
                            Err(e) => Cached::Error(SharedError::new(e.into())),
                        };
                        let entry = core.entry(cached.clone(), now, ttl, Duration::ZERO);
                        let LoadGuard { key, reg } = guard;
                        core.store.insert_hashed(reg.hash, key, entry);
                        reg.finish(|_| match cached {
                            Cached::Response(value) => Output::Value { value },
                            Cached::Error(e) => Output::Shared(e),
                        });
                    }
                    None => guard.reg.finish(|n| match result {
                        Ok(value) => Output::Value { value },
                        Err(e) if n <= 1 => Output::Solo(Some(e.into())),
                        Err(e) => Output::Shared(SharedError::new(e.into())),
                    }),
                }
                None
            }
        }
    };
    // Share it, then let the replicas waiting for the lease read it.
    if let Some((rkey, lease)) = remote {
        Box::pin(after_load(core, rkey, shared, lease)).await;
    }
}

/// What [`before_load`] leaves to do.
enum Before<K: Hash + Eq, Res> {
    /// The remote tier answered: the load is done.
    Served,
    /// Call the inner service; then write to the remote tier under this
    /// key (`None`: it failed, leave it) and release the lease, if taken.
    Load {
        guard: LoadGuard<K, Res>,
        lease: Option<(String, Option<LeaseHeld<K, Res>>)>,
    },
}

/// A lease this replica holds. Released by [`after_load`]; if the load is
/// dropped first (the inner service panicked), released in the
/// background, so the other replicas need not wait for it to expire.
struct LeaseHeld<K, Res> {
    core: Arc<Core<K, Res>>,
    key: String,
    token: Option<LeaseToken>,
}

impl<K, Res> Drop for LeaseHeld<K, Res> {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else {
            return;
        };
        let Some(tier) = &self.core.remote else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = tier.store.clone();
        let key = std::mem::take(&mut self.key);
        rt.spawn(async move {
            let _ = store.release(&key, token).await;
        });
    }
}

/// The remote half of a miss before the inner call: read the remote tier,
/// then take the key's lease or wait for the replica that holds it.
async fn before_load<K, Res>(core: Arc<Core<K, Res>>, guard: LoadGuard<K, Res>) -> Before<K, Res>
where
    K: Hash + Eq + Clone + Send + Sync,
    Res: Clone + Send + Sync,
{
    let Some(tier) = &core.remote else {
        return Before::Load { guard, lease: None };
    };
    let rkey = tier.key(&guard.key);
    match tier.read(&rkey).await {
        Read::Fresh(entry) => {
            serve_remote(&core, guard, entry);
            return Before::Served;
        }
        Read::Stale(entry) => {
            let value = entry.value.clone();
            let serve = Instant::now() < later(entry.fresh_until, core.swr);
            core.store
                .insert_hashed(guard.reg.hash, guard.key.clone(), cached(entry));
            if serve {
                // Answer the waiters now; refresh below.
                let counters = &core.counters;
                guard.reg.flight.answer_early(|n| {
                    counters.stale_served(n as u64);
                    Output::Value { value }
                });
            }
        }
        Read::Miss => {}
        Read::Failed => {
            tier.fallback();
            return Before::Load { guard, lease: None };
        }
    }
    let lease = match tier.claim(&rkey).await {
        Claim::Filled(entry) => {
            serve_remote(&core, guard, entry);
            return Before::Served;
        }
        Claim::Lease(token) => Some(LeaseHeld {
            core: core.clone(),
            key: rkey.clone(),
            token: Some(token),
        }),
        Claim::Alone => {
            tier.fallback();
            None
        }
    };
    Before::Load {
        guard,
        lease: Some((rkey, lease)),
    }
}

/// The remote half of a miss after the inner call: share the value, then
/// release the lease (the replicas waiting for it read the value).
async fn after_load<K, Res>(
    core: Arc<Core<K, Res>>,
    rkey: String,
    value: Option<Res>,
    lease: Option<LeaseHeld<K, Res>>,
) {
    let Some(tier) = &core.remote else { return };
    if let Some(value) = value {
        let keep = core.swr.max(core.sie);
        tier.write(&rkey, &value, core.ttl, keep).await;
    }
    if let Some(token) = lease.and_then(|mut held| held.token.take()) {
        tier.release(&rkey, token).await;
    }
}

/// A tier-2 entry as a tier-1 one.
fn cached<Res>(entry: Entry<Res>) -> Entry<Cached<Res>> {
    Entry {
        value: Cached::Response(entry.value),
        fresh_until: entry.fresh_until,
        keep_until: entry.keep_until,
    }
}

/// Serves a load from a fresh tier-2 entry, and keeps it in tier 1.
fn serve_remote<K, Res>(core: &Core<K, Res>, guard: LoadGuard<K, Res>, entry: Entry<Res>)
where
    K: Hash + Eq + Clone + Send + Sync,
    Res: Clone + Send + Sync,
{
    if let Some(tier) = &core.remote {
        tier.counters.hit();
    }
    let value = entry.value.clone();
    core.store
        .insert_hashed(guard.reg.hash, guard.key.clone(), cached(entry));
    guard.reg.finish(|_| Output::Value { value });
}

/// A load's key and its registration.
struct LoadGuard<K: Hash + Eq, Res> {
    key: K,
    reg: Registration<K, Res>,
}

/// Owns a load's registration: takes the flight off the map and
/// completes it, whether the load finishes, panics or is dropped. (Apart
/// from the key, which a successful load moves into the store.)
struct Registration<K: Hash + Eq, Res> {
    core: Arc<Core<K, Res>>,
    /// The key's hash in the map of loads in flight.
    hash: u64,
    flight: Arc<Flight<Res>>,
    done: bool,
}

impl<K: Hash + Eq, Res> Registration<K, Res> {
    fn unregister(&self) {
        self.core.flights().remove(self.hash, &self.flight);
    }

    fn finish(mut self, make: impl FnOnce(usize) -> Output<Res>) {
        // (A flight already answered early, with a stale entry, keeps that.)
        self.done = true;
        self.unregister();
        self.flight.complete(make);
    }
}

impl<K: Hash + Eq, Res> Drop for Registration<K, Res> {
    fn drop(&mut self) {
        if !self.done {
            self.unregister();
            self.flight.complete(|_| Output::Abandoned);
        }
    }
}
