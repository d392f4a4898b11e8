//! [`CacheLayer`] and its builder, [`CacheLayerBuilder`].

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_layer::Layer;

use super::core::{Cached, Core, Counters, Policy};
use super::handle::CacheHandle;
use super::key::{FnKey, KeyFn, Md5Json};
use super::service::Cache;
use super::stats::CacheStats;
use super::store::{AnyStore, MemoryStore, Store};
use crate::classify::DefaultClassify;
use crate::error::check;
use crate::ConfigError;

/// The most entries the in-memory store can be asked to hold.
const MAX_ENTRIES: usize = (u32::MAX / 2) as usize;
/// The in-memory store's bound when `max_entries` is not set.
const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// A [`Layer`] that caches the responses of the service it wraps.
///
/// Made by [`CacheLayer::builder`]. Cloning the layer, and every service
/// it makes, shares one cache and one set of statistics; a fresh cache
/// comes only from a fresh `build()`.
///
/// `Req` and `Res` are the request and response types of the wrapped
/// service (usually inferred); `KF` makes keys of type `K` ([`Md5Json`]
/// and `String` unless [`key_fn`](CacheLayerBuilder::key_fn) was given)
/// and `C` decides what may be stored ([`DefaultClassify`]: every `Ok`).
pub struct CacheLayer<Req, Res, K = String, KF = Md5Json, C = DefaultClassify> {
    core: Arc<Core<K, Res>>,
    policy: Arc<Policy<KF, C>>,
    _req: PhantomData<fn(Req)>,
}

impl<Req, Res> CacheLayer<Req, Res, String, Md5Json, DefaultClassify> {
    /// A builder with the defaults: 5-minute TTL, at most 10,000 entries,
    /// no stale serving, errors not cached, MD5-of-JSON keys, every `Ok`
    /// stored.
    pub fn builder() -> CacheLayerBuilder<Req, Res, Md5Json, DefaultClassify> {
        CacheLayerBuilder {
            ttl: Duration::from_secs(300),
            max_entries: None,
            swr: Duration::ZERO,
            sie: Duration::ZERO,
            error_ttl: None,
            key_fn: Md5Json,
            classify: DefaultClassify,
            _types: PhantomData,
            name: crate::trace::Name::Borrowed("cache"),
        }
    }
}

impl<Req, Res, K, KF, C> CacheLayer<Req, Res, K, KF, C> {
    /// A handle on this layer's cache: statistics, invalidation, cleanup.
    pub fn handle(&self) -> CacheHandle<K, Res> {
        CacheHandle::new(self.core.clone())
    }

    /// A snapshot of this layer's cache counters (shared with every
    /// service it made); the same as `self.handle().stats()`.
    pub fn stats(&self) -> CacheStats
    where
        K: Hash + Eq + Send + Sync,
        Res: Clone + Send + Sync,
    {
        self.core.stats()
    }

    /// The key `req` is cached under (`None`: not cacheable), for use
    /// with [`CacheHandle::invalidate`].
    pub fn key_of(&self, req: &Req) -> Option<K>
    where
        KF: KeyFn<Req, Key = K>,
    {
        self.policy.key_fn.key(req)
    }
}

impl<Req, Res, K, KF, C> Clone for CacheLayer<Req, Res, K, KF, C> {
    fn clone(&self) -> Self {
        CacheLayer {
            core: self.core.clone(),
            policy: self.policy.clone(),
            _req: PhantomData,
        }
    }
}

impl<Req, Res, K, KF, C> fmt::Debug for CacheLayer<Req, Res, K, KF, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayer")
            .field("ttl", &self.core.ttl)
            .field("stale_while_revalidate", &self.core.swr)
            .field("stale_if_error", &self.core.sie)
            .field("cache_errors", &self.core.error_ttl)
            .finish_non_exhaustive()
    }
}

// `S: Service<Req, Response = Res>` costs nothing at run time; it lets the
// compiler learn `Res` from the inner service, so that a response that is
// not `Clone` is reported at `build()` as "`Response<Body>: Clone` is not
// satisfied", rather than only as "the method `oneshot` exists ... but its
// trait bounds were not satisfied" on the caller's method.
impl<S, Req, Res, K, KF, C> Layer<S> for CacheLayer<Req, Res, K, KF, C>
where
    S: tower_service::Service<Req, Response = Res>,
    KF: KeyFn<Req, Key = K>,
{
    type Service = Cache<S, Req, Res, KF, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Cache::new(inner, self.core.clone(), self.policy.clone())
    }
}

