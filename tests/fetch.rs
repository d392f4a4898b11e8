//! `tower_patterns::fetch` against real servers on 127.0.0.1:0, over http
//! and https.
//!
//! Tests that need only well-behaved endpoints (users, statuses, a large
//! stream, a slow answer) use the crate's `upstream` server. The hand-rolled
//! server below stays for what `upstream` does not do: malformed and
//! wrong-shape JSON, a long status body (the excerpt cut), a body that stalls,
//! drips or never ends, a `Content-Length` body, a route that fails twice then
//! answers, requests that wait for each other (`/work`), the HTTP version
//! seen, and TLS.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_patterns::classify::{Classify, HttpClassify, Outcome};
use tower_patterns::fetch::{self, FetchError, HttpClient, JsonLayer, STATUS_BODY_EXCERPT};
use tower_patterns::upstream::UpstreamConfig;
use tower_patterns::BoxError;

// ===== test server =====

type ServerBody = BoxBody<Bytes, Infallible>;

#[derive(Debug, Deserialize, PartialEq)]
struct User {
    id: u64,
    name: String,
}

/// What the server saw.
#[derive(Default)]
struct State {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// `/work/{i}` requests answered (not counting the held one).
    worked: AtomicUsize,
    worked_changed: Notify,
    /// Set when the held `/work/0` was released by the others finishing.
    head_released: AtomicBool,
    /// How many other `/work/..` requests must finish before `/work/0` answers.
    head_waits_for: AtomicUsize,
    flaky_calls: AtomicUsize,
    endless_sent: AtomicU64,
}

fn full(body: impl Into<Bytes>) -> ServerBody {
    Full::new(body.into()).boxed()
}

fn respond(status: u16, body: impl Into<Bytes>) -> Response<ServerBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(body))
        .unwrap()
}

fn query_u64(req: &Request<Incoming>, key: &str) -> Option<u64> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.parse().ok())?
    })
}

/// A body of `len` bytes sent in 64 KiB frames, optionally with a
/// `Content-Length`.
fn sized_body(len: u64) -> ServerBody {
    const FRAME: usize = 64 * 1024;
    static ZEROS: [u8; FRAME] = [b'z'; FRAME];
    let frames = len.div_ceil(FRAME as u64);
    let stream = futures::stream::iter(0..frames).map(move |i| {
        let n = (len - i * FRAME as u64).min(FRAME as u64) as usize;
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(&ZEROS[..n])))
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn route(state: Arc<State>, req: Request<Incoming>) -> Response<ServerBody> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["users", id] => match id.parse::<u64>() {
            Ok(id) => respond(200, format!(r#"{{"id":{id},"name":"user {id}"}}"#)),
            Err(_) => respond(400, "bad id"),
        },
        ["version"] => respond(200, format!("\"{:?}\"", req.version())),
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(500);
            // Long enough that the excerpt is cut.
            let body = format!("status {code}: {}", "x".repeat(10_000));
            respond(code, body)
        }
        ["missing"] => respond(404, r#"{"error":"no such user"}"#),
        ["bad-json"] => respond(200, r#"{"id": 1, "name": "#),
        ["wrong-shape"] => respond(200, "{\"id\": \"one\",\n \"name\": \"x\"}"),
        ["slow"] => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        ["stall-body"] => {
            let first = futures::stream::iter([Ok::<_, Infallible>(Frame::data(
                Bytes::from_static(b"{\"id\": 1,"),
            ))]);
            let body = StreamBody::new(first.chain(futures::stream::pending()));
            Response::new(BodyExt::boxed(body))
        }
        ["drip"] => {
            // `n` 1 KiB frames, one every `ms` milliseconds.
            let n = query_u64(&req, "n").unwrap_or(10);
            let ms = query_u64(&req, "ms").unwrap_or(100);
            let stream = futures::stream::iter(0..n).then(move |_| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&[b'd'; 1024])))
            });
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        ["endless"] => {
            static CHUNK: [u8; 64 * 1024] = [b'e'; 64 * 1024];
            let state = state.clone();
            let stream = futures::stream::repeat_with(move || {
                state
                    .endless_sent
                    .fetch_add(CHUNK.len() as u64, Ordering::Relaxed);
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(&CHUNK)))
            });
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
        ["bytes"] => {
            let len = query_u64(&req, "n").unwrap_or(0);
            let mut resp = Response::new(sized_body(len));
            if query_u64(&req, "cl") == Some(1) {
                resp.headers_mut()
                    .insert("content-length", len.to_string().parse().unwrap());
            }
            resp
        }
        ["flaky"] => {
            // 503 twice, then the user.
            if state.flaky_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                let mut resp = respond(503, "busy");
                resp.headers_mut()
                    .insert("retry-after", "0".parse().unwrap());
                resp
            } else {
                respond(200, r#"{"id":7,"name":"user 7"}"#)
            }
        }
        ["work", i] => {
            let i: u64 = i.parse().unwrap_or(0);
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.max_in_flight.fetch_max(now, Ordering::SeqCst);
            if i == 0 {
                // The slow head: answers only once every other request has
                // been served (or gives up after 10 s, failing the test).
                let need = state.head_waits_for.load(Ordering::SeqCst);
                let wait = async {
                    loop {
                        let changed = state.worked_changed.notified();
                        if state.worked.load(Ordering::SeqCst) >= need {
                            return;
                        }
                        changed.await;
                    }
                };
                let released = tokio::time::timeout(Duration::from_secs(10), wait)
                    .await
                    .is_ok();
                state.head_released.store(released, Ordering::SeqCst);
            } else {
                // Server latency, so that requests overlap.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
            let resp = match i % 10 {
                3 => respond(500, format!("boom {i}")),
                7 => respond(200, "{ not json"),
                _ => respond(200, format!(r#"{{"id":{i},"name":"user {i}"}}"#)),
            };
            if i != 0 {
                state.worked.fetch_add(1, Ordering::SeqCst);
                state.worked_changed.notify_waiters();
            }
            resp
        }
        _ => respond(404, "no route"),
    }
}

struct Server {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// Serves `route` over plain HTTP (HTTP/1.1 and h2c) on 127.0.0.1:0.
async fn start() -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(State::default());
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve(TokioIo::new(tcp), st.clone()));
        }
    });
    Server { addr, state }
}

