//! The state every service made by one [`RetryLayer`](super::RetryLayer)
//! shares: the configuration, the counters, the budget, and the
//! [`RetryStats`] snapshot read from them.
//!
//! # Keeping the success path free of atomic read-modify-writes
//!
//! A response future is `'static`, so anything shared it holds must be
//! reference counted, and an `Arc` clone plus drop per call is two atomic
//! read-modify-write operations: several times the whole cost of
//! `tower::retry` on the path where the first attempt succeeds. So:
//!
//! - **First attempts are counted per service clone.** Each [`Retry`]
//!   handle owns a [`Slot`], a counter only it writes (`call` takes
//!   `&mut self`), with a plain load and store. Readers (`stats()`, the
//!   budget) sum the live slots plus the counts of dropped ones. Slots are
//!   made and retired when a handle is cloned or dropped (per connection
//!   in hyper, axum, tonic), never per call.
//! - **Futures find the state by id.** A future holds the layer's id, not
//!   an `Arc`. Only when an attempt fails (the slow path) does it look the
//!   id up in a process-wide registry of weak references and keep the
//!   `Arc` from then on. If every handle (the layer and all its services)
//!   was dropped before that, as with `oneshot` on a one-off layer, the
//!   retries still happen as configured (the future carries its own copy of
//!   the configuration and classifier), only outside the budget and the
//!   statistics, which no one can observe any more.
//!
//! [`Retry`]: super::Retry

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use super::backoff::Backoff;
use super::budget::{BudgetState, RetryBudget};
use crate::sync::{lock, read, write};
use crate::trace::{record, Name};

/// The validated, immutable configuration, copied into every service and
/// response future (so the success path reads no shared memory).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) deadline: Option<Duration>,
    /// The cap on a classifier's `retry_after`.
    pub(crate) max_retry_after: Duration,
}

/// A snapshot of a retry layer's counters, from
/// [`RetryLayer::stats`](super::RetryLayer::stats) or
/// [`Retry::stats`](super::Retry::stats): both read the same counters,
/// shared by every service the layer made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryStats {
    /// Calls made to the inner service: first attempts plus retries.
    pub attempts: u64,
    /// Calls that were retries (not first attempts).
    pub retries: u64,
    /// Retries not made because the [`RetryBudget`] was spent.
    pub budget_refusals: u64,
    /// Retries not made because the next attempt would have started at or
    /// after the deadline: the layer's own
    /// [`deadline`](super::RetryLayerBuilder::deadline) or the one in
    /// force from a [`TimeoutLayer`](crate::deadline::TimeoutLayer) above
    /// (or [`deadline::scope`](crate::deadline::scope)).
    pub deadline_stops: u64,
}

/// The shared, non-generic state of one layer.
#[derive(Debug)]
pub(crate) struct Core {
    id: u64,
    pub(crate) budget: Option<BudgetState>,
    pub(crate) budget_config: Option<RetryBudget>,
    pub(crate) retries: AtomicU64,
    pub(crate) refusals: AtomicU64,
    pub(crate) deadline_stops: AtomicU64,
    first: Mutex<FirstAttempts>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments<crate::metrics::RetryMetrics>,
}

#[derive(Debug, Default)]
struct FirstAttempts {
    /// First attempts counted by slots that have since been dropped.
    retired: u64,
    /// One counter per live service handle.
    live: Vec<Arc<AtomicU64>>,
}

impl FirstAttempts {
    fn total(&self) -> u64 {
        self.live.iter().fold(self.retired, |sum, c| {
            sum.saturating_add(c.load(Ordering::Relaxed))
        })
    }
}

/// Process-wide map from layer id to its state, for futures that fail.
/// Entries live exactly as long as their `Core`.
static REGISTRY: RwLock<BTreeMap<u64, Weak<Core>>> = RwLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Core {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(budget: Option<RetryBudget>, name: Name) -> Arc<Core> {
        let core = Arc::new(Core {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            budget: budget.as_ref().map(BudgetState::new),
            budget_config: budget,
            retries: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            deadline_stops: AtomicU64::new(0),
            first: Mutex::new(FirstAttempts::default()),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new(name),
        });
        write(&REGISTRY).insert(core.id, Arc::downgrade(&core));
        core
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The state of layer `id`, if any handle to it is still alive.
    pub(crate) fn lookup(id: u64) -> Option<Arc<Core>> {
        read(&REGISTRY).get(&id).and_then(Weak::upgrade)
    }

    fn first(&self) -> MutexGuard<'_, FirstAttempts> {
        lock(&self.first)
    }

    /// All first attempts ever made through this layer.
    pub(crate) fn first_attempts(&self) -> u64 {
        self.first().total()
    }

    pub(crate) fn stats(&self) -> RetryStats {
        let first = self.first_attempts();
        let retries = self.retries.load(Ordering::Relaxed);
        RetryStats {
            attempts: first.saturating_add(retries),
            retries,
            budget_refusals: self.refusals.load(Ordering::Relaxed),
            deadline_stops: self.deadline_stops.load(Ordering::Relaxed),
        }
    }

    /// A new first-attempt counter for a new service handle.
    pub(crate) fn slot(self: &Arc<Core>) -> Slot {
        let counter = Arc::new(AtomicU64::new(0));
        self.first().live.push(Arc::clone(&counter));
        Slot {
            core: Arc::clone(self),
            counter,
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Ids are never reused, so this is our entry.
        write(&REGISTRY).remove(&self.id);
    }
}

/// A service handle's own first-attempt counter (and its reference to the
/// shared state). Not `Clone`: each handle makes its own with
/// [`Core::slot`], which is what makes the plain load-and-store increment
/// exact.
#[derive(Debug)]
pub(crate) struct Slot {
    core: Arc<Core>,
    counter: Arc<AtomicU64>,
}

impl Slot {
    /// Counts one first attempt. Only this handle writes the counter, so a
    /// load and a store (no read-modify-write) lose nothing.
    #[inline]
    pub(crate) fn count_first_attempt(&mut self) {
        let n = self.counter.load(Ordering::Relaxed);
        self.counter.store(n.wrapping_add(1), Ordering::Relaxed);
        record!(self.core.metrics, |m| m.first.increment(1));
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut first = self.core.first();
        first.retired = first
            .retired
            .saturating_add(self.counter.load(Ordering::Relaxed));
        if let Some(i) = first
            .live
            .iter()
            .position(|c| Arc::ptr_eq(c, &self.counter))
        {
            first.live.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_and_retire() {
        let core = Core::new(None, "retry".into());
        let mut a = core.slot();
        let mut b = core.slot();
        a.count_first_attempt();
        b.count_first_attempt();
        b.count_first_attempt();
        assert_eq!(core.first_attempts(), 3);
        drop(b);
        assert_eq!(core.first_attempts(), 3);
        a.count_first_attempt();
        assert_eq!(core.first_attempts(), 4);
        assert_eq!(core.first().live.len(), 1);
    }

    #[test]
    fn registry_entries_live_as_long_as_the_core() {
        let core = Core::new(None, "retry".into());
        let id = core.id();
        assert!(Core::lookup(id).is_some_and(|c| Arc::ptr_eq(&c, &core)));
        let slot = core.slot();
        drop(core);
        // The slot keeps the state alive.
        assert!(Core::lookup(id).is_some());
        drop(slot);
        assert!(Core::lookup(id).is_none());
        assert!(!read(&REGISTRY).contains_key(&id));
    }
}
