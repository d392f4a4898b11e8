//! The service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::BoxError;
use tower_service::Service;

use super::error::Open;
use super::future::{Guard, ResponseFuture};
use super::layer::Handle;
use super::state::{Admit, Core, Ticket};
use crate::classify::Classify;

/// What one service clone shares with the futures it creates. One per
/// clone, so the reference count each call touches is not shared between
/// threads.
pub(crate) struct Shard<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) classify: C,
    pub(crate) stripe: usize,
}

enum Permit {
    None,
    Go(Ticket),
    Reject(Open),
}

/// A service guarded by a circuit breaker; made by
/// [`CircuitBreakerLayer`](super::CircuitBreakerLayer).
///
/// - **Closed**: `poll_ready` waits for the inner service; the call goes
///   through and its outcome is recorded.
/// - **Open**: `poll_ready` is ready at once, without polling the inner
///   service, and `call` returns a future that fails with [`Open`] without
///   calling it.
/// - **Half-open**: `poll_ready` takes one of the probe slots (or, when all
///   are taken, behaves as open) and keeps it until `call`; dropping the
///   service or the response future gives the slot back.
///
/// Clones share the breaker.
pub struct CircuitBreaker<S, C = crate::classify::DefaultClassify> {
    inner: S,
    shard: Arc<Shard<C>>,
    permit: Permit,
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn new(inner: S, core: Arc<Core>, classify: C) -> Self {
        let stripe = core.stripe();
        CircuitBreaker {
            inner,
            shard: Arc::new(Shard {
                core,
                classify,
                stripe,
            }),
            permit: Permit::None,
        }
    }

    /// A handle on the breaker this service shares with its layer.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shard.core.clone())
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    fn release(&mut self) {
        if let Permit::Go(t) = std::mem::replace(&mut self.permit, Permit::None) {
            self.shard.core.release(t);
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone shares the breaker but not this service's admission.
        CircuitBreaker::new(
            self.inner.clone(),
            self.shard.core.clone(),
            self.shard.classify.clone(),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("breaker", &self.shard.core)
            .finish()
    }
}

impl<S, C> Drop for CircuitBreaker<S, C> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Permit::None = self.permit {
            self.permit = match self.shard.core.admit(&Instant::now) {
                Admit::Go(t) => Permit::Go(t),
                Admit::Reject(open) => Permit::Reject(open),
            };
        }
        if let Permit::Reject(_) = self.permit {
            // Open: no need for the inner service to be ready to fail fast.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                self.release();
                Poll::Ready(Err(e.into()))
            }
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let core = &self.shard.core;
        let ticket = match std::mem::replace(&mut self.permit, Permit::None) {
            // The breaker has not moved since `poll_ready`: the hot path.
            Permit::Go(t) if core.still_valid(t) => t,
            Permit::Reject(open) => {
                core.rejected(self.shard.stripe);
                return ResponseFuture::rejected(open);
            }
            // It moved (or `call` came without `poll_ready`): decide again.
            other => {
                if let Permit::Go(t) = other {
                    core.release(t);
                }
                match core.admit(&Instant::now) {
                    Admit::Go(t) => t,
                    Admit::Reject(open) => {
                        core.rejected(self.shard.stripe);
                        return ResponseFuture::rejected(open);
                    }
                }
            }
        };
        let start = core.times_calls().then(Instant::now);
        let guard = Guard::new(self.shard.clone(), ticket, start);
        ResponseFuture::called(self.inner.call(req), guard)
    }
}
