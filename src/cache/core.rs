//! The state a [`CacheLayer`](super::CacheLayer), its services and its
//! handles share: the store, the loads in flight, the settings and the
//! counters ([`Core`]); how keys are made and outcomes judged ([`Policy`]);
//! and what is stored for a key ([`Cached`]).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::error::SharedError;
use super::flight::Flights;
use super::stats::CacheStats;
use super::store::hash::FoldState;
use super::store::tiered::Tier2;
use super::store::{AnyStore, Entry, RemoteEvent, Store};
use crate::sync::{lock, thread_stripe, Padded};
use crate::time;
use crate::trace::record;
use crate::BoxError;

/// What the cache stores for a key: a response, or (only with
/// [`cache_errors`](super::CacheLayerBuilder::cache_errors)) an error.
///
/// This is the value type a custom [`Store`] holds.
#[derive(Clone, Debug)]
pub enum Cached<Res> {
    /// A response of the inner service.
    Response(Res),
    /// An error of the inner service, served to every caller until it
    /// expires.
    Error(SharedError),
}

impl<Res> Cached<Res> {
    pub(crate) fn into_result(self) -> Result<Res, BoxError> {
        match self {
            Cached::Response(r) => Ok(r),
            Cached::Error(e) => Err(Box::new(e)),
        }
    }
}

/// `at + d`, saturating to "never" (see [`time::deadline`]): a duration
/// too long for the clock keeps the entry for good, not for no time.
#[inline]
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    time::deadline(at, d)
}

/// The state every clone of a layer and its services share.
pub(crate) struct Core<K, Res> {
    pub(crate) ttl: Duration,
    pub(crate) swr: Duration,
    pub(crate) sie: Duration,
    pub(crate) error_ttl: Option<Duration>,
    pub(crate) store: AnyStore<K, Cached<Res>>,
    /// Hashes keys for the memory store and the loads in flight alike.
    pub(crate) hasher: FoldState,
    pub(crate) flights: Mutex<Flights<K, Res>>,
    pub(crate) counters: Counters,
    /// The remote tier, if any: consulted on misses only.
    pub(crate) remote: Option<Tier2<K, Res>>,
}

impl<K, Res> Core<K, Res> {
    /// The hash of `key` for [`AnyStore::get_hashed`] and the loads in flight.
    #[inline]
    pub(crate) fn hash(&self, key: &K) -> u64
    where
        K: Hash,
    {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    pub(crate) fn flights(&self) -> MutexGuard<'_, Flights<K, Res>> {
        lock(&self.flights)
    }

    pub(crate) fn entry(
        &self,
        value: Cached<Res>,
        now: Instant,
        ttl: Duration,
        keep: Duration,
    ) -> Entry<Cached<Res>> {
        let fresh_until = later(now, ttl);
        Entry {
            value,
            fresh_until,
            keep_until: later(fresh_until, keep),
        }
    }

    /// A snapshot of the counters and the store's size.
    pub(crate) fn stats(&self) -> CacheStats
    where
        K: Hash + Eq + Send + Sync,
        Res: Clone + Send + Sync,
    {
        let c = self.counters.sum();
        let r = |f: fn(&Tier2<K, Res>) -> &AtomicU64| {
            self.remote
                .as_ref()
                .map_or(0, |t| f(t).load(Ordering::Relaxed))
        };
        CacheStats {
            hits: c[0],
            misses: c[1],
            coalesced: c[2],
            stale_served: c[3],
            evictions: self.store.evictions(),
            entries: self.store.len(),
            remote_hits: r(|t| &t.counters.hits),
            remote_fallbacks: r(|t| &t.counters.fallbacks),
            remote_bad_entries: r(|t| &t.counters.bad_entries),
            remote_too_large: r(|t| &t.counters.too_large),
        }
    }

    /// What the remote tier tells: drop local copies, or wake the misses
    /// waiting for a lease.
    pub(crate) fn on_remote_event(&self, event: RemoteEvent<'_>)
    where
        K: Hash + Eq + Send + Sync,
        Res: Clone + Send + Sync,
    {
        let Some(tier) = &self.remote else { return };
        match event {
            RemoteEvent::Invalidated(key) => {
                if let Some(key) = tier.local_key(key) {
                    self.store.remove(&key);
                }
            }
            RemoteEvent::Released(key) => tier.wake(key),
            RemoteEvent::Cleared | RemoteEvent::Resync => self.store.clear(),
        }
    }
}

/// How keys are made and outcomes judged; shared by a layer's services.
pub(crate) struct Policy<KF, C> {
    pub(crate) key_fn: KF,
    pub(crate) classify: C,
}

// --------------------------------------------------------------------------
// Striped counters: each thread bumps its own cache line.

const STRIPES: usize = 16;

pub(crate) struct Counters {
    stripes: Box<[Padded<[AtomicU64; 4]>]>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments<crate::metrics::CacheMetrics>,
}

impl Counters {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: crate::trace::Name) -> Self {
        Counters {
            stripes: (0..STRIPES).map(|_| Padded::default()).collect(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new(name),
        }
    }

    #[inline]
    fn add(&self, i: usize, n: u64) {
        self.stripes[thread_stripe() % STRIPES][i].fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn hit(&self) {
        self.add(0, 1);
        record!(self.metrics, |m| m.hit.increment(1));
    }

    pub(crate) fn miss(&self) {
        self.add(1, 1);
        record!(self.metrics, |m| m.miss.increment(1));
    }

    pub(crate) fn coalesced(&self) {
        self.add(2, 1);
        record!(self.metrics, |m| m.coalesced.increment(1));
    }

    pub(crate) fn stale_hit(&self) {
        self.add(0, 1);
        self.add(3, 1);
        record!(self.metrics, |m| {
            m.hit.increment(1);
            m.stale.increment(1)
        });
    }

    pub(crate) fn stale_served(&self, n: u64) {
        self.add(3, n);
        record!(self.metrics, |m| m.stale.increment(n));
    }

    fn sum(&self) -> [u64; 4] {
        let mut out = [0; 4];
        for s in self.stripes.iter() {
            for (o, c) in out.iter_mut().zip(s.iter()) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn later_saturates_to_never_not_to_now() {
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        // An overflow used to give `now`: expired at once.
        assert_eq!(later(now, Duration::MAX), now + time::NEVER);
        let fresh = later(now, Duration::MAX);
        assert!(later(fresh, Duration::MAX) >= fresh);
    }
}
