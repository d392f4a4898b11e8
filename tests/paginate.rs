//! Pagination against local JSON servers (page numbers, cursors, Link
//! headers) and in-process page services (timing, cancellation, bounds).
//!
//! Tests that need only the paginated endpoints use the crate's `upstream`
//! server. The hand-rolled server below stays for what `upstream` does not
//! do: a log of every request's path and query (tests count the requests
//! for each page), one chosen page failing once (`fail_page_once`), servers
//! stuck in a cursor or link loop (`loop=1`), a total set per request, and
//! `Link` headers of several fields with quoted and unquoted parameters,
//! relative targets and links to another host.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::{service_fn, BoxError, ServiceBuilder};
use tower_patterns::classify::HttpClassify;
use tower_patterns::fetch::FetchError;
use tower_patterns::paginate::{
    self, Cursor, CursorRequest, JsonPages, LinkHeader, Page, PageNumber, PageRequest,
    PageResponse, PaginateError, Paginator, WalkError,
};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
use tower_patterns::upstream::UpstreamConfig;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    id: u64,
}

// ------------------------------------------------------------------ server

#[derive(Default)]
struct ServerState {
    /// `path?query` of every request, in arrival order.
    log: Mutex<Vec<String>>,
    /// Page number (page-number and Link styles) answered with a 500 once.
    fail_page_once: AtomicU64,
}

