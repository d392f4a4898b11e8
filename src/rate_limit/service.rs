//! [`RateLimit`]: the service, one quota for all calls or one per key.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;
use tower_service::Service;

use super::future::{Hold, ResponseFuture};
use super::gcra::Decision;
use super::shared::{ByKey, RateLimitStats, Shared};
use crate::rejection::RateLimited;
use crate::BoxError;

/// Where an unkeyed service is between `poll_ready` and `call`.
enum Slot {
    /// Nothing taken yet.
    Idle,
    /// Waiting for the slot taken at this TAT.
    Sleeping(Pin<Box<Sleep>>, u64),
    /// The slot (taken at this TAT) is ours; the inner service may not be
    /// ready yet.
    Taken(u64),
    /// Over the quota: the next `call` answers this error.
    Refused(RateLimited),
}

/// Limits how many calls start per period; made by
/// [`RateLimitLayer`](super::RateLimitLayer).
///
/// Unkeyed, the slot is taken in `poll_ready`, which waits for it (up to
/// `max_wait`), so a caller that polls readiness never has a call
/// refused after being told "ready" for a slot it holds. Keyed, the key is
/// only known in `call`: a call over its key's quota waits inside its
/// response future (the inner service's readiness is kept for it), or is
/// refused. Errors are [`BoxError`]s; the limit's own is
/// [`RateLimited`](super::RateLimited).
pub struct RateLimit<S, K = (), F = ()> {
    inner: S,
    key_fn: F,
    state: Held<K>,
}

/// The shared state and the slot this service holds, given back if the
/// service is dropped holding it (polled ready, never called).
struct Held<K> {
    shared: Arc<Shared<K>>,
    slot: Slot,
}

impl<K> Drop for Held<K> {
    fn drop(&mut self) {
        if let Slot::Sleeping(_, taken) | Slot::Taken(taken) = self.slot {
            self.shared.give_back(taken);
        }
    }
}

impl<S, K, F> RateLimit<S, K, F> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K>>, key_fn: F) -> Self {
        RateLimit {
            inner,
            key_fn,
            state: Held {
                shared,
                slot: Slot::Idle,
            },
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service (a slot held is given back).
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, K: Hash + Eq + Clone, F> RateLimit<S, K, F> {
    /// A snapshot of the counters shared with the layer and its services.
    pub fn stats(&self) -> RateLimitStats {
        self.state.shared.stats()
    }
}

impl<S: Clone, K, F: Clone> Clone for RateLimit<S, K, F> {
    /// Shares the quota; holds no slot.
    fn clone(&self) -> Self {
        RateLimit::new(
            self.inner.clone(),
            Arc::clone(&self.state.shared),
            self.key_fn.clone(),
        )
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for RateLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("quota", &self.state.shared.quota)
            .finish_non_exhaustive()
    }
}

#[cold]
#[inline(never)]
fn not_ready() -> ! {
    panic!("RateLimit::call without poll_ready: poll_ready must return Ready(Ok) first")
}

impl<S, Req> Service<Req> for RateLimit<S, (), ()>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, ()>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let state = &mut self.state;
        loop {
            match &mut state.slot {
                Slot::Idle => {
                    state.slot = match state.shared.acquire() {
                        Decision::Take { tat, wait: 0 } => Slot::Taken(tat),
                        Decision::Take { tat, wait } => {
                            state.shared.count_waited();
                            let sleep = tokio::time::sleep(Duration::from_nanos(wait));
                            Slot::Sleeping(Box::pin(sleep), tat)
                        }
                        Decision::Refuse { wait } => Slot::Refused(state.shared.refused(wait)),
                    }
                }
                Slot::Sleeping(sleep, tat) => {
                    let tat = *tat;
                    ready!(sleep.as_mut().poll(cx));
                    state.slot = Slot::Taken(tat);
                }
                Slot::Taken(_) => return self.inner.poll_ready(cx).map_err(Into::into),
                Slot::Refused(_) => return Poll::Ready(Ok(())),
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        match std::mem::replace(&mut self.state.slot, Slot::Idle) {
            Slot::Taken(_) => {
                self.state.shared.count_allowed();
                ResponseFuture::called(self.inner.call(req))
            }
            Slot::Refused(err) => ResponseFuture::refused(err),
            Slot::Idle | Slot::Sleeping(..) => not_ready(),
        }
    }
}

impl<S, Req, K, F> Service<Req> for RateLimit<S, K, ByKey<F>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + 'static,
    F: Fn(&Req) -> K,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, K>;

    /// The inner service's readiness: the key, and so the quota, is only
    /// known in `call`.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.key_fn.0)(&req);
        let shared = &self.state.shared;
        if let Some(store) = &shared.store {
            // Decided elsewhere, later: keep this ready service for the call.
            let decision = store.acquire(&key, shared.quota, Duration::from_nanos(shared.max_wait));
            let fresh = self.inner.clone();
            let ready = std::mem::replace(&mut self.inner, fresh);
            return ResponseFuture::deciding(decision, ready, req, Arc::clone(shared));
        }
        let Some(table) = &shared.table else {
            unreachable!("a keyed layer without a store has a key table")
        };
        match table.acquire(&shared.gcra, key.clone(), shared.now(), shared.max_wait) {
            Decision::Take { wait: 0, .. } => {
                shared.count_allowed();
                ResponseFuture::called(self.inner.call(req))
            }
            Decision::Take { tat, wait } => {
                shared.count_waited();
                // Keep the ready service for this call; later calls get a
                // fresh clone to make ready.
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                let hold = Hold {
                    shared: Arc::clone(shared),
                    key,
                    taken: Some(tat),
                };
                let sleep = tokio::time::sleep(Duration::from_nanos(wait));
                ResponseFuture::waiting(sleep, ready, req, hold)
            }
            Decision::Refuse { wait } => ResponseFuture::refused(shared.refused(wait)),
        }
    }
}
