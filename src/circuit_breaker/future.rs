//! The response future, and the guard that records an admitted call's
//! outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower::BoxError;

use super::core::Core;
use super::error::Open;
use super::ticket::Ticket;
use crate::classify::Classify;
use crate::sync::Spaced;

/// What one service clone shares with the futures it creates. One per
/// clone, so the reference count each call touches is not shared between
/// threads; held in a [`Spaced`] so two clones' counts never share a cache
/// line (without the over-aligned allocation a `Padded` would cost per
/// clone).
pub(crate) struct Shard<C> {
    pub(crate) core: Arc<Core>,
    pub(crate) classify: C,
    /// The clone's stripe of the breaker's counters and time window.
    pub(crate) stripe: usize,
}

/// Records the outcome of an admitted call, or its cancellation if dropped
/// first. Every field is a word, so moving the future around costs plain
/// 8-byte copies.
pub(crate) struct Guard<C> {
    shard: Arc<Spaced<Shard<C>>>,
    /// The ticket's bits, plus `DONE` once the outcome is recorded.
    ticket: u64,
    /// 1 + nanoseconds since the breaker's creation when the call started,
    /// or 0 when calls are not timed.
    start: u64,
}

const DONE: u64 = 1 << 63;

impl<C> Guard<C> {
    #[inline]
    pub(crate) fn new(shard: Arc<Spaced<Shard<C>>>, ticket: Ticket, start: u64) -> Self {
        Guard {
            shard,
            ticket: ticket.bits(),
            start,
        }
    }

    /// Records the outcome (in place: moving the guard out of the future
    /// would cost a copy on the hot path).
    #[inline]
    fn finish<Res, E>(&mut self, result: &Result<Res, E>)
    where
        C: Classify<Res, E>,
    {
        if self.ticket & DONE != 0 {
            return;
        }
        let ticket = Ticket::from_bits(self.ticket);
        self.ticket |= DONE;
        let shard = &*self.shard;
        let outcome = shard.classify.classify(result);
        let core = &shard.core;
        if self.start != 0 || core.needs_now() {
            let now = Instant::now();
            let elapsed = (self.start != 0)
                .then(|| Duration::from_nanos(core.nanos(now).saturating_sub(self.start - 1)));
            core.complete(shard.stripe, ticket, outcome, elapsed, &|| now);
        } else {
            core.complete(shard.stripe, ticket, outcome, None, &Instant::now);
        }
    }
}

impl<C> Drop for Guard<C> {
    #[inline]
    fn drop(&mut self) {
        if self.ticket & DONE == 0 {
            self.shard
                .core
                .abandon(self.shard.stripe, Ticket::from_bits(self.ticket));
        }
    }
}

pin_project! {
    /// The future of a [`CircuitBreaker`](super::CircuitBreaker) call: the
    /// inner service's response, or an [`Open`] error at once.
    ///
    /// Dropping it before it completes records the call as cancelled
    /// (neither success nor failure) and gives back a half-open probe slot.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        guard: Option<Guard<C>>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called { #[pin] fut: F },
        Rejected { open: Option<Open> },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(fut: F, guard: Guard<C>) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut },
            guard: Some(guard),
        }
    }

    pub(crate) fn rejected(open: Open) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { open: Some(open) },
            guard: None,
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Called { .. } => "called",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { fut } => {
                let result = ready!(fut.poll(cx));
                if let Some(guard) = this.guard {
                    guard.finish(&result);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { open } => Poll::Ready(Err(match open.take() {
                Some(open) => Box::new(open),
                None => "circuit breaker ResponseFuture polled after completion".into(),
            })),
        }
    }
}
