//! The state every handle, guard and acquire shares: [`Inner`], with the
//! idle resources, the size, the waiter queue and the counters under one
//! lock, and the moves that return resources and free slots.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::error::AcquireTimeout;
use super::manager::Manager;
use super::stats::{Counters, PoolStats, Reason};
use super::waiters::{Delivery, Grant, Waiters};
use crate::sync::{lock, Padded};
use crate::time;
use crate::trace::trace_event;

/// Each resource's lifetime is shortened by a random amount up to this
/// fraction of `max_lifetime`, so resources opened together do not all
/// close together.
const LIFETIME_JITTER: f64 = 0.1;

/// The validated settings of [`PoolBuilder`](super::PoolBuilder).
pub(super) struct Config {
    pub(super) min_size: usize,
    pub(super) max_size: usize,
    pub(super) acquire_timeout: Duration,
    pub(super) max_lifetime: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
}

impl Config {
    /// Whether resources carry timestamps at all.
    pub(super) fn timed(&self) -> bool {
        self.max_lifetime.is_some() || self.idle_timeout.is_some()
    }
}

/// The locked state.
pub(super) type Locked<'a, R> = MutexGuard<'a, State<R>>;

/// A resource owned by the pool, with its bookkeeping.
pub(super) struct Live<R> {
    pub(super) resource: R,
    /// When `max_lifetime` (with jitter) runs out; `None` for never.
    pub(super) expires_at: Option<Instant>,
    /// When it was last returned; set only while `idle_timeout` is on.
    pub(super) idle_since: Option<Instant>,
}

/// What every clone of a pool, every guard and every acquire share.
pub(super) struct Inner<M: Manager> {
    #[cfg(feature = "metrics")]
    pub(super) metrics: crate::metrics::Instruments<crate::metrics::PoolMetrics>,
    pub(super) manager: M,
    pub(super) config: Config,
    /// On its own cache line: the `Arc` counts every guard moves and the
    /// counters bumped outside the lock must not share the lock's line.
    state: Padded<Mutex<State<M::Resource>>>,
    /// Mirrors `State::closed` for lock-free reads.
    pub(super) closed: AtomicBool,
    /// A hint, read without the lock: whether acquires are queueing (the
    /// last acquire or release that looked found waiters or no idle
    /// resource). It decides where the clock is read: before taking the
    /// lock when the hint says a reading will be needed, so the lock is
    /// never held across a clock read on the contended path; under the
    /// lock only when the hint was wrong. Written only when it changes.
    pub(super) queueing: AtomicBool,
    pub(super) counters: Padded<Counters>,
    /// Wakes the background task: size fell below `min_size`, an idle
    /// deadline moved earlier, the pool closed or was dropped.
    pub(super) maintenance: Arc<Notify>,
    /// Signalled when a closed pool's size reaches zero.
    pub(super) closed_empty: Notify,
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        // Lets the background task notice that the pool is gone.
        self.maintenance.notify_one();
    }
}

/// What the pool's lock guards.
pub(super) struct State<R> {
    /// Idle resources, least recently returned at the front.
    pub(super) idle: VecDeque<Live<R>>,
    /// Resources open or being created (idle + checked out + in transit).
    pub(super) size: usize,
    pub(super) closed: bool,
    pub(super) waiters: Waiters<Live<R>>,
    /// When the background task will next look at the idle resources and
    /// the waiters' deadlines (`None`: not before it is notified).
    pub(super) maint_wake: Option<Instant>,
    /// The sizes ([`State::sizes`]) last put into the gauges (`u64::MAX`:
    /// none yet). Kept under the lock, so deciding whether to set the
    /// gauges reads no line but the lock's own.
    #[cfg(feature = "metrics")]
    shown: u64,
}

#[cfg(feature = "metrics")]
impl<R> State<R> {
    /// `size << 32 | idle`, each clamped to 32 bits.
    pub(super) fn sizes(&self) -> u64 {
        let clamp = |n: usize| {
            u64::try_from(n)
                .unwrap_or(u64::MAX)
                .min(u64::from(u32::MAX))
        };
        clamp(self.size) << 32 | clamp(self.idle.len())
    }

    /// The sizes, if the gauges do not show them yet; they are then taken
    /// as shown. A resource handed from a release straight to a waiter
    /// changes neither size, so it sets no gauge.
    fn sizes_to_show(&mut self) -> Option<u64> {
        let sizes = self.sizes();
        (sizes != self.shown).then(|| {
            self.shown = sizes;
            sizes
        })
    }
}

