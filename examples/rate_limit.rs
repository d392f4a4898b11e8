//! Rate limits, on loopback: a client staying under an API's quota, and a
//! server giving each caller its own quota.
//!
//! ```sh
//! cargo run --features axum --example rate_limit
//! ```
//!
//! 1. A client allowed 20 requests a second by the API it calls sends 60:
//!    the first 5 go at once (the burst), the rest are spaced 50 ms apart,
//!    and none is refused.
//! 2. An axum server allows each API key 5 requests a minute: a client
//!    that floods gets 429 with `Retry-After` and the `RateLimit` headers,
//!    while a second client's requests keep getting 200.
//!
//! It exits non-zero if any of that does not happen (CI runs it).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_patterns::fetch::{self, HttpClient};
use tower_patterns::rate_limit::RateLimitLayer;
use tower_patterns::respond;
use tower_patterns::upstream::{Upstream, UpstreamConfig};
use tower_patterns::BoxError;

/// A client under an API's quota, and a server with a quota per caller.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Args::parse();

    // 1. The client side.
    let server = Upstream::start(UpstreamConfig::default()).await?;
    let quota = RateLimitLayer::builder()
        .rate(20, Duration::from_secs(1))
        .burst(5)
        .max_wait(Duration::from_secs(5))
        .build()?;
    let client = quota.layer(HttpClient::new());
    let start = Instant::now();
    let mut last = Duration::ZERO;
    for i in 0..60 {
        let res = client
            .clone()
            .oneshot(fetch::get(server.url("/health"))?)
            .await?;
        assert_eq!(res.status(), 200);
        last = start.elapsed();
        if i < 6 || i == 59 {
            println!("1. request {:>2} answered at {:>6.1?}", i + 1, last);
        }
    }
    let s = quota.stats();
    println!(
        "1. 60 requests in {last:.1?} (a burst of 5, then 20 a second): {} waited, {} refused\n",
        s.waited, s.limited
    );
    assert_eq!(
        (s.allowed, s.limited),
        (60, 0),
        "every request went, none refused"
    );

    // 2. The server side.
    let per_key = RateLimitLayer::builder()
        .rate(5, Duration::from_secs(60))
        .reject()
        .key_fn(|req: &http::Request<axum::body::Body>| {
            req.headers()
                .get("x-api-key")
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default()
        })
        .max_keys(100_000)
        .build()?;
    let app = Router::new()
        .route("/report", get(|| async { "the report" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                .layer(per_key.clone()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let http = HttpClient::new();
    let call = |key: &'static str| {
        let http = http.clone();
        async move {
            let mut req = fetch::get(format!("http://{addr}/report"))?;
            req.headers_mut().insert("x-api-key", key.parse()?);
            Ok::<_, BoxError>(http.oneshot(req).await?)
        }
    };
    for i in 1..=8 {
        let res = call("flooder").await?;
        let h = res.headers();
        let show = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "2. flooder #{i}: {} retry-after={} ratelimit={}",
            res.status(),
            show("retry-after"),
            show("ratelimit")
        );
        // Five a minute: the sixth and later are refused, and say when to retry.
        let expected = if i <= 5 { 200 } else { 429 };
        assert_eq!(res.status(), expected, "flooder #{i}");
        if i % 2 == 0 {
            let polite = call("polite").await?.status();
            println!("2.   polite: {polite}");
            assert_eq!(polite, 200, "the other client is never held back");
        }
    }
    let s = per_key.stats();
    println!(
        "2. allowed {}, refused {}, keys {}",
        s.allowed, s.limited, s.keys
    );
    server.shutdown().await;
    Ok(())
}
