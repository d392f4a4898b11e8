//! The background task: keeps `min_size` resources open (the filler),
//! closes idle resources past their lifetime or idle timeout (the reaper)
//! and fails waiters whose `acquire_timeout` ran out.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::guard::SlotGuard;
use super::manager::Manager;
use super::shared::{earliest, Inner};
use super::stats::Reason;
use super::waiters::Grant;
use crate::time;
use crate::trace::trace_event;

/// First and largest pause of the background task after a failed create.
const FILL_BACKOFF_MIN: Duration = Duration::from_millis(50);
const FILL_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The background task: keeps `min_size` resources open and closes idle
/// ones past their lifetime or idle timeout. Holds only a `Weak` while it
/// sleeps, so dropping every `Pool` handle (and guard) ends it.
pub(super) async fn maintain<M: Manager>(pool: Weak<Inner<M>>, wake: Arc<Notify>) {
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
                    retry_fill_at = Some(time::deadline(Instant::now(), backoff));
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

/// Sleeps until `at`, or forever for `None`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The background task's work on the shared state.
impl<M: Manager> Inner<M> {
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
                            .is_some_and(|t| time::deadline(t, timeout) <= now)
                    });
                    if !due {
                        break;
                    }
                    closed.extend(st.idle.pop_front());
                    st.size -= 1;
                    by_idle += 1;
                }
            }
            self.settle(st);
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
            self.settle(st);
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
        let created = tokio::time::timeout(
            time::capped(self.config.acquire_timeout),
            self.manager.create(),
        )
        .await;
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
                next = earliest(next, oldest.map(|t| time::deadline(t, timeout)));
            }
        }
        next = earliest(next, st.waiters.front_deadline());
        st.maint_wake = next;
        next
    }

    /// Fails the waiters whose `acquire_timeout` has run out.
    fn expire_waiters(&self) {
        let now = Instant::now();
        let mut deliveries = Vec::new();
        {
            let mut st = self.lock();
            while let Some(key) = st.waiters.pop_expired(now) {
                deliveries.push(st.waiters.grant(key, Grant::TimedOut));
            }
        }
        for delivery in deliveries {
            // A waiter that gave up meanwhile needs no `TimedOut`.
            let _ = delivery.send();
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
