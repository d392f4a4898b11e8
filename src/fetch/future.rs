//! [`ResponseFuture`]: the response head of an [`HttpClient`](super::HttpClient)
//! call, within the client's deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Response, Uri};
use tokio::time::Sleep;

use super::body::Body;
use super::error::FetchError;
use super::shared::{Config, Counters};
use crate::trace::trace_event;

/// Counts a request as finished when its future completes or is dropped.
pub(crate) struct InFlight(pub(crate) Arc<Config>);

impl Drop for InFlight {
    fn drop(&mut self) {
        Counters::bump(&self.0.counters.finished);
    }
}

/// The future of [`HttpClient`](super::HttpClient)'s `call`: the response
/// head, or a [`FetchError`].
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture {
    state: State,
}

enum State {
    Failed(FetchError),
    Waiting {
        fut: hyper_util::client::legacy::ResponseFuture,
        uri: Uri,
        deadline: Pin<Box<Sleep>>,
        in_flight: InFlight,
        #[cfg(feature = "metrics")]
        started: tokio::time::Instant,
    },
    Done,
}

impl ResponseFuture {
    pub(crate) fn failed(err: FetchError) -> Self {
        ResponseFuture {
            state: State::Failed(err),
        }
    }

    pub(crate) fn waiting(
        fut: hyper_util::client::legacy::ResponseFuture,
        uri: Uri,
        deadline: Pin<Box<Sleep>>,
        in_flight: InFlight,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                fut,
                uri,
                deadline,
                in_flight,
                #[cfg(feature = "metrics")]
                started: tokio::time::Instant::now(),
            },
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Failed(_) => "failed",
            State::Waiting { .. } => "waiting",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, FetchError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let (fut, deadline, config) = match &mut this.state {
            State::Waiting {
                fut,
                deadline,
                in_flight,
                ..
            } => (fut, deadline, &in_flight.0),
            State::Failed(_) => match std::mem::replace(&mut this.state, State::Done) {
                State::Failed(err) => return Poll::Ready(Err(err)),
                _ => unreachable!(),
            },
            State::Done => panic!("fetch::ResponseFuture polled after completion"),
        };
        let result = match Pin::new(fut).poll(cx) {
            Poll::Ready(result) => Ok(result),
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Err(config.timeout),
                Poll::Pending => return Poll::Pending,
            },
        };
        let State::Waiting {
            uri,
            deadline,
            in_flight,
            #[cfg(feature = "metrics")]
            started,
            ..
        } = std::mem::replace(&mut this.state, State::Done)
        else {
            unreachable!()
        };
        // The request is finished (dropping the guard counts it); the body
        // keeps the config for its own limit, deadline and counters.
        let config = Arc::clone(&in_flight.0);
        drop(in_flight);
        #[cfg(feature = "metrics")]
        config.metrics.with(|m| {
            let class = match &result {
                Ok(Ok(resp)) => match resp.status().as_u16() / 100 {
                    1 => &m.s1xx,
                    2 => &m.s2xx,
                    3 => &m.s3xx,
                    4 => &m.s4xx,
                    _ => &m.s5xx,
                },
                _ => &m.error,
            };
            class.record(crate::metrics::Elapsed(Some(started)));
        });
        Poll::Ready(match result {
            Ok(Ok(resp)) => {
                Counters::bump(&config.counters.responses);
                let (parts, incoming) = resp.into_parts();
                let body = Body::new(incoming, uri, Some(deadline), config);
                Ok(Response::from_parts(parts, body))
            }
            Ok(Err(err)) => {
                let err =
                    FetchError::transport(uri.to_string(), Box::new(err), config.connect_timeout);
                Counters::bump(if err.is_timeout() {
                    &config.counters.timeouts
                } else {
                    &config.counters.transport_errors
                });
                Err(err)
            }
            Err(after) => {
                Counters::bump(&config.counters.timeouts);
                trace_event!(DEBUG, url = %uri, timeout = ?after, "fetch: no response in time");
                Err(FetchError::Timeout {
                    url: uri.to_string(),
                    after,
                })
            }
        })
    }
}
