//! [`IdMap`]: a map from task ids to values, shaped for the way a queue's
//! ids behave. Ids are handed out in increasing order and most tasks are
//! forgotten in roughly that order, so the map keeps a window of slots
//! indexed by id (a `VecDeque`: an insert appends, a removal clears a slot
//! and drops the cleared slots at the front). An id that falls outside the
//! window (far older than the rest, or out of stride) lives in a small hash
//! map beside it.
//!
//! Why not only a `HashMap`: an id's bucket is at a random place in the
//! table, so taking a result a thousand tasks after it was submitted missed
//! the cache on the bucket; with the window the slots of nearby ids are
//! neighbours in memory. Memory stays bounded: the window holds at most
//! [`WINDOW`] slots; when a stuck entry would stretch it further, the entry
//! moves to the hash map.
//!
//! Values can be [`Forgotten`]: still present, but free to drop. The map
//! drops them as it tidies up (the front of the window on each insert, the
//! hash map whenever it has doubled since it was last tidied, everything
//! on [`IdMap::tidy`]), so an owner can forget a value without looking it
//! up.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// Most slots the window holds.
pub(crate) const WINDOW: usize = 1024;

/// A value the map may drop when it tidies up.
pub(crate) trait Forgotten {
    /// Whether the map may drop this value.
    fn forgotten(&self) -> bool;
}

/// Hashes the sequential task ids (a multiply and a fold is plenty).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// See the module docs. `STRIDE` is the step between the ids this map is
/// expected to hold (the table's shard count: shard `k` holds the ids
/// `k, k + STRIDE, ...`; a constant, so finding a slot is a shift, not a
/// division); any other id still works, through the hash map.
pub(crate) struct IdMap<V, const STRIDE: u64> {
    /// `id / STRIDE` of `slots[0]`.
    base: u64,
    /// Each slot holds its full id, so an id that shares a slot index with
    /// another (out of stride) is told apart and sent to `spill`.
    slots: VecDeque<Option<(u64, V)>>,
    /// Occupied slots.
    in_slots: usize,
    spill: HashMap<u64, V, BuildHasherDefault<IdHasher>>,
    /// `spill` is tidied when it grows past this size.
    spill_mark: usize,
}

/// The smallest [`IdMap::spill_mark`].
const SPILL_MARK: usize = 64;

impl<V: Forgotten, const STRIDE: u64> IdMap<V, STRIDE> {
    pub(crate) fn new() -> Self {
        const { assert!(STRIDE > 0, "a stride of at least 1") };
        IdMap {
            base: 0,
            slots: VecDeque::new(),
            in_slots: 0,
            spill: HashMap::default(),
            spill_mark: SPILL_MARK,
        }
    }

    /// The slot index of `id` if it is inside the window.
    fn index(&self, id: u64) -> Option<usize> {
        let local = id / STRIDE;
        let index = usize::try_from(local.checked_sub(self.base)?).ok()?;
        (index < self.slots.len()).then_some(index)
    }

    /// Values present, forgotten ones included (see [`tidy`](Self::tidy)).
    pub(crate) fn len(&self) -> usize {
        self.in_slots + self.spill.len()
    }

    pub(crate) fn get(&self, id: &u64) -> Option<&V> {
        if let Some(i) = self.index(*id) {
            if let Some((k, v)) = &self.slots[i] {
                if k == id {
                    return Some(v);
                }
            }
        }
        self.spill.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: &u64) -> Option<&mut V> {
        if let Some(i) = self.index(*id) {
            if matches!(&self.slots[i], Some((k, _)) if k == id) {
                return self.slots[i].as_mut().map(|(_, v)| v);
            }
        }
        self.spill.get_mut(id)
    }

    #[cfg(test)]
    pub(crate) fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    /// Inserts `value` under `id`, returning the value it replaces.
    pub(crate) fn insert(&mut self, id: u64, value: V) -> Option<V> {
        let local = id / STRIDE;
        if self.slots.is_empty() {
            self.base = local;
        }
        if local < self.base {
            return self.spill_insert(id, value);
        }
        let Ok(index) = usize::try_from(local - self.base) else {
            return self.spill_insert(id, value);
        };
        // An id sent to the hash map earlier (far ahead of the window then)
        // must not be in both places.
        let earlier = if self.spill.is_empty() {
            None
        } else {
            self.spill.remove(&id)
        };
        if index < self.slots.len() {
            return match &mut self.slots[index] {
                Some((k, v)) if *k == id => Some(std::mem::replace(v, value)),
                Some(_) => self.spill_insert(id, value).or(earlier),
                slot @ None => {
                    *slot = Some((id, value));
                    self.in_slots += 1;
                    earlier
                }
            };
        }
        if index - self.slots.len() >= WINDOW {
            // Far ahead of the window: a fresh window would strand every
            // slot in it, so this one id goes to the hash map instead.
            return self.spill_insert(id, value).or(earlier);
        }
        while self.slots.len() < index {
            self.slots.push_back(None);
        }
        self.slots.push_back(Some((id, value)));
        self.in_slots += 1;
        self.shrink();
        earlier
    }

    pub(crate) fn remove(&mut self, id: &u64) -> Option<V> {
        if let Some(i) = self.index(*id) {
            if matches!(&self.slots[i], Some((k, _)) if k == id) {
                let (_, value) = self.slots[i].take()?;
                self.in_slots -= 1;
                self.shrink();
                return Some(value);
            }
        }
        self.spill.remove(id)
    }

