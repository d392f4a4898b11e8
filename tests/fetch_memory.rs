//! Memory stays flat: an endless body is cut at `max_body_bytes`, and a
//! 100 MiB body streams through `stream_body` without being buffered.
//!
//! One test in its own binary, so the process's peak resident memory
//! (`VmHWM`) measures this test alone.
#![cfg(target_os = "linux")]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower_patterns::fetch::{self, FetchError, HttpClient};

/// Peak resident set size of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

static CHUNK: [u8; 64 * 1024] = [b'm'; 64 * 1024];

/// `/endless`: 64 KiB frames forever. `/big`: 100 MiB, no Content-Length.
async fn start() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                let frames: u64 = if req.uri().path() == "/big" {
                    1600
                } else {
                    u64::MAX
                };
                let stream = futures::stream::iter(0..frames)
                    .map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK))));
                let body = BodyExt::boxed(StreamBody::new(stream));
                async move { Ok::<_, Infallible>(http::Response::new(body)) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc),
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn memory_stays_flat_for_endless_and_huge_bodies() {
    const SLACK: u64 = 48 << 20;
    let base = start().await;
    let limit = 4 << 20;
    let client = HttpClient::builder().max_body_bytes(limit).build().unwrap();

    // Warm up (runtime, connection pool, TLS roots) before measuring.
    let _ = fetch::stream_body(&client, format!("{base}/big"), 1024)
        .await
        .unwrap()
        .next()
        .await;
    let before = peak_rss();

    // An endless body: refused at the limit, not buffered forever.
    let res = tokio::time::timeout(
        Duration::from_secs(60),
        fetch::fetch_json::<serde_json::Value, _, _>(&client, format!("{base}/endless")),
    )
    .await
    .expect("reading stops at the limit");
    assert!(
        matches!(res, Err(FetchError::BodyTooLarge { limit: l, .. }) if l == limit),
        "{res:?}"
    );
    let grew = peak_rss().saturating_sub(before);
    assert!(grew < SLACK, "peak memory grew by {grew} bytes");

    // 100 MiB through stream_body: chunks bounded, total right, memory flat.
    let chunk_size = 64 * 1024;
    let mut chunks = fetch::stream_body(&client, format!("{base}/big"), chunk_size)
        .await
        .unwrap();
    let mut total = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= chunk_size);
        total += chunk.len() as u64;
    }
    assert_eq!(total, 100 << 20);
    assert_eq!(chunks.total(), Some(100 << 20));
    let grew = peak_rss().saturating_sub(before);
    assert!(grew < SLACK, "peak memory grew by {grew} bytes");
}
