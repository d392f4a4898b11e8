//! [`RateLimitStore`]: where a keyed limit keeps its cells. The in-memory
//! table implements it, and so can a store shared by replicas (Redis,
//! feature `redis`).

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use super::gcra::{Decision, Gcra};
use super::keyed::KeyTable;
use crate::BoxError;

/// A quota: `count` calls per `period`, `burst` of them at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub(crate) count: u32,
    pub(crate) period: Duration,
    pub(crate) burst: u32,
}

impl Quota {
    /// Calls per [`period`](Self::period).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period of the rate.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Calls allowed at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time between two calls at the steady rate (`period / count`,
    /// at least 1 ns).
    pub fn interval(&self) -> Duration {
        Gcra::new(self.count, self.period, self.burst).interval()
    }

    /// How far ahead of now a cell's theoretical arrival time may run
    /// (`interval * (burst - 1)`): the GCRA's burst tolerance.
    pub fn tolerance(&self) -> Duration {
        self.interval().saturating_mul(self.burst.max(1) - 1)
    }
}

/// A store's answer for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The slot is taken: the call goes after `wait` (zero: at once).
    Go {
        /// How long the call waits for its slot.
        wait: Duration,
    },
    /// Over the quota by more than the caller may wait: it would conform
    /// after `retry_after`.
    Refused {
        /// How long until a call would conform.
        retry_after: Duration,
    },
}

/// The future a [`RateLimitStore`] answers with.
pub type StoreFuture = Pin<Box<dyn Future<Output = Result<Admission, BoxError>> + Send>>;

/// Where a keyed rate limit keeps one GCRA cell per key.
///
/// [`acquire`](Self::acquire) takes a slot of `key`'s cell under `quota`
/// when the call would wait at most `max_wait` for it, and says how long
/// to wait; otherwise it takes nothing and says when a call would conform.
/// The in-memory store decides at once; a store shared by replicas (Redis)
/// decides on its server, with the server's clock, so replicas with
/// skewed clocks agree. An `Err` is the store failing (unreachable, timed
/// out): the layer then fails open or closed, as its builder says.
pub trait RateLimitStore<K>: Send + Sync + 'static {
    /// Takes a slot of `key`'s cell, waiting at most `max_wait`.
    fn acquire(&self, key: &K, quota: Quota, max_wait: Duration) -> StoreFuture;
}

/// The in-memory table as a store (the layer itself uses it directly,
/// without a boxed future).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct MemoryStore<K> {
    pub(crate) table: KeyTable<K>,
    origin: Instant,
}

#[cfg_attr(not(test), allow(dead_code))]
impl<K> MemoryStore<K> {
    pub(crate) fn new(table: KeyTable<K>) -> Self {
        MemoryStore {
            table,
            origin: Instant::now(),
        }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> RateLimitStore<K> for MemoryStore<K> {
    fn acquire(&self, key: &K, quota: Quota, max_wait: Duration) -> StoreFuture {
        let gcra = Gcra::new(quota.count, quota.period, quota.burst);
        let now = Instant::now()
            .saturating_duration_since(self.origin)
            .as_nanos() as u64;
        let max_wait = max_wait.as_nanos().min(u128::from(u64::MAX)) as u64;
        let admission = match self.table.acquire(&gcra, key.clone(), now, max_wait) {
            Decision::Take { wait, .. } => Admission::Go {
                wait: Duration::from_nanos(wait),
            },
            Decision::Refuse { wait } => Admission::Refused {
                retry_after: Duration::from_nanos(wait),
            },
        };
        Box::pin(std::future::ready(Ok(admission)))
    }
}
