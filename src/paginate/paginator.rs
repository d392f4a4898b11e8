//! [`Paginator`]: a page service and a [`Strategy`], configured, before it
//! becomes a stream.

use std::fmt;
use std::marker::PhantomData;

use super::items::Items;
use super::page::{Page, PageResponse};
use super::strategy::Strategy;
use super::stream::Pages;

/// Walks a paginated API: a page service plus a [`Strategy`].
///
/// The page service answers each request with an `R`: a [`Page<T>`] by
/// default, or any [`PageResponse`] (a `Vec<T>`, the API's own response
/// type) that the strategy knows how to read.
///
/// Configure it with [`prefetch`](Paginator::prefetch),
/// [`max_pages`](Paginator::max_pages), [`max_items`](Paginator::max_items)
/// and [`resume`](Paginator::resume), then turn it into a stream of
/// [`pages`](Paginator::pages) or of [`items`](Paginator::items).
pub struct Paginator<S, St: Strategy<T, R>, T, R = Page<T>> {
    service: S,
    strategy: St,
    start: Option<St::Request>,
    max_pages: Option<u64>,
    max_items: Option<u64>,
    prefetch: usize,
    _items: PhantomData<fn() -> T>,
}

impl<S, St, T, R> Paginator<S, St, T, R>
where
    St: Strategy<T, R>,
    S: tower_service::Service<St::Request, Response = R>,
    R: PageResponse<Item = T>,
{
    /// A walk over `service`, starting at the strategy's first request.
    ///
    /// Defaults: no prefetch (no request before the consumer asks for its
    /// page), no page or item bound.
    pub fn new(service: S, strategy: St) -> Self {
        Paginator {
            service,
            strategy,
            start: None,
            max_pages: None,
            max_items: None,
            prefetch: 0,
            _items: PhantomData,
        }
    }
}

impl<S, St: Strategy<T, R>, T, R> Paginator<S, St, T, R> {
    /// While the consumer handles page *k*, keep up to `n` next page
    /// requests in flight: at once for strategies that know the next request
    /// in advance ([`PageNumber`](super::PageNumber)), as soon as page *k* arrives for the
    /// others. Pages are still yielded in order, and at most `n + 1` pages
    /// are held at any time. Default `0`.
    ///
    /// Prefetched requests run as tokio tasks, so they progress while the
    /// consumer works (without a tokio runtime they are polled by the stream
    /// itself, so only while it is polled). A request speculated past the
    /// last page is cancelled when the last page arrives.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.prefetch = n;
        self
    }

    /// Stops after `n` pages (`0` yields nothing). No request is sent for a
    /// page past the bound.
    pub fn max_pages(mut self, n: u64) -> Self {
        self.max_pages = Some(n);
        self
    }

    /// Stops after `n` items: the last page is cut short if needed, and no
    /// further page is requested.
    pub fn max_items(mut self, n: u64) -> Self {
        self.max_items = Some(n);
        self
    }

    /// Starts the walk at `checkpoint` instead of the strategy's first
    /// request: a [`PageRequest`](super::PageRequest) (or page number via
    /// [`PageNumber::new`](super::PageNumber::new)'s `start`), a cursor token, or a `next` URL,
    /// typically taken from [`Pages::checkpoint`] after a failure.
    pub fn resume(mut self, checkpoint: impl Into<St::Request>) -> Self {
        self.start = Some(checkpoint.into());
        self
    }

    /// The stream of pages, the page service's responses:
    /// `Stream<Item = Result<R, S::Error>>` (`R` is `Page<T>` by default).
    pub fn pages(self) -> Pages<S, St, T, R>
    where
        S: tower_service::Service<St::Request, Response = R>,
    {
        let Paginator {
            service,
            mut strategy,
            start,
            max_pages,
            max_items,
            prefetch,
            _items,
        } = self;
        let first = match start {
            Some(req) => strategy.resume(req),
            None => strategy.first(),
        };
        Pages::new(service, strategy, first, prefetch, max_pages, max_items)
    }

    /// The stream of items, page after page:
    /// `Stream<Item = Result<T, S::Error>>`.
    pub fn items(self) -> Items<S, St, T, R>
    where
        S: tower_service::Service<St::Request, Response = R>,
    {
        Items::new(self.pages())
    }
}

impl<S: fmt::Debug, St: Strategy<T, R> + fmt::Debug, T, R> fmt::Debug for Paginator<S, St, T, R>
where
    St::Request: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Paginator")
            .field("service", &self.service)
            .field("strategy", &self.strategy)
            .field("start", &self.start)
            .field("max_pages", &self.max_pages)
            .field("max_items", &self.max_items)
            .field("prefetch", &self.prefetch)
            .finish()
    }
}
