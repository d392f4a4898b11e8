//! [`CacheLayer`] and its builder, [`CacheLayerBuilder`].

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_layer::Layer;

use super::codec::Codec;
use super::core::{Cached, Core, Counters, Policy};
use super::flight::Flights;
use super::handle::CacheHandle;
use super::key::{FnKey, KeyFn, Md5Json};
use super::service::Cache;
use super::stats::CacheStats;
use super::store::hash::FoldState;
use super::store::tiered::{Tier2, Tier2Config};
use super::store::{AnyStore, MemoryStore, RemoteListener, RemoteStore, Store};
use crate::classify::DefaultClassify;
use crate::error::check;
use crate::ConfigError;

/// The most entries the in-memory store can be asked to hold.
const MAX_ENTRIES: usize = (u32::MAX / 2) as usize;
/// The in-memory store's bound when `max_entries` is not set.
const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// The remote tier's defaults.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
const DEFAULT_MAX_ENTRY_BYTES: usize = 1 << 20;

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
            remote: RemoteSettings::default(),
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
    remote: RemoteSettings,
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

/// The settings that apply with a remote tier only.
#[derive(Clone, Copy, Debug)]
struct RemoteSettings {
    lease_ttl: Duration,
    max_entry_bytes: usize,
    local_ttl: Duration,
}

