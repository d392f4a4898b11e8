//! Pagination as a [`Stream`](futures::Stream) driven by a page
//! [`Service`](tower_service::Service).
//!
//! A *page service* answers one page request with a [`Page`]. A
//! [`Strategy`] says which request comes first and how to build the next one
//! from the previous request and its page:
//!
//! - [`PageNumber`]: `page = start, start + 1, ...`; stops on an empty or
//!   short page. The next request is known in advance, so
//!   [`prefetch`](Paginator::prefetch) fires before the page arrives.
//! - [`Cursor`]: the next token is read from the page; stops when there is
//!   none, and fails with [`WalkError::LoopDetected`] on a token seen before.
//! - [`LinkHeader`]: follows RFC 8288 `rel="next"` links from the page's
//!   response headers, resolving relative links against the request URI.
//!
//! Because every page is one call of an ordinary `Service`, the layers of
//! this crate (retry, circuit breaker, limits, cache) apply per page.
//!
//! ```
//! use futures::TryStreamExt;
//! use tower::service_fn;
//! use tower_patterns::paginate::{Page, PageNumber, PageRequest, Paginator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // A fake API with 250 items, served 100 per page.
//! let api = service_fn(|req: PageRequest| async move {
//!     let first = (req.page - 1) * req.per_page;
//!     let items: Vec<u64> = (first..(first + req.per_page).min(250)).collect();
//!     Ok::<_, tower::BoxError>(Page::new(items))
//! });
//!
//! let all: Vec<u64> = Paginator::new(api, PageNumber::new(1, 100))
//!     .prefetch(1)
//!     .items()
//!     .try_collect()
//!     .await?;
//! assert_eq!(all, (0..250).collect::<Vec<_>>());
//! # Ok(())
//! # }
//! ```
//!
//! # Failures and resuming
//!
//! A failing page ends the stream with that error, after every page before
//! it. [`Pages::checkpoint`] then names the request of the failed page, and
//! [`Paginator::resume`] starts a new walk there, so a long walk does not
//! restart from page 1:
//!
//! ```
//! use futures::StreamExt;
//! use std::sync::atomic::{AtomicBool, Ordering};
//! use std::sync::Arc;
//! use tower::service_fn;
//! use tower_patterns::paginate::{Page, PageNumber, PageRequest, Paginator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let fail_once = Arc::new(AtomicBool::new(true));
//! let api = service_fn(move |req: PageRequest| {
//!     let fail = req.page == 2 && fail_once.swap(false, Ordering::SeqCst);
//!     async move {
//!         if fail {
//!             return Err(tower::BoxError::from("page 2 is down"));
//!         }
//!         let items = if req.page <= 3 { vec![req.page; 10] } else { vec![] };
//!         Ok(Page::new(items))
//!     }
//! });
//!
//! let mut pages = Paginator::new(api.clone(), PageNumber::new(1, 10)).pages();
//! assert!(pages.next().await.unwrap().is_ok()); // page 1
//! assert!(pages.next().await.unwrap().is_err()); // page 2 failed
//! assert!(pages.next().await.is_none()); // and the stream ended
//! let checkpoint = pages.checkpoint().cloned().unwrap();
//! assert_eq!(checkpoint.page, 2);
//!
//! let rest: Vec<_> = Paginator::new(api, PageNumber::new(1, 10))
//!     .resume(checkpoint)
//!     .pages()
//!     .collect()
//!     .await;
//! assert_eq!(rest.len(), 3); // pages 2, 3 and the empty page 4 that ends the walk
//! # }
//! ```
//!
//! # Over HTTP
//!
//! [`http_json`] walks a JSON API that paginates with `Link` headers (as
//! GitHub's does) over any hyper-style HTTP client service; see
//! [`JsonPages`] to combine the HTTP side with another strategy.
//!
//! # Guarantees
//!
//! The streams are `Send` when the service, its futures and the items are;
//! they preserve page order; they hold at most `prefetch + 1` pages; and
//! dropping them cancels every request in flight.

mod http;
mod strategy;
mod stream;

pub use self::http::{http_json, Error, JsonPages, DEFAULT_MAX_BODY};
pub use self::strategy::{
    parse_next_link, resolve_reference, Cursor, CursorRequest, LinkHeader, PageNumber, PageRequest,
    Strategy,
};
pub use self::stream::{Items, PageStats, Pages};

use std::fmt;
use std::marker::PhantomData;

use ::http::HeaderMap;

/// One page of results: its items, plus what the server said about the
/// next page.
///
/// Page services build pages with [`Page::new`] and, as their API requires,
/// [`with_next`](Page::with_next) (a cursor token for [`Cursor`]) or
/// [`with_headers`](Page::with_headers) (the response headers, for
/// [`LinkHeader`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
    headers: HeaderMap,
}