/// Side effects to run after the state lock is released.
#[must_use]
pub(super) struct After<R> {
    /// A grant to send to the waiter it was given to.
    deliver: Option<Delivery<Live<R>>>,
    maintain: bool,
    closed_empty: bool,
    /// With `metrics`: sizes for the gauges (see [`Inner::unlock`]).
    #[cfg(feature = "metrics")]
    sizes: Option<u64>,
}

impl<R> Default for After<R> {
    fn default() -> Self {
        After {
            deliver: None,
            maintain: false,
            closed_empty: false,
            #[cfg(feature = "metrics")]
            sizes: None,
        }
    }
}

impl<M: Manager> Inner<M> {
    /// A pool with no resources yet; the caller starts the background task
    /// with [`Inner::maintenance`] and a weak reference.
    pub(super) fn new(manager: M, config: Config) -> Self {
        let idle = VecDeque::with_capacity(config.max_size.min(1024));
        Inner {
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new("pool".into()),
            manager,
            config,
            state: Padded(Mutex::new(State {
                idle,
                size: 0,
                closed: false,
                waiters: Waiters::default(),
                maint_wake: None,
                #[cfg(feature = "metrics")]
                shown: u64::MAX,
            })),
            closed: AtomicBool::new(false),
            queueing: AtomicBool::new(false),
            counters: Padded::default(),
            maintenance: Arc::new(Notify::new()),
            closed_empty: Notify::new(),
        }
    }

    /// The pool with its metrics labelled `name`.
    #[cfg(feature = "metrics")]
    pub(super) fn named(mut self, name: crate::trace::Name) -> Self {
        self.metrics = crate::metrics::Instruments::new(name);
        self
    }

