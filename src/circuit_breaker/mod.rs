//! A circuit breaker any [`Service`](tower_service::Service) can wear.
//!
//! While the inner service is healthy the breaker is **closed** and calls go
//! through. When it fails too much the breaker **opens**: calls fail at once
//! with an [`Open`] error, without touching the inner service, so a
//! struggling dependency gets room to recover and callers get an answer
//! immediately instead of after a timeout. After the open duration the
//! breaker turns **half-open** (it notices on the next call or state read:
//! there is no timer; see
//! [`on_state_change`](CircuitBreakerLayerBuilder::on_state_change)) and
//! lets a few probe calls through; if they
//! all succeed it closes, if one fails it opens again (for longer, if
//! [`open_duration_max`](CircuitBreakerLayerBuilder::open_duration_max) is set).
//!
//! Two models decide when to open:
//!
//! - **Consecutive** ([`CircuitBreakerLayer::consecutive`]): after `n`
//!   failures in a row.
//! - **Rate** ([`CircuitBreakerLayer::builder`]): when the failure rate, or
//!   the share of slow calls, over a sliding window ([`Window::Count`] or
//!   [`Window::Time`]) reaches a threshold, once the window holds
//!   [`minimum_calls`](CircuitBreakerLayerBuilder::minimum_calls).
//!
//! What counts as a failure is a [`Classify`](crate::classify::Classify),
//! the same one retry uses; [`Outcome::Ignored`](crate::classify::Outcome)
//! results (an HTTP 404 under [`HttpClassify`](crate::classify::HttpClassify))
//! count as neither success nor failure.
//!
//! ```
//! use std::time::Duration;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open, State};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // Open after 5 failures in a row; probe again after 60 s.
//! let layer = CircuitBreakerLayer::consecutive(5, Duration::from_secs(60));
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|fail: bool| async move {
//!         if fail { Err::<&str, BoxError>("boom".into()) } else { Ok("hello") }
//!     });
//!
//! for _ in 0..5 {
//!     assert!(svc.ready().await.unwrap().call(true).await.is_err());
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // Open: fails fast, without calling the service.
//! let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
//! let open = err.downcast_ref::<Open>().unwrap();
//! assert_eq!(open.retry_after(), Some(Duration::from_secs(60)));
//!
//! // 60 s later one probe goes through; its success closes the breaker.
//! tokio::time::sleep(Duration::from_secs(60)).await;
//! assert_eq!(svc.ready().await.unwrap().call(false).await.unwrap(), "hello");
//! assert_eq!(handle.state(), State::Closed);
//! # }
//! ```
//!
//! # Speed
//!
//! The closed path takes no lock and writes no shared memory: the breaker's
//! state lives in one atomic word that only transitions write, per-call
//! counters are striped across cache lines, and each service clone has its
//! own reference-counted share of the breaker. An open breaker rejects with
//! one atomic load, one clock read (to know whether the open duration is
//! over) and the allocation of the boxed [`Open`] error; a breaker held
//! open by [`CircuitBreakerHandle::force_open`] skips the clock. The time
//! window reads the clock once per call, and slow-call detection twice.
//! See `benches/circuit_breaker.rs`.
//!
//! # Semantics worth knowing
//!
//! - Clones of the service share the breaker; a new layer is a new breaker.
//! - Outcomes are recorded against the state the call was admitted in: a
//!   call admitted while closed that completes after the breaker opened (or
//!   was reset) is not counted.
//! - A half-open probe that never completes keeps its slot; put a timeout
//!   inside the breaker.
//! - [`CircuitBreakerHandle::force_open`] holds the breaker open with no
//!   timer until [`CircuitBreakerHandle::force_closed`] or
//!   [`CircuitBreakerHandle::reset`].
//! - [`CircuitBreakerLayer::stats`], [`CircuitBreaker::stats`] and
//!   [`CircuitBreakerHandle::stats`] return the same
//!   [`CircuitBreakerStats`] snapshot of the one shared breaker.

// From the top down (imports run one way): layer (and its `build`) ->
// builder, service -> future -> core; handle -> core. core is the breaker
// every clone shares; below it: config (the rules), counters (striped),
// notify (callbacks), stats, window (pure sliding windows), word (the
// packed state word) and ticket (an admitted call's proof).
mod builder;
mod change;
mod config;
mod core;
mod counters;
mod error;
mod future;
mod handle;
mod layer;
mod notify;
mod service;
mod stats;
mod ticket;
mod window;
mod word;

pub use crate::rejection::State;
pub use builder::CircuitBreakerLayerBuilder;
pub use change::{ChangeReason, StateChange};
pub use error::Open;
pub use future::ResponseFuture;
pub use handle::CircuitBreakerHandle;
pub use layer::CircuitBreakerLayer;
pub use service::CircuitBreaker;
pub use stats::CircuitBreakerStats;
pub use window::Window;
