//! The state one [`HttpCacheLayer`](super::HttpCacheLayer) and every
//! service it makes share: configuration, the store, the clock, counters.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hashbrown::HashTable;
use http_cache_semantics::CacheOptions;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::stats::HttpCacheStats;
use super::stored::Variants;
use crate::cache::{Entry, FoldState, MemoryStore, RemoteStore, Store};
use crate::sync::lock;

/// The layer's settings, fixed at `build()`.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) opts: CacheOptions,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_variants: usize,
    pub(crate) keep_stale: Duration,
    /// Whether concurrent misses for one URI wait for the first one.
    pub(crate) coalesce: bool,
    /// The `Cache-Status` cache name, when the header is on.
    pub(crate) cache_status: Option<String>,
}

/// Wall-clock time read off tokio's clock, so that freshness follows
/// paused time in tests: `SystemTime` at build, plus tokio time since.
#[derive(Debug)]
pub(crate) struct Clock {
    base: Instant,
    wall: SystemTime,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            base: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Now, on the wall clock, as tokio's clock has moved.
    pub(crate) fn now(&self) -> SystemTime {
        self.wall + Instant::now().saturating_duration_since(self.base)
    }
}

/// Counters behind [`HttpCacheStats`], and the metrics (feature `metrics`:
/// the `tower_patterns.cache.*` series the `CacheLayer` records too).
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) revalidations: AtomicU64,
    pub(crate) not_modified: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) passes: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) remote_hits: AtomicU64,
    pub(crate) remote_errors: AtomicU64,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments<crate::metrics::CacheMetrics>,
}

#[allow(unused_imports)]
use crate::trace::record;

impl Counters {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn new(name: crate::trace::Name) -> Self {
        let z = || AtomicU64::new(0);
        Counters {
            hits: z(),
            misses: z(),
            revalidations: z(),
            not_modified: z(),
            stale_served: z(),
            stored: z(),
            passes: z(),
            invalidations: z(),
            too_large: z(),
            coalesced: z(),
            remote_hits: z(),
            remote_errors: z(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new(name),
        }
    }

    pub(crate) fn hit(&self) {
        bump(&self.hits);
        record!(self.metrics, |m| m.hit.increment(1));
    }

    pub(crate) fn miss(&self) {
        bump(&self.misses);
        record!(self.metrics, |m| m.miss.increment(1));
    }

    /// A revalidation: a miss for the metrics (the inner service is asked).
    pub(crate) fn revalidation(&self) {
        bump(&self.revalidations);
        record!(self.metrics, |m| m.miss.increment(1));
    }

    pub(crate) fn coalesced(&self) {
        bump(&self.coalesced);
        record!(self.metrics, |m| m.coalesced.increment(1));
    }

    pub(crate) fn stale(&self) {
        bump(&self.stale_served);
        record!(self.metrics, |m| m.stale.increment(1));
    }
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The shared state.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) store: MemoryStore<String, Variants>,
    pub(crate) clock: Clock,
    pub(crate) counters: Counters,
    /// Keys being revalidated in the background (stale-while-revalidate):
    /// one refresh per key at a time.
    pub(crate) refreshing: Mutex<HashSet<String>>,
    /// Misses in flight, by key.
    flights: Mutex<Flights>,
    /// The tier shared by replicas, if any.
    pub(crate) remote: Option<Arc<dyn RemoteStore>>,
    /// What the remote tier calls on invalidations (it holds it weakly).
    pub(crate) listener: Mutex<Option<crate::cache::RemoteListener>>,
}

/// The misses in flight, by key. Later misses for a key wait for the
/// first on a semaphore with no permits, which the first closes when done;
/// the semaphore is made when a second miss joins, so a lone miss (the
/// usual one) allocates only its entry's key. The key is hashed once.
struct Flights {
    hasher: FoldState,
    table: HashTable<Flight>,
    /// The last flight's number: a flight's guard finds its entry by it.
    last: u64,
}

struct Flight {
    key: String,
    id: u64,
    done: Option<Arc<Semaphore>>,
}

