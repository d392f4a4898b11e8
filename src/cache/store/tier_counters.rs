//! Internal: what the remote tier counts, for
//! [`CacheStats`](crate::cache::CacheStats) and (feature `metrics`) the
//! `tower_patterns.cache.remote.*` metrics, labelled with the cache's
//! name. `tiered.rs` and the miss path call one method per event.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::trace::record;

/// A call to the remote store, for the errors counter's `op` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RemoteOp {
    /// `get`.
    Read,
    /// `lease`.
    Lease,
    /// `put`.
    Write,
    /// `release`.
    Release,
}

/// Tier-2 counters, read into [`CacheStats`](crate::cache::CacheStats).
pub(crate) struct RemoteCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    pub(crate) bad_entries: AtomicU64,
    pub(crate) too_large: AtomicU64,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Instruments<crate::metrics::CacheRemoteMetrics>,
}

impl RemoteCounters {
    /// Counters of the cache called `name`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(name: crate::trace::Name) -> Self {
        RemoteCounters {
            hits: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            bad_entries: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new(name),
        }
    }

    /// A miss of tier 1 answered by the remote tier.
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.hit.increment(1));
    }

    /// A miss of tier 1 that this replica loads (it holds the lease).
    pub(crate) fn miss(&self) {
        record!(self.metrics, |m| m.miss.increment(1));
    }

    /// A miss of tier 1 that went on without the remote tier.
    pub(crate) fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.fallback.increment(1));
    }

    /// A call to the remote store that failed.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn error(&self, op: RemoteOp) {
        record!(self.metrics, |m| match op {
            RemoteOp::Read => &m.read_errors,
            RemoteOp::Lease => &m.lease_errors,
            RemoteOp::Write => &m.write_errors,
            RemoteOp::Release => &m.release_errors,
        }
        .increment(1));
    }

    /// Counts a failed call and passes `value` through (for one-line
    /// `return` arms).
    pub(crate) fn failed<T>(&self, op: RemoteOp, value: T) -> T {
        self.error(op);
        value
    }

    /// A remote entry whose bytes did not decode.
    pub(crate) fn bad_entry(&self) {
        self.bad_entries.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.bad_entries.increment(1));
    }

    /// A response too large for the remote tier.
    pub(crate) fn too_large(&self) {
        self.too_large.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.too_large.increment(1));
    }
}
