//! [`ResponseFuture`]: one request's first attempt, its hedge timer and its
//! hedged attempts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::shared::{Config, Core};
use crate::classify::{Classify, Outcome};
use crate::deadline;
use crate::retry::Replay;
use crate::time;
use crate::trace::trace_event;

pin_project! {
    /// The future returned by [`Hedge`](super::Hedge): drives the first
    /// attempt and, if it has not answered after the hedge delay, sends
    /// hedged attempts and returns the first acceptable answer.
    ///
    /// - An answer the classifier does not call a
    ///   [`Failure`](crate::classify::Outcome::Failure) wins at once; the
    ///   attempts still in flight are dropped (cancelled) then and there.
    /// - A failure does not win while another attempt is in flight. When
    ///   none is, the **last** failure is returned (earlier ones are counted
    ///   in [`HedgeStats::loser_errors`](super::HedgeStats::loser_errors)).
    ///   A failure is never a reason to send a hedge: hedging is not
    ///   retrying (put a [`RetryLayer`](crate::retry::RetryLayer) around
    ///   the hedge for that).
    ///
    /// While the first poll finds the answer ready, it holds only the inner
    /// future, a clone of the inner service, the request copy, a copy of
    /// the configuration and classifier, and the layer's id: no
    /// allocation, no clock read, no timer. The first time the inner call
    /// is pending, one allocation holds the timer and the hedging
    /// bookkeeping.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops every attempt in flight and its timer.
    pub struct ResponseFuture<S, Req, C>
    where
        S: Service<Req>,
    {
        #[pin]
        primary: Option<S::Future>,
        // The service hedges are sent through (`None` when not hedged).
        service: Option<S>,
        // The copy the next hedge sends; `None` when not hedged.
        request: Option<Req>,
        classify: C,
        config: Config,
        core_id: u64,
        // Created the first time the first attempt is pending.
        slow: SlowBox<S::Future, Result<S::Response, S::Error>>,
    }
}

/// The boxed hedging bookkeeping, with a drop that inlines to a null check
/// so the no-hedge path never calls out to drop it.
struct SlowBox<F, T>(Option<Pin<Box<Slow<F, T>>>>);

impl<F, T> Drop for SlowBox<F, T> {
    #[inline]
    fn drop(&mut self) {
        #[inline(never)]
        fn drop_slow<F, T>(slow: Pin<Box<Slow<F, T>>>) {
            drop(slow);
        }
        if let Some(slow) = self.0.take() {
            drop_slow(slow);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The timer for the next hedge is armed.
    Waiting,
    /// The timer fired: waiting for the inner service to be ready.
    Readying,
    /// No more hedges: all sent, refused by the budget, or the service
    /// failed its readiness check.
    Exhausted,
    /// The result was returned.
    Done,
}

pin_project! {
    #[project = SlowProj]
    struct Slow<F, T> {
        #[pin]
        sleep: Sleep,
        // When the first attempt was first found pending.
        started: Instant,
        // The delay between attempts for this request.
        delay: Duration,
        // The layer's state, looked up on first need; `None` once every
        // handle to the layer is gone.
        core: Option<Arc<Core>>,
        looked_up: bool,
        hedges: Vec<Pin<Box<F>>>,
        sent: u32,
        phase: Phase,
        // The latest failure, returned if no attempt succeeds.
        failure: Option<T>,
        // Failed attempts that will not be the answer.
        lost: u64,
        // How long the first attempt took, once it has answered.
        primary_latency: Option<Duration>,
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: Option<S>,
        request: Option<Req>,
        config: Config,
        classify: C,
        core_id: u64,
    ) -> Self {
        ResponseFuture {
            primary: Some(future),
            service,
            request,
            classify,
            config,
            core_id,
            slow: SlowBox(None),
        }
    }
}

impl<S, Req, C> fmt::Debug for ResponseFuture<S, Req, C>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (phase, hedges) = match &self.slow.0 {
            Some(slow) => (format!("{:?}", slow.phase), slow.sent),
            None if self.primary.is_some() => ("first attempt".to_string(), 0),
            None => ("done".to_string(), 0),
        };
        f.debug_struct("ResponseFuture")
            .field("phase", &phase)
            .field("hedged", &self.request.is_some())
            .field("hedges_sent", &hedges)
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
        // The fast path, kept small so it inlines: the first attempt alone,
        // no clock, no timer. Everything else is in `poll_hedging`.
        let mut this = self.as_mut().project();
        if this.slow.0.is_none() {
            let Some(primary) = this.primary.as_mut().as_pin_mut() else {
                panic!("hedge::ResponseFuture polled after completion");
            };
            if let Poll::Ready(result) = primary.poll(cx) {
                this.primary.set(None);
                return Poll::Ready(result);
            }
            if this.request.is_none() {
                // Not hedged: the inner future alone decides.
                return Poll::Pending;
            }
        }
        self.poll_hedging(cx)
    }
}

