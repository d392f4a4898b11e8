//! The flaky test server answers as its docs say.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn get(client: &HttpClient, url: &str) -> (u16, http::HeaderMap, Bytes) {
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

#[tokio::test]
async fn endpoints_answer_as_documented() {
    let server = Upstream::start(UpstreamConfig {
        items: 250,
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    let c = client();

    let (status, _, body) = get(&c, &server.url("/users/7")).await;
    assert_eq!(status, 200);
    let user: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(user["id"], 7);
    assert_eq!(get(&c, &server.url("/users/251")).await.0, 404);

    let (_, _, body) = get(&c, &server.url("/items?page=3&per_page=100")).await;
    let page: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(page.len(), 50);
    assert_eq!(page[0]["id"], 201);

    let (_, _, body) = get(&c, &server.url("/items/cursor?cursor=c240&limit=20")).await;
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 10);
    assert!(page["next_cursor"].is_null());

    let (_, headers, _) = get(&c, &server.url("/items/link?page=1&per_page=100")).await;
    let link = headers["link"].to_str().unwrap();
    assert!(
        link.contains("</items/link?page=2&per_page=100>; rel=\"next\""),
        "{link}"
    );
    let (_, headers, _) = get(&c, &server.url("/items/link?page=3&per_page=100")).await;
    assert!(!headers["link"].to_str().unwrap().contains("next"));

    let (status, _, body) = get(&c, &server.url("/stream?bytes=300000&chunk=4096")).await;
    assert_eq!((status, body.len()), (200, 300_000));

    let (status, headers, _) = get(&c, &server.url("/status/429")).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(get(&c, &server.url("/status/418")).await.0, 418);
    assert_eq!(get(&c, &server.url("/nowhere")).await.0, 404);

    server.set_down(true);
    let (status, headers, _) = get(&c, &server.url("/users/1")).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(get(&c, &server.url("/health")).await.0, 200);
    server.set_down(false);
    server.set_fail_rate(1.0);
    assert_eq!(get(&c, &server.url("/users/1")).await.0, 503);
    assert_eq!(server.failures_sent(), 2);
    assert_eq!(server.requests(), 13);
    server.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn outage_schedule_goes_down_and_comes_back() {
    let server = Upstream::start(UpstreamConfig {
        outage: Some((Duration::from_secs(10), Duration::from_secs(5))),
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    assert!(!server.is_down());
    tokio::time::sleep(Duration::from_millis(10_001)).await;
    assert!(server.is_down());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!server.is_down());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(server.is_down());
}

#[tokio::test]
async fn bad_fail_rate_is_refused() {
    let err = Upstream::start(UpstreamConfig {
        fail_rate: 1.5,
        ..UpstreamConfig::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("fail_rate"), "{err}");
}

#[tokio::test]
async fn set_slow_makes_a_share_of_requests_wait() {
    let server = Upstream::start(UpstreamConfig::default()).await.unwrap();
    let c = client();
    get(&c, &server.url("/users/1")).await;
    assert_eq!(server.slow_sent(), 0, "off by default");
    server.set_slow(1.0, Duration::from_millis(1));
    for _ in 0..3 {
        assert_eq!(get(&c, &server.url("/users/1")).await.0, 200);
    }
    get(&c, &server.url("/health")).await;
    assert_eq!(
        server.slow_sent(),
        3,
        "every request but /health, at rate 1"
    );
    server.set_slow(f64::NAN, Duration::from_millis(1));
    get(&c, &server.url("/users/1")).await;
    assert_eq!(server.slow_sent(), 3, "NaN turns it off");
}
