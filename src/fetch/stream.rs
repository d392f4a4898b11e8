//! [`stream_body`] and [`BodyStream`]: a large body as a `Stream` of
//! bounded chunks, in flat memory.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use http::{HeaderMap, HeaderValue, StatusCode};
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
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        return Err(status_error(parts.status, &parts.headers, &uri, body).await);
    }
    Ok(BodyStream {
        content_length: body.size_hint().exact(),
        body: body.into_streaming(),
        pending: Bytes::new(),
        chunk_size: chunk_size.max(1),
        yielded: 0,
        state: StreamState::Running,
        status: parts.status,
        headers: owned(&parts.headers),
    })
}

/// `headers` with values of their own. hyper's values are slices of the
/// connection's read buffer (up to about 400 KiB), so a stream that kept
/// them would keep that buffer from being reused while it reads the body:
/// hyper then allocates a fresh buffer for each read, and the freed ones
/// go back to the system and fault in again (in `benches/fetch.rs`, three
/// to five times the page faults of a client that dropped the headers,
/// and a 1 MiB body about 8% slower). Copying a response's few values
/// costs far less.
fn owned(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        // A copy of a valid value is valid; the original is kept otherwise.
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue};

    /// A read buffer that says when it is freed.
    struct Buffer(Vec<u8>, Arc<AtomicBool>);

    impl AsRef<[u8]> for Buffer {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Buffer {
        fn drop(&mut self) {
            self.1.store(true, Ordering::SeqCst);
        }
    }

    /// The stream's fields hold no slice of the buffer the response was
    /// read into (as hyper's do), and keep every value, its repeats and
    /// its sensitivity.
    #[test]
    fn the_kept_fields_free_the_buffer_they_were_read_into() {
        let freed = Arc::new(AtomicBool::new(false));
        let buffer = Bytes::from_owner(Buffer(b"text/plainabcx-v1x-v2".to_vec(), freed.clone()));
        let mut headers = HeaderMap::new();
        let value =
            |at: std::ops::Range<usize>| HeaderValue::from_maybe_shared(buffer.slice(at)).unwrap();
        headers.insert("content-type", value(0..10));
        let mut token = value(10..13);
        token.set_sensitive(true);
        headers.insert("authorization", token);
        headers.append("x-repeat", value(13..17));
        headers.append("x-repeat", value(17..21));
        drop(buffer);

        let kept = super::owned(&headers);
        assert_eq!(kept, headers);
        assert!(kept["authorization"].is_sensitive());
        assert!(!freed.load(Ordering::SeqCst), "the original still holds it");
        drop(headers);
        assert!(
            freed.load(Ordering::SeqCst),
            "the kept fields hold the buffer"
        );
        assert_eq!(
            kept.get_all("x-repeat").iter().collect::<Vec<_>>(),
            ["x-v1", "x-v2"]
        );
    }
}
