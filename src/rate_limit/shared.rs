//! The state every service of one [`RateLimitLayer`](super::RateLimitLayer)
//! shares: the quota, the global cell or the key table, the clock's origin
//! and the counters behind [`RateLimitStats`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::gcra::{Decision, Gcra};
use super::keyed::KeyTable;
use super::store::{Quota, RateLimitStore};
use crate::rejection::RateLimited;
use crate::sync::{thread_stripe, Padded};
use crate::trace::record;

const STRIPES: usize = 8;

/// The key function of a keyed limit, as set by
/// [`RateLimitLayerBuilder::key_fn`](super::RateLimitLayerBuilder::key_fn); a type parameter of keyed layers and
/// services.
#[derive(Clone, Copy)]
pub struct ByKey<F>(pub(crate) F);

impl<F> fmt::Debug for ByKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ByKey(..)")
    }
}

mod sealed {
    /// One quota for all (`()`) or one per key ([`ByKey`](super::ByKey)).
    pub trait Keying {
        const KEYED: bool;
    }
}

pub(crate) use sealed::Keying;

impl Keying for () {
    const KEYED: bool = false;
}

impl<F> Keying for ByKey<F> {
    const KEYED: bool = true;
}

/// A snapshot of a rate limit's counters, from
/// [`RateLimitLayer::stats`](super::RateLimitLayer::stats) or
/// [`RateLimit::stats`](super::RateLimit::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Calls let through (after waiting or not).
    pub allowed: u64,
    /// Calls that waited for their slot before going through.
    pub waited: u64,
    /// Calls refused with [`RateLimited`].
    pub limited: u64,
    /// Keys in the in-process table now (keyed limits without a
    /// [`store`](super::RateLimitLayerBuilder::store); 0 otherwise).
    pub keys: u64,
    /// Active keys dropped to keep the table within `max_keys` (keyed
    /// limits); idle keys are dropped without counting, as forgetting them
    /// changes nothing.
    pub evicted: u64,
    /// Calls the [`store`](super::RateLimitLayerBuilder::store) failed to
    /// decide (unreachable, timed out); they went through or failed as
    /// the builder's fail mode says.
    pub store_errors: u64,
}

pub(crate) struct Shared<K> {
    /// A store shared by replicas, deciding instead of `table`.
    pub(crate) store: Option<Box<dyn RateLimitStore<K>>>,
    /// On a store error: let the call through (`true`) or fail it.
    pub(crate) fail_open: bool,
    store_errors: AtomicU64,
    pub(crate) gcra: Gcra,
    pub(crate) quota: Quota,
    /// Longest wait in nanoseconds; 0 refuses at once.
    pub(crate) max_wait: u64,
    origin: Instant,
    cell: Padded<AtomicU64>,
    pub(crate) table: Option<KeyTable<K>>,
    allowed: Box<[Padded<AtomicU64>]>,
    waited: AtomicU64,
    limited: AtomicU64,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments<crate::metrics::RateLimitMetrics>,
}

impl<K> Shared<K> {
    pub(crate) fn new(quota: Quota, max_wait: Duration, table: Option<KeyTable<K>>) -> Self {
        Shared {
            store: None,
            fail_open: true,
            store_errors: AtomicU64::new(0),
            gcra: Gcra::new(quota.count, quota.period, quota.burst),
            quota,
            max_wait: max_wait.as_nanos().min(u128::from(u64::MAX)) as u64,
            origin: Instant::now(),
            cell: Padded(AtomicU64::new(0)),
            table,
            allowed: (0..STRIPES).map(|_| Padded(AtomicU64::new(0))).collect(),
            waited: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new("rate_limit".into()),
        }
    }

    /// Nanoseconds since the origin, on tokio's clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.origin)
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64
    }

    /// Takes a slot of the one global cell.
    #[inline]
    pub(crate) fn acquire(&self) -> Decision {
        self.gcra.acquire(&self.cell, self.now(), self.max_wait)
    }

    /// Gives back a global slot taken at `taken` (a waiter that gave up).
    pub(crate) fn give_back(&self, taken: u64) {
        self.gcra.give_back(&self.cell, taken);
    }

    /// The error for a call that would have waited `wait` ns.
    #[cold]
    pub(crate) fn refused(&self, wait: u64) -> RateLimited {
        self.limited.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.limited.increment(1));
        RateLimited {
            retry_after: Duration::from_nanos(wait),
            count: self.quota.count,
            period: self.quota.period,
        }
    }

    #[inline]
    pub(crate) fn count_allowed(&self) {
        self.allowed[thread_stripe() % STRIPES].fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.allowed.increment(1));
    }

    #[cold]
    pub(crate) fn count_store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    pub(crate) fn count_waited(&self) {
        self.waited.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| m.waited.increment(1));
    }

    pub(crate) fn stats(&self) -> RateLimitStats
    where
        K: std::hash::Hash + Eq + Clone,
    {
        RateLimitStats {
            allowed: self.allowed.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            waited: self.waited.load(Ordering::Relaxed),
            limited: self.limited.load(Ordering::Relaxed),
            keys: self.table.as_ref().map_or(0, |t| t.len() as u64),
            evicted: self.table.as_ref().map_or(0, KeyTable::evicted),
            store_errors: self.store_errors.load(Ordering::Relaxed),
        }
    }
}
