//! The HTTP cache (issue 18): what RFC 9111 costs on a hit, and what a
//! `304` saves.
//!
//! - `http_cache_hit`: a fresh hit through `HttpCacheLayer` (Vary lookup,
//!   freshness from `http-cache-semantics`, `Age`, a new `Response`) beside
//!   `CacheLayer` keyed by the URI (a clone of a stored `Response<Bytes>`),
//!   the same origin response (1 KiB body, six fields), one thread.
//! - `http_cache_revalidate`: over loopback HTTP to a local hyper origin
//!   with a 64 KiB body, a stale stored response revalidated with
//!   `If-None-Match` and answered `304` (body served from the store) beside
//!   the full `200` fetched by `fetch::HttpClient` alone.
//!
//! Run: `cargo bench --all-features --bench http_cache`

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::fetch::HttpClient;
use tower_patterns::http_cache::HttpCacheLayer;

const FIELDS: &[(&str, &str)] = &[
    ("cache-control", "max-age=3600"),
    ("content-type", "application/json"),
    ("etag", "\"abc\""),
    ("last-modified", "Wed, 01 Jan 2020 00:00:00 GMT"),
    ("x-request-id", "0123456789"),
    ("content-length", "1024"),
];

fn origin_response() -> Response<Bytes> {
    let mut b = Response::builder();
    for (k, v) in FIELDS {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(vec![b'x'; 1024])).unwrap()
}

fn request<B: Default>() -> Request<B> {
    Request::get("http://origin.test/users/7")
        .header("accept", "application/json")
        .header("user-agent", "bench")
        .body(B::default())
        .unwrap()
}

/// One `poll_ready` + `call` + poll, as tower drives a service; panics if
/// the answer was not ready at once (not a hit).
fn hit<S, B, R>(svc: &mut S, cx: &mut Context<'_>) -> R
where
    S: Service<Request<B>, Response = R>,
    S::Error: std::fmt::Debug,
    B: Default,
{
    assert!(svc.poll_ready(cx).is_ready());
    let fut = pin!(svc.call(request()));
    match fut.poll(cx) {
        Poll::Ready(r) => r.unwrap(),
        Poll::Pending => panic!("not a hit"),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn bench_hit(c: &mut Criterion) {
    let rt = rt();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("http_cache_hit");

    let origin = service_fn(|_: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(origin_response().map(Full::new))
    });
    let mut ours = HttpCacheLayer::builder().build().unwrap().layer(origin);
    rt.block_on(async {
        let res = ours.ready().await.unwrap().call(request()).await.unwrap();
        res.into_body().collect().await.unwrap();
    });
    g.bench_function("HttpCacheLayer fresh hit", |b| {
        let mut cx = Context::from_waker(Waker::noop());
        b.iter(|| hit(&mut ours, &mut cx));
    });

    let origin = service_fn(|_: Request<()>| async { Ok::<_, Infallible>(origin_response()) });
    let layer = CacheLayer::builder()
        .key_fn(|r: &Request<()>| r.uri().to_string())
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let mut plain = layer.layer(origin);
    rt.block_on(async {
        plain.ready().await.unwrap().call(request()).await.unwrap();
    });
    g.bench_function("CacheLayer keyed by URI, hit", |b| {
        let mut cx = Context::from_waker(Waker::noop());
        b.iter(|| hit(&mut plain, &mut cx));
    });
    g.finish();
}

/// A loopback origin: `200` with a 64 KiB body, `max-age=0` and an ETag;
/// `304` when the request already has that ETag.
async fn origin() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(vec![b'y'; 64 * 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let b = Response::builder()
                            .header("cache-control", "max-age=0")
                            .header("etag", "\"v\"");
                        let res = if req
                            .headers()
                            .get("if-none-match")
                            .is_some_and(|v| v == "\"v\"")
                        {
                            b.status(304).body(Full::new(Bytes::new()))
                        } else {
                            b.body(Full::new(body))
                        };
                        Ok::<_, Infallible>(res.unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/doc")
}

fn bench_revalidate(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = rt.block_on(origin());
    let get = {
        let url = url.clone();
        move || {
            Request::get(url.as_str())
                .body(Full::<Bytes>::default())
                .unwrap()
        }
    };
    let client = HttpClient::new();
    let cached = HttpCacheLayer::builder()
        .build()
        .unwrap()
        .layer(client.clone());
    rt.block_on(async {
        let res = cached.clone().oneshot(get()).await.unwrap();
        assert_eq!(
            res.into_body().collect().await.unwrap().to_bytes().len(),
            64 * 1024
        );
    });

    let mut g = c.benchmark_group("http_cache_revalidate");
    g.bench_function(
        "HttpCacheLayer 304 revalidation (64 KiB from the store)",
        |b| {
            b.to_async(&rt).iter(|| {
                let svc = cached.clone();
                let req = get();
                async move {
                    let res = svc.oneshot(req).await.unwrap();
                    let body = res.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(body.len(), 64 * 1024);
                }
            })
        },
    );
    g.bench_function("HttpClient full 200 (64 KiB over loopback)", |b| {
        b.to_async(&rt).iter(|| {
            let svc = client.clone();
            let req = get();
            async move {
                let res = svc.oneshot(req).await.unwrap();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body.len(), 64 * 1024);
            }
        })
    });
    g.finish();
    let stats = cached.stats();
    assert!(
        stats.not_modified > 0,
        "the cached arm revalidated: {stats:?}"
    );
}

criterion_group!(benches, bench_hit, bench_revalidate);
criterion_main!(benches);
