//! [`Items`]: the items of a walk, page after page.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tower_service::Service;

use super::error::WalkError;
use super::page::{Page, PageResponse};
use super::strategy::Strategy;
use super::stream::{Pages, PaginateStats};

/// The stream of items of a walk, from [`Paginator::items`](super::Paginator::items).
///
/// Yields `Result<T, S::Error>`, page after page, in order; ends after the
/// first error. It holds the current page's remaining items plus what
/// [`Pages`] holds.
pub struct Items<S, St, T, R = Page<T>>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
{
    pages: Pages<S, St, T, R>,
    current: std::vec::IntoIter<T>,
}

// `current` is never pinned in place.
impl<S, St, T, R> Unpin for Items<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
{
}

impl<S, St, T, R> Items<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
{
    pub(crate) fn new(pages: Pages<S, St, T, R>) -> Self {
        Items {
            pages,
            current: Vec::new().into_iter(),
        }
    }

    /// Where to resume: the request of the first page not yet started (see
    /// [`Pages::checkpoint`]). Items of a page partly consumed are not
    /// covered by it.
    pub fn checkpoint(&self) -> Option<&St::Request> {
        self.pages.checkpoint()
    }

    /// Progress so far, counted in whole pages received.
    pub fn stats(&self) -> PaginateStats {
        self.pages.stats()
    }

    /// The underlying page stream, with the items of the current page not
    /// yet yielded.
    pub fn into_pages(self) -> (Pages<S, St, T, R>, Vec<T>) {
        (self.pages, self.current.collect())
    }
}

impl<S, St, T, R> Stream for Items<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
    S::Future: Send + 'static,
    S::Error: From<WalkError> + Send + 'static,
    R: PageResponse<Item = T> + Send + 'static,
{
    type Item = Result<T, S::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.current.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            match futures::ready!(Pin::new(&mut this.pages).poll_next(cx)) {
                Some(Ok(mut page)) => this.current = std::mem::take(page.items_mut()).into_iter(),
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => return Poll::Ready(None),
            }
        }
    }
}

impl<S, St, T, R> fmt::Debug for Items<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
    St::Request: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Items")
            .field("pages", &self.pages)
            .field("buffered", &self.current.len())
            .finish()
    }
}
