//! A list of wakers, one slot per waiting future, so a dropped future
//! removes exactly its own waker: the submitters waiting for room, and the
//! futures waiting for one task's result.

use std::task::Waker;

/// Wakers of futures waiting on something, each keyed by a slot index the
/// future keeps, so a dropped future removes exactly its own waker.
#[derive(Default)]
pub(crate) struct Waiters {
    slots: Vec<Slot>,
    live: usize,
}

enum Slot {
    Free,
    Waiting(Waker),
    Notified,
}

impl Waiters {
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Registers (or refreshes) the waker of the future holding `key`.
    pub(crate) fn register(&mut self, key: &mut Option<usize>, waker: &Waker) {
        match *key {
            Some(k) => match &mut self.slots[k] {
                Slot::Waiting(w) if w.will_wake(waker) => {}
                slot => *slot = Slot::Waiting(waker.clone()),
            },
            None => {
                self.live += 1;
                let slot = Slot::Waiting(waker.clone());
                match self.slots.iter().position(|s| matches!(s, Slot::Free)) {
                    Some(k) => {
                        self.slots[k] = slot;
                        *key = Some(k);
                    }
                    None => {
                        self.slots.push(slot);
                        *key = Some(self.slots.len() - 1);
                    }
                }
            }
        }
    }

    /// Removes the future holding `key`; true if it had been notified and
    /// had not acted on it yet.
    pub(crate) fn remove(&mut self, key: &mut Option<usize>) -> bool {
        let Some(k) = key.take() else { return false };
        let notified = matches!(self.slots[k], Slot::Notified);
        self.slots[k] = Slot::Free;
        self.live -= 1;
        while matches!(self.slots.last(), Some(Slot::Free)) {
            self.slots.pop();
        }
        notified
    }

    /// Marks one waiting future notified and returns its waker.
    pub(crate) fn notify_one(&mut self) -> Option<Waker> {
        for slot in &mut self.slots {
            if let Slot::Waiting(_) = slot {
                if let Slot::Waiting(w) = std::mem::replace(slot, Slot::Notified) {
                    return Some(w);
                }
            }
        }
        None
    }

    /// Wakes every waiting future (under the caller's lock: waking only
    /// schedules tasks).
    pub(crate) fn notify_all(&mut self) {
        for slot in &mut self.slots {
            if let Slot::Waiting(_) = slot {
                if let Slot::Waiting(w) = std::mem::replace(slot, Slot::Notified) {
                    w.wake();
                }
            }
        }
    }
}
