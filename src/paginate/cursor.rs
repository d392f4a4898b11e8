//! [`Cursor`]: the next request is a token read from each page (a
//! [`Page`] or the page service's own response).

use std::fmt;

use super::error::WalkError;
use super::page::{Page, PageResponse};
use super::seen::SeenSet;
use super::strategy::Strategy;

/// A cursor request: the token of the page to fetch, `None` for the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CursorRequest {
    /// The cursor the server returned with the previous page.
    pub cursor: Option<String>,
}

impl From<String> for CursorRequest {
    fn from(cursor: String) -> Self {
        CursorRequest {
            cursor: Some(cursor),
        }
    }
}

impl From<&str> for CursorRequest {
    fn from(cursor: &str) -> Self {
        CursorRequest::from(cursor.to_owned())
    }
}

impl From<Option<String>> for CursorRequest {
    fn from(cursor: Option<String>) -> Self {
        CursorRequest { cursor }
    }
}

/// Cursors: the next token is read from each page by a function.
///
/// The function reads a [`Page`] ([`Cursor::new`], [`Cursor::from_page`])
/// or, with [`Cursor::from_response`], whatever the page service answers:
/// the API's own response type, say `UsersPage { users, next_cursor }`
/// (a [`PageResponse`]), so the service need not
/// build a [`Page`] by hand.
///
/// Stops when the function returns `None` (or an empty token), and ends
/// with [`WalkError::LoopDetected`] when it returns a token this walk
/// already followed (the guard remembers the last 16,384 tokens, by hash).
pub struct Cursor<F> {
    extract: F,
    seen: SeenSet,
}

impl<F> Cursor<F> {
    /// A cursor walk whose next token is `extract_next(&page)`: for
    /// example the id of the page's last item, or
    /// [`Page::next_token`] (see [`Cursor::from_page`]). To read the token
    /// from the page service's own response type, see
    /// [`Cursor::from_response`].
    pub fn new<T>(extract_next: F) -> Self
    where
        F: FnMut(&Page<T>) -> Option<String>,
    {
        Cursor::from_response::<Page<T>>(extract_next)
    }

    /// A cursor walk whose next token is `extract_next(&response)`, read
    /// from the page service's own response type `R` (any
    /// [`PageResponse`]):
    /// `Cursor::from_response(|r: &UsersPage| r.next_cursor.clone())`.
    /// See the [module docs](super) for a whole walk.
    pub fn from_response<R>(extract_next: F) -> Self
    where
        F: FnMut(&R) -> Option<String>,
    {
        Cursor {
            extract: extract_next,
            seen: SeenSet::default(),
        }
    }
}

impl<T> Cursor<fn(&Page<T>) -> Option<String>> {
    /// A cursor walk that reads the token the page service stored with
    /// [`Page::with_next`].
    pub fn from_page() -> Self {
        fn token<T>(page: &Page<T>) -> Option<String> {
            page.next_token().map(str::to_owned)
        }
        Cursor::new(token::<T> as fn(&Page<T>) -> Option<String>)
    }
}

impl<F> fmt::Debug for Cursor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl<T, R, F> Strategy<T, R> for Cursor<F>
where
    R: PageResponse<Item = T>,
    F: FnMut(&R) -> Option<String>,
{
    type Request = CursorRequest;

    fn first(&mut self) -> CursorRequest {
        CursorRequest::default()
    }

    fn resume(&mut self, checkpoint: CursorRequest) -> CursorRequest {
        if let Some(token) = &checkpoint.cursor {
            self.seen.insert(token);
        }
        checkpoint
    }

    fn next(
        &mut self,
        _prev: &CursorRequest,
        response: &R,
    ) -> Result<Option<CursorRequest>, WalkError> {
        let token = match (self.extract)(response) {
            Some(token) if !token.is_empty() => token,
            _ => return Ok(None),
        };
        if !self.seen.insert(&token) {
            return Err(WalkError::LoopDetected {
                kind: "cursor",
                repeated: token,
            });
        }
        Ok(Some(CursorRequest::from(token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_loop_guard() {
        let mut s = Cursor::from_page();
        let first = Strategy::<u8>::first(&mut s);
        let a = s
            .next(&first, &Page::new(vec![1u8]).with_next(Some("a")))
            .unwrap()
            .unwrap();
        let b = s
            .next(&a, &Page::new(vec![2u8]).with_next(Some("b")))
            .unwrap()
            .unwrap();
        let err = s
            .next(&b, &Page::new(vec![3u8]).with_next(Some("a")))
            .unwrap_err();
        assert!(err.is_loop());
        assert!(err.to_string().contains("\"a\""), "{err}");
        assert_eq!(
            s.next(&b, &Page::new(vec![3u8]).with_next(None::<String>))
                .unwrap(),
            None
        );
        assert_eq!(
            s.next(&b, &Page::new(vec![3u8]).with_next(Some("")))
                .unwrap(),
            None
        );
    }
}
