//! # tower-patterns
//!
//! The async patterns production services keep rewriting, as one coherent
//! [tower](https://docs.rs/tower) suite. The resilience and caching patterns
//! are [`Layer`](tower_layer::Layer)s that wrap *any*
//! [`Service`](tower_service::Service); fetch, pagination, the task queue
//! and the pool are services themselves, so the layers stack around them too.
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::limit::ConcurrencyLimitLayer;
//! use tower_patterns::retry::RetryLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_patterns::BoxError> {
//! // Any service: here a function that doubles a number.
//! let double = service_fn(|n: u64| async move { Ok::<_, tower_patterns::BoxError>(n * 2) });
//! let mut svc = ServiceBuilder::new()
//!     .layer(RetryLayer::exponential(3))
//!     .layer(CircuitBreakerLayer::consecutive(5, Duration::from_secs(60)))
//!     .layer(ConcurrencyLimitLayer::new(10))
//!     .service(double);
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! The order of the layers matters: see [`layer_order`] for the order of a
//! client stack and of a server stack, and why.
//!
//! For tail latency rather than failures, [`hedge`] sends a second attempt
//! when a call is slower than a delay (fixed, or a percentile it learns),
//! for requests that are safe to send twice (idempotent HTTP methods by
//! default), within a budget of extra load; the first acceptable answer
//! wins and the other attempt is cancelled. Put it inside retry: retry
//! handles failures, hedging handles slowness.
//!
//! A [`deadline::TimeoutLayer`] on top gives each call a deadline that the
//! layers below honour, whatever the request type: retry does not start an
//! attempt that cannot finish by then, a task queue does not run a task
//! whose deadline has passed, and a gRPC client passes the time left on as
//! `grpc-timeout` (a server reads it). When time is up the call fails with
//! [`deadline::Elapsed`], which [`respond`] answers with 504 /
//! `DEADLINE_EXCEEDED`.
//!
//! ## A tour
//!
//! | module | what it does |
//! |---|---|
//! | [`retry`] | [`RetryLayer`](retry::RetryLayer): backoff with jitter, `Retry-After`, deadline, a budget shared by clones, replayable HTTP requests |
//! | [`hedge`] | [`HedgeLayer`](hedge::HedgeLayer): a second attempt for a slow call after a fixed delay or a learned latency percentile; idempotent HTTP methods only by default; a budget on the extra load; the first acceptable answer wins, the losers are cancelled |
//! | [`circuit_breaker`] | [`CircuitBreakerLayer`](circuit_breaker::CircuitBreakerLayer): consecutive and rate models, count and time windows, slow calls, bounded half-open probes; fails fast with [`circuit_breaker::Open`] |
//! | [`limit`] | [`ConcurrencyLimitLayer`](limit::ConcurrencyLimitLayer) (bounded wait, shedding, permit held to body end), [`AdaptiveLimitLayer`](limit::AdaptiveLimitLayer) (Gradient2, AIMD), [`limit::gather`] and [`limit::join_bounded`] |
//! | [`rate_limit`] | [`RateLimitLayer`](rate_limit::RateLimitLayer): GCRA, N calls per period with a burst, wait (bounded) or refuse with `RateLimited`, per key in a bounded table, stores shared by replicas |
//! | [`cache`] | [`CacheLayer`](cache::CacheLayer): TTL, md5-of-JSON keys, single-flight, stale-while-revalidate / stale-if-error, bounded S3-FIFO store |
//! | [`http_cache`] | [`HttpCacheLayer`](http_cache::HttpCacheLayer): an RFC 9111 HTTP cache (shared or private; `Vary`, conditional revalidation with 304s merged, `Age`, `stale-while-revalidate` / `stale-if-error`, request directives, `only-if-cached`, unsafe-method invalidation, HEAD from GET, byte ranges, `Cache-Status`) on `http-cache-semantics` |
//! | [`fetch`] | [`HttpClient`](fetch::HttpClient) service on hyper-util (rustls HTTPS), [`fetch::fetch_json`], [`fetch::fetch_all`], [`JsonLayer`](fetch::JsonLayer), [`fetch::stream_body`] |
//! | [`paginate`] | [`Paginator`](paginate::Paginator): a `Stream` of pages or items over a page service; page-number, cursor and Link-header strategies, prefetch, resume |
//! | [`queue`] | [`TaskQueue`](queue::TaskQueue): bounded task queue with workers, as a `Service<Req, Response = TaskId>` |
//! | [`queue::backend`] | [`Backend`](queue::backend::Backend), the queue's storage seam; `postgres::PgQueue` (feature `postgres`): a durable queue in a PostgreSQL table, leases, retries, dead list, `LISTEN/NOTIFY` |
//! | [`pool`] | [`Pool`](pool::Pool): async resource pool with an RAII guard; acquisition is a `Service<()>` |
//! | [`fallback`] | [`FallbackLayer`](fallback::FallbackLayer): a classified failure answered by a value, a function of the original result, or a backup service; the original error reachable through a hook and [`FallbackStats`](fallback::FallbackStats) |
//! | [`chaos`] | [`ChaosLayer`](chaos::ChaosLayer): errors ([`chaos::Injected`]), latency and substituted responses injected at seeded, reproducible rates, steered at run time by a [`ChaosHandle`](chaos::ChaosHandle); one atomic load when off |
//! | [`respond`] | our errors as HTTP answers (axum) and `tonic::Status`es: 503 + `Retry-After` for an open breaker or overload, 504 for timeouts |
//! | [`deadline`] | [`TimeoutLayer`](deadline::TimeoutLayer): a deadline per call, enforced and known to every layer below (retry and the queue stop starting work that cannot finish in time), carried in the task and in `http::Request` extensions; reads and sends `grpc-timeout` |
//! | [`classify`] | [`Outcome`](classify::Outcome) and [`Classify`](classify::Classify): what counts as a failure, shared by every layer; [`HttpClassify`](classify::HttpClassify), and `GrpcClassify` (feature `tonic`) |
//! | `upstream` | (feature `upstream`) a flaky JSON server on loopback for examples and tests |
//! | [`layer_order`] | (docs only) which layer goes where in a client and a server stack, and what goes wrong otherwise |
//!
//! ## Fallbacks and fault injection
//!
//! A [`FallbackLayer`](fallback::FallbackLayer) sits above the resilience
//! layers and answers what they could not save: a failure (by the same
//! [`classify::Classify`] value the others use), or a call an open breaker
//! or a full limit refused. It answers with a value, a function of the
//! original result, or a backup service, and keeps the original error
//! reachable through its `on_fallback` hook and its stats.
//!
//! A [`ChaosLayer`](chaos::ChaosLayer) sits below them, in staging or in
//! tests, and makes the failures they exist for: [`chaos::Injected`] errors
//! (a failure to every classifier, unlike the crate's own rejections),
//! latency and substituted responses, at rates a
//! [`ChaosHandle`](chaos::ChaosHandle) changes at run time, from a seed
//! that gives the same faults to the same call indices on every run.
//! `examples/chaos.rs` shows retry and a breaker reacting to it.
//!
//! ## The public API, one spelling
//!
//! Every pattern spells its parts the same way: `XLayer` is built by
//! `XLayerBuilder` (`#[must_use]`, `build() -> Result<_, ConfigError>`) and
//! makes the service `X<S>`, whose future is `ResponseFuture`; services that
//! are not layers are built by a builder named for them. Stats are named for
//! the module, handles for what they steer, and every stateful layer and its
//! services have `stats()`.
//!
//! | module | layer | builder | service | future | error | stats | handle |
//! |---|---|---|---|---|---|---|---|
//! | [`retry`] | [`RetryLayer`](retry::RetryLayer) | [`RetryLayerBuilder`](retry::RetryLayerBuilder) | [`Retry`](retry::Retry) | [`ResponseFuture`](retry::ResponseFuture) | the inner service's | [`RetryStats`](retry::RetryStats) | |
//! | [`hedge`] | [`HedgeLayer`](hedge::HedgeLayer) | [`HedgeLayerBuilder`](hedge::HedgeLayerBuilder) | [`Hedge`](hedge::Hedge) | [`ResponseFuture`](hedge::ResponseFuture) | the inner service's | [`HedgeStats`](hedge::HedgeStats) | |
//! | [`circuit_breaker`] | [`CircuitBreakerLayer`](circuit_breaker::CircuitBreakerLayer) | [`CircuitBreakerLayerBuilder`](circuit_breaker::CircuitBreakerLayerBuilder) | [`CircuitBreaker`](circuit_breaker::CircuitBreaker) | [`ResponseFuture`](circuit_breaker::ResponseFuture) | [`Open`](circuit_breaker::Open) | [`CircuitBreakerStats`](circuit_breaker::CircuitBreakerStats) | [`CircuitBreakerHandle`](circuit_breaker::CircuitBreakerHandle) |
//! | [`limit`] (fixed) | [`ConcurrencyLimitLayer`](limit::ConcurrencyLimitLayer) | [`ConcurrencyLimitLayerBuilder`](limit::ConcurrencyLimitLayerBuilder) | [`ConcurrencyLimit`](limit::ConcurrencyLimit) | [`ResponseFuture`](limit::concurrency::ResponseFuture) | [`Overloaded`](limit::Overloaded) | [`LimitStats`](limit::LimitStats) | |
//! | [`limit`] (adaptive) | [`AdaptiveLimitLayer`](limit::AdaptiveLimitLayer) | [`AdaptiveLimitLayerBuilder`](limit::AdaptiveLimitLayerBuilder) | [`AdaptiveLimit`](limit::AdaptiveLimit) | [`ResponseFuture`](limit::adaptive::ResponseFuture) | [`Overloaded`](limit::Overloaded) | [`LimitStats`](limit::LimitStats) | |
//! | [`rate_limit`] | [`RateLimitLayer`](rate_limit::RateLimitLayer) | [`RateLimitLayerBuilder`](rate_limit::RateLimitLayerBuilder) | [`RateLimit`](rate_limit::RateLimit) | [`ResponseFuture`](rate_limit::ResponseFuture) | [`RateLimited`](rate_limit::RateLimited) | [`RateLimitStats`](rate_limit::RateLimitStats) | |
//! | [`cache`] | [`CacheLayer`](cache::CacheLayer) | [`CacheLayerBuilder`](cache::CacheLayerBuilder) | [`Cache`](cache::Cache) | [`ResponseFuture`](cache::ResponseFuture) | [`SharedError`](cache::SharedError), [`LoadAbandoned`](cache::LoadAbandoned) | [`CacheStats`](cache::CacheStats) | [`CacheHandle`](cache::CacheHandle) |
//! | [`http_cache`] | [`HttpCacheLayer`](http_cache::HttpCacheLayer) | [`HttpCacheLayerBuilder`](http_cache::HttpCacheLayerBuilder) | [`HttpCache`](http_cache::HttpCache) | [`ResponseFuture`](http_cache::ResponseFuture) | [`UpstreamBodyError`](http_cache::UpstreamBodyError) | [`HttpCacheStats`](http_cache::HttpCacheStats) | [`HttpCacheHandle`](http_cache::HttpCacheHandle) |
//! | [`fallback`] | [`FallbackLayer`](fallback::FallbackLayer) | [`FallbackLayerBuilder`](fallback::FallbackLayerBuilder) | [`Fallback`](fallback::Fallback) | [`ResponseFuture`](fallback::ResponseFuture) | the inner service's (or the backup's) | [`FallbackStats`](fallback::FallbackStats) | |
//! | [`chaos`] | [`ChaosLayer`](chaos::ChaosLayer) | [`ChaosLayerBuilder`](chaos::ChaosLayerBuilder) | [`Chaos`](chaos::Chaos) | [`ResponseFuture`](chaos::ResponseFuture) | [`Injected`](chaos::Injected) | [`ChaosStats`](chaos::ChaosStats) | [`ChaosHandle`](chaos::ChaosHandle) |
//! | [`fetch`] | [`JsonLayer`](fetch::JsonLayer) | [`JsonLayerBuilder`](fetch::JsonLayerBuilder), [`HttpClientBuilder`](fetch::HttpClientBuilder) | [`HttpClient`](fetch::HttpClient), [`Json`](fetch::Json) | [`ResponseFuture`](fetch::ResponseFuture), [`JsonFuture`](fetch::JsonFuture) | [`FetchError`](fetch::FetchError) | [`FetchStats`](fetch::FetchStats) | |
//! | [`paginate`] | | | [`Paginator`](paginate::Paginator) (streams [`Pages`](paginate::Pages), [`Items`](paginate::Items)) | | [`PaginateError`](paginate::PaginateError), [`WalkError`](paginate::WalkError) | [`PaginateStats`](paginate::PaginateStats) | |
//! | [`queue`] | | [`TaskQueueBuilder`](queue::TaskQueueBuilder) | [`TaskQueue`](queue::TaskQueue) | [`ResponseFuture`](queue::ResponseFuture) | [`QueueFull`](queue::QueueFull), [`QueueClosed`](queue::QueueClosed), [`TaskError`](queue::TaskError) | [`QueueStats`](queue::QueueStats) | [`TaskHandle`](queue::TaskHandle) |
//! | `queue::backend::postgres` (feature `postgres`) | | `PgQueueBuilder` | `PgQueue` | | `PgQueueError`, [`TaskError`](queue::TaskError) | `PgQueueStats` | |
//! | [`deadline`] | [`TimeoutLayer`](deadline::TimeoutLayer), [`PropagateDeadlineLayer`](deadline::PropagateDeadlineLayer) | [`TimeoutLayerBuilder`](deadline::TimeoutLayerBuilder) | [`Timeout`](deadline::Timeout), [`PropagateDeadline`](deadline::PropagateDeadline) | [`ResponseFuture`](deadline::ResponseFuture) | [`Elapsed`](deadline::Elapsed) | | |
//! | [`pool`] | | [`PoolBuilder`](pool::PoolBuilder) | [`Pool`](pool::Pool) | [`AcquireFuture`](pool::AcquireFuture) | [`PoolError`](pool::PoolError) | [`PoolStats`](pool::PoolStats) | [`Pooled`](pool::Pooled) (the guard) |
//!
//! Renames from 0.1 are listed in `CHANGELOG.md` as `old -> new`.
//!
//! ## Conventions every pattern follows
//!
//! - **One notion of failure.** Layers that react to failures take a
//!   [`classify::Classify`] value; [`classify::HttpClassify`] treats 5xx,
//!   429 and 408 as failures and reads `Retry-After`. The crate's own
//!   rejections (an open breaker, a full limit or queue) are never
//!   failures: retry does not retry them and a breaker does not count them.
//! - **Builders validate.** `builder().build()` returns
//!   `Result<_, `[`ConfigError`]`>` naming the field that was out of range.
//! - **Clones share state.** Cloning a service (as hyper, axum and tonic do
//!   per connection) shares its breaker, cache, permits and statistics; a
//!   fresh state only comes from a fresh layer.
//! - **`poll_ready` tells the truth.** Capacity is reserved in `poll_ready`;
//!   a layer that can answer without the inner service (a cache hit, an open
//!   breaker) does not wait for the inner service's readiness.
//! - **Errors are [`BoxError`]** carrying public structs you can
//!   `downcast_ref`: [`circuit_breaker::Open`], [`limit::Overloaded`],
//!   [`queue::QueueFull`], ...; domain services (fetch, paginate, pool)
//!   return their own enums.
//! - **Cancellation is normal.** Dropping any future at any await point
//!   leaks nothing: no permit, no probe slot, no in-flight cache entry, no
//!   queue slot, no pool resource.
//! - **Time is tokio's.** All timing uses `tokio::time`, so tests run with
//!   `#[tokio::test(start_paused = true)]`.
//! - **Observability.** Stateful components have a cheap `stats()`; with
//!   the `tracing` feature they emit events on state changes.
//!
//! ## Durations
//!
//! A duration from configuration or from the network is added to the clock
//! saturating, never panicking: a deadline the clock cannot represent (or
//! more than about 30 years ahead, tokio's own far future) becomes "never".
//! So `Duration::MAX` means "no limit" wherever a builder takes a duration
//! (a backoff, a deadline, a TTL, an open duration, a wait, a timeout);
//! builders refuse only values outside a range they document (zero where
//! zero makes no sense, a retry budget's window of 10 ms to 1 hour), never
//! a duration for being long. Values a server sends (`Retry-After` of any
//! size, up to the year 9999; `grpc-retry-pushback-ms`) cannot panic the
//! caller either: the retry layer caps them by
//! [`max_retry_after`](retry::RetryLayerBuilder::max_retry_after) (by
//! default the backoff's [`max_delay`](retry::Backoff::max_delay)) and,
//! uncapped, waits "never" or until its deadline.
#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Not every feature combination emits events or records metrics.
#[allow(unused_macros, unused_imports, dead_code)]
mod trace;

mod budget;
pub mod cache;
pub mod chaos;
pub mod circuit_breaker;
pub mod classify;
pub mod deadline;
mod error;
pub mod fallback;
pub mod fetch;
mod fields;
pub mod hedge;
pub mod http_cache;
pub mod layer_order;
pub mod limit;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod paginate;
pub mod pool;
pub mod queue;
pub mod rate_limit;
#[cfg(feature = "redis")]
mod redis_link;
mod rejection;
pub mod respond;
pub mod retry;
mod sync;
mod time;

#[cfg(feature = "upstream")]
#[cfg_attr(docsrs, doc(cfg(feature = "upstream")))]
pub mod upstream;

pub use error::ConfigError;

// The README's example is compiled and run as a doc test, so it stays true.
#[cfg(all(doctest, feature = "upstream"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
/// The error type of every layer in this crate, as in tower.
pub use tower::BoxError;
