//! The waiter queue: acquirers waiting in line, first come first served.
//!
//! A slab of slots plus a FIFO of (slot, generation). Cancelled waiters
//! leave stale FIFO entries behind; they are skipped when popped and
//! compacted away when they outnumber the live ones, so memory stays
//! proportional to the number of live waiters. Pure bookkeeping: the pool's
//! state holds it under its lock.
//!
//! A grant is delivered into the waiter's [`Mailbox`], which the waiter
//! holds too: a woken waiter takes its grant from there without the pool's
//! lock (the lock's cache line is the one every acquire and release
//! contends for). Its slot is freed at the grant. Mailboxes are reused:
//! a granted one goes to the back of a short spare line, and a new waiter
//! takes the front one if its last waiter has let go of it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;
use crate::time;

/// Most spare mailboxes kept for reuse.
const SPARE_MAILBOXES: usize = 64;

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

/// Where one waiter's grant is put (under the pool's lock) and taken
/// (without it).
pub(super) struct Mailbox<R> {
    grant: Mutex<Option<Grant<R>>>,
}

impl<R> Mailbox<R> {
    /// The grant, if one was delivered and not taken yet.
    fn take(&self) -> Option<Grant<R>> {
        lock(&self.grant).take()
    }
}

/// A waiter's place in line: its slot, the slot's generation (a reused
/// slot does not answer its old owner) and its mailbox.
pub(super) struct Ticket<R> {
    key: usize,
    generation: u64,
    mailbox: Arc<Mailbox<R>>,
}

impl<R> Ticket<R> {
    /// The grant, if one was delivered; needs no lock of the pool's.
    pub(super) fn try_take(&self) -> Option<Grant<R>> {
        self.mailbox.take()
    }
}

enum Slot<R> {
    Vacant,
    Waiting {
        generation: u64,
        waker: Option<Waker>,
        registered: Instant,
        /// `registered + acquire_timeout`, saturating (see [`time::deadline`]).
        deadline: Instant,
        mailbox: Arc<Mailbox<R>>,
    },
}

/// The queue; see the module docs.
pub(super) struct Waiters<R> {
    slots: Vec<Slot<R>>,
    free: Vec<usize>,
    queue: VecDeque<(usize, u64)>,
    /// Mailboxes of granted or departed waiters, oldest first.
    spare: VecDeque<Arc<Mailbox<R>>>,
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
            spare: VecDeque::new(),
            waiting: 0,
            next_generation: 0,
        }
    }
}

impl<R> Waiters<R> {
    /// Joins the back of the line; returns the waiter's ticket, which it
    /// passes to [`Waiters::poll`] and [`Waiters::cancel`].
    pub(super) fn register(
        &mut self,
        waker: Waker,
        registered: Instant,
        timeout: Duration,
    ) -> Ticket<R> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mailbox = self.mailbox();
        let slot = Slot::Waiting {
            generation,
            waker: Some(waker),
            registered,
            deadline: time::deadline(registered, timeout),
            mailbox: mailbox.clone(),
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
        Ticket {
            key,
            generation,
            mailbox,
        }
    }

