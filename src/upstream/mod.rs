//! A configurable flaky JSON server on loopback (feature `upstream`).
//!
//! Examples and tests start it in-process on `127.0.0.1:0` to watch the
//! patterns of this crate work under failure: random failures, added
//! latency, outages that come and go, paginated endpoints in three styles
//! and a large streaming body. `cargo run --example upstream` runs it alone.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use tower_patterns::upstream::{Upstream, UpstreamConfig};
//!
//! let server = Upstream::start(UpstreamConfig::default()).await?;
//! println!("listening on {}", server.url("/users/1"));
//! server.set_down(true); // every request now gets 503 + Retry-After
//! assert!(server.is_down());
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Endpoints
//!
//! | request | answer |
//! |---|---|
//! | `GET /health` | `200 ok`, never fails, never down |
//! | `GET /users/{id}` | `{"id", "name", "email"}`; 404 unless `1 <= id <= items` |
//! | `GET /items?page=N&per_page=M` | page `N` (from 1) as a JSON array; `[]` past the end |
//! | `GET /items/cursor?cursor=C&limit=M` | `{"items": [...], "next_cursor": "..." or null}` |
//! | `GET /items/link?page=N&per_page=M` | a JSON array with an RFC 8288 `Link: <...>; rel="next"` header |
//! | `GET /stream?bytes=N&chunk=K` | `N` bytes in chunks of `K` (default 64 KiB), streamed, never buffered |
//! | `GET /slow?ms=N` | waits `N` ms (tokio time), then `{"slept_ms": N}` |
//! | `GET /status/{code}` | that status; 503 and 429 carry `Retry-After` |
//! | `POST /echo` | the request body back |
//!
//! The data endpoints' answers (`/users/{id}` when found, `/items*`) carry
//! `Cache-Control: max-age=60, stale-if-error=300`, so that an HTTP cache
//! in front (`http_cache::HttpCacheLayer`) keeps them a minute.
//!
//! While down, or by chance at `fail_rate`, any request but `/health`
//! answers `503` with `Retry-After: <retry_after_secs>`. With
//! [`Upstream::set_slow`], a share of requests waits longer (a long tail). Items are
//! `{"id": i, "name": "item-i"}` for `i` in `1..=items`.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The body every endpoint answers with.
pub type UpstreamBody = BoxBody<Bytes, Infallible>;

/// How an [`Upstream`] behaves. `Default` is a healthy, fast server with
/// 1,000 items.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Port to listen on, on 127.0.0.1; 0 (the default) picks a free one.
    pub port: u16,
    /// Chance in `0.0..=1.0` that a request answers 503 (default 0).
    pub fail_rate: f64,
    /// Added before every answer but `/health` (default zero).
    pub latency: Duration,
    /// How many items the paginated endpoints and `/users` serve (default 1,000).
    pub items: u64,
    /// The `Retry-After` seconds sent with 503 and 429 answers (default 1).
    pub retry_after_secs: u64,
    /// An outage schedule: after `.0` from start, go down for `.1`, then
    /// come back up, and repeat (default none).
    pub outage: Option<(Duration, Duration)>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            port: 0,
            fail_rate: 0.0,
            latency: Duration::ZERO,
            items: 1_000,
            retry_after_secs: 1,
            outage: None,
        }
    }
}

#[derive(Debug)]
struct Shared {
    down: AtomicBool,
    fail_rate_bits: AtomicU64,
    latency_us: AtomicU64,
    slow_rate_bits: AtomicU64,
    slow_us: AtomicU64,
    slow_sent: AtomicU64,
    items: u64,
    retry_after_secs: u64,
    requests: AtomicU64,
    failures_sent: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// A running flaky server. Dropping it stops accepting connections and
/// closes the open ones.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
    outage: Option<JoinHandle<()>>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("down", &self.is_down())
            .field("requests", &self.requests())
            .finish()
    }
}