impl ServerState {
    fn count(&self, needle: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
    fn total(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

struct Server {
    addr: SocketAddr,
    state: Arc<ServerState>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { addr, state }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }
}

fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn num(q: &HashMap<String, String>, key: &str, default: u64) -> u64 {
    q.get(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn items(from: u64, to: u64) -> Vec<Item> {
    (from..to).map(|id| Item { id }).collect()
}

fn json(status: StatusCode, body: &impl Serialize) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

#[derive(Serialize, Deserialize)]
struct CursorBody {
    items: Vec<Item>,
    next_cursor: Option<String>,
}

fn handle(state: &ServerState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let uri = req.uri().clone();
    state.log.lock().unwrap().push(
        uri.path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
    );
    let q = query(&uri);
    let total = num(&q, "total", 1000);
    let looping = q.contains_key("loop");
    match uri.path() {
        "/items" | "/items/link" => {
            let page = num(&q, "page", 1).max(1);
            let per_page = num(&q, "per_page", 100).max(1);
            if state
                .fail_page_once
                .compare_exchange(page, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                return json(StatusCode::INTERNAL_SERVER_ERROR, &"try again");
            }
            let from = ((page - 1) * per_page).min(total);
            let to = (from + per_page).min(total);
            let mut resp = json(StatusCode::OK, &items(from, to));
            if uri.path() == "/items/link" {
                let last = total.div_ceil(per_page);
                // Several fields, several links, quoted and unquoted params.
                let first_last = format!(
                    "</items/link?page=1&per_page={per_page}>; rel=\"first\", \
                     <http://elsewhere.invalid/items/link?page={last}>; title=\"last, really\"; rel=last"
                );
                resp.headers_mut()
                    .append("link", first_last.parse().unwrap());
                let next = if looping { 2 } else { page + 1 };
                if looping || to < total {
                    // Path-relative: resolves against /items/link.
                    let next = format!(
                        " <link?page={next}&per_page={per_page}&total={total}{}> ;REL = \"next\"",
                        if looping { "&loop=1" } else { "" }
                    );
                    resp.headers_mut().append("link", next.parse().unwrap());
                }
            }
            resp
        }
        "/items/cursor" => {
            let limit = num(&q, "limit", 100).max(1);
            let offset = q
                .get("cursor")
                .and_then(|c| c.strip_prefix('o'))
                .and_then(|o| o.parse().ok())
                .unwrap_or(0u64)
                .min(total);
            let to = (offset + limit).min(total);
            let next_cursor = if looping {
                // o0 -> o{limit} -> o0 -> ...: a server stuck in a loop.
                Some(format!("o{}", (offset + limit) % (2 * limit)))
            } else {
                (to < total).then(|| format!("o{to}"))
            };
            json(
                StatusCode::OK,
                &CursorBody {
                    items: items(offset, to),
                    next_cursor,
                },
            )
        }
        _ => json(StatusCode::NOT_FOUND, &"no such path"),
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A page-number page service: our JSON pages over HTTP, page requests mapped to URIs.
fn page_number_service(
    base: String,
) -> impl tower::Service<PageRequest, Response = Page<Item>, Error = PaginateError, Future: Send>
       + Clone
       + Send
       + 'static {
    ServiceBuilder::new()
        .map_request(move |r: PageRequest| -> Uri {
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}page={}&per_page={}", r.page, r.per_page)
                .parse()
                .unwrap()
        })
        .service(JsonPages::<Item>::new(client()))
}

/// A cursor page service written the way a user would: a `service_fn`
/// decoding the API's own body shape.
fn cursor_service(
    base: String,
    query: &'static str,
) -> impl tower::Service<CursorRequest, Response = Page<Item>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + 'static {
    let client = client();
    service_fn(move |r: CursorRequest| {
        let client = client.clone();
        let cursor = r.cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        let uri: Uri = format!("{base}?{query}{cursor}").parse().unwrap();
        async move {
            let resp = client.get(uri).await?;
            let body = http_body_util::BodyExt::collect(resp.into_body())
                .await?
                .to_bytes();
            let body: CursorBody = serde_json::from_slice(&body)?;
            Ok::<_, BoxError>(Page::new(body.items).with_next(body.next_cursor))
        }
    })
}

fn ids(items: &[Item]) -> Vec<u64> {
    items.iter().map(|i| i.id).collect()
}

fn assert_send<T: Send>(_: &T) {}

// ------------------------------------------------------------------ styles

/// Drains a walk up to its first error: what came before it, and the error.
async fn until_error<T, E>(stream: &mut (impl Stream<Item = Result<T, E>> + Unpin)) -> (Vec<T>, E) {
    let mut before = Vec::new();
    loop {
        match stream
            .next()
            .await
            .expect("the walk must end with an error")
        {
            Ok(item) => before.push(item),
            Err(e) => return (before, e),
        }
    }
}

#[tokio::test]
async fn page_numbers_yield_every_item_once_in_order() {
    let server = Server::start().await;
    for (per_page, prefetch) in [(100, 0), (30, 0), (30, 3)] {
        if prefetch > 0 {
            assert_eq!(
                server.state.count("/items?page=35&"),
                0,
                "no request past the short page without prefetch"
            );
        }
        let items: Vec<Item> = Paginator::new(
            page_number_service(server.url("/items")),
            PageNumber::new(1, per_page),
        )
        .prefetch(prefetch)
        .items()
        .try_collect()
        .await
        .unwrap();
        assert_eq!(
            ids(&items),
            (0..1000).collect::<Vec<_>>(),
            "per_page {per_page}"
        );
    }
    // 100 per page: 10 full pages then an empty one ends the walk.
    assert_eq!(server.state.count("per_page=100"), 11);
    // 30 per page: 33 full pages, then a short one (10 items) ends it.
    assert_eq!(server.state.count("/items?page=34&per_page=30"), 2);
    // Without prefetch nothing is asked past the short page; with prefetch(3)
    // up to 3 speculative requests were sent, then cancelled.
    let past_end: usize = (35..=37)
        .map(|p| server.state.count(&format!("/items?page={p}&")))
        .sum();
    assert!(past_end <= 3, "{past_end}");
    assert_eq!(server.state.count("/items?page=38&"), 0);
}

#[tokio::test]
async fn cursors_yield_every_item_once_in_order() {
    let server = common::upstream(UpstreamConfig::default()).await;
    for prefetch in [0, 1] {
        let items: Vec<Item> = Paginator::new(
            cursor_service(server.url("/items/cursor"), "limit=64"),
            Cursor::new(|p: &Page<Item>| p.next_token().map(str::to_owned)),
        )
        .prefetch(prefetch)
        .items()
        .try_collect()
        .await
        .unwrap();
        assert_eq!(ids(&items), (1..=1000).collect::<Vec<_>>());
    }
    assert_eq!(server.requests(), 2 * 1000u64.div_ceil(64));
}

#[tokio::test]
async fn cursor_from_the_last_item_id() {
    // The other common cursor: "after=<id of the last item>".
    let data: Arc<Vec<u64>> = Arc::new((0..1000).map(|i| i * 3).collect());
    let svc = service_fn(move |r: CursorRequest| {
        let data = data.clone();
        async move {
            let after: Option<u64> = r.cursor.map(|c| c.parse().unwrap());
            let page: Vec<Item> = data
                .iter()
                .filter(|&&id| after.is_none_or(|a| id > a))
                .take(128)
                .map(|&id| Item { id })
                .collect();
            Ok::<_, BoxError>(Page::new(page))
        }
    });
    let items: Vec<Item> = Paginator::new(
        svc,
        Cursor::new(|p: &Page<Item>| p.items().last().map(|i| i.id.to_string())),
    )
    .items()
    .try_collect()
    .await
    .unwrap();
    assert_eq!(ids(&items), (0..1000).map(|i| i * 3).collect::<Vec<_>>());
}

#[tokio::test]
async fn link_headers_yield_every_item_once_in_order() {
    let server = Server::start().await;
    for prefetch in [0, 2] {
        let users = paginate::json_link_paginator::<Item>(
            client(),
            server.url("/items/link?page=1&per_page=70"),
        )
        .prefetch(prefetch)
        .items();
        assert_send(&users);
        let items: Vec<Item> = users.try_collect().await.unwrap();
        assert_eq!(ids(&items), (0..1000).collect::<Vec<_>>());
    }
    // 15 pages each time: the last (short) page carries no next link, and
    // the first/last links (one on another host) are never followed.
    assert_eq!(server.state.total(), 30);
    assert_eq!(
        server.state.count("total=1000"),
        28,
        "relative next links were followed"
    );
}

#[tokio::test]
async fn seed_scenario_three_pages_of_100_then_empty() {
    let server = common::upstream(UpstreamConfig {
        items: 300,
        ..UpstreamConfig::default()
    })
    .await;
    let mut pages = Paginator::new(
        page_number_service(server.url("/items")),
        PageNumber::new(1, 100),
    )
    .pages();
    assert_send(&pages);
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        sizes.push(page.len());
        all.extend(page.into_items());
    }
    assert_eq!(all.len(), 300);
    assert_eq!(ids(&all), (1..=300).collect::<Vec<_>>());
    assert_eq!(sizes, [100, 100, 100, 0]);
    assert_eq!(server.requests(), 4);
    assert_eq!(pages.checkpoint(), None, "the walk is complete");
    let stats = pages.stats();
    assert_eq!(
        (
            stats.pages,
            stats.items,
            stats.requests_sent,
            stats.in_flight
        ),
        (4, 300, 4, 0)
    );
}

// ------------------------------------------------------------------ prefetch

/// A page service with 100 ms latency: 10 full pages of 100 items then an empty one.
fn slow_pages(
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
) -> impl tower::Service<PageRequest, Response = Page<u64>, Error = BoxError, Future: Send> + Clone
{
    service_fn(move |r: PageRequest| {
        let in_flight = in_flight.clone();
        let max_in_flight = max_in_flight.clone();
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let from = (r.page - 1) * r.per_page;
            let to = (from + r.per_page).min(1000);
            Ok::<_, BoxError>(Page::new((from.min(to)..to).collect()))
        }
    })
}

async fn walk_with_slow_consumer(prefetch: usize) -> (Duration, usize, Vec<u64>) {
    let max = Arc::new(AtomicUsize::new(0));
    let svc = slow_pages(Arc::new(AtomicUsize::new(0)), max.clone());
    let start = Instant::now();
    let mut pages = Paginator::new(svc, PageNumber::new(1, 100))
        .prefetch(prefetch)
        .pages();
    let mut all = Vec::new();
    while let Some(page) = pages.next().await {
        assert!(
            pages.stats().in_flight <= prefetch,
            "at most prefetch + 1 pages held"
        );
        all.extend(page.unwrap().into_items());
        tokio::time::sleep(Duration::from_millis(100)).await; // the consumer's work
    }
    (start.elapsed(), max.load(Ordering::SeqCst), all)
}

#[tokio::test(start_paused = true)]
async fn prefetch_one_halves_the_walk_time() {
    let (sequential, max_seq, items_seq) = walk_with_slow_consumer(0).await;
    let (prefetched, max_pre, items_pre) = walk_with_slow_consumer(1).await;
    assert_eq!(items_seq, (0..1000).collect::<Vec<_>>());
    assert_eq!(items_pre, items_seq, "order preserved with prefetch");
    // 11 pages: fetch then consume, 200 ms each...
    assert!(sequential >= Duration::from_millis(2200), "{sequential:?}");
    // ...against one fetch, then fetches hidden behind the consumer.
    assert!(prefetched <= Duration::from_millis(1210), "{prefetched:?}");
    assert!(prefetched * 2 <= sequential + Duration::from_millis(220));
    assert_eq!(max_seq, 1);
    assert!(
        max_pre <= 2,
        "at most prefetch + 1 requests at once, saw {max_pre}"
    );
}

#[tokio::test(start_paused = true)]
async fn cursor_prefetch_fires_as_soon_as_the_cursor_is_known() {
    let svc = service_fn(|r: CursorRequest| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n: u64 = r.cursor.map_or(0, |c| c.parse().unwrap());
        let next = (n < 9).then(|| (n + 1).to_string());
        Ok::<_, BoxError>(Page::new(vec![n]).with_next(next))
    });
    let start = Instant::now();
    let mut items = Paginator::new(svc, Cursor::from_page()).prefetch(1).items();
    let mut seen = Vec::new();
    while let Some(item) = items.next().await {
        seen.push(item.unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    // Sequential would be 10 x 200 ms; each next request overlapped the consumer.
    assert!(
        start.elapsed() <= Duration::from_millis(1110),
        "{:?}",
        start.elapsed()
    );
}

// ------------------------------------------------------------------ loops

#[tokio::test]
async fn repeated_cursor_errors_instead_of_looping() {
    let server = Server::start().await;
    let mut items = Paginator::new(
        cursor_service(server.url("/items/cursor"), "limit=10&loop=1"),
        Cursor::from_page(),
    )
    .items();
    let (got, err) = until_error(&mut items).await;
    assert!(items.next().await.is_none());
    // None -> o10 -> o0 -> o10 again: three pages, then the loop error.
    assert_eq!(got.len(), 30);
    let walk = err.downcast_ref::<WalkError>().expect("a WalkError");
    assert!(walk.is_loop());
    assert!(matches!(walk, WalkError::LoopDetected { repeated, .. } if repeated == "o10"));
    assert!(err.to_string().contains("loop detected"), "{err}");
    assert_eq!(server.state.total(), 3);
}

#[tokio::test]
async fn repeated_link_errors_instead_of_looping() {
    let server = Server::start().await;
    let mut pages = paginate::json_link_paginator::<Item>(
        client(),
        server.url("/items/link?page=1&per_page=10&loop=1"),
    )
    .prefetch(1)
    .pages();
    assert_eq!(
        ids(pages.next().await.unwrap().unwrap().items()),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(pages.next().await.unwrap().unwrap().items()),
        (10..20).collect::<Vec<_>>()
    );
    let err = pages.next().await.unwrap().unwrap_err();
    assert!(
        matches!(&err, PaginateError::Walk(WalkError::LoopDetected { kind: "link", repeated })
            if repeated.ends_with("/items/link?page=2&per_page=10&total=1000&loop=1")),
        "{err:?}"
    );
    assert!(pages.next().await.is_none());
    assert_eq!(server.state.total(), 2);
}

// ------------------------------------------------------------------ failures

#[tokio::test]
async fn failure_on_page_4_then_resume_continues_at_page_4() {
    let server = Server::start().await;
    server.state.fail_page_once.store(4, Ordering::SeqCst);
    let svc = page_number_service(server.url("/items"));

    let mut pages = Paginator::new(svc.clone(), PageNumber::new(1, 100))
        .prefetch(1)
        .pages();
    let mut all = Vec::new();
    for _ in 0..3 {
        all.extend(pages.next().await.unwrap().unwrap().into_items());
    }
    let err = pages.next().await.unwrap().unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(err.to_string().contains("page=4"), "{err}");
    assert!(
        pages.next().await.is_none(),
        "the stream ends after the error"
    );
    let checkpoint = *pages.checkpoint().unwrap();
    assert_eq!(
        checkpoint,
        PageRequest {
            page: 4,
            per_page: 100
        }
    );
    drop(pages);

    let rest: Vec<Item> = Paginator::new(svc, PageNumber::new(1, 100))
        .resume(checkpoint)
        .items()
        .try_collect()
        .await
        .unwrap();
    all.extend(rest);
    assert_eq!(ids(&all), (0..1000).collect::<Vec<_>>());
    assert_eq!(
        server.state.count("page=1&"),
        1,
        "resume did not restart from page 1"
    );
    assert_eq!(server.state.count("page=4&"), 2);
}

#[tokio::test]
async fn resume_a_cursor_walk_from_its_token() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let items: Vec<Item> = Paginator::new(
        cursor_service(server.url("/items/cursor"), "limit=100"),
        Cursor::from_page(),
    )
    .resume("c900")
    .items()
    .try_collect()
    .await
    .unwrap();
    assert_eq!(ids(&items), (901..=1000).collect::<Vec<_>>());
    assert_eq!(server.requests(), 1);
}

/// The crate's retry layer, retrying the page errors `HttpClassify` (and
/// `PaginateError::is_transient`) call transient.
fn retry_transient(max_attempts: u32) -> RetryLayer<HttpClassify> {
    RetryLayer::builder()
        .max_attempts(max_attempts)
        .backoff(Backoff::constant(Duration::ZERO).jitter(Jitter::None))
        .classify(HttpClassify)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_retry_layer_retries_a_transient_page_failure_transparently() {
    let server = Server::start().await;
    server.state.fail_page_once.store(4, Ordering::SeqCst);
    let retry = retry_transient(3);
    let svc = ServiceBuilder::new()
        .layer(retry.clone())
        .service(page_number_service(server.url("/items")));
    let items: Vec<Item> = Paginator::new(svc, PageNumber::new(1, 100))
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&items), (0..1000).collect::<Vec<_>>());
    assert_eq!(server.state.count("page=4&"), 2, "page 4 was retried once");
    assert_eq!(retry.stats().retries, 1);

