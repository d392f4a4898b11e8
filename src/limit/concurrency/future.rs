//! The fixed-limit response future.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use crate::limit::gate::Permit;
use pin_project_lite::pin_project;

use super::policy::{ReleaseOnResponse, ReleasePolicy};
use crate::limit::error::Overloaded;
use crate::BoxError;

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            permit: Option<Permit>,
        },
        Overloaded {
            error: Option<Overloaded>,
        },
    }
}

pin_project! {
    /// The response future of [`ConcurrencyLimit`]: holds the call's permit
    /// until the inner future completes or this future is dropped.
    pub struct ResponseFuture<F, P = ReleaseOnResponse> {
        #[pin]
        kind: Kind<F>,
        _policy: PhantomData<fn() -> P>,
    }
}

impl<F, P> ResponseFuture<F, P> {
    pub(super) fn called(future: F, permit: Permit) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                permit: Some(permit),
            },
            _policy: PhantomData,
        }
    }

    pub(super) fn overloaded(error: Overloaded) -> Self {
        ResponseFuture {
            kind: Kind::Overloaded { error: Some(error) },
            _policy: PhantomData,
        }
    }
}

impl<F, P> fmt::Debug for ResponseFuture<F, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, P, Res, E> Future for ResponseFuture<F, P>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    P: ReleasePolicy<Res>,
{
    type Output = Result<P::Response, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, permit } => match ready!(future.poll(cx)) {
                Ok(response) => Poll::Ready(Ok(P::attach(response, permit.take()))),
                Err(e) => {
                    drop(permit.take());
                    Poll::Ready(Err(e.into()))
                }
            },
            KindProj::Overloaded { error } => {
                let error = error
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
