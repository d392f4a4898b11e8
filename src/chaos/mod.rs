//! Fault injection: errors, latency and substituted responses at
//! configured rates, switched on and off while the service runs.
//!
//! [`ChaosLayer`] wraps any [`Service`](tower_service::Service) and, while
//! switched on, gives a share of its calls a fault: an [`Injected`] error
//! (the inner service is not called), a delay before the inner call's
//! answer, or a substituted response (an HTTP 503, say). Put it below the
//! layers you want to see react (retry, circuit breaker, fallback), in a
//! staging stack or in tests, and steer it through its [`ChaosHandle`].
//!
//! ```
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::chaos::{ChaosLayer, Injected};
//! use tower_patterns::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let chaos = ChaosLayer::off();
//! let handle = chaos.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(chaos)
//!     .service(service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) }));
//!
//! // Off: calls go straight through.
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//!
//! // On, failing every call.
//! handle.set_error_rate(1.0)?;
//! handle.enable();
//! let err = svc.ready().await?.call(1).await.unwrap_err();
//! assert!(err.downcast_ref::<Injected>().is_some());
//!
//! handle.disable();
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//! assert_eq!(handle.stats().errors, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Faults
//!
//! Each call seen while injection is on draws at most one fault; the three
//! rates ([`ChaosRates`]) share the draw, so they sum to at most 1.0.
//!
//! - **Error** ([`error_rate`](ChaosLayerBuilder::error_rate)): the call
//!   fails at once with [`Injected`], converted into the inner service's
//!   error type (`S::Error: From<Injected>`, as `BoxError` is). Every
//!   built-in classifier calls it a
//!   [`Failure`](crate::classify::Outcome::Failure), unlike the crate's own
//!   rejections: retry retries it, a breaker counts it.
//! - **Latency** ([`latency`](ChaosLayerBuilder::latency)): the inner
//!   service is called, and its future is polled only once the delay has
//!   passed on tokio's clock (so paused-time tests see it exactly). For the
//!   usual lazy futures that delays the whole call.
//! - **Substitute** ([`substitute`](ChaosLayerBuilder::substitute)): the
//!   call is answered with a response made by a closure, without the inner
//!   service.
//!
//! # Determinism
//!
//! Every call seen while injection is active takes the next index from one
//! atomic counter; its fault is a hash of the seed and that index
//! (splitmix64), compared with the rates. So with a [seed](ChaosLayerBuilder::seed):
//!
//! - the same sequence of calls gets exactly the same faults on a rerun
//!   (same indices, same kinds; [`Injected::call_index`] names the index);
//! - under concurrency the *set* of faulty indices (and so the number of
//!   faults) is still exactly the same, but which request draws which
//!   index depends on the order the calls reach `call`;
//! - changing a rate keeps the sequence going; [`ChaosHandle::set_seed`]
//!   starts it again from index 0. Calls made while off draw no index.
//!
//! # Cost
//!
//! Off, or on with every rate zero, a call costs one relaxed atomic load
//! more than the inner call: no counter, no clock, no allocation.
//! `benches/fallback_chaos.rs` measures it beside a bare call. Active, a
//! call adds an atomic increment and a hash; an injected latency allocates
//! its timer.

mod error;
mod future;
mod handle;
mod layer;
mod service;
mod shared;
mod substitute;

pub use error::Injected;
pub use future::ResponseFuture;
pub use handle::ChaosHandle;
pub use layer::{ChaosLayer, ChaosLayerBuilder};
pub use service::Chaos;
pub use shared::{ChaosRates, ChaosStats};
pub use substitute::{NoSubstitute, Substitute};
