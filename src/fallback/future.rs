//! [`ResponseFuture`]: the primary call and, if it fails, the fallback.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::hook::OnFallback;
use super::shared::Shared;
use super::strategy::Strategy;
use crate::classify::{error_outcome, Classify, Outcome};
use crate::trace::trace_event;

/// Whether `result` calls for the fallback: a failure, or an error that is
/// one of the crate's own rejections (an open breaker, a full limit). A
/// rejection is no answer at all, so it falls back although it is
/// [`Outcome::Ignored`] for retry and the breaker; any other `Ignored`
/// result (an HTTP 404) is an answer and is returned.
#[inline]
pub(crate) fn falls_back<C, Res, E: 'static>(classify: &C, result: &Result<Res, E>) -> bool
where
    C: Classify<Res, E>,
{
    match classify.classify(result) {
        Outcome::Success => false,
        Outcome::Failure => true,
        Outcome::Ignored => match result {
            Ok(_) => false,
            Err(e) => error_outcome(e) == Outcome::Ignored,
        },
    }
}

pin_project! {
    /// The future returned by [`Fallback`](super::Fallback): the primary
    /// call, and the fallback's answer if the primary failed.
    ///
    /// While the primary call is in flight it holds the primary's future,
    /// a copy of the classifier, what the strategy keeps of the request
    /// (nothing, or a copy of it for a backup), the layer's id and two
    /// empty pointers: no allocation and, while another handle to the
    /// layer is alive, no reference count. When the call fails it looks
    /// the layer's state up by id (see
    /// [the module docs](super#lifetimes-and-cost)) and keeps the
    /// fallback's work in one allocation.
    pub struct ResponseFuture<S, Req, St, C, H>
    where
        S: Service<Req>,
        St: Strategy<Req, S::Response, S::Error>,
    {
        #[pin]
        primary: Option<S::Future>,
        saved: Option<St::Saved>,
        classify: C,
        id: u64,
        // One pointer for everything off the success path (a lone handle's
        // hold on the layer, the fallback's work): on a success it is
        // written and read back as one word, so the drop's null check
        // reads what the store forwards.
        slow: Thin<Pin<Box<Slow<St::Saved, Result<S::Response, S::Error>, St::Future, Arc<Shared<St, H>>>>>>,
    }
}

/// An `Option` whose drop inlines to a null check, so the success path
/// never calls out to drop it.
struct Thin<T>(Option<T>);

impl<T> Drop for Thin<T> {
    #[inline]
    fn drop(&mut self) {
        #[inline(never)]
        fn drop_slow<T>(value: T) {
            drop(value);
        }
        if let Some(value) = self.0.take() {
            drop_slow(value);
        }
    }
}

pin_project! {
    // The fallback's work, boxed: only failed calls get here.
    #[project = SlowProj]
    enum Slow<Saved, T, G, A> {
        // A lone handle's call while the primary runs: the future holds
        // the layer's state (the handle may be gone when it fails).
        Holding { shared: Option<A> },
        // The primary failed (in its future, or in its readiness); `hold`
        // is a lone handle's hold on the layer's state.
        Failed { saved: Option<Saved>, failed: Option<T>, hold: Option<A> },
        // The fallback's answer; `shared` counts its outcome.
        Serving { #[pin] future: G, shared: A },
        Done,
    }
}

impl<S, Req, St, C, H> ResponseFuture<S, Req, St, C, H>
where
    S: Service<Req>,
    St: Strategy<Req, S::Response, S::Error>,
{
    #[inline]
    pub(crate) fn primary(
        future: S::Future,
        saved: St::Saved,
        classify: C,
        id: u64,
        hold: Option<Arc<Shared<St, H>>>,
    ) -> Self {
        ResponseFuture {
            primary: Some(future),
            saved: Some(saved),
            classify,
            id,
            slow: Thin(hold.map(|shared| {
                Box::pin(Slow::Holding {
                    shared: Some(shared),
                })
            })),
        }
    }

    pub(crate) fn failed(
        failed: Result<S::Response, S::Error>,
        saved: St::Saved,
        classify: C,
        id: u64,
        hold: Option<Arc<Shared<St, H>>>,
    ) -> Self {
        ResponseFuture {
            primary: None,
            saved: None,
            classify,
            id,
            slow: Thin(Some(Box::pin(Slow::Failed {
                saved: Some(saved),
                failed: Some(failed),
                hold,
            }))),
        }
    }
}

impl<S, Req, St, C, H> Future for ResponseFuture<S, Req, St, C, H>
where
    S: Service<Req>,
    S::Error: 'static,
    St: Strategy<Req, S::Response, S::Error> + Send + Sync + 'static,
    H: OnFallback<S::Response, S::Error> + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // The success path, kept small so it inlines; the rest is out of line.
        let mut this = self.as_mut().project();
        if let Some(future) = this.primary.as_mut().as_pin_mut() {
            let result = ready!(future.poll(cx));
            this.primary.set(None);
            if !falls_back(this.classify, &result) {
                return Poll::Ready(result);
            }
            let saved = this.saved.take();
            return self.fall_back(saved, result, cx);
        }
        self.poll_fallback(cx)
    }
}

