//! [`Body`]: the response body of an [`HttpClient`](super::HttpClient),
//! with the client's limit and deadline enforced while it streams in.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::error::FetchError;
use super::shared::{Config, Counters};
use crate::time;
use crate::trace::trace_event;

/// The response body of [`HttpClient`](super::HttpClient): hyper's body with the client's
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
    /// Streaming only: when data last arrived, if after the deadline was
    /// last set. The idle deadline is moved lazily, once it fires, instead
    /// of on every frame: a reset goes through the timer driver's lock,
    /// and a 1 MiB body can arrive in hundreds of frames.
    last_data: Option<Instant>,
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
            last_data: None,
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
            deadline
                .as_mut()
                .reset(time::deadline(Instant::now(), self.timeout));
        }
        self
    }

    /// The URI this body answers.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
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
                                this.last_data = Some(Instant::now());
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
                #[cfg(feature = "metrics")]
                this.config
                    .metrics
                    .with(|m| m.body_size.record(this.read as f64));
                Poll::Ready(None)
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut() {
                    while deadline.as_mut().poll(cx).is_ready() {
                        // Streaming: data since the deadline was set moves
                        // it to `timeout` after the last data, exactly.
                        let moved = this
                            .last_data
                            .take()
                            .map(|last| time::deadline(last, this.timeout))
                            .filter(|next| *next > deadline.deadline());
                        match moved {
                            Some(next) => deadline.as_mut().reset(next),
                            None => return Poll::Ready(Some(Err(this.timed_out()))),
                        }
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
