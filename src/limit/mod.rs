//! Concurrency limits: fixed, bounded-wait, adaptive, and bounded gather.
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_patterns::limit::{self, ConcurrencyLimitLayer, Overloaded};
//! use tower_patterns::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let layer = ConcurrencyLimitLayer::new(2).max_wait(Duration::from_millis(50));
//! let slow = service_fn(|id: u32| async move {
//!     tokio::time::sleep(Duration::from_secs(1)).await;
//!     Ok::<_, BoxError>(id)
//! });
//! let svc = ServiceBuilder::new().layer(layer.clone()).service(slow);
//!
//! // Two calls run; the third waits 50 ms for a permit and gives up.
//! let results = limit::gather(svc.clone(), [1, 2, 3], 3).await;
//! assert_eq!(*results[0].as_ref().unwrap(), 1);
//! assert_eq!(*results[1].as_ref().unwrap(), 2);
//! let overloaded = results[2].as_ref().unwrap_err().downcast_ref::<Overloaded>().unwrap();
//! assert_eq!(overloaded.limit(), 2);
//! assert_eq!(overloaded.waited(), Duration::from_millis(50));
//! assert_eq!(layer.stats().rejected, 1);
//!
//! // Idle again: a call goes straight through.
//! assert_eq!(svc.oneshot(4).await.unwrap(), 4);
//! assert_eq!(layer.stats().in_flight, 0);
//! # }
//! ```
//!
//! - [`ConcurrencyLimitLayer`]: at most `n` calls at once. Unlike tower's
//!   `ConcurrencyLimit`, which can only queue forever, a caller can
//!   [wait a bounded time](ConcurrencyLimitLayer::max_wait) or be
//!   [rejected at once](ConcurrencyLimitLayer::reject_when_full) with
//!   [`Overloaded`], and the permit can be
//!   [held until an HTTP response body ends](ConcurrencyLimitLayer::hold_until_body_end).
//! - [`AdaptiveLimitLayer`]: the limit moves with observed latency and
//!   failures ([Gradient2](AdaptiveLimitLayer::gradient) or
//!   [AIMD](AdaptiveLimitLayer::aimd), after Netflix's concurrency-limits).
//! - [`gather`] / [`gather_unordered`]: run many requests through a service,
//!   at most `n` at once, one `Result` per request.
//!
//! Permits are reserved in `poll_ready`, handed out first come, first
//! served, and held until the response future completes or is dropped.
//! Every service a layer makes, and every clone of them, shares that
//! layer's permits and [`stats`](ConcurrencyLimitLayer::stats).
//!
//! | | fixed | adaptive |
//! |---|---|---|
//! | layer | [`ConcurrencyLimitLayer`] | [`AdaptiveLimitLayer`] |
//! | builder | [`ConcurrencyLimitLayerBuilder`] | [`AdaptiveLimitLayerBuilder`] |
//! | service | [`ConcurrencyLimit`] | [`AdaptiveLimit`] |
//! | future | [`concurrency::ResponseFuture`] | [`adaptive::ResponseFuture`] |
//! | error | [`Overloaded`] | [`Overloaded`] |
//! | stats | [`LimitStats`] | [`LimitStats`] |

pub mod adaptive;
mod body;
pub mod concurrency;
mod error;
mod gate;
mod gather;
mod reservation;

pub use adaptive::{AdaptiveLimit, AdaptiveLimitLayer, AdaptiveLimitLayerBuilder};
pub use body::LimitBody;
pub use concurrency::{
    ConcurrencyLimit, ConcurrencyLimitLayer, ConcurrencyLimitLayerBuilder, HoldUntilBodyEnd,
    ReleaseOnResponse, ReleasePolicy,
};
pub use error::Overloaded;
pub use gate::LimitStats;
pub use gather::{gather, gather_unordered, gather_unordered_indexed, join_bounded};
