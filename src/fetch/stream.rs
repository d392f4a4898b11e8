//! [`stream_body`] and [`BodyStream`]: a large body as a `Stream` of
//! bounded chunks, in flat memory.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, StatusCode};
use http_body::Body as _;

use super::body::Body;
use super::client::HttpClient;
use super::collect::status_error;
use super::error::FetchError;
use super::uri::get_request;

/// Fetches `url` with a `GET` and streams its body in chunks of at most
/// `chunk_size` bytes (an async iterator over a large download, in Python
/// terms).
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
    let req = get_request(url.as_ref(), None)?;
    let uri = req.uri().clone();
    let resp = client.request(req).await?;
    let (mut parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        return Err(status_error(parts.status, &parts.headers, &uri, body).await);
    }
    // hyper's values would keep its read buffer from being reused for the
    // body (see `crate::fields`).
    crate::fields::own(&mut parts.headers);
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
            .field("uri", self.body.uri())
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
