//! [`ResponseFuture`]: one request's attempts, backoff sleeps and retries.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::plan::plan_retry;
use super::replay::Replay;
use super::shared::{Config, Core};
use crate::classify::{Classify, Outcome};
use crate::deadline;
use crate::time;
use crate::trace::{record, trace_event};

pin_project! {
    /// The future returned by [`Retry`](super::Retry): drives the first
    /// attempt and, while the classifier says
    /// [`Failure`](crate::classify::Outcome::Failure) and the limits allow,
    /// backs off and retries.
    ///
    /// It resolves to the result of the last attempt made, unchanged.
    /// Dropping it at any point stops everything: no further attempt, no
    /// sleep left behind.
    ///
    /// While the first attempt is in flight it holds only the inner
    /// future, a clone of the inner service, the request copy, a copy of
    /// the configuration and classifier, and the layer's id: nothing is
    /// allocated and no reference count is touched. When an attempt first
    /// fails and is retried, one allocation holds the retry bookkeeping
    /// (backoff timer, attempt count, the layer's shared state, looked up
    /// by id). If by then every handle to the layer has been dropped, as
    /// with `oneshot` on a one-off layer, retries go on as configured but
    /// outside the budget and the statistics, which no one can read any
    /// more.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future, Result<S::Response, S::Error>>,
        service: S,
        request: Option<Req>,
        classify: C,
        config: Config,
        core_id: u64,
        deadline: Option<Instant>,
        // Created by the first retry.
        slow: SlowBox,
    }
}

/// The boxed retry bookkeeping, with a drop that inlines to a null check
/// so the success path never calls out to drop it.
struct SlowBox(Option<Pin<Box<Slow>>>);

impl Drop for SlowBox {
    #[inline]
    fn drop(&mut self) {
        #[inline(never)]
        fn drop_slow(slow: Pin<Box<Slow>>) {
            drop(slow);
        }
        if let Some(slow) = self.0.take() {
            drop_slow(slow);
        }
    }
}

