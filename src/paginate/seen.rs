//! The loop guard's memory of cursors and links already followed.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// The loop guard's memory: hashes of the tokens or URLs followed so far,
/// bounded (oldest forgotten first).
#[derive(Debug, Default)]
pub(crate) struct SeenSet {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

const SEEN_CAPACITY: usize = 16_384;

impl SeenSet {
    /// Records `key`; `false` when it was already there.
    pub(crate) fn insert(&mut self, key: &str) -> bool {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_set_is_bounded() {
        let mut seen = SeenSet::default();
        for i in 0..SEEN_CAPACITY + 10 {
            assert!(seen.insert(&i.to_string()));
        }
        assert_eq!(seen.len(), SEEN_CAPACITY);
        assert_eq!(seen.set.len(), SEEN_CAPACITY);
        assert!(!seen.insert(&(SEEN_CAPACITY + 9).to_string()));
        assert!(seen.insert("0"), "the oldest entry was forgotten");
    }
}
