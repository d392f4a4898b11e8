//! [`ResponseFuture`]: the future an [`HttpCache`](super::HttpCache)
//! returns.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;

use super::body::HttpCacheBody;
use crate::BoxError;

type Boxed<ResB> =
    Pin<Box<dyn Future<Output = Result<Response<HttpCacheBody<ResB>>, BoxError>> + Send>>;

/// The response future of [`HttpCache`](super::HttpCache): ready at once
/// for an answer from the store (no allocation), a boxed future when the
/// inner service is asked.
pub struct ResponseFuture<ResB> {
    kind: Kind<ResB>,
}

enum Kind<ResB> {
    Ready(Option<Response<HttpCacheBody<ResB>>>),
    Inner(Boxed<ResB>),
}

impl<ResB> ResponseFuture<ResB> {
    pub(crate) fn ready(res: Response<HttpCacheBody<ResB>>) -> Self {
        ResponseFuture {
            kind: Kind::Ready(Some(res)),
        }
    }

    pub(crate) fn inner(fut: Boxed<ResB>) -> Self {
        ResponseFuture {
            kind: Kind::Inner(fut),
        }
    }
}

impl<ResB> fmt::Debug for ResponseFuture<ResB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Ready(_) => "ready",
            Kind::Inner(_) => "inner",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<ResB> Future for ResponseFuture<ResB> {
    type Output = Result<Response<HttpCacheBody<ResB>>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Ready(res) => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
            Kind::Inner(fut) => fut.as_mut().poll(cx),
        }
    }
}