    /// An empty mailbox no other waiter holds: the oldest spare one if its
    /// last waiter has let go of it, else a new one.
    fn mailbox(&mut self) -> Arc<Mailbox<R>> {
        if let Some(spare) = self.spare.pop_front() {
            // Only this queue can make more references to a spare mailbox,
            // so one seen unshared stays unshared.
            if Arc::strong_count(&spare) == 1 {
                return spare;
            }
            // Its waiter has not taken its grant yet: keep it for later.
            self.spare.push_back(spare);
        }
        Arc::new(Mailbox {
            grant: Mutex::new(None),
        })
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
            Slot::Vacant => unreachable!("pop_next only returns waiting slots"),
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

    /// Gives `grant` to the waiter in `key` (just popped), frees its slot;
    /// returns its waker.
    pub(super) fn grant(&mut self, key: usize, grant: Grant<R>) -> Option<Waker> {
        let Slot::Waiting { waker, mailbox, .. } =
            std::mem::replace(&mut self.slots[key], Slot::Vacant)
        else {
            unreachable!("pop_next only returns waiting slots");
        };
        *lock(&mailbox.grant) = Some(grant);
        self.retire(key, mailbox);
        waker
    }

    /// Frees the slot `key` (vacated by the caller) and keeps its mailbox.
    fn retire(&mut self, key: usize, mailbox: Arc<Mailbox<R>>) {
        self.waiting -= 1;
        self.free.push(key);
        if self.spare.len() < SPARE_MAILBOXES {
            self.spare.push_back(mailbox);
        }
    }

    /// The waiter's grant if it has one, or `Pending` with its waker
    /// updated.
    pub(super) fn poll(&mut self, ticket: &Ticket<R>, waker: &Waker) -> Poll<Grant<R>> {
        // Grants are delivered under the lock the caller holds: with none
        // in the mailbox, the slot is still the waiter's own.
        if let Some(grant) = ticket.try_take() {
            return Poll::Ready(grant);
        }
        match &mut self.slots[ticket.key] {
            Slot::Waiting {
                generation,
                waker: stored,
                ..
            } if *generation == ticket.generation => {
                match stored {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *stored = Some(waker.clone()),
                }
                Poll::Pending
            }
            // Not reachable: a slot is only vacated by a grant (which
            // fills the mailbox) or by the waiter's own cancel.
            _ => Poll::Ready(Grant::Closed),
        }
    }

    /// The waiter gave up; returns a grant it had not taken yet.
    pub(super) fn cancel(&mut self, ticket: &Ticket<R>) -> Option<Grant<R>> {
        if let Some(grant) = ticket.try_take() {
            return Some(grant);
        }
        let owned = matches!(
            self.slots[ticket.key],
            Slot::Waiting { generation, .. } if generation == ticket.generation
        );
        if !owned {
            return None;
        }
        if let Slot::Waiting { mailbox, .. } =
            std::mem::replace(&mut self.slots[ticket.key], Slot::Vacant)
        {
            self.retire(ticket.key, mailbox);
        }
        if self.queue.len() > 2 * self.waiting + 32 {
            let slots = &self.slots;
            self.queue.retain(|&(key, generation)| {
                matches!(slots[key], Slot::Waiting { generation: g, .. } if g == generation)
            });
        }
        None
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

    fn join(w: &mut Waiters<u32>) -> Ticket<u32> {
        w.register(Waker::noop().clone(), Instant::now(), TIMEOUT)
    }

    fn taken(w: &mut Waiters<u32>, ticket: &Ticket<u32>) -> Option<Grant<u32>> {
        match w.poll(ticket, Waker::noop()) {
            Poll::Ready(grant) => Some(grant),
            Poll::Pending => None,
        }
    }

    #[test]
    fn waiters_are_served_first_come_first_served() {
        let mut w = Waiters::default();
        let (a, b, c) = (join(&mut w), join(&mut w), join(&mut w));
        assert_eq!(w.waiting, 3);
        for (n, waiter) in [&a, &b, &c].into_iter().enumerate() {
            let key = w.pop_next().unwrap();
            assert_eq!(key, waiter.key);
            assert!(w.grant(key, Grant::Resource(n as u32)).is_some());
        }
        assert_eq!(w.waiting, 0);
        assert!(w.pop_next().is_none());
        assert!(matches!(taken(&mut w, &b), Some(Grant::Resource(1))));
        assert!(
            matches!(a.try_take(), Some(Grant::Resource(0))),
            "no lock needed"
        );
        assert!(matches!(taken(&mut w, &c), Some(Grant::Resource(2))));
    }

    #[test]
    fn a_waiter_still_waiting_stays_pending() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        assert!(taken(&mut w, &a).is_none());
        assert!(a.try_take().is_none());
        assert_eq!(w.waiting, 1);
    }

    #[test]
    fn a_cancelled_waiter_is_skipped_and_returns_an_untaken_grant() {
        let mut w = Waiters::default();
        let (a, b) = (join(&mut w), join(&mut w));
        assert!(w.cancel(&a).is_none(), "nothing was granted yet");
        assert_eq!(w.waiting, 1);
        let key = w.pop_next().unwrap();
        assert_eq!(key, b.key, "the cancelled waiter is skipped");
        let _ = w.grant(key, Grant::Resource(7));
        assert!(matches!(w.cancel(&b), Some(Grant::Resource(7))));
        assert_eq!(w.waiting, 0);
    }

    #[test]
    fn a_reused_slot_does_not_answer_its_old_owner() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        let key = w.pop_next().unwrap();
        let _ = w.grant(key, Grant::Resource(1)); // frees the slot at once
        let b = join(&mut w);
        assert_eq!(a.key, b.key, "the slot is reused");
        assert!(
            matches!(w.cancel(&a), Some(Grant::Resource(1))),
            "a's grant"
        );
        assert!(w.cancel(&a).is_none(), "a stale cancel is ignored");
        assert_eq!(w.waiting, 1);
        assert_eq!(w.pop_next(), Some(b.key));
    }

