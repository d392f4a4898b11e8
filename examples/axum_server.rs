//! An axum app whose routes wear our cache, concurrency limit and circuit
//! breaker, with `respond::handle_error` turning their errors into 503 +
//! `Retry-After` (and never into an accidental 500).
//!
//! It proxies `/users/{id}` to an in-process flaky upstream through
//! `fetch::HttpClient`:
//!
//! ```text
//! GET /users/{id} ─ HandleErrorLayer(respond::handle_error)
//!                   └ HTTP cache (RFC 9111, shared: what the upstream's Cache-Control allows)
//!                     └ concurrency limit (16 in flight, reject when full → 503, Retry-After: 1)
//!                       └ circuit breaker (5 failures in a row → open 5 s → 503, Retry-After: secs to probe)
//!                         └ proxy: fetch::HttpClient → upstream /users/{id}
//! ```
//!
//! ```sh
//! cargo run --example axum_server --features axum,metrics -- [--port 3000] [--fail-rate 0.3] [--latency-ms 50]
//! curl -i localhost:3000/users/1
//! curl localhost:3000/upstream/down     # start an outage; watch the breaker open
//! curl localhost:3000/upstream/up
//! curl localhost:3000/stats
//! curl localhost:3000/metrics           # every layer's metrics, Prometheus text
//! cargo run --example axum_server --features axum,metrics -- --smoke   # checks itself and exits
//! cargo run --example axum_server --features axum,metrics -- --help
//! ```
//!
//! (`--features axum,metrics` is only needed without `--all-features`.)
//!
//! `/metrics` is `metrics-exporter-prometheus` rendering what the layers
//! record (feature `metrics`); each layer is named `users`, so its series
//! carry `name="users"`:
//!
//! ```text
//! tower_patterns_circuit_breaker_state{name="users",state="open"} 1
//! tower_patterns_limit_rejections{name="users"} 48
//! tower_patterns_cache_requests{name="users",result="hit"} 1
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use tower::BoxError;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

#[path = "support/axum_app.rs"]
mod axum_app;

use axum_app::{app, install_prometheus, stats, App};

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

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    // First, so that every layer records into it.
    let prometheus = install_prometheus();
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
    let (router, shared) = app(upstream, open_for, prometheus);

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

    println!("5. /metrics");
    let (s, _, body) = get("/metrics".into()).await?;
    let text = String::from_utf8_lossy(&body);
    for series in [
        r#"tower_patterns_circuit_breaker_state{name="users",state="closed"} 1"#,
        r#"tower_patterns_circuit_breaker_transitions{name="users",to="open"} 1"#,
        r#"tower_patterns_cache_requests{name="users",result="hit"} 1"#,
        r#"tower_patterns_limit_rejections{name="users"}"#,
    ] {
        check(
            s == StatusCode::OK && text.lines().any(|l| l.starts_with(series)),
            &format!("/metrics has {series}"),
        )?;
    }
    println!("smoke test passed");
    Ok(())
}
