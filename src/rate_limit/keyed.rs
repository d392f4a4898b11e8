//! The per-key cells of a keyed limit: a bounded, sharded table of TATs.
//!
//! A key whose TAT is at or before `now` has its whole burst available,
//! exactly like a key never seen, so such entries are dropped when a shard
//! is full without changing any decision. If a shard is still full (every
//! key in it is active), the entry nearest to idle among a few is evicted:
//! that key may get part of its burst early, which bounds memory under a
//! flood of distinct keys at the price of a little precision for the
//! flood's own keys.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::gcra::{Decision, Gcra};
use crate::sync::{lock, Padded};

const SHARDS: usize = 16;
/// Entries looked at to pick one to evict when a shard is full of active keys.
const EVICTION_SAMPLE: usize = 8;
/// A full shard drops its idle keys at most this often (ns): the sweep
/// walks the whole shard.
const SWEEP_EVERY: u64 = 50_000_000;

struct Shard<K> {
    tats: HashMap<K, u64>,
    last_sweep: Option<u64>,
    /// Whether the map has taken its room for churn (see `make_room`).
    sized: bool,
}

/// At most `per_shard * SHARDS` keys and their TATs.
pub(crate) struct KeyTable<K> {
    shards: Box<[Padded<Mutex<Shard<K>>>]>,
    per_shard: usize,
    hasher: RandomState,
    evicted: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyTable<K> {
    /// A table for at most `max_keys` keys (rounded up to a multiple of
    /// the shard count).
    pub(crate) fn new(max_keys: usize) -> Self {
        let per_shard = max_keys.div_ceil(SHARDS).max(1);
        KeyTable {
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(Mutex::new(Shard {
                        tats: HashMap::new(),
                        last_sweep: None,
                        sized: false,
                    }))
                })
                .collect(),
            per_shard,
            hasher: RandomState::new(),
            evicted: AtomicU64::new(0),
        }
    }

    /// The most keys the table holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, key: &K) -> &Mutex<Shard<K>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// [`Gcra::decide`] for `key`'s cell, taking the cell on
    /// [`Decision::Take`].
    pub(crate) fn acquire(&self, gcra: &Gcra, key: K, now: u64, max_wait: u64) -> Decision {
        let mut shard = lock(self.shard(&key));
        if let Some(tat) = shard.tats.get_mut(&key) {
            let decision = gcra.decide(*tat, now, max_wait);
            if let Decision::Take { tat: next, .. } = decision {
                *tat = next;
            }
            return decision;
        }
        let decision = gcra.decide(0, now, max_wait);
        if let Decision::Take { tat, .. } = decision {
            self.make_room(&mut shard, now);
            shard.tats.insert(key, tat);
        }
        decision
    }

    /// Gives back the cell a cancelled waiter took for `key`, if nobody took
    /// one after it.
    pub(crate) fn give_back(&self, gcra: &Gcra, key: &K, taken: u64) {
        let mut shard = lock(self.shard(key));
        if let Some(tat) = shard.tats.get_mut(key) {
            if *tat == taken {
                *tat = taken.saturating_sub(gcra.interval().as_nanos() as u64);
            }
        }
    }

    fn make_room(&self, shard: &mut Shard<K>, now: u64) {
        if shard.tats.len() < self.per_shard {
            return;
        }
        // Full. From here on every new key replaces an old one, and each
        // removal leaves a tombstone; the map cleans them in place only
        // while it is at most half full, and otherwise grows. A full shard
        // therefore ends at twice its bound whatever we do: take that room
        // now, once, while the table fills, so its memory is flat
        // afterwards (rather than stepping up at random under churn). Once:
        // `capacity()` counts tombstones against the room, so asking again
        // later would grow the map a second time.
        if !shard.sized {
            shard.sized = true;
            let room = 2 * self.per_shard;
            shard.tats.reserve(room.saturating_sub(shard.tats.len()));
        }
        if shard
            .last_sweep
            .is_none_or(|at| now.saturating_sub(at) >= SWEEP_EVERY)
        {
            shard.tats.retain(|_, tat| *tat > now);
            shard.last_sweep = Some(now);
        }
        while shard.tats.len() >= self.per_shard {
            // The map's order follows random hashes: a fair sample.
            let victim = shard
                .tats
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, tat)| **tat)
                .map(|(key, _)| key.clone());
            let Some(victim) = victim else { return };
            shard.tats.remove(&victim);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keys held now.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).tats.len()).sum()
    }

    /// Active keys evicted to keep the bound.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn keys_are_isolated_and_the_table_stays_bounded() {
        let g = Gcra::new(1, Duration::from_secs(1), 2);
        let t = KeyTable::new(100);
        assert!(matches!(t.acquire(&g, "a", 0, 0), Decision::Take { .. }));
        assert!(matches!(t.acquire(&g, "a", 0, 0), Decision::Take { .. }));
        assert!(matches!(t.acquire(&g, "a", 0, 0), Decision::Refuse { .. }));
        // Another key still has its whole burst.
        assert!(matches!(t.acquire(&g, "b", 0, 0), Decision::Take { .. }));

        // A million distinct, all active keys: never more than the bound.
        let t = KeyTable::new(1_000);
        for k in 0..1_000_000u64 {
            t.acquire(&g, k, 0, 0);
        }
        assert!(t.len() <= t.capacity(), "{} > {}", t.len(), t.capacity());
        assert!(t.capacity() < 1_100);
        assert!(t.evicted() >= 1_000_000 - t.capacity() as u64);
        // Idle keys are swept, not evicted: 32 new keys over 16 shards of
        // 10 never fill a swept shard (that would take 11 in one).
        let t = KeyTable::new(160);
        for k in 0..1_000u64 {
            t.acquire(&g, k, 0, 0);
        }
        let before = t.evicted();
        for k in 1_000..1_032u64 {
            t.acquire(&g, k, 10_000_000_000, 0);
        }
        assert_eq!(t.evicted(), before);
    }

    #[test]
    fn a_full_table_does_not_grow_under_churn() {
        let g = Gcra::new(1, Duration::from_secs(1), 2);
        let t = KeyTable::new(10_000);
        let capacity =
            |t: &KeyTable<u64>| -> usize { t.shards.iter().map(|s| lock(s).tats.capacity()).sum() };
        for k in 0..20_000u64 {
            t.acquire(&g, k, 0, 0);
        }
        let full = capacity(&t);
        // A million more keys, mostly new, each replacing an active one.
        // Tombstones lower the room left between rehashes; a rehash in
        // place brings it back; only a map that grew would have more.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for i in 0..1_000_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t.acquire(&g, 20_000 + x % 1_000_000, 0, 0);
            if i % 10_000 == 0 {
                assert!(capacity(&t) <= full, "a shard's map grew after the fill");
            }
        }
        assert!(capacity(&t) <= full, "a shard's map grew after the fill");
        assert!(
            full <= 4 * t.capacity(),
            "{full} slots for {} keys",
            t.capacity()
        );
    }
}
