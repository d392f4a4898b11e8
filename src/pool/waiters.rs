//! The waiter queue: acquirers waiting in line, first come first served.
//!
//! A slab of slots plus a FIFO of (slot, generation). Cancelled waiters
//! leave stale FIFO entries behind; they are skipped when popped and
//! compacted away when they outnumber the live ones, so memory stays
//! proportional to the number of live waiters. Pure bookkeeping: the pool's
//! state holds it under its lock.

use std::collections::VecDeque;
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::time;

/// What a waiter receives; `R` is an idle resource as the pool holds it.
pub(super) enum Grant<R> {
    /// An idle resource (still to be recycled).
    Resource(R),
    /// A reserved slot: create a resource in it.
    Create,
    /// The pool closed.
    Closed,
    /// The waiter's `acquire_timeout` ran out (set by the background task).
    TimedOut,
}

enum Slot<R> {
    Vacant,
    Waiting {
        generation: u64,
        waker: Option<Waker>,
        registered: Instant,
        /// `registered + acquire_timeout`, saturating (see [`time::deadline`]).
        deadline: Instant,
    },
    Granted {
        generation: u64,
        grant: Grant<R>,
    },
}

/// The queue; see the module docs.
pub(super) struct Waiters<R> {
    slots: Vec<Slot<R>>,
    free: Vec<usize>,
    queue: VecDeque<(usize, u64)>,
    /// Waiters not yet granted.
    pub(super) waiting: usize,
    next_generation: u64,
}

impl<R> Default for Waiters<R> {
    fn default() -> Self {
        Waiters {
            slots: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            waiting: 0,
            next_generation: 0,
        }
    }
}

