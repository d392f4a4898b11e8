//! Rate limiting: at most `count` calls start per `period`, by the generic
//! cell rate algorithm (GCRA), for all calls or per key.
//!
//! [`RateLimitLayer`] spaces calls out to a steady rate and lets a `burst`
//! of them through at once after a quiet spell. Its state is one word per
//! quota (the *theoretical arrival time*), moved by one compare-and-swap:
//! lock-free, and exact to the nanosecond of tokio's clock, so tests run
//! with paused time.
//!
//! - **Wait or refuse.** A call over the quota waits for its slot, in
//!   order, at most [`max_wait`](RateLimitLayerBuilder::max_wait) (a
//!   client staying under an API's quota); past that, or with
//!   [`reject`](RateLimitLayerBuilder::reject) (a server shedding a
//!   caller's excess), it fails at once with [`RateLimited`], which says
//!   when to retry. [`respond`](crate::respond) answers it with 429 and
//!   `Retry-After`.
//! - **Per key.** With [`key_fn`](RateLimitLayerBuilder::key_fn) each key
//!   (a client address, an API key, a tenant) has its own quota, in a
//!   table of at most [`max_keys`](RateLimitLayerBuilder::max_keys): a
//!   flood of distinct keys cannot grow memory, and one key's flood never
//!   delays another key.
//! - **Clones share the quota**; a new layer starts a fresh one (or share a
//!   [`MemoryStore`], or a [`RedisStore`] across processes). A waiter
//!   that is dropped gives its slot back when no later call took one.
//! - [`RateLimited`] is one of the crate's own rejections: retry does not
//!   retry it and a breaker does not count it (see
//!   [`classify`](crate::classify#the-crates-own-rejections-are-not-failures)).
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::rate_limit::{RateLimitLayer, RateLimited};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_patterns::BoxError> {
//! // 2 calls a second, both at once; over that, refuse.
//! let layer = RateLimitLayer::builder()
//!     .rate(2, Duration::from_secs(1))
//!     .reject()
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|n: u32| async move { Ok::<_, tower_patterns::BoxError>(n) }));
//!
//! assert_eq!(svc.ready().await?.call(1).await?, 1);
//! assert_eq!(svc.ready().await?.call(2).await?, 2);
//! let err = svc.ready().await?.call(3).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().unwrap();
//! assert_eq!(limited.retry_after(), Duration::from_millis(500));
//!
//! tokio::time::sleep(limited.retry_after()).await;
//! assert_eq!(svc.ready().await?.call(4).await?, 4);
//! assert_eq!((layer.stats().allowed, layer.stats().limited), (3, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Across replicas
//!
//! Each replica behind a load balancer would allow the whole quota. With
//! feature `redis`, [`RedisStore`] keeps the cells in Redis (one Lua script
//! per call on one key, on the Redis server's clock, behind a circuit
//! breaker and a timeout), so every replica draws from one quota; the
//! builder's [`fail_open`](RateLimitLayerBuilder::fail_open) (default) or
//! [`fail_closed`](RateLimitLayerBuilder::fail_closed) says what happens
//! while Redis is unreachable. Any other store implements
//! [`RateLimitStore`].
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # fn main() -> Result<(), tower_patterns::ConfigError> {
//! use std::time::Duration;
//! use tower_patterns::rate_limit::{RateLimitLayer, RedisStore};
//!
//! struct Req { api_key: String }
//!
//! let store = RedisStore::builder("redis://127.0.0.1:6379").build()?;
//! let layer = RateLimitLayer::builder()
//!     .rate(100, Duration::from_secs(60))
//!     .reject()
//!     .key_fn(|req: &Req| req.api_key.clone())
//!     .store(store)
//!     .build()?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "redis"))]
//! # fn main() {}
//! ```
//!
//! A keyed server limit, 10 calls a second per client address:
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::Duration;
//! use tower_patterns::rate_limit::RateLimitLayer;
//!
//! struct Req { client: IpAddr }
//!
//! let layer = RateLimitLayer::builder()
//!     .rate(10, Duration::from_secs(1))
//!     .reject()
//!     .key_fn(|req: &Req| req.client)
//!     .max_keys(50_000)
//!     .build()
//!     .unwrap();
//! # let _ = layer;
//! ```

mod error;
mod future;
mod gcra;
mod keyed;
mod layer;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod shared;
mod store;

pub use error::RateLimited;
pub use future::ResponseFuture;
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisStore, RedisStoreBuilder, RedisStoreStats};
pub use service::RateLimit;
pub use shared::{ByKey, RateLimitStats};
pub use store::{Admission, MemoryStore, Quota, RateLimitStore, StoreFuture};
