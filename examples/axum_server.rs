//! An axum app whose routes wear our cache, concurrency limit and circuit
//! breaker, with `respond::handle_error` turning their errors into 503 +
//! `Retry-After` (and never into an accidental 500).
//!
//! It proxies `/users/{id}` to an in-process flaky upstream through
//! `fetch::HttpClient`:
//!
//! ```text
//! GET /users/{id} ─ HandleErrorLayer(respond::handle_error)
//!                   └ cache (5 s per path; 404s and failures are not kept)
//!                     └ concurrency limit (16 in flight, reject when full → 503, Retry-After: 1)
//!                       └ circuit breaker (5 failures in a row → open 5 s → 503, Retry-After: secs to probe)
//!                         └ proxy: fetch::HttpClient → upstream /users/{id}
//! ```
//!
//! ```sh
//! cargo run --example axum_server --features axum -- [--port 3000] [--fail-rate 0.3] [--latency-ms 50]
//! curl -i localhost:3000/users/1
//! curl localhost:3000/upstream/down     # start an outage; watch the breaker open
//! curl localhost:3000/upstream/up
//! curl localhost:3000/stats
//! cargo run --example axum_server --features axum -- --smoke   # checks itself and exits
//! cargo run --example axum_server --features axum -- --help
//! ```
//!
//! (`--features axum` is only needed without `--all-features`.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::State as AxumState;
use axum::http::{Request, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use tower::{BoxError, ServiceBuilder};
use tower_patterns::cache::{CacheHandle, CacheLayer};
use tower_patterns::circuit_breaker::{CircuitBreakerHandle as BreakerHandle, CircuitBreakerLayer};
use tower_patterns::classify::HttpClassify;
use tower_patterns::fetch::{self, FetchError, HttpClient};
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::respond;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

/// An axum app whose routes wear tower-patterns' cache, concurrency limit
/// and circuit breaker, proxying `/users/{id}` to a flaky in-process
/// upstream.
#[derive(Parser)]
struct Args {
    /// Port to listen on, on 127.0.0.1 (with --smoke a free one is picked).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Chance in 0..1 that an upstream request answers 503.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Upstream latency per request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Check cache, limit, breaker and recovery against itself, then exit.
    #[arg(long)]
    smoke: bool,
}

/// What the app shares with its `/stats` and `/upstream/*` routes.
#[derive(Clone)]
struct App {
    upstream: Arc<Upstream>,
    breaker: BreakerHandle,
    limit: ConcurrencyLimitLayer,
    cache: CacheHandle<String, Response<Bytes>>,
}

/// Fetches `path` from the upstream. Client errors (404 for an unknown
/// user) are the upstream's answer and pass through; 5xx and transport
/// failures are errors, for the breaker to count and `handle_error` to
/// map (to 502, or 504 on a timeout).
async fn proxy(client: HttpClient, url: String) -> Result<Response<Bytes>, BoxError> {
    match fetch::fetch_json::<serde_json::Value, _, _>(&client, &url).await {
        Ok(json) => Ok(Response::builder()
            .header("content-type", "application/json")
            .body(Bytes::from(json.to_string()))?),
        Err(FetchError::Status { status, .. }) if status.is_client_error() => {
            Ok(Response::builder().status(status).body(Bytes::new())?)
        }
        Err(e) => Err(e.into()),
    }
}

fn app(upstream: Arc<Upstream>, open_for: Duration) -> (Router, App) {
    let client = HttpClient::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("valid client config");
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .open_duration(open_for)
        .classify(HttpClassify)
        .build()
        .expect("valid breaker config");
    let limit = ConcurrencyLimitLayer::new(16).reject_when_full();
    let cache = CacheLayer::builder()
        .ttl(Duration::from_secs(5))
        .max_entries(10_000)
        .key_fn(|req: &Request<Body>| req.uri().path().to_owned())
        .classify(HttpClassify)
        .build()
        .expect("valid cache config");
    let shared = App {
        upstream: upstream.clone(),
        breaker: breaker.handle(),
        limit: limit.clone(),
        cache: cache.handle(),
    };

    let users = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(respond::handle_error))
        .map_response(|res: Response<Bytes>| res.map(Body::from))
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
        .route("/upstream/down", get(down))
        .route("/upstream/up", get(up))
        .with_state(shared.clone());
    (router, shared)
}

