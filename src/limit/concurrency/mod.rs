//! The fixed concurrency limit: [`ConcurrencyLimitLayer`] (built with
//! [`ConcurrencyLimitLayerBuilder`]), the [`ConcurrencyLimit`] service, its
//! [`ResponseFuture`], and the [`ReleasePolicy`] that says when a call
//! gives its permit back. See the [`limit`](crate::limit) module docs for an
//! example.
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
