//! The adaptive concurrency limit: [`AdaptiveLimitLayer`] (Gradient2 or
//! AIMD, built with [`AdaptiveLimitLayerBuilder`]), the [`AdaptiveLimit`]
//! service and its [`ResponseFuture`]. See the [`limit`](crate::limit)
//! module docs for an example.
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
