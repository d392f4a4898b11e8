//! The default in-memory store, [`MemoryStore`]: N shards, each an S3-FIFO
//! cache (`s3fifo.rs`) behind its own read-write lock, plus a
//! per-thread-stripe direct-mapped lookup table in front.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::time::Instant;

use super::hash::FoldState;
use super::s3fifo::{Item, ShardInner};
use super::{Entry, Store};
use crate::sync::{self, thread_stripe, Padded};

/// The most shards a [`MemoryStore`] uses.
const MAX_SHARDS: usize = 64;
/// The fewest entries per shard worth a shard of its own.
const MIN_PER_SHARD: usize = 64;
/// Slots in each stripe's lookup table (at most).
const MAX_L1: usize = 4096;

/// The default store: bounded, in memory, sharded, with S3-FIFO eviction.
///
/// - **Bounded.** Never holds more than `max_entries` entries, whatever the
///   key distribution: the bound is split exactly across shards and each
///   shard evicts before it grows past its share.
/// - **Keeps hot keys.** Each shard runs S3-FIFO (Yang et al., SOSP 2023):
///   new keys enter a small FIFO queue (a tenth of the shard); keys used
///   again while there move to the main queue, the others are evicted
///   early and remembered in a ghost queue, so a key that comes back soon
///   goes straight to the main queue. The main queue is a CLOCK with a
///   two-bit use counter. One-hit wonders never push hot keys out.
/// - **Hits don't share writes.** Each thread looks keys up first in a
///   small direct-mapped table of its own stripe (one per thread up to
///   twice the core count), which points at the shared, immutable entry;
///   only when that misses does it take the key's shard read lock. So
///   repeated hits on hot keys from many threads write to no shared cache
///   line (the use counter is written only while below its cap).
///   Removing an entry clears it from every stripe's table, so no removed
///   value stays alive. A table has up to 4,096 slots (twice `max_entries`
///   when smaller), 8 bytes each, allocated when a thread first uses the
///   store: at most 32 KiB per thread-stripe per store.
/// - **Expiry.** An entry past its `keep_until` is never returned; it is
///   removed when next looked up or by [`Store::cleanup`].
pub struct MemoryStore<K, V> {
    shards: Box<[Shard<K, V>]>,
    shard_mask: usize,
    l1: Box<[L1Stripe<K, V>]>,
    l1_len: usize,
    hasher: FoldState,
    capacity: usize,
    /// Evictions in all shards: read on every load (for metrics), so one
    /// counter rather than a lock per shard.
    evicted: Padded<AtomicU64>,
}

impl<K, V> MemoryStore<K, V> {
    /// The hasher of this store's keys, for `get_hashed` and
    /// `insert_hashed`.
    pub(crate) fn hasher(&self) -> FoldState {
        self.hasher
    }
}

impl<K, V> fmt::Debug for MemoryStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

// Each shard and stripe on its own cache lines, so that threads working on
// different ones never write to the same line.
type Shard<K, V> = Padded<RwLock<ShardInner<K, V>>>;

/// A stripe's direct-mapped lookup table (empty until first used).
type L1Table<K, V> = Vec<Option<Arc<Item<K, V>>>>;

type L1Stripe<K, V> = Padded<Mutex<L1Table<K, V>>>;

