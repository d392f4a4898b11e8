//! The waiter queue: acquirers waiting in line, first come first served.
//!
//! A slab of slots plus a FIFO of (slot, generation). Cancelled waiters
//! leave stale FIFO entries behind; they are skipped when popped and
//! compacted away when they outnumber the live ones, so memory stays
//! proportional to the number of live waiters. Pure bookkeeping: the pool's
//! state holds it under its lock.
//!
//! Each waiter has a [`Mailbox`] of its own, holding its waker and, once
//! granted, its grant. Under the pool's lock a grant only pops the waiter
//! and frees its slot: [`Waiters::grant`] returns a [`Delivery`], which the
//! caller sends after unlocking. So the lock both cores contend for is
//! held across the queue's own lines only, never across the waiter's
//! mailbox, which the waiter's core last wrote; and a waiter polls its
//! mailbox, not the pool. A waiter that gives up while its grant is on
//! the way marks its mailbox gone, and the delivery comes back to the
//! sender ([`Delivery::send`]), who gives the grant to the pool again.
//! Mailboxes are reused: each one handed out also joins a short spare
//! line, and a new waiter takes the oldest one there once nobody else
//! holds it, so the steady state allocates nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;
use crate::time;

/// Most mailboxes kept in the spare line.
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

/// One waiter's mailbox: its waker, and its grant once delivered.
pub(super) struct Mailbox<R> {
    inbox: Mutex<Inbox<R>>,
}

struct Inbox<R> {
    grant: Option<Grant<R>>,
    waker: Option<Waker>,
    /// The waiter gave up: a delivery comes back to its sender.
    gone: bool,
}

impl<R> Inbox<R> {
    /// An empty inbox for a waiter woken by `waker`.
    fn waiting_on(waker: Waker) -> Self {
        Inbox {
            grant: None,
            waker: Some(waker),
            gone: false,
        }
    }
}

impl<R> Mailbox<R> {
    fn new(waker: Waker) -> Arc<Self> {
        Arc::new(Mailbox {
            inbox: Mutex::new(Inbox::waiting_on(waker)),
        })
    }

    /// Readies a reused mailbox for a new waiter.
    fn reset(&self, waker: Waker) {
        *lock(&self.inbox) = Inbox::waiting_on(waker);
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
    /// The grant, if one was delivered.
    #[cfg(test)]
    fn try_take(&self) -> Option<Grant<R>> {
        lock(&self.mailbox.inbox).grant.take()
    }

    /// The grant if it was delivered, or `Pending` with `waker` kept for
    /// the delivery; needs no lock of the pool's.
    #[inline]
    pub(super) fn poll(&self, waker: &Waker) -> Poll<Grant<R>> {
        let mut inbox = lock(&self.mailbox.inbox);
        if let Some(grant) = inbox.grant.take() {
            return Poll::Ready(grant);
        }
        match &inbox.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => inbox.waker = Some(waker.clone()),
        }
        Poll::Pending
    }

    /// The waiter gives up after its slot was granted
    /// ([`Waiters::cancel`] said so): returns the grant if it was already
    /// delivered, else marks the mailbox gone so that the delivery comes
    /// back to its sender.
    pub(super) fn give_up(&self) -> Option<Grant<R>> {
        let mut inbox = lock(&self.mailbox.inbox);
        inbox.waker = None;
        let grant = inbox.grant.take();
        if grant.is_none() {
            inbox.gone = true;
        }
        grant
    }
}

/// A grant on its way to a waiter; see [`Delivery::send`].
#[must_use = "a delivery holds a grant: send it"]
pub(super) struct Delivery<R> {
    mailbox: Arc<Mailbox<R>>,
    grant: Grant<R>,
}

