//! Strategies: how to build the next page request.

use http::Uri;

use super::error::WalkError;
use super::link::{parse_next_link, resolve_next};
use super::page::{Page, PageResponse};
use super::seen::SeenSet;

/// How a walk goes from one page to the next.
///
/// A strategy names the first request, and builds each next request from
/// the previous request and the response it returned. `T` is the item
/// type; `R` is what the page service answers: a [`Page<T>`] by default,
/// or the API's own response type (any [`PageResponse`](super::PageResponse)),
/// whose fields the strategy reads directly, as
/// [`Cursor::from_response`](super::Cursor::from_response) reads a token.
/// [`PageNumber`] and [`Cursor`](super::Cursor) work with any response;
/// [`LinkHeader`] reads [`Page::headers`]. A strategy whose next
/// request does not depend on the page (page numbers) also implements
/// [`predict`](Strategy::predict), which lets
/// [`Paginator::prefetch`](super::Paginator::prefetch) send it before the
/// page arrives.
///
/// Strategies keep per-walk state (the loop guard's memory of cursors seen),
/// so a fresh walk needs a fresh strategy.
///
/// A custom strategy, `?offset=&limit=`, that stops when the server says it
/// has no more:
///
/// ```
/// use futures::TryStreamExt;
/// use tower::service_fn;
/// use tower_patterns::paginate::{Page, Paginator, Strategy, WalkError};
///
/// struct Offset {
///     limit: u64,
/// }
///
/// impl<T> Strategy<T> for Offset {
///     type Request = u64; // the offset
///
///     fn first(&mut self) -> u64 {
///         0
///     }
///
///     fn predict(&self, prev: &u64) -> Option<u64> {
///         prev.checked_add(self.limit) // known in advance: prefetch can fire early
///     }
///
///     fn next(&mut self, prev: &u64, page: &Page<T>) -> Result<Option<u64>, WalkError> {
///         // This API sets a "has_more" token on every page but the last.
///         Ok(page.next_token().and_then(|_| Strategy::<T>::predict(self, prev)))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let api = service_fn(|offset: u64| async move {
///     let items: Vec<u64> = (offset..(offset + 10).min(25)).collect();
///     let more = (offset + 10 < 25).then_some("has_more");
///     Ok::<_, tower::BoxError>(Page::new(items).with_next(more))
/// });
/// let all: Vec<u64> = Paginator::new(api, Offset { limit: 10 })
///     .prefetch(2)
///     .items()
///     .try_collect()
///     .await?;
/// assert_eq!(all, (0..25).collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
pub trait Strategy<T, R = Page<T>> {
    /// The page request the page service answers. Cloned once per page (for
    /// the checkpoint), so it should be cheap to clone.
    type Request: Clone;

    /// The request for the first page.
    fn first(&mut self) -> Self::Request;

    /// The request to start from when resuming at `checkpoint` instead of
    /// [`first`](Strategy::first). The default returns `checkpoint`
    /// unchanged; loop-guarded strategies also remember it as visited.
    fn resume(&mut self, checkpoint: Self::Request) -> Self::Request {
        checkpoint
    }

    /// The request that follows `prev` if the walk goes on, when it can be
    /// known before `prev`'s page arrives. The default, `None`, means "only
    /// once the page is here".
    ///
    /// When this returns `Some(r)`, [`next`](Strategy::next) for the same
    /// `prev` must return `Ok(None)` (stop) or `Ok(Some(r))` (the same
    /// request): the paginator may already have sent `r`.
    fn predict(&self, prev: &Self::Request) -> Option<Self::Request> {
        let _ = prev;
        None
    }

    /// The request after `prev`, given the `response` (the page) it
    /// returned: `Ok(None)` ends the walk after this page, `Err` ends it
    /// with that error after this page.
    fn next(
        &mut self,
        prev: &Self::Request,
        response: &R,
    ) -> Result<Option<Self::Request>, WalkError>;
}

// ---------------------------------------------------------------- page numbers

/// A page-number request: `?page=<page>&per_page=<per_page>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRequest {
    /// The page to fetch (the walk counts from [`PageNumber`]'s `start`).
    pub page: u64,
    /// How many items a full page holds: always the walk's
    /// [`PageNumber::per_page`].
    pub per_page: u64,
}

