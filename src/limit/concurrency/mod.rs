//! The fixed concurrency limit: [`ConcurrencyLimitLayer`], the
//! [`ConcurrencyLimit`] service and its [`ResponseFuture`].

mod future;
mod layer;
mod policy;
mod service;

pub use future::ResponseFuture;
pub use layer::{ConcurrencyLimitBuilder, ConcurrencyLimitLayer};
pub use policy::{HoldUntilBodyEnd, ReleaseOnResponse, ReleasePolicy};
pub use service::ConcurrencyLimit;
