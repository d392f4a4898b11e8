//! Fallbacks: answer a failed call with a value, a function of the
//! failure, or a backup service.
//!
//! [`FallbackLayer`] wraps any [`Service`](tower_service::Service). When
//! the [`Classify`](crate::classify::Classify) value calls a call's result
//! a [`Failure`](crate::classify::Outcome::Failure) (by default, every
//! `Err`; with [`HttpClassify`](crate::classify::HttpClassify), a 5xx, 429
//! or 408 response too), the caller gets the fallback's answer instead:
//!
//! - [`FallbackLayer::value`]: a clone of a value (a default, a cached
//!   answer);
//! - [`FallbackLayer::from_fn`]: a function of the original result, which
//!   it owns, so the answer can say what went wrong;
//! - [`FallbackLayer::backup`]: the same request sent to a backup service
//!   (another region, a replica, a degraded mode).
//!
//! ```
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::fallback::FallbackLayer;
//! use tower_patterns::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let fallback = FallbackLayer::builder()
//!     .value(String::from("(recommendations unavailable)"))
//!     .on_fallback(|failed: &Result<String, BoxError>| {
//!         if let Err(e) = failed {
//!             eprintln!("recommendations failed, serving the default: {e}");
//!         }
//!     })
//!     .build()?;
//! let mut svc = ServiceBuilder::new()
//!     .layer(fallback.clone())
//!     .service(service_fn(|user: u32| async move {
//!         if user == 0 {
//!             Err::<String, BoxError>("no such user".into())
//!         } else {
//!             Ok(format!("books for user {user}"))
//!         }
//!     }));
//!
//! assert_eq!(svc.ready().await?.call(7).await?, "books for user 7");
//! assert_eq!(svc.ready().await?.call(0).await?, "(recommendations unavailable)");
//!
//! let stats = fallback.stats();
//! assert_eq!((stats.calls, stats.fallbacks, stats.fallback_failures), (2, 1, 0));
//! # Ok(())
//! # }
//! ```
//!
//! # What falls back
//!
//! A result the classifier calls [`Failure`](crate::classify::Outcome::Failure),
//! and an error that is one of the crate's own rejections (an open
//! breaker's [`Open`](crate::circuit_breaker::Open), a full limit's
//! [`Overloaded`](crate::limit::Overloaded), a
//! [`RateLimited`](crate::rate_limit::RateLimited)): retry and the breaker
//! ignore those, but a rejected call has no answer, and a fallback behind a
//! breaker is meant to answer while it is open. Any other result (a
//! success, an HTTP 404) is returned as it is.
//!
//! # The original failure
//!
//! The caller gets the fallback's answer, unchanged, as tower-http's layers
//! leave responses alone. The original failure stays reachable three ways:
//!
//! - **A hook**, as tower-http's `on_failure` callbacks:
//!   [`on_fallback`](FallbackLayerBuilder::on_fallback) sees the original
//!   result (by reference) of every call that falls back, before the
//!   answer is made: log it, count it by kind, record it on a span.
//! - **The function** of [`from_fn`](FallbackLayer::from_fn) owns the
//!   original result, so it can put the error into its answer (an
//!   `http::Response` extension, a field of a degraded answer).
//! - **[`FallbackStats`]**: calls, fallbacks served, and fallbacks that
//!   failed too.
//!
//! When a backup service fails too, its result is what the caller gets
//! (the hook saw the primary's).
//!
//! # Readiness
//!
//! `poll_ready` waits for the primary, as every layer does; a backup
//! service is driven ready inside the response future, only for calls that
//! fall back, so a backup that is slow to be ready costs nothing while the
//! primary answers. When the primary's `poll_ready` fails (a closed
//! buffer, say) with an error that falls back, the service reports itself
//! ready and answers the next call from the fallback: the failing primary
//! never stands between the caller and the backup. A primary that is
//! merely slow to be ready is waited for; put a limit with a bounded wait
//! or a timeout below the fallback to make that a failure too.
//!
//! # Lifetimes and cost
//!
//! A call that succeeds costs what the primary call costs, plus the
//! classifier and an increment of a counter only its service handle writes:
//! no allocation, no lock, no reference count, no atomic read-modify-write
//! (a [`Backup`] adds a copy of the request, made before the primary takes
//! it). `benches/fallback_chaos.rs` measures it beside a bare call.
//!
//! To stay that cheap, a response future does not hold the layer's state
//! while another handle to the layer (the layer itself, or a clone of the
//! service, as servers and clients keep) is alive: when its call fails it
//! looks the state up by the layer's id. A lone service handle, which could
//! be dropped while its call is in flight (as `oneshot` does), makes each
//! future hold the state instead, for one reference count and one small
//! allocation per call (the future keeps everything off the success path
//! behind a single pointer, which is what keeps the common path within
//! about 2 ns of a bare call). Only a
//! call still in flight after *every* handle was dropped (a server shutting
//! down) finds nothing to answer with; its caller gets the original
//! failure.

mod future;
mod hook;
mod layer;
mod service;
mod shared;
mod strategy;

pub use future::ResponseFuture;
pub use hook::OnFallback;
pub use layer::{FallbackLayer, FallbackLayerBuilder};
pub use service::Fallback;
pub use shared::FallbackStats;
pub use strategy::{Backup, BackupFuture, FromFn, NoFallback, Strategy, Value};
