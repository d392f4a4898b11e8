//! The adaptive response future: reports each call to the algorithm.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::algorithm::Sample;
use super::shared::Permit;
use crate::classify::Classify;
use crate::limit::error::Overloaded;
use crate::BoxError;

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
            started: Instant,
            classify: C,
        },
        Overloaded {
            error: Option<Overloaded>,
        },
    }
}

pin_project! {
    /// The response future of [`AdaptiveLimit`]: holds the permit, and on
    /// completion reports the call's latency and outcome to the algorithm.
    /// Dropped before completion, it releases the permit and reports nothing.
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: FutureKind<F, C>,
    }
}

impl<F, C> ResponseFuture<F, C> {
    /// A call under `permit`, timed from now.
    pub(super) fn called(future: F, permit: Permit, classify: C) -> Self {
        ResponseFuture {
            kind: FutureKind::Called {
                future,
                permit: Some(permit),
                started: Instant::now(),
                classify,
            },
        }
    }

    /// A call the limiter refused; the inner service was not called.
    pub(super) fn overloaded(error: Overloaded) -> Self {
        ResponseFuture {
            kind: FutureKind::Overloaded { error: Some(error) },
        }
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, Res, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    C: Classify<Res, E>,
{
    type Output = Result<Res, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Called {
                future,
                permit,
                started,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(permit) = permit.take() {
                    let sample = Sample {
                        started: *started,
                        rtt: started.elapsed(),
                        in_flight: permit.in_flight,
                        dropped: classify.classify(&result).is_failure(),
                    };
                    permit.shared.on_sample(&sample);
                    // Released after the resize, so a lower limit can
                    // retire this very permit.
                    drop(permit);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            FutureKindProj::Overloaded { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