    // The same around the Link-header walk's page service.
    server.state.fail_page_once.store(3, Ordering::SeqCst);
    let svc = ServiceBuilder::new()
        .layer(retry_transient(3))
        .service(JsonPages::<Item>::new(client()));
    let first: Uri = server
        .url("/items/link?page=1&per_page=100")
        .parse()
        .unwrap();
    let items: Vec<Item> = Paginator::new(svc, LinkHeader::new(first))
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&items), (0..1000).collect::<Vec<_>>());
}

#[tokio::test]
async fn http_errors_are_typed() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let err = paginate::json_link_paginator::<Item>(client(), server.url("/nope"))
        .items()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert!(!err.is_transient());

    // A body that is not an array of items.
    let err = paginate::json_link_paginator::<Item>(client(), server.url("/items/cursor"))
        .items()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PaginateError::Fetch(FetchError::Decode { .. })),
        "{err:?}"
    );

    // A body over the limit.
    let svc = JsonPages::<Item>::new(client()).max_body_bytes(64);
    let first: Uri = server.url("/items/link").parse().unwrap();
    let err = Paginator::new(svc, LinkHeader::new(first))
        .pages()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            PaginateError::Fetch(FetchError::BodyTooLarge { limit: 64, .. })
        ),
        "{err:?}"
    );

    // An invalid start URL is reported by the stream, not by a panic.
    let mut items = paginate::json_link_paginator::<Item>(client(), "http://bad host/");
    items = items.max_pages(5);
    let err = items.items().next().await.unwrap().unwrap_err();
    assert!(
        matches!(err, PaginateError::Fetch(FetchError::InvalidUri { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad host"), "{err}");

    // Nothing listening: a client error, transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let err = paginate::json_link_paginator::<Item>(client(), format!("http://{closed}/items"))
        .items()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, PaginateError::Service { .. }) && err.is_transient(),
        "{err:?}"
    );
}

// ------------------------------------------------------------------ the service's own response

/// A page as the API answers it: its own names, its own fields, no `Page`.
#[derive(Clone, Debug)]
struct UsersPage {
    users: Vec<Item>,
    next_cursor: Option<String>,
    total: u64,
}

impl PageResponse for UsersPage {
    type Item = Item;

    fn items(&self) -> &[Item] {
        &self.users
    }

    fn items_mut(&mut self) -> &mut Vec<Item> {
        &mut self.users
    }
}

const USERS: u64 = 95;

/// An in-process users API: `USERS` users, 10 per page, the cursor is the
/// offset of the page's first user.
#[derive(Default)]
struct UsersApi {
    /// The cursor of every request, in arrival order.
    asked: Mutex<Vec<Option<String>>>,
    /// The page at this offset answers with the cursor "10" again.
    loop_at: Option<u64>,
    /// The page at this offset fails once.
    fail_once_at: Mutex<Option<u64>>,
}

impl UsersApi {
    fn asked(&self) -> Vec<Option<String>> {
        self.asked.lock().unwrap().clone()
    }
}

fn users_service(
    api: Arc<UsersApi>,
) -> impl tower::Service<CursorRequest, Response = UsersPage, Error = BoxError, Future: Send + 'static>
       + Clone {
    service_fn(move |r: CursorRequest| {
        let api = api.clone();
        async move {
            api.asked.lock().unwrap().push(r.cursor.clone());
            let offset: u64 = r.cursor.as_deref().map_or(0, |c| c.parse().unwrap());
            if api
                .fail_once_at
                .lock()
                .unwrap()
                .take_if(|at| *at == offset)
                .is_some()
            {
                return Err(BoxError::from(format!("users page {offset} is down")));
            }
            let end = (offset + 10).min(USERS);
            let next_cursor = if api.loop_at == Some(offset) {
                Some("10".to_owned())
            } else {
                (end < USERS).then(|| end.to_string())
            };
            Ok(UsersPage {
                users: items(offset, end),
                next_cursor,
                total: USERS,
            })
        }
    })
}

fn users_cursor() -> Cursor<impl FnMut(&UsersPage) -> Option<String>> {
    Cursor::from_response(|r: &UsersPage| r.next_cursor.clone())
}

#[tokio::test]
async fn a_cursor_reads_the_token_from_the_services_own_response() {
    for prefetch in [0, 2] {
        let api = Arc::new(UsersApi::default());
        let users: Vec<Item> = Paginator::new(users_service(api.clone()), users_cursor())
            .prefetch(prefetch)
            .items()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            ids(&users),
            (0..USERS).collect::<Vec<_>>(),
            "prefetch {prefetch}"
        );
        // One request per page, following each page's own `next_cursor`,
        // and none after the page without one.
        let expected: Vec<Option<String>> = std::iter::once(None)
            .chain((10..USERS).step_by(10).map(|o| Some(o.to_string())))
            .collect();
        assert_eq!(api.asked(), expected, "prefetch {prefetch}");
    }

    // The page stream yields the service's responses, other fields intact.
    let api = Arc::new(UsersApi::default());
    let mut pages = Paginator::new(users_service(api), users_cursor()).pages();
    assert_send(&pages);
    let first = pages.next().await.unwrap().unwrap();
    assert_eq!(first.total, USERS);
    assert_eq!(first.next_cursor.as_deref(), Some("10"));
    let rest: Vec<UsersPage> = pages.try_collect().await.unwrap();
    assert_eq!(rest.len(), 9);
    assert_eq!(ids(&rest[8].users), (90..USERS).collect::<Vec<_>>());
    assert_eq!(rest[8].next_cursor, None);
}

