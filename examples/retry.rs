//! Retry through a flaky HTTP server that this example starts on loopback.
//!
//! ```text
//! cargo run --example retry
//! ```
//!
//! The server answers `/flaky` with a 503 (`Retry-After: 1`), then a 500,
//! then a 200; `/down` always with a 503 (so the backoff schedule shows:
//! about 100, 200, 400 ms with equal jitter); `/missing` with a 404. The client
//! is hyper-util's legacy client wrapped in a `RetryLayer` with the HTTP
//! classifier; a small logging service between the two prints every
//! attempt as it happens.

use clap::Parser;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
use tower_patterns::classify::HttpClassify;
use tower_patterns::retry::{Backoff, Jitter, RetryBudget, RetryLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Retries through a flaky local HTTP server, with backoff and Retry-After.
///
/// Takes no flags; `--help` prints this.
#[derive(Parser)]
struct Args {}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    Args::parse();
    let addr = start_flaky_server().await?;
    println!("flaky server listening on http://{addr}\n");

    let retry = RetryLayer::builder()
        .max_attempts(4)
        .backoff(
            Backoff::exponential(Duration::from_millis(100))
                .factor(2.0)
                .max_delay(Duration::from_secs(2))
                .jitter(Jitter::Equal),
        )
        .classify(HttpClassify)
        .budget(RetryBudget::new(0.2, 10, Duration::from_secs(10)))
        .deadline(Duration::from_secs(10))
        .build()?;

    // The inner service: the hyper client, plus a line per attempt.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let attempt = Arc::new(AtomicU32::new(0));
    let started = Arc::new(Mutex::new(Instant::now()));
    let logged = service_fn({
        let attempt = attempt.clone();
        let started = started.clone();
        move |req: http::Request<Full<Bytes>>| {
            let client = client.clone();
            let n = attempt.fetch_add(1, Ordering::SeqCst) + 1;
            let t0 = *started.lock().unwrap();
            async move {
                let at = t0.elapsed().as_millis();
                let result = client.request(req).await;
                match &result {
                    Ok(resp) => {
                        let retry_after = resp
                            .headers()
                            .get(http::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .map(|v| format!(", Retry-After: {v}"))
                            .unwrap_or_default();
                        println!(
                            "  attempt {n} sent at {at:>5} ms -> {}{retry_after}",
                            resp.status()
                        );
                    }
                    Err(e) => println!("  attempt {n} sent at {at:>5} ms -> error: {e}"),
                }
                result
            }
        }
    });
    let mut svc = ServiceBuilder::new().layer(retry.clone()).service(logged);

    for (path, what) in [
        (
            "/flaky",
            "fails twice, then succeeds: retried until it does",
        ),
        (
            "/down",
            "always 503: backs off until attempts run out, last 503 returned",
        ),
        ("/missing", "404 is not a failure worth retrying: sent once"),
    ] {
        println!("POST {path}  ({what})");
        attempt.store(0, Ordering::SeqCst);
        *started.lock().unwrap() = Instant::now();
        let req = http::Request::post(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::from_static(b"{\"hello\":\"world\"}")))?;
        let resp = svc.ready().await?.call(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        println!(
            "  => {status} {:?} after {} attempt(s)\n",
            String::from_utf8_lossy(&body),
            attempt.load(Ordering::SeqCst)
        );
    }

    let stats = retry.stats();
    println!(
        "stats: {} attempts, {} retries, {} refused by the budget",
        stats.attempts, stats.retries, stats.budget_refusals
    );
    Ok(())
}

/// Starts the flaky server on 127.0.0.1 with an OS-chosen port.
async fn start_flaky_server() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(req.uri().path().to_owned()).or_insert(0);
                        *n += 1;
                        *n
                    };
                    let path = req.uri().path().to_owned();
                    async move { Ok::<_, Infallible>(answer(&path, n)) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The server's answer to the `n`th request for `path`.
fn answer(path: &str, n: u32) -> http::Response<Full<Bytes>> {
    let (status, retry_after, body) = match (path, n) {
        ("/flaky", 1) => (503, Some("1"), "busy, come back in a second"),
        ("/flaky", 2) => (500, None, "oops"),
        ("/flaky", _) => (200, None, "finally, hello"),
        ("/down", _) => (503, None, "down for maintenance"),
        _ => (404, None, "no such thing"),
    };
    let mut resp = http::Response::builder().status(status);
    if let Some(secs) = retry_after {
        resp = resp.header(http::header::RETRY_AFTER, secs);
    }
    resp.body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
