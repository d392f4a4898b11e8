//! [`AcquireFuture`], the response future of the pool as a tower service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::acquire::acquire;
use super::error::PoolError;
use super::guard::Pooled;
use super::manager::Manager;
use super::shared::Inner;

/// The future of [`Pool`](super::Pool)'s `Service::call`: resolves to a
/// [`Pooled`] guard, as [`Pool::acquire`](super::Pool::acquire) does.
///
/// It owns a reference to the pool, so it is `'static`; it is boxed because
/// the manager's futures cannot be named (use
/// [`Pool::acquire`](super::Pool::acquire) directly on hot paths that need
/// no tower layers).
pub struct AcquireFuture<M: Manager> {
    fut: Pin<Box<dyn Future<Output = AcquireResult<M>> + Send>>,
}

type AcquireResult<M> = Result<Pooled<M>, PoolError<<M as Manager>::Error>>;

impl<M: Manager> AcquireFuture<M> {
    pub(super) fn new(inner: Arc<Inner<M>>) -> Self {
        AcquireFuture {
            fut: Box::pin(async move { acquire(&inner).await }),
        }
    }
}

impl<M: Manager> fmt::Debug for AcquireFuture<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireFuture").finish_non_exhaustive()
    }
}

impl<M: Manager> Future for AcquireFuture<M> {
    type Output = Result<Pooled<M>, PoolError<M::Error>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}
