//! Retry with exponential backoff, jitter, a retry budget and a deadline.
//!
//! [`RetryLayer`] wraps any `Clone` [`Service`](tower_service::Service)
//! whose requests are [`Replay`] (every `Clone` type, including
//! `http::Request<Full<Bytes>>` and friends). A call the
//! [`Classify`](crate::classify::Classify) value calls a
//! [`Failure`](crate::classify::Outcome::Failure) is tried again after a
//! backoff delay, up to `max_attempts` calls in all; the caller gets the
//! last attempt's result unchanged (the inner error, or the failed
//! response), never a wrapper.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let retry = RetryLayer::builder()
//!     .max_attempts(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(1)).jitter(Jitter::None))
//!     .build()?;
//!
//! // A service that fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let flaky = service_fn({
//!     let calls = calls.clone();
//!     move |name: String| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
//!         async move {
//!             if n < 3 {
//!                 Err(format!("attempt {n} failed"))
//!             } else {
//!                 Ok(format!("hello, {name}"))
//!             }
//!         }
//!     }
//! });
//!
//! let mut svc = ServiceBuilder::new().layer(retry.clone()).service(flaky);
//! let answer = svc.ready().await?.call("world".to_string()).await?;
//! assert_eq!(answer, "hello, world");
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//!
//! let stats = retry.stats();
//! assert_eq!((stats.attempts, stats.retries, stats.budget_refusals), (3, 2, 0));
//! # Ok(())
//! # }
//! ```
//!
//! # What is retried, and when
//!
//! - Only [`Outcome::Failure`](crate::classify::Outcome::Failure): never a
//!   success, never an `Ignored` result (an HTTP 404, say). The default
//!   classifier fails every `Err`; use
//!   [`HttpClassify`](crate::classify::HttpClassify) for
//!   `http::Response`s (5xx, 429, 408).
//! - **Whatever the request is.** The layer does not know HTTP methods: a
//!   `POST` that timed out, or got a 503 after the origin had acted on it,
//!   is sent again. Put the layer in front of calls that are safe to
//!   repeat (GET, PUT, DELETE; a `POST` carrying an idempotency key the
//!   server honours), or send the others through a request type whose
//!   [`Replay`] returns `None` when it must not be repeated (a newtype
//!   around the request: every `Clone` type is `Replay` already).
//! - Never the crate's own rejections: an open breaker's
//!   [`Open`](crate::circuit_breaker::Open), a full limit's
//!   [`Overloaded`](crate::limit::Overloaded) fail the call at once (the
//!   built-in classifiers call them `Ignored`; see
//!   [`classify`](crate::classify#the-crates-own-rejections-are-not-failures)).
//! - The delay comes from the [`Backoff`] schedule, unless the classifier
//!   reports a server's `Retry-After`, which is used instead, capped by
//!   [`max_retry_after`](RetryLayerBuilder::max_retry_after) (by default
//!   the backoff's [`max_delay`](Backoff::max_delay)).
//! - Under a deadline, no attempt starts and no backoff sleep is begun
//!   that would end at or after it: the caller gets the last attempt's
//!   result at once (counted in
//!   [`RetryStats::deadline_stops`]). The deadline is the layer's own
//!   [`deadline`](RetryLayerBuilder::deadline), or the one in force from a
//!   [`TimeoutLayer`](crate::deadline::TimeoutLayer) above it (or
//!   [`deadline::scope`](crate::deadline::scope)), whichever is tighter.
//!   The one in force is read only after an attempt fails.
//! - With a [`RetryBudget`], retries beyond a fraction of recent traffic
//!   are refused, so an outage cannot multiply the load on the service.
//! - Every retry waits for the inner service's `poll_ready`, as the tower
//!   contract requires. Dropping the [`ResponseFuture`] stops everything.
//! - Backoff sleeps and deadlines use tokio's timer, so a retry that waits
//!   must run inside a tokio runtime with time enabled (paused time works:
//!   tests run in microseconds). The first attempt needs no runtime.
//!
//! # Cost
//!
//! When the first attempt succeeds, a call costs what `tower::retry` costs
//! (one clone of the inner service and one of the request) plus a plain
//! increment of a counter owned by the calling handle: no allocation, no
//! lock, no reference count, no atomic read-modify-write, no clock read
//! (unless the layer's own deadline is set), no look at the deadline in
//! force. `benches/retry.rs` measures it beside
//! tower's `Retry` and tower-resilience's. Retries pay for what they need:
//! one allocation for the retry bookkeeping, a look-up of the layer's
//! shared state, and a short lock for the budget.
//!
//! # Sharing
//!
//! Every service made by one layer, and every clone of those services,
//! shares one [`RetryBudget`] and one set of [`RetryStats`]. Each handle
//! counts its own first attempts (a counter only it writes), and
//! [`RetryLayer::stats`] sums them, so statistics are exact without the
//! success path touching shared cache lines.

mod backoff;
mod budget;
mod future;
mod layer;
mod plan;
mod replay;
mod service;
mod shared;

pub use backoff::{Backoff, Jitter};
pub use budget::RetryBudget;
pub use future::ResponseFuture;
pub use layer::{RetryLayer, RetryLayerBuilder};
pub use replay::Replay;
pub use service::Retry;
pub use shared::RetryStats;