/// A miss's place in its key's flight.
pub(crate) enum Join {
    /// The first miss: it asks the inner service; dropping the guard lets
    /// the others go on.
    Leader(FlightGuard),
    /// A later one: wait for the first to finish (`acquire` fails once it
    /// has), then look again.
    Follower(Arc<Semaphore>),
}

/// Ends a key's flight when dropped (finished, failed or cancelled).
pub(crate) struct FlightGuard {
    shared: Arc<Shared>,
    hash: u64,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // The entry goes first; then the followers, if any joined, are let
        // go. (A semaphore, not a watch channel: closing one is a lock and
        // a flag, where a watch sender's drop notifies eight.)
        let done = {
            let mut flights = lock(&self.shared.flights);
            match flights.table.find_entry(self.hash, |f| f.id == self.id) {
                Ok(entry) => entry.remove().0.done,
                Err(_) => None,
            }
        };
        if let Some(done) = done {
            done.close();
        }
    }
}

impl Shared {
    pub(crate) fn new(
        cfg: Config,
        max_entries: usize,
        name: crate::trace::Name,
        remote: Option<Arc<dyn RemoteStore>>,
    ) -> Self {
        Shared {
            cfg,
            store: MemoryStore::new(max_entries),
            clock: Clock::new(),
            counters: Counters::new(name),
            refreshing: Mutex::new(HashSet::new()),
            flights: Mutex::new(Flights {
                hasher: FoldState::random(),
                table: HashTable::new(),
                last: 0,
            }),
            remote,
            listener: Mutex::new(None),
        }
    }

    /// Joins the flight of misses for `key`.
    pub(crate) fn join(self: &Arc<Self>, key: &str) -> Join {
        let mut flights = lock(&self.flights);
        let Flights {
            hasher,
            table,
            last,
        } = &mut *flights;
        let hash = hasher.hash_one(key);
        if let Some(flight) = table.find_mut(hash, |f| f.key == key) {
            let done = flight
                .done
                .get_or_insert_with(|| Arc::new(Semaphore::new(0)));
            return Join::Follower(done.clone());
        }
        *last += 1;
        let id = *last;
        let flight = Flight {
            key: key.to_owned(),
            id,
            done: None,
        };
        table.insert_unique(hash, flight, |f| hasher.hash_one(&f.key));
        Join::Leader(FlightGuard {
            shared: self.clone(),
            hash,
            id,
        })
    }

    /// The variants stored under `key`.
    pub(crate) fn get(&self, key: &String) -> Option<Variants> {
        self.entry(key).map(|e| e.value)
    }

    /// The entry under `key`: its variants and how long they are kept.
    pub(crate) fn entry(&self, key: &String) -> Option<Entry<Variants>> {
        self.store.get(key, Instant::now())
    }

    /// Stores `variants` under `key` for `keep` from now, and at least
    /// until `replaced`: when the entry it replaces (read by the caller)
    /// was to be kept until.
    pub(crate) fn put(
        &self,
        key: String,
        variants: Variants,
        keep: Duration,
        replaced: Option<Instant>,
    ) {
        let now = Instant::now();
        let until = crate::time::deadline(now, keep).max(replaced.unwrap_or(now));
        if let Some(remote) = &self.remote {
            let mut bytes = Vec::new();
            if super::remote::encode(&key, &variants, &mut bytes).is_ok() {
                let (remote, key) = (remote.clone(), key.clone());
                let ttl = (!keep.is_zero()).then_some(keep.min(crate::time::NEVER));
                spawn(async move {
                    let _ = remote.put(&key, bytes.into(), ttl).await;
                });
            }
        }
        self.store.insert(
            key,
            Entry {
                value: variants,
                fresh_until: until,
                keep_until: until,
            },
        );
    }

    /// Stores what the remote tier held for `key`, in memory only.
    pub(crate) fn put_local(&self, key: String, variants: Variants, keep: Duration) {
        let until = crate::time::deadline(Instant::now(), keep);
        self.store.insert(
            key,
            Entry {
                value: variants,
                fresh_until: until,
                keep_until: until,
            },
        );
    }

