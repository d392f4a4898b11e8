//! State shared by every clone of one adaptive limiter, and its permits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use tokio::sync::OwnedSemaphorePermit;

use super::algorithm::{Algorithm, Sample};
use crate::limit::gate::{Gate, LimitStats};
use crate::limit::reservation::Limiter;
use crate::trace::{record, trace_event};

/// State shared by every clone of one adaptive limiter.
pub(super) struct Shared {
    pub(super) gate: Arc<Gate>,
    /// Permits held right now.
    pub(super) in_flight: AtomicUsize,
    /// Permits to retire as they come back: the limit fell while they were
    /// out, so they could not be taken from the semaphore at once.
    pub(super) debt: AtomicUsize,
    pub(super) algorithm: Mutex<Box<dyn Algorithm>>,
}

impl Shared {
    pub(super) fn new(algorithm: Box<dyn Algorithm>, name: crate::trace::Name) -> Self {
        Shared {
            gate: Arc::new(Gate::new(algorithm.limit()).named(name)),
            in_flight: AtomicUsize::new(0),
            debt: AtomicUsize::new(0),
            algorithm: Mutex::new(algorithm),
        }
    }

    pub(super) fn stats(&self) -> LimitStats {
        LimitStats {
            limit: self.gate.limit.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            waiting: self.gate.waiting.load(Ordering::Relaxed),
            rejected: self.gate.rejected.load(Ordering::Relaxed),
        }
    }

    pub(super) fn on_sample(&self, sample: &Sample) {
        // Never wait for the lock: if another call is updating the
        // algorithm right now, this sample is skipped. Under that much
        // traffic one sample more or less changes nothing, and no call
        // ever queues behind another on the success path. A panic cannot
        // poison the state in a harmful way (each update is a few float
        // operations), so a poisoned lock is used as is.
        let mut algorithm = match self.algorithm.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let new = algorithm.update(sample);
        let old = self.gate.limit.load(Ordering::Relaxed);
        if new != old {
            // Under the lock, so resizes never interleave.
            self.resize(old, new);
            self.gate.limit.store(new, Ordering::Relaxed);
            record!(self.gate.metrics, |m| m.limit.set(new as f64));
            trace_event!(
                DEBUG,
                from = old,
                to = new,
                "adaptive concurrency limit changed"
            );
        }
    }

    /// Moves the semaphore from `old` to `new` permits. Invariant:
    /// permits in the semaphore (free or held) minus `debt` equals the limit.
    pub(super) fn resize(&self, old: usize, new: usize) {
        let sem = &self.gate.semaphore;
        if new > old {
            let mut grow = new - old;
            let paid = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d - d.min(grow))
                })
                .map_or(0, |d| d.min(grow));
            grow -= paid;
            if grow > 0 {
                sem.add_permits(grow);
            }
        } else {
            let shrink = old - new;
            let forgotten = sem.forget_permits(shrink);
            if forgotten < shrink {
                self.debt.fetch_add(shrink - forgotten, Ordering::AcqRel);
            }
        }
    }
}

/// The adaptive limiter's services reserve on the shared state: each permit
/// counts itself in flight and pays off the debt of a lowered limit.
impl Limiter for Arc<Shared> {
    type Permit = Permit;

    #[inline]
    fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    #[inline]
    fn grant(&self, permit: OwnedSemaphorePermit) -> Permit {
        Permit::new(permit, self.clone())
    }

    fn stats(&self) -> LimitStats {
        Shared::stats(self)
    }
}

/// A held permit of the adaptive limiter.
pub(super) struct Permit {
    pub(super) permit: Option<OwnedSemaphorePermit>,
    pub(super) shared: Arc<Shared>,
    /// Permits held when this one was granted, itself included.
    pub(super) in_flight: usize,
}

impl Permit {
    pub(super) fn new(permit: OwnedSemaphorePermit, shared: Arc<Shared>) -> Self {
        let in_flight = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        Permit {
            permit: Some(permit),
            shared,
            in_flight,
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let _left = self.shared.in_flight.fetch_sub(1, Ordering::Relaxed) - 1;
        if let Some(permit) = self.permit.take() {
            let debt = &self.shared.debt;
            let owed = debt.load(Ordering::Acquire) > 0
                && debt
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
                    .is_ok();
            if owed {
                permit.forget();
            }
        }
        record!(self.shared.gate.metrics, |m| m.in_flight.set(_left as f64));
    }
}
