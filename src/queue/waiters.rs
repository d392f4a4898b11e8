//! A list of wakers, one slot per waiting future, so a dropped future
//! removes exactly its own waker: the submitters waiting for room, and the
//! futures waiting for one task's result.

use std::task::Waker;

/// Wakers of futures waiting on something, each keyed by a slot index the
/// future keeps, so a dropped future removes exactly its own waker.
///
/// The first slot is inline: one waiter (the common case: a task's handle)
/// costs no allocation.
#[derive(Default)]
pub(crate) struct Waiters {
    /// Slot 0.
    first: Slot,
    /// Slots 1.. (index `k - 1`).
    rest: Vec<Slot>,
    live: usize,
}

#[derive(Default)]
enum Slot {
    #[default]
    Free,
    Waiting(Waker),
    Notified,
}

impl Waiters {
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    fn slot(&mut self, k: usize) -> &mut Slot {
        match k {
            0 => &mut self.first,
            k => &mut self.rest[k - 1],
        }
    }

    fn slots(&mut self) -> impl Iterator<Item = &mut Slot> {
        std::iter::once(&mut self.first).chain(self.rest.iter_mut())
    }

    /// Registers (or refreshes) the waker of the future holding `key`.
    pub(crate) fn register(&mut self, key: &mut Option<usize>, waker: &Waker) {
        match *key {
            Some(k) => match self.slot(k) {
                Slot::Waiting(w) if w.will_wake(waker) => {}
                slot => *slot = Slot::Waiting(waker.clone()),
            },
            None => {
                self.live += 1;
                let free = self.slots().position(|s| matches!(s, Slot::Free));
                let k = match free {
                    Some(k) => k,
                    None => {
                        self.rest.push(Slot::Free);
                        self.rest.len()
                    }
                };
                *self.slot(k) = Slot::Waiting(waker.clone());
                *key = Some(k);
            }
        }
    }

    /// Removes the future holding `key`; true if it had been notified and
    /// had not acted on it yet.
    pub(crate) fn remove(&mut self, key: &mut Option<usize>) -> bool {
        let Some(k) = key.take() else { return false };
        let notified = matches!(std::mem::take(self.slot(k)), Slot::Notified);
        self.live -= 1;
        while matches!(self.rest.last(), Some(Slot::Free)) {
            self.rest.pop();
        }
        notified
    }

    /// Marks one waiting future notified and returns its waker.
    pub(crate) fn notify_one(&mut self) -> Option<Waker> {
        self.slots().find_map(Slot::notify)
    }

    /// Marks every waiting future notified; returns the first one's waker
    /// for the caller to wake once its lock is released, and wakes the
    /// others at once (waking only schedules tasks).
    pub(crate) fn notify_all_but_one(&mut self) -> Option<Waker> {
        let mut first = None;
        for waker in self.slots().filter_map(Slot::notify) {
            if first.is_none() {
                first = Some(waker);
            } else {
                waker.wake();
            }
        }
        first
    }

    /// Wakes every waiting future (under the caller's lock: waking only
    /// schedules tasks).
    pub(crate) fn notify_all(&mut self) {
        if let Some(w) = self.notify_all_but_one() {
            w.wake();
        }
    }
}

impl Slot {
    /// Waiting -> Notified, handing back the waker.
    fn notify(&mut self) -> Option<Waker> {
        match std::mem::replace(self, Slot::Notified) {
            Slot::Waiting(w) => Some(w),
            other => {
                *self = other;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn slots_are_reused_and_each_waiter_is_woken_once() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut w = Waiters::default();
        let mut keys = [None; 3];
        for key in &mut keys {
            w.register(key, &waker);
        }
        assert_eq!(keys, [Some(0), Some(1), Some(2)]);
        assert!(!w.remove(&mut keys[0]));
        let mut again = None;
        w.register(&mut again, &waker);
        assert_eq!((again, w.live()), (Some(0), 3));
        w.notify_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
        assert!(w.notify_one().is_none());
        assert!(w.remove(&mut keys[2]) && w.remove(&mut keys[1]) && w.remove(&mut again));
        assert_eq!((w.live(), w.rest.len()), (0, 0));
    }
}