/// Builds a [`CacheLayer`]; see [`CacheLayer::builder`] for the defaults.
#[must_use = "call .build() to get a CacheLayer"]
pub struct CacheLayerBuilder<Req, Res, KF = Md5Json, C = DefaultClassify> {
    ttl: Duration,
    /// `None`: not set (the in-memory default; a custom store's own bound).
    max_entries: Option<usize>,
    swr: Duration,
    sie: Duration,
    error_ttl: Option<Duration>,
    key_fn: KF,
    classify: C,
    _types: PhantomData<fn(Req) -> Res>,
    name: crate::trace::Name,
}

impl<Req, Res, KF, C> CacheLayerBuilder<Req, Res, KF, C> {
    /// The instance name every metric of this cache carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"cache"`.
    #[must_use = "a setter returns the changed builder"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl<Req, Res, KF, C> fmt::Debug for CacheLayerBuilder<Req, Res, KF, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheLayerBuilder")
            .field("ttl", &self.ttl)
            .field(
                "max_entries",
                &self.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            )
            .field("stale_while_revalidate", &self.swr)
            .field("stale_if_error", &self.sie)
            .field("cache_errors", &self.error_ttl)
            .finish_non_exhaustive()
    }
}

impl<Req, Res, KF, C> CacheLayerBuilder<Req, Res, KF, C> {
    /// How long a stored response stays fresh (default 5 minutes; more
    /// than zero). `Duration::MAX` means no limit: fresh until evicted.
    #[must_use = "a setter returns the changed builder"]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most entries kept (default 10,000; at least 1). When full, the
    /// in-memory store evicts by S3-FIFO, which keeps frequently used keys.
    ///
    /// Applies to [`build`](Self::build) only: a store given to
    /// [`build_with_store`](Self::build_with_store) keeps its own bound.
    #[must_use = "a setter returns the changed builder"]
    pub fn max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = Some(max_entries);
        self
    }

    /// For this long after an entry goes stale, serve it at once and
    /// refresh it in the background (one refresh per key at a time).
    /// Zero (the default) turns this off; `Duration::MAX` means no limit.
    #[must_use = "a setter returns the changed builder"]
    pub fn stale_while_revalidate(mut self, window: Duration) -> Self {
        self.swr = window;
        self
    }

    /// For this long after an entry goes stale, serve it when the inner
    /// call fails (the classifier says [`Outcome::Failure`](crate::classify::Outcome::Failure))
    /// instead of the failure. Zero (the default) turns this off;
    /// `Duration::MAX` means no limit.
    #[must_use = "a setter returns the changed builder"]
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.sie = window;
        self
    }

    /// Also cache what is not a success (errors, and responses the
    /// classifier calls failures or ignores, like an HTTP 404) for `ttl`
    /// (more than zero; `Duration::MAX` means no limit). Off by default:
    /// only successes are stored.
    ///
    /// Cached errors reach every caller as [`SharedError`](super::SharedError).
    #[must_use = "a setter returns the changed builder"]
    pub fn cache_errors(mut self, ttl: Duration) -> Self {
        self.error_ttl = Some(ttl);
        self
    }

    /// Key requests with `f` instead of MD5-of-JSON: the fast choice when
    /// a request has a natural key.
    ///
    /// ```
    /// use tower_patterns::cache::CacheLayer;
    ///
    /// struct GetUser {
    ///     id: u64,
    /// }
    /// let layer = CacheLayer::<GetUser, String>::builder()
    ///     .key_fn(|req: &GetUser| req.id)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.key_of(&GetUser { id: 7 }), Some(7));
    /// ```
    #[must_use = "a setter returns the changed builder"]
    pub fn key_fn<F, K>(self, f: F) -> CacheLayerBuilder<Req, Res, FnKey<F>, C>
    where
        F: Fn(&Req) -> K,
        K: Clone + Eq + Hash + Send + Sync + 'static,
    {
        self.key(FnKey(f))
    }

    /// Key requests with any [`KeyFn`].
    #[must_use = "a setter returns the changed builder"]
    pub fn key<KF2: KeyFn<Req>>(self, key_fn: KF2) -> CacheLayerBuilder<Req, Res, KF2, C> {
        CacheLayerBuilder {
            ttl: self.ttl,
            max_entries: self.max_entries,
            swr: self.swr,
            sie: self.sie,
            error_ttl: self.error_ttl,
            key_fn,
            classify: self.classify,
            _types: PhantomData,
            name: self.name,
        }
    }

    /// Decide with `classify` what may be stored: only
    /// [`Outcome::Success`](crate::classify::Outcome::Success) is (default:
    /// [`DefaultClassify`], every `Ok`). With
    /// [`HttpClassify`](crate::classify::HttpClassify), 5xx, 429 and 408
    /// responses are failures and other 4xx are ignored: neither is stored.
    #[must_use = "a setter returns the changed builder"]
    pub fn classify<C2>(self, classify: C2) -> CacheLayerBuilder<Req, Res, KF, C2> {
        CacheLayerBuilder {
            ttl: self.ttl,
            max_entries: self.max_entries,
            swr: self.swr,
            sie: self.sie,
            error_ttl: self.error_ttl,
            key_fn: self.key_fn,
            classify,
            _types: PhantomData,
            name: self.name,
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        // No upper bound: a duration too long for the clock saturates to
        // "never" (see the crate docs, "Durations").
        check::nonzero("cache", "ttl", self.ttl)?;
        if let Some(t) = self.error_ttl {
            check::nonzero("cache", "cache_errors", t)?;
        }
        Ok(())
    }

    /// Builds the layer with the in-memory [`MemoryStore`].
    ///
    /// `Res` must be `Clone` (every hit gets a clone): a streaming HTTP
    /// body ([`fetch::Body`](crate::fetch::Body), hyper's `Incoming`) is
    /// not, so to cache raw HTTP responses put
    /// [`fetch::CollectLayer`](crate::fetch::CollectLayer) between the
    /// cache and the client. (Over such a client this method is where the
    /// compiler says "`Response<Body>: Clone` is not satisfied".)
    ///
    /// Fails with a [`ConfigError`] naming the field when `ttl` or
    /// `cache_errors` is zero, or `max_entries` is 0 or over 2^31 - 1.
    pub fn build(self) -> Result<CacheLayer<Req, Res, KF::Key, KF, C>, ConfigError>
    where
        KF: KeyFn<Req>,
        Res: Clone + Send + Sync + 'static,
    {
        let max_entries = check::in_range(
            "cache",
            "max_entries",
            self.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            1,
            MAX_ENTRIES,
        )?;
        let store = AnyStore::Memory(MemoryStore::new(max_entries));
        self.build_any(store)
    }

    /// Builds the layer over a [`Store`] of your own, which keeps its own
    /// bound.
    ///
    /// Fails with a [`ConfigError`] when a duration is out of range, or
    /// when [`max_entries`](Self::max_entries) was set: it applies only to
    /// the in-memory store of [`build`](Self::build).
    pub fn build_with_store<St>(
        self,
        store: St,
    ) -> Result<CacheLayer<Req, Res, KF::Key, KF, C>, ConfigError>
    where
        KF: KeyFn<Req>,
        St: Store<KF::Key, Cached<Res>> + 'static,
    {
        if let Some(n) = self.max_entries {
            return Err(ConfigError::new(
                "cache",
                "max_entries",
                n.to_string(),
                "applies only to the in-memory store of build(); bound your own store instead",
            ));
        }
        self.build_any(AnyStore::Custom(Box::new(store)))
    }

    fn build_any(
        self,
        store: AnyStore<KF::Key, Cached<Res>>,
    ) -> Result<CacheLayer<Req, Res, KF::Key, KF, C>, ConfigError>
    where
        KF: KeyFn<Req>,
    {
        self.check()?;
        Ok(CacheLayer {
            core: Arc::new(Core {
                ttl: self.ttl,
                swr: self.swr,
                sie: self.sie,
                error_ttl: self.error_ttl,
                store,
                flights: Mutex::new(HashMap::new()),
                counters: Counters::new(self.name),
            }),
            policy: Arc::new(Policy {
                key_fn: self.key_fn,
                classify: self.classify,
            }),
            _req: PhantomData,
        })
    }
}
