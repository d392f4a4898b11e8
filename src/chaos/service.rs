//! The [`Chaos`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::error::Injected;
use super::future::ResponseFuture;
use super::shared::{ChaosStats, Fault, State, ACTIVE};
use super::substitute::{NoSubstitute, Substitute};
use crate::time;
use crate::trace::trace_event;

/// Injects faults into the calls of its inner service at the rates its
/// [`ChaosHandle`](super::ChaosHandle) says. Made by
/// [`ChaosLayer`](super::ChaosLayer); see [the module docs](super).
///
/// - `poll_ready` is the inner service's, always: whether a call gets a
///   fault is drawn in `call`, so readiness (and any capacity it reserves
///   below) is the same on and off. A call answered without the inner
///   service (an error or a substituted response) leaves that readiness
///   unused, as a dropped call would.
/// - The inner error type must be `From<`[`Injected`]`>` (as
///   [`BoxError`](crate::BoxError) is).
/// - Clones share the layer's switch, rates, sequence and statistics.
pub struct Chaos<S, T = NoSubstitute> {
    inner: S,
    state: Arc<State>,
    substitute: Option<Arc<T>>,
}

impl<S, T> Chaos<S, T> {
    pub(crate) fn new(inner: S, state: Arc<State>, substitute: Option<Arc<T>>) -> Self {
        Chaos {
            inner,
            state,
            substitute,
        }
    }

    /// A snapshot of the layer's counters (shared by every service it made).
    pub fn stats(&self) -> ChaosStats {
        self.state.stats()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, T> Clone for Chaos<S, T> {
    fn clone(&self) -> Self {
        Chaos {
            inner: self.inner.clone(),
            state: Arc::clone(&self.state),
            substitute: self.substitute.clone(),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for Chaos<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S, T, Req> Service<Req> for Chaos<S, T>
where
    S: Service<Req>,
    S::Error: From<Injected>,
    T: Substitute<S::Response>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Response, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // Off (or every rate zero): one relaxed load, then the inner call.
        let word = self.state.word();
        if word & ACTIVE == 0 {
            return ResponseFuture::inner(self.inner.call(req));
        }
        self.call_active(word, req)
    }
}

impl<S, T> Chaos<S, T> {
    #[inline(never)]
    fn call_active<Req>(
        &mut self,
        word: u64,
        req: Req,
    ) -> ResponseFuture<S::Future, S::Response, S::Error>
    where
        S: Service<Req>,
        S::Error: From<Injected>,
        T: Substitute<S::Response>,
    {
        let (call, fault) = self.state.draw(word);
        // A substitute rate is only ever set with a substitute; without one
        // the call goes through.
        let fault = match (fault, &self.substitute) {
            (Fault::Substitute, None) => Fault::None,
            (fault, _) => fault,
        };
        self.state.count(fault);
        match fault {
            Fault::None => ResponseFuture::inner(self.inner.call(req)),
            Fault::Error => {
                trace_event!(DEBUG, call, "chaos: injected an error");
                ResponseFuture::ready(Err(Injected { call }.into()))
            }
            Fault::Latency => {
                let latency = self.state.latency();
                trace_event!(DEBUG, call, ?latency, "chaos: injected latency");
                let sleep = tokio::time::sleep_until(time::deadline(Instant::now(), latency));
                ResponseFuture::delayed(sleep, self.inner.call(req))
            }
            Fault::Substitute => {
                trace_event!(DEBUG, call, "chaos: substituted the response");
                match &self.substitute {
                    Some(s) => ResponseFuture::ready(Ok(s.substitute())),
                    None => ResponseFuture::inner(self.inner.call(req)),
                }
            }
        }
    }
}