impl<S, Req, St, C, H> ResponseFuture<S, Req, St, C, H>
where
    S: Service<Req>,
    S::Error: 'static,
    St: Strategy<Req, S::Response, S::Error> + Send + Sync + 'static,
    H: OnFallback<S::Response, S::Error> + Send + Sync + 'static,
    C: Classify<S::Response, S::Error>,
{
    /// The primary failed: box the fallback's work and start it.
    #[cold]
    #[inline(never)]
    fn fall_back(
        self: Pin<&mut Self>,
        saved: Option<St::Saved>,
        failed: Result<S::Response, S::Error>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        let mut this = self;
        let slot = &mut this.as_mut().project().slow.0;
        match slot {
            // A lone handle's call: keep the box, and the hold in it.
            Some(slow) => {
                let hold = match slow.as_mut().project() {
                    SlowProj::Holding { shared } => shared.take(),
                    _ => None,
                };
                slow.set(Slow::Failed {
                    saved,
                    failed: Some(failed),
                    hold,
                });
            }
            None => {
                *slot = Some(Box::pin(Slow::Failed {
                    saved,
                    failed: Some(failed),
                    hold: None,
                }));
            }
        }
        this.poll_fallback(cx)
    }

    #[inline(never)]
    fn poll_fallback(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        let this = self.project();
        let slow = this
            .slow
            .0
            .as_mut()
            .expect("fallback::ResponseFuture polled after completion");
        loop {
            match slow.as_mut().project() {
                SlowProj::Failed {
                    saved,
                    failed,
                    hold,
                } => {
                    let (saved, failed) = (saved.take(), failed.take());
                    let failed =
                        failed.expect("fallback::ResponseFuture lost the primary's result");
                    let shared = match hold.take() {
                        Some(shared) => Some(shared),
                        None => Shared::<St, H>::lookup(*this.id),
                    };
                    let (Some(shared), Some(saved)) = (shared, saved) else {
                        // Every handle to the layer is gone: nothing left
                        // to answer with; the failure goes to the caller.
                        slow.set(Slow::Done);
                        return Poll::Ready(failed);
                    };
                    shared.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                    trace_event!(
                        DEBUG,
                        error = failed.is_err(),
                        "fallback: the primary failed; serving the fallback"
                    );
                    shared.hook.on_fallback(&failed);
                    let future = shared.strategy.serve(saved, failed);
                    slow.set(Slow::Serving { future, shared });
                }
                SlowProj::Serving { future, shared } => {
                    let result = ready!(future.poll(cx));
                    if falls_back(this.classify, &result) {
                        let failures = &shared.counters.fallback_failures;
                        failures.fetch_add(1, Ordering::Relaxed);
                        trace_event!(WARN, "fallback: the fallback failed too");
                        #[cfg(feature = "metrics")]
                        if let Some(metrics) = &shared.counters.metrics {
                            metrics.with(|m| m.failed.increment(1));
                        }
                    } else {
                        #[cfg(feature = "metrics")]
                        if let Some(metrics) = &shared.counters.metrics {
                            metrics.with(|m| m.served.increment(1));
                        }
                    }
                    slow.set(Slow::Done);
                    return Poll::Ready(result);
                }
                SlowProj::Holding { .. } | SlowProj::Done => {
                    panic!("fallback::ResponseFuture polled after completion")
                }
            }
        }
    }
}

impl<S, Req, St, C, H> fmt::Debug for ResponseFuture<S, Req, St, C, H>
where
    S: Service<Req>,
    St: Strategy<Req, S::Response, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (&self.primary, self.slow.0.as_deref()) {
            (Some(_), _) => "primary",
            (None, Some(Slow::Failed { .. })) => "failed",
            (None, Some(Slow::Serving { .. })) => "fallback",
            (None, Some(Slow::Holding { .. })) => "done",
            (None, _) => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
