//! A configurable flaky JSON server, to point the layers (or curl) at.
//!
//! ```sh
//! cargo run --example upstream -- --port 8080 --fail-rate 0.3 --latency-ms 20 --down-after 10 --down-for 5
//! curl -i 'http://127.0.0.1:8080/items/link?page=1&per_page=5'
//! ```
//!
//! Endpoints are listed in the `tower_patterns::upstream` docs.

use std::time::Duration;

use tower_patterns::upstream::{Upstream, UpstreamConfig};

fn usage() -> ! {
    eprintln!(
        "usage: upstream [--port N] [--fail-rate 0..1] [--latency-ms N] [--items N] \
         [--retry-after N] [--down-after SECS --down-for SECS]"
    );
    std::process::exit(2)
}

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
    match value.as_deref().map(str::parse) {
        Some(Ok(v)) => v,
        _ => {
            eprintln!("upstream: {flag} needs a valid value");
            usage()
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut config = UpstreamConfig {
        port: 8080,
        ..UpstreamConfig::default()
    };
    let (mut down_after, mut down_for) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--port" => config.port = parse(&flag, args.next()),
            "--fail-rate" => config.fail_rate = parse(&flag, args.next()),
            "--latency-ms" => config.latency = Duration::from_millis(parse(&flag, args.next())),
            "--items" => config.items = parse(&flag, args.next()),
            "--retry-after" => config.retry_after_secs = parse(&flag, args.next()),
            "--down-after" => down_after = Some(Duration::from_secs(parse(&flag, args.next()))),
            "--down-for" => down_for = Some(Duration::from_secs(parse(&flag, args.next()))),
            "-h" | "--help" => usage(),
            other => {
                eprintln!("upstream: unknown flag {other}");
                usage()
            }
        }
    }
    config.outage = match (down_after, down_for) {
        (Some(a), Some(f)) => Some((a, f)),
        (None, None) => None,
        _ => {
            eprintln!("upstream: --down-after and --down-for go together");
            usage()
        }
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
