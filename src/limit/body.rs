//! A response body that holds a concurrency permit until it ends.

use std::fmt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use crate::limit::gate::Permit;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// A response body carrying its call's concurrency permit; made by
    /// [`ConcurrencyLimitLayer::hold_until_body_end`](super::ConcurrencyLimitLayer::hold_until_body_end).
    ///
    /// The permit is released when the body yields its last frame, yields an
    /// error, or is dropped, whichever comes first. Data and trailers pass
    /// through unchanged.
    pub struct LimitBody<B> {
        #[pin]
        inner: B,
        permit: Option<Permit>,
    }
}

impl<B: Body> LimitBody<B> {
    pub(crate) fn new(inner: B, permit: Option<Permit>) -> Self {
        // An empty body will never be polled to its end by some readers.
        let permit = if inner.is_end_stream() { None } else { permit };
        LimitBody { inner, permit }
    }
}

impl<B> LimitBody<B> {
    /// Whether this body still holds its permit (it has not ended yet).
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }

    /// The wrapped body; the permit is released.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: fmt::Debug> fmt::Debug for LimitBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LimitBody")
            .field("inner", &self.inner)
            .field("holds_permit", &self.permit.is_some())
            .finish()
    }
}

impl<B: Body> Body for LimitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        match &frame {
            Some(Ok(_)) => {
                if this.inner.is_end_stream() {
                    this.permit.take();
                }
            }
            None | Some(Err(_)) => {
                this.permit.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
