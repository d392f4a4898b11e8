//! The [`ResponseFuture`] of the [`Cache`](super::Cache) service.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::error::LoadAbandoned;
use super::flight::Waiter;
use crate::BoxError;

pin_project! {
    /// The response future of [`Cache`](super::Cache): ready at once on a
    /// hit, waiting for the shared load on a miss.
    ///
    /// Dropping it at any point is safe: a load it started keeps running
    /// for the other callers and still fills the cache.
    pub struct ResponseFuture<F, Res> {
        #[pin]
        kind: Kind<F, Res>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, Res> {
        Ready { value: Option<Result<Res, BoxError>> },
        Waiting { waiter: Waiter<Res> },
        Direct { #[pin] fut: F },
    }
}

impl<F, Res> ResponseFuture<F, Res> {
    #[inline]
    pub(crate) fn ready(value: Result<Res, BoxError>) -> Self {
        ResponseFuture {
            kind: Kind::Ready { value: Some(value) },
        }
    }

    pub(crate) fn waiting(waiter: Waiter<Res>) -> Self {
        ResponseFuture {
            kind: Kind::Waiting { waiter },
        }
    }

    pub(crate) fn direct(fut: F) -> Self {
        ResponseFuture {
            kind: Kind::Direct { fut },
        }
    }
}

impl<F, Res, E> Future for ResponseFuture<F, Res>
where
    F: Future<Output = Result<Res, E>>,
    E: Into<BoxError>,
    Res: Clone,
{
    type Output = Result<Res, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { value } => {
                Poll::Ready(value.take().unwrap_or_else(|| Err(Box::new(LoadAbandoned))))
            }
            KindProj::Waiting { waiter } => Pin::new(waiter).poll(cx),
            KindProj::Direct { fut } => fut.poll(cx).map(|r| r.map_err(Into::into)),
        }
    }
}

impl<F, Res> fmt::Debug for ResponseFuture<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Ready { .. } => "ready",
            Kind::Waiting { .. } => "waiting",
            Kind::Direct { .. } => "direct",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
