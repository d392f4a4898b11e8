//! Response caching with TTL, single-flight loads and stale serving.
//!
//! [`CacheLayer`] wraps any [`Service`](tower_service::Service) whose
//! responses are `Clone` and keeps successful responses for a TTL:
//!
//! - **Keys.** By default the MD5 hex digest of the request's canonical
//!   JSON form ([`Md5Json`]: maps sorted, so equal requests give equal
//!   keys); or any [`key_fn`](CacheLayerBuilder::key_fn), which is much
//!   cheaper.
//! - **Single-flight.** Concurrent misses for one key make one call to
//!   the inner service; the other callers wait for it and get clones of
//!   its response ([`CacheStats::coalesced`]). The call runs in a tokio
//!   task of its own, so it finishes for the waiters and fills the cache
//!   even if the caller that started it is dropped.
//! - **Hits don't wait.** `poll_ready` is always ready; only a miss waits
//!   for the readiness of (a clone of) the inner service.
//! - **Only successes are stored**, as the [`Classify`](crate::classify::Classify)
//!   given to [`classify`](CacheLayerBuilder::classify) decides, unless
//!   [`cache_errors`](CacheLayerBuilder::cache_errors) asks for more.
//! - **Stale serving.** [`stale_while_revalidate`](CacheLayerBuilder::stale_while_revalidate)
//!   answers from a just-expired entry at once and refreshes it in the
//!   background, once; [`stale_if_error`](CacheLayerBuilder::stale_if_error)
//!   answers from it when the refresh fails.
//! - **Bounded.** At most [`max_entries`](CacheLayerBuilder::max_entries),
//!   evicted by S3-FIFO (which keeps hot keys; see [`MemoryStore`]).
//!   Expired entries are dropped when next looked up and by
//!   [`CacheHandle::cleanup`].
//! - **Fast hits.** The store is sharded behind read-write locks and
//!   counters are per thread: hits on different threads do not contend.
//!
//! **Raw HTTP responses** stream their body, which is not `Clone`: put
//! [`fetch::CollectLayer`](crate::fetch::CollectLayer) between the cache
//! and the client to read bodies into `Full<Bytes>` (see its example). It
//! also copies the body and the fields into a buffer of their own: a
//! cached value holding hyper's `Bytes` (its field values, a body frame)
//! would keep the connection's whole read buffer, 8 KiB or more, for as
//! long as it is cached.
//!
//! The store sits behind the [`Store`] trait, so other stores can be
//! plugged in with [`CacheLayerBuilder::build_with_store`].
//!
//! **Shared by replicas.** [`CacheLayerBuilder::build_with_remote`] puts a
//! second tier behind the in-memory one: a [`RemoteStore`] every replica
//! shares ([`RedisStore`], feature `redis`), values written by a [`Codec`]
//! ([`JsonCodec`], [`HttpCodec`]). A memory hit costs what it costs without
//! it; a memory miss reads the remote tier; concurrent misses on every
//! replica make one inner call (a lease per key); invalidations reach every
//! replica; a remote tier that is down only costs its misses a fast check
//! (see `examples/cache_redis.rs`, and [`RedisStore`]'s docs for an example).
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use serde::Serialize;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::cache::CacheLayer;
//!
//! #[derive(Serialize)]
//! struct GetUser {
//!     id: u64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let backend = {
//!     let calls = calls.clone();
//!     service_fn(move |req: GetUser| {
//!         calls.fetch_add(1, Ordering::SeqCst);
//!         async move { Ok::<_, std::io::Error>(format!("user {}", req.id)) }
//!     })
//! };
//!
//! let layer = CacheLayer::builder()
//!     .ttl(Duration::from_secs(300))
//!     .max_entries(10_000)
//!     .build()?; // keys: md5 of each request's JSON
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new().layer(layer).service(backend);
//!
//! let a = svc.ready().await?.call(GetUser { id: 7 }).await?;
//! let b = svc.ready().await?.call(GetUser { id: 7 }).await?;
//! assert_eq!((a.as_str(), b.as_str()), ("user 7", "user 7"));
//! assert_eq!(calls.load(Ordering::SeqCst), 1); // the second came from the cache
//!
//! let stats = handle.stats();
//! assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
//! # Ok(())
//! # }
//! ```

mod codec;
mod core;
mod error;
mod flight;
mod future;
mod handle;
mod key;
mod layer;
mod service;
mod stats;
mod store;

pub use self::core::Cached;
pub use codec::{Codec, HttpCodec, JsonCodec};
pub use error::{LoadAbandoned, SharedError};
pub use future::ResponseFuture;
pub use handle::CacheHandle;
pub use key::{FnKey, KeyFn, Md5Json};
pub use layer::{CacheLayer, CacheLayerBuilder};
pub use service::Cache;
pub use stats::CacheStats;
/// The stores' fast seeded hash, for other tables keyed like a store.
pub(crate) use store::hash::FoldState;
pub use store::{
    Entry, Lease, LeaseToken, MemoryStore, RemoteEvent, RemoteFuture, RemoteListener, RemoteStore,
    Store,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use store::{RedisStore, RedisStoreBuilder, RedisStoreStats};
