//! The page and item streams, with prefetch.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tower_service::Service;

use super::error::WalkError;
use super::page::{Page, PageResponse};
use super::strategy::Strategy;
use crate::trace::trace_event;

type Request<St, T, R> = <St as Strategy<T, R>>::Request;
type PageResult<S, Req> = Result<<S as Service<Req>>::Response, <S as Service<Req>>::Error>;
type SlotOf<S, St, T, R> = Slot<
    Request<St, T, R>,
    <S as Service<Request<St, T, R>>>::Future,
    PageResult<S, Request<St, T, R>>,
>;

/// A snapshot of a walk's progress, from [`Pages::stats`] or
/// [`Items::stats`](super::Items::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PaginateStats {
    /// Pages yielded so far.
    pub pages: u64,
    /// Items in the pages yielded so far (after any `max_items` cut).
    pub items: u64,
    /// Page requests sent so far, including prefetched ones that were
    /// cancelled because the walk ended first.
    pub requests_sent: u64,
    /// Page requests in flight or answered but not yet yielded.
    pub in_flight: usize,
}

/// A page request on its way.
enum InFlight<F, P> {
    /// Polled by the stream itself (no prefetch, or no tokio runtime).
    Local(Pin<Box<F>>),
    /// Running as a tokio task (prefetch); aborted when dropped.
    Spawned(AbortOnDrop<P>),
    /// Answered (a local future that finished behind the front) or failed
    /// before it was sent (the service's readiness failed).
    Done(Option<P>),
}

struct Slot<R, F, P> {
    request: R,
    state: InFlight<F, P>,
}

/// A `JoinHandle` that aborts its task when dropped, so dropping the stream
/// cancels prefetched requests.
struct AbortOnDrop<P>(JoinHandle<P>);

impl<P> Drop for AbortOnDrop<P> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The stream of pages of a walk, from [`Paginator::pages`](super::Paginator::pages).
///
/// Yields `Result<R, S::Error>` in order: the page service's responses,
/// [`Page<T>`] by default (see [`PageResponse`]). After an error (from the
/// page service or the [`Strategy`]) it yields nothing more; see
/// [`checkpoint`](Pages::checkpoint) to resume. The page that ends a walk
/// is yielded like any other, even when empty. Dropping the stream cancels
/// every request in flight.
///
/// Each page costs one boxed future (or one tokio task with prefetch): a
/// few hundred nanoseconds, far below any network round trip.
pub struct Pages<S, St, T, R = Page<T>>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
{
    service: S,
    strategy: St,
    queue: VecDeque<SlotOf<S, St, T, R>>,
    /// The next request to send, when known.
    next: Option<St::Request>,
    /// No more requests will be sent.
    finished: bool,
    /// The stream has ended.
    done: bool,
    /// A strategy error to yield after the page that caused it.
    pending_error: Option<S::Error>,
    checkpoint: Option<St::Request>,
    prefetch: usize,
    spawn: Option<Handle>,
    max_pages: Option<u64>,
    max_items: Option<u64>,
    stats: PaginateStats,
}

// The stream never pins its fields in place (futures are boxed or spawned).
impl<S, St, T, R> Unpin for Pages<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
{
}

impl<S, St, T, R> Pages<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
{
    pub(crate) fn new(
        service: S,
        strategy: St,
        first: St::Request,
        prefetch: usize,
        max_pages: Option<u64>,
        max_items: Option<u64>,
    ) -> Self {
        let spawn = if prefetch > 0 {
            Handle::try_current().ok()
        } else {
            None
        };
        let finished = max_pages == Some(0) || max_items == Some(0);
        Pages {
            service,
            strategy,
            queue: VecDeque::with_capacity(prefetch.saturating_add(1).min(64)),
            checkpoint: Some(first.clone()),
            next: (!finished).then_some(first),
            finished,
            done: false,
            pending_error: None,
            prefetch,
            spawn,
            max_pages,
            max_items,
            stats: PaginateStats::default(),
        }
    }

    /// Where to resume this walk with
    /// [`Paginator::resume`](super::Paginator::resume): the request of the
    /// first page not yet yielded. After a failed page, that page's request;
    /// `None` once the walk reached its last page (or a loop).
    pub fn checkpoint(&self) -> Option<&St::Request> {
        self.checkpoint.as_ref()
    }

    /// Progress so far.
    pub fn stats(&self) -> PaginateStats {
        PaginateStats {
            in_flight: self.queue.len(),
            ..self.stats
        }
    }

    fn stop_sending(&mut self) {
        self.finished = true;
        self.next = None;
        // Requests sent speculatively past the end are cancelled here.
        self.queue.clear();
    }
}

