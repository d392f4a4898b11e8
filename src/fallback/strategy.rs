//! What a [`Fallback`](super::Fallback) answers a failed call with:
//! [`Value`], [`FromFn`] or [`Backup`].

use std::fmt;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

use crate::retry::Replay;
use crate::sync::lock;

/// How a failed call is answered. Implemented by [`Value`], [`FromFn`]
/// and [`Backup`], which the [`FallbackLayer`](super::FallbackLayer)
/// constructors make; you do not usually implement it yourself.
pub trait Strategy<Req, Res, E> {
    /// What is kept from each request in case the call fails (a copy of
    /// the request for a backup service; nothing otherwise).
    type Saved;
    /// The future of the answer.
    type Future: Future<Output = Result<Res, E>>;

    /// Keeps what [`serve`](Self::serve) will need from `req`, before the
    /// primary service takes it.
    fn save(req: &Req) -> Self::Saved;

    /// Answers the failed call, whose original result is `failed`.
    fn serve(&self, saved: Self::Saved, failed: Result<Res, E>) -> Self::Future;
}

/// Answers a failed call with a clone of a value. Made by
/// [`FallbackLayer::value`](super::FallbackLayer::value).
#[derive(Clone, Debug)]
pub struct Value<T>(pub(crate) T);

impl<Req, Res: Clone, E> Strategy<Req, Res, E> for Value<Res> {
    type Saved = ();
    type Future = Ready<Result<Res, E>>;

    #[inline]
    fn save(_: &Req) {}

    fn serve(&self, _: (), _failed: Result<Res, E>) -> Self::Future {
        ready(Ok(self.0.clone()))
    }
}

/// Answers a failed call with a function of its original result (the
/// error, or the failed response). Made by
/// [`FallbackLayer::from_fn`](super::FallbackLayer::from_fn).
#[derive(Clone)]
pub struct FromFn<F>(pub(crate) F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn(..)")
    }
}

impl<F, Req, Res, E> Strategy<Req, Res, E> for FromFn<F>
where
    F: Fn(Result<Res, E>) -> Res,
{
    type Saved = ();
    type Future = Ready<Result<Res, E>>;

    #[inline]
    fn save(_: &Req) {}

    fn serve(&self, _: (), failed: Result<Res, E>) -> Self::Future {
        ready(Ok((self.0)(failed)))
    }
}

/// Sends a failed call to a backup service. Made by
/// [`FallbackLayer::backup`](super::FallbackLayer::backup).
///
/// Each request is copied with [`Replay`] before the primary takes it (a
/// clone, for `Clone` requests): the one cost a backup adds to calls that
/// succeed. A request that cannot be replayed is not sent to the backup:
/// the caller gets the primary's failure, counted as a fallback failure.
///
/// Each fallback calls a clone of the backup service, which it first
/// drives ready itself (the primary's readiness plays no part).
pub struct Backup<S>(pub(crate) Mutex<S>);

impl<S> fmt::Debug for Backup<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Backup(..)")
    }
}

impl<S, Req, Res, E> Strategy<Req, Res, E> for Backup<S>
where
    S: Service<Req, Response = Res, Error = E> + Clone,
    Req: Replay,
{
    type Saved = Option<Req>;
    type Future = BackupFuture<S, Req>;

    #[inline]
    fn save(req: &Req) -> Option<Req> {
        req.replay()
    }

    fn serve(&self, saved: Option<Req>, failed: Result<Res, E>) -> Self::Future {
        match saved {
            Some(req) => {
                let svc = lock(&self.0).clone();
                BackupFuture {
                    state: BackupState::Calling {
                        call: Oneshot::new(svc, req),
                    },
                }
            }
            None => BackupFuture {
                state: BackupState::Unreplayable {
                    failed: Some(failed),
                },
            },
        }
    }
}

pin_project! {
    /// A call to a backup service: its readiness, then its answer (or the
    /// primary's failure, for a request that could not be replayed).
    pub struct BackupFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: BackupState<S, Req>,
    }
}

pin_project! {
    #[project = BackupProj]
    enum BackupState<S, Req>
    where
        S: Service<Req>,
    {
        Calling { #[pin] call: Oneshot<S, Req> },
        Unreplayable { failed: Option<Result<S::Response, S::Error>> },
    }
}

impl<S, Req> BackupFuture<S, Req>
where
    S: Service<Req>,
{
    /// Whether the request went to the backup service (`false` when it
    /// could not be replayed).
    pub(crate) fn sent(&self) -> bool {
        matches!(self.state, BackupState::Calling { .. })
    }
}

impl<S, Req> Future for BackupFuture<S, Req>
where
    S: Service<Req>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            BackupProj::Calling { call } => call.poll(cx),
            BackupProj::Unreplayable { failed } => Poll::Ready(
                failed
                    .take()
                    .expect("fallback::BackupFuture polled after completion"),
            ),
        }
    }
}

impl<S, Req> fmt::Debug for BackupFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupFuture")
            .field("sent", &self.sent())
            .finish_non_exhaustive()
    }
}

/// The builder's strategy before one is chosen: [`build`] refuses it.
///
/// [`build`]: super::FallbackLayerBuilder::build
#[derive(Clone, Copy, Debug, Default)]
pub struct NoFallback;
