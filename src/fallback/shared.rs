//! The state every service made by one
//! [`FallbackLayer`](super::FallbackLayer) shares: the strategy, the hook,
//! the counters behind [`FallbackStats`], and how a response future finds
//! them without holding them.
//!
//! # Keeping the success path free of atomic read-modify-writes
//!
//! As in `retry`: a response future is `'static`, so holding the shared
//! state would mean an `Arc` clone and drop per call, two atomic
//! read-modify-writes, several times the cost of the layer itself. So:
//!
//! - **Calls are counted per service handle**: each handle owns a [`Slot`],
//!   a counter only it writes (plain load and store); [`Counters::calls`]
//!   sums the live slots and the counts of dropped ones.
//! - **Futures find the state by id**: a future holds the layer's id. Only
//!   when a call fails does it look the id up in a process-wide registry of
//!   weak references (the state is generic, so the registry holds it as
//!   `dyn Any` and the future downcasts it to the type it knows).

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use crate::sync::{lock, read, write};

/// A snapshot of a fallback layer's counters, from
/// [`FallbackLayer::stats`](super::FallbackLayer::stats) or
/// [`Fallback::stats`](super::Fallback::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackStats {
    /// Calls made through the layer's services.
    pub calls: u64,
    /// Calls whose primary failed and that the fallback answered (or tried
    /// to: a backup may fail too).
    pub fallbacks: u64,
    /// Fallback answers that were failures themselves (classified by the
    /// layer's classifier): a backup service that failed too, or a request
    /// a backup could not be sent because it was not replayable.
    pub fallback_failures: u64,
}

/// The non-generic counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fallbacks: AtomicU64,
    pub(crate) fallback_failures: AtomicU64,
    calls: Mutex<Calls>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::Instruments<crate::metrics::FallbackMetrics>>,
}

#[derive(Debug, Default)]
struct Calls {
    retired: u64,
    live: Vec<Arc<AtomicU64>>,
}

impl Counters {
    pub(crate) fn stats(&self) -> FallbackStats {
        let calls = {
            let calls = lock(&self.calls);
            calls.live.iter().fold(calls.retired, |sum, c| {
                sum.saturating_add(c.load(Ordering::Relaxed))
            })
        };
        FallbackStats {
            calls,
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            fallback_failures: self.fallback_failures.load(Ordering::Relaxed),
        }
    }

    /// A new call counter for a new service handle.
    pub(crate) fn slot(self: &Arc<Counters>) -> Slot {
        let counter = Arc::new(AtomicU64::new(0));
        lock(&self.calls).live.push(Arc::clone(&counter));
        Slot {
            counters: Arc::clone(self),
            counter,
        }
    }
}

/// A service handle's own call counter. Not `Clone`: each handle makes its
/// own, which is what makes the plain load-and-store increment exact.
#[derive(Debug)]
pub(crate) struct Slot {
    counters: Arc<Counters>,
    counter: Arc<AtomicU64>,
}

impl Slot {
    #[inline]
    pub(crate) fn count(&mut self) {
        let n = self.counter.load(Ordering::Relaxed);
        self.counter.store(n.wrapping_add(1), Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        if let Some(metrics) = &self.counters.metrics {
            metrics.with(|m| m.calls.increment(1));
        }
    }

    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut calls = lock(&self.counters.calls);
        calls.retired = calls
            .retired
            .saturating_add(self.counter.load(Ordering::Relaxed));
        if let Some(i) = calls
            .live
            .iter()
            .position(|c| Arc::ptr_eq(c, &self.counter))
        {
            calls.live.swap_remove(i);
        }
    }
}

type Entry = Weak<dyn Any + Send + Sync>;

/// Layer id to its shared state, for futures whose call failed. Entries
/// live exactly as long as their [`Shared`].
static REGISTRY: RwLock<BTreeMap<u64, Entry>> = RwLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The shared state of one layer: strategy `St`, hook `H`, counters.
pub(crate) struct Shared<St, H> {
    id: u64,
    pub(crate) strategy: St,
    pub(crate) hook: H,
    pub(crate) counters: Arc<Counters>,
}

impl<St, H> Shared<St, H>
where
    St: Send + Sync + 'static,
    H: Send + Sync + 'static,
{
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(strategy: St, hook: H, name: crate::trace::Name) -> Arc<Self> {
        let shared = Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            strategy,
            hook,
            counters: Arc::new(Counters {
                #[cfg(feature = "metrics")]
                metrics: Some(crate::metrics::Instruments::new(name)),
                ..Counters::default()
            }),
        });
        let any: Arc<dyn Any + Send + Sync> = shared.clone();
        write(&REGISTRY).insert(shared.id, Arc::downgrade(&any));
        shared
    }

    /// The state of layer `id`, if any handle to it is still alive.
    pub(crate) fn lookup(id: u64) -> Option<Arc<Self>> {
        let any = read(&REGISTRY).get(&id)?.upgrade()?;
        any.downcast::<Self>().ok()
    }
}

impl<St, H> Shared<St, H> {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl<St, H> Drop for Shared<St, H> {
    fn drop(&mut self) {
        // Ids are never reused, so this is our entry.
        write(&REGISTRY).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_sum_and_retire() {
        let counters = Arc::new(Counters::default());
        let mut a = counters.slot();
        let mut b = counters.slot();
        a.count();
        b.count();
        b.count();
        assert_eq!(counters.stats().calls, 3);
        drop(b);
        a.count();
        assert_eq!(counters.stats().calls, 4);
        assert_eq!(lock(&counters.calls).live.len(), 1);
    }

    #[test]
    fn registry_entries_live_as_long_as_the_state() {
        let shared = Shared::new(1_u8, (), "fallback".into());
        let id = shared.id();
        assert!(Shared::<u8, ()>::lookup(id).is_some_and(|s| Arc::ptr_eq(&s, &shared)));
        // Another type under the same id is not found.
        assert!(Shared::<u16, ()>::lookup(id).is_none());
        drop(shared);
        assert!(Shared::<u8, ()>::lookup(id).is_none());
        assert!(!read(&REGISTRY).contains_key(&id));
    }
}