    #[test]
    fn a_mailbox_is_reused_only_once_its_waiter_let_go() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        let key = w.pop_next().unwrap();
        let _ = w.grant(key, Grant::Resource(1));
        let b = join(&mut w); // a still holds its mailbox (grant not taken)
        assert!(!Arc::ptr_eq(&a.mailbox, &b.mailbox));
        assert!(matches!(a.try_take(), Some(Grant::Resource(1))));
        let a_box = Arc::as_ptr(&a.mailbox);
        drop(a);
        let key = w.pop_next().unwrap();
        let _ = w.grant(key, Grant::Resource(2));
        let c = join(&mut w);
        assert_eq!(Arc::as_ptr(&c.mailbox), a_box, "a's mailbox, now free");
        assert!(c.try_take().is_none(), "and empty");
        assert!(matches!(b.try_take(), Some(Grant::Resource(2))));
    }

    #[test]
    fn spare_mailboxes_are_bounded() {
        let mut w = Waiters::<u32>::default();
        let held: Vec<_> = (0..3 * SPARE_MAILBOXES)
            .map(|n| {
                let t = join(&mut w);
                let key = w.pop_next().unwrap();
                let _ = w.grant(key, Grant::Resource(n as u32));
                t // kept: its mailbox cannot be reused
            })
            .collect();
        assert!(w.spare.len() <= SPARE_MAILBOXES);
        drop(held);
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut w = Waiters::<u32>::default();
        let live = join(&mut w);
        for _ in 0..1000 {
            let gone = join(&mut w);
            assert!(w.cancel(&gone).is_none());
        }
        assert!(
            w.queue.len() <= 2 * w.waiting + 33,
            "queue {}",
            w.queue.len()
        );
        assert!(w.slots.len() <= 2);
        assert_eq!(w.pop_next(), Some(live.key));
    }

    #[test]
    fn only_an_expired_front_waiter_is_popped() {
        let mut w = Waiters::<u32>::default();
        let start = Instant::now();
        let a = w.register(Waker::noop().clone(), start, TIMEOUT);
        assert_eq!(w.front_deadline(), Some(start + TIMEOUT));
        assert_eq!(w.pop_expired(start), None);
        assert_eq!(w.pop_expired(start + TIMEOUT), Some(a.key));
    }

    #[test]
    fn close_all_grants_closed_to_every_waiter() {
        let mut w = Waiters::<u32>::default();
        let (a, b) = (join(&mut w), join(&mut w));
        assert_eq!(w.close_all().len(), 2);
        assert_eq!(w.waiting, 0);
        assert!(matches!(taken(&mut w, &a), Some(Grant::Closed)));
        assert!(matches!(taken(&mut w, &b), Some(Grant::Closed)));
    }
}