impl<S, St, T, R> Pages<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
    S::Future: Send + 'static,
    S::Error: From<WalkError> + Send + 'static,
    R: PageResponse<Item = T> + Send + 'static,
{
    /// Sends known requests while fewer than `cap` are queued.
    fn fill(&mut self, cx: &mut Context<'_>, cap: usize) {
        while !self.finished && self.queue.len() < cap {
            let Some(request) = self.next.take() else {
                break;
            };
            if self
                .max_pages
                .is_some_and(|max| self.stats.requests_sent >= max)
            {
                self.finished = true;
                break;
            }
            match self.service.poll_ready(cx) {
                Poll::Pending => {
                    self.next = Some(request);
                    break;
                }
                Poll::Ready(Err(e)) => {
                    self.queue.push_back(Slot {
                        request,
                        state: InFlight::Done(Some(Err(e))),
                    });
                    self.finished = true;
                }
                Poll::Ready(Ok(())) => {
                    self.next = self.strategy.predict(&request);
                    let future = self.service.call(request.clone());
                    self.stats.requests_sent += 1;
                    let state = match &self.spawn {
                        Some(handle) => InFlight::Spawned(AbortOnDrop(handle.spawn(future))),
                        None => InFlight::Local(Box::pin(future)),
                    };
                    self.queue.push_back(Slot { request, state });
                }
            }
        }
    }

    fn poll_front(&mut self, cx: &mut Context<'_>) -> Poll<Option<PageResult<S, St::Request>>> {
        // Local futures behind the front progress too (prefetch without a
        // tokio runtime); their answers wait in the queue, in order.
        for slot in self.queue.iter_mut().skip(1) {
            if let InFlight::Local(future) = &mut slot.state {
                if let Poll::Ready(result) = future.as_mut().poll(cx) {
                    slot.state = InFlight::Done(Some(result));
                }
            }
        }
        let Some(front) = self.queue.front_mut() else {
            return Poll::Ready(None);
        };
        let result = match &mut front.state {
            InFlight::Local(future) => futures::ready!(future.as_mut().poll(cx)),
            InFlight::Spawned(task) => match futures::ready!(Pin::new(&mut task.0).poll(cx)) {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(WalkError::TaskCancelled.into()),
            },
            InFlight::Done(result) => result
                .take()
                .unwrap_or_else(|| Err(WalkError::TaskCancelled.into())),
        };
        Poll::Ready(Some(result))
    }
}

impl<S, St, T, R> Stream for Pages<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
    S::Future: Send + 'static,
    S::Error: From<WalkError> + Send + 'static,
    R: PageResponse<Item = T> + Send + 'static,
{
    type Item = Result<R, S::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(e) = this.pending_error.take() {
            this.done = true;
            return Poll::Ready(Some(Err(e)));
        }
        // The consumer asked for a page: it no longer holds the previous one.
        this.fill(cx, this.prefetch.saturating_add(1));
        let result = match futures::ready!(this.poll_front(cx)) {
            Some(result) => result,
            // Nothing sent because the service is not ready yet: its
            // `poll_ready` registered our waker.
            None if this.next.is_some() && !this.finished => return Poll::Pending,
            None => {
                this.done = true;
                return Poll::Ready(None);
            }
        };
        let Some(slot) = this.queue.pop_front() else {
            this.done = true;
            return Poll::Ready(None);
        };
        let mut page = match result {
            Ok(page) => page,
            Err(e) => {
                trace_event!(DEBUG, pages = this.stats.pages, "pagination: page failed");
                this.checkpoint = Some(slot.request);
                this.stop_sending();
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
        };

        match this.strategy.next(&slot.request, &page) {
            Ok(Some(next)) => {
                if this.queue.is_empty() && this.next.is_none() && !this.finished {
                    this.next = Some(next.clone());
                }
                this.checkpoint = Some(next);
            }
            Ok(None) => {
                trace_event!(DEBUG, pages = this.stats.pages + 1, "pagination: last page");
                this.checkpoint = None;
                this.stop_sending();
            }
            Err(e) => {
                trace_event!(WARN, error = %e, "pagination: walk stopped");
                this.checkpoint = None;
                this.stop_sending();
                this.pending_error = Some(e.into());
            }
        }

        this.stats.pages += 1;
        if let Some(max) = this.max_items {
            let room = max.saturating_sub(this.stats.items);
            let items = page.items_mut();
            if items.len() as u64 >= room {
                items.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                this.stop_sending();
            }
        }
        this.stats.items += page.items().len() as u64;
        if this.max_pages.is_some_and(|max| this.stats.pages >= max) {
            this.stop_sending();
        }
        // While the consumer handles this page, `prefetch` requests may run.
        this.fill(cx, this.prefetch);
        if this.finished && this.queue.is_empty() && this.pending_error.is_none() {
            this.done = true;
        }
        Poll::Ready(Some(Ok(page)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done && self.pending_error.is_none() {
            (0, Some(0))
        } else {
            (0, None)
        }
    }
}

impl<S, St, T, R> fmt::Debug for Pages<S, St, T, R>
where
    St: Strategy<T, R>,
    S: Service<St::Request, Response = R>,
    St::Request: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pages")
            .field("checkpoint", &self.checkpoint)
            .field("prefetch", &self.prefetch)
            .field("stats", &self.stats())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