async fn serve<I>(io: I, state: Arc<State>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(state, req).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(io, svc)
        .await;
}

fn client() -> HttpClient {
    HttpClient::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

// ===== JSON =====

#[tokio::test]
async fn json_success() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let client = client();
    let user: User = fetch::fetch_json(&client, server.url("/users/1"))
        .await
        .unwrap();
    assert_eq!(
        user,
        User {
            id: 1,
            name: "user-1".into()
        }
    );
    // Any JSON at all, as `serde_json::Value`.
    let value: serde_json::Value = fetch::fetch_json(&client, server.url("/users/2"))
        .await
        .unwrap();
    assert_eq!(value["name"], "user-2");
}

#[tokio::test]
async fn not_found_and_server_error_give_status_with_body_excerpt() {
    let server = start().await;
    let client = client();

    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/missing"))
        .await
        .unwrap_err();
    match &err {
        FetchError::Status {
            status, body, url, ..
        } => {
            assert_eq!(*status, StatusCode::NOT_FOUND);
            assert_eq!(body, r#"{"error":"no such user"}"#);
            assert_eq!(url, &server.url("/missing"));
        }
        other => panic!("expected Status, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains(&server.url("/missing")), "{shown}");
    assert!(shown.contains("404 Not Found"), "{shown}");
    assert!(shown.contains("no such user"), "{shown}");

    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/status/500"))
        .await
        .unwrap_err();
    match &err {
        FetchError::Status { status, body, .. } => {
            assert_eq!(*status, StatusCode::INTERNAL_SERVER_ERROR);
            // The server sent 10 KB; only the excerpt is kept.
            assert_eq!(body.len(), STATUS_BODY_EXCERPT);
            assert!(body.starts_with(b"status 500: xxx"));
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
}

#[tokio::test]
async fn malformed_json_gives_decode_with_position() {
    let server = start().await;
    let client = client();
    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/bad-json"))
        .await
        .unwrap_err();
    match &err {
        FetchError::Decode { line, column, .. } => {
            assert_eq!(*line, 1);
            assert!(*column > 0);
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    assert!(err.to_string().contains("/bad-json"), "{err}");

    // Valid JSON of the wrong shape is a Decode error too, with its position.
    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/wrong-shape"))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Decode { line: 1, .. }), "{err:?}");
}

#[tokio::test]
async fn bad_urls_are_errors_not_panics() {
    let client = client();
    for bad in [
        "",
        "not a url",
        "/users/1",
        "ftp://127.0.0.1/x",
        "http://",
        "http://[::1",
        "http://exa mple.com/",
    ] {
        let err = fetch::fetch_json::<User, _, _>(&client, bad)
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::InvalidUri { .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.url(), bad);
        let err = fetch::stream_body(&client, bad, 16).await.unwrap_err();
        assert!(matches!(err, FetchError::InvalidUri { .. }), "{bad:?}");
    }
}

#[tokio::test]
async fn connection_refused_is_transport() {
    // Bind then drop: nothing listens on that port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{addr}/users/1");
    let client = client();
    let err = fetch::fetch_json::<User, _, _>(&client, &url)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(std::error::Error::source(&err).is_some());
    assert_eq!(client.stats().transport_errors, 1);
}

// ===== deadlines =====

#[tokio::test(start_paused = true)]
async fn slow_server_gives_timeout() {
    let server = start().await;
    let client = HttpClient::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    // The server never answers; only the client's deadline ends the wait
    // (the outer hour is a guard against hanging).
    let res = tokio::time::timeout(
        Duration::from_secs(3600),
        fetch::fetch_json::<User, _, _>(&client, server.url("/slow")),
    )
    .await
    .expect("the client's own timeout fires");
    match res {
        Err(FetchError::Timeout { after, url }) => {
            assert_eq!(after, Duration::from_secs(2));
            assert!(url.ends_with("/slow"));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }

    // The service itself has the same deadline.
    let req = Request::get(server.url("/slow"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(3600), client.clone().oneshot(req))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let stats = client.stats();
    assert_eq!(stats.requests, 2);
    assert_eq!(stats.timeouts, 2);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.responses, 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_request_leaks_nothing() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let client = client();
    // Ten minutes: the request is dropped long before.
    let req = Request::get(server.url("/slow?ms=600000"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut fut = Box::pin(client.request(req));
    // Let it connect and send; the server never answers.
    for _ in 0..20 {
        assert!(futures::poll!(fut.as_mut()).is_pending());
        tokio::task::yield_now().await;
    }
    assert_eq!(client.stats().in_flight, 1);
    drop(fut);
    assert_eq!(client.stats().in_flight, 0);
    // The client still works.
    let user: User = fetch::fetch_json(&client, server.url("/users/4"))
        .await
        .unwrap();
    assert_eq!(user.id, 4);
}

#[test]
fn public_types_are_send_sync_and_unpin() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send_unpin<T: Send + Unpin + 'static>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<HttpClient>();
    send_sync::<FetchError>();
    send_sync::<fetch::Body>();
    send_unpin::<fetch::Body>();
    send_unpin::<fetch::ResponseFuture>();
    send_unpin::<fetch::BodyStream>();
    let client = HttpClient::new();
    // The helpers' futures can be spawned.
    send(&fetch::fetch_json::<User, _, _>(
        &client,
        "http://127.0.0.1:1/",
    ));
    send(&fetch::fetch_all::<User, _, _, _>(
        &client,
        ["http://127.0.0.1:1/"],
        2,
    ));
    send(&fetch::stream_body(&client, "http://127.0.0.1:1/", 8));
}

#[tokio::test]
async fn stalled_body_times_out() {
    // Headers and the start of the body arrive at once; then nothing. The
    // wait is the client's 300 ms deadline, which covers the body too.
    let server = start().await;
    let client = HttpClient::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = fetch::fetch_json::<User, _, _>(&client, server.url("/stall-body"))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    let mut chunks = fetch::stream_body(&client, server.url("/stall-body"), 4)
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut last_err = None;
    while let Some(item) = chunks.next().await {
        match item {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => last_err = Some(e),
        }
    }
    assert_eq!(got, b"{\"id\": 1,");
    assert!(last_err.expect("a timeout").is_timeout());
    assert_eq!(chunks.total(), None, "no total after an error");
}

#[tokio::test(start_paused = true)]
async fn stream_timeout_is_an_idle_timeout() {
    // 10 frames 100 ms apart: a second in all, three times the timeout,
    // but never more than 100 ms without data.
    let server = start().await;
    let client = HttpClient::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut chunks = fetch::stream_body(&client, server.url("/drip?n=10&ms=100"), 4096)
        .await
        .unwrap();
    let mut n = 0;
    while let Some(chunk) = chunks.next().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, 10 * 1024);
    assert_eq!(chunks.total(), Some(10 * 1024));

    // The same body through fetch_json hits the total deadline.
    let err =
        fetch::fetch_json::<serde_json::Value, _, _>(&client, server.url("/drip?n=10&ms=100"))
            .await
            .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

// ===== body limits =====

#[tokio::test]
async fn endless_body_is_cut_at_max_body_bytes() {
    let server = start().await;
    let limit = 1 << 20;
    let client = HttpClient::builder().max_body_bytes(limit).build().unwrap();
    let err = fetch::fetch_json::<serde_json::Value, _, _>(&client, server.url("/endless"))
        .await
        .unwrap_err();
    match &err {
        FetchError::BodyTooLarge { limit: l, url } => {
            assert_eq!(*l, limit);
            assert!(url.ends_with("/endless"));
        }
        other => panic!("expected BodyTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("1048576 bytes"), "{err}");
    // The server kept sending, but the client stopped reading near the limit
    // (plus what sits in socket buffers), not "until the end".
    let sent = server.state.endless_sent.load(Ordering::Relaxed);
    assert!(sent >= limit, "sent {sent}");

    // The service's own body enforces the limit for any consumer.
    let req = Request::get(server.url("/endless"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.body().limit(), limit);
    let err = resp.into_body().collect().await.unwrap_err();
    assert!(
        matches!(err, FetchError::BodyTooLarge { limit: l, .. } if l == limit),
        "{err:?}"
    );
    assert_eq!(client.stats().bodies_too_large, 2);
}

#[tokio::test]
async fn content_length_over_the_limit_is_refused_up_front() {
    let server = start().await;
    let client = HttpClient::builder().max_body_bytes(1000).build().unwrap();
    let req = Request::get(server.url("/bytes?n=5000&cl=1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.clone().oneshot(req).await.unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap();
    assert!(
        matches!(first, Err(FetchError::BodyTooLarge { limit: 1000, .. })),
        "{first:?}"
    );
    assert_eq!(body.bytes_read(), 0, "nothing was read");
    assert!(
        body.frame().await.is_none(),
        "the body ends after its error"
    );

    // Exactly at the limit is fine.
    let req = Request::get(server.url("/bytes?n=1000&cl=1"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.clone().oneshot(req).await.unwrap();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(bytes.len(), 1000);
}

// ===== fetch_all =====

#[tokio::test]
async fn fetch_all_keeps_order_bounds_concurrency_and_isolates_failures() {
    let server = start().await;
    let client = client();
    let bound = 8;
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let urls: Vec<String> = (0..50)
        .map(|i| match i {
            5 => "not a url".to_string(),
            9 => format!("http://{refused}/work/9"),
            _ => server.url(&format!("/work/{i}")),
        })
        .collect();
    // `/work/0` answers only after the 47 other server requests are done:
    // a slow head must not hold the rest back.
    server.state.head_waits_for.store(47, Ordering::SeqCst);

    let results: Vec<Result<User, FetchError>> = fetch::fetch_all(&client, &urls, bound).await;

    assert_eq!(results.len(), 50);
    assert!(
        server.state.head_released.load(Ordering::SeqCst),
        "the slow first URL held the others back"
    );
    for (i, res) in results.iter().enumerate() {
        match (i, res) {
            (5, Err(FetchError::InvalidUri { .. })) => {}
            (9, Err(FetchError::Transport { .. })) => {}
            (i, Err(FetchError::Status { status, body, .. })) if i % 10 == 3 => {
                assert_eq!(*status, 500);
                assert_eq!(body, &format!("boom {i}"));
            }
            (i, Err(FetchError::Decode { .. })) if i % 10 == 7 => {}
            (i, Ok(user)) if ![5, 9].contains(&i) && i % 10 != 3 && i % 10 != 7 => {
                assert_eq!(user.id, i as u64, "result {i} is in its slot");
            }
            (i, other) => panic!("unexpected result {i}: {other:?}"),
        }
    }
    let max = server.state.max_in_flight.load(Ordering::SeqCst);
    assert!(max <= bound, "{max} requests in flight, bound {bound}");
    assert!(max >= 2, "requests ran concurrently (max {max})");
    assert_eq!(server.state.in_flight.load(Ordering::SeqCst), 0);
}

// ===== streaming =====

#[tokio::test]
async fn stream_body_100_mib_in_bounded_chunks() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let client = client();
    let size: u64 = 100 << 20;
    let chunk_size = 16 * 1024 + 3; // not a divisor of the server's 64 KiB frames
    let mut chunks = fetch::stream_body(
        &client,
        server.url(&format!("/stream?bytes={size}")),
        chunk_size,
    )
    .await
    .unwrap();
    assert_eq!(chunks.chunk_size(), chunk_size);
    assert_eq!(chunks.status(), StatusCode::OK);
    let mut count = 0u64;
    let mut seen = 0u64;
    let mut largest = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.unwrap();
        assert!(!chunk.is_empty());
        largest = largest.max(chunk.len());
        count += 1;
        seen += chunk.len() as u64;
        assert_eq!(chunks.bytes_read(), seen);
    }
    assert!(largest <= chunk_size, "chunk of {largest} bytes");
    assert_eq!(largest, chunk_size, "frames are split to the chunk size");
    assert_eq!(chunks.total(), Some(size));
    assert!(count >= size / chunk_size as u64);
    // Exceeds the client's default 10 MiB max_body_bytes: streams are exempt.
    assert!(size > client.max_body_bytes());
}

#[tokio::test]
async fn stream_body_with_content_length_and_tiny_chunks() {
    let server = start().await;
    let client = client();
    let mut chunks = fetch::stream_body(&client, server.url("/bytes?n=1000&cl=1"), 0)
        .await
        .unwrap();
    assert_eq!(chunks.content_length(), Some(1000));
    assert_eq!(chunks.chunk_size(), 1, "0 is treated as 1");
    let mut n = 0;
    while let Some(chunk) = chunks.next().await {
        assert_eq!(chunk.unwrap().len(), 1);
        n += 1;
    }
    assert_eq!(n, 1000);
    assert_eq!(chunks.total(), Some(1000));
}

#[tokio::test]
async fn stream_body_raises_for_status() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let err = fetch::stream_body(&client(), server.url("/status/503"), 1024)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
}

// ===== tower composition =====

#[tokio::test]
async fn service_answers_every_status_for_the_classifier() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let mut client = client();
    let req = Request::get(server.url("/status/503"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.ready().await.unwrap().call(req).await;
    assert_eq!(HttpClassify.classify(&res), Outcome::Failure);
    let req = Request::get(server.url("/users/999999"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.ready().await.unwrap().call(req).await;
    assert_eq!(HttpClassify.classify(&res), Outcome::Ignored);
    let resp = res.unwrap();
    assert_eq!(resp.status(), 404);
    // A user agent was added.
    let req = Request::get(server.url("/users/3"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = client.ready().await.unwrap().call(req).await;
    assert_eq!(HttpClassify.classify(&res), Outcome::Success);
}

/// Retries what `HttpClassify` calls a failure, up to `left` more times.
#[derive(Clone)]
struct RetryFailures {
    left: usize,
}

impl<B> tower::retry::Policy<Request<Full<Bytes>>, Response<B>, FetchError> for RetryFailures {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Request<Full<Bytes>>,
        result: &mut Result<Response<B>, FetchError>,
    ) -> Option<Self::Future> {
        if self.left > 0 && HttpClassify.classify(result) == Outcome::Failure {
            self.left -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        Some(req.clone())
    }
}

#[tokio::test]
async fn composes_with_tower_layers_and_json_layer() {
    let server = start().await;
    let client = client();
    let svc = ServiceBuilder::new()
        .layer(JsonLayer::<User>::new())
        .concurrency_limit(4)
        .timeout(Duration::from_secs(20))
        .layer(tower::retry::RetryLayer::new(RetryFailures { left: 3 }))
        .service(client.clone());
    let req = Request::get(server.url("/flaky"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let user = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(user.id, 7);
    assert_eq!(server.state.flaky_calls.load(Ordering::SeqCst), 3);

    // Errors come out as BoxError holding a FetchError.
    let req = Request::get(server.url("/bad-json"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err: BoxError = svc.clone().oneshot(req).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<FetchError>(),
            Some(FetchError::Decode { .. })
        ),
        "{err:?}"
    );
    let req = Request::get(server.url("/status/404"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = svc.clone().oneshot(req).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<FetchError>()
            .and_then(FetchError::status),
        Some(StatusCode::NOT_FOUND)
    );
}

#[tokio::test]
async fn json_layer_enforces_its_own_limit() {
    let server = start().await;
    let svc = JsonLayer::<serde_json::Value>::builder()
        .max_body_bytes(100)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(svc).service(client());
    let req = Request::get(server.url("/bytes?n=5000"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<FetchError>(),
            Some(FetchError::BodyTooLarge { limit: 100, .. })
        ),
        "{err:?}"
    );
    assert!(JsonLayer::<User>::builder()
        .max_body_bytes(0)
        .build()
        .is_err());
}

#[tokio::test]
async fn clones_share_the_connection_pool() {
    // One connection, reused by clones: the server sees one accept.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let acc = accepts.clone();
    let state = Arc::new(State::default());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            acc.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(TokioIo::new(tcp), state.clone()));
        }
    });
    let client = client();
    for i in 0..5 {
        let c = client.clone();
        let _: User = fetch::fetch_json(&c, format!("http://{addr}/users/{i}"))
            .await
            .unwrap();
    }
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    let stats = client.stats();
    assert_eq!(
        (stats.requests, stats.responses),
        (5, 5),
        "clones share stats"
    );
}

// ===== https =====

#[cfg(feature = "tls")]
mod https {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::TlsAcceptor;

    /// A TLS server (h2 and http/1.1 by ALPN) with a fresh self-signed
    /// certificate for 127.0.0.1 and localhost; returns its address and
    /// the certificate to trust.
    async fn start_tls() -> (SocketAddr, CertificateDer<'static>) {
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let cert_der = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let state = state.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(TokioIo::new(tls), state).await;
                    }
                });
            }
        });
        (addr, cert_der)
    }

    fn trusting(cert: CertificateDer<'static>) -> HttpClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        HttpClient::builder()
            .timeout(Duration::from_secs(20))
            .root_certificates(roots)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn https_json_status_and_decode() {
        let (addr, cert) = start_tls().await;
        let client = trusting(cert);
        let user: User = fetch::fetch_json(&client, format!("https://{addr}/users/5"))
            .await
            .unwrap();
        assert_eq!(user.id, 5);
        // "localhost" is in the certificate too.
        let url = format!("https://localhost:{}/users/6", addr.port());
        let user: User = fetch::fetch_json(&client, url).await.unwrap();
        assert_eq!(user.id, 6);

        // ALPN picked HTTP/2.
        let version: String = fetch::fetch_json(&client, format!("https://{addr}/version"))
            .await
            .unwrap();
        assert_eq!(version, "HTTP/2.0");

        let err = fetch::fetch_json::<User, _, _>(&client, format!("https://{addr}/missing"))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        let err = fetch::fetch_json::<User, _, _>(&client, format!("https://{addr}/bad-json"))
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Decode { .. }), "{err:?}");

        let mut chunks =
            fetch::stream_body(&client, format!("https://{addr}/bytes?n=300000"), 1000)
                .await
                .unwrap();
        let mut n = 0;
        while let Some(c) = chunks.next().await {
            let c = c.unwrap();
            assert!(c.len() <= 1000);
            n += c.len();
        }
        assert_eq!(n, 300_000);
    }

    #[tokio::test]
    async fn https_refuses_an_untrusted_certificate() {
        let (addr, _cert) = start_tls().await;
        // The default client trusts only the Mozilla roots.
        let err =
            fetch::fetch_json::<User, _, _>(&HttpClient::new(), format!("https://{addr}/users/1"))
                .await
                .unwrap_err();
        assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(shown.to_lowercase().contains("certificate"), "{shown}");
    }
}
