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
        deadline: Option<Instant>,
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
            deadline: registered.checked_add(timeout),
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
                } if g == generation => return deadline,
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
