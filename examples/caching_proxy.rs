//! A caching reverse proxy built from the suite: a hyper server in front
//! of an upstream, through an RFC 9111 shared cache, a concurrency limit
//! and a circuit breaker, to `fetch::HttpClient`.
//!
//! ```text
//! client ─ hyper server (HTTP/1.1, HTTP/2)
//!          └ HttpCacheLayer (shared cache, Cache-Status on)
//!            └ concurrency limit (--concurrency in flight, reject when full → 503)
//!              └ circuit breaker (half the calls of the last 10 s fail → open 5 s → 503)
//!                └ fetch::HttpClient → --upstream + path and query
//! ```
//!
//! It forwards the method, path and query, fields (less hop-by-hop ones)
//! and body, and returns the upstream's status, fields and body as they
//! came (less hop-by-hop fields), plus `Cache-Status` and, on answers from
//! the cache, `Age`. The breaker counts transport failures and timeouts,
//! not 5xx answers, which are the upstream's to give (and which the
//! cache's `stale-if-error` may cover).
//!
//! ```sh
//! cargo run --release --example caching_proxy -- --listen 127.0.0.1:8080 --upstream http://127.0.0.1:8000
//! curl -i localhost:8080/some/path
//! cargo run --example caching_proxy -- --smoke   # checks itself against a local upstream and exits
//! cargo run --example caching_proxy -- --help
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::util::BoxCloneService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open, Window};
use tower_patterns::fetch::{self, FetchError, HttpClient};
use tower_patterns::http_cache::{HttpCacheBody, HttpCacheHandle, HttpCacheLayer};
use tower_patterns::limit::{ConcurrencyLimitLayer, Overloaded};

/// A caching reverse proxy: an RFC 9111 shared cache, a concurrency limit
/// and a circuit breaker in front of one upstream.
#[derive(Parser, Clone)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The upstream's base URL (`http://host:port`, optionally with a path
    /// prefix); each request's path and query is appended.
    #[arg(long, required_unless_present = "smoke")]
    upstream: Option<String>,
    /// Most URIs the cache holds.
    #[arg(long, default_value_t = 10_000)]
    max_entries: usize,
    /// Largest response body the cache stores, in bytes (larger ones stream through).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 10 << 20)]
    max_request_bytes: usize,
    /// Requests in flight to the upstream at most; more are answered 503.
    #[arg(long, default_value_t = 512)]
    concurrency: usize,
    /// Upstream timeout per request, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Start a local upstream, check the proxy against it, and exit.
    #[arg(long)]
    smoke: bool,
}

type ProxyBody = Either<HttpCacheBody<fetch::Body>, Full<Bytes>>;
type Upstream =
    BoxCloneService<Request<Full<Bytes>>, Response<HttpCacheBody<fetch::Body>>, BoxError>;

/// Fields of one connection's hop (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed
        .iter()
        .map(HeaderName::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        headers.remove(name);
    }
}

/// The service stack: cache, limit, breaker, client.
fn stack(args: &Args, upstream: &str) -> Result<(Upstream, HttpCacheHandle), BoxError> {
    let base = upstream.trim_end_matches('/').to_owned();
    let base_uri: Uri = base.parse()?;
    let client = HttpClient::builder()
        .name("caching_proxy")
        .timeout(Duration::from_secs(args.timeout_secs))
        .max_body_bytes(u64::MAX)
        .build()?;
    let cache = HttpCacheLayer::builder()
        .name("caching_proxy")
        .shared(true)
        .cache_status(true)
        .max_entries(args.max_entries)
        .max_body_bytes(args.max_body_bytes)
        .build()?;
    let handle = cache.handle();
    let limit = ConcurrencyLimitLayer::builder()
        .name("caching_proxy")
        .limit(args.concurrency)
        .reject_when_full()
        .build()?;
    let breaker = CircuitBreakerLayer::builder()
        .name("caching_proxy")
        // Half of the last 10 s's calls failing, once there were 20: a
        // proxy sees a few deliberate connection drops among many answers
        // (the HTTP cache test suite's origin makes some) without shutting
        // everyone out, and a dead upstream within a few seconds.
        .failure_rate_threshold(0.5)
        .sliding_window(Window::Time(Duration::from_secs(10)))
        .minimum_calls(20)
        .open_duration(Duration::from_secs(5))
        .build()?;
    let svc = ServiceBuilder::new()
        .layer(cache)
        .layer(limit)
        .layer(breaker)
        .map_request(move |mut req: Request<Full<Bytes>>| {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let target = format!("{base}{pq}");
            *req.uri_mut() = target.parse().unwrap_or_else(|_| base_uri.clone());
            // The upstream's own Host, as the client library sets it.
            req.headers_mut().remove(header::HOST);
            req
        })
        .service(client);
    Ok((BoxCloneService::new(svc), handle))
}

/// One request through the proxy.
async fn handle(
    svc: Upstream,
    max_request_bytes: usize,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let body = match Limited::new(body, max_request_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or broken\n",
            )
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    let req = Request::from_parts(parts, Full::new(body));
    match svc.oneshot(req).await {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Either::Left(body))
        }
        Err(e) => error_response(&e),
    }
}

