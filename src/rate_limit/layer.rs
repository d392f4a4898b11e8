//! [`RateLimitLayer`] and its builder.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::keyed::KeyTable;
use super::service::RateLimit;
use super::shared::{ByKey, Keying, RateLimitStats, Shared};
use super::store::{Quota, RateLimitStore};
use crate::error::check;
use crate::ConfigError;

const COMPONENT: &str = "rate_limit";
const DEFAULT_MAX_KEYS: usize = 100_000;

/// Applies [`RateLimit`] to services: at most `count` calls start per
/// `period`, `burst` of them at once, by the generic cell rate algorithm.
///
/// Cheap to clone. Every service made by one layer (and every clone of
/// those) shares one quota; a new layer starts a fresh one. With a
/// [`key_fn`](RateLimitLayerBuilder::key_fn) each key has a quota of its
/// own, in a table bounded by
/// [`max_keys`](RateLimitLayerBuilder::max_keys).
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::rate_limit::RateLimitLayer;
///
/// // 100 calls a second, 10 at once; a call waits at most 50 ms for its slot.
/// let layer = RateLimitLayer::builder()
///     .rate(100, Duration::from_secs(1))
///     .burst(10)
///     .max_wait(Duration::from_millis(50))
///     .build()
///     .expect("valid rate limit");
/// assert_eq!(layer.stats().allowed, 0);
///
/// let err = RateLimitLayer::builder().rate(0, Duration::from_secs(1)).build().unwrap_err();
/// assert_eq!(err.field(), "rate.count");
/// ```
pub struct RateLimitLayer<K = (), F = ()> {
    shared: Arc<Shared<K>>,
    key_fn: F,
}

impl<K, F: Clone> Clone for RateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
            key_fn: self.key_fn.clone(),
        }
    }
}

impl<K, F> fmt::Debug for RateLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("quota", &self.shared.quota)
            .field("max_wait_ns", &self.shared.max_wait)
            .field("keyed", &self.shared.table.is_some())
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A builder. Nothing is set but the defaults: a `burst` equal to the
    /// count, calls that wait up to one `period` for their slot, one quota
    /// for every call. [`rate`](RateLimitLayerBuilder::rate) must be set.
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            store: None,
            fail_open: true,
            rate: None,
            burst: None,
            max_wait: None,
            max_keys: None,
            key_fn: (),
            _key: std::marker::PhantomData,
            name: crate::trace::Name::Borrowed("rate_limit"),
        }
    }

    /// Sugar: `count` calls a second, all of them at once if they come at
    /// once, a call waiting up to a second for its slot. A `count` of 0 is
    /// treated as 1, so this never fails.
    pub fn per_second(count: u32) -> Self {
        let quota = Quota {
            count: count.max(1),
            period: Duration::from_secs(1),
            burst: count.max(1),
        };
        RateLimitLayer {
            shared: Arc::new(Shared::new(quota, quota.period, None)),
            key_fn: (),
        }
    }
}

impl<K: Hash + Eq + Clone, F> RateLimitLayer<K, F> {
    /// A snapshot of the counters shared by every service this layer made.
    pub fn stats(&self) -> RateLimitStats {
        self.shared.stats()
    }
}

impl<S, K, F: Clone> Layer<S> for RateLimitLayer<K, F> {
    type Service = RateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.shared), self.key_fn.clone())
    }
}

/// Builds a [`RateLimitLayer`]; see [`RateLimitLayer::builder`] for the
/// defaults. Nothing is checked until [`build`](Self::build).
#[must_use = "call .build() to get a RateLimitLayer"]
pub struct RateLimitLayerBuilder<K = (), F = ()> {
    store: Option<Box<dyn RateLimitStore<K>>>,
    fail_open: bool,
    rate: Option<(u32, Duration)>,
    burst: Option<u32>,
    max_wait: Option<Duration>,
    max_keys: Option<usize>,
    key_fn: F,
    _key: std::marker::PhantomData<fn() -> K>,
    name: crate::trace::Name,
}

impl<K, F> fmt::Debug for RateLimitLayerBuilder<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("max_wait", &self.max_wait)
            .field("max_keys", &self.max_keys)
            .field("store", &self.store.is_some())
            .field("fail_open", &self.fail_open)
            .finish_non_exhaustive()
    }
}

impl<K, F> RateLimitLayerBuilder<K, F> {
    /// The steady rate: `count` calls per `period` (both more than zero).
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn rate(mut self, count: u32, period: Duration) -> Self {
        self.rate = Some((count, period));
        self
    }

