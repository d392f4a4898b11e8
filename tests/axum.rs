//! axum routes behind our layers answer overload and open breakers with
//! 503 + `Retry-After`, and never with a 500 by accident.
#![cfg(feature = "axum")]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{mpsc, Semaphore};
use tower::{ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
use tower_patterns::classify::HttpClassify;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::respond;

/// 200 concurrent requests over real HTTP against a route limited to 20
/// in flight: 20 answers 200, 180 answers 503 with `Retry-After`, none
/// anything else; the overload does not trip the breaker behind the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_get_only_200_or_503() {
    const LIMIT: usize = 20;
    const REQUESTS: usize = 200;

    // Admitted requests wait here until every rejection is in.
    let gate = Arc::new(Semaphore::new(0));
    let breaker = CircuitBreakerLayer::consecutive(5, Duration::from_secs(30));
    let breaker_state = breaker.handle();
    let limit = ConcurrencyLimitLayer::new(LIMIT).reject_when_full();
    let limit_stats = limit.clone();

    let app = Router::new()
        .route(
            "/work",
            get({
                let gate = gate.clone();
                move || async move {
                    let _pass = gate.acquire().await.expect("gate open");
                    "done"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                // The limit sits outside the breaker: rejections are not
                // failures of the backend and must not open it.
                .layer(limit)
                .layer(breaker),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    for _ in 0..REQUESTS {
        let client = client.clone();
        let done_tx = done_tx.clone();
        let uri: hyper::Uri = format!("http://{addr}/work").parse().unwrap();
        tokio::spawn(async move {
            let res = client.get(uri).await.expect("request");
            let status = res.status();
            let retry_after = res.headers().get("retry-after").cloned();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            done_tx.send((status, retry_after, body)).unwrap();
        });
    }
    drop(done_tx);

    let mut answers = Vec::with_capacity(REQUESTS);
    // The rejections come back while the admitted requests hold the gate.
    let bound = Duration::from_secs(60);
    while answers.len() < REQUESTS - LIMIT {
        let a = tokio::time::timeout(bound, done_rx.recv())
            .await
            .expect("rejections should arrive at once")
            .expect("all senders alive");
        assert_eq!(
            a.0,
            StatusCode::SERVICE_UNAVAILABLE,
            "only rejections before the gate opens"
        );
        answers.push(a);
    }
    assert_eq!(limit_stats.stats().in_flight, LIMIT);
    gate.add_permits(REQUESTS);
    while let Some(a) = tokio::time::timeout(bound, done_rx.recv())
        .await
        .expect("admitted finish")
    {
        answers.push(a);
    }
    assert_eq!(answers.len(), REQUESTS);

    let ok = answers.iter().filter(|a| a.0 == StatusCode::OK).count();
    let unavailable = answers
        .iter()
        .filter(|a| a.0 == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((ok, unavailable), (LIMIT, REQUESTS - LIMIT));
    for (status, retry_after, body) in &answers {
        if *status == StatusCode::OK {
            assert_eq!(body.as_ref(), b"done");
            assert!(retry_after.is_none());
        } else {
            assert_eq!(retry_after.as_ref().expect("503 carries Retry-After"), "1");
            assert!(std::str::from_utf8(body).unwrap().contains("at capacity"));
        }
    }
    assert_eq!(breaker_state.state(), State::Closed);
    assert_eq!(breaker_state.stats().failures, 0);
    assert_eq!(limit_stats.stats().rejected, (REQUESTS - LIMIT) as u64);
    server.abort();
}

/// A backend that starts failing opens the breaker; the open breaker
/// answers 503 with `Retry-After` (the time to the next probe) without
/// calling the handler, and closes again once a probe succeeds.
#[tokio::test(start_paused = true)]
async fn open_breaker_is_503_with_retry_after_then_recovers() {
    let failing = Arc::new(AtomicBool::new(true));
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(10))
        .classify(HttpClassify)
        .build()
        .unwrap();
    let state = breaker.handle();

    let app = Router::new()
        .route(
            "/users/{id}",
            get({
                let failing = failing.clone();
                let calls = handler_calls.clone();
                move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    if failing.load(Ordering::SeqCst) {
                        (StatusCode::BAD_GATEWAY, "database down")
                    } else {
                        (StatusCode::OK, "alice")
                    }
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                .layer(breaker),
        );
    let get = |app: &Router| {
        app.clone()
            .oneshot(Request::get("/users/1").body(Body::empty()).unwrap())
    };

    for _ in 0..3 {
        assert_eq!(get(&app).await.unwrap().status(), StatusCode::BAD_GATEWAY);
    }
    assert_eq!(state.state(), State::Open);

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let res = get(&app).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    // 7.5 s left until the probe, rounded up.
    assert_eq!(res.headers()["retry-after"], "8");
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(handler_calls.load(Ordering::SeqCst), 3, "failed fast");

    failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let res = get(&app).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("retry-after").is_none());
    assert_eq!(state.state(), State::Closed);
}

/// An error nobody maps is a 500 with a generic body, and an error
/// response built by hand is usable as a handler's answer.
#[tokio::test]
async fn unknown_errors_are_a_generic_500() {
    let app = Router::new()
        .route("/", get(|| async { "unreachable" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                .layer(tower::layer::layer_fn(|_inner| {
                    tower::service_fn(|_req: Request<Body>| async {
                        Err::<axum::response::Response, tower::BoxError>(
                            "connect to 10.1.2.3:5432 failed".into(),
                        )
                    })
                })),
        );
    let res = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"internal server error");

    let overloaded = Router::new().route(
        "/",
        get(|| async { respond::ErrorResponse::from_kind(respond::ErrorKind::Overloaded) }),
    );
    let res = overloaded
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
}

/// The stack of `examples/axum_server.rs`: cache in front of limit and
/// breaker. While the breaker is open, cached paths are still served and
/// the others get 503 + `Retry-After`; failures are not cached.
#[tokio::test(start_paused = true)]
async fn cache_in_front_serves_hits_while_breaker_is_open() {
    use axum::http::Response;
    use tower_patterns::cache::CacheLayer;

    let failing = Arc::new(AtomicBool::new(false));
    let backend_calls = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(20))
        .classify(HttpClassify)
        .build()
        .unwrap();
    let state = breaker.handle();
    let cache = CacheLayer::builder()
        .ttl(Duration::from_secs(300))
        .max_entries(100)
        .key_fn(|req: &Request<Body>| req.uri().path().to_owned())
        .classify(HttpClassify)
        .build()
        .unwrap();
    let users = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(respond::handle_error))
        .map_response(|res: Response<Bytes>| res.map(Body::from))
        .layer(cache)
        .layer(ConcurrencyLimitLayer::new(8).reject_when_full())
        .layer(breaker)
        .service_fn({
            let failing = failing.clone();
            let calls = backend_calls.clone();
            move |req: Request<Body>| {
                calls.fetch_add(1, Ordering::SeqCst);
                let fail = failing.load(Ordering::SeqCst);
                let path = req.uri().path().to_owned();
                async move {
                    let status = if fail { 502 } else { 200 };
                    Ok::<_, tower::BoxError>(
                        Response::builder()
                            .status(status)
                            .body(Bytes::from(path))
                            .unwrap(),
                    )
                }
            }
        });
    let app = Router::new().route_service("/users/{id}", users);
    let get = |path: &'static str| {
        app.clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
    };

    assert_eq!(get("/users/1").await.unwrap().status(), StatusCode::OK);
    failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(
            get("/users/2").await.unwrap().status(),
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(state.state(), State::Open);
    assert_eq!(
        backend_calls.load(Ordering::SeqCst),
        3,
        "502s are not cached"
    );

    let res = get("/users/3").await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "20");

    let res = get("/users/1").await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "cached answer despite the open breaker"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body.as_ref(), b"/users/1");
    assert_eq!(backend_calls.load(Ordering::SeqCst), 3);
}

/// A proxy route fetching from a real upstream with `fetch::fetch_json`
/// and answering errors with `respond`: the upstream's 404 reaches the
/// client as a 404 with the upstream's JSON body, its 429 as a 429 with
/// its `Retry-After`, its 408 as a 504, and its 500 (a failure of the
/// upstream, not of the request) as a 502 that shows nothing of it.
#[tokio::test]
async fn upstream_client_errors_reach_the_client_through_respond() {
    use axum::extract::Path;
    use tower_patterns::fetch::{self, HttpClient};
    use tower_patterns::upstream::{Upstream, UpstreamConfig};

    let upstream = Upstream::start(UpstreamConfig {
        retry_after_secs: 7,
        ..UpstreamConfig::default()
    })
    .await
    .unwrap();
    let base = upstream.url("");
    let client = HttpClient::new();
    let app = Router::new().route(
        "/proxy/{*path}",
        get(move |Path(path): Path<String>| {
            let (client, url) = (client.clone(), format!("{base}/{path}"));
            async move {
                let value: serde_json::Value = fetch::fetch_json(&client, url)
                    .await
                    .map_err(|e| respond::error_response_for(&e))?;
                Ok::<_, respond::ErrorResponse>(axum::Json(value))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |path: &str| {
        let uri: hyper::Uri = format!("http://{addr}/proxy{path}").parse().unwrap();
        let http = http.clone();
        async move {
            let res = http.get(uri).await.expect("request");
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };

    let (head, body) = get("/users/1").await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(std::str::from_utf8(&body).unwrap().contains("user-1"));

    let (head, body) = get("/users/999999").await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert_eq!(head.headers["content-type"], "application/json");
    assert_eq!(body.as_ref(), br#"{"error":"no user 999999"}"#);

    let (head, body) = get("/status/429").await;
    assert_eq!(head.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(head.headers["retry-after"], "7");
    assert_eq!(body.as_ref(), b"upstream unavailable, try again later");

    let (head, _) = get("/status/408").await;
    assert_eq!(head.status, StatusCode::GATEWAY_TIMEOUT);

    let (head, body) = get("/status/500").await;
    assert_eq!(head.status, StatusCode::BAD_GATEWAY);
    assert!(head.headers.get("retry-after").is_none());
    assert_eq!(body.as_ref(), b"an upstream service failed");
    server.abort();
}

/// The breaker of `respond`'s axum example (`HttpClassify`): ten 500s
/// from the handler open it, and the next request fails fast with 503.
/// With the default classifier every `Ok(500)` counted as a success and
/// it stayed closed.
#[tokio::test(start_paused = true)]
async fn ten_handler_500s_open_a_breaker_built_as_in_the_docs() {
    let handler_calls = Arc::new(AtomicUsize::new(0));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(10))
        .classify(HttpClassify)
        .build()
        .unwrap();
    let state = breaker.handle();
    let app: Router = Router::new()
        .route(
            "/users/{id}",
            get({
                let calls = handler_calls.clone();
                move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::INTERNAL_SERVER_ERROR, "database down")
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                .layer(ConcurrencyLimitLayer::new(64).reject_when_full())
                .layer(breaker),
        );

    let mut statuses = Vec::new();
    for _ in 0..10 {
        let res = app
            .clone()
            .oneshot(Request::get("/users/1").body(Body::empty()).unwrap())
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    assert_eq!(state.state(), State::Open);
    // Five 500s opened it; the other five failed fast without the handler.
    assert_eq!(statuses, [500, 500, 500, 500, 500, 503, 503, 503, 503, 503]);
    assert_eq!(handler_calls.load(Ordering::SeqCst), 5);
}

/// A keyed server rate limit: the client that floods gets 429 with
/// `Retry-After` and the `RateLimit` headers; another client's calls go
/// through all the while.
#[tokio::test(start_paused = true)]
async fn a_keyed_rate_limit_answers_the_flooding_client_429_and_serves_the_other() {
    use tower_patterns::rate_limit::RateLimitLayer;

    let limit = RateLimitLayer::builder()
        .rate(5, Duration::from_secs(60))
        .reject()
        .key_fn(|req: &Request<Body>| {
            req.headers()
                .get("x-api-key")
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default()
        })
        .build()
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "alice" }))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                .layer(limit.clone()),
        );
    let call = |key: &'static str| {
        app.clone().oneshot(
            Request::get("/users/1")
                .header("x-api-key", key)
                .body(Body::empty())
                .unwrap(),
        )
    };

    let mut flood = Vec::new();
    for i in 0..8 {
        flood.push(call("flooder").await.unwrap());
        if i % 2 == 1 {
            // The other client, within its quota, between the flood's calls.
            assert_eq!(call("polite").await.unwrap().status(), StatusCode::OK);
        }
    }
    let codes: Vec<u16> = flood.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
    let h = flood[5].headers();
    // One call every 12 s at the steady rate.
    assert_eq!(h["retry-after"], "12");
    assert_eq!(h["ratelimit-policy"], "\"default\";q=5;w=60");
    assert_eq!(h["ratelimit"], "\"default\";r=0;t=12");
    let s = limit.stats();
    assert_eq!((s.allowed, s.limited, s.keys), (9, 3, 2));

    tokio::time::advance(Duration::from_secs(12)).await;
    assert_eq!(call("flooder").await.unwrap().status(), StatusCode::OK);
}
