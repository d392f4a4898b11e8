//! Errors from our layers as answers to clients: HTTP responses for
//! axum (and any `http` server), `tonic::Status` for gRPC.
//!
//! A server built from this crate's layers fails requests with typed
//! errors: an open breaker's [`Open`](crate::circuit_breaker::Open), a
//! limiter's [`Overloaded`](crate::limit::Overloaded), a full
//! [`queue`](crate::queue), a [`pool`](crate::pool) timeout, an upstream's
//! [`FetchError`](crate::fetch::FetchError). [`error_response`] turns any
//! of them, wherever it sits in the error's source chain, into the status
//! a client should see (503 + `Retry-After` for an open breaker or an
//! overload, 504 for a timeout, 502 for a failed upstream, the upstream's
//! own 4xx for a request it refused) and turns everything it does not
//! recognise into a plain 500 that leaks nothing.
//!
//! ```
//! use std::time::Duration;
//! use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::respond::error_response;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A backend that always fails, behind a breaker that opens at once.
//! let mut svc = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::consecutive(1, Duration::from_secs(30)))
//!     .service_fn(|_: ()| async { Err::<(), BoxError>("db-7.internal: connection refused".into()) });
//!
//! // The backend's own error is nothing we know: 500, and a message that
//! // does not leak the host name.
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! let answer = error_response(&err);
//! assert_eq!(answer.status(), 500);
//! assert_eq!(answer.message(), "internal server error");
//!
//! // The breaker is open now: 503, come back when it lets a probe through.
//! let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
//! let answer = error_response(&err);
//! assert_eq!(answer.status(), 503);
//! let res: http::Response<String> = answer.into_http();
//! assert_eq!(res.headers()["retry-after"], "30");
//! # }
//! ```
//!
//! # axum (feature `axum`)
//!
//! axum wants infallible services, so a stack of our layers goes under
//! `axum::error_handling::HandleErrorLayer` with [`handle_error`]:
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() -> Result<(), tower_patterns::ConfigError> {
//! use std::time::Duration;
//! use axum::{error_handling::HandleErrorLayer, routing::get, Router};
//! use tower::ServiceBuilder;
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::classify::HttpClassify;
//! use tower_patterns::limit::ConcurrencyLimitLayer;
//! use tower_patterns::respond;
//!
//! async fn user() -> &'static str { "alice" }
//!
//! let breaker = CircuitBreakerLayer::builder()
//!     .consecutive_failures(5)
//!     .open_duration(Duration::from_secs(10))
//!     .classify(HttpClassify) // a handler's 500 is a failure
//!     .build()?;
//! let app: Router = Router::new().route("/users/{id}", get(user)).layer(
//!     ServiceBuilder::new()
//!         .layer(HandleErrorLayer::new(respond::handle_error))
//!         .layer(ConcurrencyLimitLayer::new(64).reject_when_full())
//!         .layer(breaker),
//! );
//! # let _ = app;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! **Why [`HttpClassify`](crate::classify::HttpClassify).** An axum handler
//! never fails as a service: a 500 it answers is an `Ok(response)` to the
//! layers around it. The default classifier,
//! [`DefaultClassify`](crate::classify::DefaultClassify), counts every `Ok`
//! as a success, so a breaker built with it (as
//! [`CircuitBreakerLayer::consecutive`](crate::circuit_breaker::CircuitBreakerLayer::consecutive)
//! is) stays closed through any number of 500s. `HttpClassify` reads the
//! status: 5xx, 429 and 408 are failures, other 4xx are the client's
//! business and count neither way.
//!
//! [`ErrorResponse`] also implements `IntoResponse`, for handlers that
//! call a layered service themselves: a handler that fetched from an
//! upstream with [`fetch::fetch_json`](crate::fetch::fetch_json) answers
//! its [`FetchError`](crate::fetch::FetchError) with
//! `respond::error_response_for(&err)`, and an upstream 404 reaches the
//! client as a 404 (see [`error_response`], "Upstream answers").
//! `examples/axum_server.rs` runs a whole app.
//!
//! ## A layered service in axum `State`
//!
//! A stack's type is long and names closures; axum's `State` must be
//! `Clone + Send + Sync + 'static`. Box the stack as a
//! `tower::util::BoxCloneSyncService` (tower 0.5.2 or later), which is all
//! of these and has a short name. Clones share every layer's state
//! (breaker, cache, permits), as unboxed clones do:
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() -> Result<(), tower_patterns::ConfigError> {
//! use std::time::Duration;
//! use axum::{extract::State, routing::get, Router};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower::util::BoxCloneSyncService;
//! use tower::{BoxError, ServiceBuilder, ServiceExt};
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::classify::HttpClassify;
//! use tower_patterns::fetch::{CollectLayer, HttpClient};
//! use tower_patterns::respond::{self, ErrorResponse};
//! use tower_patterns::retry::RetryLayer;
//!
//! type Upstream =
//!     BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Full<Bytes>>, BoxError>;
//!
//! async fn user(State(upstream): State<Upstream>) -> Result<http::Response<Full<Bytes>>, ErrorResponse> {
//!     let req = http::Request::get("http://users.internal/users/1")
//!         .body(Full::default())
//!         .expect("a valid URL");
//!     // An open breaker's error becomes 503 + Retry-After, a timeout 504, ...
//!     let res = upstream.oneshot(req).await.map_err(|e| respond::error_response(&e))?;
//!     Ok(res)
//! }
//!
//! let stack = ServiceBuilder::new()
//!     .layer(RetryLayer::builder().max_attempts(3).classify(HttpClassify).build()?)
//!     .layer(
//!         CircuitBreakerLayer::builder()
//!             .consecutive_failures(5)
//!             .open_duration(Duration::from_secs(10))
//!             .classify(HttpClassify)
//!             .build()?,
//!     )
//!     .map_err(BoxError::from)
//!     .layer(CollectLayer::new())
//!     .service(HttpClient::new());
//! let app: Router = Router::new()
//!     .route("/users/1", get(user))
//!     .with_state(BoxCloneSyncService::new(stack));
//! # let _ = app;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```
//!
//! # tonic (feature `tonic`)
//!
//! [`to_status`] maps the same errors to gRPC codes (`Open` to
//! `UNAVAILABLE`, `Overloaded` to `RESOURCE_EXHAUSTED`, timeouts to
//! `DEADLINE_EXCEEDED`). With tonic 0.14, layers go around the whole
//! server with `Server::builder().layer(...)`, whose service may fail
//! with any error; but tonic answers with a gRPC status only for errors
//! that are (or wrap) a `tonic::Status` and resets the stream for any
//! other. So put `map_err(`[`into_status`]`)` outermost:
//!
//! ```no_run
//! # #[cfg(feature = "tonic")]
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tonic::transport::Server;
//! use tower::ServiceBuilder;
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//! use tower_patterns::limit::ConcurrencyLimitLayer;
//! use tower_patterns::respond;
//!
//! let (_reporter, health_service) = tonic_health::server::health_reporter();
//! Server::builder()
//!     .layer(
//!         ServiceBuilder::new()
//!             .map_err(respond::into_status)
//!             .layer(ConcurrencyLimitLayer::new(64).reject_when_full())
//!             .layer(CircuitBreakerLayer::consecutive(5, Duration::from_secs(10)))
//!             .into_inner(),
//!     )
//!     .add_service(health_service)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! On the client side the same `map_err` outermost around a `Channel`
//! stack keeps the code (tonic would report an unknown error as
//! `UNKNOWN`), and
//! [`classify::GrpcClassify`](crate::classify::GrpcClassify) tells retry
//! and the breaker which gRPC answers are failures.
//! `examples/tonic_health.rs` shows both ends.

#[cfg(feature = "axum")]
mod axum;
mod response;
#[cfg(feature = "tonic")]
mod tonic;
mod upstream;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use self::axum::handle_error;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub use self::tonic::{into_status, to_status, RETRY_PUSHBACK_MS};
pub use response::{
    error_response, error_response_for, ErrorKind, ErrorResponse, SHORT_RETRY_AFTER,
};
