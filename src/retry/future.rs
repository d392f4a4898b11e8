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

use super::layer::Shared;
use super::replay::Replay;
use crate::classify::{Classify, Outcome};
use crate::trace::trace_event;

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
    /// future, a clone of the inner service, the request copy and a
    /// reference to the layer's shared state: nothing is allocated. The
    /// backoff timer is boxed the first time a retry has to wait, and
    /// reused after that.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future, Result<S::Response, S::Error>>,
        sleep: Option<Pin<Box<Sleep>>>,
        service: S,
        request: Option<Req>,
        shared: Arc<Shared<C>>,
        // Attempts sent so far, the first included.
        attempts: u32,
        prev_delay: Duration,
        deadline: Option<Instant>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        // An attempt is in flight.
        Calling { #[pin] future: F },
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
        shared: Arc<Shared<C>>,
        deadline: Option<Instant>,
    ) -> Self {
        ResponseFuture {
            state: State::Calling { future },
            sleep: None,
            service,
            request,
            shared,
            attempts: 1,
            prev_delay: Duration::ZERO,
            deadline,
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
            State::Sleeping { .. } => "sleeping",
            State::Readying { .. } => "waiting for readiness",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .field("attempts", &self.attempts)
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    if this.shared.classify.classify(&result) != Outcome::Failure {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    }
                    let Some((delay, now)) = plan_retry(
                        this.shared,
                        *this.attempts,
                        this.request.is_some(),
                        *this.prev_delay,
                        *this.deadline,
                        &result,
                    ) else {
                        this.state.set(State::Done);
                        return Poll::Ready(result);
                    };
                    *this.prev_delay = delay;
                    if delay.is_zero() {
                        arm_deadline(this.sleep, *this.deadline);
                        this.state.set(State::Readying { last: Some(result) });
                    } else {
                        arm(this.sleep, now + delay);
                        this.state.set(State::Sleeping { last: Some(result) });
                    }
                }
                StateProj::Sleeping { last } => {
                    if let Some(sleep) = this.sleep.as_mut() {
                        ready!(sleep.as_mut().poll(cx));
                    }
                    let last = last.take();
                    arm_deadline(this.sleep, *this.deadline);
                    this.state.set(State::Readying { last });
                }
                StateProj::Readying { last } => {
                    // With a deadline the timer is armed at it: no attempt
                    // starts once it has passed, even if readiness takes
                    // that long.
                    if this.deadline.is_some() {
                        if let Some(sleep) = this.sleep.as_mut() {
                            if sleep.as_mut().poll(cx).is_ready() {
                                trace_event!(
                                    INFO,
                                    attempts = *this.attempts,
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
                    *this.attempts += 1;
                    if *this.attempts < this.shared.config.max_attempts {
                        *this.request = req.replay();
                    }
                    this.shared.counters.retries.fetch_add(1, Ordering::Relaxed);
                    trace_event!(
                        INFO,
                        attempt = *this.attempts,
                        max_attempts = this.shared.config.max_attempts,
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

/// Decides whether a failed attempt is retried; returns the delay and the
/// current time if so. Counts budget refusals.
#[cold]
#[inline(never)]
fn plan_retry<C, Res, E>(
    shared: &Shared<C>,
    attempts: u32,
    have_copy: bool,
    prev_delay: Duration,
    deadline: Option<Instant>,
    result: &Result<Res, E>,
) -> Option<(Duration, Instant)>
where
    C: Classify<Res, E>,
{
    let config = &shared.config;
    if attempts >= config.max_attempts {
        trace_event!(INFO, attempts, "retry: giving up, attempts exhausted");
        return None;
    }
    if !have_copy {
        trace_event!(
            INFO,
            attempts,
            "retry: giving up, request cannot be replayed"
        );
        return None;
    }
    let backoff = &config.backoff;
    let delay = match shared.classify.retry_after(result) {
        Some(asked) => asked.min(backoff.max_delay),
        None => backoff.delay(attempts, prev_delay),
    };
    let now = Instant::now();
    if let Some(deadline) = deadline {
        // Neither a sleep that would end past the deadline nor an attempt
        // starting at it.
        if now.checked_add(delay).is_none_or(|end| end >= deadline) {
            trace_event!(
                INFO,
                attempts,
                delay_ms = delay.as_millis() as u64,
                "retry: giving up, the next attempt would start past the deadline"
            );
            return None;
        }
    }
    if let Some(budget) = &shared.budget {
        if !budget.try_withdraw(now, &shared.counters.first) {
            shared.counters.refusals.fetch_add(1, Ordering::Relaxed);
            trace_event!(WARN, attempts, "retry: budget exhausted, not retrying");
            return None;
        }
    }
    trace_event!(
        INFO,
        attempts,
        delay_ms = delay.as_millis() as u64,
        "retry: attempt failed, backing off"
    );
    Some((delay, now))
}

/// Points the (lazily boxed) timer at `at`.
fn arm(sleep: &mut Option<Pin<Box<Sleep>>>, at: Instant) {
    match sleep {
        Some(sleep) => sleep.as_mut().reset(at),
        None => *sleep = Some(Box::pin(tokio::time::sleep_until(at))),
    }
}

/// Points the timer at the deadline, if there is one.
fn arm_deadline(sleep: &mut Option<Pin<Box<Sleep>>>, deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        arm(sleep, deadline);
    }
}
