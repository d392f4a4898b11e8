//! The body of [`Pool::acquire`](super::Pool::acquire): take an idle
//! resource, reserve a slot, or wait in line ([`Checkout`]); then recycle
//! (trying idle resources newest first, at most [`RECYCLE_CHECKS`] of
//! them) or create within what is left of `acquire_timeout` ([`Timed`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::error::{PoolClosed, PoolError};
use super::guard::{Pooled, SlotGuard};
use super::manager::Manager;
#[cfg(feature = "metrics")]
use super::shared::set_sizes;
use super::shared::{Inner, Live};
use super::stats::Reason;
use super::waiters::{Grant, Ticket};
use crate::time;
use crate::trace::trace_event;

/// Most [`Manager::recycle`] checks one acquire makes: after this many
/// failures in a row it creates a new resource in the slot of the last one
/// that failed, and leaves any other idle resources to later acquires (or
/// to `max_lifetime` and `idle_timeout`). Documented in the module docs.
pub(super) const RECYCLE_CHECKS: usize = 3;

/// The body of [`Pool::acquire`](super::Pool::acquire), timed and the
/// sizes sampled (feature `metrics`).
///
/// The time is counted from the first moment the acquire had to wait (in
/// line, or for a check or a create that did not finish at once), which
/// is when [`Limit`] reads the clock anyway; an acquire answered on its
/// first poll records zero and reads no clock, and with no recorder
/// installed no acquire reads the clock to record (see
/// [`crate::metrics::Elapsed`]).
#[cfg(feature = "metrics")]
pub(super) async fn acquire<M: Manager>(
    inner: &Arc<Inner<M>>,
) -> Result<Pooled<M>, PoolError<M::Error>> {
    let mut limit = Limit::After(inner.config.acquire_timeout);
    let out = checkout_within(inner, &mut limit).await;
    if out.is_ok() {
        // Read only by a histogram with a recorder behind it.
        let took = crate::metrics::Elapsed(match limit {
            Limit::After(_) => None,
            Limit::At { since, .. } => Some(since),
        });
        inner.metrics.with_init(
            |m| m.wait.record(took),
            // A recorder seen for the first time is shown the sizes even
            // though they did not change (the gauges are set only when
            // they change: see `Inner::unlock`).
            |m| set_sizes(m, inner.lock().sizes()),
        );
    }
    out
}

/// The body of [`Pool::acquire`](super::Pool::acquire) (without the
/// `metrics` feature).
#[cfg(not(feature = "metrics"))]
pub(super) async fn acquire<M: Manager>(
    inner: &Arc<Inner<M>>,
) -> Result<Pooled<M>, PoolError<M::Error>> {
    checkout_within(inner, &mut Limit::After(inner.config.acquire_timeout)).await
}

/// Takes a resource or a slot, then recycles or creates, all within
/// `limit` (which is [`Limit::At`] from the first time it had to wait).
async fn checkout_within<M: Manager>(
    inner: &Arc<Inner<M>>,
    limit: &mut Limit,
) -> Result<Pooled<M>, PoolError<M::Error>> {
    let mut checkout = Checkout {
        inner,
        queued: None,
        limit: &mut *limit,
        done: false,
    };
    let grant = (&mut checkout).await;
    drop(checkout);
    // What is left of acquire_timeout for recycling or creating: counted
    // from the moment this call started waiting in line (`limit` is then
    // `At`), or else from the first time recycle or create has to wait.
    let guard = SlotGuard::new(inner);
    match grant {
        Grant::Closed => {
            guard.disarm(); // these grants carry no slot
            Err(PoolError::Closed(PoolClosed))
        }
        Grant::TimedOut => {
            guard.disarm();
            Err(PoolError::Timeout(inner.timed_out()))
        }
        Grant::Create => inner.create_in(guard, limit).await,
        Grant::Resource(live) => inner.recycle_in(guard, live, limit).await,
    }
}

/// Takes an idle resource or reserves a slot on its first poll, or joins
/// the queue (with its waker and deadline) and waits for a grant.
struct Checkout<'a, 'l, M: Manager> {
    inner: &'a Inner<M>,
    queued: Option<Ticket<Live<M::Resource>>>,
    /// Set to [`Limit::At`] when the caller has to queue.
    limit: &'l mut Limit,
    done: bool,
}

