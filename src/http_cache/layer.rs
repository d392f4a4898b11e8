//! [`HttpCacheLayer`] and its builder, [`HttpCacheLayerBuilder`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http_cache_semantics::CacheOptions;
use tower_layer::Layer;

use super::handle::HttpCacheHandle;
use super::service::HttpCache;
use super::shared::{Config, Shared};
use super::stats::HttpCacheStats;
use crate::cache::{RemoteEvent, RemoteStore, Store};
use crate::error::check;
use crate::ConfigError;

const COMPONENT: &str = "http_cache";
/// The most entries (URIs) the store can be asked to hold.
const MAX_ENTRIES: usize = (u32::MAX / 2) as usize;

/// A [`Layer`] that puts an RFC 9111 HTTP cache in front of an HTTP
/// service; see the [module docs](super).
///
/// Made by [`HttpCacheLayer::builder`]. Cloning the layer, and every
/// service it makes, shares one cache and one set of statistics.
#[derive(Clone)]
pub struct HttpCacheLayer {
    shared: Arc<Shared>,
}

impl HttpCacheLayer {
    /// A builder with the defaults: a shared cache (as a proxy: `private`
    /// responses and responses to requests with `Authorization` are not
    /// stored unless they allow it), at most 10,000 URIs, bodies up to
    /// 1 MiB stored, 8 variants per URI, heuristic freshness 10% of the
    /// time since `Last-Modified`, stale responses kept 5 minutes for
    /// revalidation, no `Cache-Status` field.
    pub fn builder() -> HttpCacheLayerBuilder {
        HttpCacheLayerBuilder {
            shared: true,
            max_entries: 10_000,
            max_body_bytes: 1 << 20,
            max_variants: 8,
            heuristic: 0.1,
            keep_stale: Duration::from_secs(300),
            coalesce: true,
            cache_status: false,
            name: crate::trace::Name::Borrowed("http_cache"),
        }
    }

    /// A handle on this layer's cache: statistics, invalidation, clearing.
    pub fn handle(&self) -> HttpCacheHandle {
        HttpCacheHandle::new(self.shared.clone())
    }

    /// A snapshot of this layer's counters; the same as
    /// `self.handle().stats()`.
    pub fn stats(&self) -> HttpCacheStats {
        self.shared.stats()
    }
}

impl fmt::Debug for HttpCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.shared.cfg;
        f.debug_struct("HttpCacheLayer")
            .field("shared", &c.opts.shared)
            .field("max_body_bytes", &c.max_body_bytes)
            .field("cache_status", &c.cache_status)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HttpCacheLayer {
    type Service = HttpCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpCache::new(inner, self.shared.clone())
    }
}

/// Builds an [`HttpCacheLayer`]; see [`HttpCacheLayer::builder`] for the
/// defaults.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get an HttpCacheLayer"]
pub struct HttpCacheLayerBuilder {
    shared: bool,
    max_entries: usize,
    max_body_bytes: usize,
    max_variants: usize,
    heuristic: f32,
    keep_stale: Duration,
    coalesce: bool,
    cache_status: bool,
    name: crate::trace::Name,
}

impl HttpCacheLayerBuilder {
    /// `true` (the default): a shared cache, as a proxy or a server-side
    /// cache serving many users: `private` responses are not stored,
    /// `s-maxage` and `proxy-revalidate` apply, and a response to a
    /// request with `Authorization` is stored only if it says so
    /// (`public`, `s-maxage`, `must-revalidate`). `false`: a private cache,
    /// one user's client: `private` responses are stored too, and so is
    /// the answer to a request with `Authorization`, which is then served
    /// to later requests whatever their `Authorization`. Use `false` only
    /// where every request through the cache is made for the same user.
    #[must_use = "a setter returns the changed builder"]
    pub fn shared(mut self, shared: bool) -> Self {
        self.shared = shared;
        self
    }

    /// The most URIs held at once, each with its variants (default
    /// 10,000; 1 to 2^31 - 1), evicted by S3-FIFO. Memory is bounded by
    /// `max_entries` × [`max_variants`](Self::max_variants) ×
    /// [`max_body_bytes`](Self::max_body_bytes) of bodies (plus fields):
    /// size the three together.
    #[must_use = "a setter returns the changed builder"]
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The largest body stored (default 1 MiB; at least 1). A storable
    /// response with a larger body streams through to the caller
    /// uncached.
    #[must_use = "a setter returns the changed builder"]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The most variants (responses that differ by their `Vary` fields)
    /// kept per URI (default 8; 1 to 1024); the newest are kept.
    #[must_use = "a setter returns the changed builder"]
    pub fn max_variants(mut self, n: usize) -> Self {
        self.max_variants = n;
        self
    }

