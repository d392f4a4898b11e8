//! The one place that decides what a JSON answer is: a 2xx status, a body
//! within the limit, and JSON of the wanted type. [`fetch_json`](super::fetch_json),
//! [`Json`](super::Json) and paginate's `JsonPages` all await a [`DecodeJson`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, Uri};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;

use super::collect::{body_error, CollectError, Collector};
use super::error::{FetchError, StatusHead};
use crate::BoxError;

/// What a [`DecodeJson`] keeps of the response head beside the value:
/// nothing (`()`, for [`Json`](super::Json) and `fetch_json`) or the
/// headers (`HeaderMap`, for paginate's `Link` walk).
pub(crate) trait Head {
    /// Keeps what is wanted of a 2xx answer's headers.
    fn keep(headers: HeaderMap) -> Self;
}

impl Head for () {
    #[inline]
    fn keep(_: HeaderMap) -> Self {}
}

impl Head for HeaderMap {
    #[inline]
    fn keep(headers: HeaderMap) -> Self {
        headers
    }
}

/// Why [`DecodeJson`] failed: the inner service, or our own check.
pub(crate) enum Failure<E> {
    /// The service that was to answer failed.
    Inner(E),
    /// The answer was not a 2xx JSON body of the wanted type within the limit.
    Fetch(FetchError),
}

pin_project! {
    /// Awaits a response, then collects and decodes its body (or reads a
    /// status excerpt).
    pub(crate) struct DecodeJson<F, B, T, H> {
        #[pin]
        state: DecodeState<F, B, H>,
        uri: Uri,
        limit: u64,
        collected: Collector,
        _t: PhantomData<fn() -> T>,
    }
}

pin_project! {
    #[project = DecodeStateProj]
    enum DecodeState<F, B, H> {
        Waiting { #[pin] fut: F },
        Reading {
            #[pin]
            body: B,
            status: StatusCode,
            // What is kept of a 2xx answer's head.
            head: Option<H>,
            // What `FetchError::Status` keeps of a non-2xx answer's head.
            failed: Option<StatusHead>,
        },
        Done,
    }
}

impl<F, B, T, H> DecodeJson<F, B, T, H> {
    /// Decodes the answer of `fut` (a request for `uri`), collecting at most
    /// `limit` body bytes.
    pub(crate) fn new(fut: F, uri: Uri, limit: u64) -> Self {
        DecodeJson {
            state: DecodeState::Waiting { fut },
            uri,
            limit,
            collected: Collector::default(),
            _t: PhantomData,
        }
    }

    /// The URI of the request.
    pub(crate) fn uri(&self) -> &Uri {
        &self.uri
    }
}

impl<F, E, B, T, H> Future for DecodeJson<F, B, T, H>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
    T: DeserializeOwned,
    H: Head,
{
    type Output = Result<(H, T), Failure<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (body, status, head, failed) = match this.state.as_mut().project() {
                DecodeStateProj::Waiting { fut } => match ready!(fut.poll(cx)) {
                    Ok(resp) => {
                        let (parts, body) = resp.into_parts();
                        let failed =
                            (!parts.status.is_success()).then(|| StatusHead::of(&parts.headers));
                        let head = parts.status.is_success().then(|| H::keep(parts.headers));
                        this.state.set(DecodeState::Reading {
                            body,
                            status: parts.status,
                            head,
                            failed,
                        });
                        continue;
                    }
                    Err(e) => {
                        this.state.set(DecodeState::Done);
                        return Poll::Ready(Err(Failure::Inner(e)));
                    }
                },
                DecodeStateProj::Reading {
                    body,
                    status,
                    head,
                    failed,
                } => (body, *status, head, failed),
                DecodeStateProj::Done => panic!("fetch::JsonFuture polled after completion"),
            };
            let out = if status.is_success() {
                let read = ready!(this.collected.poll_collect(body, *this.limit, cx));
                let collected = std::mem::take(this.collected);
                match read {
                    Ok(()) => serde_json::from_slice::<T>(collected.as_slice())
                        .map(|value| {
                            (
                                head.take().unwrap_or_else(|| H::keep(HeaderMap::new())),
                                value,
                            )
                        })
                        .map_err(|e| FetchError::decode(this.uri.to_string(), e)),
                    Err(CollectError::TooLarge) => Err(FetchError::BodyTooLarge {
                        url: this.uri.to_string(),
                        limit: *this.limit,
                    }),
                    Err(CollectError::Body(e)) => Err(body_error(e, this.uri)),
                }
            } else {
                ready!(this.collected.poll_excerpt(body, cx));
                Err(FetchError::status_of(
                    this.uri.to_string(),
                    status,
                    failed.take().unwrap_or_default(),
                    std::mem::take(this.collected).into_bytes(),
                ))
            };
            // Drops the body (and with it the connection if unread).
            this.state.set(DecodeState::Done);
            return Poll::Ready(out.map_err(Failure::Fetch));
        }
    }
}