    /// What the remote tier holds for `key` (`None`: nothing, no tier, or
    /// a failure, counted).
    pub(crate) async fn remote_get(&self, key: &str) -> Option<Variants> {
        let remote = self.remote.as_ref()?;
        match remote.get(key).await {
            Ok(Some(bytes)) => match super::remote::decode(&bytes, self.cfg.opts) {
                Ok(v) => Some(v),
                Err(_) => {
                    bump(&self.counters.remote_errors);
                    None
                }
            },
            Ok(None) => None,
            Err(_) => {
                bump(&self.counters.remote_errors);
                None
            }
        }
    }

    /// Removes `key` from the remote tier too (every replica drops it).
    fn remote_delete(&self, key: &str) {
        if let Some(remote) = &self.remote {
            let (remote, key) = (remote.clone(), key.to_owned());
            spawn(async move {
                let _ = remote.delete(&key).await;
            });
        }
    }

    /// Removes every entry, here and in the remote tier.
    pub(crate) fn clear(&self) {
        self.store.clear();
        if let Some(remote) = &self.remote {
            let remote = remote.clone();
            spawn(async move {
                let _ = remote.clear().await;
            });
        }
    }

    /// Removes what `key` holds; `true` if there was something.
    pub(crate) fn remove(&self, key: &String) -> bool {
        self.remote_delete(key);
        self.store.remove(key)
    }

    /// Removes what `key` holds, counted as an invalidation.
    pub(crate) fn invalidate(&self, key: &String) -> bool {
        self.remote_delete(key);
        let removed = self.store.remove(key);
        if removed {
            bump(&self.counters.invalidations);
        }
        removed
    }

    /// Marks `key` as refreshing; `false` if a refresh already runs.
    pub(crate) fn start_refresh(&self, key: &str) -> bool {
        lock(&self.refreshing).insert(key.to_owned())
    }

    pub(crate) fn end_refresh(&self, key: &str) {
        lock(&self.refreshing).remove(key);
    }

    pub(crate) fn stats(&self) -> HttpCacheStats {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpCacheStats {
            hits: r(&c.hits),
            misses: r(&c.misses),
            revalidations: r(&c.revalidations),
            not_modified: r(&c.not_modified),
            stale_served: r(&c.stale_served),
            stored: r(&c.stored),
            passes: r(&c.passes),
            invalidations: r(&c.invalidations),
            too_large: r(&c.too_large),
            coalesced: r(&c.coalesced),
            remote_hits: r(&c.remote_hits),
            remote_errors: r(&c.remote_errors),
            entries: self.store.len(),
            evictions: self.store.evictions(),
        }
    }
}

/// Runs `task` on the current tokio runtime, if there is one.
fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Arc<Shared> {
        let cfg = Config {
            opts: CacheOptions::default(),
            max_body_bytes: 1 << 20,
            max_variants: 4,
            keep_stale: Duration::ZERO,
            coalesce: true,
            cache_status: None,
        };
        Arc::new(Shared::new(cfg, 100, "test".into(), None))
    }

    fn in_flight(s: &Shared) -> usize {
        lock(&s.flights).table.len()
    }

    #[tokio::test]
    async fn a_flight_lets_its_followers_go_and_leaves_nothing_behind() {
        let s = shared();
        // A lone miss makes no semaphore, and its entry goes with it.
        let Join::Leader(lone) = s.join("//a/1") else {
            panic!("the first miss leads")
        };
        assert!(lock(&s.flights).table.iter().all(|f| f.done.is_none()));
        drop(lone);
        assert_eq!(in_flight(&s), 0);

        let Join::Leader(leader) = s.join("//a/2") else {
            panic!("the first miss leads")
        };
        let other = s.join("//a/3");
        assert!(matches!(other, Join::Leader(_)), "another key flies alone");
        let (Join::Follower(f1), Join::Follower(f2)) = (s.join("//a/2"), s.join("//a/2")) else {
            panic!("later misses for the key follow")
        };
        assert!(Arc::ptr_eq(&f1, &f2), "followers share one semaphore");
        let waiting = tokio::spawn(async move { f1.acquire().await.is_err() });
        drop(leader);
        assert!(waiting.await.unwrap(), "the leader's end lets them go");
        assert!(f2.acquire().await.is_err());
        drop(other);
        assert_eq!(in_flight(&s), 0);
        // The key flies again from scratch.
        assert!(matches!(s.join("//a/2"), Join::Leader(_)));
    }
}
