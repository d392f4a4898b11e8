//! [`ResponseFuture`], the future of [`Timeout`](super::Timeout), and
//! [`Scope`], the future of [`scope`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::Elapsed;
use super::shared::{current, in_scope, in_scope_opt, Deadline, Meter};
use crate::trace::trace_event;
use crate::BoxError;

pin_project! {
    /// The future returned by [`Timeout`](super::Timeout): the inner
    /// service's future, polled with the deadline in force, failing with
    /// [`Elapsed`] once the deadline passes.
    ///
    /// Dropping it drops the inner future.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // Racing the inner future against the deadline.
        Bounded {
            #[pin]
            future: F,
            #[pin]
            sleep: Sleep,
            deadline: Deadline,
            allowed: Duration,
            meter: Meter,
        },
        // No deadline anywhere: the inner future alone.
        Unbounded { #[pin] future: F },
        // The deadline had passed before the call: the inner service was
        // not called.
        Expired,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn bounded(future: F, deadline: Deadline, allowed: Duration, meter: Meter) -> Self {
        ResponseFuture {
            state: State::Bounded {
                future,
                sleep: tokio::time::sleep_until(deadline.instant()),
                deadline,
                allowed,
                meter,
            },
        }
    }

    pub(crate) fn unbounded(future: F) -> Self {
        ResponseFuture {
            state: State::Unbounded { future },
        }
    }

    pub(crate) fn expired() -> Self {
        ResponseFuture {
            state: State::Expired,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        match &self.state {
            State::Bounded { deadline, .. } => d.field("deadline", deadline),
            State::Unbounded { .. } => d.field("deadline", &None::<Deadline>),
            State::Expired => d.field("expired", &true),
        };
        d.finish_non_exhaustive()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Bounded {
                future,
                sleep,
                deadline,
                allowed,
                meter: _meter,
            } => {
                if let Poll::Ready(out) = in_scope(*deadline, || future.poll(cx)) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                ready!(sleep.poll(cx));
                trace_event!(
                    DEBUG,
                    allowed_ms = allowed.as_millis() as u64,
                    "deadline: call timed out"
                );
                crate::trace::record!(_meter, |m| m.timeouts.increment(1));
                Poll::Ready(Err(Elapsed::new(*allowed, true).into()))
            }
            StateProj::Unbounded { future } => future.poll(cx).map_err(Into::into),
            StateProj::Expired => Poll::Ready(Err(Elapsed::new(Duration::ZERO, false).into())),
        }
    }
}

pin_project! {
    /// The future returned by [`scope`]: `F`, run with a deadline in force.
    pub struct Scope<F> {
        #[pin]
        future: F,
        deadline: Option<Deadline>,
    }
}

impl<F> Scope<F> {
    /// `future` run with `deadline` (if any) in force.
    pub(crate) fn new(deadline: Option<Deadline>, future: F) -> Self {
        Scope { future, deadline }
    }
}

impl<F> fmt::Debug for Scope<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<F: Future> Future for Scope<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let deadline = this
            .deadline
            .map(|own| current().map_or(own, |outer| outer.min(own)));
        let future = this.future;
        in_scope_opt(deadline, || future.poll(cx))
    }
}

/// Runs `future` with `deadline` in force, for a caller without a
/// [`TimeoutLayer`](super::TimeoutLayer): layers below see it through
/// [`current`](super::current) (retry stops starting attempts that cannot
/// finish by then, a queue records it with the tasks it accepts). An outer
/// deadline that is tighter stays in force.
///
/// It only makes the deadline known: nothing fails when it passes. To
/// enforce it, put a [`TimeoutLayer`](super::TimeoutLayer) (with
/// `Duration::MAX` for no limit of its own) below, or wrap the future in
/// `tokio::time::timeout_at(deadline.instant(), ..)`.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::{self, Deadline};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let soon = Deadline::after(Duration::from_millis(100));
/// let later = Deadline::after(Duration::from_secs(10));
/// let seen = deadline::scope(soon, deadline::scope(later, async { deadline::current() })).await;
/// assert_eq!(seen, Some(soon), "the tighter deadline stays in force");
/// # }
/// ```
pub fn scope<F: Future>(deadline: Deadline, future: F) -> Scope<F> {
    Scope::new(Some(deadline), future)
}
