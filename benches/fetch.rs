//! `fetch` against a local keep-alive server, beside the same work done by
//! hand with a bare `hyper_util` client (the peer: what users write today).
//!
//! - `get_json`: GET a small JSON document and decode it into a struct.
//! - `stream_1mib`: read a 1 MiB body (ours in 16 KiB chunks via
//!   `stream_body`, the peer by polling raw frames).
//!
//! After criterion's rows, an interleaved section measures the two
//! comparisons BENCHMARKS.md's issue-25 table holds to a target again:
//! 100 rounds of one short sample of each contender, the order rotating,
//! so that all of them see the same phases of the machine (criterion
//! measures one for seconds and then the other; single runs of the stream
//! ratio spread from 0.86 to 1.30). It prints the median of the rounds'
//! ratios and writes each contender's figures under
//! `<target>/interleaved/`, where `scripts/bench.py` collects them as the
//! rows `fetch/interleaved/...`.
//!
//! Run: `cargo bench --all-features --bench fetch`.

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tower::{Layer, ServiceExt};
use tower_patterns::fetch::{self, HttpClient, JsonLayer};

#[path = "support/interleaved.rs"]
mod interleaved;

use interleaved::Figures;

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

/// The server, our client and the peer's, and the URLs: what every
/// measurement shares.
struct Setup {
    rt: tokio::runtime::Runtime,
    ours: HttpClient,
    peer: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    user_url: String,
    user_uri: http::Uri,
    big_url: String,
    big_uri: http::Uri,
}

impl Setup {
    fn new() -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let base = start_server(&rt);
        let user_url = format!("{base}/users/42");
        let big_url = format!("{base}/big");
        // Same TCP settings as ours (TCP_NODELAY), so only the code differs.
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        Setup {
            rt,
            ours: HttpClient::new(),
            peer: Client::builder(TokioExecutor::new()).build(connector),
            user_uri: user_url.parse().unwrap(),
            big_uri: big_url.parse().unwrap(),
            user_url,
            big_url,
        }
    }

    async fn fetch_json(&self) -> User {
        fetch::fetch_json(&self.ours, &self.user_url).await.unwrap()
    }

    async fn json_layer<S>(&self, json_svc: &S) -> User
    where
        S: tower::Service<http::Request<Full<Bytes>>, Response = User> + Clone,
        S::Error: std::fmt::Debug,
    {
        let req = http::Request::get(self.user_uri.clone())
            .body(Full::new(Bytes::new()))
            .unwrap();
        json_svc.clone().oneshot(req).await.unwrap()
    }

    async fn json_by_hand(&self) -> User {
        let req = http::Request::get(self.user_uri.clone())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = self.peer.request(req).await.unwrap();
        assert!(resp.status().is_success());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn stream_ours(&self) -> Option<u64> {
        let mut s = fetch::stream_body(&self.ours, &self.big_url, 16 * 1024)
            .await
            .unwrap();
        while let Some(chunk) = s.next().await {
            black_box(chunk.unwrap());
        }
        s.total()
    }

    async fn stream_by_hand(&self) -> usize {
        let req = http::Request::get(self.big_uri.clone())
            .body(Full::new(Bytes::new()))
            .unwrap();
        let mut body = self.peer.request(req).await.unwrap().into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                total += data.len();
                black_box(data);
            }
        }
        total
    }

    /// Time per iteration of `n` iterations of `f`, run to completion on
    /// the runtime.
    fn sample<F: std::future::Future>(&self, n: u32, f: impl Fn() -> F) -> Duration {
        self.rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                black_box(f().await);
            }
            start.elapsed() / n
        })
    }
}

fn bench(c: &mut Criterion) {
    let s = Setup::new();
    let json_svc = JsonLayer::<User>::new().layer(s.ours.clone());

    let mut g = c.benchmark_group("fetch/get_json");
    g.bench_function("tower-patterns fetch_json", |b| {
        b.to_async(&s.rt)
            .iter(|| async { black_box(s.fetch_json().await) })
    });
    g.bench_function("tower-patterns JsonLayer", |b| {
        b.to_async(&s.rt)
            .iter(|| async { black_box(s.json_layer(&json_svc).await) })
    });
    g.bench_function("hyper-util by hand", |b| {
        b.to_async(&s.rt)
            .iter(|| async { black_box(s.json_by_hand().await) })
    });
    g.finish();

    let mut g = c.benchmark_group("fetch/stream_1mib");
    g.throughput(criterion::Throughput::Bytes(1 << 20));
    g.bench_function("tower-patterns stream_body", |b| {
        b.to_async(&s.rt)
            .iter(|| async { black_box(s.stream_ours().await) })
    });
    g.bench_function("hyper-util by hand", |b| {
        b.to_async(&s.rt)
            .iter(|| async { black_box(s.stream_by_hand().await) })
    });
    g.finish();
}

/// The issue-25 comparisons, interleaved (see the module docs): each round
/// takes one sample of every contender, `fetch_json` / `JsonLayer` / by
/// hand (200 requests each) and then the stream, ours / by hand (50
/// bodies each).
fn interleaved(_: &mut Criterion) {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    const ROUNDS: usize = 100;
    const JSON: u32 = 200;
    const BODIES: u32 = 50;
    let s = Setup::new();
    let json_svc = JsonLayer::<User>::new().layer(s.ours.clone());
    let mut json = interleaved::rounds(
        ROUNDS,
        &mut [
            &mut || s.sample(JSON, || s.fetch_json()),
            &mut || s.sample(JSON, || s.json_layer(&json_svc)),
            &mut || s.sample(JSON, || s.json_by_hand()),
        ],
    );
    let mut stream = interleaved::rounds(
        ROUNDS,
        &mut [&mut || s.sample(BODIES, || s.stream_ours()), &mut || {
            s.sample(BODIES, || s.stream_by_hand())
        }],
    );
    let (by_hand, layer, fetch_json) = (
        json.pop().unwrap(),
        json.pop().unwrap(),
        json.pop().unwrap(),
    );
    let (stream_hand, stream_ours) = (stream.pop().unwrap(), stream.pop().unwrap());
    let (jr, jl, jh) = interleaved::paired_ratio(&fetch_json, &layer);
    let (sr, sl, sh) = interleaved::paired_ratio(&stream_ours, &stream_hand);
    println!(
        "fetch interleaved ({ROUNDS} rounds), median of the rounds' ratios: \
         fetch_json / JsonLayer {jr:.3} (middle half {jl:.3} - {jh:.3}); \
         stream_body / by hand {sr:.3} (middle half {sl:.3} - {sh:.3})"
    );
    // Each sample's figure is already per iteration.
    let write = |samples: Vec<Duration>, id: &str, throughput: (&str, u64)| {
        Figures::of(samples).write_as(&format!("fetch/interleaved/{id}"), throughput, 1)
    };
    let (request, mib) = (("Elements", 1), ("Bytes", 1 << 20));
    write(fetch_json, "get_json/tower-patterns fetch_json", request);
    write(layer, "get_json/tower-patterns JsonLayer", request);
    write(by_hand, "get_json/hyper-util by hand", request);
    write(stream_ours, "stream_1mib/tower-patterns stream_body", mib);
    write(stream_hand, "stream_1mib/hyper-util by hand", mib);
}

criterion_group!(benches, bench, interleaved);
criterion_main!(benches);