    /// Drops cleared slots and forgotten values at the front, and moves
    /// entries out of the front while the window is wider than
    /// [`WINDOW`]; tidies the hash map once it has doubled.
    fn shrink(&mut self) {
        while let Some(front) = self.slots.front() {
            let keep = front.as_ref().is_some_and(|(_, v)| !v.forgotten());
            if keep && self.slots.len() <= WINDOW {
                break;
            }
            if let Some(Some((id, value))) = self.slots.pop_front() {
                self.in_slots -= 1;
                if keep {
                    self.spill.insert(id, value);
                }
            }
            self.base += 1;
        }
        self.tidy_spill_if_grown();
    }

    /// Inserts into the hash map, tidying it first if it has doubled.
    fn spill_insert(&mut self, id: u64, value: V) -> Option<V> {
        self.tidy_spill_if_grown();
        self.spill.insert(id, value)
    }

    fn tidy_spill_if_grown(&mut self) {
        if self.spill.len() > self.spill_mark {
            self.spill.retain(|_, v| !v.forgotten());
            self.spill_mark = (2 * self.spill.len()).max(SPILL_MARK);
        }
    }

    /// Drops every forgotten value.
    pub(crate) fn tidy(&mut self) {
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|(_, v)| v.forgotten()) {
                *slot = None;
                self.in_slots -= 1;
            }
        }
        self.spill.retain(|_, v| !v.forgotten());
        self.spill_mark = (2 * self.spill.len()).max(SPILL_MARK);
        self.shrink();
    }

    /// Every value, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.slots
            .iter()
            .flatten()
            .map(|(_, v)| v)
            .chain(self.spill.values())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    impl Forgotten for u64 {
        fn forgotten(&self) -> bool {
            false
        }
    }

    impl Forgotten for &str {
        fn forgotten(&self) -> bool {
            *self == "forgotten"
        }
    }

    #[test]
    fn in_stride_ids_live_in_the_window_and_leave_it_in_order() {
        let mut m = IdMap::<_, 8>::new();
        for id in (3..8 * 100).step_by(8) {
            assert_eq!(m.insert(id, id * 2), None);
        }
        assert_eq!((m.len(), m.spill.len()), (100, 0));
        assert_eq!(m.get(&83), Some(&166));
        assert_eq!(m.get(&84), None);
        for id in (3..8 * 100).step_by(8) {
            assert_eq!(m.remove(&id), Some(id * 2));
        }
        assert_eq!((m.len(), m.slots.len()), (0, 0));
    }

    #[test]
    fn a_stuck_entry_moves_out_of_the_window_and_stays_reachable() {
        let mut m = IdMap::<_, 1>::new();
        m.insert(0, "stuck");
        for id in 1..=(WINDOW as u64 * 3) {
            m.insert(id, "x");
            m.remove(&id);
        }
        assert!(m.slots.len() <= WINDOW, "window bounded: {}", m.slots.len());
        assert_eq!(m.get(&0), Some(&"stuck"));
        assert_eq!(m.remove(&0), Some("stuck"));
        assert_eq!(m.len(), 0);
    }

    /// The map agrees with a `HashMap` on a mixed sequence of operations,
    /// with ids in and out of stride, older than the window and far ahead.
    #[test]
    fn agrees_with_a_hash_map() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut ours = IdMap::<_, 8>::new();
        let mut model = HashMap::new();
        let mut next = 0u64;
        for step in 0..200_000u64 {
            match rng.u8(0..10) {
                0..=4 => {
                    let id = match rng.u8(0..20) {
                        0 => rng.u64(0..next.max(1)),
                        1 => next + rng.u64(0..100_000),
                        _ => {
                            next += 8;
                            next
                        }
                    };
                    assert_eq!(ours.insert(id, step), model.insert(id, step));
                }
                5..=8 => {
                    let id = rng.u64(0..next.max(1) + 16);
                    assert_eq!(ours.remove(&id), model.remove(&id));
                }
                _ => {
                    let id = rng.u64(0..next.max(1) + 16);
                    assert_eq!(ours.get(&id), model.get(&id));
                    if let Some(v) = ours.get_mut(&id) {
                        *v += 1;
                        *model.get_mut(&id).unwrap() += 1;
                    }
                }
            }
            assert_eq!(ours.len(), model.len());
            assert!(ours.slots.len() <= WINDOW);
        }
        let mut all: Vec<_> = ours.values().copied().collect();
        let mut expected: Vec<_> = model.values().copied().collect();
        all.sort_unstable();
        expected.sort_unstable();
        assert_eq!(all, expected);
    }

    #[test]
    fn forgotten_values_are_dropped_as_the_map_tidies_up() {
        let mut m = IdMap::<_, 1>::new();
        // In the window: the front run of forgotten values goes on insert.
        m.insert(0, "forgotten");
        m.insert(1, "forgotten");
        m.insert(2, "kept");
        assert_eq!(m.len(), 1);
        assert_eq!(m.get(&2), Some(&"kept"));
        // Behind a kept value they stay until `tidy`.
        m.insert(3, "forgotten");
        m.insert(4, "kept");
        assert_eq!(m.len(), 3);
        m.tidy();
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&3), None);
        // In the hash map (far ahead of a window held by a kept value):
        // dropped once it has grown past its mark.
        let mut m = IdMap::<_, 1>::new();
        m.insert(0, "kept");
        for id in 1..=(SPILL_MARK as u64 + 2) {
            m.insert(id * 10 * WINDOW as u64, "forgotten");
        }
        assert_eq!(m.spill.len(), 1, "tidied");
        assert_eq!(m.get(&0), Some(&"kept"));
    }
}
