//! Collecting a body up to a limit ([`Collector`]), the excerpt of a non-2xx
//! body, and body errors as [`FetchError`]s.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};

use super::error::{FetchError, StatusHead, STATUS_BODY_EXCERPT};
use crate::BoxError;

/// Accumulates a body up to a limit, copying only when it arrives in more
/// than one frame.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    buf: Buf,
    len: u64,
}

#[derive(Debug, Default)]
enum Buf {
    #[default]
    Empty,
    One(Bytes),
    Many(Vec<u8>),
}

/// Why collecting stopped early.
pub(crate) enum CollectError<E> {
    /// More than the limit arrived.
    TooLarge,
    /// The body failed.
    Body(E),
}

impl Collector {
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len() as u64;
        self.buf = match std::mem::take(&mut self.buf) {
            Buf::Empty => Buf::One(data),
            Buf::One(first) => {
                let mut v = Vec::with_capacity(first.len() + data.len());
                v.extend_from_slice(&first);
                v.extend_from_slice(&data);
                Buf::Many(v)
            }
            Buf::Many(mut v) => {
                v.extend_from_slice(&data);
                Buf::Many(v)
            }
        };
    }

    /// Everything collected so far, as one slice.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match &self.buf {
            Buf::Empty => &[],
            Buf::One(b) => b,
            Buf::Many(v) => v,
        }
    }

    /// Everything collected so far.
    pub(crate) fn into_bytes(self) -> Bytes {
        match self.buf {
            Buf::Empty => Bytes::new(),
            Buf::One(b) => b,
            Buf::Many(v) => Bytes::from(v),
        }
    }

    /// Reads frames until the body ends (`Ready(Ok(()))`), fails, or
    /// more than `limit` bytes arrived. Never holds more than `limit` bytes
    /// plus one frame.
    pub(crate) fn poll_collect<B>(
        &mut self,
        mut body: Pin<&mut B>,
        limit: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), CollectError<B::Error>>>
    where
        B: http_body::Body<Data = Bytes>,
    {
        if self.len == 0 && matches!(body.size_hint().exact(), Some(n) if n > limit) {
            return Poll::Ready(Err(CollectError::TooLarge));
        }
        loop {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        if self.len.saturating_add(data.len() as u64) > limit {
                            return Poll::Ready(Err(CollectError::TooLarge));
                        }
                        self.push(data);
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(CollectError::Body(e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Reads up to [`STATUS_BODY_EXCERPT`] bytes for a status error; a body
    /// error just ends the excerpt. `Ready` once there is enough.
    pub(crate) fn poll_excerpt<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<()>
    where
        B: http_body::Body<Data = Bytes>,
    {
        while self.len < STATUS_BODY_EXCERPT as u64 {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(mut data) = frame.into_data() {
                        let room = STATUS_BODY_EXCERPT - self.len as usize;
                        data.truncate(room);
                        self.push(data);
                    }
                }
                Poll::Ready(Some(Err(_))) | Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

/// Turns a body error into a [`FetchError`], keeping it if it already is one
/// (as [`Body`]'s errors are).
pub(crate) fn body_error(err: impl Into<BoxError>, uri: &Uri) -> FetchError {
    match err.into().downcast::<FetchError>() {
        Ok(fetch) => *fetch,
        Err(source) => FetchError::Transport {
            url: uri.to_string(),
            source,
        },
    }
}

/// Reads the status excerpt of a non-2xx response into a
/// [`FetchError::Status`].
pub(crate) async fn status_error<B>(
    status: StatusCode,
    headers: &HeaderMap,
    uri: &Uri,
    body: B,
) -> FetchError
where
    B: http_body::Body<Data = Bytes>,
{
    let head = StatusHead::of(headers);
    let mut body = std::pin::pin!(body);
    let mut excerpt = Collector::default();
    std::future::poll_fn(|cx| excerpt.poll_excerpt(body.as_mut(), cx)).await;
    FetchError::status_of(uri.to_string(), status, head, excerpt.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};

    fn frames(parts: &[&'static [u8]]) -> impl http_body::Body<Data = Bytes, Error = BoxError> {
        let items: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures::stream::iter(items))
    }

    fn collect<B: http_body::Body<Data = Bytes> + Unpin>(
        body: &mut B,
        limit: u64,
    ) -> (Collector, Result<(), CollectError<B::Error>>) {
        let mut c = Collector::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match c.poll_collect(Pin::new(body), limit, &mut cx) {
            Poll::Ready(r) => (c, r),
            Poll::Pending => panic!("in-memory body is never pending"),
        }
    }

    #[test]
    fn collector_single_frame_is_zero_copy() {
        let mut body = frames(&[b"hello"]);
        let (c, r) = collect(&mut body, 100);
        assert!(r.is_ok());
        assert!(matches!(c.buf, Buf::One(_)));
        assert_eq!(c.into_bytes(), "hello");
    }

    #[test]
    fn collector_joins_frames_and_enforces_limit() {
        let mut body = frames(&[b"ab", b"", b"cd", b"e"]);
        let (c, r) = collect(&mut body, 5);
        assert!(r.is_ok());
        assert_eq!(c.as_slice(), b"abcde");

        let mut body = frames(&[b"ab", b"cd", b"ef"]);
        let (c, r) = collect(&mut body, 5);
        assert!(matches!(r, Err(CollectError::TooLarge)));
        assert_eq!(c.len(), 4, "the frame that crosses the limit is not kept");
    }

    #[test]
    fn collector_refuses_large_content_length_up_front() {
        let mut body = http_body_util::Full::new(Bytes::from_static(b"0123456789"));
        let (c, r) = collect(&mut body, 9);
        assert!(matches!(r, Err(CollectError::TooLarge)));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn excerpt_stops_at_the_cap() {
        static BIG: [u8; 3000] = [b'x'; 3000];
        let mut body = frames(&[&BIG, &BIG, &BIG]);
        let mut c = Collector::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(c.poll_excerpt(Pin::new(&mut body), &mut cx).is_ready());
        assert_eq!(c.len(), STATUS_BODY_EXCERPT as u64);
        // The third frame was never read.
        let rest = futures::executor::block_on(body.collect())
            .unwrap()
            .to_bytes();
        assert_eq!(rest.len(), 3000);
    }

    #[test]
    fn body_error_keeps_fetch_errors() {
        let uri: Uri = "http://h/".parse().unwrap();
        let e = body_error(
            FetchError::BodyTooLarge {
                url: "http://h/".into(),
                limit: 3,
            },
            &uri,
        );
        assert!(matches!(e, FetchError::BodyTooLarge { limit: 3, .. }));
        let e = body_error(std::io::Error::other("reset"), &uri);
        assert!(matches!(e, FetchError::Transport { .. }));
    }
}
