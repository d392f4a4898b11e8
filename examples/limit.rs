//! Concurrency limits against the flaky upstream server, on loopback.
//!
//! ```sh
//! cargo run --example limit
//! ```
//!
//! 1. A fixed limit of 5 under `gather`: 20 slow requests run in 4 waves and
//!    the server never sees more than 5 at once.
//! 2. Load shedding: `reject_when_full` answers `Overloaded` at once instead
//!    of queueing.
//! 3. `hold_until_body_end`: the permit stays taken while a streamed body is
//!    still being read.
//! 4. AIMD: the limit halves when the server starts failing and climbs back
//!    when it recovers.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_patterns::classify::HttpClassify;
use tower_patterns::limit::{self, AdaptiveLimitLayer, ConcurrencyLimitLayer, Overloaded};
use tower_patterns::upstream::{Upstream, UpstreamConfig};
use tower_patterns::BoxError;

fn get(url: String) -> http::Request<Empty<Bytes>> {
    http::Request::get(url)
        .body(Empty::new())
        .expect("valid request")
}

/// Fixed and adaptive concurrency limits against a flaky local server.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Args::parse();
    let server = Upstream::start(UpstreamConfig::default()).await?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    println!("upstream on http://{}\n", server.addr());

    // 1. A fixed limit under gather.
    let layer = ConcurrencyLimitLayer::new(5);
    let svc = layer.layer(client.clone());
    let requests = (0..20).map(|_| get(server.url("/slow?ms=200")));
    let start = Instant::now();
    let results = limit::gather(svc, requests, 20).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    println!(
        "1. fixed limit 5: {ok}/20 ok in {:.1?} (4 waves of 200 ms); server saw at most {} at once",
        start.elapsed(),
        server.max_in_flight()
    );

    // 2. Shedding load instead of queueing.
    let layer = ConcurrencyLimitLayer::new(2).reject_when_full();
    let svc = layer.layer(client.clone());
    let requests = (0..10).map(|_| get(server.url("/slow?ms=100")));
    let results = limit::gather(svc, requests, 10).await;
    let shed: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().err()?.downcast_ref::<Overloaded>())
        .collect();
    println!(
        "2. reject_when_full: {} served, {} shed at once; e.g. \"{}\"",
        results.len() - shed.len(),
        shed.len(),
        shed.first().map(|o| o.to_string()).unwrap_or_default()
    );

    // 3. Holding the permit until the body has been read.
    let layer = ConcurrencyLimitLayer::new(1).hold_until_body_end();
    let svc = layer.layer(client.clone());
    let response = svc
        .clone()
        .oneshot(get(server.url("/stream?bytes=1048576&chunk=65536")))
        .await?;
    let mut body = response.into_body();
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if read == 0 {
                println!(
                    "3. hold_until_body_end: first chunk in, permits in use = {}",
                    layer.stats().in_flight
                );
            }
            read += data.len();
        }
    }
    println!(
        "   body done ({read} bytes), permits in use = {}",
        layer.stats().in_flight
    );

    // 4. AIMD against failures.
    let layer = AdaptiveLimitLayer::builder()
        .aimd()
        .initial_limit(10)
        .max_limit(50)
        .build()?
        .classify(HttpClassify);
    let svc = layer.layer(client.clone());
    let round = |n: usize| {
        let svc = svc.clone();
        let requests: Vec<_> = (0..n).map(|_| get(server.url("/slow?ms=20"))).collect();
        async move { limit::gather(svc, requests, 64).await }
    };
    round(300).await;
    println!(
        "\n4. AIMD, healthy server: limit grew to {}",
        layer.stats().limit
    );
    server.set_fail_rate(0.5);
    round(100).await;
    println!(
        "   server fails half its calls: limit fell to {}",
        layer.stats().limit
    );
    server.set_fail_rate(0.0);
    round(300).await;
    println!(
        "   server healthy again: limit back up to {}",
        layer.stats().limit
    );

    server.shutdown().await;
    Ok(())
}
