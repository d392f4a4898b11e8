//! The [`Manager`] trait: how a pool creates and checks its resources.

use std::future::Future;

/// Creates and health-checks the resources a [`Pool`](super::Pool) hands out.
///
/// Implementations may use `async fn` for both methods; the futures they
/// return must be `Send` so a pool can be shared between tasks.
///
/// ```
/// use std::convert::Infallible;
/// use tower_patterns::pool::Manager;
///
/// struct Counter;
///
/// impl Manager for Counter {
///     type Resource = Vec<u8>;
///     type Error = Infallible;
///
///     async fn create(&self) -> Result<Vec<u8>, Infallible> {
///         Ok(Vec::with_capacity(1024))
///     }
///
///     async fn recycle(&self, buf: &mut Vec<u8>) -> Result<(), Infallible> {
///         buf.clear(); // hand out a clean buffer every time
///         Ok(())
///     }
/// }
/// ```
pub trait Manager: Send + Sync + 'static {
    /// The pooled resource (a database connection, a client, a buffer, ...).
    type Resource: Send + 'static;
    /// Why creating or recycling a resource failed. A `create` error is
    /// returned to the caller of [`Pool::acquire`](super::Pool::acquire)
    /// as [`PoolError::Create`](super::PoolError::Create).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a new resource.
    ///
    /// Called by an acquirer when no idle resource is available and the
    /// pool is below its maximum size, and by the pool's background task to
    /// keep `min_size` resources open. The future may be dropped at any
    /// await point (the acquirer was cancelled or timed out); the pool then
    /// frees the slot it had reserved for the resource.
    fn create(&self) -> impl Future<Output = Result<Self::Resource, Self::Error>> + Send;

    /// Checks that an idle resource is still usable, just before it is
    /// handed out again (a cheap ping, a state reset).
    ///
    /// On `Err` the resource is closed (dropped) and never handed out; the
    /// acquirer checks the next idle resource, newest first, or creates a
    /// fresh one (at most 3 checks per acquire: see the
    /// [module docs](super#recycle-checks)). If the check is interrupted
    /// (the acquirer was cancelled), the resource is closed too, since it
    /// may have been left half-way through the check.
    fn recycle(
        &self,
        resource: &mut Self::Resource,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