impl<R> Delivery<R> {
    /// Puts the grant in the waiter's mailbox and wakes the waiter; if the
    /// waiter has given up, returns the grant instead. Call it without the
    /// pool's lock.
    #[inline]
    pub(super) fn send(self) -> Result<(), Grant<R>> {
        let mut inbox = lock(&self.mailbox.inbox);
        if inbox.gone {
            return Err(self.grant);
        }
        inbox.grant = Some(self.grant);
        let waker = inbox.waker.take();
        drop(inbox);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

enum Slot<R> {
    Vacant,
    Waiting {
        generation: u64,
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
    /// Mailboxes handed out lately, oldest first, for reuse once no one
    /// holds them but this line (see [`Waiters::mailbox`]).
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
    /// polls and passes to [`Waiters::cancel`].
    #[inline]
    pub(super) fn register(
        &mut self,
        waker: Waker,
        registered: Instant,
        timeout: Duration,
    ) -> Ticket<R> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let mailbox = self.mailbox(waker);
        let slot = Slot::Waiting {
            generation,
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

    /// A mailbox for a new waiter woken by `waker`: the oldest one of the
    /// spare line if no one but the line holds it any more (its waiter
    /// and its delivery are done), else a new one. Every mailbox handed
    /// out joins the back of the line while it has room: the line is kept
    /// here, so the delivery, which runs after the lock, never has to
    /// return its mailbox under it.
    #[inline]
    fn mailbox(&mut self, waker: Waker) -> Arc<Mailbox<R>> {
        let reused = match self.spare.pop_front() {
            // Only this line can make more references to a spare mailbox,
            // so one seen unshared stays unshared.
            Some(spare) if Arc::strong_count(&spare) == 1 => {
                spare.reset(waker);
                spare
            }
            Some(busy) => {
                self.spare.push_back(busy);
                Mailbox::new(waker)
            }
            None => Mailbox::new(waker),
        };
        if self.spare.len() < SPARE_MAILBOXES {
            self.spare.push_back(reused.clone());
        }
        reused
    }

    /// The longest-waiting live waiter, removed from the queue.
    #[inline]
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

    /// Gives `grant` to the waiter in `key` (just popped) and frees its
    /// slot; returns the delivery to send once the lock is released.
    #[inline]
    pub(super) fn grant(&mut self, key: usize, grant: Grant<R>) -> Delivery<R> {
        let Slot::Waiting { mailbox, .. } = self.vacate(key) else {
            unreachable!("pop_next only returns waiting slots");
        };
        Delivery { mailbox, grant }
    }

    /// Takes the (waiting) slot `key` out of line and frees it.
    #[inline]
    fn vacate(&mut self, key: usize) -> Slot<R> {
        self.waiting -= 1;
        self.free.push(key);
        std::mem::replace(&mut self.slots[key], Slot::Vacant)
    }

    /// The waiter gives up. Returns `true` if it was still in line (it is
    /// now out of it); `false` if its slot was granted, and the waiter must
    /// then [`give_up`](Ticket::give_up) on its mailbox, without the lock.
    pub(super) fn cancel(&mut self, ticket: &Ticket<R>) -> bool {
        let owned = matches!(
            self.slots[ticket.key],
            Slot::Waiting { generation, .. } if generation == ticket.generation
        );
        if !owned {
            return false;
        }
        self.vacate(ticket.key);
        if self.queue.len() > 2 * self.waiting + 32 {
            let slots = &self.slots;
            self.queue.retain(|&(key, generation)| {
                matches!(slots[key], Slot::Waiting { generation: g, .. } if g == generation)
            });
        }
        true
    }

    /// Grants `Closed` to every waiter; returns the deliveries.
    pub(super) fn close_all(&mut self) -> Vec<Delivery<R>> {
        let mut deliveries = Vec::new();
        while let Some(key) = self.pop_next() {
            deliveries.push(self.grant(key, Grant::Closed));
        }
        deliveries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn join(w: &mut Waiters<u32>) -> Ticket<u32> {
        w.register(Waker::noop().clone(), Instant::now(), TIMEOUT)
    }

    fn taken(ticket: &Ticket<u32>) -> Option<Grant<u32>> {
        match ticket.poll(Waker::noop()) {
            Poll::Ready(grant) => Some(grant),
            Poll::Pending => None,
        }
    }

    /// Grants `grant` to the next waiter and sends it at once.
    fn serve(w: &mut Waiters<u32>, grant: Grant<u32>) -> usize {
        let key = w.pop_next().unwrap();
        assert!(w.grant(key, grant).send().is_ok(), "the waiter is there");
        key
    }

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_are_served_first_come_first_served() {
        let mut w = Waiters::default();
        let (a, b, c) = (join(&mut w), join(&mut w), join(&mut w));
        assert_eq!(w.waiting, 3);
        for (n, waiter) in [&a, &b, &c].into_iter().enumerate() {
            assert_eq!(serve(&mut w, Grant::Resource(n as u32)), waiter.key);
        }
        assert_eq!(w.waiting, 0);
        assert!(w.pop_next().is_none());
        assert!(matches!(taken(&b), Some(Grant::Resource(1))));
        assert!(matches!(a.try_take(), Some(Grant::Resource(0))));
        assert!(matches!(taken(&c), Some(Grant::Resource(2))));
    }

    #[test]
    fn a_waiter_still_waiting_stays_pending() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        assert!(taken(&a).is_none());
        assert!(a.try_take().is_none());
        assert_eq!(w.waiting, 1);
    }

    #[test]
    fn a_grant_is_in_the_mailbox_only_once_sent() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        let key = w.pop_next().unwrap();
        let delivery = w.grant(key, Grant::Resource(5));
        assert_eq!(w.waiting, 0, "out of line at the grant");
        assert!(taken(&a).is_none(), "on its way: still pending");
        assert!(delivery.send().is_ok());
        assert!(matches!(taken(&a), Some(Grant::Resource(5))));
    }

    #[test]
    fn a_delivery_wakes_the_waker_of_the_latest_poll() {
        let (first, latest) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let mut w = Waiters::<u32>::default();
        let a = w.register(Waker::from(first.clone()), Instant::now(), TIMEOUT);
        let key = w.pop_next().unwrap();
        let delivery = w.grant(key, Grant::Create);
        // Polled again (by another task) while the grant is on its way.
        assert!(a.poll(&Waker::from(latest.clone())).is_pending());
        assert!(delivery.send().is_ok());
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(latest.0.load(Ordering::SeqCst), 1);
        assert!(matches!(taken(&a), Some(Grant::Create)));
    }

    #[test]
    fn a_cancelled_waiter_is_skipped_and_returns_an_untaken_grant() {
        let mut w = Waiters::default();
        let (a, b) = (join(&mut w), join(&mut w));
        assert!(w.cancel(&a), "still in line");
        assert_eq!(w.waiting, 1);
        assert_eq!(serve(&mut w, Grant::Resource(7)), b.key, "a is skipped");
        assert!(!w.cancel(&b), "granted");
        assert!(matches!(b.give_up(), Some(Grant::Resource(7))));
        assert_eq!(w.waiting, 0);
    }

    #[test]
    fn a_grant_on_its_way_to_a_waiter_who_gave_up_comes_back() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        let key = w.pop_next().unwrap();
        let delivery = w.grant(key, Grant::Resource(3));
        assert!(!w.cancel(&a));
        assert!(a.give_up().is_none(), "not there yet");
        assert!(matches!(delivery.send(), Err(Grant::Resource(3))));
        assert!(a.try_take().is_none());
    }

    #[test]
    fn a_reused_slot_does_not_answer_its_old_owner() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        serve(&mut w, Grant::Resource(1)); // frees the slot at once
        let b = join(&mut w);
        assert_eq!(a.key, b.key, "the slot is reused");
        assert!(!w.cancel(&a), "the slot is b's now");
        assert!(matches!(a.give_up(), Some(Grant::Resource(1))), "a's grant");
        assert!(a.give_up().is_none());
        assert_eq!(w.waiting, 1);
        assert_eq!(w.pop_next(), Some(b.key));
    }

    #[test]
    fn stale_entries_are_compacted() {
        let mut w = Waiters::<u32>::default();
        let live = join(&mut w);
        for _ in 0..1000 {
            let gone = join(&mut w);
            assert!(w.cancel(&gone));
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
        let deliveries = w.close_all();
        assert_eq!(deliveries.len(), 2);
        assert_eq!(w.waiting, 0);
        for d in deliveries {
            assert!(d.send().is_ok());
        }
        assert!(matches!(taken(&a), Some(Grant::Closed)));
        assert!(matches!(taken(&b), Some(Grant::Closed)));
    }

    #[test]
    fn a_mailbox_is_reused_only_once_its_waiter_and_delivery_let_go() {
        let mut w = Waiters::<u32>::default();
        let a = join(&mut w);
        let key = w.pop_next().unwrap();
        let delivery = w.grant(key, Grant::Resource(1));
        let b = join(&mut w); // a and its delivery still hold a's mailbox
        assert!(!Arc::ptr_eq(&a.mailbox, &b.mailbox));
        assert!(delivery.send().is_ok());
        assert!(matches!(taken(&a), Some(Grant::Resource(1))));
        let a_box = Arc::as_ptr(&a.mailbox);
        drop(a);
        serve(&mut w, Grant::Resource(2)); // b's
        let c = join(&mut w);
        assert_eq!(Arc::as_ptr(&c.mailbox), a_box, "a's mailbox, now free");
        assert!(taken(&c).is_none(), "and empty");
        assert!(matches!(taken(&b), Some(Grant::Resource(2))));
    }

    #[test]
    fn spare_mailboxes_are_bounded() {
        let mut w = Waiters::<u32>::default();
        let held: Vec<_> = (0..3 * SPARE_MAILBOXES)
            .map(|n| {
                let t = join(&mut w);
                serve(&mut w, Grant::Resource(n as u32));
                t // kept: its mailbox cannot be reused
            })
            .collect();
        assert!(w.spare.len() <= SPARE_MAILBOXES);
        drop(held);
    }
}
