//! A circuit breaker in front of an HTTP client, watching a local server go
//! down and come back.
//!
//! The server (127.0.0.1, an ephemeral port) answers 200 for 2 s, then 503
//! for 4 s, then 200 again. The client sends a request every 100 ms through
//! a breaker that opens after 3 failures in a row and probes again after
//! 1 s. State changes are printed as they happen; while the breaker is open
//! requests fail at once, without reaching the server.
//!
//! Run: `cargo run --example circuit_breaker`

use clap::Parser;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open};
use tower_patterns::classify::HttpClassify;

/// A circuit breaker in front of an HTTP client, watching a local server go down and come back.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Args::parse();
    // --- the flaky server ---------------------------------------------------
    let down = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    {
        let (down, hits) = (down.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (down, hits) = (down.clone(), hits.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            hits.fetch_add(1, Ordering::Relaxed);
                            let status = if down.load(Ordering::Relaxed) {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::OK
                            };
                            async move {
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from_static(b"hello")))
                                        .unwrap(),
                                )
                            }
                        });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    }
    println!("server listening on http://{addr}");

    // --- the client behind a breaker -----------------------------------------
    let start = Instant::now();
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(1))
        .classify(HttpClassify)
        .on_state_change(move |change| {
            println!(
                "[{:>5.2}s] *** breaker {} -> {}: {}",
                start.elapsed().as_secs_f64(),
                change.from,
                change.to,
                change.reason
            );
        })
        .build()?;
    let handle = layer.handle();
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut svc = ServiceBuilder::new().layer(layer).service(client);
    let uri: hyper::Uri = format!("http://{addr}/").parse()?;

    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    for tick in 0..90 {
        ticker.tick().await;
        match tick {
            20 => {
                down.store(true, Ordering::Relaxed);
                println!(
                    "[{:>5.2}s] server goes down (503)",
                    start.elapsed().as_secs_f64()
                );
            }
            60 => {
                down.store(false, Ordering::Relaxed);
                println!(
                    "[{:>5.2}s] server comes back",
                    start.elapsed().as_secs_f64()
                );
            }
            _ => {}
        }
        let req = Request::get(uri.clone()).body(Empty::new())?;
        let t = Instant::now();
        let result = svc.ready().await?.call(req).await;
        let took = t.elapsed();
        // Print every 5th request, and every request that reached a down server.
        let (line, always) = match result {
            Ok(resp) => {
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                (format!("{status} in {took:.1?}"), !status.is_success())
            }
            Err(e) => match e.downcast_ref::<Open>() {
                Some(open) => (format!("fails fast in {took:.1?}: {open}"), false),
                None => (format!("error: {e}"), true),
            },
        };
        if tick % 5 == 0 || always {
            println!("[{:>5.2}s] {line}", start.elapsed().as_secs_f64());
        }
    }

    let s = handle.stats();
    println!(
        "\n{} requests: {} succeeded, {} failed, {} rejected without reaching the server \
         (the server saw {}); the breaker opened {} times",
        s.successes + s.failures + s.rejected,
        s.successes,
        s.failures,
        s.rejected,
        hits.load(Ordering::Relaxed),
        s.opened
    );
    Ok(())
}
