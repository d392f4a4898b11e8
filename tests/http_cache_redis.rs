//! `http_cache::HttpCacheLayer` over `cache::RedisStore` (a tier shared by
//! replicas), against the Redis of `.ci/redis.sh`: one replica's stored
//! response answers another's miss; an invalidation on one reaches the
//! other's memory. Wall-clock time (Redis keeps it); waits poll a
//! condition under a deadline.
#![cfg(feature = "redis")]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::redis_server::{fresh_key, raw, redis_url, wait_until};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_patterns::cache::RedisStore;
use tower_patterns::http_cache::{HttpCacheHandle, HttpCacheLayer};

const SECS: Duration = Duration::from_secs(1);

fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::builder(url)
        .key_prefix(prefix)
        .timeout(SECS)
        .build()
        .unwrap()
}

async fn send<S>(svc: &S, method: &str, path: &str) -> Bytes
where
    S: tower::Service<
            Request<Full<Bytes>>,
            Response = Response<tower_patterns::http_cache::HttpCacheBody<Full<Bytes>>>,
            Error = BoxError,
        > + Clone,
{
    let req = Request::builder()
        .method(method)
        .uri(format!("http://origin.test{path}"))
        .body(Full::default())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn replicas_share_stored_responses_and_invalidations_through_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_key("http-cache");
    let calls = Arc::new(AtomicUsize::new(0));
    let origin = {
        let calls = calls.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let cc = if req.method() == "GET" {
                    "max-age=60"
                } else {
                    "no-store"
                };
                Ok::<_, BoxError>(
                    Response::builder()
                        .header("cache-control", cc)
                        .header("etag", "\"e1\"")
                        .body(Full::new(Bytes::from(format!("#{n}"))))?,
                )
            }
        })
    };
    let replica = || -> (HttpCacheHandle, _) {
        let layer = HttpCacheLayer::builder()
            .build_with_remote(store(&url, &prefix))
            .unwrap();
        (layer.handle(), layer.layer(origin.clone()))
    };
    let (a_handle, a) = replica();
    let (b_handle, b) = replica();

    assert_eq!(send(&a, "GET", "/x").await, "#1");
    // The write to Redis runs in the background.
    let redis_key = store(&url, &prefix).redis_key("//origin.test/x");
    let mut conn = raw(&url).await;
    for _ in 0..300 {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&redis_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // B has nothing in memory: Redis answers, the origin is not asked.
    assert_eq!(send(&b, "GET", "/x").await, "#1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(b_handle.stats().remote_hits, 1);
    let age: String = {
        let req = Request::get("http://origin.test/x")
            .body(Full::default())
            .unwrap();
        let res = b.clone().oneshot(req).await.unwrap();
        res.headers()["age"].to_str().unwrap().to_owned()
    };
    assert!(
        age.parse::<u64>().unwrap() < 60,
        "age goes on from A's arrival: {age}"
    );

    // A POST through B invalidates the URI in Redis and in A's memory.
    send(&b, "POST", "/x").await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    wait_until("A's memory drops /x", 5 * SECS, || {
        a_handle.stats().entries == 0
    })
    .await;
    assert_eq!(send(&a, "GET", "/x").await, "#3");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