impl<T> Page<T> {
    /// A page holding `items`, with no next token and no headers.
    pub fn new(items: Vec<T>) -> Self {
        Page {
            items,
            next: None,
            headers: HeaderMap::new(),
        }
    }

    /// Sets the continuation the server returned with this page (a cursor
    /// token), read by [`Cursor::from_page`]. `None` means "last page".
    pub fn with_next(mut self, next: Option<impl Into<String>>) -> Self {
        self.next = next.map(Into::into);
        self
    }

    /// Sets the response headers of this page, read by [`LinkHeader`].
    pub fn with_headers(mut self, headers: HeaderMap) -> Self {
        self.headers = headers;
        self
    }

    /// The items of this page, in server order.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// Takes the items out of the page.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }

    /// The number of items on this page.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// `true` when the page holds no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The continuation token set with [`with_next`](Page::with_next).
    pub fn next_token(&self) -> Option<&str> {
        self.next.as_deref()
    }

    /// The response headers set with [`with_headers`](Page::with_headers)
    /// (empty when none were set).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.items.truncate(len);
    }
}

/// Why a [`Strategy`] stopped a walk with an error rather than a page.
///
/// It reaches the caller through the page service's error type, which must
/// implement `From<WalkError>` (as `tower::BoxError` and
/// [`paginate::Error`](Error) do); with `BoxError`,
/// `err.downcast_ref::<WalkError>()` finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalkError {
    /// The server sent a cursor or `next` link that this walk had already
    /// followed: following it again would loop forever.
    LoopDetected {
        /// What repeated: `"cursor"` or `"link"`.
        kind: &'static str,
        /// The repeated cursor token or URL.
        repeated: String,
    },
    /// The `rel="next"` link could not be turned into a request URI.
    InvalidNextLink {
        /// The link as the server sent it.
        link: String,
        /// Why it was refused.
        reason: String,
    },
    /// A prefetched page request's task was cancelled from outside (the
    /// tokio runtime is shutting down).
    TaskCancelled,
}

impl WalkError {
    /// `true` for [`WalkError::LoopDetected`].
    pub fn is_loop(&self) -> bool {
        matches!(self, WalkError::LoopDetected { .. })
    }
}

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkError::LoopDetected { kind, repeated } => write!(
                f,
                "pagination loop detected: the server sent {kind} {repeated:?} again, which \
                 this walk already followed; stopping instead of looping forever (the API is \
                 returning a stale {kind})"
            ),
            WalkError::InvalidNextLink { link, reason } => write!(
                f,
                "pagination stopped: the rel=\"next\" link {link:?} is not a usable URI \
                 ({reason})"
            ),
            WalkError::TaskCancelled => f.write_str(
                "pagination stopped: a prefetched page request was cancelled because the tokio \
                 runtime is shutting down",
            ),
        }
    }
}

impl std::error::Error for WalkError {}

/// Walks a paginated API: a page service plus a [`Strategy`].
///
/// Configure it with [`prefetch`](Paginator::prefetch),
/// [`max_pages`](Paginator::max_pages), [`max_items`](Paginator::max_items)
/// and [`resume`](Paginator::resume), then turn it into a stream of
/// [`pages`](Paginator::pages) or of [`items`](Paginator::items).
pub struct Paginator<S, St: Strategy<T>, T> {
    service: S,
    strategy: St,
    start: Option<St::Request>,
    max_pages: Option<u64>,
    max_items: Option<u64>,
    prefetch: usize,
    _items: PhantomData<fn() -> T>,
}

impl<S, St, T> Paginator<S, St, T>
where
    St: Strategy<T>,
    S: tower_service::Service<St::Request, Response = Page<T>>,
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

impl<S, St: Strategy<T>, T> Paginator<S, St, T> {
    /// While the consumer handles page *k*, keep up to `n` next page
    /// requests in flight: at once for strategies that know the next request
    /// in advance ([`PageNumber`]), as soon as page *k* arrives for the
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
    /// request: a [`PageRequest`] (or page number via
    /// [`PageNumber::new`]'s `start`), a cursor token, or a `next` URL,
    /// typically taken from [`Pages::checkpoint`] after a failure.
    pub fn resume(mut self, checkpoint: impl Into<St::Request>) -> Self {
        self.start = Some(checkpoint.into());
        self
    }

    /// The stream of pages: `Stream<Item = Result<Page<T>, S::Error>>`.
    pub fn pages(self) -> Pages<S, St, T>
    where
        S: tower_service::Service<St::Request, Response = Page<T>>,
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
    pub fn items(self) -> Items<S, St, T>
    where
        S: tower_service::Service<St::Request, Response = Page<T>>,
    {
        Items::new(self.pages())
    }
}

impl<S: fmt::Debug, St: Strategy<T> + fmt::Debug, T> fmt::Debug for Paginator<S, St, T>
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
