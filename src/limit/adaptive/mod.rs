//! The adaptive concurrency limit: [`AdaptiveLimitLayer`] (Gradient2 or
//! AIMD, built with [`AdaptiveLimitLayerBuilder`]), the [`AdaptiveLimit`]
//! service and its [`ResponseFuture`]. More in the [`limit`](crate::limit)
//! module docs.
//!
//! ```
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_patterns::classify::HttpClassify;
//! use tower_patterns::limit::AdaptiveLimitLayer;
//! use tower_patterns::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // AIMD: +1 per successful busy call, x0.5 on a failure (here: any 5xx,
//! // 429 or 408 response, as HttpClassify judges them).
//! let layer = AdaptiveLimitLayer::builder()
//!     .aimd()
//!     .initial_limit(10)
//!     .max_limit(100)
//!     .classify(HttpClassify)
//!     .build()
//!     .unwrap();
//! let backend = service_fn(|_: ()| async {
//!     Ok::<_, BoxError>(http::Response::builder().status(503).body(()).unwrap())
//! });
//! let svc = ServiceBuilder::new().layer(layer.clone()).service(backend);
//! assert_eq!(svc.oneshot(()).await.unwrap().status(), 503);
//! assert_eq!(layer.stats().limit, 5);
//! # }
//! ```
//!
//! The algorithms are pure code in `algorithm.rs` (no I/O, no clock),
//! tested with scripted latency sequences; `settings.rs` validates the
//! builder's settings; `shared.rs` holds the state every service of one
//! layer shares and applies the algorithm's decisions to the semaphore.

mod algorithm;
mod future;
mod layer;
mod service;
mod settings;
mod shared;

pub use future::ResponseFuture;
pub use layer::{AdaptiveLimitLayer, AdaptiveLimitLayerBuilder};
pub use service::AdaptiveLimit;