impl<K, V> MemoryStore<K, V>
where
    K: Hash + Eq,
{
    /// A store holding at most `max_entries` entries (at least one).
    pub fn new(max_entries: usize) -> Self {
        let max_entries = max_entries.clamp(1, u32::MAX as usize / 2);
        let shards = (max_entries / MIN_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two()
            .min(MAX_SHARDS);
        let base = max_entries / shards;
        let extra = max_entries % shards;
        let shards: Box<[Shard<K, V>]> = (0..shards)
            .map(|i| Padded(RwLock::new(ShardInner::new(base + usize::from(i < extra)))))
            .collect();
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let stripes = (2 * cores).clamp(4, 64).next_power_of_two();
        MemoryStore {
            shard_mask: shards.len() - 1,
            shards,
            l1: (0..stripes)
                .map(|_| Padded(Mutex::new(Vec::new())))
                .collect(),
            l1_len: (2 * max_entries).next_power_of_two().clamp(64, MAX_L1),
            hasher: FoldState::random(),
            capacity: max_entries,
            evicted: Padded(AtomicU64::new(0)),
        }
    }

    /// The most entries this store holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline]
    fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        // Bits the hash table does not use for its bucket index (low bits)
        // or its control byte (top seven bits).
        &self.shards[(hash >> 32) as usize & self.shard_mask]
    }

    /// The first of the two lookup-table slots `hash` may occupy (the
    /// tables are two-way set-associative).
    #[inline]
    fn l1_slot(&self, hash: u64) -> usize {
        hash as usize & (self.l1_len - 2)
    }

    #[inline]
    fn my_l1(&self) -> MutexGuard<'_, L1Table<K, V>> {
        let stripe = &self.l1[thread_stripe() & (self.l1.len() - 1)];
        let mut t = sync::lock(stripe);
        if t.is_empty() {
            t.resize_with(self.l1_len, || None);
        }
        t
    }

    /// Clears removed items from every stripe's lookup table; an item never
    /// listed in one (most evictions: an entry nobody hit since it was
    /// stored) takes no stripe's lock.
    fn purge<'a>(&self, removed: impl Iterator<Item = &'a Arc<Item<K, V>>> + Clone)
    where
        K: 'a,
        V: 'a,
    {
        let listed = removed.filter(|item| item.listed.load(Ordering::SeqCst));
        if listed.clone().next().is_none() {
            return;
        }
        for stripe in self.l1.iter() {
            let mut t = sync::lock(stripe);
            if t.is_empty() {
                continue;
            }
            for item in listed.clone() {
                let i = self.l1_slot(item.hash);
                for x in &mut t[i..i + 2] {
                    if x.as_ref().is_some_and(|x| Arc::ptr_eq(x, item)) {
                        *x = None;
                    }
                }
            }
        }
    }

    /// Runs `f` under `hash`'s shard write lock, then clears whatever it
    /// removed from the lookup tables and drops it, outside the lock. A
    /// lone removal (an insert's eviction) leaves the shard's list its
    /// capacity: no allocation per eviction.
    fn write<R>(&self, hash: u64, f: impl FnOnce(&mut ShardInner<K, V>) -> R) -> R {
        let (r, one, many) = {
            let mut g = sync::write(self.shard(hash));
            let r = f(&mut g);
            let one = if g.removed.len() == 1 {
                g.removed.pop()
            } else {
                None
            };
            let many = if g.removed.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut g.removed)
            };
            (r, one, many)
        };
        self.purge(one.iter().chain(many.iter()));
        r
    }
}