/// Page numbers: `start, start + 1, ...`, `per_page` items per page.
///
/// Every request carries the strategy's `per_page` (a resumed checkpoint
/// too: the strategy is the one truth about the page size). Stops after an
/// empty page or a short one (fewer than `per_page` items), as most
/// page-number APIs end; a `per_page` of `0` means "unknown" and stops only
/// on an empty page. Since the next request is known in advance,
/// [`prefetch`](super::Paginator::prefetch) sends it while the current page
/// is still on its way (and cancels it if the current page turns out to be
/// the last).
///
/// It counts the items of any [`PageResponse`](super::PageResponse): a
/// [`Page`], a plain `Vec`, or the API's own response type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageNumber {
    start: u64,
    per_page: u64,
}

impl PageNumber {
    /// Pages `start, start + 1, ...` of `per_page` items.
    pub fn new(start: u64, per_page: u64) -> Self {
        PageNumber { start, per_page }
    }

    /// The first page number.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// How many items a full page holds, as sent in every [`PageRequest`].
    pub fn per_page(&self) -> u64 {
        self.per_page
    }

    fn request(&self, page: u64) -> PageRequest {
        PageRequest {
            page,
            per_page: self.per_page,
        }
    }
}

impl<T, R> Strategy<T, R> for PageNumber
where
    R: PageResponse<Item = T>,
{
    type Request = PageRequest;

    fn first(&mut self) -> PageRequest {
        self.request(self.start)
    }

    fn resume(&mut self, checkpoint: PageRequest) -> PageRequest {
        self.request(checkpoint.page)
    }

    fn predict(&self, prev: &PageRequest) -> Option<PageRequest> {
        Some(self.request(prev.page.checked_add(1)?))
    }

    fn next(&mut self, prev: &PageRequest, page: &R) -> Result<Option<PageRequest>, WalkError> {
        let len = page.items().len();
        let short = u64::try_from(len).is_ok_and(|len| len < self.per_page);
        if len == 0 || short {
            return Ok(None);
        }
        Ok(Strategy::<T, R>::predict(self, prev))
    }
}

// ---------------------------------------------------------------- Link headers

/// RFC 8288 `Link` headers: follows `rel="next"` from each page's headers
/// ([`Page::headers`]) until a page has none.
///
/// Relative links are resolved against the URI of the request that returned
/// them (RFC 3986 section 5). A link this walk already followed ends it with
/// [`WalkError::LoopDetected`]; one that is not a valid URI, with
/// [`WalkError::InvalidNextLink`]. The request is the page's [`Uri`].
#[derive(Debug)]
pub struct LinkHeader {
    first: Uri,
    seen: SeenSet,
}

impl LinkHeader {
    /// A walk starting at `first`.
    pub fn new(first: Uri) -> Self {
        LinkHeader {
            first,
            seen: SeenSet::default(),
        }
    }
}

impl<T> Strategy<T> for LinkHeader {
    type Request = Uri;

    fn first(&mut self) -> Uri {
        let first = self.first.clone();
        self.seen.insert(&first.to_string());
        first
    }

    fn resume(&mut self, checkpoint: Uri) -> Uri {
        self.seen.insert(&checkpoint.to_string());
        checkpoint
    }

    fn next(&mut self, prev: &Uri, page: &Page<T>) -> Result<Option<Uri>, WalkError> {
        let Some(link) = parse_next_link(page.headers()) else {
            return Ok(None);
        };
        let uri = resolve_next(prev, &link)?;
        let key = uri.to_string();
        if !self.seen.insert(&key) {
            return Err(WalkError::LoopDetected {
                kind: "link",
                repeated: key,
            });
        }
        Ok(Some(uri))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_numbers_stop_on_short_or_empty_pages() {
        let mut s = PageNumber::new(1, 3);
        let first = Strategy::<u8>::first(&mut s);
        assert_eq!(
            first,
            PageRequest {
                page: 1,
                per_page: 3
            }
        );
        let full = Page::new(vec![1u8, 2, 3]);
        assert_eq!(
            s.next(&first, &full).unwrap(),
            Some(PageRequest {
                page: 2,
                per_page: 3
            })
        );
        assert_eq!(s.next(&first, &Page::new(vec![1u8, 2])).unwrap(), None);
        assert_eq!(s.next(&first, &Page::<u8>::new(vec![])).unwrap(), None);
        let mut unknown = PageNumber::new(1, 0);
        let first = Strategy::<u8>::first(&mut unknown);
        assert!(unknown
            .next(&first, &Page::new(vec![1u8]))
            .unwrap()
            .is_some());
        assert_eq!(
            unknown.next(&first, &Page::<u8>::new(vec![])).unwrap(),
            None
        );
    }
}
