//! [`ResponseFuture`]: the inner call, or (boxed, only when a fault was
//! drawn) a delayed call or an answer made without the inner service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The future returned by [`Chaos`](super::Chaos).
    ///
    /// While injection is off, or a call draws no fault, it is the inner
    /// service's future and one empty pointer: dropping it after the call
    /// checks that pointer and nothing else. A call that draws a fault
    /// holds that fault in one allocation: the timer and the inner future
    /// for a latency, the answer for an error or a substituted response.
    pub struct ResponseFuture<F, Res, E> {
        #[pin]
        inner: Option<F>,
        fault: FaultBox<F, Res, E>,
    }
}

/// The boxed fault, with a drop that inlines to a null check so the
/// fault-free path never calls out to drop it.
struct FaultBox<F, Res, E>(Option<Pin<Box<Fault<F, Res, E>>>>);

impl<F, Res, E> Drop for FaultBox<F, Res, E> {
    #[inline]
    fn drop(&mut self) {
        #[inline(never)]
        fn drop_fault<T>(fault: T) {
            drop(fault);
        }
        if let Some(fault) = self.0.take() {
            drop_fault(fault);
        }
    }
}

pin_project! {
    #[project = FaultProj]
    enum Fault<F, Res, E> {
        Delayed { #[pin] sleep: Sleep, #[pin] future: F },
        Ready { result: Option<Result<Res, E>> },
    }
}

impl<F, Res, E> ResponseFuture<F, Res, E> {
    #[inline]
    pub(crate) fn inner(future: F) -> Self {
        ResponseFuture {
            inner: Some(future),
            fault: FaultBox(None),
        }
    }

    fn fault(fault: Fault<F, Res, E>) -> Self {
        ResponseFuture {
            inner: None,
            fault: FaultBox(Some(Box::pin(fault))),
        }
    }

    pub(crate) fn delayed(sleep: Sleep, future: F) -> Self {
        Self::fault(Fault::Delayed { sleep, future })
    }

    pub(crate) fn ready(result: Result<Res, E>) -> Self {
        Self::fault(Fault::Ready {
            result: Some(result),
        })
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res, E>
where
    F: Future<Output = Result<Res, E>>,
{
    type Output = Result<Res, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(future) = this.inner.as_pin_mut() {
            return future.poll(cx);
        }
        poll_fault(this.fault, cx)
    }
}

#[inline(never)]
fn poll_fault<F, Res, E>(
    fault: &mut FaultBox<F, Res, E>,
    cx: &mut Context<'_>,
) -> Poll<Result<Res, E>>
where
    F: Future<Output = Result<Res, E>>,
{
    let fault = fault
        .0
        .as_mut()
        .expect("chaos::ResponseFuture holds a call or a fault");
    match fault.as_mut().project() {
        FaultProj::Delayed { sleep, future } => {
            // Once fired, the timer answers at once on every poll.
            ready!(sleep.poll(cx));
            future.poll(cx)
        }
        FaultProj::Ready { result } => Poll::Ready(
            result
                .take()
                .expect("chaos::ResponseFuture polled after completion"),
        ),
    }
}

impl<F, Res, E> fmt::Debug for ResponseFuture<F, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.fault.0.as_deref() {
            None => "inner",
            Some(Fault::Delayed { .. }) => "delayed",
            Some(Fault::Ready { .. }) => "injected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
