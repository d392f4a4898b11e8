//! HTTP fetching as tower services: JSON, HTTPS, body limits, fetch-many and
//! streaming bodies.
//!
//! The Python asyncio patterns "fetch JSON and raise for status", "fetch
//! many URLs and gather the results" and "stream a large body in chunks",
//! on hyper and hyper-util:
//!
//! - [`HttpClient`]: a pooled client (HTTP/1.1 and HTTP/2; HTTPS with rustls
//!   under the `tls` feature, on by default) that is a
//!   `Service<http::Request<Full<Bytes>>>` answering `http::Response<`[`Body`]`>`.
//!   Every layer in this crate (and tower's) stacks on it; its errors are
//!   [`FetchError`]s, which convert into [`BoxError`](crate::BoxError).
//! - [`fetch_json`]: `GET` + raise for status + decode into any
//!   `T: DeserializeOwned`, with the body limit enforced while it streams.
//! - [`fetch_all`]: many URLs, at most `n` in flight, one `Result` per URL
//!   in input order.
//! - [`JsonLayer`]: the same decoding as a layer over any HTTP service, so
//!   `ServiceBuilder::new().layer(JsonLayer::<User>::new()).layer(retry).service(client)`
//!   is a `Service<Request, Response = User>`.
//! - [`stream_body`]: a large body as a `Stream` of chunks of at most
//!   `chunk_size` bytes, in flat memory, with the total at the end.
//! - [`CollectLayer`]: every response's body read to the end into
//!   `Full<Bytes>`, so responses are `Clone` and a
//!   [`CacheLayer`](crate::cache::CacheLayer) can keep them.
//!
//! ```
//! # use std::convert::Infallible;
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! # use hyper_util::rt::TokioIo;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! # // A tiny local server: `/users/{id}` is JSON, anything else is a 404.
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let addr = listener.local_addr()?;
//! # tokio::spawn(async move {
//! #     loop {
//! #         let Ok((tcp, _)) = listener.accept().await else { return };
//! #         tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
//! #             TokioIo::new(tcp),
//! #             hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
//! #                 let path = req.uri().path().to_owned();
//! #                 let resp = match path.strip_prefix("/users/") {
//! #                     Some(id) => http::Response::new(Full::new(Bytes::from(
//! #                         format!(r#"{{"id":{id},"name":"user {id}"}}"#),
//! #                     ))),
//! #                     None => http::Response::builder().status(404)
//! #                         .body(Full::new(Bytes::from("no such thing"))).unwrap(),
//! #                 };
//! #                 Ok::<_, Infallible>(resp)
//! #             }),
//! #         ));
//! #     }
//! # });
//! # let base = format!("http://{addr}");
//! use futures::StreamExt;
//! use tower_patterns::fetch::{self, FetchError, HttpClient};
//!
//! #[derive(Debug, serde::Deserialize)]
//! struct User {
//!     id: u64,
//!     name: String,
//! }
//!
//! let client = HttpClient::builder()
//!     .timeout(std::time::Duration::from_secs(5))
//!     .max_body_bytes(1 << 20)
//!     .build()?;
//!
//! // One JSON document.
//! let user: User = fetch::fetch_json(&client, format!("{base}/users/1")).await?;
//! assert_eq!(user.name, "user 1");
//!
//! // A non-2xx answer is an error carrying the status and the body's start.
//! match fetch::fetch_json::<User, _, _>(&client, format!("{base}/nope")).await {
//!     Err(FetchError::Status { status, body, .. }) => {
//!         assert_eq!(status, 404);
//!         assert_eq!(body, "no such thing");
//!     }
//!     other => panic!("expected a 404, got {other:?}"),
//! }
//!
//! // Many URLs, 4 at a time, results in input order; bad ones are just `Err`s.
//! let urls = vec![format!("{base}/users/1"), "not a url".into(), format!("{base}/users/3")];
//! let all: Vec<Result<User, FetchError>> = fetch::fetch_all(&client, &urls, 4).await;
//! assert_eq!(all[0].as_ref().unwrap().id, 1);
//! assert!(matches!(all[1], Err(FetchError::InvalidUri { .. })));
//! assert_eq!(all[2].as_ref().unwrap().id, 3);
//!
//! // A body in chunks of at most 8 bytes, and its total at the end.
//! let mut chunks = fetch::stream_body(&client, format!("{base}/users/42"), 8).await?;
//! while let Some(chunk) = chunks.next().await {
//!     assert!(chunk?.len() <= 8);
//! }
//! assert_eq!(chunks.total(), Some(r#"{"id":42,"name":"user 42"}"#.len() as u64));
//! # Ok(())
//! # }
//! ```
//!
//! # Composing
//!
//! [`HttpClient`] answers every status with `Ok(response)`, so
//! [`HttpClassify`](crate::classify::HttpClassify) sees 503s and 429s (and
//! their `Retry-After`) and retry or circuit-breaking layers can react to
//! them; transport failures and timeouts are `Err(FetchError)`. Requests are
//! `http::Request<Full<Bytes>>`, which is `Clone`, so retries can resend them.
//!
//! Responses stream their body ([`Body`]), which is not `Clone`; to cache
//! raw responses, put [`CollectLayer`] between the cache and the client.
//! A 4xx that reaches a server's handler as a [`FetchError::Status`] is
//! answered with that status by [`respond`](crate::respond) (a 5xx with
//! 502).
//!
//! # Limits and deadlines
//!
//! - `max_body_bytes` (default 10 MiB) is enforced while a body streams in,
//!   and up front from `Content-Length`: a 10 GiB answer is refused at the
//!   limit, never buffered ([`FetchError::BodyTooLarge`]).
//! - `timeout` (default 30 s) bounds a whole exchange, body included;
//!   `connect_timeout` (default 10 s) each connection attempt. Both give
//!   [`FetchError::Timeout`]. [`stream_body`] uses `timeout` as an idle
//!   timeout once the body starts, and is not subject to `max_body_bytes`
//!   (its memory is flat).
//! - A malformed URL, a bad scheme or bad JSON is an error, never a panic.
//!
//! # Observability
//!
//! [`HttpClient::stats`] is a cheap snapshot ([`FetchStats`]) of requests,
//! requests in flight, responses, timeouts, transport errors and bodies cut
//! at the limit, shared by every clone. With the `tracing` feature, timeouts
//! and oversized bodies emit `DEBUG` events.

mod body;
mod client;
mod collect;
mod collect_future;
mod collect_layer;
mod decode;
mod error;
mod future;
mod json;
mod request;
mod shared;
mod stream;
mod uri;

pub use body::Body;
pub use client::{HttpClient, HttpClientBuilder};
pub use collect_future::CollectFuture;
pub use collect_layer::{Collect, CollectLayer};
pub use error::{FetchError, STATUS_BODY_EXCERPT};
pub use future::ResponseFuture;
pub use json::{fetch_all, fetch_json, Json, JsonFuture, JsonLayer, JsonLayerBuilder};
pub use request::{delete, get, post, put, request};
pub use shared::{FetchStats, DEFAULT_MAX_BODY_BYTES};
pub use stream::{stream_body, BodyStream};

pub(crate) use decode::{DecodeJson, Failure};
pub(crate) use json::APPLICATION_JSON;
