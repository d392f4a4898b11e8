//! A configurable flaky JSON server, to point the layers (or curl) at.
//!
//! ```sh
//! cargo run --example upstream -- --port 8080 --fail-rate 0.3 --latency-ms 20 --down-after 10 --down-for 5
//! curl -i 'http://127.0.0.1:8080/items/link?page=1&per_page=5'
//! cargo run --example upstream -- --help
//! ```
//!
//! Endpoints are listed in the `tower_patterns::upstream` docs.

use std::time::Duration;

use clap::Parser;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

/// A configurable flaky JSON server on 127.0.0.1, to point the layers (or
/// curl) at; Ctrl-C stops it.
#[derive(Parser)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Chance in 0..1 that a request answers 503.
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// Added before every answer but /health, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// How many items the paginated endpoints and /users serve.
    #[arg(long, default_value_t = 1_000)]
    items: u64,
    /// The Retry-After seconds sent with 503 and 429 answers.
    #[arg(long, default_value_t = 1)]
    retry_after: u64,
    /// Seconds from start until an outage (repeats; needs --down-for).
    #[arg(long, requires = "down_for")]
    down_after: Option<u64>,
    /// Seconds each outage lasts (needs --down-after).
    #[arg(long, requires = "down_after")]
    down_for: Option<u64>,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = UpstreamConfig {
        port: args.port,
        fail_rate: args.fail_rate,
        latency: Duration::from_millis(args.latency_ms),
        items: args.items,
        retry_after_secs: args.retry_after,
        outage: args
            .down_after
            .zip(args.down_for)
            .map(|(after, down)| (Duration::from_secs(after), Duration::from_secs(down))),
    };
    let server = Upstream::start(config.clone()).await?;
    println!(
        "upstream listening on http://{} (fail rate {}, latency {:?}, outage {:?})",
        server.addr(),
        config.fail_rate,
        config.latency,
        config.outage
    );
    println!(
        "try: curl -i {}",
        server.url("/items/link?page=1&per_page=5")
    );
    tokio::signal::ctrl_c().await?;
    println!(
        "served {} requests, {} failures",
        server.requests(),
        server.failures_sent()
    );
    server.shutdown().await;
    Ok(())
}
