//! # Layer order: which layer goes where, and why
//!
//! With `tower::ServiceBuilder` the first `.layer(..)` is the **outermost**:
//! a request passes the layers top to bottom on its way in, and the answer
//! passes them bottom to top on its way out. Every layer sees only what the
//! layers below it let through, so the order decides what each one counts,
//! holds and retries. This page gives the order for a client stack and for
//! a server stack, why, and what goes wrong in the other orders. The README
//! example, the demo (`examples/support/demo_stack.rs`) and
//! `examples/axum_server.rs` follow it.
//!
//! ## A client stack: calling an upstream
//!
//! ```text
//! JsonLayer / cache       outermost: decode or answer from memory; store only final answers
//!   fallback (optional)   answers when everything below failed (an open breaker included)
//!   deadline (optional)   the whole call's time limit, known to every layer below
//!   retry                 each attempt passes everything below
//!   hedge (optional)      a second attempt for a slow one; each passes everything below
//!     circuit breaker     counts every attempt; when open, fails it at once
//!       concurrency limit holds a permit only while a request is on the wire
//!         timeout         per attempt, so a slow attempt is a failure to count and retry
//!           CollectLayer  the body read inside the attempt: a cut-off body is a failure
//!             chaos (tests)  injected faults look like the upstream's own
//!               HttpClient
//! ```
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower::timeout::TimeoutLayer;
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::classify::HttpClassify;
//! use tower_patterns::fetch::{CollectLayer, HttpClient, JsonLayer};
//! use tower_patterns::limit::ConcurrencyLimitLayer;
//! use tower_patterns::retry::{Backoff, RetryLayer};
//!
//! #[derive(serde::Deserialize)]
//! struct User { id: u64 }
//!
//! # fn main() -> Result<(), tower_patterns::BoxError> {
//! let client = ServiceBuilder::new()
//!     .layer(JsonLayer::<User>::new())
//!     .layer(
//!         RetryLayer::builder()
//!             .classify(HttpClassify)
//!             .max_attempts(3)
//!             .backoff(Backoff::exponential(Duration::from_millis(50)))
//!             .max_retry_after(Duration::from_secs(2))
//!             .build()?,
//!     )
//!     .layer(
//!         CircuitBreakerLayer::builder()
//!             .classify(HttpClassify)
//!             .failure_rate_threshold(0.5)
//!             .open_duration(Duration::from_secs(10))
//!             .build()?,
//!     )
//!     .layer(ConcurrencyLimitLayer::new(32))
//!     .layer(TimeoutLayer::new(Duration::from_secs(2)))
//!     .layer(CollectLayer::new())
//!     .service(HttpClient::new());
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! Why this order, and what the others cost:
//!
//! - **Retry outside the breaker.** The breaker sees each attempt, so an
//!   outage opens it after `n` failed *attempts*, not `n` failed calls of
//!   three attempts each; once it is open the next attempt fails at once
//!   with [`Open`](crate::circuit_breaker::Open), which retry does not
//!   retry (the built-in classifiers call the crate's own rejections
//!   neither success nor failure; see
//!   [`classify`](crate::classify#the-crates-own-rejections-are-not-failures)).
//!   *Inside* the breaker, retry would keep hammering a failing upstream
//!   for every call until the breaker saw the final result, and a
//!   half-open probe would become three calls.
//! - **The limit below retry.** A permit is held while a request is on the
//!   wire and given back before the backoff sleep. *Above* retry, a permit
//!   is held through every sleep of every retry: in an outage all permits
//!   sit in sleeps, new calls queue or are shed, and the upstream is idle.
//! - **The limit below the breaker.** An open breaker answers without
//!   taking a permit. A limit in reject mode may sit on either side: its
//!   [`Overloaded`](crate::limit::Overloaded) never counts against the
//!   upstream.
//! - **The timeout at the bottom.** A slow attempt ends as an error the
//!   breaker counts and retry retries. *Above* the breaker, a timed-out
//!   call is dropped before the breaker sees an outcome (it counts it as
//!   cancelled, not failed), so a hanging upstream never opens it.
//! - **An overall deadline on top of retry.** The overall time for a call,
//!   retries and waits included, is a
//!   [`deadline::TimeoutLayer`](crate::deadline::TimeoutLayer) above retry
//!   (below a cache or `JsonLayer`, if any): it fails the call with
//!   [`deadline::Elapsed`](crate::deadline::Elapsed) when time is up, and
//!   makes the deadline known below, so retry does not begin a backoff or
//!   an attempt that would end past it, and a per-attempt
//!   `deadline::TimeoutLayer` at the bottom (in place of tower's) takes the
//!   tighter of its own limit and what is left. *Below* retry it would be
//!   a per-attempt timeout only. For gRPC, a
//!   [`PropagateDeadlineLayer`](crate::deadline::PropagateDeadlineLayer)
//!   right above the transport sends each attempt's time left as
//!   `grpc-timeout`. Retry's own
//!   [`deadline`](crate::retry::RetryLayerBuilder::deadline) is the same
//!   limit for retry alone, known to nothing below it.
//! - **Hedging inside retry, above the breaker.** Retry answers failures
//!   and [`HedgeLayer`](crate::hedge::HedgeLayer) answers slowness, so a
//!   hedge never turns one failure into two calls. Each hedged attempt is
//!   an attempt to the breaker (counted, refused when open), takes its own
//!   permit of the limit (the hedge waits for the limit's readiness) and
//!   has its own per-attempt timeout. *Above* retry, a slow call's hedge
//!   would restart a whole retry loop; *below* the limit, the two attempts
//!   would share one permit.
//! - **Fallback above retry and the breaker; chaos at the bottom.** A
//!   [`FallbackLayer`](crate::fallback::FallbackLayer) answers for the
//!   whole call once retry has given up or the breaker is open (it treats
//!   the crate's rejections as no answer); *below* retry it would turn
//!   every failed attempt into a success and retry would never retry. A
//!   [`ChaosLayer`](crate::chaos::ChaosLayer) sits right above the
//!   transport so that an injected fault passes through the timeout, the
//!   limit, the breaker and retry exactly as an upstream fault would.
//! - **The body read inside the attempt.** `HttpClient` answers as soon as
//!   the response head arrives; its body streams after. Without
//!   [`CollectLayer`](crate::fetch::CollectLayer) at the bottom, the body is
//!   read by `JsonLayer` on top, after retry, the breaker and the limit have
//!   all seen a success: a connection reset or a stall mid-body is then
//!   neither retried nor counted, and the limit's permit is back before the
//!   body is in. With it, the per-attempt timeout covers the body too, and
//!   a cut-off body is a failed attempt like any other
//!   (`tests/faults.rs` checks this for resets, stalls, slow drips,
//!   truncated bodies and half-closed sockets). `JsonLayer` then decodes a
//!   body already in memory: the same work, done once.
//! - **Decoding and caching on top.** [`JsonLayer`](crate::fetch::JsonLayer)
//!   goes above retry so that retry and the breaker see HTTP statuses (and
//!   `Retry-After`) through [`HttpClassify`](crate::classify::HttpClassify),
//!   not decoded errors. A [`CacheLayer`](crate::cache::CacheLayer) goes
//!   outermost: a hit costs nothing below it, a miss is loaded once for all
//!   its waiters (one retried load, not one per waiter), and only final
//!   answers are stored. To cache raw HTTP responses, read their bodies
//!   first with [`fetch::CollectLayer`](crate::fetch::CollectLayer) at the
//!   bottom of the stack, above the client: the cache hands out clones, and
//!   a streaming body cannot be cloned.
//!
//! The same stack caching raw HTTP responses (the demo's stack):
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::ServiceBuilder;
//! use tower_patterns::cache::CacheLayer;
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::classify::HttpClassify;
//! use tower_patterns::fetch::{CollectLayer, HttpClient};
//! use tower_patterns::limit::ConcurrencyLimitLayer;
//! use tower_patterns::retry::RetryLayer;
//!
//! type Req = http::Request<Full<Bytes>>;
//!
//! # fn main() -> Result<(), tower_patterns::BoxError> {
//! let client = ServiceBuilder::new()
//!     .layer(
//!         CacheLayer::builder()
//!             .ttl(Duration::from_secs(60))
//!             .key_fn(|req: &Req| req.uri().to_string())
//!             .classify(HttpClassify) // store 2xx only
//!             .build()?,
//!     )
//!     .layer(RetryLayer::builder().classify(HttpClassify).build()?)
//!     .layer(
//!         CircuitBreakerLayer::builder()
//!             .classify(HttpClassify)
//!             .consecutive_failures(5)
//!             .open_duration(Duration::from_secs(10))
//!             .build()?,
//!     )
//!     .layer(ConcurrencyLimitLayer::new(32))
//!     .layer(CollectLayer::new()) // bodies read to the end: responses become Clone
//!     .service(HttpClient::new());
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! ## A server stack: wrapping handlers (axum, tonic)
//!
//! ```text
//! HandleErrorLayer(respond::handle_error)   outermost: our errors become 503 / 504 answers
//!   concurrency limit (reject_when_full)    sheds excess load before any work is done
//!     circuit breaker (HttpClassify)        opens when handlers answer 5xx
//!       timeout                             a slow handler is a 504, and a failure for the breaker
//!         handler
//! ```
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() -> Result<(), tower_patterns::BoxError> {
//! use std::time::Duration;
//! use axum::{error_handling::HandleErrorLayer, routing::get, Router};
//! use tower::ServiceBuilder;
//! use tower::timeout::TimeoutLayer;
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::classify::HttpClassify;
//! use tower_patterns::limit::ConcurrencyLimitLayer;
//! use tower_patterns::respond;
//!
//! let app: Router = Router::new()
//!     .route("/users/{id}", get(|| async { "a user" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(respond::handle_error))
//!             .layer(ConcurrencyLimitLayer::new(64).reject_when_full())
//!             .layer(
//!                 CircuitBreakerLayer::builder()
//!                     .classify(HttpClassify)
//!                     .consecutive_failures(10)
//!                     .open_duration(Duration::from_secs(5))
//!                     .build()?,
//!             )
//!             .layer(TimeoutLayer::new(Duration::from_secs(10))),
//!     );
//! # let _ = app;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! - **Errors mapped outermost.** axum needs an infallible service; the
//!   layers below return [`BoxError`](crate::BoxError)s, which
//!   [`respond::handle_error`](crate::respond) turns into answers: 503 with
//!   `Retry-After` for an open breaker or a full limit, 504 for a timeout.
//!   For tonic, `map_err(respond::into_status)` is the outermost layer, for
//!   the same reason.
//! - **The breaker classifies with [`HttpClassify`](crate::classify::HttpClassify).**
//!   A handler that answers 500 returns `Ok(response)`; under
//!   [`DefaultClassify`](crate::classify::DefaultClassify) that is a
//!   success, and the breaker never opens.
//! - **Shedding first.** The limit turns excess load away before it costs
//!   anything. Outside the breaker, an open breaker's fast answers still
//!   pass the limit, which is cheap; either way the limit's rejections are
//!   not counted against the handlers.
//! - **The timeout innermost,** so the breaker sees a slow handler as a
//!   failure rather than a cancelled call. Make it a
//!   [`deadline::TimeoutLayer`](crate::deadline::TimeoutLayer)
//!   ([`http`](crate::deadline::TimeoutLayer::http), or
//!   [`grpc`](crate::deadline::TimeoutLayer::grpc) to honour the caller's
//!   `grpc-timeout`) and the handler runs under the request's deadline:
//!   the client stacks it calls in the same task stop retrying when the
//!   caller has stopped waiting, and pass the time left on. Its
//!   [`Elapsed`](crate::deadline::Elapsed) is a 504 /
//!   `DEADLINE_EXCEEDED`.
//! - **A cache, if any, just below the error mapping,** above the limit:
//!   a hit takes no permit and never meets an open breaker
//!   (`examples/axum_server.rs` does this).
