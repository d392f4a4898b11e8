//! The state every service made by one [`HedgeLayer`](super::HedgeLayer)
//! shares: the budget, the latency tracker, the counters, and the
//! [`HedgeStats`] snapshot read from them.
//!
//! # Keeping the no-hedge path free of shared writes
//!
//! A response future is `'static`, so anything shared it holds must be
//! reference counted, and an `Arc` clone plus drop per call is two atomic
//! read-modify-writes: more than the whole budget of a call that answers
//! at once. So, as in [`retry`](crate::retry):
//!
//! - **Calls are counted per service handle.** Each [`Hedge`](super::Hedge)
//!   owns a [`Slot`], counters only it writes (`call` takes `&mut self`),
//!   with a plain load and store. Readers (`stats()`, the budget) sum the
//!   live slots plus the counts of dropped ones.
//! - **Futures find the state by id.** A future holds the layer's id, not an
//!   `Arc`, and looks it up in a process-wide registry of weak references
//!   only when it needs it: when its first poll finds the inner call still
//!   pending (percentile mode, to read the delay) or when its timer fires.
//!   If every handle to the layer was dropped by then, hedges are sent as
//!   configured, outside the budget and the statistics (no one can read
//!   them any more).
//! - **The learned delay is read with one load.** Samples go into the
//!   [`Tracker`] under a short lock (one per call that waited); the
//!   percentile is recomputed every few samples into an atomic that each
//!   waiting call reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::latency::Tracker;
use crate::budget::Budget;
use crate::sync::{lock, read, write};
use crate::trace::record;

/// The validated, immutable configuration, copied into every service and
/// response future.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) max_hedges: u32,
    /// The fixed delay, or the delay used until the tracker has enough
    /// samples.
    pub(crate) delay: Duration,
    /// Percentile mode: the percentile (in percent) of recent latencies.
    pub(crate) percentile: Option<f64>,
    pub(crate) min_samples: u32,
    pub(crate) window: Duration,
    pub(crate) budget_ratio: f64,
    pub(crate) budget_floor: u32,
}

/// A snapshot of a hedge layer's counters, from
/// [`HedgeLayer::stats`](super::HedgeLayer::stats) or
/// [`Hedge::stats`](super::Hedge::stats): both read the same counters,
/// shared by every service the layer made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Requests received (each sent at least once).
    pub calls: u64,
    /// Requests never hedged because the [`Eligible`](super::Eligible) rule
    /// said no or their [`Replay`](crate::retry::Replay) gave `None`.
    pub ineligible: u64,
    /// Hedged attempts sent (extra calls to the inner service).
    pub hedges: u64,
    /// Requests answered by a hedged attempt rather than the first one.
    pub hedge_wins: u64,
    /// Hedges not sent because the budget was spent.
    pub budget_refusals: u64,
    /// Hedges not sent because the [deadline](crate::deadline) in force
    /// left less time than the delay between attempts.
    pub deadline_stops: u64,
    /// Attempts that failed and were not the answer (another attempt's
    /// answer, or a later failure, was returned instead).
    pub loser_errors: u64,
    /// Attempts still in flight when another answered, dropped (cancelled).
    pub cancelled: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SlotCounters {
    calls: AtomicU64,
    ineligible: AtomicU64,
}

#[derive(Debug, Default)]
struct Handles {
    /// Counts of slots that have since been dropped: calls, ineligible.
    retired: (u64, u64),
    live: Vec<Arc<SlotCounters>>,
}

impl Handles {
    fn totals(&self) -> (u64, u64) {
        self.live.iter().fold(self.retired, |(c, i), s| {
            (
                c.saturating_add(s.calls.load(Ordering::Relaxed)),
                i.saturating_add(s.ineligible.load(Ordering::Relaxed)),
            )
        })
    }
}