impl Upstream {
    /// Binds `127.0.0.1:<config.port>` and starts serving on the current
    /// tokio runtime.
    ///
    /// # Errors
    /// The bind error, if the port is taken; `InvalidInput` when
    /// `fail_rate` is outside `0.0..=1.0`.
    pub async fn start(config: UpstreamConfig) -> std::io::Result<Upstream> {
        if !(0.0..=1.0).contains(&config.fail_rate) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "fail_rate = {} (must be within 0.0..=1.0)",
                    config.fail_rate
                ),
            ));
        }
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            down: AtomicBool::new(false),
            fail_rate_bits: AtomicU64::new(config.fail_rate.to_bits()),
            latency_us: AtomicU64::new(duration_us(config.latency)),
            slow_rate_bits: AtomicU64::new(0.0_f64.to_bits()),
            slow_us: AtomicU64::new(0),
            slow_sent: AtomicU64::new(0),
            items: config.items,
            retry_after_secs: config.retry_after_secs,
            requests: AtomicU64::new(0),
            failures_sent: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        let outage = config.outage.map(|(after, length)| {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(after).await;
                    shared.down.store(true, Ordering::SeqCst);
                    tokio::time::sleep(length).await;
                    shared.down.store(false, Ordering::SeqCst);
                }
            })
        });
        Ok(Upstream {
            addr,
            shared,
            stop,
            accept: Some(accept),
            outage,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`; `path` should start with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Takes the server down (every request but `/health` answers 503 with
    /// `Retry-After`) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Whether the server is down.
    pub fn is_down(&self) -> bool {
        self.shared.down.load(Ordering::SeqCst)
    }

    /// Changes the chance of a random 503; clamped into `0.0..=1.0`.
    pub fn set_fail_rate(&self, rate: f64) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.shared
            .fail_rate_bits
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Changes the latency added before every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_us
            .store(duration_us(latency), Ordering::Relaxed);
    }

    /// Makes a share of requests slow, for a long tail: each request but
    /// `/health` waits an extra `latency` with chance `rate` (clamped into
    /// `0.0..=1.0`; 0, the default, turns it off). `set_slow(0.02,
    /// Duration::from_millis(100))` is a server whose p99 is 100 ms while
    /// its median is its ordinary latency: what hedging is for.
    pub fn set_slow(&self, rate: f64, latency: Duration) {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        self.shared
            .slow_us
            .store(duration_us(latency), Ordering::Relaxed);
        self.shared
            .slow_rate_bits
            .store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Requests made slow by [`set_slow`](Self::set_slow) so far.
    pub fn slow_sent(&self) -> u64 {
        self.shared.slow_sent.load(Ordering::SeqCst)
    }

    /// Requests received so far (all endpoints, `/health` included).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// 503 answers sent because the server was down or by `fail_rate`.
    pub fn failures_sent(&self) -> u64 {
        self.shared.failures_sent.load(Ordering::SeqCst)
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Stops accepting, closes open connections and waits for the accept
    /// loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        if let Some(outage) = self.outage.take() {
            outage.abort();
        }
    }
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // Out of descriptors and the like: try again shortly rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.changed() => {}
            }
        });
    }
}

struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<UpstreamBody> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let _guard = InFlight::enter(shared);
    let path = req.uri().path().to_owned();
    let query = Query(req.uri().query().unwrap_or("").to_owned());

    if path == "/health" {
        return text(StatusCode::OK, "ok");
    }
    let latency = shared.latency_us.load(Ordering::Relaxed);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let slow_rate = f64::from_bits(shared.slow_rate_bits.load(Ordering::Relaxed));
    if slow_rate > 0.0 && fastrand::f64() < slow_rate {
        shared.slow_sent.fetch_add(1, Ordering::SeqCst);
        let slow = shared.slow_us.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_micros(slow)).await;
    }
    let fail_rate = f64::from_bits(shared.fail_rate_bits.load(Ordering::Relaxed));
    if shared.down.load(Ordering::SeqCst) || (fail_rate > 0.0 && fastrand::f64() < fail_rate) {
        shared.failures_sent.fetch_add(1, Ordering::SeqCst);
        return unavailable(shared, StatusCode::SERVICE_UNAVAILABLE);
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["users", id]) => match id.parse::<u64>() {
            Ok(id) if (1..=shared.items).contains(&id) => data(
                StatusCode::OK,
                &serde_json::json!({
                    "id": id,
                    "name": format!("user-{id}"),
                    "email": format!("user{id}@example.test"),
                }),
            ),
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({ "error": format!("no user {id}") }),
            ),
        },
        (&Method::GET, ["items"]) => {
            let (page, per_page) = page_params(&query);
            data(StatusCode::OK, &items_page(shared, page, per_page))
        }
        (&Method::GET, ["items", "cursor"]) => {
            let offset = match query.get("cursor") {
                None | Some("") => Some(0),
                Some(c) => c.strip_prefix("c").and_then(|n| n.parse::<u64>().ok()),
            };
            let Some(offset) = offset else {
                return json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": "bad cursor" }),
                );
            };
            let limit = query.num("limit").unwrap_or(100).clamp(1, 1_000);
            let end = offset.saturating_add(limit).min(shared.items);
            let items: Vec<_> = (offset.saturating_add(1)..=end).map(item).collect();
            let next = (end < shared.items).then(|| format!("c{end}"));
            data(
                StatusCode::OK,
                &serde_json::json!({ "items": items, "next_cursor": next }),
            )
        }
        (&Method::GET, ["items", "link"]) => {
            let (page, per_page) = page_params(&query);
            let body = items_page(shared, page, per_page);
            let mut resp = data(StatusCode::OK, &body);
            let last = shared.items.div_ceil(per_page).max(1);
            let mut links = Vec::new();
            if page < last {
                links.push(format!(
                    "</items/link?page={}&per_page={per_page}>; rel=\"next\"",
                    page + 1
                ));
            }
            links.push(format!(
                "</items/link?page={last}&per_page={per_page}>; rel=\"last\""
            ));
            if let Ok(v) = links.join(", ").parse() {
                resp.headers_mut().insert(header::LINK, v);
            }
            resp
        }
        (&Method::GET, ["stream"]) => {
            let total = query.num("bytes").unwrap_or(1 << 20);
            let chunk = query.num("chunk").unwrap_or(64 * 1024).clamp(1, 1 << 20);
            stream_body(total, chunk)
        }
        (&Method::GET, ["slow"]) => {
            let ms = query.num("ms").unwrap_or(100).min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            json(StatusCode::OK, &serde_json::json!({ "slept_ms": ms }))
        }
        (&Method::GET, ["status", code]) => match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(status)
                if status == StatusCode::SERVICE_UNAVAILABLE
                    || status == StatusCode::TOO_MANY_REQUESTS =>
            {
                unavailable(shared, status)
            }
            Some(status) => text(status, &format!("status {}", status.as_u16())),
            None => text(StatusCode::BAD_REQUEST, "bad status code"),
        },
        (&Method::POST, ["echo"]) => {
            // Cap what we echo so a huge upload cannot exhaust memory.
            let limited = http_body_util::Limited::new(req.into_body(), 16 << 20);
            match limited.collect().await {
                Ok(body) => Response::new(Full::new(body.to_bytes()).boxed()),
                Err(_) => text(StatusCode::PAYLOAD_TOO_LARGE, "body over 16 MiB"),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

fn item(i: u64) -> serde_json::Value {
    serde_json::json!({ "id": i, "name": format!("item-{i}") })
}

fn page_params(query: &Query) -> (u64, u64) {
    let page = query.num("page").unwrap_or(1).max(1);
    let per_page = query.num("per_page").unwrap_or(100).clamp(1, 1_000);
    (page, per_page)
}

fn items_page(shared: &Shared, page: u64, per_page: u64) -> serde_json::Value {
    let start = (page - 1).saturating_mul(per_page);
    let end = start.saturating_add(per_page).min(shared.items);
    let items: Vec<_> = (start.saturating_add(1)..=end).map(item).collect();
    serde_json::Value::Array(items)
}

fn stream_body(total: u64, chunk: u64) -> Response<UpstreamBody> {
    let chunk_bytes = Bytes::from(vec![b'x'; chunk as usize]);
    let chunks = futures::stream::unfold(total, move |left| {
        let chunk_bytes = chunk_bytes.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(chunk_bytes.len() as u64);
            let frame = Frame::data(chunk_bytes.slice(..n as usize));
            Some((Ok::<_, Infallible>(frame), left - n))
        }
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(chunks)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

fn unavailable(shared: &Shared, status: StatusCode) -> Response<UpstreamBody> {
    let mut resp = text(status, "upstream unavailable, try again later");
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(shared.retry_after_secs),
    );
    resp
}

fn text(status: StatusCode, body: &str) -> Response<UpstreamBody> {
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The freshness of the data endpoints' answers (`/users/{id}`, `/items*`),
/// for HTTP caches in front (`http_cache::HttpCacheLayer`).
const DATA_CACHE_CONTROL: &str = "max-age=60, stale-if-error=300";

/// A JSON answer of the data endpoints: fresh for a minute, and servable
/// stale for five more while the server fails.
fn data(status: StatusCode, value: &serde_json::Value) -> Response<UpstreamBody> {
    let mut resp = json(status, value);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(DATA_CACHE_CONTROL),
    );
    resp
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<UpstreamBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

struct Query(String);

impl Query {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
    }

    fn num(&self, key: &str) -> Option<u64> {
        self.get(key)?.parse().ok()
    }
}
