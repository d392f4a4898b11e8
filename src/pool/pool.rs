//! [`Pool`], its builder, the waiter queue and the background maintenance task.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::guard::{Pooled, SlotGuard};
use super::{AcquireTimeout, ClosedByReason, Manager, PoolClosed, PoolError, PoolStats};
use crate::trace::trace_event;
use crate::ConfigError;

/// Default [`PoolBuilder::max_size`].
const DEFAULT_MAX_SIZE: usize = 20;
/// Default [`PoolBuilder::acquire_timeout`].
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`PoolBuilder::max_lifetime`].
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Default [`PoolBuilder::idle_timeout`].
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Each resource's lifetime is shortened by a random amount up to this
/// fraction of `max_lifetime`, so resources opened together do not all
/// close together.
const LIFETIME_JITTER: f64 = 0.1;
/// First and largest pause of the background task after a failed create.
const FILL_BACKOFF_MIN: Duration = Duration::from_millis(50);
const FILL_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A pool of resources made by a [`Manager`]: database connections,
/// clients, buffers.
///
/// Build one with [`Pool::builder`]. Cloning a `Pool` is cheap and every
/// clone shares the same resources and statistics. The pool is also a
/// [`tower::Service<()>`](tower_service::Service) whose response is a
/// [`Pooled`] guard, so timeouts, retries and breakers stack around
/// acquisition.
///
/// See the [module docs](super) for an example.
pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// A builder with the defaults: `min_size` 0, `max_size` 20,
    /// `acquire_timeout` 30 s, `max_lifetime` 30 min, `idle_timeout` 10 min.
    pub fn builder() -> PoolBuilder<M> {
        PoolBuilder {
            min_size: 0,
            max_size: DEFAULT_MAX_SIZE,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            _manager: PhantomData,
        }
    }

    /// Checks a resource out of the pool.
    ///
    /// Takes the most recently returned idle resource and runs
    /// [`Manager::recycle`] on it; if none is idle and the pool is below
    /// `max_size`, creates one with [`Manager::create`]; otherwise waits,
    /// first come first served, for a resource to come back.
    ///
    /// # Errors
    ///
    /// - [`PoolError::Timeout`] if no resource was ready within
    ///   `acquire_timeout` (the whole call, including create and recycle);
    /// - [`PoolError::Create`] with the manager's own error if this call had
    ///   to create a resource and that failed (the pool stays usable);
    /// - [`PoolError::Closed`] after [`Pool::close`].
    ///
    /// # Cancellation
    ///
    /// Dropping the future at any point leaks nothing: a place in the
    /// queue is given up, a resource handed over but not yet taken goes to
    /// the next waiter, and a slot reserved for a resource being created is
    /// freed.
    pub async fn acquire(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        acquire(&self.inner).await
    }

    /// Closes the pool: refuses new acquires (they fail with
    /// [`PoolError::Closed`], as do the ones already waiting), closes the
    /// idle resources, then waits until every checked-out resource has been
    /// returned (and closed). Returns at once if that is already the case.
    ///
    /// Calling `close` again, or from several tasks, is fine: each call
    /// waits for the same condition.
    pub async fn close(&self) {
        let inner = &*self.inner;
        let (idle, wakers) = {
            let mut st = inner.lock();
            st.closed = true;
            inner.closed.store(true, Ordering::Release);
            let idle = std::mem::take(&mut st.idle);
            st.size -= idle.len();
            (idle, st.waiters.close_all())
        };
        if !idle.is_empty() {
            inner.count_closed(Reason::PoolClosed, idle.len() as u64);
            trace_event!(
                INFO,
                closed = idle.len(),
                "pool closing: idle resources closed"
            );
        }
        drop(idle);
        for waker in wakers {
            waker.wake();
        }
        inner.maintenance.notify_one();
        loop {
            let notified = inner.closed_empty.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if inner.lock().size == 0 {
                break;
            }
            notified.await;
        }
    }

    /// Whether [`Pool::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// A snapshot of the pool's sizes and counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// The manager this pool creates resources with.
    pub fn manager(&self) -> &M {
        &self.inner.manager
    }
}