#[tokio::test]
async fn a_repeated_token_in_the_services_own_response_is_a_loop() {
    let api = Arc::new(UsersApi {
        loop_at: Some(30),
        ..UsersApi::default()
    });
    let mut users = Paginator::new(users_service(api.clone()), users_cursor())
        .prefetch(1)
        .items();
    let (got, err) = until_error(&mut users).await;
    assert!(users.next().await.is_none());
    // None -> 10 -> 20 -> 30, whose page points back at 10.
    assert_eq!(ids(&got), (0..40).collect::<Vec<_>>());
    let walk = err.downcast_ref::<WalkError>().expect("a WalkError");
    assert!(
        matches!(walk, WalkError::LoopDetected { kind: "cursor", repeated } if repeated == "10"),
        "{walk:?}"
    );
    assert_eq!(api.asked().len(), 4, "nothing asked after the loop");
    assert!(users.checkpoint().is_none());
}

#[tokio::test]
async fn a_walk_over_the_services_own_response_resumes_from_its_checkpoint() {
    let api = Arc::new(UsersApi {
        fail_once_at: Mutex::new(Some(50)),
        ..UsersApi::default()
    });
    let mut pages = Paginator::new(users_service(api.clone()), users_cursor())
        .prefetch(1)
        .pages();
    let (before, err) = until_error(&mut pages).await;
    let mut all: Vec<_> = before.into_iter().flat_map(|page| page.users).collect();
    assert!(err.to_string().contains("users page 50 is down"), "{err}");
    assert!(pages.next().await.is_none());
    let checkpoint = pages.checkpoint().cloned().unwrap();
    assert_eq!(checkpoint, CursorRequest::from("50"));
    drop(pages);

    let rest: Vec<Item> = Paginator::new(users_service(api.clone()), users_cursor())
        .resume(checkpoint)
        .items()
        .try_collect()
        .await
        .unwrap();
    all.extend(rest);
    assert_eq!(ids(&all), (0..USERS).collect::<Vec<_>>());
    let asked = api.asked();
    assert_eq!(
        asked.iter().filter(|c| c.is_none()).count(),
        1,
        "not restarted"
    );
    let fifty = Some("50".to_owned());
    assert_eq!(asked.iter().filter(|&c| *c == fifty).count(), 2);
}