    /// How many calls may start at once after a quiet spell (at least 1;
    /// default: the rate's count).
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Calls over the quota wait for their slot, in order, but never longer
    /// than `max_wait`: a call that would wait longer fails at once with
    /// [`RateLimited`](super::RateLimited). Default: one period.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Calls over the quota fail at once with
    /// [`RateLimited`](super::RateLimited), which says when to retry (the
    /// same as `max_wait(Duration::ZERO)`). What a server wants.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn reject(self) -> Self {
        self.max_wait(Duration::ZERO)
    }

    /// A quota per key: `key_fn` reads the key (a client address, an API
    /// key, a tenant) from each request. Keys live in a table of at most
    /// [`max_keys`](Self::max_keys); one key's flood never delays another.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn key_fn<Req, K2, F2>(self, key_fn: F2) -> RateLimitLayerBuilder<K2, ByKey<F2>>
    where
        F2: Fn(&Req) -> K2,
    {
        RateLimitLayerBuilder {
            store: None,
            fail_open: self.fail_open,
            rate: self.rate,
            burst: self.burst,
            max_wait: self.max_wait,
            max_keys: self.max_keys,
            key_fn: ByKey(key_fn),
            _key: std::marker::PhantomData,
            name: self.name,
        }
    }

    /// The most keys a keyed limit remembers (default 100,000; rounded up
    /// to a multiple of 16). Idle keys, whose whole burst is available
    /// again, are forgotten first, which changes no decision; past the
    /// bound, the keys nearest to idle are. Only with a `key_fn`; with a
    /// [`store`](Self::store) the store keeps (and bounds) the keys.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = Some(max_keys);
        self
    }

    /// Keeps the keyed cells in `store` instead of this process's memory:
    /// a store shared by replicas (`RedisStore`, feature
    /// `redis`) makes the quota global. Only with a `key_fn` (for
    /// one quota shared by every replica, return a constant key). A
    /// cancelled waiter does not give its slot back to a shared store.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn store(mut self, store: impl RateLimitStore<K>) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// When the store fails (unreachable, timed out), let the call through
    /// unlimited. The default: a rate limit that stops all traffic while
    /// its store is down would turn a store outage into a full one.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn fail_open(mut self) -> Self {
        self.fail_open = true;
        self
    }

    /// When the store fails, fail the call with the store's error (for
    /// example the store's own circuit breaker's
    /// [`Open`](crate::circuit_breaker::Open), which
    /// [`respond`](crate::respond) answers with 503): for quotas that must
    /// never be exceeded.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn fail_closed(mut self) -> Self {
        self.fail_open = false;
        self
    }

    fn quota(&self) -> Result<(Quota, Duration), ConfigError> {
        let Some((count, period)) = self.rate else {
            return Err(ConfigError::new(
                COMPONENT,
                "rate",
                "unset",
                "must be set: rate(count, period)",
            ));
        };
        check::at_least(COMPONENT, "rate.count", count, 1)?;
        check::nonzero(COMPONENT, "rate.period", period)?;
        let burst = self.burst.unwrap_or(count);
        check::at_least(COMPONENT, "burst", burst, 1)?;
        let quota = Quota {
            count,
            period,
            burst,
        };
        Ok((quota, self.max_wait.unwrap_or(period)))
    }
}

impl<K: Hash + Eq + Clone, F: Keying> RateLimitLayerBuilder<K, F> {
    /// The instance name every metric of this limit carries as its
    /// `name` label (feature `metrics`; see [`crate::metrics`]). Default: `"rate_limit"`.
    #[must_use = "call .build() to get a RateLimitLayer"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Checks every value and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `rate` (unset), `rate.count`
    /// (0), `rate.period` (zero), `burst` (0), `max_keys` (0, or set
    /// without a `key_fn`), `store` (set without a `key_fn`).
    pub fn build(self) -> Result<RateLimitLayer<K, F>, ConfigError> {
        let (quota, max_wait) = self.quota()?;
        let table = if F::KEYED {
            let max_keys = self.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
            check::at_least(COMPONENT, "max_keys", max_keys, 1)?;
            // A store keeps the cells: no table of our own to fill.
            self.store.is_none().then(|| KeyTable::new(max_keys))
        } else if self.store.is_some() {
            return Err(ConfigError::new(
                COMPONENT,
                "store",
                "set",
                "applies only to a keyed limit (set key_fn; a constant key shares one quota)",
            ));
        } else if self.max_keys.is_some() {
            return Err(ConfigError::new(
                COMPONENT,
                "max_keys",
                "set",
                "applies only to a keyed limit (set key_fn)",
            ));
        } else {
            None
        };
        let mut shared = Shared::new(quota, max_wait, table);
        shared.store = self.store;
        shared.fail_open = self.fail_open;
        #[cfg(feature = "metrics")]
        {
            shared.metrics = crate::metrics::Instruments::new(self.name);
        }
        Ok(RateLimitLayer {
            shared: Arc::new(shared),
            key_fn: self.key_fn,
        })
    }
}
