//! # tower-patterns
//!
//! The async patterns production services keep rewriting, as one coherent
//! [tower](https://docs.rs/tower) suite. The resilience and caching patterns
//! are [`Layer`](tower_layer::Layer)s that wrap *any*
//! [`Service`](tower_service::Service); fetch, pagination, the task queue
//! and the pool are services themselves, so the layers stack around them too.
//!
//! Every pattern shares a few conventions:
//!
//! - **One notion of failure.** Layers that react to failures take a
//!   [`classify::Classify`] value; [`classify::HttpClassify`] treats 5xx,
//!   429 and 408 as failures and reads `Retry-After`.
//! - **Builders validate.** `builder().build()` returns
//!   `Result<_, `[`ConfigError`]`>` naming the field that was out of range.
//! - **Clones share state.** Cloning a service (as hyper, axum and tonic do
//!   per connection) shares its breaker, cache, permits and statistics.
//! - **Time is tokio's.** All timing uses `tokio::time`, so tests run with
//!   paused time.
//! - **Errors are `tower::BoxError`** carrying public, downcastable structs.
#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Not every feature combination emits events.
#[allow(unused_macros, unused_imports)]
mod trace;

pub mod cache;
pub mod classify;
mod error;
pub mod fetch;
pub mod limit;
pub mod paginate;
pub mod pool;
pub mod queue;
pub mod respond;
pub mod retry;

#[cfg(feature = "upstream")]
#[cfg_attr(docsrs, doc(cfg(feature = "upstream")))]
pub mod upstream;

pub use error::ConfigError;
/// The error type of every layer in this crate, as in tower.
pub use tower::BoxError;
