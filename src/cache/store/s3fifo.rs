//! One shard of the [`MemoryStore`](super::MemoryStore): a bounded table
//! evicting by S3-FIFO (a small probationary FIFO, a main CLOCK queue and a
//! ghost queue of recently evicted hashes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;

use super::Entry;

/// A stored entry: immutable once made, shared between the shard that
/// owns it and the lookup tables that point at it.
pub(super) struct Item<K, V> {
    pub(super) key: K,
    pub(super) hash: u64,
    pub(super) entry: Entry<V>,
    /// Cleared when the entry is replaced or removed.
    pub(super) live: AtomicBool,
    /// Set before the item first enters a thread's lookup table: a removed
    /// item never listed there needs no purge of the tables.
    pub(super) listed: AtomicBool,
    /// S3-FIFO use counter, 0..=FREQ_MAX.
    pub(super) freq: AtomicU8,
}

impl<K, V> Item<K, V> {
    #[inline]
    pub(super) fn touch(&self) {
        let f = self.freq.load(Ordering::Relaxed);
        if f < FREQ_MAX {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}

pub(super) struct Slot<K, V> {
    pub(super) hash: u64,
    gen: u32,
    in_main: bool,
    pub(super) item: Option<Arc<Item<K, V>>>,
}

pub(super) struct ShardInner<K, V> {
    pub(super) table: HashTable<u32>,
    pub(super) slots: Vec<Slot<K, V>>,
    free: Vec<u32>,
    /// Probationary FIFO queue of (slot, generation).
    pub(super) small: VecDeque<(u32, u32)>,
    /// Main CLOCK queue of (slot, generation).
    pub(super) main: VecDeque<(u32, u32)>,
    small_live: usize,
    pub(super) len: usize,
    /// Hashes of keys recently evicted from the small queue.
    ghost: VecDeque<u64>,
    ghost_set: HashTable<u64>,
    pub(super) cap: usize,
    small_cap: usize,
    pub(super) evictions: u64,
    /// Items removed under the write lock, to clear from the lookup
    /// tables once it is released.
    pub(super) removed: Vec<Arc<Item<K, V>>>,
}

/// Use-counter cap (S3-FIFO uses two bits).
const FREQ_MAX: u8 = 3;

impl<K, V> ShardInner<K, V> {
    pub(super) fn new(cap: usize) -> Self {
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

    pub(super) fn find(&self, hash: u64, key: &K) -> Option<u32>
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
    pub(super) fn remove_slot(&mut self, idx: u32) -> bool {
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
        item.live.store(false, Ordering::SeqCst);
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
    pub(super) fn compact_queues(&mut self) {
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

    pub(super) fn insert(&mut self, hash: u64, key: K, entry: Entry<V>)
    where
        K: Eq,
    {
        let item = |key, freq| {
            Arc::new(Item {
                key,
                hash,
                entry,
                live: AtomicBool::new(true),
                listed: AtomicBool::new(false),
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
                old.live.store(false, Ordering::SeqCst);
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
