//! Internal: the state every clone of one limiter shares (the semaphore
//! and the counters), the waiting policy, and the stats snapshot. The fixed
//! and the adaptive limiters both build on it; the per-service half (a
//! reserved permit, a queued wait) is in `reservation.rs`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::Overloaded;
use crate::trace::{record, trace_event};

/// How long a caller may wait for a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Wait as long as it takes (tower's behaviour).
    Forever,
    /// Wait at most this long, then fail with [`Overloaded`].
    UpTo(Duration),
    /// Never wait: fail with [`Overloaded`] at once when no permit is free.
    Never,
}

impl Wait {
    pub(super) fn up_to(d: Duration) -> Wait {
        if d.is_zero() {
            Wait::Never
        } else {
            Wait::UpTo(d)
        }
    }
}

/// The permits and counters behind every clone of one limiter.
#[derive(Debug)]
pub(super) struct Gate {
    pub(super) semaphore: Arc<Semaphore>,
    /// The limit in force (fixed, or the adaptive limiter's current value).
    pub(super) limit: AtomicUsize,
    /// Callers currently queued for a permit.
    pub(super) waiting: AtomicUsize,
    /// Calls refused with [`Overloaded`] since the limiter was built.
    pub(super) rejected: AtomicU64,
    #[cfg(feature = "metrics")]
    pub(super) metrics: crate::metrics::Instruments<crate::metrics::LimitMetrics>,
}

impl Gate {
    pub(super) fn new(limit: usize) -> Gate {
        Gate {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit: AtomicUsize::new(limit),
            waiting: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new("limit".into()),
        }
    }

    /// The gate with its metrics labelled `name` (and, with a recorder
    /// installed, the limit gauge set at once).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, unused_mut))]
    pub(super) fn named(mut self, name: crate::trace::Name) -> Gate {
        #[cfg(feature = "metrics")]
        {
            self.metrics = crate::metrics::Instruments::new(name);
            self.metrics.with_init(|_| {}, |m| self.init_gauges(m));
        }
        self
    }

    /// Sets the gauges to the present values (on registration).
    #[cfg(feature = "metrics")]
    pub(super) fn init_gauges(&self, m: &crate::metrics::LimitMetrics) {
        let limit = self.limit.load(Ordering::Relaxed);
        m.limit.set(limit as f64);
        m.in_flight
            .set(limit.saturating_sub(self.semaphore.available_permits()) as f64);
    }

    /// Samples the permits in flight (when one is taken).
    #[inline]
    pub(super) fn sample_in_flight(&self) {
        record!(
            self.metrics,
            |m| m.in_flight.set(
                self.limit
                    .load(Ordering::Relaxed)
                    .saturating_sub(self.semaphore.available_permits()) as f64
            ),
            init = |m| self.init_gauges(m)
        );
    }

    /// A gate for a fixed `limit`, raised to 1 (a limit of 0 would block
    /// every call forever) and lowered to [`Semaphore::MAX_PERMITS`].
    pub(super) fn clamped(limit: usize) -> Gate {
        Gate::new(limit.clamp(1, Semaphore::MAX_PERMITS))
    }

    /// The counters of a fixed limit, where every permit the semaphore does
    /// not hold is in flight.
    pub(super) fn stats(&self) -> LimitStats {
        let limit = self.limit.load(Ordering::Relaxed);
        LimitStats {
            limit,
            in_flight: limit.saturating_sub(self.semaphore.available_permits()),
            waiting: self.waiting.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// Counts a refusal and describes it.
    pub(super) fn reject(&self, waited: Duration) -> Overloaded {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        record!(
            self.metrics,
            |m| m.rejections.increment(1),
            init = |m| self.init_gauges(m)
        );
        let limit = self.limit.load(Ordering::Relaxed);
        trace_event!(DEBUG, limit, waited = ?waited, "concurrency limit: call rejected");
        Overloaded::new(limit, waited)
    }
}

/// A call's permit of a fixed limit: the semaphore's own permit.
#[cfg(not(feature = "metrics"))]
pub type Permit = tokio::sync::OwnedSemaphorePermit;

/// A call's permit of a fixed limit: one permit taken from the gate's
/// semaphore (and forgotten there), given back and sampled into the
/// in-flight gauge on drop. It holds the gate's `Arc` in place of the
/// semaphore's, so recording costs no extra reference count.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
}

#[cfg(feature = "metrics")]
impl Permit {
    /// Takes a free permit of `gate` at once, if there is one.
    #[inline]
    pub(super) fn try_take(gate: &Arc<Gate>) -> Result<Self, tokio::sync::TryAcquireError> {
        gate.semaphore.try_acquire()?.forget();
        Ok(Permit { gate: gate.clone() })
    }

    /// The permit a wait for `gate`'s semaphore ended with.
    pub(super) fn new(permit: tokio::sync::OwnedSemaphorePermit, gate: Arc<Gate>) -> Self {
        permit.forget();
        Permit { gate }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.gate.semaphore.add_permits(1);
        self.gate.sample_in_flight();
    }
}

/// A snapshot of a limiter's counters, from `stats()`.
///
/// Every clone of a limited service, and the layer that made them, see the
/// same numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LimitStats {
    /// The limit in force: fixed, or the adaptive limiter's current value.
    pub limit: usize,
    /// Permits held right now: reserved by `poll_ready`, held by running
    /// calls, or (with `hold_until_body_end`) by unread response bodies.
    pub in_flight: usize,
    /// Callers queued for a permit right now.
    pub waiting: usize,
    /// Calls refused with [`Overloaded`] since the limiter was built.
    pub rejected: u64,
}
