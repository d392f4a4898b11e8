//! The adaptive concurrency limit: [`AdaptiveLimitLayer`] (Gradient2 or
//! AIMD), the [`AdaptiveLimit`] service and its [`ResponseFuture`].
//!
//! The algorithms are pure code in `algorithm.rs` (no I/O, no clock),
//! tested with scripted latency sequences; `shared.rs` applies their
//! decisions to the semaphore.

mod algorithm;
mod future;
mod layer;
mod service;
mod shared;

pub use future::ResponseFuture;
pub use layer::{AdaptiveLimitBuilder, AdaptiveLimitLayer};
pub use service::AdaptiveLimit;