impl<R> Waiters<R> {
    /// Joins the back of the line; returns the waiter's key and generation,
    /// which it passes to [`Waiters::poll`] and [`Waiters::cancel`].
    pub(super) fn register(
        &mut self,
        waker: Waker,
        registered: Instant,
        timeout: Duration,
    ) -> (usize, u64) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let slot = Slot::Waiting {
            generation,
            waker: Some(waker),
            registered,
            deadline: time::deadline(registered, timeout),
        };
        let key = match self.free.pop() {
            Some(key) => {
                self.slots[key] = slot;
                key
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        self.queue.push_back((key, generation));
        self.waiting += 1;
        (key, generation)
    }

    /// The longest-waiting live waiter, removed from the queue.
    pub(super) fn pop_next(&mut self) -> Option<usize> {
        while let Some((key, generation)) = self.queue.pop_front() {
            if matches!(self.slots[key], Slot::Waiting { generation: g, .. } if g == generation) {
                return Some(key);
            }
        }
        None
    }

    /// The deadline of the longest-waiting live waiter. Every waiter has
    /// the same timeout, so it is the earliest one.
    pub(super) fn front_deadline(&mut self) -> Option<Instant> {
        while let Some(&(key, generation)) = self.queue.front() {
            match self.slots[key] {
                Slot::Waiting {
                    generation: g,
                    deadline,
                    ..
                } if g == generation => return Some(deadline),
                _ => {
                    self.queue.pop_front();
                }
            }
        }
        None
    }

    /// When the (live) waiter in `key` joined the queue.
    pub(super) fn registered_at(&self, key: usize) -> Instant {
        match self.slots[key] {
            Slot::Waiting { registered, .. } => registered,
            _ => unreachable!("pop_next only returns waiting slots"),
        }
    }

    /// Pops the longest-waiting live waiter if its deadline has passed.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        if self.front_deadline()? <= now {
            self.pop_next()
        } else {
            None
        }
    }

    /// Gives `grant` to the waiter in `key` (just popped); returns its waker.
    pub(super) fn grant(&mut self, key: usize, grant: Grant<R>) -> Option<Waker> {
        let Slot::Waiting {
            generation, waker, ..
        } = std::mem::replace(&mut self.slots[key], Slot::Vacant)
        else {
            unreachable!("pop_next only returns waiting slots");
        };
        self.slots[key] = Slot::Granted { generation, grant };
        self.waiting -= 1;
        waker
    }

    /// The waiter's grant if it has one (its slot is then freed), or
    /// `Pending` with its waker updated.
    pub(super) fn poll(&mut self, key: usize, generation: u64, waker: &Waker) -> Poll<Grant<R>> {
        match &mut self.slots[key] {
            Slot::Waiting {
                generation: g,
                waker: stored,
                ..
            } if *g == generation => {
                match stored {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *stored = Some(waker.clone()),
                }
                Poll::Pending
            }
            Slot::Granted { generation: g, .. } if *g == generation => {
                let Slot::Granted { grant, .. } =
                    std::mem::replace(&mut self.slots[key], Slot::Vacant)
                else {
                    unreachable!("matched just above");
                };
                self.free.push(key);
                Poll::Ready(grant)
            }
            // Not reachable: a waiter's slot is only vacated by the waiter.
            _ => Poll::Ready(Grant::Closed),
        }
    }

    /// The waiter in `key` gave up; returns a grant it had not taken yet.
    pub(super) fn cancel(&mut self, key: usize, generation: u64) -> Option<Grant<R>> {
        let owned = match &self.slots[key] {
            Slot::Waiting { generation: g, .. } | Slot::Granted { generation: g, .. } => {
                *g == generation
            }
            Slot::Vacant => false,
        };
        if !owned {
            return None;
        }
        let grant = match std::mem::replace(&mut self.slots[key], Slot::Vacant) {
            Slot::Granted { grant, .. } => Some(grant),
            _ => {
                self.waiting -= 1;
                None
            }
        };
        self.free.push(key);
        if self.queue.len() > 2 * self.waiting + 32 {
            let slots = &self.slots;
            self.queue.retain(|&(key, generation)| {
                matches!(slots[key], Slot::Waiting { generation: g, .. } if g == generation)
            });
        }
        grant
    }

    /// Grants `Closed` to every waiter; returns their wakers.
    pub(super) fn close_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while let Some(key) = self.pop_next() {
            wakers.extend(self.grant(key, Grant::Closed));
        }
        wakers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn join(w: &mut Waiters<u32>) -> (usize, u64) {
        w.register(Waker::noop().clone(), Instant::now(), TIMEOUT)
    }

    fn taken(w: &mut Waiters<u32>, (key, generation): (usize, u64)) -> Option<Grant<u32>> {
        match w.poll(key, generation, Waker::noop()) {
            Poll::Ready(grant) => Some(grant),
            Poll::Pending => None,
        }
    }

    #[test]
    fn waiters_are_served_first_come_first_served() {
        let mut w = Waiters::default();
        let (a, b, c) = (join(&mut w), join(&mut w), join(&mut w));
        assert_eq!(w.waiting, 3);
        for (n, waiter) in [a, b, c].into_iter().enumerate() {
            let key = w.pop_next().unwrap();
            assert_eq!(key, waiter.0);
            assert!(w.grant(key, Grant::Resource(n as u32)).is_some());
        }
        assert_eq!(w.waiting, 0);
        assert!(w.pop_next().is_none());
        assert!(matches!(taken(&mut w, b), Some(Grant::Resource(1))));
        assert!(matches!(taken(&mut w, a), Some(Grant::Resource(0))));
        assert!(matches!(taken(&mut w, c), Some(Grant::Resource(2))));
    }

    #[test]
    fn a_waiter_still_waiting_stays_pending() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        assert!(taken(&mut w, a).is_none());
        assert_eq!(w.waiting, 1);
    }

    #[test]
    fn a_cancelled_waiter_is_skipped_and_returns_an_untaken_grant() {
        let mut w = Waiters::default();
        let (a, b) = (join(&mut w), join(&mut w));
        assert!(w.cancel(a.0, a.1).is_none(), "nothing was granted yet");
        assert_eq!(w.waiting, 1);
        let key = w.pop_next().unwrap();
        assert_eq!(key, b.0, "the cancelled waiter is skipped");
        let _ = w.grant(key, Grant::Resource(7));
        assert!(matches!(w.cancel(b.0, b.1), Some(Grant::Resource(7))));
        assert_eq!(w.waiting, 0);
    }

    #[test]
    fn a_reused_slot_does_not_answer_its_old_owner() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        assert!(w.cancel(a.0, a.1).is_none());
        let b = join(&mut w);
        assert_eq!(a.0, b.0, "the slot is reused");
        assert!(w.cancel(a.0, a.1).is_none(), "a stale cancel is ignored");
        assert_eq!(w.waiting, 1);
        assert_eq!(w.pop_next(), Some(b.0));
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut w = Waiters::<u32>::default();
        let live = join(&mut w);
        for _ in 0..1000 {
            let gone = join(&mut w);
            assert!(w.cancel(gone.0, gone.1).is_none());
        }
        assert!(
            w.queue.len() <= 2 * w.waiting + 33,
            "queue {}",
            w.queue.len()
        );
        assert!(w.slots.len() <= 2);
        assert_eq!(w.pop_next(), Some(live.0));
    }

    #[test]
    fn only_an_expired_front_waiter_is_popped() {
        let mut w = Waiters::<u32>::default();
        let start = Instant::now();
        let a = w.register(Waker::noop().clone(), start, TIMEOUT);
        assert_eq!(w.front_deadline(), Some(start + TIMEOUT));
        assert_eq!(w.pop_expired(start), None);
        assert_eq!(w.pop_expired(start + TIMEOUT), Some(a.0));
    }

    #[test]
    fn close_all_grants_closed_to_every_waiter() {
        let mut w = Waiters::<u32>::default();
        let (a, b) = (join(&mut w), join(&mut w));
        assert_eq!(w.close_all().len(), 2);
        assert_eq!(w.waiting, 0);
        assert!(matches!(taken(&mut w, a), Some(Grant::Closed)));
        assert!(matches!(taken(&mut w, b), Some(Grant::Closed)));
    }
}
