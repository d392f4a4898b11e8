//! Where cached responses live: the [`Store`] trait and the default
//! in-memory [`MemoryStore`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;
use tokio::time::Instant;

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
// Hashing: a keyed folded-multiply hash. Fast on short keys, with a random
// per-store seed so that an adversary cannot precompute colliding keys.

const MUL1: u64 = 0x243f_6a88_85a3_08d3;
const MUL2: u64 = 0x1319_8a2e_0370_7344;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

#[derive(Clone, Copy, Debug)]
struct FoldState {
    seed: u64,
    seed2: u64,
}

impl FoldState {
    fn random() -> Self {
        FoldState {
            seed: fastrand::u64(..),
            seed2: fastrand::u64(..) | 1,
        }
    }
}

struct FoldHasher {
    acc: u64,
    seed: u64,
    seed2: u64,
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64 | 0x100);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64 | 0x1_0000_0000);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.acc = fold_mul(self.acc ^ i ^ self.seed, MUL1);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc ^ self.seed2, MUL2)
    }
}

impl BuildHasher for FoldState {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            acc: 0,
            seed: self.seed,
            seed2: self.seed2,
        }
    }
}

// ---------------------------------------------------------------------------
// Which stripe of per-thread state the current thread uses.

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number fixed for the current thread, handed out round-robin,
/// so that threads spread over striped state (counters, lookup caches).
#[inline]
pub(crate) fn thread_stripe() -> usize {
    STRIPE
        .try_with(|c| {
            let v = c.get();
            if v != usize::MAX {
                v
            } else {
                let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
                c.set(v);
                v
            }
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------
// The in-memory store: N shards, each an S3-FIFO cache behind its own
// RwLock, plus a per-thread-stripe direct-mapped lookup table in front.

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
}

impl<K, V> fmt::Debug for MemoryStore<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// A stored entry: immutable once made, shared between the shard that
/// owns it and the lookup tables that point at it.
struct Item<K, V> {
    key: K,
    hash: u64,
    entry: Entry<V>,
    /// Cleared when the entry is replaced or removed.
    live: AtomicBool,
    /// S3-FIFO use counter, 0..=FREQ_MAX.
    freq: AtomicU8,
}

impl<K, V> Item<K, V> {
    #[inline]
    fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < FREQ_MAX {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

// Each shard and stripe on its own cache lines, so that threads working on
// different ones never write to the same line.
#[repr(align(128))]
struct Shard<K, V> {
    inner: RwLock<ShardInner<K, V>>,
}

/// A stripe's direct-mapped lookup table (empty until first used).
type L1Table<K, V> = Vec<Option<Arc<Item<K, V>>>>;

#[repr(align(128))]
struct L1Stripe<K, V> {
    table: Mutex<L1Table<K, V>>,
}

struct Slot<K, V> {
    hash: u64,
    gen: u32,
    in_main: bool,
    item: Option<Arc<Item<K, V>>>,
}

struct ShardInner<K, V> {
    table: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    /// Probationary FIFO queue of (slot, generation).
    small: VecDeque<(u32, u32)>,
    /// Main CLOCK queue of (slot, generation).
    main: VecDeque<(u32, u32)>,
    small_live: usize,
    len: usize,
    /// Hashes of keys recently evicted from the small queue.
    ghost: VecDeque<u64>,
    ghost_set: HashTable<u64>,
    cap: usize,
    small_cap: usize,
    evictions: u64,
    /// Items removed under the write lock, to clear from the lookup
    /// tables once it is released.
    removed: Vec<Arc<Item<K, V>>>,
}

/// Use-counter cap (S3-FIFO uses two bits).
const FREQ_MAX: u8 = 3;

impl<K, V> ShardInner<K, V> {
    fn new(cap: usize) -> Self {
        ShardInner {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_live: 0,
            len: 0,
            ghost: VecDeque::new(),
            ghost_set: HashTable::new(),
            cap,
            small_cap: (cap / 10).max(1),
            evictions: 0,
            removed: Vec::new(),
        }
    }

    fn find(&self, hash: u64, key: &K) -> Option<u32>
    where
        K: Eq,
    {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                let s = &slots[i as usize];
                s.hash == hash && matches!(&s.item, Some(it) if it.key == *key)
            })
            .copied()
    }

    /// The slot a queue entry points at, unless its entry was removed since.
    fn live(&self, idx: u32, gen: u32) -> Option<&Slot<K, V>> {
        let s = &self.slots[idx as usize];
        (s.gen == gen && s.item.is_some()).then_some(s)
    }

    /// Removes the entry in slot `idx`, if occupied.
    fn remove_slot(&mut self, idx: u32) -> bool {
        let slot = &mut self.slots[idx as usize];
        let hash = slot.hash;
        let Some(item) = slot.item.take() else {
            return false;
        };
        slot.gen = slot.gen.wrapping_add(1);
        if !slot.in_main {
            self.small_live -= 1;
        }
        if let Ok(e) = self.table.find_entry(hash, |&i| i == idx) {
            e.remove();
        }
        item.live.store(false, Ordering::Release);
        self.removed.push(item);
        self.free.push(idx);
        self.len -= 1;
        true
    }

    fn ghost_push(&mut self, hash: u64) {
        if self.ghost_set.find(hash, |&h| h == hash).is_some() {
            return;
        }
        self.ghost_set.insert_unique(hash, hash, |&h| h);
        self.ghost.push_back(hash);
        // The ghost queue remembers as many keys as the shard holds.
        while self.ghost.len() > self.cap {
            if let Some(old) = self.ghost.pop_front() {
                if let Ok(e) = self.ghost_set.find_entry(old, |&h| h == old) {
                    e.remove();
                }
            }
        }
    }

    fn ghost_take(&mut self, hash: u64) -> bool {
        match self.ghost_set.find_entry(hash, |&h| h == hash) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Evicts one entry by S3-FIFO; `false` if there was nothing to evict.
    fn evict_one(&mut self) -> bool {
        loop {
            let main_live = self.len - self.small_live;
            if self.small_live > 0 && (self.small_live >= self.small_cap || main_live == 0) {
                let Some((idx, gen)) = self.small.pop_front() else {
                    return false;
                };
                let Some(slot) = self.live(idx, gen) else {
                    continue;
                };
                let Some(item) = slot.item.as_ref().filter(|_| !slot.in_main) else {
                    continue;
                };
                if item.freq.load(Ordering::Relaxed) > 0 {
                    // Used while on probation: promote to the main queue.
                    item.freq.store(0, Ordering::Relaxed);
                    self.slots[idx as usize].in_main = true;
                    self.small_live -= 1;
                    self.main.push_back((idx, gen));
                    continue;
                }
                let hash = slot.hash;
                self.remove_slot(idx);
                self.ghost_push(hash);
                self.evictions += 1;
                return true;
            }
            let Some((idx, gen)) = self.main.pop_front() else {
                return false;
            };
            let Some(slot) = self.live(idx, gen) else {
                continue;
            };
            let Some(item) = slot.item.as_ref().filter(|_| slot.in_main) else {
                continue;
            };
            let f = item.freq.load(Ordering::Relaxed);
            if f > 0 {
                // Second chance: age the counter and go round again.
                item.freq.store(f - 1, Ordering::Relaxed);
                self.main.push_back((idx, gen));
                continue;
            }
            self.remove_slot(idx);
            self.evictions += 1;
            return true;
        }
    }

    /// Drops queue entries that point at removed slots, once they
    /// outnumber the live ones (removals by `invalidate` or expiry leave
    /// them behind), so the queues stay bounded.
    fn compact_queues(&mut self) {
        if self.small.len() + self.main.len() <= 2 * self.cap + 16 {
            return;
        }
        let slots = &self.slots;
        self.small.retain(|&(i, g)| {
            let s = &slots[i as usize];
            s.gen == g && s.item.is_some() && !s.in_main
        });
        self.main.retain(|&(i, g)| {
            let s = &slots[i as usize];
            s.gen == g && s.item.is_some() && s.in_main
        });
    }

    fn insert(&mut self, hash: u64, key: K, entry: Entry<V>)
    where
        K: Eq,
    {
        let item = |key, freq| {
            Arc::new(Item {
                key,
                hash,
                entry,
                live: AtomicBool::new(true),
                freq: AtomicU8::new(freq),
            })
        };
        if let Some(idx) = self.find(hash, &key) {
            // Replace in place: same queue position and use count.
            let slot = &mut self.slots[idx as usize];
            let freq = slot
                .item
                .as_ref()
                .map_or(0, |it| it.freq.load(Ordering::Relaxed));
            if let Some(old) = slot.item.replace(item(key, freq)) {
                old.live.store(false, Ordering::Release);
                self.removed.push(old);
            }
            return;
        }
        while self.len >= self.cap {
            if !self.evict_one() {
                break;
            }
        }
        let in_main = self.ghost_take(hash);
        let item = item(key, 0);
        let idx = match self.free.pop() {
            Some(i) => {
                let s = &mut self.slots[i as usize];
                s.hash = hash;
                s.in_main = in_main;
                s.item = Some(item);
                i
            }
            None => {
                self.slots.push(Slot {
                    hash,
                    gen: 0,
                    in_main,
                    item: Some(item),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let gen = self.slots[idx as usize].gen;
        let slots = &self.slots;
        self.table
            .insert_unique(hash, idx, |&i| slots[i as usize].hash);
        if in_main {
            self.main.push_back((idx, gen));
        } else {
            self.small_live += 1;
            self.small.push_back((idx, gen));
        }
        self.len += 1;
        self.compact_queues();
    }
}

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
            .map(|i| Shard {
                inner: RwLock::new(ShardInner::new(base + usize::from(i < extra))),
            })
            .collect();
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let stripes = (2 * cores).clamp(4, 64).next_power_of_two();
        MemoryStore {
            shard_mask: shards.len() - 1,
            shards,
            l1: (0..stripes)
                .map(|_| L1Stripe {
                    table: Mutex::new(Vec::new()),
                })
                .collect(),
            l1_len: (2 * max_entries).next_power_of_two().clamp(64, MAX_L1),
            hasher: FoldState::random(),
            capacity: max_entries,
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
        let mut t = stripe.table.lock().unwrap_or_else(PoisonError::into_inner);
        if t.is_empty() {
            t.resize_with(self.l1_len, || None);
        }
        t
    }

    /// Clears removed items from every stripe's lookup table.
    fn purge(&self, removed: Vec<Arc<Item<K, V>>>) {
        if removed.is_empty() {
            return;
        }
        for stripe in self.l1.iter() {
            let mut t = stripe.table.lock().unwrap_or_else(PoisonError::into_inner);
            if t.is_empty() {
                continue;
            }
            for item in &removed {
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
    /// removed from the lookup tables.
    fn write<R>(&self, hash: u64, f: impl FnOnce(&mut ShardInner<K, V>) -> R) -> R {
        let (r, removed) = {
            let mut g = self.shard(hash).write();
            let r = f(&mut g);
            (r, std::mem::take(&mut g.removed))
        };
        self.purge(removed);
        r
    }
}

impl<K, V> Shard<K, V> {
    #[inline]
    fn read(&self) -> RwLockReadGuard<'_, ShardInner<K, V>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    #[inline]
    fn write(&self) -> RwLockWriteGuard<'_, ShardInner<K, V>> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> Store<K, V> for MemoryStore<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    #[inline]
    fn get(&self, key: &K, now: Instant) -> Option<Entry<V>> {
        let hash = self.hash(key);
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

    fn insert(&self, key: K, entry: Entry<V>) {
        let hash = self.hash(&key);
        self.write(hash, |g| g.insert(hash, key, entry));
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
            let mut g = s.write();
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
            let mut t = stripe.table.lock().unwrap_or_else(PoisonError::into_inner);
            t.iter_mut().for_each(|x| *x = None);
        }
    }

    fn cleanup(&self, now: Instant) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let gone = {
                let mut g = s.write();
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
            self.purge(gone);
        }
        removed
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len).sum()
    }

    fn evictions(&self) -> u64 {
        self.shards.iter().map(|s| s.read().evictions).sum()
    }
}

impl<K, V> MemoryStore<K, V>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
{
    /// The lookup table missed: ask the shard, and remember the answer.
    #[cold]
    fn get_slow(&self, hash: u64, l1_slot: usize, key: &K, now: Instant) -> Option<Entry<V>> {
        let item = {
            let g = self.shard(hash).read();
            let idx = g.find(hash, key)?;
            g.slots[idx as usize].item.clone()?
        };
        if now < item.entry.keep_until {
            item.touch();
            let entry = item.entry.clone();
            // Only a live item may enter the table; one removed since we
            // read it is skipped (and if the race is lost, it is never
            // served, being dead, and is overwritten on next use).
            if item.live.load(Ordering::Acquire) {
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

/// The layer's store: the in-memory one dispatched statically (it is on
/// every hit), or a user's behind a `dyn`.
pub(crate) enum AnyStore<K, V> {
    Memory(MemoryStore<K, V>),
    Custom(Box<dyn Store<K, V>>),
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
            let g = s.read();
            assert!(g.small.len() + g.main.len() <= 2 * g.cap + 16);
            assert_eq!(g.len, 0);
        }
        // Nothing removed stays referenced from a lookup table.
        for stripe in store.l1.iter() {
            let t = stripe.table.lock().unwrap();
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
            let t = stripe.table.lock().unwrap();
            assert!(t.iter().all(Option::is_none));
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
            let g = s.read();
            assert_eq!(g.table.len(), g.len);
            assert!(g.len <= g.cap);
        }
    }
}
