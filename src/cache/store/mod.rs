//! Where cached responses live: the [`Store`] trait, the seam every store
//! implements, and the stores of this crate beside it ([`MemoryStore`], the
//! default, in `memory.rs`); the asynchronous [`RemoteStore`] trait for a
//! tier shared by replicas (`remote.rs`), its Redis backend (`redis.rs`,
//! feature `redis`) and the glue between the tiers (`tiered.rs`).

pub(crate) mod hash;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod remote;
mod s3fifo;
mod tier_counters;
pub(crate) mod tiered;

use std::hash::Hash;

use tokio::time::Instant;

pub use memory::MemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisStore, RedisStoreBuilder, RedisStoreStats};
pub use remote::{Lease, LeaseToken, RemoteEvent, RemoteFuture, RemoteListener, RemoteStore};

/// One stored value and the two instants that govern it.
///
/// - Before `fresh_until` the value is fresh and served as a hit.
/// - Between `fresh_until` and `keep_until` it is stale: served only by
///   stale-while-revalidate or stale-if-error.
/// - From `keep_until` on it is expired: a [`Store`] must not return it,
///   and drops it lazily (on access) or in [`Store::cleanup`].
#[derive(Clone, Debug)]
pub struct Entry<V> {
    /// The stored value.
    pub value: V,
    /// Until when the value is fresh.
    pub fresh_until: Instant,
    /// Until when the value may be kept (and served stale); at least
    /// `fresh_until`.
    pub keep_until: Instant,
}

/// A place to keep cached responses, so stores other than the in-memory
/// default can be plugged in with
/// [`CacheLayerBuilder::build_with_store`](super::CacheLayerBuilder::build_with_store).
///
/// Every method is synchronous and is called on the request path (`get`
/// on every cacheable request), so implementations must be fast and must
/// not block: a remote store should keep a local view and synchronise it
/// in the background.
pub trait Store<K, V>: Send + Sync {
    /// The entry for `key`, if there is one whose `keep_until` is after
    /// `now`. Marks the entry as used, for the eviction policy.
    fn get(&self, key: &K, now: Instant) -> Option<Entry<V>>;

    /// Stores `entry` under `key`, replacing any previous entry. May
    /// evict other entries to stay within the store's bound.
    fn insert(&self, key: K, entry: Entry<V>);

    /// Removes the entry for `key`; `true` if there was one.
    fn remove(&self, key: &K) -> bool;

    /// Removes every entry.
    fn clear(&self);

    /// Removes every entry whose `keep_until` is not after `now` and
    /// returns how many were removed.
    fn cleanup(&self, now: Instant) -> usize;

    /// The number of entries held (including stale ones not yet removed).
    fn len(&self) -> usize;

    /// `true` when [`len`](Store::len) is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries were evicted to make room so far.
    fn evictions(&self) -> u64;
}

// ---------------------------------------------------------------------------
// The store a layer holds.

/// The layer's store: the in-memory one dispatched statically (it is on
/// every hit), or a user's behind a `dyn`.
// One per layer, so its size does not matter; boxing the memory store
// would add a pointer hop to every hit.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AnyStore<K, V> {
    Memory(MemoryStore<K, V>),
    Custom(Box<dyn Store<K, V>>),
}

impl<K, V> AnyStore<K, V> {
    /// The in-memory store's key hasher (a user's store hashes its own).
    pub(crate) fn hasher(&self) -> Option<hash::FoldState> {
        match self {
            AnyStore::Memory(s) => Some(s.hasher()),
            AnyStore::Custom(_) => None,
        }
    }
}

impl<K, V> AnyStore<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    /// [`Store::get`], with `key` hashed by [`hasher`](Self::hasher) if
    /// there is one.
    #[inline]
    pub(crate) fn get_hashed(&self, hash: u64, key: &K, now: Instant) -> Option<Entry<V>> {
        match self {
            AnyStore::Memory(s) => s.get_hashed(hash, key, now),
            AnyStore::Custom(s) => s.get(key, now),
        }
    }

    /// [`Store::insert`], with `key` hashed as for [`get_hashed`](Self::get_hashed).
    pub(crate) fn insert_hashed(&self, hash: u64, key: K, entry: Entry<V>) {
        match self {
            AnyStore::Memory(s) => s.insert_hashed(hash, key, entry),
            AnyStore::Custom(s) => s.insert(key, entry),
        }
    }
}

impl<K, V> Store<K, V> for AnyStore<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    #[inline]
    fn get(&self, key: &K, now: Instant) -> Option<Entry<V>> {
        match self {
            AnyStore::Memory(s) => s.get(key, now),
            AnyStore::Custom(s) => s.get(key, now),
        }
    }

    fn insert(&self, key: K, entry: Entry<V>) {
        match self {
            AnyStore::Memory(s) => s.insert(key, entry),
            AnyStore::Custom(s) => s.insert(key, entry),
        }
    }

    fn remove(&self, key: &K) -> bool {
        match self {
            AnyStore::Memory(s) => s.remove(key),
            AnyStore::Custom(s) => s.remove(key),
        }
    }

    fn clear(&self) {
        match self {
            AnyStore::Memory(s) => s.clear(),
            AnyStore::Custom(s) => s.clear(),
        }
    }

    fn cleanup(&self, now: Instant) -> usize {
        match self {
            AnyStore::Memory(s) => s.cleanup(now),
            AnyStore::Custom(s) => s.cleanup(now),
        }
    }

    fn len(&self) -> usize {
        match self {
            AnyStore::Memory(s) => s.len(),
            AnyStore::Custom(s) => s.len(),
        }
    }

    fn evictions(&self) -> u64 {
        match self {
            AnyStore::Memory(s) => s.evictions(),
            AnyStore::Custom(s) => s.evictions(),
        }
    }
}
