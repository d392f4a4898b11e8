//! [`ResponseFuture`]: the inner call, delayed, or an answer made without
//! the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The future returned by [`Chaos`](super::Chaos).
    ///
    /// While injection is off it is the inner service's future and nothing
    /// else. An injected latency holds a boxed timer (allocated only for
    /// delayed calls) and polls the inner future once it has fired; an
    /// injected error or substituted response is ready at once.
    pub struct ResponseFuture<F, Res, E> {
        #[pin]
        kind: Kind<F, Res, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, Res, E> {
        Inner { #[pin] future: F },
        Delayed { sleep: Pin<Box<Sleep>>, #[pin] future: F },
        Ready { result: Option<Result<Res, E>> },
    }
}

impl<F, Res, E> ResponseFuture<F, Res, E> {
    #[inline]
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn delayed(sleep: Sleep, future: F) -> Self {
        ResponseFuture {
            kind: Kind::Delayed {
                sleep: Box::pin(sleep),
                future,
            },
        }
    }

    pub(crate) fn ready(result: Result<Res, E>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                result: Some(result),
            },
        }
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res, E>
where
    F: Future<Output = Result<Res, E>>,
{
    type Output = Result<Res, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Delayed { sleep, future } => {
                // Once fired, the timer answers at once on every poll.
                ready!(sleep.as_mut().poll(cx));
                future.poll(cx)
            }
            KindProj::Ready { result } => Poll::Ready(
                result
                    .take()
                    .expect("chaos::ResponseFuture polled after completion"),
            ),
        }
    }
}

impl<F, Res, E> fmt::Debug for ResponseFuture<F, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Delayed { .. } => "delayed",
            Kind::Ready { .. } => "injected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