/// Configures and builds a [`Pool`]; from [`Pool::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<M> {
    min_size: usize,
    max_size: usize,
    acquire_timeout: Duration,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    _manager: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for PoolBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("min_size", &self.min_size)
            .field("max_size", &self.max_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl<M: Manager> PoolBuilder<M> {
    /// Resources the pool keeps open even when idle (default 0). They are
    /// created in the background after `build` and re-created when closed
    /// (lifetime, failed recycle); `idle_timeout` never shrinks the pool
    /// below this. Must not exceed `max_size`.
    pub fn min_size(mut self, min_size: usize) -> Self {
        self.min_size = min_size;
        self
    }

    /// Most resources open at once, idle or checked out (default 20); at
    /// least 1. Acquirers beyond it wait in line.
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Longest an [`acquire`](Pool::acquire) may take, waiting, creating
    /// and recycling included (default 30 s; must be greater than zero).
    /// Also bounds each background create.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Resources older than this are closed when they are next returned or
    /// found idle (default 30 min; `None` keeps them forever). Each
    /// resource's lifetime is shortened by a random amount of up to 10% so
    /// resources opened together do not all close together. Must be
    /// greater than zero.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Idle resources beyond `min_size` are closed after sitting unused
    /// this long (default 10 min; `None` keeps them). Must be greater than
    /// zero.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Validates the configuration and starts the pool.
    ///
    /// Returns at once: the `min_size` resources are created by a
    /// background task, which ends when the pool is dropped or closed.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field if `max_size` is 0, `min_size`
    /// exceeds `max_size`, a duration is zero, or no Tokio runtime is
    /// running (the pool needs one for its timers and background task).
    pub async fn build(self, manager: M) -> Result<Pool<M>, ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::new(
                "pool",
                "max_size",
                "0",
                "must be at least 1",
            ));
        }
        if self.min_size > self.max_size {
            return Err(ConfigError::new(
                "pool",
                "min_size",
                self.min_size.to_string(),
                format!("must not exceed max_size ({})", self.max_size),
            ));
        }
        if self.acquire_timeout.is_zero() {
            return Err(ConfigError::new(
                "pool",
                "acquire_timeout",
                "0s",
                "must be greater than zero",
            ));
        }
        if self.max_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "pool",
                "max_lifetime",
                "Some(0s)",
                "must be greater than zero, or None for no limit",
            ));
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "pool",
                "idle_timeout",
                "Some(0s)",
                "must be greater than zero, or None for no limit",
            ));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ConfigError::new(
                "pool",
                "runtime",
                "none",
                "build must be awaited inside a Tokio runtime",
            ));
        };
        let maintenance = Arc::new(Notify::new());
        let inner = Arc::new(Inner {
            manager,
            config: Config {
                min_size: self.min_size,
                max_size: self.max_size,
                acquire_timeout: self.acquire_timeout,
                max_lifetime: self.max_lifetime,
                idle_timeout: self.idle_timeout,
            },
            state: Mutex::new(State {
                idle: VecDeque::with_capacity(self.max_size.min(1024)),
                size: 0,
                closed: false,
                waiters: Waiters::default(),
                maint_wake: None,
            }),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            maintenance: maintenance.clone(),
            closed_empty: Notify::new(),
        });
        runtime.spawn(maintain(Arc::downgrade(&inner), maintenance));
        Ok(Pool { inner })
    }
}

// ---------------------------------------------------------------------------
// Shared state.

