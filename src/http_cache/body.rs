//! [`HttpCacheBody`]: the body of every response an
//! [`HttpCache`](super::HttpCache) returns; and [`collect`], which reads
//! the inner service's body whole, up to the limit, to store it.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::error::UpstreamBodyError;
use crate::BoxError;

/// A response body from an [`HttpCache`](super::HttpCache): a stored
/// (or just collected) body in one piece, or the inner service's body
/// streaming through (a response not stored, or one larger than
/// [`max_body_bytes`](super::HttpCacheLayerBuilder::max_body_bytes),
/// after the part already read).
pub struct HttpCacheBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    Full {
        data: Option<Bytes>,
    },
    Stream {
        prefix: Option<Bytes>,
        inner: Pin<Box<B>>,
    },
}

impl<B> HttpCacheBody<B> {
    /// A body of these bytes.
    pub(crate) fn full(data: Bytes) -> Self {
        HttpCacheBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// An empty body.
    pub(crate) fn empty() -> Self {
        HttpCacheBody {
            kind: Kind::Full { data: None },
        }
    }

    /// `prefix` (already read), then the rest of `inner`.
    pub(crate) fn stream(prefix: Bytes, inner: Pin<Box<B>>) -> Self {
        HttpCacheBody {
            kind: Kind::Stream {
                prefix: (!prefix.is_empty()).then_some(prefix),
                inner,
            },
        }
    }
}

impl<B> fmt::Debug for HttpCacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full { data } => f
                .debug_struct("HttpCacheBody::Full")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream { .. } => f.write_str("HttpCacheBody::Stream"),
        }
    }
}

impl<B> Body for HttpCacheBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Stream { prefix, inner } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                inner.as_mut().poll_frame(cx).map_err(Into::into)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.is_none(),
            Kind::Stream { prefix, inner } => prefix.is_none() && inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Stream { prefix, inner } => {
                let p = prefix.as_ref().map_or(0, |d| d.len() as u64);
                let h = inner.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + p);
                if let Some(u) = h.upper() {
                    out.set_upper(u + p);
                }
                out
            }
        }
    }
}

/// A body read by [`collect`]: whole, or the part read before it went
/// over the limit and the rest, still to stream.
pub(crate) enum Collected<B> {
    Whole(Bytes),
    TooLarge(Bytes, Pin<Box<B>>),
}

/// Reads `body` whole if it is at most `max` bytes. A body that comes in
/// one piece is that piece, uncopied (`flow::Judged::keep` copies what
/// must be); one in several is gathered into a buffer.
pub(crate) async fn collect<B>(body: B, max: usize) -> Result<Collected<B>, BoxError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut first = Bytes::new();
    let mut gathered = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| UpstreamBodyError::new(e.into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = if first.is_empty() && gathered.is_empty() {
            first = data;
            first.len()
        } else {
            if gathered.is_empty() {
                gathered.extend_from_slice(&std::mem::take(&mut first));
            }
            gathered.extend_from_slice(&data);
            gathered.len()
        };
        if len > max {
            let prefix = if gathered.is_empty() {
                first
            } else {
                gathered.freeze()
            };
            return Ok(Collected::TooLarge(prefix, body));
        }
    }
    Ok(Collected::Whole(if gathered.is_empty() {
        first
    } else {
        gathered.freeze()
    }))
}
