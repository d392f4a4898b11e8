//! [`CollectFuture`]: awaits a response and reads its body into one
//! buffer of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Uri};
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
                    let bytes = own(&mut parts.headers, std::mem::take(this.collected));
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

/// Copies the body and the header values into one buffer of their own
/// size, and returns the body.
///
/// hyper hands out both as slices of the connection's read buffer (8 KiB
/// at least). A response a cache keeps would pin that whole buffer, and
/// hyper would then allocate a fresh one for the connection's next read:
/// with 10,000 entries that is ~100 MB held and an allocation per request
/// (`benches/http_stack.rs`, "responses kept"). One exact-size copy costs
/// far less.
fn own(headers: &mut HeaderMap, collected: Collector) -> Bytes {
    let body = collected.as_slice();
    let len = body.len() + headers.values().map(HeaderValue::len).sum::<usize>();
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(body);
    for v in headers.values() {
        buf.extend_from_slice(v.as_bytes());
    }
    let buf = buf.freeze();
    let mut at = body.len();
    for v in headers.values_mut() {
        let n = v.len();
        // The same bytes, so still valid; kept as they were if not.
        if let Ok(mut owned) = HeaderValue::from_maybe_shared(buf.slice(at..at + n)) {
            owned.set_sensitive(v.is_sensitive());
            *v = owned;
        }
        at += n;
    }
    buf.slice(..body.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_puts_body_and_header_values_in_one_exact_buffer() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("one"));
        let mut secret = HeaderValue::from_static("two");
        secret.set_sensitive(true);
        headers.insert("x-b", secret);
        // A body that is a slice of a much larger buffer, as hyper's are.
        let big = Bytes::from(vec![b'x'; 8192]);
        let mut collected = Collector::default();
        let mut body = Full::new(big.slice(..5));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(collected
            .poll_collect(Pin::new(&mut body), 100, &mut cx)
            .is_ready());

        let body = own(&mut headers, collected);
        assert_eq!(body, "xxxxx");
        assert_eq!(headers["x-a"], "one");
        assert_eq!(headers["x-b"], "two");
        assert!(headers["x-b"].is_sensitive());
        // Body and values are adjacent in one allocation of 5 + 3 + 3 bytes.
        let start = body.as_ptr() as usize;
        assert_eq!(headers["x-a"].as_bytes().as_ptr() as usize, start + 5);
        assert_eq!(headers["x-b"].as_bytes().as_ptr() as usize, start + 8);
    }
}
