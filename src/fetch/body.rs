//! Response bodies: [`Body`] (limits and deadlines while the body streams
//! in) and [`BodyStream`] / [`stream_body`] (large bodies in bounded chunks).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, StatusCode, Uri};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::client::{Config, Counters, HttpClient};
use super::error::{FetchError, STATUS_BODY_EXCERPT};
use crate::trace::trace_event;
use crate::BoxError;

/// The response body of [`HttpClient`]: hyper's body with the client's
/// limits enforced as it streams in.
///
/// - More than `max_body_bytes` bytes (by `Content-Length` up front, or by
///   counting as frames arrive) ends the body with
///   [`FetchError::BodyTooLarge`]; no more is read.
/// - The client's `timeout` is a deadline for the whole exchange, body
///   included: when it passes the body ends with [`FetchError::Timeout`].
///
/// Collect it with [`http_body_util::BodyExt::collect`], or read frames one by
/// one; errors are [`FetchError`]s.
pub struct Body {
    inner: Incoming,
    uri: Uri,
    limit: u64,
    read: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    config: Arc<Config>,
    /// `true`: the deadline restarts after every data frame (an idle
    /// timeout, for [`BodyStream`]); `false`: one deadline for the exchange.
    idle: bool,
    checked_len: bool,
    done: bool,
}

impl Body {
    pub(crate) fn new(
        inner: Incoming,
        uri: Uri,
        deadline: Option<Pin<Box<Sleep>>>,
        config: Arc<Config>,
    ) -> Self {
        Body {
            inner,
            uri,
            limit: config.max_body_bytes,
            read: 0,
            deadline,
            timeout: config.timeout,
            config,
            idle: false,
            checked_len: false,
            done: false,
        }
    }

    /// The body length limit in bytes (`u64::MAX`: none).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many body bytes have been read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Streams need no length limit (memory stays flat) and no total
    /// deadline: from now on the body fails only if no data arrives for
    /// the client's timeout.
    pub(crate) fn into_streaming(mut self) -> Self {
        self.limit = u64::MAX;
        self.idle = true;
        if let Some(deadline) = self.deadline.as_mut() {
            deadline.as_mut().reset(Instant::now() + self.timeout);
        }
        self
    }

    fn too_large(&mut self) -> FetchError {
        self.done = true;
        Counters::bump(&self.config.counters.bodies_too_large);
        trace_event!(DEBUG, url = %self.uri, limit = self.limit, "fetch: response body over the limit");
        FetchError::BodyTooLarge {
            url: self.uri.to_string(),
            limit: self.limit,
        }
    }
}

impl Body {
    fn timed_out(&mut self) -> FetchError {
        self.done = true;
        Counters::bump(&self.config.counters.timeouts);
        trace_event!(DEBUG, url = %self.uri, timeout = ?self.timeout, "fetch: body timed out");
        FetchError::Timeout {
            url: self.uri.to_string(),
            after: self.timeout,
        }
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body")
            .field("uri", &self.uri)
            .field("limit", &self.limit)
            .field("read", &self.read)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = FetchError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, FetchError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.checked_len {
            this.checked_len = true;
            if matches!(this.inner.size_hint().exact(), Some(n) if n > this.limit) {
                return Poll::Ready(Some(Err(this.too_large())));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read = this.read.saturating_add(data.len() as u64);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(this.too_large())));
                    }
                    if let Some(deadline) = this.deadline.as_mut() {
                        if this.idle {
                            if !data.is_empty() {
                                deadline.as_mut().reset(Instant::now() + this.timeout);
                            }
                        } else if deadline.is_elapsed() {
                            // Data that never stops coming still ends at the deadline.
                            return Poll::Ready(Some(Err(this.timed_out())));
                        }
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.done = true;
                Counters::bump(&this.config.counters.transport_errors);
                Poll::Ready(Some(Err(FetchError::Transport {
                    url: this.uri.to_string(),
                    source: Box::new(err),
                })))
            }
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Some(Err(this.timed_out())));
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

// ===== collecting =====

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
pub(crate) async fn status_error<B>(status: StatusCode, uri: &Uri, body: B) -> FetchError
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut excerpt = Collector::default();
    std::future::poll_fn(|cx| excerpt.poll_excerpt(body.as_mut(), cx)).await;
    FetchError::Status {
        url: uri.to_string(),
        status,
        body: excerpt.into_bytes(),
    }
}