impl Default for RemoteSettings {
    fn default() -> Self {
        RemoteSettings {
            lease_ttl: DEFAULT_LEASE_TTL,
            max_entry_bytes: DEFAULT_MAX_ENTRY_BYTES,
            local_ttl: Duration::MAX,
        }
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
    /// Applies to [`build`](Self::build) and to the memory tier of
    /// [`build_with_remote`](Self::build_with_remote): a store given to
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
            remote: self.remote,
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
            remote: self.remote,
            key_fn: self.key_fn,
            classify,
            _types: PhantomData,
            name: self.name,
        }
    }

    /// With a remote tier: how long a replica may hold a key's lease while
    /// it loads (default 10 s; more than zero). Concurrent misses for the
    /// key on other replicas wait for it (woken when it is released), so
    /// make it longer than the inner call's longest time: a lease that
    /// expires mid-load lets a second replica load too. A replica that dies
    /// holding it delays the key this long at most.
    #[must_use = "a setter returns the changed builder"]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.remote.lease_ttl = ttl;
        self
    }

    /// With a remote tier: the largest entry written to it, in encoded
    /// bytes (default 1 MiB; at least 64). Larger responses are still served
    /// and kept in memory, but not shared
    /// ([`CacheStats::remote_too_large`](super::CacheStats::remote_too_large)).
    #[must_use = "a setter returns the changed builder"]
    pub fn max_entry_bytes(mut self, bytes: usize) -> Self {
        self.remote.max_entry_bytes = bytes;
        self
    }

    /// With a remote tier: the longest an entry stays fresh in memory
    /// before the remote tier is read again (default: no limit, the time
    /// the entry has left). Invalidations reach every replica at once over
    /// the remote store's broadcast; this bounds how long a replica that
    /// missed one (a lost connection) can serve the old value.
    #[must_use = "a setter returns the changed builder"]
    pub fn local_ttl(mut self, ttl: Duration) -> Self {
        self.remote.local_ttl = ttl;
        self
    }

    /// The in-memory store, bounded by `max_entries`.
    fn memory_store<K, V>(&self) -> Result<MemoryStore<K, V>, ConfigError>
    where
        K: Hash + Eq + Send + Sync,
        V: Clone + Send + Sync,
    {
        let max_entries = check::in_range(
            "cache",
            "max_entries",
            self.max_entries.unwrap_or(DEFAULT_MAX_ENTRIES),
            1,
            MAX_ENTRIES,
        )?;
        Ok(MemoryStore::new(max_entries))
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
        let store = AnyStore::Memory(self.memory_store()?);
        self.build_any(store, None)
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
        self.build_any(AnyStore::Custom(Box::new(store)), None)
    }

    /// Builds the layer with two tiers: the in-memory store (tier 1,
    /// bounded by [`max_entries`](Self::max_entries)) in front of `remote`
    /// (tier 2, shared by replicas), whose values `codec` writes.
    ///
    /// A tier-1 hit costs what it costs without `remote`. A tier-1 miss
    /// reads `remote` and fills tier 1 with the time the entry has left; a
    /// miss in both takes the key's lease, so that concurrent misses on
    /// every replica make one inner call (see [`lease_ttl`](Self::lease_ttl)).
    /// Expiry is stored with the entry in wall-clock time, and `remote`
    /// keeps an entry for the TTL plus the stale windows, so stale serving
    /// works across replicas. [`CacheHandle::invalidate`](super::CacheHandle::invalidate)
    /// and [`clear`](super::CacheHandle::clear) reach every replica. Errors
    /// cached by [`cache_errors`](Self::cache_errors) stay in memory.
    ///
    /// When `remote` fails, misses go to the inner service (counted in
    /// [`CacheStats::remote_fallbacks`](super::CacheStats::remote_fallbacks)).
    ///
    /// Keys must print and parse back (`Display` + `FromStr`, as `String`
    /// and the integers do): the remote key is the printed one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::cache::{CacheLayer, JsonCodec, Lease, LeaseToken};
    /// # use bytes::Bytes;
    /// # use tower_patterns::cache::{RemoteFuture, RemoteListener, RemoteStore};
    /// # struct Nothing;
    /// # impl RemoteStore for Nothing {
    /// #     fn get<'a>(&'a self, _: &'a str) -> RemoteFuture<'a, Option<Bytes>> { Box::pin(async { Ok(None) }) }
    /// #     fn put<'a>(&'a self, _: &'a str, _: Bytes, _: Option<Duration>) -> RemoteFuture<'a, ()> { Box::pin(async { Ok(()) }) }
    /// #     fn delete<'a>(&'a self, _: &'a str) -> RemoteFuture<'a, ()> { Box::pin(async { Ok(()) }) }
    /// #     fn clear(&self) -> RemoteFuture<'_, ()> { Box::pin(async { Ok(()) }) }
    /// #     fn lease<'a>(&'a self, _: &'a str, _: Duration) -> RemoteFuture<'a, Lease> { Box::pin(async { Ok(Lease::Acquired(LeaseToken::random())) }) }
    /// #     fn release<'a>(&'a self, _: &'a str, _: LeaseToken) -> RemoteFuture<'a, ()> { Box::pin(async { Ok(()) }) }
    /// #     fn listen(&self, _: RemoteListener) {}
    /// # }
    ///
    /// let layer = CacheLayer::<u64, Vec<String>>::builder()
    ///     .key_fn(|id: &u64| *id)
    ///     .lease_ttl(Duration::from_secs(2))
    ///     .build_with_remote(Nothing, JsonCodec) // RedisStore with feature `redis`
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build), and when `lease_ttl` is zero or
    /// `max_entry_bytes` is under 64.
    pub fn build_with_remote<R, Co>(
        self,
        remote: R,
        codec: Co,
    ) -> Result<CacheLayer<Req, Res, KF::Key, KF, C>, ConfigError>
    where
        KF: KeyFn<Req>,
        KF::Key: fmt::Display + FromStr,
        Res: Clone + Send + Sync + 'static,
        R: RemoteStore,
        Co: Codec<Res> + 'static,
    {
        let memory = self.memory_store()?;
        let settings = self.remote;
        check::nonzero("cache", "lease_ttl", settings.lease_ttl)?;
        check::nonzero("cache", "local_ttl", settings.local_ttl)?;
        check::in_range(
            "cache",
            "max_entry_bytes",
            settings.max_entry_bytes,
            64,
            usize::MAX,
        )?;
        let tier = Tier2::new(
            remote,
            Arc::new(codec),
            |k: &KF::Key| k.to_string(),
            |s: &str| s.parse().ok(),
            Tier2Config {
                lease_ttl: settings.lease_ttl,
                max_bytes: settings.max_entry_bytes,
                local_ttl: settings.local_ttl,
                name: self.name.clone(),
            },
        );
        let remote = tier.store.clone();
        let layer = self.build_any(AnyStore::Memory(memory), Some(tier))?;
        let core = Arc::downgrade(&layer.core);
        let listener: RemoteListener = Arc::new(move |event| {
            if let Some(core) = core.upgrade() {
                core.on_remote_event(event);
            }
        });
        if let Some(tier) = &layer.core.remote {
            let _ = tier.listener.set(listener.clone());
        }
        remote.listen(listener);
        Ok(layer)
    }

    fn build_any(
        self,
        store: AnyStore<KF::Key, Cached<Res>>,
        remote: Option<Tier2<KF::Key, Res>>,
    ) -> Result<CacheLayer<Req, Res, KF::Key, KF, C>, ConfigError>
    where
        KF: KeyFn<Req>,
    {
        self.check()?;
        let hasher = store.hasher().unwrap_or_else(FoldState::random);
        Ok(CacheLayer {
            core: Arc::new(Core {
                ttl: self.ttl,
                swr: self.swr,
                sie: self.sie,
                error_ttl: self.error_ttl,
                store,
                hasher,
                flights: Mutex::new(Flights::new(hasher)),
                counters: Counters::new(self.name),
                remote,
            }),
            policy: Arc::new(Policy {
                key_fn: self.key_fn,
                classify: self.classify,
            }),
            _req: PhantomData,
        })
    }
}
