//! An HTTP cache by the rules of RFC 9111, as a layer for HTTP services.
//!
//! [`HttpCacheLayer`] wraps any `Service<http::Request<B>, Response =
//! http::Response<ResB>>` (a `fetch::HttpClient`, an axum router, a
//! proxy's upstream) and answers from its store what the protocol allows:
//!
//! - **The protocol's decisions** (storability, freshness from
//!   `s-maxage` / `max-age` / `Expires` or a heuristic, `Age`, request
//!   `max-age` / `min-fresh` / `max-stale` / `no-cache`, `no-store`,
//!   `Authorization` and `private`, revalidation requests) come from the
//!   [`http-cache-semantics`](http_cache_semantics) crate, shown a
//!   normalised view of each message (quoted strings, invalid values,
//!   every date form; see `policy.rs`). A miss stores a response on the
//!   crate's storability and freshness worked out from its parsed fields
//!   (`arrival.rs`, tested against the crate); the crate's policy for a
//!   stored response is made when a request first needs more than its
//!   freshness, so a miss costs no policy.
//! - **Shared or private** ([`shared`](HttpCacheLayerBuilder::shared)): a
//!   proxy never stores `private` responses, nor a response to a request
//!   with `Authorization` unless it allows it (`public`, `s-maxage`,
//!   `must-revalidate`).
//! - **`Vary`**: up to [`max_variants`](HttpCacheLayerBuilder::max_variants)
//!   responses per URI, chosen by the request's selecting fields
//!   (compared normalised: lines combined, whitespace and `Accept-*` case
//!   ignored); `Vary: *` is never served.
//! - **Scheme and host**: responses are stored under the URI's authority
//!   (or `Host`) and path with query, and served only to requests of
//!   their own scheme when both say one: an `http://` answer (a lasting
//!   redirect to `https://`, say) never answers an `https://` request.
//!   Requests in origin form (`/path`, as a server sees them) carry no
//!   scheme and are served either. A request whose `Host` names another
//!   host than its URI (one address, several virtual hosts) is served
//!   only what that host answered.
//! - **Revalidation**: a stale response with `ETag` / `Last-Modified` is
//!   validated with `If-None-Match` / `If-Modified-Since`; a `304` refreshes
//!   the stored fields (not `Content-Length`, `Content-Encoding`,
//!   `Content-Range`, `Content-MD5`, `ETag`) and the stored body is served.
//!   A client's own conditions are answered with a `304` from the store.
//! - **Stale serving** from the response's own `stale-while-revalidate`
//!   (served at once, refreshed once in the background) and
//!   `stale-if-error` (served when the inner service fails or answers 5xx),
//!   never past `must-revalidate`, `no-cache`, and in a shared cache
//!   `proxy-revalidate` or `s-maxage`.
//! - **`only-if-cached`** with nothing usable stored: `504`.
//! - **Unsafe methods** (anything but GET, HEAD, OPTIONS, TRACE) that get
//!   a 2xx or 3xx invalidate the target URI and a same-origin `Location` /
//!   `Content-Location`.
//! - **HEAD** is answered from a stored GET; one byte `Range` of a stored
//!   200 is answered `206`; a POST answer with explicit freshness and its
//!   own URI as `Content-Location` serves later GETs.
//! - **Bodies** are collected up to
//!   [`max_body_bytes`](HttpCacheLayerBuilder::max_body_bytes) and stored
//!   as `Bytes`; larger ones stream through uncached.
//! - **`Cache-Status`** (RFC 9211) on every answer with
//!   [`cache_status`](HttpCacheLayerBuilder::cache_status).
//! - **Coalescing** ([`coalesce`](HttpCacheLayerBuilder::coalesce)):
//!   concurrent GET misses for one URI make one request upstream when its
//!   answer is stored.
//! - **Shared by replicas**
//!   ([`build_with_remote`](HttpCacheLayerBuilder::build_with_remote)):
//!   a [`RemoteStore`](crate::cache::RemoteStore) tier (Redis, feature
//!   `redis`) behind the memory; invalidations reach every replica.
//! - **Time is tokio's**: ages and freshness follow `tokio::time`, so tests
//!   run with paused time.
//!
//! **Cookies.** As RFC 9111 allows, a response with `Set-Cookie` is stored
//! and served like any other (a shared cache serves it to every user): an
//! origin that sets per-user cookies marks those responses `private` or
//! `no-store`.
//!
//! **Not done:** 206 responses are not stored (nor combined); several
//! ranges in one request get the whole 200; qualified `no-cache="field"`
//! and `private="field"` act as their unqualified forms (the response is
//! revalidated / not stored by a shared cache); `Warning` is not generated
//! (RFC 9111 dropped it); stale responses are served on an upstream
//! failure only with `stale-if-error` (RFC 9111 §4.2.4 would allow it
//! whenever not forbidden); HEAD answers do not update stored GETs.
//!
//! Responses have the body [`HttpCacheBody`]; the request body type must
//! be `Default` (a background revalidation sends an empty one).
//! [`cache::CacheLayer`](crate::cache::CacheLayer) stays the cache for
//! services that are not HTTP.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::http_cache::HttpCacheLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let origin = {
//!     let calls = calls.clone();
//!     service_fn(move |req: Request<Full<Bytes>>| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let res = Response::builder()
//!                 .header("cache-control", "max-age=60")
//!                 .body(Full::new(Bytes::from(format!("{} #{n}", req.uri()))))?;
//!             Ok::<_, http::Error>(res)
//!         }
//!     })
//! };
//!
//! let layer = HttpCacheLayer::builder().build()?;
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new().layer(layer).service(origin);
//! let get = || Request::get("http://example.test/a").body(Full::default()).unwrap();
//!
//! let a = svc.ready().await?.call(get()).await?;
//! let b = svc.ready().await?.call(get()).await?;
//! assert_eq!(b.headers()["age"], "0");
//! assert_eq!(b.into_body().collect().await?.to_bytes(), "http://example.test/a #0");
//! assert_eq!(calls.load(Ordering::SeqCst), 1); // the second came from the cache
//! # drop(a);
//!
//! // A POST that succeeds makes the stored response stale.
//! let post = Request::post("http://example.test/a").body(Full::default())?;
//! svc.ready().await?.call(post).await?;
//! let c = svc.ready().await?.call(get()).await?;
//! assert_eq!(c.into_body().collect().await?.to_bytes(), "http://example.test/a #2");
//!
//! let stats = handle.stats();
//! assert_eq!((stats.hits, stats.misses, stats.invalidations), (1, 2, 1));
//! # Ok(())
//! # }
//! ```

mod arrival;
mod body;
mod date;
mod error;
mod flow;
mod future;
mod handle;
mod key;
mod layer;
mod lookup;
mod parse;
mod policy;
mod remote;
mod respond;
mod service;
mod shared;
mod stats;
mod stored;

pub use body::HttpCacheBody;
pub use error::UpstreamBodyError;
pub use future::ResponseFuture;
pub use handle::HttpCacheHandle;
pub use layer::{HttpCacheLayer, HttpCacheLayerBuilder};
pub use service::HttpCache;
pub use stats::HttpCacheStats;
