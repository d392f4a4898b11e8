//! Bounded gather: run many requests through one service, at most `n` at
//! once, one `Result` per request.

use std::future::Future;

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
    join_bounded(
        requests
            .into_iter()
            .map(|req| svc.clone().oneshot(req).map(|r| r.map_err(Into::into))),
        concurrency,
    )
    .await
}

/// Runs `futures` with at most `concurrency` of them in flight and returns
/// their outputs **in input order** (Python's `asyncio.gather` over a
/// semaphore), for any futures rather than calls of one service.
///
/// Futures are taken from the iterator lazily, as slots free up, so a slow
/// one never stops the next from starting while a slot is free (unlike an
/// ordered buffer, which waits on the head of the line). A `concurrency` of
/// 0 is treated as 1. Dropping the returned future drops the futures in
/// flight and starts no more.
///
/// ```
/// use tower_patterns::limit;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let squares = limit::join_bounded((1..=5u64).map(|n| async move { n * n }), 2).await;
/// assert_eq!(squares, [1, 4, 9, 16, 25]);
/// # }
/// ```
pub async fn join_bounded<I>(futures: I, concurrency: usize) -> Vec<<I::Item as Future>::Output>
where
    I: IntoIterator,
    I::Item: Future,
{
    let futures = futures.into_iter();
    // Trust the size hint only so far: an endless iterator must not
    // reserve memory up front.
    let mut slots: Vec<Option<<I::Item as Future>::Output>> =
        Vec::with_capacity(futures.size_hint().0.min(1024));
    let mut running = stream::iter(futures.enumerate())
        .map(|(index, fut)| fut.map(move |out| (index, out)))
        .buffer_unordered(concurrency.max(1));
    while let Some((index, out)) = running.next().await {
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        slots[index] = Some(out);
    }
    // `buffer_unordered` yields every index in 0..n exactly once, so no
    // slot is empty and positions line up with the input.
    slots.into_iter().flatten().collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn join_bounded_keeps_order_and_bounds_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let now = AtomicUsize::new(0);
        let max = AtomicUsize::new(0);
        let futs = (0..20u64).map(|i| {
            let (now, max) = (&now, &max);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                // Later items finish first.
                tokio::time::sleep(Duration::from_millis(100 - i * 5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                i
            }
        });
        let out = join_bounded(futs, 4).await;
        assert_eq!(out, (0..20).collect::<Vec<_>>());
        assert_eq!(max.load(Ordering::SeqCst), 4);

        let none = join_bounded(Vec::<std::future::Ready<u8>>::new(), 3).await;
        assert!(none.is_empty());
        // A limit of 0 still makes progress.
        let one = join_bounded([std::future::ready(7)], 0).await;
        assert_eq!(one, vec![7]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_head_does_not_hold_back_the_rest() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = AtomicUsize::new(0);
        let done = &done;
        let mut rx = Some(rx);
        let futs = (0..10usize).map(|i| {
            let rx = rx.take().filter(|_| i == 0);
            async move {
                match rx {
                    // The head waits until all the others have finished, or
                    // gives up after 5 s (of paused time) if they cannot.
                    Some(rx) => tokio::time::timeout(Duration::from_secs(5), rx)
                        .await
                        .is_ok(),
                    None => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        true
                    }
                }
            }
        });
        let gather = join_bounded(futs, 2);
        let release = async move {
            while done.load(Ordering::SeqCst) < 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let _ = tx.send(());
        };
        let (out, ()) = tokio::join!(gather, release);
        assert_eq!(
            out,
            vec![true; 10],
            "the head was released by the others finishing"
        );
    }
}
