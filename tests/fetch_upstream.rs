//! `fetch` against the crate's shared flaky server (`upstream`), and
//! composed with `paginate`.
#![cfg(feature = "upstream")]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tower_patterns::fetch::{self, FetchError, HttpClient};
use tower_patterns::paginate;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Item {
    id: u64,
    name: String,
}

#[tokio::test]
async fn users_statuses_and_outages() {
    let server = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let client = HttpClient::new();

    let user: User = fetch::fetch_json(&client, server.url("/users/3"))
        .await
        .unwrap();
    assert_eq!(user.id, 3);
    assert!(!user.name.is_empty() && !user.email.is_empty());

    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/users/999999"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::NOT_FOUND));

    server.set_down(true);
    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/users/3"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
    server.set_down(false);
    assert!(
        fetch::fetch_json::<User, _, _>(&client, server.url("/users/3"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn fetch_all_against_a_flaky_server() {
    let server = Upstream::start(UpstreamConfig {
        latency: Duration::from_millis(5),
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    server.set_fail_rate(0.3);
    let client = HttpClient::new();
    let urls: Vec<String> = (1..=50)
        .map(|id| server.url(&format!("/users/{id}")))
        .collect();

    let results: Vec<Result<User, FetchError>> = fetch::fetch_all(&client, &urls, 6).await;

    assert_eq!(results.len(), 50);
    for (i, res) in results.iter().enumerate() {
        match res {
            Ok(user) => assert_eq!(user.id, i as u64 + 1, "slot {i}"),
            Err(e) => assert_eq!(
                e.status(),
                Some(http::StatusCode::SERVICE_UNAVAILABLE),
                "{e}"
            ),
        }
    }
    assert_eq!(server.requests(), 50);
    assert!(server.max_in_flight() <= 6, "{}", server.max_in_flight());
    let failed = results.iter().filter(|r| r.is_err()).count() as u64;
    assert_eq!(failed, server.failures_sent());
}

#[tokio::test]
async fn stream_body_from_upstream() {
    let server = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let client = HttpClient::new();
    let size = 3_000_000u64;
    let mut chunks = fetch::stream_body(
        &client,
        server.url(&format!("/stream?bytes={size}")),
        10_000,
    )
    .await
    .unwrap();
    let mut n = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 10_000);
        n += chunk.len() as u64;
    }
    assert_eq!(n, size);
    assert_eq!(chunks.total(), Some(size));
}

#[tokio::test]
async fn paginates_with_the_fetch_client() {
    let server = Upstream::start(UpstreamConfig {
        items: 95,
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    let items: Vec<Item> = paginate::json_link_paginator::<Item>(
        HttpClient::new(),
        server.url("/items/link?page=1&per_page=20"),
    )
    .items()
    .try_collect()
    .await
    .unwrap();
    assert_eq!(items.len(), 95);
    assert_eq!(items.last().map(|i| i.id), Some(95));
}

/// `CacheLayer` straight over `fetch::Collect<HttpClient>`, with no glue:
/// the responses are `Clone`, the second GET is a hit the upstream never
/// sees, and the cached body and headers are the upstream's.
#[tokio::test]
async fn cache_over_collect_serves_a_hit_with_no_glue() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use tower::{ServiceBuilder, ServiceExt};
    use tower_patterns::cache::CacheLayer;
    use tower_patterns::classify::HttpClassify;
    use tower_patterns::fetch::CollectLayer;

    type Req = http::Request<Full<Bytes>>;
    let server = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let cache = CacheLayer::builder()
        .ttl(Duration::from_secs(60))
        .key_fn(|req: &Req| req.uri().to_string())
        .classify(HttpClassify)
        .build()
        .unwrap();
    let stats = cache.handle();
    let svc = ServiceBuilder::new()
        .layer(cache)
        .layer(CollectLayer::new())
        .service(HttpClient::new());
    let get = || {
        http::Request::get(server.url("/users/2"))
            .body(Full::default())
            .unwrap()
    };

    let first = svc.clone().oneshot(get()).await.unwrap();
    let second = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(
        server.requests(),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(stats.stats().hits, 1);
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["content-type"], "application/json");
    let body = second.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, first.into_body().collect().await.unwrap().to_bytes());
    let user: User = serde_json::from_slice(&body).unwrap();
    assert_eq!(user.id, 2);
}

/// Over an `HttpClient` the collecting service's error is still a
/// `FetchError`: a body over its limit is `BodyTooLarge` naming the URL,
/// and a refused connection is `Transport`.
#[tokio::test]
async fn collect_keeps_fetch_errors_and_its_limit() {
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::{Layer, ServiceExt};
    use tower_patterns::fetch::CollectLayer;

    let server = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let svc = CollectLayer::new()
        .max_body_bytes(1_000)
        .layer(HttpClient::new());
    let url = server.url("/stream?bytes=5000&chunk=100");
    let req = http::Request::get(&url)
        .body(Full::<Bytes>::default())
        .unwrap();
    let err: FetchError = svc.clone().oneshot(req).await.unwrap_err();
    match &err {
        FetchError::BodyTooLarge { limit, url: at, .. } => {
            assert_eq!(*limit, 1_000);
            assert_eq!(at, &url);
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }

    let ok = http::Request::get(server.url("/stream?bytes=1000&chunk=100"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let res = svc.clone().oneshot(ok).await.unwrap();
    assert_eq!(http_body::Body::size_hint(res.body()).exact(), Some(1_000));

    let addr = server.addr();
    drop(server);
    let req = http::Request::get(format!("http://{addr}/users/1"))
        .body(Full::<Bytes>::default())
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
}
