//! [`Page`]: one page of results and what the server said about the next;
//! [`PageResponse`]: what any page service's answer must give up, its items.

use http::HeaderMap;

/// One page of results: its items, plus what the server said about the
/// next page.
///
/// Page services build pages with [`Page::new`] and, as their API requires,
/// [`with_next`](Page::with_next) (a cursor token for [`Cursor`](super::Cursor)) or
/// [`with_headers`](Page::with_headers) (the response headers, for
/// [`LinkHeader`](super::LinkHeader)). A page service may instead answer
/// its API's own response type: see [`PageResponse`].
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
}

// ---------------------------------------------------------------- responses

/// What a page service answers: a response that holds one page of items.
///
/// [`Page`] is the ready-made one. A page service may instead answer its
/// API's own type (say `UsersPage { users, next_cursor }`): implement this
/// trait for it, and read its other fields in the strategy, as
/// [`Cursor::from_response`](super::Cursor::from_response) does. The
/// streams yield these responses ([`Pages`](super::Pages)) or their items
/// ([`Items`](super::Items)); [`max_items`](super::Paginator::max_items)
/// cuts the last one short through [`items_mut`](PageResponse::items_mut).
///
/// ```
/// use tower_patterns::paginate::PageResponse;
///
/// struct UsersPage {
///     users: Vec<String>,
///     next_cursor: Option<String>,
/// }
///
/// impl PageResponse for UsersPage {
///     type Item = String;
///
///     fn items(&self) -> &[String] {
///         &self.users
///     }
///
///     fn items_mut(&mut self) -> &mut Vec<String> {
///         &mut self.users
///     }
/// }
/// ```
pub trait PageResponse {
    /// The type of the items a page holds.
    type Item;

    /// The items of this page, in server order.
    fn items(&self) -> &[Self::Item];

    /// The items of this page, for the stream to take them
    /// ([`Items`](super::Items)) or cut them short
    /// ([`max_items`](super::Paginator::max_items)).
    fn items_mut(&mut self) -> &mut Vec<Self::Item>;
}

impl<T> PageResponse for Page<T> {
    type Item = T;

    fn items(&self) -> &[T] {
        &self.items
    }

    fn items_mut(&mut self) -> &mut Vec<T> {
        &mut self.items
    }
}

/// A page service may answer a plain `Vec` of items (with
/// [`PageNumber`](super::PageNumber), which needs nothing else).
impl<T> PageResponse for Vec<T> {
    type Item = T;

    fn items(&self) -> &[T] {
        self
    }

    fn items_mut(&mut self) -> &mut Vec<T> {
        self
    }
}