impl<M: Manager> Future for Checkout<'_, '_, M> {
    type Output = Grant<Live<M::Resource>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let inner = this.inner;
        if let Some(ticket) = &this.queued {
            // A waiter polls its own mailbox, never the pool's lock.
            let polled = ticket.poll(cx.waker());
            this.done = polled.is_ready();
            return polled;
        }
        // Queueing needs the time; when acquires have been queueing, read
        // it before taking the lock rather than while holding it.
        let early = inner.queueing.load(Ordering::Relaxed).then(Instant::now);
        let mut st = inner.lock();
        this.done = true;
        if st.closed {
            return Poll::Ready(Grant::Closed);
        }
        if st.waiters.waiting == 0 {
            if let Some(live) = st.idle.pop_back() {
                inner.hint_queueing(false);
                inner.settle(st);
                return Poll::Ready(Grant::Resource(live));
            }
            if st.size < inner.config.max_size {
                st.size += 1;
                inner.hint_queueing(false);
                inner.settle(st);
                return Poll::Ready(Grant::Create);
            }
        }
        inner.hint_queueing(true);
        this.done = false;
        let now = early.unwrap_or_else(Instant::now);
        let deadline = time::deadline(now, inner.config.acquire_timeout);
        *this.limit = Limit::At {
            since: now,
            deadline,
        };
        let first_in_line = st.waiters.waiting == 0;
        this.queued = Some(st.waiters.register(
            cx.waker().clone(),
            now,
            inner.config.acquire_timeout,
        ));
        // The background task fails waiters on time; wake it if this
        // deadline comes before its next planned look.
        let mut notify = false;
        if first_in_line && st.maint_wake.is_none_or(|wake| deadline < wake) {
            st.maint_wake = Some(deadline);
            notify = true;
        }
        drop(st);
        if notify {
            inner.maintenance.notify_one();
        }
        Poll::Pending
    }
}

impl<M: Manager> Drop for Checkout<'_, '_, M> {
    fn drop(&mut self) {
        let Some(ticket) = &self.queued else {
            return;
        };
        if self.done {
            return;
        }
        let mut st = self.inner.lock();
        let in_line = st.waiters.cancel(ticket);
        self.inner.settle(st);
        if in_line {
            return;
        }
        // Granted: the grant is in the mailbox (given back here) or on its
        // way (and comes back to its sender).
        if let Some(grant) = ticket.give_up() {
            self.inner.regive(grant);
        }
    }
}

impl<M: Manager> Inner<M> {
    /// Checks `live` (in the slot `guard` holds) and hands it out; if the
    /// check fails, closes it and checks the newest idle resource next, up
    /// to [`RECYCLE_CHECKS`] checks. When none passes, creates a new
    /// resource in the slot of the last one that failed.
    ///
    /// Cancellation safe: across every await, `guard` owns exactly the slot
    /// of the resource being checked; dropped mid-check, that resource is
    /// closed (counted as interrupted) and its slot freed.
    async fn recycle_in(
        self: &Arc<Self>,
        mut guard: SlotGuard<'_, M>,
        mut live: Live<M::Resource>,
        limit: &mut Limit,
    ) -> Result<Pooled<M>, PoolError<M::Error>> {
        // (Idle resources past their lifetime are closed on time by the
        // background task, so no clock read is needed here.)
        // Dropped mid-check, the resource may be in any state: close it
        // rather than return it.
        guard.reason = Some(Reason::Interrupted);
        let mut checks = 0;
        loop {
            checks += 1;
            match Timed::new(self.manager.recycle(&mut live.resource), limit).await {
                Some(Ok(())) => {
                    self.counters.recycled.fetch_add(1, Ordering::Relaxed);
                    guard.disarm();
                    return Ok(Pooled::new(self.clone(), live));
                }
                Some(Err(_error)) => {
                    trace_event!(DEBUG, error = %_error, checks, "pool: recycle failed, closing the resource");
                    self.count_closed(Reason::RecycleFailed, 1);
                    drop(live);
                }
                None => {
                    drop(live);
                    drop(guard); // counted as interrupted
                    return Err(PoolError::Timeout(self.timed_out()));
                }
            }
            if checks == RECYCLE_CHECKS {
                break;
            }
            match self.take_idle_freeing_slot() {
                Some(next) => live = next,
                None => break,
            }
        }
        // Replace the closed resource in the same slot.
        self.create_in(guard, limit).await
    }

    /// The newest idle resource, if any; then the slot of the resource
    /// that just failed its check is freed (the caller's guard now stands
    /// for the returned one). With none idle, the caller keeps the slot.
    fn take_idle_freeing_slot(&self) -> Option<Live<M::Resource>> {
        let mut st = self.lock();
        let live = st.idle.pop_back()?;
        let after = self.free_slot_locked(&mut st);
        self.finish(self.unlock(st, after));
        Some(live)
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
                #[cfg(feature = "metrics")]
                self.metrics.with(|m| m.create_errors.increment(1));
                trace_event!(WARN, error = %error, "pool: creating a resource failed");
                Err(PoolError::Create(error))
            }
        }
    }
}

/// How long an acquire may still take.
enum Limit {
    /// This long from the first time a phase has to wait (none has yet).
    After(Duration),
    /// Until `deadline` (at most [`time::NEVER`] ahead: see
    /// [`time::deadline`]); the acquire first had to wait at `since`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    At { since: Instant, deadline: Instant },
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
                Limit::At { deadline, .. } => deadline,
                Limit::After(timeout) => {
                    let since = Instant::now();
                    let deadline = time::deadline(since, timeout);
                    **this.limit = Limit::At { since, deadline };
                    deadline
                }
            };
            *this.sleep = Some(Box::pin(tokio::time::sleep_until(at)));
        }
        match this.sleep.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}
