//! [`Pool`], the handle users hold: acquire, close, stats, and acquisition
//! as a tower [`Service`](tower_service::Service).

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::acquire::acquire;
use super::error::{PoolClosed, PoolError};
use super::future::AcquireFuture;
use super::guard::Pooled;
use super::manager::Manager;
use super::shared::Inner;
use super::stats::PoolStats;

/// A pool of resources made by a [`Manager`]: database connections,
/// clients, buffers.
///
/// Build one with [`Pool::builder`]. Cloning a `Pool` is cheap and every
/// clone shares the same resources and statistics. The pool is also a
/// [`tower::Service<()>`](tower_service::Service) whose response is a
/// [`Pooled`] guard, so timeouts, retries and breakers stack around
/// acquisition.
///
/// See the [module docs](super) for an example.
pub struct Pool<M: Manager> {
    inner: Arc<Inner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

impl<M: Manager> fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// Wraps freshly built shared state.
    pub(super) fn from_inner(inner: Arc<Inner<M>>) -> Self {
        Pool { inner }
    }

    /// Checks a resource out of the pool.
    ///
    /// Takes the most recently returned idle resource and runs
    /// [`Manager::recycle`] on it; if none is idle and the pool is below
    /// `max_size`, creates one with [`Manager::create`]; otherwise waits,
    /// first come first served, for a resource to come back.
    ///
    /// # Errors
    ///
    /// - [`PoolError::Timeout`] if no resource was ready within
    ///   `acquire_timeout` (the whole call, including create and recycle);
    /// - [`PoolError::Create`] with the manager's own error if this call had
    ///   to create a resource and that failed (the pool stays usable);
    /// - [`PoolError::Closed`] after [`Pool::close`].
    ///
    /// # Cancellation
    ///
    /// Dropping the future at any point leaks nothing: a place in the
    /// queue is given up, a resource handed over but not yet taken goes to
    /// the next waiter, and a slot reserved for a resource being created is
    /// freed.
    pub async fn acquire(&self) -> Result<Pooled<M>, PoolError<M::Error>> {
        acquire(&self.inner).await
    }

    /// Closes the pool: refuses new acquires (they fail with
    /// [`PoolError::Closed`], as do the ones already waiting), closes the
    /// idle resources, then waits until every checked-out resource has been
    /// returned (and closed). Returns at once if that is already the case.
    ///
    /// Calling `close` again, or from several tasks, is fine: each call
    /// waits for the same condition.
    pub async fn close(&self) {
        self.inner.close();
        self.inner.wait_until_empty().await;
    }

    /// Whether [`Pool::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// A snapshot of the pool's sizes and counters.
    pub fn stats(&self) -> PoolStats {
        self.inner.stats()
    }

    /// The manager this pool creates resources with.
    pub fn manager(&self) -> &M {
        &self.inner.manager
    }
}

/// Acquisition as a service: `call(())` checks a resource out, so tower
/// layers (timeouts, retries on `PoolError::Create`, breakers) stack around
/// it. `poll_ready` fails once the pool is closed and is otherwise always
/// ready: the waiting happens in the response future, bounded by
/// `acquire_timeout`.
impl<M: Manager> tower_service::Service<()> for Pool<M> {
    type Response = Pooled<M>;
    type Error = PoolError<M::Error>;
    type Future = AcquireFuture<M>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.is_closed() {
            Poll::Ready(Err(PoolError::Closed(PoolClosed)))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, _request: ()) -> Self::Future {
        AcquireFuture::new(self.inner.clone())
    }
}
