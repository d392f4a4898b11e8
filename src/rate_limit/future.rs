//! [`ResponseFuture`]: the inner call, a keyed call waiting for its slot,
//! or a refusal.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use super::shared::Shared;
use super::store::{Admission, StoreFuture};
use crate::rejection::RateLimited;
use crate::BoxError;

/// A keyed slot taken by a waiting call; given back if the call is dropped
/// before it goes.
pub(crate) struct Hold<K: Hash + Eq + Clone> {
    pub(crate) shared: Arc<Shared<K>>,
    pub(crate) key: K,
    /// The TAT the slot set; `None` once the call went.
    pub(crate) taken: Option<u64>,
}

impl<K: Hash + Eq + Clone> Drop for Hold<K> {
    fn drop(&mut self) {
        if let (Some(taken), Some(table)) = (self.taken, &self.shared.table) {
            table.give_back(&self.shared.gcra, &self.key, taken);
        }
    }
}

pin_project! {
    /// The future of [`RateLimit`](super::RateLimit).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, Req, K>
    where
        S: Service<Req>,
        K: Hash,
        K: Eq,
        K: Clone,
    {
        #[pin]
        kind: Kind<S, Req, K>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, Req, K>
    where
        S: Service<Req>,
        K: Hash,
        K: Eq,
        K: Clone,
    {
        Called { #[pin] fut: S::Future },
        Waiting {
            #[pin]
            sleep: Sleep,
            svc: Option<S>,
            req: Option<Req>,
            hold: Option<Hold<K>>,
        },
        Refused { err: Option<RateLimited> },
        Deciding {
            decision: StoreFuture,
            svc: Option<S>,
            req: Option<Req>,
            shared: Arc<Shared<K>>,
        },
    }
}

impl<S: Service<Req>, Req, K: Hash + Eq + Clone> ResponseFuture<S, Req, K> {
    pub(crate) fn called(fut: S::Future) -> Self {
        ResponseFuture {
            kind: Kind::Called { fut },
        }
    }

    pub(crate) fn waiting(sleep: Sleep, svc: S, req: Req, hold: Hold<K>) -> Self {
        ResponseFuture {
            kind: Kind::Waiting {
                sleep,
                svc: Some(svc),
                req: Some(req),
                hold: Some(hold),
            },
        }
    }

    pub(crate) fn deciding(
        decision: StoreFuture,
        svc: S,
        req: Req,
        shared: Arc<Shared<K>>,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Deciding {
                decision,
                svc: Some(svc),
                req: Some(req),
                shared,
            },
        }
    }

    pub(crate) fn refused(err: RateLimited) -> Self {
        ResponseFuture {
            kind: Kind::Refused { err: Some(err) },
        }
    }
}

impl<S, Req, K> fmt::Debug for ResponseFuture<S, Req, K>
where
    S: Service<Req>,
    K: Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match &self.kind {
            Kind::Called { .. } => "ResponseFuture::Called",
            Kind::Waiting { .. } => "ResponseFuture::Waiting",
            Kind::Refused { .. } => "ResponseFuture::Refused",
            Kind::Deciding { .. } => "ResponseFuture::Deciding",
        })
    }
}

impl<S, Req, K> Future for ResponseFuture<S, Req, K>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Called { fut } => return fut.poll(cx).map_err(Into::into),
                KindProj::Refused { err } => {
                    let err = err
                        .take()
                        .expect("rate_limit::ResponseFuture polled after completion");
                    return Poll::Ready(Err(Box::new(err)));
                }
                KindProj::Deciding {
                    decision,
                    svc,
                    req,
                    shared,
                } => {
                    let admission = ready!(decision.as_mut().poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        panic!("rate_limit::ResponseFuture polled after completion");
                    };
                    let wait = match admission {
                        Ok(Admission::Go { wait }) => {
                            if !wait.is_zero() {
                                shared.count_waited();
                            }
                            shared.count_allowed();
                            wait
                        }
                        Ok(Admission::Refused { retry_after }) => {
                            let nanos = retry_after.as_nanos().min(u128::from(u64::MAX)) as u64;
                            let err = shared.refused(nanos);
                            kind.set(Kind::Refused { err: Some(err) });
                            continue;
                        }
                        Err(e) => {
                            shared.count_store_error();
                            if !shared.fail_open {
                                return Poll::Ready(Err(e));
                            }
                            Duration::ZERO
                        }
                    };
                    if wait.is_zero() {
                        // No timer for the usual answer: `svc` is ready.
                        let fut = svc.call(req);
                        kind.set(Kind::Called { fut });
                    } else {
                        kind.set(Kind::Waiting {
                            sleep: tokio::time::sleep(wait),
                            svc: Some(svc),
                            req: Some(req),
                            hold: None,
                        });
                    }
                }
                KindProj::Waiting {
                    sleep,
                    svc,
                    req,
                    hold,
                } => {
                    ready!(sleep.poll(cx));
                    // The slot is ours now: nothing to give back.
                    if let Some(mut hold) = hold.take() {
                        hold.taken = None;
                        hold.shared.count_allowed();
                    }
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        panic!("rate_limit::ResponseFuture polled after completion");
                    };
                    // `svc` was made ready before the wait began.
                    let fut = svc.call(req);
                    kind.set(Kind::Called { fut });
                }
            }
        }
    }
}
