//! Deadlines: a time limit per call, set once and honoured by every layer
//! below it.
//!
//! [`TimeoutLayer`] fails a call that is not answered in time with
//! [`Elapsed`], as tower's `TimeoutLayer` does, and also makes the call's
//! [`Deadline`] known below it, so that work that cannot finish in time is
//! not started:
//!
//! - [`retry`](crate::retry) does not back off and retry when the next
//!   attempt would start at or after the deadline (it returns the last
//!   result, counted in [`RetryStats::deadline_stops`](crate::retry::RetryStats::deadline_stops));
//! - [`hedge`](crate::hedge) does not send a hedged attempt when less time
//!   is left than the delay between attempts (counted in
//!   [`HedgeStats::deadline_stops`](crate::hedge::HedgeStats::deadline_stops));
//! - a [`TaskQueue`](crate::queue::TaskQueue) records the deadline with
//!   each task and does not start a task whose deadline has passed;
//! - a nested `TimeoutLayer` takes the tighter of its own limit and the
//!   deadline already in force;
//! - [`PropagateDeadlineLayer`] sends the time left to a gRPC server as
//!   `grpc-timeout`, and [`TimeoutLayer::grpc`] reads it on the server;
//! - [`respond`](crate::respond) answers [`Elapsed`] with 504 Gateway
//!   Timeout and `DEADLINE_EXCEEDED`.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::deadline::{self, Elapsed, TimeoutLayer};
//! use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_patterns::BoxError> {
//! let retry = RetryLayer::builder()
//!     .max_attempts(10)
//!     .backoff(Backoff::constant(Duration::from_millis(400)).jitter(Jitter::None))
//!     .build()?;
//!
//! // A service that always fails after 100 ms, and sees the deadline.
//! let calls = Arc::new(AtomicU32::new(0));
//! let failing = service_fn({
//!     let calls = calls.clone();
//!     move |_: ()| {
//!         calls.fetch_add(1, Ordering::SeqCst);
//!         assert!(deadline::current().is_some());
//!         async {
//!             tokio::time::sleep(Duration::from_millis(100)).await;
//!             Err::<(), _>("unavailable")
//!         }
//!     }
//! });
//!
//! let mut svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::new(Duration::from_secs(1)))
//!     .layer(retry.clone())
//!     .service(failing);
//! let start = tokio::time::Instant::now();
//! let err = svc.ready().await?.call(()).await.unwrap_err();
//!
//! // Attempts at 0 and 500 ms; a third would start at 1 s, the deadline:
//! // the retry stops and returns the last error, before the deadline.
//! assert_eq!(err.to_string(), "unavailable");
//! assert!(!err.is::<Elapsed>());
//! assert_eq!(calls.load(Ordering::SeqCst), 2);
//! assert_eq!(start.elapsed(), Duration::from_millis(600));
//! assert_eq!(retry.stats().deadline_stops, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # How the deadline travels
//!
//! Layers in this crate take any request type, so the deadline travels
//! with the **task**: a `Timeout` runs the inner service's `call`, and
//! every poll of its future, with the deadline in force, and anything below
//! in the same task reads it with [`current`]. A caller without a
//! `TimeoutLayer` can set one with [`scope`].
//!
//! A task-local does not cross into another task (`tower::buffer`'s worker,
//! a spawned task). So for `http::Request`s the deadline can also travel
//! with the **request**, as a [`Deadline`] in its extensions:
//! [`TimeoutLayer::http`] puts it there and honours one already there (a
//! caller can set it by hand; an axum handler can read it). Put another
//! `TimeoutLayer::http(Duration::MAX)` after a hand-off to bring it back
//! into the task. Other request types can carry it too: implement
//! [`Carry`]. A [`TaskQueue`](crate::queue::TaskQueue) carries it with
//! each task to its worker.
//!
//! # gRPC
//!
//! On a server, [`TimeoutLayer::grpc`] honours the caller's `grpc-timeout`
//! (a value that does not parse is ignored), so retries, queues and
//! outgoing calls below stop when the caller stops waiting. On a client,
//! [`PropagateDeadlineLayer`] writes the time left as `grpc-timeout` on
//! each outgoing request, rounded down so the server never gets more time
//! than the caller has. [`parse_grpc_timeout`] and
//! [`format_grpc_timeout`] are the codec.
//!
//! # Where it goes
//!
//! Outermost in a stack (above retry, the breaker, the limit): the deadline
//! covers the whole call, retries and waits included. A per-attempt
//! timeout is a second `TimeoutLayer` at the bottom; it takes the tighter
//! of its own limit and the overall deadline. See
//! [`layer_order`](crate::layer_order).
//!
//! An [`Elapsed`] for a call that was sent is a failure to the built-in
//! classifiers (the breaker counts it; a retry above a per-attempt timeout
//! retries it), and one for a call never sent is ignored, like the crate's
//! other rejections: see [`Elapsed`](Elapsed#is-it-a-failure).

mod carry;
mod error;
mod future;
mod grpc;
mod layer;
mod propagate;
mod service;
mod shared;

pub use carry::{Carry, HttpExtensions, TaskLocal};
pub use error::{Elapsed, InvalidGrpcTimeout};
pub use future::{scope, ResponseFuture, Scope};
pub use grpc::{format_grpc_timeout, parse_grpc_timeout, GRPC_TIMEOUT};
pub use layer::{TimeoutLayer, TimeoutLayerBuilder};
pub use propagate::{PropagateDeadline, PropagateDeadlineLayer};
pub use service::Timeout;
pub use shared::{current, Deadline};