#[tokio::test]
async fn max_items_cuts_the_services_own_response_short() {
    let api = Arc::new(UsersApi::default());
    let pages: Vec<UsersPage> = Paginator::new(users_service(api.clone()), users_cursor())
        .max_items(25)
        .pages()
        .try_collect()
        .await
        .unwrap();
    let lens: Vec<usize> = pages.iter().map(|p| p.users.len()).collect();
    assert_eq!(lens, [10, 10, 5]);
    assert_eq!(pages[2].total, USERS, "the rest of the response is kept");
    assert_eq!(api.asked().len(), 3);
}

#[tokio::test]
async fn page_numbers_walk_a_service_answering_a_plain_vec() {
    let svc = service_fn(|r: PageRequest| async move {
        let first = (r.page - 1) * r.per_page;
        Ok::<_, BoxError>((first..(first + r.per_page).min(45)).collect::<Vec<u64>>())
    });
    let all: Vec<u64> = Paginator::new(svc, PageNumber::new(1, 10))
        .prefetch(1)
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all, (0..45).collect::<Vec<_>>());
}

// ------------------------------------------------------------------ bounds and cancellation

#[tokio::test]
async fn max_pages_and_max_items_bound_the_requests() {
    let server = common::upstream(UpstreamConfig::default()).await;
    let pages: Vec<Page<Item>> = Paginator::new(
        page_number_service(server.url("/items")),
        PageNumber::new(1, 100),
    )
    .max_pages(3)
    .prefetch(4)
    .pages()
    .try_collect()
    .await
    .unwrap();
    assert_eq!(pages.len(), 3);
    assert_eq!(
        server.requests(),
        3,
        "no request past max_pages, even prefetched"
    );

    let items: Vec<Item> = Paginator::new(
        page_number_service(server.url("/items")),
        PageNumber::new(1, 100),
    )
    .max_items(250)
    .items()
    .try_collect()
    .await
    .unwrap();
    assert_eq!(ids(&items), (1..=250).collect::<Vec<_>>());
    assert_eq!(server.requests(), 6);

    let none: Vec<Item> = Paginator::new(
        page_number_service(server.url("/items")),
        PageNumber::new(1, 100),
    )
    .max_items(0)
    .items()
    .try_collect()
    .await
    .unwrap();
    assert!(none.is_empty());
    assert_eq!(server.requests(), 6);
}

