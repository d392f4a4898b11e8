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