/// Our errors as answers: 503 for a full limit or an open breaker, 504 for
/// an upstream timeout, 502 for any other upstream failure.
fn error_response(e: &BoxError) -> Response<ProxyBody> {
    if e.downcast_ref::<Overloaded>().is_some() {
        let mut res = plain(StatusCode::SERVICE_UNAVAILABLE, "proxy overloaded\n");
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return res;
    }
    if let Some(open) = e.downcast_ref::<Open>() {
        let mut res = plain(StatusCode::SERVICE_UNAVAILABLE, "upstream circuit open\n");
        let secs = open.retry_after().map_or(1, |d| d.as_secs().max(1));
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return res;
    }
    if matches!(
        e.downcast_ref::<FetchError>(),
        Some(FetchError::Timeout { .. })
    ) {
        return plain(StatusCode::GATEWAY_TIMEOUT, "upstream timed out\n");
    }
    // On standard error too, with its causes: what went wrong between
    // the proxy and its upstream is seen nowhere else.
    let mut why = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        why.push_str(": ");
        why.push_str(&c.to_string());
        cause = c.source();
    }
    eprintln!("caching_proxy: 502: {why}");
    plain(StatusCode::BAD_GATEWAY, &format!("upstream failed: {e}\n"))
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut res = Response::new(Either::Right(Full::new(Bytes::from(text.to_owned()))));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    res
}

/// Accepts connections and serves each through `svc`.
async fn serve(listener: TcpListener, svc: Upstream, max_request_bytes: usize) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let svc = svc.clone();
                async move { Ok::<_, Infallible>(handle(svc, max_request_bytes, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    if args.smoke {
        return smoke(args).await;
    }
    let upstream = args.upstream.clone().unwrap_or_default();
    let (svc, _handle) = stack(&args, &upstream)?;
    let listener = TcpListener::bind(args.listen).await?;
    println!(
        "caching_proxy listening on http://{} -> {upstream}",
        listener.local_addr()?
    );
    serve(listener, svc, args.max_request_bytes).await;
    Ok(())
}

// ---------------------------------------------------------------------------
// --smoke: a local upstream, the proxy in front, and checks.

/// A tiny origin: `/fresh` is cacheable for a minute, `/private` is not
/// for a shared cache; every answer carries the origin's request count.
async fn origin(listener: TcpListener, hits: Arc<AtomicUsize>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let hits = hits.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    let cc = if req.uri().path() == "/private" {
                        "private, max-age=60"
                    } else {
                        "max-age=60"
                    };
                    Response::builder()
                        .header("cache-control", cc)
                        .header("x-origin-count", n)
                        .header("x-custom", "kept")
                        .body(Full::new(Bytes::from(format!("{} #{n}", req.uri().path()))))
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn smoke(args: Args) -> Result<(), BoxError> {
    let origin_listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = format!("http://{}", origin_listener.local_addr()?);
    let hits = Arc::new(AtomicUsize::new(0));
    tokio::spawn(origin(origin_listener, hits.clone()));

    let (svc, handle) = stack(&args, &upstream)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let proxy = listener.local_addr()?;
    tokio::spawn(serve(listener, svc, args.max_request_bytes));

    let client = HttpClient::new();
    let send = move |method: &str, path: &str| {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{proxy}{path}"))
            .body(Full::new(Bytes::new()))
            .expect("valid request");
        let client = client.clone();
        async move {
            let res = client.clone().ready().await?.call(req).await?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>((parts, body))
        }
    };
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: &str| {
        println!("{} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failures.push(what.to_owned());
        }
    };

    let (a, body_a) = send("GET", "/fresh").await?;
    let (b, body_b) = send("GET", "/fresh").await?;
    check(
        a.status == 200 && body_a == body_b,
        "a fresh response is served again, same body",
    );
    check(
        hits.load(Ordering::SeqCst) == 1,
        "the second GET did not reach the origin",
    );
    let status = |p: &http::response::Parts| {
        p.headers
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    check(
        status(&a).contains("fwd=uri-miss"),
        "Cache-Status says the first was a miss",
    );
    check(
        status(&b).contains("hit"),
        "Cache-Status says the second was a hit",
    );
    check(
        b.headers.contains_key("age"),
        "an answer from the cache has Age",
    );
    check(
        b.headers.get("x-custom").is_some_and(|v| v == "kept"),
        "origin fields are kept",
    );

    let (h, body_h) = send("HEAD", "/fresh").await?;
    check(
        h.status == 200 && body_h.is_empty() && hits.load(Ordering::SeqCst) == 1,
        "HEAD is answered from the stored GET",
    );

    send("GET", "/private").await?;
    send("GET", "/private").await?;
    check(
        hits.load(Ordering::SeqCst) == 3,
        "a private response is not stored by the shared cache",
    );

    let (p, _) = send("POST", "/fresh").await?;
    check(p.status == 200, "POST is forwarded");
    let (c, body_c) = send("GET", "/fresh").await?;
    check(
        c.status == 200 && body_c != body_a && hits.load(Ordering::SeqCst) == 5,
        "a POST invalidates the stored response",
    );
    println!("cache: {:?}", handle.stats());
    if failures.is_empty() {
        println!("caching_proxy smoke: all checks passed");
        Ok(())
    } else {
        Err(format!(
            "caching_proxy smoke: {} check(s) failed: {failures:?}",
            failures.len()
        )
        .into())
    }
}