/// Counts live page futures: incremented on creation, decremented on drop.
struct Live(Arc<AtomicUsize>);
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_requests_in_flight() {
    let live = Arc::new(AtomicUsize::new(0));
    let counter = live.clone();
    let svc = service_fn(move |r: PageRequest| {
        counter.fetch_add(1, Ordering::SeqCst);
        let guard = Live(counter.clone());
        async move {
            let _guard = guard;
            let delay = if r.page == 1 { 10 } else { 10_000 };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok::<_, BoxError>(Page::new(vec![r.page; 10]))
        }
    });
    let mut pages = Paginator::new(svc, PageNumber::new(1, 10))
        .prefetch(3)
        .pages();
    assert_eq!(pages.next().await.unwrap().unwrap().items(), &[1; 10]);
    tokio::task::yield_now().await;
    assert_eq!(live.load(Ordering::SeqCst), 3, "three pages prefetched");
    drop(pages);
    // Aborted tasks drop their futures at the runtime's next turn.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        live.load(Ordering::SeqCst),
        0,
        "dropping the stream dropped every request"
    );
}

#[tokio::test]
async fn poll_ready_is_called_before_each_page() {
    // ConcurrencyLimit reserves its permit in poll_ready and panics on a call
    // without one: a walk with prefetch must go through readiness.
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(slow_pages(in_flight, max.clone()));
    let items: Vec<u64> = Paginator::new(svc, PageNumber::new(1, 100))
        .prefetch(3)
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(items, (0..1000).collect::<Vec<_>>());
    assert_eq!(max.load(Ordering::SeqCst), 1, "the limit held");
}