impl<K, V> Store<K, V> for MemoryStore<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    #[inline]
    fn get(&self, key: &K, now: Instant) -> Option<Entry<V>> {
        self.get_hashed(self.hash(key), key, now)
    }

    fn insert(&self, key: K, entry: Entry<V>) {
        self.insert_hashed(self.hash(&key), key, entry);
    }

    fn remove(&self, key: &K) -> bool {
        let hash = self.hash(key);
        self.write(hash, |g| match g.find(hash, key) {
            Some(idx) => g.remove_slot(idx),
            None => false,
        })
    }

    fn clear(&self) {
        for s in self.shards.iter() {
            let mut g = sync::write(s);
            let (cap, evictions) = (g.cap, g.evictions);
            for slot in &g.slots {
                if let Some(it) = &slot.item {
                    it.live.store(false, Ordering::Release);
                }
            }
            *g = ShardInner::new(cap);
            g.evictions = evictions;
        }
        for stripe in self.l1.iter() {
            let mut t = sync::lock(stripe);
            t.iter_mut().for_each(|x| *x = None);
        }
    }

    fn cleanup(&self, now: Instant) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let gone = {
                let mut g = sync::write(s);
                let expired: Vec<u32> = g
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| matches!(&s.item, Some(it) if now >= it.entry.keep_until))
                    .map(|(i, _)| i as u32)
                    .collect();
                for idx in expired {
                    if g.remove_slot(idx) {
                        removed += 1;
                    }
                }
                g.compact_queues();
                std::mem::take(&mut g.removed)
            };
            self.purge(gone.iter());
        }
        removed
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| sync::read(s).len).sum()
    }

    fn evictions(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

impl<K, V> MemoryStore<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    /// [`Store::get`] with the key's hash already made (with
    /// [`hasher`](Self::hasher)): the cache hashes a key once per miss.
    #[inline]
    pub(crate) fn get_hashed(&self, hash: u64, key: &K, now: Instant) -> Option<Entry<V>> {
        let l1_slot = self.l1_slot(hash);
        {
            let l1 = self.my_l1();
            for it in l1[l1_slot..l1_slot + 2].iter().flatten() {
                if it.hash == hash
                    && it.key == *key
                    && it.live.load(Ordering::Acquire)
                    && now < it.entry.keep_until
                {
                    it.touch();
                    return Some(it.entry.clone());
                }
            }
        }
        self.get_slow(hash, l1_slot, key, now)
    }

    /// [`Store::insert`] with the key's hash already made.
    pub(crate) fn insert_hashed(&self, hash: u64, key: K, entry: Entry<V>) {
        let evicted = self.write(hash, |g| {
            let before = g.evictions;
            g.insert(hash, key, entry);
            g.evictions - before
        });
        if evicted > 0 {
            self.evicted.fetch_add(evicted, Ordering::Relaxed);
        }
    }

    /// The lookup table missed: ask the shard, and remember the answer.
    #[cold]
    fn get_slow(&self, hash: u64, l1_slot: usize, key: &K, now: Instant) -> Option<Entry<V>> {
        let item = {
            let g = sync::read(self.shard(hash));
            let idx = g.find(hash, key)?;
            g.slots[idx as usize].item.clone()?
        };
        if now < item.entry.keep_until {
            item.touch();
            let entry = item.entry.clone();
            // Only a live item may enter the table; one removed since we
            // read it is skipped (and if the race is lost, it is never
            // served, being dead, and is overwritten on next use). Listed
            // first, then the live check: a removal clears `live`, then
            // reads `listed`, so it purges the tables or is seen here.
            if !item.listed.load(Ordering::Relaxed) {
                item.listed.store(true, Ordering::SeqCst);
            }
            if item.live.load(Ordering::SeqCst) {
                let mut l1 = self.my_l1();
                let set = &mut l1[l1_slot..l1_slot + 2];
                let usable = |x: &Option<Arc<Item<K, V>>>| {
                    x.as_ref().is_none_or(|x| !x.live.load(Ordering::Relaxed))
                };
                if usable(&set[0]) {
                    set[0] = Some(item);
                } else if usable(&set[1]) {
                    set[1] = Some(item);
                } else {
                    // Both in use: the newest goes first, the older one
                    // of the two is dropped.
                    set[1] = set[0].replace(item);
                }
            }
            return Some(entry);
        }
        // Expired: remove it now, unless it was replaced meanwhile.
        self.write(hash, |g| {
            if let Some(idx) = g.find(hash, key) {
                if matches!(&g.slots[idx as usize].item, Some(it) if Arc::ptr_eq(it, &item)) {
                    g.remove_slot(idx);
                }
            }
        });
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(v: u64, now: Instant) -> Entry<u64> {
        Entry {
            value: v,
            fresh_until: now + Duration::from_secs(60),
            keep_until: now + Duration::from_secs(60),
        }
    }

    #[test]
    fn bounded_and_keeps_hot_keys() {
        let now = Instant::now();
        let store = MemoryStore::<u64, u64>::new(1000);
        for k in 0..100 {
            store.insert(k, entry(k, now));
        }
        for round in 0..50u64 {
            for k in 0..100 {
                assert!(
                    store.get(&k, now).is_some(),
                    "hot key {k} lost in round {round}"
                );
            }
            for k in 0..1000 {
                let k = 1_000_000 + round * 1000 + k;
                store.insert(k, entry(k, now));
            }
            assert!(store.len() <= 1000);
        }
        assert!(store.evictions() > 0);
    }

    #[test]
    fn tombstones_stay_bounded() {
        let now = Instant::now();
        let store = MemoryStore::<u64, u64>::new(10);
        for k in 0..10_000 {
            store.insert(k, entry(k, now));
            assert!(store.remove(&k));
        }
        for s in store.shards.iter() {
            let g = sync::read(s);
            assert!(g.small.len() + g.main.len() <= 2 * g.cap + 16);
            assert_eq!(g.len, 0);
        }
        // Nothing removed stays referenced from a lookup table.
        for stripe in store.l1.iter() {
            let t = stripe.lock().unwrap();
            assert!(t.iter().all(Option::is_none));
        }
    }

    #[test]
    fn expired_entries_are_dropped() {
        let now = Instant::now();
        let store = MemoryStore::<u64, u64>::new(100);
        store.insert(1, entry(1, now));
        store.insert(2, entry(2, now));
        let later = now + Duration::from_secs(61);
        assert!(store.get(&1, later).is_none());
        assert_eq!(store.len(), 1);
        assert_eq!(store.cleanup(later), 1);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn removal_is_seen_by_other_threads_lookup_tables() {
        let now = Instant::now();
        let store = Arc::new(MemoryStore::<u64, u64>::new(100));
        store.insert(1, entry(1, now));
        let reader = {
            let store = store.clone();
            move || store.get(&1, now).map(|e| e.value)
        };
        // The reader thread caches the entry in its own lookup table...
        let r = reader.clone();
        assert_eq!(std::thread::spawn(r).join().unwrap(), Some(1));
        // ...then it is replaced, and then removed, from this thread.
        store.insert(1, entry(2, now));
        let r = reader.clone();
        assert_eq!(std::thread::spawn(r).join().unwrap(), Some(2));
        assert!(store.remove(&1));
        assert_eq!(std::thread::spawn(reader).join().unwrap(), None);
        for stripe in store.l1.iter() {
            let t = stripe.lock().unwrap();
            assert!(t.iter().all(Option::is_none));
        }
    }

    #[test]
    fn an_evicted_value_is_let_go_whether_it_was_looked_up_or_not() {
        let now = Instant::now();
        let store = MemoryStore::<u64, Arc<u64>>::new(4);
        let (seen, unseen) = (Arc::new(1), Arc::new(2));
        let at = |value: &Arc<u64>| Entry {
            value: value.clone(),
            fresh_until: now + Duration::from_secs(60),
            keep_until: now + Duration::from_secs(60),
        };
        store.insert(1, at(&seen));
        store.insert(2, at(&unseen));
        // The first is now in this thread's lookup table too; then it is
        // replaced. The second, never looked up, is evicted.
        assert!(store.get(&1, now).is_some());
        store.insert(1, at(&Arc::new(3)));
        for k in 10..100 {
            store.insert(k, at(&Arc::new(k)));
        }
        assert!(store.get(&2, now).is_none());
        assert_eq!(Arc::strong_count(&seen), 1, "a lookup table kept it");
        assert_eq!(Arc::strong_count(&unseen), 1);
        for shard in store.shards.iter() {
            assert!(sync::read(shard).removed.is_empty());
        }
    }

    #[test]
    fn concurrent_use_stays_bounded() {
        let now = Instant::now();
        let store = Arc::new(MemoryStore::<u64, u64>::new(200));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t);
                    for _ in 0..20_000 {
                        let k = rng.u64(..1_000);
                        match rng.u8(..10) {
                            0..=5 => {
                                if let Some(e) = store.get(&k, now) {
                                    assert_eq!(e.value, k);
                                }
                            }
                            6..=8 => store.insert(k, entry(k, now)),
                            _ => {
                                store.remove(&k);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(store.len() <= 200);
        for s in store.shards.iter() {
            let g = sync::read(s);
            assert_eq!(g.table.len(), g.len);
            assert!(g.len <= g.cap);
        }
    }
}