    /// The fraction of the time since `Last-Modified` that a response
    /// without explicit freshness stays fresh, where RFC 9111 §4.2.2
    /// allows a heuristic (default 0.1; 0 turns heuristics off; 0 to 1).
    #[must_use = "a setter returns the changed builder"]
    pub fn heuristic_fraction(mut self, fraction: f32) -> Self {
        self.heuristic = fraction;
        self
    }

    /// How long a response is kept after it went stale (at least), so that
    /// a `304` can refresh it instead of a full response, or a request's
    /// `max-stale` can take it (default 5 minutes; any; `ZERO` drops
    /// responses when they go stale, unless their own
    /// `stale-while-revalidate` / `stale-if-error` keep them).
    #[must_use = "a setter returns the changed builder"]
    pub fn keep_stale(mut self, keep: Duration) -> Self {
        self.keep_stale = keep;
        self
    }

    /// `true` (the default): a GET that misses while another GET for the
    /// same URI is already asking the inner service waits for it, and is
    /// answered from the store if that response was stored (one request
    /// upstream for a burst of misses); if it was not (not storable, a
    /// `Vary` mismatch, an error) each waiter goes on by itself. Requests
    /// with `Cache-Control` directives of their own never wait. `false`:
    /// every miss goes to the inner service.
    #[must_use = "a setter returns the changed builder"]
    pub fn coalesce(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }

    /// Adds a `Cache-Status` field (RFC 9211) to every answer, naming the
    /// cache by [`name`](Self::name): `hit`, `fwd=uri-miss`,
    /// `fwd=stale; fwd-status=304`, `stored`, `ttl=...` (default off, as
    /// a client's cache would have it; a proxy turns it on).
    #[must_use = "a setter returns the changed builder"]
    pub fn cache_status(mut self, on: bool) -> Self {
        self.cache_status = on;
        self
    }

    /// The instance name: the `Cache-Status` cache name, and the `name`
    /// label of metrics. Default: `"http_cache"`.
    #[must_use = "a setter returns the changed builder"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when `max_entries`,
    /// `max_body_bytes`, `max_variants` or `heuristic_fraction` is out of
    /// its range.
    pub fn build(self) -> Result<HttpCacheLayer, ConfigError> {
        self.make(None)
    }

    /// The layer with a second tier behind its memory: a [`RemoteStore`]
    /// every replica shares ([`RedisStore`](crate::cache::RedisStore),
    /// feature `redis`).
    ///
    /// Each URI's variants are one remote value, written when they change
    /// and kept as long as the memory keeps them; a URI memory does not
    /// hold is read from the remote tier before the inner service is asked
    /// ([`HttpCacheStats::remote_hits`]); invalidations (unsafe methods,
    /// [`HttpCacheHandle::invalidate`], [`clear`](HttpCacheHandle::clear))
    /// delete the remote value and reach every replica's memory. A remote
    /// tier that fails costs its misses the failed read
    /// ([`HttpCacheStats::remote_errors`]) and nothing else.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_remote(
        self,
        remote: impl RemoteStore,
    ) -> Result<HttpCacheLayer, ConfigError> {
        let remote: Arc<dyn RemoteStore> = Arc::new(remote);
        let layer = self.make(Some(remote.clone()))?;
        let weak = Arc::downgrade(&layer.shared);
        let listener: crate::cache::RemoteListener = Arc::new(move |event| {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            match event {
                RemoteEvent::Invalidated(key) => {
                    shared.store.remove(&key.to_owned());
                }
                RemoteEvent::Cleared => shared.store.clear(),
                _ => {}
            }
        });
        // The store holds listeners weakly: the layer keeps this one alive.
        *crate::sync::lock(&layer.shared.listener) = Some(listener.clone());
        remote.listen(listener);
        Ok(layer)
    }

    fn make(self, remote: Option<Arc<dyn RemoteStore>>) -> Result<HttpCacheLayer, ConfigError> {
        let max_entries =
            check::in_range(COMPONENT, "max_entries", self.max_entries, 1, MAX_ENTRIES)?;
        let max_body_bytes = check::nonzero(COMPONENT, "max_body_bytes", self.max_body_bytes)?;
        let max_variants = check::in_range(COMPONENT, "max_variants", self.max_variants, 1, 1024)?;
        let heuristic = check::in_range(COMPONENT, "heuristic_fraction", self.heuristic, 0.0, 1.0)?;
        let opts = CacheOptions {
            shared: self.shared,
            cache_heuristic: heuristic,
            // `immutable` (RFC 8246) is no freshness of its own.
            immutable_min_time_to_live: Duration::ZERO,
            ignore_cargo_cult: false,
        };
        let cfg = Config {
            opts,
            max_body_bytes,
            max_variants,
            keep_stale: self.keep_stale,
            coalesce: self.coalesce,
            cache_status: self.cache_status.then(|| self.name.to_string()),
        };
        Ok(HttpCacheLayer {
            shared: Arc::new(Shared::new(cfg, max_entries, self.name, remote)),
        })
    }
}