    /// Locks the state (no user code runs under this lock).
    pub(super) fn lock(&self) -> Locked<'_, M::Resource> {
        lock(&self.state)
    }

    /// Unlocks `st`; returns `after` to run with [`Inner::finish`]. With
    /// `metrics`, `after` then carries the sizes if they changed since the
    /// gauges were last set, decided under the lock: no line is read after
    /// it that another core may be writing.
    #[cfg(feature = "metrics")]
    #[inline]
    pub(super) fn unlock(
        &self,
        mut st: Locked<'_, M::Resource>,
        mut after: After<M::Resource>,
    ) -> After<M::Resource> {
        after.sizes = st.sizes_to_show();
        drop(st);
        after
    }

    /// Unlocks `st`; returns `after` to run with [`Inner::finish`].
    #[cfg(not(feature = "metrics"))]
    #[inline]
    pub(super) fn unlock(
        &self,
        st: Locked<'_, M::Resource>,
        after: After<M::Resource>,
    ) -> After<M::Resource> {
        drop(st);
        after
    }

    /// Unlocks `st` with nothing to run after it but, with `metrics`, the
    /// size gauges (see [`Inner::unlock`]).
    pub(super) fn settle(&self, st: Locked<'_, M::Resource>) {
        self.finish(self.unlock(st, After::default()));
    }

    /// Runs what was decided under the lock: sends a grant to its waiter,
    /// notifies and (with `metrics`) sets the size gauges.
    #[inline]
    pub(super) fn finish(&self, after: After<M::Resource>) {
        #[cfg(feature = "metrics")]
        if let Some(sizes) = after.sizes {
            self.metrics.with(|m| set_sizes(m, sizes));
        }
        if after.maintain {
            self.maintenance.notify_one();
        }
        if after.closed_empty {
            self.closed_empty.notify_waiters();
        }
        if let Some(delivery) = after.deliver {
            if let Err(grant) = delivery.send() {
                self.regive(grant);
            }
        }
    }

    /// A grant whose waiter gave up, before it arrived or after it arrived
    /// but before it was taken, goes back to the pool: the resource as if
    /// newly delivered (to the next waiter, or idle, or closed with a
    /// closed pool), the slot as if freed. A grant sent on from here may
    /// come back again in turn, once per waiter that gives up just then.
    #[cold]
    #[inline(never)]
    pub(super) fn regive(&self, grant: Grant<Live<M::Resource>>) {
        match grant {
            Grant::Resource(live) => self.deliver(live),
            Grant::Create => self.free_slot(None),
            // These carry nothing of the pool's.
            Grant::Closed | Grant::TimedOut => {}
        }
    }

    pub(super) fn count_closed(&self, reason: Reason, n: u64) {
        self.counters.count_closed(reason, n);
    }

    pub(super) fn new_live(&self, resource: M::Resource) -> Live<M::Resource> {
        let expires_at = self.config.max_lifetime.map(|lifetime| {
            let jitter = lifetime.mul_f64(fastrand::f64() * LIFETIME_JITTER);
            time::deadline(Instant::now(), lifetime.saturating_sub(jitter))
        });
        Live {
            resource,
            expires_at,
            idle_since: None,
        }
    }

    /// Hands `live` to the first waiter, or makes it idle.
    pub(super) fn give_locked(
        &self,
        st: &mut State<M::Resource>,
        live: Live<M::Resource>,
    ) -> After<M::Resource> {
        if let Some(key) = st.waiters.pop_next() {
            return After {
                deliver: Some(st.waiters.grant(key, Grant::Resource(live))),
                ..After::default()
            };
        }
        self.push_idle_locked(st, live)
    }

    /// Makes `live` idle (there are no waiters).
    fn push_idle_locked(
        &self,
        st: &mut State<M::Resource>,
        mut live: Live<M::Resource>,
    ) -> After<M::Resource> {
        let mut after = After::default();
        let idle_timeout = self.config.idle_timeout;
        if idle_timeout.is_some() && live.idle_since.is_none() {
            live.idle_since = Some(Instant::now());
        }
        let expires_at = live.expires_at;
        st.idle.push_back(live);
        // Wake the background task if this resource (or, now that the pool
        // is above min_size, the oldest idle one) must be closed before the
        // task's next planned look.
        let mut deadline = expires_at;
        if let Some(timeout) = idle_timeout {
            if st.size > self.config.min_size {
                let oldest = st.idle.front().and_then(|l| l.idle_since);
                deadline = earliest(deadline, oldest.map(|t| time::deadline(t, timeout)));
            }
        }
        if let Some(deadline) = deadline {
            if st.maint_wake.is_none_or(|wake| deadline < wake) {
                st.maint_wake = Some(deadline);
                after.maintain = true;
            }
        }
        after
    }

    /// One unit of size is no longer backed by a resource: pass it to the
    /// first waiter (who will create), or shrink the pool.
    pub(super) fn free_slot_locked(&self, st: &mut State<M::Resource>) -> After<M::Resource> {
        let mut after = After::default();
        if st.closed {
            st.size -= 1;
            after.closed_empty = st.size == 0;
        } else if let Some(key) = st.waiters.pop_next() {
            after.deliver = Some(st.waiters.grant(key, Grant::Create));
        } else {
            st.size -= 1;
            after.maintain = st.size < self.config.min_size;
        }
        after
    }

    pub(super) fn free_slot(&self, reason: Option<Reason>) {
        if let Some(reason) = reason {
            self.count_closed(reason, 1);
        }
        let mut st = self.lock();
        let after = self.free_slot_locked(&mut st);
        self.finish(self.unlock(st, after));
    }

    /// Sets the [`queueing`](Self::queueing) hint (a store only when it
    /// changes, so a steady state leaves its cache line shared).
    pub(super) fn hint_queueing(&self, queueing: bool) {
        if self.queueing.load(Ordering::Relaxed) != queueing {
            self.queueing.store(queueing, Ordering::Relaxed);
        }
    }

    /// A checked-out resource comes back (its guard was dropped).
    pub(super) fn release(&self, mut live: Live<M::Resource>) {
        // Without waiters the resource goes idle and needs the time (for
        // its lifetime check and idle timestamp): read it before locking.
        let timed = self.config.timed();
        let early = (timed && !self.queueing.load(Ordering::Relaxed)).then(Instant::now);
        let mut st = self.lock();
        if st.closed {
            return self.discard_on_closed(st, live);
        }
        let waiter = st.waiters.pop_next();
        self.hint_queueing(waiter.is_some());
        let now = match waiter {
            // Handing over to a waiter: check the lifetime against the time
            // it joined the queue (a little early, at most acquire_timeout)
            // rather than read the clock on this hot path.
            Some(key) => Some(st.waiters.registered_at(key)),
            None if timed => Some(early.unwrap_or_else(Instant::now)),
            None => None,
        };
        let expired = matches!((live.expires_at, now), (Some(exp), Some(now)) if now >= exp);
        let after = match (waiter, expired) {
            (Some(key), false) => After {
                deliver: Some(st.waiters.grant(key, Grant::Resource(live))),
                ..After::default()
            },
            (None, false) => {
                if self.config.idle_timeout.is_some() {
                    live.idle_since = now;
                }
                self.push_idle_locked(&mut st, live)
            }
            (Some(key), true) => {
                // The slot goes to the waiter, who creates a replacement.
                let after = After {
                    deliver: Some(st.waiters.grant(key, Grant::Create)),
                    ..After::default()
                };
                let after = self.unlock(st, after);
                self.count_closed(Reason::MaxLifetime, 1);
                self.finish(after);
                return; // `live` is dropped (closed) here, outside the lock
            }
            (None, true) => {
                st.size -= 1;
                let after = After {
                    maintain: st.size < self.config.min_size,
                    ..After::default()
                };
                let after = self.unlock(st, after);
                self.count_closed(Reason::MaxLifetime, 1);
                self.finish(after);
                return;
            }
        };
        self.finish(self.unlock(st, after));
    }

    /// A resource created by the background task, or given back by a
    /// waiter that gave up, joins the pool.
    pub(super) fn deliver(&self, live: Live<M::Resource>) {
        let mut st = self.lock();
        if st.closed {
            return self.discard_on_closed(st, live);
        }
        let after = self.give_locked(&mut st, live);
        self.finish(self.unlock(st, after));
    }

    /// A resource that reaches a closed pool is closed: its slot is freed
    /// under the lock, the resource dropped outside it.
    fn discard_on_closed(&self, mut st: Locked<'_, M::Resource>, live: Live<M::Resource>) {
        let after = self.free_slot_locked(&mut st);
        let after = self.unlock(st, after);
        self.count_closed(Reason::PoolClosed, 1);
        drop(live);
        self.finish(after);
    }

    /// Refuses new acquires, fails the waiting ones and closes the idle
    /// resources; the first half of [`Pool::close`](super::Pool::close).
    pub(super) fn close(&self) {
        let (idle, deliveries, after) = {
            let mut st = self.lock();
            st.closed = true;
            self.closed.store(true, Ordering::Release);
            let idle = std::mem::take(&mut st.idle);
            st.size -= idle.len();
            let deliveries = st.waiters.close_all();
            (idle, deliveries, self.unlock(st, After::default()))
        };
        if !idle.is_empty() {
            self.count_closed(Reason::PoolClosed, idle.len() as u64);
            trace_event!(
                INFO,
                closed = idle.len(),
                "pool closing: idle resources closed"
            );
        }
        drop(idle);
        for delivery in deliveries {
            // A waiter that gave up meanwhile needs no `Closed`.
            let _ = delivery.send();
        }
        self.finish(after);
        self.maintenance.notify_one();
    }

    /// Waits until a closed pool's size reaches zero (every checked-out
    /// resource came back); the second half of [`Pool::close`](super::Pool::close).
    pub(super) async fn wait_until_empty(&self) {
        loop {
            let notified = self.closed_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().size == 0 {
                break;
            }
            notified.await;
        }
    }

    /// Whether the pool was closed (lock-free).
    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Counts a timed-out acquire and describes the pool at that moment.
    pub(super) fn timed_out(&self) -> AcquireTimeout {
        let waited = self.config.acquire_timeout;
        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        let (size, waiting) = {
            let st = self.lock();
            (st.size, st.waiters.waiting)
        };
        trace_event!(WARN, ?waited, size, waiting, "pool acquire timed out");
        AcquireTimeout::new(waited, size, self.config.max_size, waiting)
    }

    /// A snapshot of the sizes and counters.
    pub(super) fn stats(&self) -> PoolStats {
        let (size, idle, waiting) = {
            let st = self.lock();
            (st.size, st.idle.len(), st.waiters.waiting)
        };
        let c = &self.counters;
        PoolStats {
            size,
            idle,
            in_use: size - idle,
            waiting,
            min_size: self.config.min_size,
            max_size: self.config.max_size,
            created: c.created.load(Ordering::Relaxed),
            recycled: c.recycled.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            create_failed: c.create_failed.load(Ordering::Relaxed),
            closed_by_reason: c.closed_by_reason(),
        }
    }
}

/// Sets the size gauges to `sizes` (`size << 32 | idle`).
#[cfg(feature = "metrics")]
pub(super) fn set_sizes(m: &crate::metrics::PoolMetrics, sizes: u64) {
    let (size, idle) = (sizes >> 32, sizes & u64::from(u32::MAX));
    m.size.set(size as f64);
    m.in_use.set(size.saturating_sub(idle) as f64);
}

/// The earlier of two optional instants (`None` is never).
pub(super) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
