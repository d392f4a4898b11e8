//! [`RateLimitStore`]: where a keyed limit keeps its cells. The in-memory
//! table implements it, and so can a store shared by replicas (Redis,
//! feature `redis`).

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::gcra::{Decision, Gcra};
use super::keyed::KeyTable;
use crate::error::check;
use crate::{BoxError, ConfigError};

/// A quota: `count` calls per `period`, `burst` of them at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Quota {
    pub(crate) count: u32,
    pub(crate) period: Duration,
    pub(crate) burst: u32,
}

impl Quota {
    /// `count` calls per `period`, `burst` of them at once, for calling a
    /// [`RateLimitStore`] directly (a layer builds its own from
    /// [`rate`](super::RateLimitLayerBuilder::rate)).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when `count` or `burst` is 0 or `period` is zero.
    pub fn new(count: u32, period: Duration, burst: u32) -> Result<Quota, ConfigError> {
        const QUOTA: &str = "rate_limit::Quota";
        check::at_least(QUOTA, "count", count, 1)?;
        check::nonzero(QUOTA, "period", period)?;
        check::at_least(QUOTA, "burst", burst, 1)?;
        Ok(Quota {
            count,
            period,
            burst,
        })
    }

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

/// The in-memory key table as a [`RateLimitStore`]: one process's memory,
/// bounded to `max_keys` keys like a keyed layer's own table.
///
/// A keyed layer without a [`store`](super::RateLimitLayerBuilder::store)
/// already keeps its keys this way (deciding without a boxed future);
/// give layers one `MemoryStore` (it is cheap to clone, clones share the
/// table) to share one set of quotas between them in one process.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::rate_limit::{Admission, MemoryStore, Quota, RateLimitStore};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower_patterns::BoxError> {
/// let store = MemoryStore::new(10_000);
/// let quota = Quota::new(2, Duration::from_secs(1), 1)?;
/// assert_eq!(store.acquire(&"tenant-a", quota, Duration::ZERO).await?, Admission::Go { wait: Duration::ZERO });
/// assert_eq!(
///     store.acquire(&"tenant-a", quota, Duration::ZERO).await?,
///     Admission::Refused { retry_after: Duration::from_millis(500) }
/// );
/// # Ok(())
/// # }
/// ```
pub struct MemoryStore<K> {
    table: Arc<KeyTable<K>>,
    origin: Instant,
}

impl<K> Clone for MemoryStore<K> {
    fn clone(&self) -> Self {
        MemoryStore {
            table: Arc::clone(&self.table),
            origin: self.origin,
        }
    }
}

impl<K> std::fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> MemoryStore<K> {
    /// A store of at most `max_keys` keys (rounded up to a multiple of 16;
    /// 0 is taken as 1).
    pub fn new(max_keys: usize) -> Self {
        MemoryStore {
            table: Arc::new(KeyTable::new(max_keys.max(1))),
            origin: Instant::now(),
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
