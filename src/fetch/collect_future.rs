//! [`CollectFuture`]: awaits a response and reads its body into one
//! buffer of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::collect::{CollectError, Collector};
use super::error::FetchError;

pin_project! {
    /// The future of a [`Collect`](super::Collect) service: the inner
    /// service's response with its body read to the end.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops the inner future or the half-read body (and with
    /// it, for an [`HttpClient`](super::HttpClient), the connection).
    pub struct CollectFuture<F, B> {
        #[pin]
        state: State<F, B>,
        uri: Uri,
        limit: u64,
        collected: Collector,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Waiting { #[pin] fut: F },
        Reading { #[pin] body: B, parts: Option<http::response::Parts> },
        Done,
    }
}

impl<F, B> CollectFuture<F, B> {
    pub(crate) fn new(fut: F, uri: Uri, limit: u64) -> Self {
        CollectFuture {
            state: State::Waiting { fut },
            uri,
            limit,
            collected: Collector::default(),
        }
    }
}

impl<F, B, E> Future for CollectFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<E>,
    E: From<FetchError>,
{
    type Output = Result<http::Response<Full<Bytes>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (body, parts) = match this.state.as_mut().project() {
                StateProj::Waiting { fut } => match ready!(fut.poll(cx)) {
                    Ok(resp) => {
                        let (parts, body) = resp.into_parts();
                        this.state.set(State::Reading {
                            body,
                            parts: Some(parts),
                        });
                        continue;
                    }
                    Err(e) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                },
                StateProj::Reading { body, parts } => (body, parts),
                StateProj::Done => panic!("fetch::CollectFuture polled after completion"),
            };
            let read = ready!(this.collected.poll_collect(body, *this.limit, cx));
            let out = match read {
                Ok(()) => {
                    let mut parts = parts.take().expect("parts are kept until the body is read");
                    // Body and fields in one buffer of their own, not slices
                    // of hyper's read buffer (see `crate::fields`).
                    let collected = std::mem::take(this.collected);
                    let bytes =
                        crate::fields::own_with_body(&mut parts.headers, collected.as_slice());
                    Ok(http::Response::from_parts(parts, Full::new(bytes)))
                }
                Err(CollectError::TooLarge) => Err(E::from(FetchError::BodyTooLarge {
                    url: this.uri.to_string(),
                    limit: *this.limit,
                })),
                Err(CollectError::Body(e)) => Err(e.into()),
            };
            // Drops the body (and with it the connection if unread).
            this.state.set(State::Done);
            return Poll::Ready(out);
        }
    }
}