struct Config {
    min_size: usize,
    max_size: usize,
    acquire_timeout: Duration,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl Config {
    /// Whether resources carry timestamps at all.
    fn timed(&self) -> bool {
        self.max_lifetime.is_some() || self.idle_timeout.is_some()
    }
}

/// A resource owned by the pool, with its bookkeeping.
pub(crate) struct Live<R> {
    pub(crate) resource: R,
    /// When `max_lifetime` (with jitter) runs out; `None` for never.
    expires_at: Option<Instant>,
    /// When it was last returned; set only while `idle_timeout` is on.
    idle_since: Option<Instant>,
}

/// Why a resource left the pool (indexes [`Counters::closed`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reason {
    RecycleFailed = 0,
    MaxLifetime = 1,
    IdleTimeout = 2,
    Detached = 3,
    Interrupted = 4,
    PoolClosed = 5,
}

#[derive(Default)]
struct Counters {
    created: AtomicU64,
    recycled: AtomicU64,
    timed_out: AtomicU64,
    create_failed: AtomicU64,
    closed: [AtomicU64; 6],
}

pub(crate) struct Inner<M: Manager> {
    manager: M,
    config: Config,
    state: Mutex<State<M::Resource>>,
    /// Mirrors `State::closed` for lock-free reads.
    closed: AtomicBool,
    counters: Counters,
    /// Wakes the background task: size fell below `min_size`, an idle
    /// deadline moved earlier, the pool closed or was dropped.
    maintenance: Arc<Notify>,
    /// Signalled when a closed pool's size reaches zero.
    closed_empty: Notify,
}

impl<M: Manager> Drop for Inner<M> {
    fn drop(&mut self) {
        // Lets the background task notice that the pool is gone.
        self.maintenance.notify_one();
    }
}

struct State<R> {
    /// Idle resources, least recently returned at the front.
    idle: VecDeque<Live<R>>,
    /// Resources open or being created (idle + checked out + in transit).
    size: usize,
    closed: bool,
    waiters: Waiters<R>,
    /// When the background task will next look at the idle resources and
    /// the waiters' deadlines (`None`: not before it is notified).
    maint_wake: Option<Instant>,
}

/// What a waiter receives.
pub(crate) enum Grant<R> {
    /// An idle resource (still to be recycled).
    Resource(Live<R>),
    /// A reserved slot: create a resource in it.
    Create,
    /// The pool closed.
    Closed,
    /// The waiter's `acquire_timeout` ran out (set by the background task).
    TimedOut,
}

/// Side effects to run after the state lock is released.
#[derive(Default)]
#[must_use]
struct After {
    wake: Option<Waker>,
    maintain: bool,
    closed_empty: bool,
}

