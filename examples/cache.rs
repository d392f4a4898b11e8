//! Caches a slow HTTP endpoint: a miss waits for the server, a hit answers
//! in microseconds, and fifty concurrent requests for one uncached key
//! make a single upstream request (single-flight).
//!
//! ```text
//! cargo run --example cache
//! ```

use clap::Parser;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

/// The request: cached under the MD5 of its JSON form, `{"path": ...}`.
#[derive(Serialize)]
struct Get {
    path: String,
}

fn get(path: &str) -> Get {
    Get {
        path: path.to_owned(),
    }
}

/// Caches a slow local HTTP endpoint: misses, microsecond hits and single-flight loads.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Args::parse();
    let server = Upstream::start(UpstreamConfig::default()).await?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let base = server.url("");

    // The inner service: GET a path, collect the body, fail on non-2xx.
    let fetch = service_fn(move |req: Get| {
        let client = client.clone();
        let url = format!("{base}{}", req.path);
        async move {
            let request = http::Request::get(url).body(Full::<Bytes>::default())?;
            let response = client.request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                return Err(BoxError::from(format!("upstream answered {status}")));
            }
            Ok::<Bytes, BoxError>(body)
        }
    });

    let layer = CacheLayer::builder()
        .ttl(Duration::from_secs(60))
        .max_entries(1_000)
        .build()?;
    let handle = layer.handle();
    let svc = ServiceBuilder::new().layer(layer).service(fetch);

    // 1. A miss goes to the slow server...
    let mut one = svc.clone();
    let started = Instant::now();
    let body = one.ready().await?.call(get("/slow?ms=300")).await?;
    println!(
        "miss: {:>10.3?}  {}",
        started.elapsed(),
        String::from_utf8_lossy(&body)
    );

    // 2. ...and the same request again is a hit.
    let started = Instant::now();
    let body = one.ready().await?.call(get("/slow?ms=300")).await?;
    println!(
        "hit:  {:>10.3?}  {}",
        started.elapsed(),
        String::from_utf8_lossy(&body)
    );

    // 3. Fifty callers ask for an uncached key at once: one upstream call.
    let before = server.requests();
    let started = Instant::now();
    let calls = (0..50).map(|_| {
        let mut svc = svc.clone();
        async move { svc.ready().await?.call(get("/slow?ms=500")).await }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    println!(
        "50 concurrent callers: {ok} answers in {:.3?}, {} upstream request(s)",
        started.elapsed(),
        server.requests() - before
    );

    let stats = handle.stats();
    println!(
        "stats: {} hits, {} misses, {} coalesced, {} entries",
        stats.hits, stats.misses, stats.coalesced, stats.entries
    );
    assert_eq!(server.requests() - before, 1, "single-flight made one call");

    server.shutdown().await;
    Ok(())
}
