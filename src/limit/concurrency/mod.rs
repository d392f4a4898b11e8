//! The fixed concurrency limit: [`ConcurrencyLimitLayer`] (built with
//! [`ConcurrencyLimitLayerBuilder`]), the [`ConcurrencyLimit`] service, its
//! [`ResponseFuture`], and the [`ReleasePolicy`] that says when a call
//! gives its permit back. More in the [`limit`](crate::limit) module docs.
//!
//! ```
//! use tower::{service_fn, Layer, ServiceExt};
//! use tower_patterns::limit::{ConcurrencyLimit, ConcurrencyLimitLayer};
//! use tower_patterns::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let echo = service_fn(|n: u32| async move { Ok::<_, BoxError>(n) });
//! // Through a layer: every service it makes shares one limit of 10.
//! let layer = ConcurrencyLimitLayer::builder().limit(10).build().unwrap();
//! assert_eq!(layer.layer(echo).oneshot(1).await.unwrap(), 1);
//! // Or one service with a limit of its own.
//! let svc = ConcurrencyLimit::new(echo, 10);
//! assert_eq!(svc.stats().limit, 10);
//! assert_eq!(svc.oneshot(2).await.unwrap(), 2);
//! # }
//! ```
//!
//! The permits and counters every service of one layer shares live below,
//! in the limit module's gate; the service is built from them, and the
//! layer builds services.

mod future;
mod layer;
mod policy;
mod service;

pub use future::ResponseFuture;
pub use layer::{ConcurrencyLimitLayer, ConcurrencyLimitLayerBuilder};
pub use policy::{HoldUntilBodyEnd, ReleaseOnResponse, ReleasePolicy};
pub use service::ConcurrencyLimit;