impl<S, Req, C> ResponseFuture<S, Req, C>
where
    S: Service<Req>,
    Req: Replay,
    C: Classify<S::Response, S::Error>,
{
    #[inline(never)]
    fn poll_hedging(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        let mut this = self.project();
        let config = *this.config;
        let slow = this.slow.0.get_or_insert_with(|| {
            // The first attempt is pending: start the clock. In percentile
            // mode the delay is the layer's learned one.
            let now = Instant::now();
            let (core, looked_up) = match config.percentile {
                Some(_) => (Core::lookup(*this.core_id), true),
                None => (None, false),
            };
            let delay = core
                .as_deref()
                .and_then(Core::learned_delay)
                .unwrap_or(config.delay);
            Box::pin(Slow {
                sleep: tokio::time::sleep_until(time::deadline(now, delay)),
                started: now,
                delay,
                core,
                looked_up,
                hedges: Vec::new(),
                sent: 0,
                phase: Phase::Waiting,
                failure: None,
                lost: 0,
                primary_latency: None,
            })
        });
        let mut slow = slow.as_mut().project();
        if *slow.phase == Phase::Done {
            panic!("hedge::ResponseFuture polled after completion");
        }
        loop {
            // Every attempt in flight, the first one first.
            if let Some(primary) = this.primary.as_mut().as_pin_mut() {
                if let Poll::Ready(result) = primary.poll(cx) {
                    this.primary.set(None);
                    *slow.primary_latency = Some(slow.started.elapsed());
                    let outcome = this.classify.classify(&result);
                    let in_flight = slow.hedges.len();
                    if let Some(answer) = settle(&mut slow, outcome, result, in_flight) {
                        return Poll::Ready(finish(
                            this.primary,
                            slow,
                            config,
                            *this.core_id,
                            false,
                            answer,
                        ));
                    }
                }
            }
            let mut i = 0;
            while i < slow.hedges.len() {
                let Poll::Ready(result) = slow.hedges[i].as_mut().poll(cx) else {
                    i += 1;
                    continue;
                };
                drop(slow.hedges.swap_remove(i));
                let outcome = this.classify.classify(&result);
                let in_flight = slow.hedges.len() + usize::from(this.primary.is_some());
                let won = outcome != Outcome::Failure;
                if let Some(answer) = settle(&mut slow, outcome, result, in_flight) {
                    return Poll::Ready(finish(
                        this.primary,
                        slow,
                        config,
                        *this.core_id,
                        won,
                        answer,
                    ));
                }
            }

            // The next hedge: timer, readiness, budget, send.
            match *slow.phase {
                Phase::Waiting => {
                    if slow.sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    *slow.phase = Phase::Readying;
                }
                Phase::Readying => {
                    let (Some(service), Some(_)) = (this.service.as_mut(), this.request.as_ref())
                    else {
                        *slow.phase = Phase::Exhausted;
                        continue;
                    };
                    match service.poll_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(_)) => {
                            // The service cannot take more requests; the
                            // attempts in flight go on.
                            trace_event!(
                                DEBUG,
                                "hedge: the service failed its readiness check; no hedge sent"
                            );
                            stop(this.service, this.request, slow.phase);
                            continue;
                        }
                        Poll::Ready(Ok(())) => {}
                    }
                    let now = Instant::now();
                    // A hedge that could not answer before the deadline in
                    // force (less time left than the delay between
                    // attempts) is not sent.
                    if deadline::current()
                        .is_some_and(|d| d.instant().saturating_duration_since(now) < *slow.delay)
                    {
                        trace_event!(DEBUG, "hedge: too close to the deadline; no hedge sent");
                        if let Some(core) = core(slow.core, slow.looked_up, *this.core_id) {
                            core.deadline_stop();
                        }
                        stop(this.service, this.request, slow.phase);
                        continue;
                    }
                    let granted = match core(slow.core, slow.looked_up, *this.core_id) {
                        Some(core) => core.try_hedge(now),
                        None => true,
                    };
                    if !granted {
                        trace_event!(DEBUG, "hedge: budget spent; no hedge sent");
                        stop(this.service, this.request, slow.phase);
                        continue;
                    }
                    let Some(req) = this.request.take() else {
                        continue;
                    };
                    *slow.sent += 1;
                    if *slow.sent < config.max_hedges {
                        *this.request = req.replay();
                    }
                    trace_event!(
                        DEBUG,
                        hedge = *slow.sent,
                        max_hedges = config.max_hedges,
                        waited = ?now.saturating_duration_since(*slow.started),
                        "hedge: first attempt is slow; sending a hedged attempt"
                    );
                    slow.hedges.push(Box::pin(service.call(req)));
                    if this.request.is_some() {
                        slow.sleep.as_mut().reset(time::deadline(now, *slow.delay));
                        *slow.phase = Phase::Waiting;
                    } else {
                        *slow.phase = Phase::Exhausted;
                        *this.service = None;
                    }
                }
                Phase::Exhausted | Phase::Done => return Poll::Pending,
            }
        }
    }
}

