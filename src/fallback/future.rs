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
    /// (nothing, or a copy of it for a backup) and the layer's id: no
    /// allocation and, while another handle to the layer is alive, no
    /// reference count. When the call fails it looks the layer's state up
    /// by id (see [the module docs](super#lifetimes-and-cost)).
    pub struct ResponseFuture<S, Req, St, C, H>
    where
        S: Service<Req>,
        St: Strategy<Req, S::Response, S::Error>,
    {
        #[pin]
        state: State<S::Future, St::Saved, Result<S::Response, S::Error>, St::Future>,
        classify: C,
        id: u64,
        shared: Option<Arc<Shared<St, H>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, Saved, T, G> {
        // The primary call.
        Primary { #[pin] future: F, saved: Option<Saved> },
        // The primary failed before it was called (its readiness).
        Failed { saved: Option<Saved>, failed: Option<T> },
        // The fallback's answer.
        Serving { #[pin] future: G },
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
        shared: Option<Arc<Shared<St, H>>>,
    ) -> Self {
        ResponseFuture {
            state: State::Primary {
                future,
                saved: Some(saved),
            },
            classify,
            id,
            shared,
        }
    }

    pub(crate) fn failed(
        failed: Result<S::Response, S::Error>,
        saved: St::Saved,
        classify: C,
        id: u64,
        shared: Option<Arc<Shared<St, H>>>,
    ) -> Self {
        ResponseFuture {
            state: State::Failed {
                saved: Some(saved),
                failed: Some(failed),
            },
            classify,
            id,
            shared,
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
        if let StateProj::Primary { future, saved } = this.state.as_mut().project() {
            let result = ready!(future.poll(cx));
            if !falls_back(this.classify, &result) {
                this.state.set(State::Done);
                return Poll::Ready(result);
            }
            let saved = saved.take();
            this.state.set(State::Failed {
                saved,
                failed: Some(result),
            });
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
    #[inline(never)]
    fn poll_fallback(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Response, S::Error>> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Primary { .. } => {
                    unreachable!("fallback::ResponseFuture: the primary is polled first")
                }
                StateProj::Failed { saved, failed } => {
                    let (saved, failed) = (saved.take(), failed.take());
                    let failed =
                        failed.expect("fallback::ResponseFuture lost the primary's result");
                    let shared = match this.shared.take() {
                        Some(shared) => Some(shared),
                        None => Shared::<St, H>::lookup(*this.id),
                    };
                    let (Some(shared), Some(saved)) = (shared, saved) else {
                        // Every handle to the layer is gone: nothing left
                        // to answer with; the failure goes to the caller.
                        this.state.set(State::Done);
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
                    *this.shared = Some(shared);
                    this.state.set(State::Serving { future });
                }
                StateProj::Serving { future } => {
                    let result = ready!(future.poll(cx));
                    if falls_back(this.classify, &result) {
                        if let Some(shared) = this.shared.as_deref() {
                            let failures = &shared.counters.fallback_failures;
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                        trace_event!(WARN, "fallback: the fallback failed too");
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Done => panic!("fallback::ResponseFuture polled after completion"),
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
        let state = match &self.state {
            State::Primary { .. } => "primary",
            State::Failed { .. } => "failed",
            State::Serving { .. } => "fallback",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
