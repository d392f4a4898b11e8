//! The axum app of `examples/axum_server.rs`, shared with
//! `tests/axum_metrics.rs` (included with `#[path]`, so the test scrapes
//! exactly the app the example serves): `/users/{id}` behind our cache,
//! concurrency limit and circuit breaker, `/stats`, `/metrics` and the
//! upstream's switches.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State as AxumState;
use axum::http::header::CONTENT_TYPE;
use axum::http::{Request, Response};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{BoxError, ServiceBuilder};
use tower_patterns::circuit_breaker::{CircuitBreakerHandle as BreakerHandle, CircuitBreakerLayer};
use tower_patterns::classify::HttpClassify;
use tower_patterns::fetch::{FetchError, HttpClient};
use tower_patterns::http_cache::{HttpCacheHandle, HttpCacheLayer};
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::respond;
use tower_patterns::upstream::Upstream;

/// What the app shares with its `/stats` and `/upstream/*` routes.
#[derive(Clone)]
pub struct App {
    pub upstream: Arc<Upstream>,
    pub breaker: BreakerHandle,
    pub limit: ConcurrencyLimitLayer,
    pub cache: HttpCacheHandle,
    /// Renders every metric in Prometheus' text format, for `/metrics`.
    pub prometheus: PrometheusHandle,
}

/// Fetches `path` from the upstream. Its answer passes through with the
/// fields a cache and a client act on (`Content-Type`, `Cache-Control`,
/// `ETag`, `Last-Modified`, `Expires`, `Date`); client errors (404 for an
/// unknown user) too. 5xx and transport failures are errors, for the
/// breaker to count and `handle_error` to map (to 502, or 504 on a
/// timeout).
async fn proxy(client: HttpClient, url: String) -> Result<Response<Full<Bytes>>, BoxError> {
    let res = client
        .request(Request::get(&url).body(Full::default())?)
        .await?;
    let status = res.status();
    if !status.is_success() && !status.is_client_error() {
        return Err(FetchError::Status {
            url,
            status,
            body: Bytes::new(),
            retry_after: None,
            content_type: None,
        }
        .into());
    }
    let (parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut out = Response::builder().status(status);
    for name in [
        "content-type",
        "cache-control",
        "etag",
        "last-modified",
        "expires",
        "date",
    ] {
        if let Some(v) = parts.headers.get(name) {
            out = out.header(name, v);
        }
    }
    Ok(out.body(Full::new(body))?)
}

/// The router and what its routes share. Every layer is named `users`:
/// that is the `name` label of its metrics on `/metrics`.
pub fn app(
    upstream: Arc<Upstream>,
    open_for: Duration,
    prometheus: PrometheusHandle,
) -> (Router, App) {
    let client = HttpClient::builder()
        .name("users")
        .timeout(Duration::from_secs(2))
        .build()
        .expect("valid client config");
    let breaker = CircuitBreakerLayer::builder()
        .name("users")
        .consecutive_failures(5)
        .open_duration(open_for)
        .classify(HttpClassify)
        .build()
        .expect("valid breaker config");
    let limit = ConcurrencyLimitLayer::builder()
        .name("users")
        .limit(16)
        .reject_when_full()
        .build()
        .expect("valid limit config");
    // RFC 9111 in front of the routes: a shared cache (every user's
    // requests), keeping what the upstream's `Cache-Control` allows.
    let cache = HttpCacheLayer::builder()
        .name("users")
        .max_entries(10_000)
        .build()
        .expect("valid cache config");
    let shared = App {
        upstream: upstream.clone(),
        breaker: breaker.handle(),
        limit: limit.clone(),
        cache: cache.handle(),
        prometheus,
    };

    let users = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(respond::handle_error))
        .map_response(|res: Response<_>| res.map(Body::new))
        .layer(cache)
        // Outside the breaker: shedding load is not the upstream's fault.
        .layer(limit)
        .layer(breaker)
        .service_fn(move |req: Request<Body>| {
            proxy(client.clone(), upstream.url(req.uri().path()))
        });

    let router = Router::new()
        .route_service("/users/{id}", users)
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/upstream/down", get(down))
        .route("/upstream/up", get(up))
        .with_state(shared.clone());
    (router, shared)
}

pub async fn stats(AxumState(app): AxumState<App>) -> String {
    let (b, l, c) = (app.breaker.stats(), app.limit.stats(), app.cache.stats());
    format!(
        "breaker: {:?} (successes {}, failures {})\nlimit: {} in flight of {}, {} rejected\n\
         cache: {} hits, {} misses, {} revalidations, {} entries\nupstream: {} requests, down: {}\n",
        b.state,
        b.successes,
        b.failures,
        l.in_flight,
        l.limit,
        l.rejected,
        c.hits,
        c.misses,
        c.revalidations,
        c.entries,
        app.upstream.requests(),
        app.upstream.is_down(),
    )
}

pub async fn down(AxumState(app): AxumState<App>) -> &'static str {
    app.upstream.set_down(true);
    "upstream is down\n"
}

pub async fn up(AxumState(app): AxumState<App>) -> &'static str {
    app.upstream.set_down(false);
    "upstream is up\n"
}

/// `GET /metrics`: every metric of the app's layers, in Prometheus' text
/// format.
pub async fn metrics(AxumState(app): AxumState<App>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.prometheus.render(),
    )
}

/// Installs the Prometheus recorder for the process (every layer built
/// before or after records into it) and keeps its histograms trimmed.
///
/// # Panics
///
/// If a recorder is already installed.
pub fn install_prometheus() -> PrometheusHandle {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder is installed");
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    handle
}
