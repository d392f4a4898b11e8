//! Pagination as a [`Stream`](futures::Stream) driven by a page
//! [`Service`](tower_service::Service).
//!
//! A *page service* answers one page request with a page: a [`Page`], or
//! the API's own response type (any [`PageResponse`], see
//! [below](#the-apis-own-response-type)). A [`Strategy`] says which request
//! comes first and how to build the next one from the previous request and
//! its page:
//!
//! - [`PageNumber`]: `page = start, start + 1, ...`; stops on an empty or
//!   short page. The next request is known in advance, so
//!   [`prefetch`](Paginator::prefetch) fires before the page arrives.
//! - [`Cursor`]: the next token is read from the page (or from the API's
//!   own response, with [`Cursor::from_response`]); stops when there is
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
//! # The API's own response type
//!
//! A page service may answer the type its API already has: implement
//! [`PageResponse`] for it (where its items are), and read the rest in the
//! strategy. [`Pages`] then yields these responses, other fields intact:
//!
//! ```
//! use futures::TryStreamExt;
//! use tower::service_fn;
//! use tower_patterns::paginate::{Cursor, CursorRequest, PageResponse, Paginator};
//!
//! struct UsersPage {
//!     users: Vec<u64>,
//!     next_cursor: Option<String>,
//! }
//!
//! impl PageResponse for UsersPage {
//!     type Item = u64;
//!     fn items(&self) -> &[u64] {
//!         &self.users
//!     }
//!     fn items_mut(&mut self) -> &mut Vec<u64> {
//!         &mut self.users
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // A fake API with 25 users, 10 per page; the cursor is an offset.
//! let api = service_fn(|req: CursorRequest| async move {
//!     let from: u64 = req.cursor.map_or(Ok(0), |c| c.parse())?;
//!     let to = (from + 10).min(25);
//!     let next_cursor = (to < 25).then(|| to.to_string());
//!     Ok::<_, tower::BoxError>(UsersPage { users: (from..to).collect(), next_cursor })
//! });
//!
//! let next = Cursor::from_response(|page: &UsersPage| page.next_cursor.clone());
//! let all: Vec<u64> = Paginator::new(api, next).items().try_collect().await?;
//! assert_eq!(all, (0..25).collect::<Vec<_>>());
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
//! [`json_link_paginator`] walks a JSON API that paginates with `Link`
//! headers (as GitHub's does) over any hyper-style HTTP client service; see
//! [`JsonPages`] to combine the HTTP side with another strategy. Pages are
//! decoded by [`fetch`](crate::fetch)'s JSON code (one status rule, one body
//! limit, [`fetch::DEFAULT_MAX_BODY_BYTES`](crate::fetch::DEFAULT_MAX_BODY_BYTES)
//! by default), and [`HttpClassify`](crate::classify::HttpClassify) classifies
//! page results for retry and the circuit breaker.
//!
//! # Guarantees
//!
//! The streams are `Send` when the service, its futures and the items are;
//! they preserve page order; they hold at most `prefetch + 1` pages; and
//! dropping them cancels every request in flight.

mod cursor;
mod error;
mod http;
mod items;
mod link;
mod page;
mod paginator;
mod seen;
mod strategy;
mod stream;

pub use self::cursor::{Cursor, CursorRequest};
pub use self::error::{PaginateError, WalkError};
pub use self::http::{json_link_paginator, JsonLinkPaginator, JsonPages};
pub use self::items::Items;
pub use self::link::parse_next_link;
pub use self::page::{Page, PageResponse};
pub use self::paginator::Paginator;
pub use self::strategy::{LinkHeader, PageNumber, PageRequest, Strategy};
pub use self::stream::{Pages, PaginateStats};
