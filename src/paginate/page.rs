//! [`Page`]: one page of results and what the server said about the next.

use http::HeaderMap;

/// One page of results: its items, plus what the server said about the
/// next page.
///
/// Page services build pages with [`Page::new`] and, as their API requires,
/// [`with_next`](Page::with_next) (a cursor token for [`Cursor`](super::Cursor)) or
/// [`with_headers`](Page::with_headers) (the response headers, for
/// [`LinkHeader`](super::LinkHeader)).
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
    /// token), read by [`Cursor::from_page`](super::Cursor::from_page). `None` means "last page".
    pub fn with_next(mut self, next: Option<impl Into<String>>) -> Self {
        self.next = next.map(Into::into);
        self
    }

    /// Sets the response headers of this page, read by [`LinkHeader`](super::LinkHeader).
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