pin_project! {
    // Everything only retries need, boxed so the first attempt's future
    // stays small.
    struct Slow {
        // Backoff timer, also armed at the deadline while waiting for
        // readiness. Created on first use: no runtime is needed otherwise.
        #[pin]
        sleep: Option<Sleep>,
        // `None` once every handle to the layer is gone.
        core: Option<Arc<Core>>,
        // Attempts sent so far, the first included.
        attempts: u32,
        prev_delay: Duration,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        // An attempt is in flight.
        Calling { #[pin] future: F },
        // An attempt failed; deciding whether to retry.
        Failed { last: Option<T> },
        // Backing off; `last` is the failed result returned if we stop.
        Sleeping { last: Option<T> },
        // Waiting for the inner service to be ready for the next attempt.
        Readying { last: Option<T> },
        // The result was returned.
        Done,
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        request: Option<Req>,
        config: Config,
        classify: C,
        core_id: u64,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            service,
            request,
            classify,
            config,
            core_id,
            deadline,
            slow: SlowBox(None),
        }
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Calling { .. } => "calling",
            State::Failed { .. } => "failed",
            State::Sleeping { .. } => "sleeping",
            State::Readying { .. } => "waiting for readiness",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.slow.0.as_ref().map_or(1, |s| s.attempts))
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<S, Req, C> Future for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    Req: Replay,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The first attempt's fast path, kept small so it inlines; every
        // other state lives in the out-of-line `poll_retrying`.
        let mut this = self.as_mut().project();
        if let StateProj::Calling { future } = this.state.as_mut().project() {
            let result = ready!(future.poll(cx));
            if this.classify.classify(&result) != Outcome::Failure {
                this.state.set(State::Done);
                return Poll::Ready(result);
            }
            this.state.set(State::Failed { last: Some(result) });
        }
        self.poll_retrying(cx)
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    Req: Replay,
    C: Classify<S::Response, S::Error>,
{
    #[inline(never)]
    fn poll_retrying(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    if this.classify.classify(&result) != Outcome::Failure {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    }
                    this.state.set(State::Failed { last: Some(result) });
                }
                StateProj::Failed { last } => {
                    let last = last.take();
                    let Some(result) = last else {
                        return finish(this.state, None);
                    };
                    let (attempts, prev_delay) = match this.slow.0.as_ref() {
                        Some(slow) => (slow.attempts, slow.prev_delay),
                        None => (1, Duration::ZERO),
                    };
                    // The first failure looks the shared state up once,
                    // and the deadline in force (never read on success).
                    let looked_up = match this.slow.0 {
                        Some(_) => None,
                        None => {
                            if let Some(outer) = deadline::current() {
                                let outer = outer.instant();
                                *this.deadline =
                                    Some(this.deadline.map_or(outer, |own| own.min(outer)));
                            }
                            Core::lookup(*this.core_id)
                        }
                    };
                    let core = match this.slow.0.as_ref() {
                        Some(slow) => slow.core.as_deref(),
                        None => looked_up.as_deref(),
                    };
                    let Some((delay, now)) = plan_retry(
                        this.config,
                        this.classify,
                        core,
                        attempts,
                        this.request.is_some(),
                        prev_delay,
                        *this.deadline,
                        &result,
                    ) else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    let slow = this.slow.0.get_or_insert_with(|| {
                        Box::pin(Slow {
                            sleep: None,
                            core: looked_up,
                            attempts: 1,
                            prev_delay: Duration::ZERO,
                        })
                    });
                    let mut slow = slow.as_mut().project();
                    *slow.prev_delay = delay;
                    if delay.is_zero() {
                        arm_deadline(slow.sleep, *this.deadline);
                        this.state.set(State::Readying { last: Some(result) });
                        // Retrying at once: take a unit of tokio's
                        // cooperative budget, so a service that fails
                        // instantly cannot hold the executor for
                        // `max_attempts` rounds in one poll. (The old path
                        // works from tokio 1.37 to today.)
                        #[allow(deprecated)]
                        let coop = tokio::task::consume_budget();
                        if std::pin::pin!(coop).poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    } else {
                        arm(slow.sleep.as_mut(), time::deadline(now, delay));
                        this.state.set(State::Sleeping { last: Some(result) });
                    }
                }
                StateProj::Sleeping { last } => {
                    if let Some(slow) = this.slow.0.as_mut() {
                        let slow = slow.as_mut().project();
                        if let Some(sleep) = slow.sleep.as_pin_mut() {
                            ready!(sleep.poll(cx));
                        }
                    }
                    let last = last.take();
                    if let Some(slow) = this.slow.0.as_mut() {
                        arm_deadline(slow.as_mut().project().sleep, *this.deadline);
                    }
                    this.state.set(State::Readying { last });
                }
                StateProj::Readying { last } => {
                    let Some(slow) = this.slow.0.as_mut() else {
                        // Unreachable: retries always have their bookkeeping.
                        let last = last.take();
                        return finish(this.state, last);
                    };
                    let slow = slow.as_mut().project();
                    // With a deadline the timer is armed at it: no attempt
                    // starts once it has passed, even if readiness takes
                    // that long.
                    if this.deadline.is_some() {
                        if let Some(sleep) = slow.sleep.as_pin_mut() {
                            if sleep.poll(cx).is_ready() {
                                if let Some(core) = slow.core.as_deref() {
                                    core.deadline_stops.fetch_add(1, Ordering::Relaxed);
                                    record!(core.metrics, |m| m.deadline.increment(1));
                                }
                                trace_event!(
                                    INFO,
                                    attempts = *slow.attempts,
                                    "retry: deadline passed while waiting for the service to be ready"
                                );
                                let last = last.take();
                                return finish(this.state, last);
                            }
                        }
                    }
                    match this.service.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let Some(req) = this.request.take() else {
                        // Unreachable: `plan_retry` checked there is a copy.
                        let last = last.take();
                        return finish(this.state, last);
                    };
                    *slow.attempts += 1;
                    if *slow.attempts < this.config.max_attempts {
                        *this.request = req.replay();
                    }
                    if let Some(core) = slow.core.as_deref() {
                        core.retries.fetch_add(1, Ordering::Relaxed);
                        record!(core.metrics, |m| m.retry.increment(1));
                    }
                    trace_event!(
                        INFO,
                        attempt = *slow.attempts,
                        max_attempts = this.config.max_attempts,
                        "retry: sending attempt"
                    );
                    let future = this.service.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Done => panic!("retry::ResponseFuture polled after completion"),
            }
        }
    }
}

/// Returns `last` (always `Some` in practice) and marks the future done.
fn finish<F, T>(mut state: Pin<&mut State<F, T>>, last: Option<T>) -> Poll<T> {
    state.set(State::Done);
    match last {
        Some(last) => Poll::Ready(last),
        None => panic!("retry::ResponseFuture lost its last result"),
    }
}

/// Points the timer at `at`, creating it on first use.
fn arm(mut sleep: Pin<&mut Option<Sleep>>, at: Instant) {
    match sleep.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => sleep.set(Some(tokio::time::sleep_until(at))),
    }
}

/// Points the timer at the deadline, if there is one.
fn arm_deadline(sleep: Pin<&mut Option<Sleep>>, deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        arm(sleep, deadline);
    }
}