// ===== streaming =====

/// Fetches `url` with a `GET` and streams its body in chunks of at most
/// `chunk_size` bytes (the seed's `AsyncDataStreamer`).
///
/// Memory stays flat however large the body is: the stream holds one
/// network frame at a time and hands out zero-copy slices of it. For the
/// same reason the client's `max_body_bytes` does not apply here (cap the
/// total yourself with [`StreamExt::take`](futures::StreamExt::take) if you
/// need to). The client's `timeout` bounds the wait for the response head
/// and then every wait for more data (an idle timeout), so a long download
/// that keeps moving never times out.
///
/// A `chunk_size` of 0 is treated as 1.
///
/// # Errors
///
/// Before streaming: [`FetchError::InvalidUri`], [`FetchError::Transport`],
/// [`FetchError::Timeout`], and [`FetchError::Status`] for a non-2xx answer.
/// While streaming, the stream yields one `Err` ([`FetchError::Transport`]
/// or [`FetchError::Timeout`]) and then ends.
///
/// ```no_run
/// # async fn run() -> Result<(), tower_patterns::fetch::FetchError> {
/// use futures::StreamExt;
/// use tower_patterns::fetch::{self, HttpClient};
///
/// let client = HttpClient::new();
/// let mut chunks = fetch::stream_body(&client, "http://127.0.0.1:8080/stream?bytes=1000000", 64 * 1024).await?;
/// while let Some(chunk) = chunks.next().await {
///     let chunk = chunk?;
///     assert!(chunk.len() <= 64 * 1024);
/// }
/// println!("{} bytes", chunks.total().unwrap_or(0));
/// # Ok(()) }
/// ```
pub async fn stream_body(
    client: &HttpClient,
    url: impl AsRef<str>,
    chunk_size: usize,
) -> Result<BodyStream, FetchError> {
    let req = super::client::get_request(url.as_ref(), None)?;
    let uri = req.uri().clone();
    let resp = client.request(req).await?;
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        return Err(status_error(parts.status, &uri, body).await);
    }
    Ok(BodyStream {
        content_length: body.size_hint().exact(),
        body: body.into_streaming(),
        pending: Bytes::new(),
        chunk_size: chunk_size.max(1),
        yielded: 0,
        state: StreamState::Running,
        status: parts.status,
        headers: parts.headers,
    })
}

/// The body of a response as a [`Stream`] of chunks of at most `chunk_size`
/// bytes; made by [`stream_body`].
///
/// Yields `Ok(chunk)`s, then either ends (and [`total`](Self::total) is the
/// byte count) or yields one `Err` and ends.
pub struct BodyStream {
    body: Body,
    pending: Bytes,
    chunk_size: usize,
    yielded: u64,
    state: StreamState,
    content_length: Option<u64>,
    status: StatusCode,
    headers: HeaderMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Running,
    Finished,
    Failed,
}

impl BodyStream {
    /// Bytes handed out so far.
    pub fn bytes_read(&self) -> u64 {
        self.yielded
    }

    /// The body's total size once the stream has ended cleanly (`None`
    /// before that, and after an error).
    pub fn total(&self) -> Option<u64> {
        (self.state == StreamState::Finished).then_some(self.yielded)
    }

    /// The `Content-Length` the server announced, if any.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// The maximum size of a chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The response status (always 2xx).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("uri", &self.body.uri)
            .field("chunk_size", &self.chunk_size)
            .field("bytes_read", &self.yielded)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, FetchError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.chunk_size.min(this.pending.len());
                let chunk = this.pending.split_to(n);
                this.yielded += n as u64;
                return Poll::Ready(Some(Ok(chunk)));
            }
            if this.state != StreamState::Running {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers carry no body bytes: skip them.
                    if let Ok(data) = frame.into_data() {
                        this.pending = data;
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.state = StreamState::Failed;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.state = StreamState::Finished;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.state != StreamState::Running && self.pending.is_empty() {
            return (0, Some(0));
        }
        (usize::from(!self.pending.is_empty()), None)
    }
}

impl futures::stream::FusedStream for BodyStream {
    fn is_terminated(&self) -> bool {
        self.state != StreamState::Running && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