async fn stats(AxumState(app): AxumState<App>) -> String {
    let (b, l, c) = (app.breaker.stats(), app.limit.stats(), app.cache.stats());
    format!(
        "breaker: {:?} (successes {}, failures {})\nlimit: {} in flight of {}, {} rejected\n\
         cache: {} hits, {} misses, {} coalesced, {} entries\nupstream: {} requests, down: {}\n",
        b.state,
        b.successes,
        b.failures,
        l.in_flight,
        l.limit,
        l.rejected,
        c.hits,
        c.misses,
        c.coalesced,
        c.entries,
        app.upstream.requests(),
        app.upstream.is_down(),
    )
}

async fn down(AxumState(app): AxumState<App>) -> &'static str {
    app.upstream.set_down(true);
    "upstream is down\n"
}

async fn up(AxumState(app): AxumState<App>) -> &'static str {
    app.upstream.set_down(false);
    "upstream is up\n"
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let upstream = Upstream::start(UpstreamConfig {
        fail_rate: args.fail_rate,
        latency: Duration::from_millis(args.latency_ms),
        ..UpstreamConfig::default()
    })
    .await?;
    let upstream = Arc::new(upstream);
    let open_for = if args.smoke {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let (router, shared) = app(upstream, open_for);

    let port = if args.smoke { 0 } else { args.port };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    println!(
        "axum_server listening on http://{addr} (upstream on {})",
        shared.upstream.addr()
    );

    if args.smoke {
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let result = smoke(addr, &shared).await;
        server.abort();
        return result;
    }
    println!("try: curl -i http://{addr}/users/1   (Ctrl-C stops)");
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Serves a few requests to itself: cache hit, overload, outage, recovery.
async fn smoke(addr: SocketAddr, app: &App) -> Result<(), BoxError> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let res = client.get(format!("http://{addr}{path}").parse()?).await?;
            let status = res.status();
            let retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((status, retry_after, body))
        }
    };
    let check = |ok: bool, what: &str| -> Result<(), BoxError> {
        if ok {
            println!("  ok: {what}");
            Ok(())
        } else {
            Err(format!("smoke check failed: {what}").into())
        }
    };

    println!("1. fetch and cache");
    let (s1, _, body) = get("/users/1".into()).await?;
    let (s2, _, _) = get("/users/1".into()).await?;
    check(
        s1 == StatusCode::OK && s2 == StatusCode::OK,
        "GET /users/1 twice is 200",
    )?;
    check(body.starts_with(b"{"), "the body is the upstream's JSON")?;
    check(
        app.cache.stats().hits == 1,
        "the second answer came from the cache",
    )?;
    let (s, _, _) = get("/users/999999".into()).await?;
    check(
        s == StatusCode::NOT_FOUND,
        "an unknown user is the upstream's 404",
    )?;

    println!("2. 64 concurrent requests, limit 16, slow upstream");
    app.upstream.set_latency(Duration::from_millis(300));
    let answers = futures::future::join_all((100..164).map(|id| get(format!("/users/{id}")))).await;
    app.upstream.set_latency(Duration::from_millis(20));
    let mut ok = 0;
    let mut shed = 0;
    for a in answers {
        let (status, retry_after, _) = a?;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE if retry_after.as_deref() == Some("1") => shed += 1,
            other => return Err(format!("unexpected {other} (Retry-After {retry_after:?})").into()),
        }
    }
    println!("     {ok} served, {shed} shed with 503 + Retry-After: 1");
    check(
        ok >= 16 && shed > 0 && ok + shed == 64,
        "only 200 or 503 + Retry-After",
    )?;

    println!("3. upstream outage");
    app.upstream.set_down(true);
    let mut seen = Vec::new();
    for id in 200..210 {
        let (status, retry_after, _) = get(format!("/users/{id}")).await?;
        seen.push((status.as_u16(), retry_after));
    }
    println!(
        "     statuses: {:?}",
        seen.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    check(
        seen[..5].iter().all(|s| s.0 == 502),
        "the first 5 failures are 502 (upstream failed)",
    )?;
    check(
        seen[5..]
            .iter()
            .all(|s| s.0 == 503 && s.1.as_deref() == Some("1")),
        "then the breaker is open: 503 + Retry-After",
    )?;
    check(!seen.iter().any(|s| s.0 == 500), "no 500 anywhere")?;

    println!("4. recovery");
    app.upstream.set_down(false);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, _, _) = get("/users/300".into()).await?;
    check(
        s == StatusCode::OK,
        "after the open period a probe succeeds",
    )?;
    println!("{}", stats(AxumState(app.clone())).await);
    println!("smoke test passed");
    Ok(())
}
