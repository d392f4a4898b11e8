//! `fetch` against a local keep-alive server, beside the same work done by
//! hand with a bare `hyper_util` client (the peer: what users write today).
//!
//! - `get_json`: GET a small JSON document and decode it into a struct.
//! - `stream_1mib`: read a 1 MiB body (ours in 16 KiB chunks via
//!   `stream_body`, the peer by polling raw frames).
//!
//! Run: `cargo bench --all-features --bench fetch`.

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tower::{Layer, ServiceExt};
use tower_patterns::fetch::{self, HttpClient, JsonLayer};

#[derive(Deserialize)]
#[allow(dead_code)] // decoded, then dropped
struct User {
    id: u64,
    name: String,
    email: String,
}

const USER: &str = r#"{"id":42,"name":"user 42","email":"u42@example.com"}"#;
static MIB: [u8; 1 << 20] = [b'b'; 1 << 20];

fn start_server(rt: &tokio::runtime::Runtime) -> String {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let svc =
                    hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                        let body = if req.uri().path() == "/big" {
                            Bytes::from_static(&MIB)
                        } else {
                            Bytes::from_static(USER.as_bytes())
                        };
                        async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
                    });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc),
                );
            }
        });
        format!("http://{addr}")
    })
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = start_server(&rt);
    let user_url = format!("{base}/users/42");
    let big_url = format!("{base}/big");
    let ours = HttpClient::new();
    let json_svc = JsonLayer::<User>::new().layer(ours.clone());
    // Same TCP settings as ours (TCP_NODELAY), so only the code differs.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let peer: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let user_uri: http::Uri = user_url.parse().unwrap();
    let big_uri: http::Uri = big_url.parse().unwrap();

    let mut g = c.benchmark_group("fetch/get_json");
    g.bench_function("tower-patterns fetch_json", |b| {
        b.to_async(&rt).iter(|| async {
            let u: User = fetch::fetch_json(&ours, &user_url).await.unwrap();
            black_box(u)
        })
    });
    g.bench_function("tower-patterns JsonLayer", |b| {
        b.to_async(&rt).iter(|| async {
            let req = http::Request::get(user_uri.clone())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let u: User = json_svc.clone().oneshot(req).await.unwrap();
            black_box(u)
        })
    });
    g.bench_function("hyper-util by hand", |b| {
        b.to_async(&rt).iter(|| async {
            let req = http::Request::get(user_uri.clone())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = peer.request(req).await.unwrap();
            assert!(resp.status().is_success());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let u: User = serde_json::from_slice(&bytes).unwrap();
            black_box(u)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("fetch/stream_1mib");
    g.throughput(criterion::Throughput::Bytes(1 << 20));
    g.bench_function("tower-patterns stream_body", |b| {
        b.to_async(&rt).iter(|| async {
            let mut s = fetch::stream_body(&ours, &big_url, 16 * 1024)
                .await
                .unwrap();
            while let Some(chunk) = s.next().await {
                black_box(chunk.unwrap());
            }
            black_box(s.total())
        })
    });
    g.bench_function("hyper-util by hand", |b| {
        b.to_async(&rt).iter(|| async {
            let req = http::Request::get(big_uri.clone())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let mut body = peer.request(req).await.unwrap().into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    total += data.len();
                    black_box(data);
                }
            }
            black_box(total)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