impl<M: Manager> Inner<M> {
    fn lock(&self) -> MutexGuard<'_, State<M::Resource>> {
        // No user code runs under this lock, so poisoning cannot leave the
        // state half-updated; carry on rather than panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, after: After) {
        if let Some(waker) = after.wake {
            waker.wake();
        }
        if after.maintain {
            self.maintenance.notify_one();
        }
        if after.closed_empty {
            self.closed_empty.notify_waiters();
        }
    }

    fn count_closed(&self, reason: Reason, n: u64) {
        self.counters.closed[reason as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn new_live(&self, resource: M::Resource) -> Live<M::Resource> {
        let expires_at = self.config.max_lifetime.and_then(|lifetime| {
            let jitter = lifetime.mul_f64(fastrand::f64() * LIFETIME_JITTER);
            Instant::now().checked_add(lifetime.saturating_sub(jitter))
        });
        Live {
            resource,
            expires_at,
            idle_since: None,
        }
    }

    /// Hands `live` to the first waiter, or makes it idle.
    fn give_locked(&self, st: &mut State<M::Resource>, live: Live<M::Resource>) -> After {
        if let Some(key) = st.waiters.pop_next() {
            return After {
                wake: st.waiters.grant(key, Grant::Resource(live)),
                ..After::default()
            };
        }
        self.push_idle_locked(st, live)
    }

    /// Makes `live` idle (there are no waiters).
    fn push_idle_locked(&self, st: &mut State<M::Resource>, mut live: Live<M::Resource>) -> After {
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
                deadline = earliest(deadline, oldest.and_then(|t| t.checked_add(timeout)));
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
    fn free_slot_locked(&self, st: &mut State<M::Resource>) -> After {
        let mut after = After::default();
        if st.closed {
            st.size -= 1;
            after.closed_empty = st.size == 0;
        } else if let Some(key) = st.waiters.pop_next() {
            after.wake = st.waiters.grant(key, Grant::Create);
        } else {
            st.size -= 1;
            after.maintain = st.size < self.config.min_size;
        }
        after
    }

    pub(crate) fn free_slot(&self, reason: Option<Reason>) {
        if let Some(reason) = reason {
            self.count_closed(reason, 1);
        }
        let after = self.free_slot_locked(&mut self.lock());
        self.finish(after);
    }

    /// A checked-out resource comes back (its guard was dropped).
    pub(crate) fn release(&self, mut live: Live<M::Resource>) {
        let mut st = self.lock();
        if st.closed {
            let after = self.free_slot_locked(&mut st);
            drop(st);
            self.count_closed(Reason::PoolClosed, 1);
            drop(live);
            self.finish(after);
            return;
        }
        let waiter = st.waiters.pop_next();
        let now = match waiter {
            // Handing over to a waiter: check the lifetime against the time
            // it joined the queue (a little early, at most acquire_timeout)
            // rather than read the clock on this hot path.
            Some(key) => Some(st.waiters.registered_at(key)),
            None => self.config.timed().then(Instant::now),
        };
        let expired = matches!((live.expires_at, now), (Some(exp), Some(now)) if now >= exp);
        let after = match (waiter, expired) {
            (Some(key), false) => After {
                wake: st.waiters.grant(key, Grant::Resource(live)),
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
                    wake: st.waiters.grant(key, Grant::Create),
                    ..After::default()
                };
                drop(st);
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
                drop(st);
                self.count_closed(Reason::MaxLifetime, 1);
                self.finish(after);
                return;
            }
        };
        drop(st);
        self.finish(after);
    }

    /// A resource created by the background task joins the pool.
    fn deliver(&self, live: Live<M::Resource>) {
        let mut st = self.lock();
        if st.closed {
            let after = self.free_slot_locked(&mut st);
            drop(st);
            self.count_closed(Reason::PoolClosed, 1);
            drop(live);
            self.finish(after);
        } else {
            let after = self.give_locked(&mut st, live);
            drop(st);
            self.finish(after);
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn timed_out(&self) -> AcquireTimeout {
        let waited = self.config.acquire_timeout;
        self.counters.timed_out.fetch_add(1, Ordering::Relaxed);
        let (size, waiting) = {
            let st = self.lock();
            (st.size, st.waiters.waiting)
        };
        trace_event!(WARN, ?waited, size, waiting, "pool acquire timed out");
        AcquireTimeout {
            waited,
            size,
            max_size: self.config.max_size,
            waiting,
        }
    }

    fn stats(&self) -> PoolStats {
        let (size, idle, waiting) = {
            let st = self.lock();
            (st.size, st.idle.len(), st.waiters.waiting)
        };
        let c = &self.counters;
        let closed = |r: Reason| c.closed[r as usize].load(Ordering::Relaxed);
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
            closed_by_reason: ClosedByReason {
                recycle_failed: closed(Reason::RecycleFailed),
                max_lifetime: closed(Reason::MaxLifetime),
                idle_timeout: closed(Reason::IdleTimeout),
                detached: closed(Reason::Detached),
                interrupted: closed(Reason::Interrupted),
                pool_closed: closed(Reason::PoolClosed),
            },
        }
    }

    /// Creates a resource in the slot `guard` holds.
    async fn create_in(
        self: &Arc<Self>,
        mut guard: SlotGuard<'_, M>,
        limit: &mut Limit,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        guard.reason = None;
        let Some(created) = Timed::new(self.manager.create(), limit).await else {
            return Err(PoolError::Timeout(self.timed_out()));
        };
        match created {
            Ok(resource) => {
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                if self.is_closed() {
                    guard.reason = Some(Reason::PoolClosed);
                    drop(resource);
                    return Err(PoolError::Closed(PoolClosed));
                }
                let live = self.new_live(resource);
                guard.disarm();
                Ok(Pooled::new(self.clone(), live))
            }
            Err(error) => {
                self.counters.create_failed.fetch_add(1, Ordering::Relaxed);
                trace_event!(WARN, error = %error, "pool: creating a resource failed");
                Err(PoolError::Create(error))
            }
        }
    }

    /// Closes idle resources past their lifetime or idle timeout.
    fn reap(&self) {
        let now = Instant::now();
        let mut closed = Vec::new();
        let (mut by_lifetime, mut by_idle) = (0, 0);
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            if self.config.max_lifetime.is_some() {
                let mut i = 0;
                while i < st.idle.len() {
                    if st.idle[i].expires_at.is_some_and(|exp| exp <= now) {
                        closed.extend(st.idle.remove(i));
                        st.size -= 1;
                        by_lifetime += 1;
                    } else {
                        i += 1;
                    }
                }
            }
            if let Some(timeout) = self.config.idle_timeout {
                while st.size > self.config.min_size {
                    let due = st.idle.front().is_some_and(|l| {
                        l.idle_since
                            .and_then(|t| t.checked_add(timeout))
                            .is_some_and(|d| d <= now)
                    });
                    if !due {
                        break;
                    }
                    closed.extend(st.idle.pop_front());
                    st.size -= 1;
                    by_idle += 1;
                }
            }
        }
        if by_lifetime > 0 {
            self.count_closed(Reason::MaxLifetime, by_lifetime);
            trace_event!(
                DEBUG,
                closed = by_lifetime,
                "pool: idle resources reached max_lifetime"
            );
        }
        if by_idle > 0 {
            self.count_closed(Reason::IdleTimeout, by_idle);
            trace_event!(DEBUG, closed = by_idle, "pool: idle resources timed out");
        }
        drop(closed);
    }

    /// Creates resources until the pool holds `min_size`. Returns false if
    /// a create failed.
    async fn fill(&self) -> bool {
        let need = {
            let mut st = self.lock();
            if st.closed {
                return true;
            }
            let need = self.config.min_size.saturating_sub(st.size);
            st.size += need;
            need
        };
        if need == 0 {
            return true;
        }
        let mut creates: FuturesUnordered<_> = (0..need).map(|_| self.fill_one()).collect();
        let mut all_ok = true;
        while let Some(ok) = creates.next().await {
            all_ok &= ok;
        }
        all_ok
    }

    async fn fill_one(&self) -> bool {
        let guard = SlotGuard::new(self);
        let created =
            tokio::time::timeout(self.config.acquire_timeout, self.manager.create()).await;
        match created {
            Ok(Ok(resource)) => {
                self.counters.created.fetch_add(1, Ordering::Relaxed);
                guard.disarm();
                self.deliver(self.new_live(resource));
                true
            }
            Ok(Err(_error)) => {
                self.counters.create_failed.fetch_add(1, Ordering::Relaxed);
                trace_event!(WARN, error = %_error, "pool: background create failed");
                false
            }
            Err(_elapsed) => {
                self.counters.create_failed.fetch_add(1, Ordering::Relaxed);
                trace_event!(WARN, "pool: background create timed out");
                false
            }
        }
    }

    /// The next time an idle resource must be closed; remembered so that
    /// returns can tell whether to wake the background task earlier.
    fn plan_next_look(&self) -> Option<Instant> {
        let mut st = self.lock();
        let mut next = None;
        if self.config.max_lifetime.is_some() {
            for live in &st.idle {
                next = earliest(next, live.expires_at);
            }
        }
        if let Some(timeout) = self.config.idle_timeout {
            if st.size > self.config.min_size {
                let oldest = st.idle.front().and_then(|l| l.idle_since);
                next = earliest(next, oldest.and_then(|t| t.checked_add(timeout)));
            }
        }
        next = earliest(next, st.waiters.front_deadline());
        st.maint_wake = next;
        next
    }

    /// Fails the waiters whose `acquire_timeout` has run out.
    fn expire_waiters(&self) {
        let now = Instant::now();
        let mut wakers = Vec::new();
        {
            let mut st = self.lock();
            while let Some(key) = st.waiters.pop_expired(now) {
                wakers.extend(st.waiters.grant(key, Grant::TimedOut));
            }
        }
        for waker in wakers {
            waker.wake();
        }
    }

    /// [`Inner::fill`], while still failing waiters and closing idle
    /// resources on time.
    async fn fill_expiring(&self, wake: &Notify) -> bool {
        let fill = self.fill();
        tokio::pin!(fill);
        loop {
            self.expire_waiters();
            self.reap();
            let next = self.plan_next_look();
            tokio::select! {
                ok = &mut fill => return ok,
                _ = sleep_until_some(next) => {}
                _ = wake.notified() => {}
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The background task: keeps `min_size` resources open and closes idle
/// ones past their lifetime or idle timeout. Holds only a `Weak` while it
/// sleeps, so dropping every `Pool` handle (and guard) ends it.
async fn maintain<M: Manager>(pool: Weak<Inner<M>>, wake: Arc<Notify>) {
    let mut backoff = Duration::ZERO;
    let mut retry_fill_at: Option<Instant> = None;
    loop {
        let next = {
            let Some(inner) = pool.upgrade() else { return };
            if inner.is_closed() {
                return;
            }
            inner.expire_waiters();
            inner.reap();
            if retry_fill_at.is_none_or(|at| at <= Instant::now()) {
                if inner.fill_expiring(&wake).await {
                    backoff = Duration::ZERO;
                    retry_fill_at = None;
                } else {
                    // A create failed: try again after a growing pause.
                    backoff = (backoff * 2).clamp(FILL_BACKOFF_MIN, FILL_BACKOFF_MAX);
                    retry_fill_at = Instant::now().checked_add(backoff);
                }
            }
            earliest(inner.plan_next_look(), retry_fill_at)
        };
        tokio::select! {
            _ = sleep_until_some(next) => {}
            _ = wake.notified() => {}
        }
    }
}

/// The body of [`Pool::acquire`].
async fn acquire<M: Manager>(inner: &Arc<Inner<M>>) -> Result<Pooled<M>, PoolError<M::Error>> {
    let mut checkout = Checkout {
        inner,
        queued: None,
        deadline: None,
        done: false,
    };
    let grant = (&mut checkout).await;
    // What is left of acquire_timeout for recycling or creating: counted
    // from the moment this call started waiting, or else from the first
    // time recycle or create has to wait.
    let mut limit = match checkout.deadline {
        Some(deadline) => Limit::At(Some(deadline)),
        None => Limit::After(inner.config.acquire_timeout),
    };
    let mut guard = SlotGuard::new(inner);
    match grant {
        Grant::Closed => {
            guard.disarm(); // these grants carry no slot
            Err(PoolError::Closed(PoolClosed))
        }
        Grant::TimedOut => {
            guard.disarm();
            Err(PoolError::Timeout(inner.timed_out()))
        }
        Grant::Create => inner.create_in(guard, &mut limit).await,
        Grant::Resource(mut live) => {
            // (Idle resources past their lifetime are closed on time by the
            // background task, so no clock read is needed here.)
            // Dropped mid-check, the resource may be in any state: close it
            // rather than return it.
            guard.reason = Some(Reason::Interrupted);
            match Timed::new(inner.manager.recycle(&mut live.resource), &mut limit).await {
                Some(Ok(())) => {
                    inner.counters.recycled.fetch_add(1, Ordering::Relaxed);
                    guard.disarm();
                    return Ok(Pooled::new(inner.clone(), live));
                }
                Some(Err(_error)) => {
                    trace_event!(DEBUG, error = %_error, "pool: recycle failed, replacing the resource");
                    inner.count_closed(Reason::RecycleFailed, 1);
                    drop(live);
                }
                None => {
                    drop(live);
                    drop(guard); // counted as interrupted
                    return Err(PoolError::Timeout(inner.timed_out()));
                }
            }
            // Replace the closed resource in the same slot.
            inner.create_in(guard, &mut limit).await
        }
    }
}

/// Takes an idle resource or reserves a slot on its first poll, or joins
/// the queue (with its waker and deadline) and waits for a grant.
struct Checkout<'a, M: Manager> {
    inner: &'a Inner<M>,
    queued: Option<(usize, u64)>,
    /// Set when the caller had to queue: when its acquire_timeout ends.
    deadline: Option<Instant>,
    done: bool,
}

impl<M: Manager> Future for Checkout<'_, M> {
    type Output = Grant<M::Resource>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let inner = this.inner;
        let mut st = inner.lock();
        if let Some((key, generation)) = this.queued {
            let polled = st.waiters.poll(key, generation, cx.waker());
            this.done = polled.is_ready();
            return polled;
        }
        this.done = true;
        if st.closed {
            return Poll::Ready(Grant::Closed);
        }
        if st.waiters.waiting == 0 {
            if let Some(live) = st.idle.pop_back() {
                return Poll::Ready(Grant::Resource(live));
            }
            if st.size < inner.config.max_size {
                st.size += 1;
                return Poll::Ready(Grant::Create);
            }
        }
        this.done = false;
        let now = Instant::now();
        let deadline = now.checked_add(inner.config.acquire_timeout);
        this.deadline = deadline;
        let first_in_line = st.waiters.waiting == 0;
        this.queued = Some(st.waiters.register(
            cx.waker().clone(),
            now,
            inner.config.acquire_timeout,
        ));
        // The background task fails waiters on time; wake it if this
        // deadline comes before its next planned look.
        let mut notify = false;
        if let Some(deadline) = deadline {
            if first_in_line && st.maint_wake.is_none_or(|wake| deadline < wake) {
                st.maint_wake = Some(deadline);
                notify = true;
            }
        }
        drop(st);
        if notify {
            inner.maintenance.notify_one();
        }
        Poll::Pending
    }
}

impl<M: Manager> Drop for Checkout<'_, M> {
    fn drop(&mut self) {
        let Some((key, generation)) = self.queued else {
            return;
        };
        if self.done {
            return;
        }
        let mut st = self.inner.lock();
        let after = match st.waiters.cancel(key, generation) {
            Some(Grant::Resource(live)) => self.inner.give_locked(&mut st, live),
            Some(Grant::Create) => self.inner.free_slot_locked(&mut st),
            Some(Grant::Closed | Grant::TimedOut) | None => After::default(),
        };
        drop(st);
        self.inner.finish(after);
    }
}

// ---------------------------------------------------------------------------
// The waiter queue: a slab of slots plus a FIFO of (slot, generation).
// Cancelled waiters leave stale FIFO entries behind; they are skipped when
// popped and compacted away when they outnumber the live ones, so memory
// stays proportional to the number of live waiters.

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

struct Waiters<R> {
    slots: Vec<Slot<R>>,
    free: Vec<usize>,
    queue: VecDeque<(usize, u64)>,
    /// Waiters not yet granted.
    waiting: usize,
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
    fn register(&mut self, waker: Waker, registered: Instant, timeout: Duration) -> (usize, u64) {
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
    fn pop_next(&mut self) -> Option<usize> {
        while let Some((key, generation)) = self.queue.pop_front() {
            if matches!(self.slots[key], Slot::Waiting { generation: g, .. } if g == generation) {
                return Some(key);
            }
        }
        None
    }

    /// The deadline of the longest-waiting live waiter. Every waiter has
    /// the same timeout, so it is the earliest one.
    fn front_deadline(&mut self) -> Option<Instant> {
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
    fn registered_at(&self, key: usize) -> Instant {
        match self.slots[key] {
            Slot::Waiting { registered, .. } => registered,
            _ => unreachable!("pop_next only returns waiting slots"),
        }
    }

    /// Pops the longest-waiting live waiter if its deadline has passed.
    fn pop_expired(&mut self, now: Instant) -> Option<usize> {
        if self.front_deadline()? <= now {
            self.pop_next()
        } else {
            None
        }
    }

    /// Gives `grant` to the waiter in `key` (just popped); returns its waker.
    fn grant(&mut self, key: usize, grant: Grant<R>) -> Option<Waker> {
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

    fn poll(&mut self, key: usize, generation: u64, waker: &Waker) -> Poll<Grant<R>> {
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
    fn cancel(&mut self, key: usize, generation: u64) -> Option<Grant<R>> {
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
    fn close_all(&mut self) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while let Some(key) = self.pop_next() {
            wakers.extend(self.grant(key, Grant::Closed));
        }
        wakers
    }
}

/// How long an acquire may still take.
enum Limit {
    /// This long from the first time a phase has to wait.
    After(Duration),
    /// Until then (`None`: the deadline overflowed, so never).
    At(Option<Instant>),
}

pin_project! {
    /// Runs `fut` within `limit`. The timer is set up only if `fut` does
    /// not finish on its first poll, so the fast path costs no timer.
    struct Timed<'l, F> {
        #[pin]
        fut: F,
        limit: &'l mut Limit,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<'l, F> Timed<'l, F> {
    fn new(fut: F, limit: &'l mut Limit) -> Self {
        Timed {
            fut,
            limit,
            sleep: None,
        }
    }
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if this.sleep.is_none() {
            let at = match **this.limit {
                Limit::At(at) => at,
                Limit::After(timeout) => {
                    let at = Instant::now().checked_add(timeout);
                    **this.limit = Limit::At(at);
                    at
                }
            };
            match at {
                Some(at) => *this.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
                None => return Poll::Pending,
            }
        }
        match this.sleep.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

// ---------------------------------------------------------------------------
// Acquisition as a tower Service.

/// The future of [`Pool`]'s `Service::call`: resolves to a [`Pooled`]
/// guard, as [`Pool::acquire`] does.
///
/// It owns a clone of the pool, so it is `'static`; it is boxed because the
/// manager's futures cannot be named (use [`Pool::acquire`] directly on hot
/// paths that need no tower layers).
pub struct AcquireFuture<M: Manager> {
    inner: Pin<Box<dyn Future<Output = AcquireResult<M>> + Send>>,
}

type AcquireResult<M> = Result<Pooled<M>, PoolError<<M as Manager>::Error>>;

impl<M: Manager> fmt::Debug for AcquireFuture<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireFuture").finish_non_exhaustive()
    }
}

impl<M: Manager> Future for AcquireFuture<M> {
    type Output = Result<Pooled<M>, PoolError<M::Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// Acquisition as a service: `call(())` checks a resource out, so tower
/// layers (timeouts, retries on `PoolError::Create`, breakers) stack around
/// it. `poll_ready` fails once the pool is closed and is otherwise always
/// ready: the waiting happens in the response future, bounded by
/// `acquire_timeout`.
impl<M: Manager> tower_service::Service<()> for Pool<M> {
    type Response = Pooled<M>;
    type Error = PoolError<M::Error>;
    type Future = AcquireFuture<M>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.is_closed() {
            Poll::Ready(Err(PoolError::Closed(PoolClosed)))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, _request: ()) -> Self::Future {
        let pool = self.clone();
        AcquireFuture {
            inner: Box::pin(async move { pool.acquire().await }),
        }
    }
}