/// Latency samples and the percentile last computed from them.
#[derive(Debug)]
struct Learned {
    percentile: f64,
    min_samples: u64,
    tracker: Mutex<(Tracker, u32)>,
    /// The learned delay in nanoseconds, or `u64::MAX` while there are too
    /// few samples.
    delay_nanos: AtomicU64,
}

/// Samples between two recomputations of the percentile, once it exists.
const RECOMPUTE_EVERY: u32 = 8;

/// The shared, non-generic state of one layer.
#[derive(Debug)]
pub(crate) struct Core {
    id: u64,
    budget: Budget,
    learned: Option<Learned>,
    hedges: AtomicU64,
    wins: AtomicU64,
    refusals: AtomicU64,
    deadline_stops: AtomicU64,
    loser_errors: AtomicU64,
    cancelled: AtomicU64,
    handles: Mutex<Handles>,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Instruments<crate::metrics::HedgeMetrics>,
}

/// Process-wide map from layer id to its state, for futures that wait.
/// Entries live exactly as long as their `Core`.
static REGISTRY: RwLock<BTreeMap<u64, Weak<Core>>> = RwLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Core {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(config: &Config, name: crate::trace::Name) -> Arc<Core> {
        let core = Arc::new(Core {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            budget: Budget::new(config.budget_ratio, config.budget_floor, config.window),
            learned: config.percentile.map(|p| Learned {
                percentile: p,
                min_samples: u64::from(config.min_samples),
                tracker: Mutex::new((Tracker::new(config.window / 2), 0)),
                delay_nanos: AtomicU64::new(u64::MAX),
            }),
            hedges: AtomicU64::new(0),
            wins: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            deadline_stops: AtomicU64::new(0),
            loser_errors: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            handles: Mutex::new(Handles::default()),
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

    fn handles(&self) -> MutexGuard<'_, Handles> {
        lock(&self.handles)
    }

    pub(crate) fn stats(&self) -> HedgeStats {
        let (calls, ineligible) = self.handles().totals();
        HedgeStats {
            calls,
            ineligible,
            hedges: self.hedges.load(Ordering::Relaxed),
            hedge_wins: self.wins.load(Ordering::Relaxed),
            budget_refusals: self.refusals.load(Ordering::Relaxed),
            deadline_stops: self.deadline_stops.load(Ordering::Relaxed),
            loser_errors: self.loser_errors.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
        }
    }

    /// A new set of counters for a new service handle.
    pub(crate) fn slot(self: &Arc<Core>) -> Slot {
        let counters = Arc::new(SlotCounters::default());
        self.handles().live.push(Arc::clone(&counters));
        Slot {
            core: Arc::clone(self),
            counters,
        }
    }

    /// The learned delay, if percentile mode has enough samples.
    pub(crate) fn learned_delay(&self) -> Option<Duration> {
        let nanos = self.learned.as_ref()?.delay_nanos.load(Ordering::Relaxed);
        (nanos != u64::MAX).then(|| Duration::from_nanos(nanos))
    }

    /// Records how long a first attempt took (or, if it was cancelled, how
    /// long it ran: a lower bound), in percentile mode.
    pub(crate) fn record_latency(&self, now: Instant, latency: Duration) {
        let Some(learned) = &self.learned else {
            return;
        };
        let mut guard = lock(&learned.tracker);
        let (tracker, since) = &mut *guard;
        let rotated = tracker.record(now, latency);
        *since += 1;
        let stale = learned.delay_nanos.load(Ordering::Relaxed) == u64::MAX;
        if rotated || stale || *since >= RECOMPUTE_EVERY {
            *since = 0;
            let nanos = tracker
                .percentile(learned.percentile, learned.min_samples)
                .map_or(u64::MAX, |d| {
                    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
                });
            learned.delay_nanos.store(nanos, Ordering::Relaxed);
        }
    }

    /// Asks the budget for one hedge at `now`; counts a refusal.
    /// Counts a hedge not sent because of the deadline in force.
    pub(crate) fn deadline_stop(&self) {
        self.deadline_stops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn try_hedge(&self, now: Instant) -> bool {
        let granted = self.budget.try_withdraw(now, || self.handles().totals().0);
        if granted {
            self.hedges.fetch_add(1, Ordering::Relaxed);
            record!(self.metrics, |m| m.hedge.increment(1));
        } else {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        granted
    }

    /// Counts the end of a request that waited: whether a hedge answered,
    /// how many failed attempts lost and how many were cancelled.
    pub(crate) fn finish(&self, hedge_won: bool, loser_errors: u64, cancelled: u64) {
        if hedge_won {
            self.wins.fetch_add(1, Ordering::Relaxed);
            record!(self.metrics, |m| m.wins.increment(1));
        }
        if loser_errors > 0 {
            self.loser_errors.fetch_add(loser_errors, Ordering::Relaxed);
        }
        if cancelled > 0 {
            self.cancelled.fetch_add(cancelled, Ordering::Relaxed);
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // Ids are never reused, so this is our entry.
        write(&REGISTRY).remove(&self.id);
    }
}

/// A service handle's own call counters (and its reference to the shared
/// state). Not `Clone`: each handle makes its own with [`Core::slot`],
/// which is what makes the plain load-and-store increments exact.
#[derive(Debug)]
pub(crate) struct Slot {
    core: Arc<Core>,
    counters: Arc<SlotCounters>,
}

impl Slot {
    /// Counts one call. Only this handle writes the counter, so a load and a
    /// store (no read-modify-write) lose nothing.
    #[inline]
    pub(crate) fn count_call(&mut self) {
        bump(&self.counters.calls);
        record!(self.core.metrics, |m| m.primary.increment(1));
    }

    /// Counts one call that may not be hedged.
    #[inline]
    pub(crate) fn count_ineligible(&mut self) {
        bump(&self.counters.ineligible);
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }
}

#[inline]
fn bump(counter: &AtomicU64) {
    let n = counter.load(Ordering::Relaxed);
    counter.store(n.wrapping_add(1), Ordering::Relaxed);
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut handles = self.core.handles();
        let (c, i) = handles.retired;
        handles.retired = (
            c.saturating_add(self.counters.calls.load(Ordering::Relaxed)),
            i.saturating_add(self.counters.ineligible.load(Ordering::Relaxed)),
        );
        if let Some(i) = handles
            .live
            .iter()
            .position(|s| Arc::ptr_eq(s, &self.counters))
        {
            handles.live.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            max_hedges: 1,
            delay: Duration::from_millis(10),
            percentile: Some(90.0),
            min_samples: 10,
            window: Duration::from_secs(10),
            budget_ratio: 0.1,
            budget_floor: 0,
        }
    }

    #[test]
    fn slots_sum_and_retire() {
        let core = Core::new(&config(), "hedge".into());
        let mut a = core.slot();
        let mut b = core.slot();
        a.count_call();
        b.count_call();
        b.count_ineligible();
        assert_eq!((core.stats().calls, core.stats().ineligible), (2, 1));
        drop(b);
        a.count_call();
        assert_eq!((core.stats().calls, core.stats().ineligible), (3, 1));
        assert_eq!(core.handles().live.len(), 1);
        let id = core.id();
        drop(core);
        assert!(Core::lookup(id).is_some(), "the slot keeps the state alive");
        drop(a);
        assert!(Core::lookup(id).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn learns_once_enough_samples() {
        let core = Core::new(&config(), "hedge".into());
        let now = Instant::now();
        for _ in 0..9 {
            core.record_latency(now, Duration::from_millis(3));
        }
        assert_eq!(core.learned_delay(), None);
        core.record_latency(now, Duration::from_millis(3));
        let d = core.learned_delay().expect("10 samples are enough");
        assert!(d >= Duration::from_millis(3) && d <= Duration::from_micros(3_500));
    }
}