/// A page service that is ready for `left` calls, then fails readiness.
struct BreaksAfter {
    left: usize,
}

impl tower::Service<PageRequest> for BreaksAfter {
    type Response = Page<u64>;
    type Error = BoxError;
    type Future = std::future::Ready<Result<Page<u64>, BoxError>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(if self.left > 0 {
            Ok(())
        } else {
            Err("upstream is gone".into())
        })
    }

    fn call(&mut self, r: PageRequest) -> Self::Future {
        self.left = self.left.checked_sub(1).expect("called without readiness");
        std::future::ready(Ok(Page::new(vec![r.page; 2])))
    }
}

#[tokio::test]
async fn a_service_that_fails_readiness_ends_the_walk_after_earlier_pages() {
    for prefetch in [0, 2] {
        let mut pages = Paginator::new(BreaksAfter { left: 2 }, PageNumber::new(1, 2))
            .prefetch(prefetch)
            .pages();
        let results: Vec<_> = (&mut pages).collect().await;
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].as_ref().unwrap().items(), &[1, 1]);
        assert_eq!(results[1].as_ref().unwrap().items(), &[2, 2]);
        assert_eq!(
            results[2].as_ref().unwrap_err().to_string(),
            "upstream is gone"
        );
        assert_eq!(pages.checkpoint().map(|c| c.page), Some(3));
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_not_ready_yet_is_waited_for() {
    // A rate limit of one page per second: the walk waits in poll_ready
    // between pages instead of ending early.
    let svc = ServiceBuilder::new()
        .rate_limit(1, Duration::from_secs(1))
        .service(service_fn(|r: PageRequest| async move {
            let items = if r.page <= 3 { vec![r.page; 5] } else { vec![] };
            Ok::<_, BoxError>(Page::new(items))
        }));
    let start = Instant::now();
    let items: Vec<u64> = Paginator::new(svc, PageNumber::new(1, 5))
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(items, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

/// Ready after being polled `n` times (waking itself in between).
struct ReadyAfter<T> {
    polls: u64,
    value: Option<T>,
}

impl<T: Unpin> std::future::Future for ReadyAfter<T> {
    type Output = T;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<T> {
        if self.polls == 0 {
            return std::task::Poll::Ready(self.value.take().expect("polled after completion"));
        }
        self.polls -= 1;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[test]
fn without_a_runtime_prefetched_pages_still_arrive_in_order() {
    // Later pages finish first (fewer polls needed); no tokio runtime, so the
    // stream polls its prefetched requests itself and must reorder them.
    let polls = Arc::new(Mutex::new(Vec::new()));
    let log = polls.clone();
    let svc = service_fn(move |r: PageRequest| {
        log.lock().unwrap().push(r.page);
        let items: Vec<u64> = if r.page <= 8 { vec![r.page; 4] } else { vec![] };
        ReadyAfter {
            polls: 20u64.saturating_sub(2 * r.page),
            value: Some(Ok::<_, BoxError>(Page::new(items))),
        }
    });
    let pages: Vec<Vec<u64>> = futures::executor::block_on(
        Paginator::new(svc, PageNumber::new(1, 4))
            .prefetch(3)
            .pages()
            .map_ok(Page::into_items)
            .try_collect(),
    )
    .unwrap();
    let firsts: Vec<u64> = pages
        .iter()
        .map(|p| p.first().copied().unwrap_or(0))
        .collect();
    assert_eq!(firsts, [1, 2, 3, 4, 5, 6, 7, 8, 0]);
    let sent = polls.lock().unwrap().clone();
    assert_eq!(&sent[..9], &[1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(
        sent.len() <= 12,
        "at most prefetch requests past the end: {sent:?}"
    );
}

#[tokio::test]
async fn walks_the_shared_flaky_upstream_with_retries() {
    let upstream = common::flaky_upstream(0.5).await;
    let expected: Vec<u64> = (1..=1000).collect();

    // Link headers, retried per page.
    let svc = ServiceBuilder::new()
        .layer(retry_transient(31))
        .service(JsonPages::<Item>::new(client()));
    let first: Uri = upstream
        .url("/items/link?page=1&per_page=90")
        .parse()
        .unwrap();
    let items: Vec<Item> = Paginator::new(svc, LinkHeader::new(first))
        .prefetch(1)
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&items), expected);

    // Page numbers over the same page service.
    let base = upstream.url("/items");
    let svc = ServiceBuilder::new()
        .layer(retry_transient(31))
        .map_request(move |r: PageRequest| -> Uri {
            format!("{base}?page={}&per_page={}", r.page, r.per_page)
                .parse()
                .unwrap()
        })
        .service(JsonPages::<Item>::new(client()));
    let items: Vec<Item> = Paginator::new(svc, PageNumber::new(1, 128))
        .prefetch(2)
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&items), expected);
    assert!(
        upstream.failures_sent() > 0,
        "the upstream did fail some pages"
    );
    upstream.shutdown().await;
}

#[tokio::test]
async fn json_pages_read_items_and_cursor_from_an_object_body() {
    // The cursor style without a hand-written service: JsonPages finds the
    // items and the next cursor in the body by JSON pointer.
    let server = common::upstream(UpstreamConfig::default()).await;
    let base = server.url("/items/cursor?limit=128");
    let svc = ServiceBuilder::new()
        .map_request(move |r: CursorRequest| -> Uri {
            let cursor = r.cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            format!("{base}{cursor}").parse().unwrap()
        })
        .service(
            JsonPages::<Item>::new(client())
                .items_at("/items")
                .next_at("/next_cursor"),
        );
    let items: Vec<Item> = Paginator::new(svc, Cursor::from_page())
        .prefetch(1)
        .items()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ids(&items), (1..=1000).collect::<Vec<_>>());
    assert_eq!(server.requests(), 8);

    // A pointer to nothing is a decode error naming the pointer.
    let first: Uri = server.url("/items/cursor").parse().unwrap();
    let err = Paginator::new(
        JsonPages::<Item>::new(client()).items_at("/nope"),
        LinkHeader::new(first),
    )
    .items()
    .next()
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("\"/nope\""), "{err}");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;
    use tower_patterns::paginate::parse_next_link;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn link_parsing_accepts_any_header_bytes(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'<'), Just(b'>'), Just(b';'), Just(b','), Just(b'"'), Just(b'\\'),
                    Just(b'='), Just(b' '), Just(b'\t'), 0x21u8..0x7f, 0x80u8..=0xff
                ],
                0..64,
            ),
            prefix in "(<[a-z/?=&.]{0,12}>; ?rel=\"?next\"?)?",
        ) {
            let mut value = prefix.into_bytes();
            value.extend(bytes);
            if let Ok(value) = http::HeaderValue::from_bytes(&value) {
                let mut headers = http::HeaderMap::new();
                headers.insert(http::header::LINK, value);
                let _ = parse_next_link(&headers);
            }
        }

        #[test]
        fn resolution_accepts_any_reference(reference in "[a-z:/?#.%@\\[\\]0-9 ]{0,40}") {
            let base: Uri = "http://api.test/v1/items/list?page=3".parse().unwrap();
            let mut headers = http::HeaderMap::new();
            headers.insert(
                http::header::LINK,
                format!("<{reference}>; rel=\"next\"").parse().unwrap(),
            );
            let page = Page::<u8>::new(vec![1]).with_headers(headers);
            let mut walk = LinkHeader::new(base.clone());
            // Whatever the reference, resolving it never panics, and the
            // fragment is gone.
            if let Ok(Some(resolved)) = paginate::Strategy::<u8>::next(&mut walk, &base, &page) {
                prop_assert!(!resolved.to_string().contains('#'));
            }
        }
    }

    #[test]
    fn a_link_with_an_unterminated_quote_at_the_end() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::LINK, r#"</a>; rel="next"#.parse().unwrap());
        assert_eq!(parse_next_link(&headers).as_deref(), Some("/a"));
    }
}