/// No more hedges for this request.
fn stop<S, Req>(service: &mut Option<S>, request: &mut Option<Req>, phase: &mut Phase) {
    *service = None;
    *request = None;
    *phase = Phase::Exhausted;
}

/// The layer's state, looked up once.
fn core<'a>(core: &'a mut Option<Arc<Core>>, looked_up: &mut bool, id: u64) -> Option<&'a Core> {
    if !*looked_up {
        *looked_up = true;
        *core = Core::lookup(id);
    }
    core.as_deref()
}

/// Takes a finished attempt's result: `Some(answer)` when the request is
/// answered (an acceptable result, or the last failure with nothing else
/// in flight), `None` to wait for the other attempts.
fn settle<F, T>(
    slow: &mut SlowProj<'_, F, T>,
    outcome: Outcome,
    result: T,
    in_flight: usize,
) -> Option<T> {
    if outcome != Outcome::Failure {
        if slow.failure.take().is_some() {
            *slow.lost += 1;
        }
        return Some(result);
    }
    if slow.failure.replace(result).is_some() {
        *slow.lost += 1;
    }
    if in_flight == 0 {
        return slow.failure.take();
    }
    None
}

/// Ends the request: cancels the attempts still in flight, counts them,
/// records the first attempt's latency (percentile mode) and returns the
/// answer.
fn finish<F, T>(
    mut primary: Pin<&mut Option<F>>,
    slow: SlowProj<'_, F, T>,
    config: Config,
    core_id: u64,
    hedge_won: bool,
    answer: T,
) -> T {
    let primary_running = primary.is_some();
    let cancelled = slow.hedges.len() as u64 + u64::from(primary_running);
    // Cancel the losers now, not when the caller drops this future.
    primary.set(None);
    slow.hedges.clear();
    *slow.phase = Phase::Done;
    let sample = if config.percentile.is_some() {
        // A cancelled first attempt ran at least this long.
        Some(
            slow.primary_latency
                .unwrap_or_else(|| slow.started.elapsed()),
        )
    } else {
        None
    };
    if hedge_won || *slow.lost > 0 || cancelled > 0 || sample.is_some() {
        if let Some(core) = core(slow.core, slow.looked_up, core_id) {
            core.finish(hedge_won, *slow.lost, cancelled);
            if let Some(latency) = sample {
                core.record_latency(Instant::now(), latency);
            }
        }
    }
    answer
}
