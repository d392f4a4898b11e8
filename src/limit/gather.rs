//! Bounded gather: run many requests through one service, at most `n` at
//! once, one `Result` per request.

use futures::stream::{self, Stream, StreamExt};
use futures::FutureExt;
use tower::ServiceExt;
use tower_service::Service;

use crate::BoxError;

/// Calls `svc` once per request, at most `concurrency` calls at a time, and
/// returns every result **in the order of `requests`**, like Python's
/// `asyncio.gather(..., return_exceptions=True)`.
///
/// - Every request gets exactly one `Result`; a failure does not cancel the
///   others.
/// - Requests are started in input order as slots free up; `requests` is
///   read lazily, so only `concurrency` requests are alive at once (the
///   result vector, of course, holds them all).
/// - A `concurrency` of 0 is treated as 1.
/// - Dropping the returned future drops (cancels) the calls in flight and
///   starts no more.
///
/// Works with any `S: Service<Req> + Clone`: each call drives its own clone
/// to readiness and calls it ([`ServiceExt::oneshot`]), so a limiter in `S`
/// (whose clones share permits) bounds the calls as well. Errors are boxed
/// into [`BoxError`]; a service whose error is already `BoxError` passes
/// them through unchanged, so typed errors can be `downcast_ref`'d.
///
/// ```
/// use tower::service_fn;
/// use tower_patterns::{limit, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let halve = service_fn(|n: u32| async move {
///     if n % 2 == 0 { Ok(n / 2) } else { Err(BoxError::from(format!("{n} is odd"))) }
/// });
/// let results = limit::gather(halve, [4, 7, 10], 2).await;
/// assert_eq!(results[0].as_ref().unwrap(), &2);
/// assert_eq!(results[1].as_ref().unwrap_err().to_string(), "7 is odd");
/// assert_eq!(results[2].as_ref().unwrap(), &5);
/// # }
/// ```
pub async fn gather<S, Req, I>(
    svc: S,
    requests: I,
    concurrency: usize,
) -> Vec<Result<S::Response, BoxError>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    I: IntoIterator<Item = Req>,
{
    let requests = requests.into_iter();
    // Trust the size hint only so far: an endless iterator must not
    // reserve memory up front.
    let mut slots: Vec<Option<Result<S::Response, BoxError>>> =
        Vec::with_capacity(requests.size_hint().0.min(1024));
    let mut results = std::pin::pin!(gather_unordered_indexed(svc, requests, concurrency));
    while let Some((index, result)) = results.next().await {
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        slots[index] = Some(result);
    }
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| Err("gather: request produced no result".into())))
        .collect()
}

/// Like [`gather`], but yields each result as soon as its call completes
/// (completion order), as a [`Stream`].
///
/// To know which request a result belongs to, use
/// [`gather_unordered_indexed`], or carry an id in the response.
/// Dropping the stream cancels the calls in flight.
///
/// ```
/// use futures::StreamExt;
/// use tower::service_fn;
/// use tower_patterns::{limit, BoxError};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let double = service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) });
/// let mut results: Vec<u32> = limit::gather_unordered(double, 1..=4, 2)
///     .map(|r| r.unwrap())
///     .collect()
///     .await;
/// results.sort();
/// assert_eq!(results, [2, 4, 6, 8]);
/// # }
/// ```
pub fn gather_unordered<S, Req, I>(
    svc: S,
    requests: I,
    concurrency: usize,
) -> impl Stream<Item = Result<S::Response, BoxError>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    I: IntoIterator<Item = Req>,
{
    gather_unordered_indexed(svc, requests, concurrency).map(|(_, result)| result)
}

/// Like [`gather_unordered`], but each result comes with the position of
/// its request in `requests`.
pub fn gather_unordered_indexed<S, Req, I>(
    svc: S,
    requests: I,
    concurrency: usize,
) -> impl Stream<Item = (usize, Result<S::Response, BoxError>)>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    I: IntoIterator<Item = Req>,
{
    stream::iter(requests.into_iter().enumerate())
        .map(move |(index, req)| {
            svc.clone()
                .oneshot(req)
                .map(move |result| (index, result.map_err(Into::into)))
        })
        .buffer_unordered(concurrency.max(1))
}
