//! Hedged requests: a second attempt for a call that is slow, so the tail
//! latency of a service is the better of two tries.
//!
//! [`HedgeLayer`] wraps any `Clone` [`Service`](tower_service::Service)
//! whose requests are [`Replay`](crate::retry::Replay). When an eligible
//! request has not answered after a delay, it sends the same request again
//! (up to [`max_hedges`](HedgeLayerBuilder::max_hedges) times), within a
//! budget, and the first acceptable answer wins; the other attempts are
//! dropped, which cancels them.
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::hedge::{AnyRequest, HedgeLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hedge = HedgeLayer::builder()
//!     .delay(Duration::from_millis(50))
//!     .eligible(AnyRequest) // every request of this service is safe to send twice
//!     .build()?;
//!
//! // A service whose first call hangs for a second; later calls take 10 ms.
//! let calls = Arc::new(AtomicU32::new(0));
//! let lumpy = service_fn({
//!     let calls = calls.clone();
//!     move |name: String| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             let ms = if n == 0 { 1_000 } else { 10 };
//!             tokio::time::sleep(Duration::from_millis(ms)).await;
//!             Ok::<_, std::convert::Infallible>(format!("hello, {name} (attempt {})", n + 1))
//!         }
//!     }
//! });
//!
//! let mut svc = ServiceBuilder::new().layer(hedge.clone()).service(lumpy);
//! let started = tokio::time::Instant::now();
//! let answer = svc.ready().await?.call("world".to_string()).await?;
//! assert_eq!(answer, "hello, world (attempt 2)");
//! assert_eq!(started.elapsed(), Duration::from_millis(60)); // 50 ms delay + 10 ms
//!
//! let stats = hedge.stats();
//! assert_eq!((stats.calls, stats.hedges, stats.hedge_wins, stats.cancelled), (1, 1, 1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Which requests are hedged
//!
//! Sending a request twice is only safe if doing it twice does no harm, so
//! an [`Eligible`] rule decides, request by request:
//!
//! - [`Idempotent`], the default: `http::Request`s with an idempotent
//!   method (`GET`, `HEAD`, `OPTIONS`, `TRACE`, `PUT`, `DELETE`); a `POST`
//!   or `PATCH` is sent once. It is implemented for `http::Request` only,
//!   so a layer over any other request type does not compile until you
//!   pick a rule: [`AnyRequest`] (everything is safe) or a closure
//!   `|req: &Req| -> bool`. No request is duplicated by a default that
//!   did not know what it was looking at.
//! - [`HedgeLayer::http`] is the sugar for HTTP clients: [`Idempotent`]
//!   and [`HttpClassify`](crate::classify::HttpClassify).
//! - A request whose [`Replay::replay`](crate::retry::Replay::replay)
//!   gives `None` (a streamed body) is sent once.
//!
//! Requests that are not hedged are never timed; they are counted in
//! [`HedgeStats::ineligible`].
//!
//! # When a hedge is sent, and which answer wins
//!
//! - The delay is fixed ([`delay`](HedgeLayerBuilder::delay)) or learned
//!   ([`percentile`](HedgeLayerBuilder::percentile)): a percentile of
//!   recent first-attempt latencies, from two small rotating log-scale
//!   histograms (bounded memory; samples fade out after a
//!   [`window`](HedgeLayerBuilder::window)); until
//!   [`min_samples`](HedgeLayerBuilder::min_samples) are in, the
//!   configured delay is used.
//! - Each hedge waits for the inner service's `poll_ready` (on the clone
//!   the future holds), then asks the budget: at most
//!   [`budget`](HedgeLayerBuilder::budget) hedges per call over the
//!   window (5 % by default) plus a small floor, so a slow backend cannot
//!   be buried under twice its load. A refused hedge is counted in
//!   [`HedgeStats::budget_refusals`].
//! - The first answer the [`Classify`](crate::classify::Classify) value
//!   does not call a [`Failure`](crate::classify::Outcome::Failure) wins.
//!   A failure waits while another attempt is in flight; if every attempt
//!   fails, the **last** failure is returned and the earlier ones are
//!   counted in [`HedgeStats::loser_errors`]. A failure is not a reason to
//!   hedge: that is [`retry`](crate::retry)'s job (put the retry layer
//!   outside the hedge).
//! - A hedge is not sent when the [deadline](crate::deadline) in force
//!   (a [`TimeoutLayer`](crate::deadline::TimeoutLayer) above, or
//!   [`deadline::scope`](crate::deadline::scope)) leaves less time than the
//!   delay between attempts: an attempt that would likely not answer in
//!   time only adds load ([`HedgeStats::deadline_stops`]).
//! - Attempts still in flight when one wins are dropped at once
//!   ([`HedgeStats::cancelled`]).
//! - With the `tracing` feature, a `DEBUG` event is emitted when a hedge
//!   is sent and when the budget refuses one.
//! - Timers are tokio's, so hedging needs a tokio runtime with time
//!   enabled; with paused time (`#[tokio::test(start_paused = true)]`) a
//!   hedge fires exactly at its delay.
//!
//! # Where it goes in a client stack
//!
//! Inside retry, above the circuit breaker, the concurrency limit and a
//! per-attempt timeout (see [`layer_order`](crate::layer_order)): retry
//! handles failures and hedging slowness; every hedged attempt is counted
//! by the breaker, takes its own permit (its readiness waits for one) and
//! has its own timeout.
//!
//! # Cost
//!
//! A call whose inner future answers on its first poll costs one clone of
//! the inner service and one of the request (as
//! [`retry`](crate::retry)'s first attempt), the eligibility check and a
//! plain increment of a counter owned by the calling handle: no clock read,
//! no timer, no allocation, no atomic read-modify-write.
//! `benches/hedge.rs` measures it beside a bare call and tower's `Hedge`.
//! A call that is pending at its first poll reads the clock, arms a timer
//! and allocates its bookkeeping once; percentile mode records its
//! latency under a short lock; a hedge takes the budget's lock.
//! `benches/hedge_tail.rs` measures the effect on tail latency.
//!
//! # Sharing
//!
//! Every service made by one layer, and every clone of those services,
//! shares one budget, one latency estimate and one set of [`HedgeStats`].

mod eligible;
mod future;
mod latency;
mod layer;
mod service;
mod shared;

pub use eligible::{AnyRequest, Eligible, Idempotent};
pub use future::ResponseFuture;
pub use layer::{HedgeLayer, HedgeLayerBuilder};
pub use service::Hedge;
pub use shared::HedgeStats;
