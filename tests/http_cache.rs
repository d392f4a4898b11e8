//! `http_cache::HttpCacheLayer`: one test per directive family of RFC 9111,
//! against an in-process origin that records what reaches it, with paused
//! time for freshness and ages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_patterns::http_cache::{HttpCacheBody, HttpCacheLayer};

type Handler = dyn Fn(&Parts, usize) -> Result<Response<Full<Bytes>>, BoxError> + Send + Sync;

/// An origin answering with `handler(request, n)` (n counts from 1), and
/// the request heads that reached it.
#[derive(Clone)]
struct Origin {
    seen: Arc<Mutex<Vec<Parts>>>,
    handler: Arc<Handler>,
}

impl Origin {
    fn new(
        handler: impl Fn(&Parts, usize) -> Result<Response<Full<Bytes>>, BoxError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Origin {
            seen: Arc::default(),
            handler: Arc::new(handler),
        }
    }

    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn last(&self) -> Parts {
        let seen = self.seen.lock().unwrap();
        let p = seen.last().expect("a request reached the origin");
        let mut req = Request::new(());
        *req.method_mut() = p.method.clone();
        *req.uri_mut() = p.uri.clone();
        *req.headers_mut() = p.headers.clone();
        req.into_parts().0
    }

    fn service(
        &self,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = BoxError,
        Future = impl Send,
    > + Clone
           + Send
           + 'static {
        let this = self.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let (parts, _) = req.into_parts();
            let n = {
                let mut seen = this.seen.lock().unwrap();
                let mut copy = Request::new(());
                *copy.method_mut() = parts.method.clone();
                *copy.uri_mut() = parts.uri.clone();
                *copy.headers_mut() = parts.headers.clone();
                seen.push(copy.into_parts().0);
                seen.len()
            };
            let out = (this.handler)(&parts, n);
            async move { out }
        })
    }
}

/// A response with these fields and body.
fn res(
    status: u16,
    fields: &[(&str, &str)],
    body: &str,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let mut b = Response::builder().status(status);
    for (k, v) in fields {
        b = b.header(*k, *v);
    }
    Ok(b.body(Full::new(Bytes::from(body.to_owned())))?)
}

fn req(method: &str, path: &str, fields: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://origin.test{path}"));
    for (k, v) in fields {
        b = b.header(*k, *v);
    }
    b.body(Full::default()).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn field(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

async fn send<S>(svc: &mut S, r: Request<Full<Bytes>>) -> Answer
where
    S: Service<
        Request<Full<Bytes>>,
        Response = Response<HttpCacheBody<Full<Bytes>>>,
        Error = BoxError,
    >,
{
    let res = svc.ready().await.unwrap().call(r).await.unwrap();
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get<S>(svc: &mut S, path: &str) -> Answer
where
    S: Service<
        Request<Full<Bytes>>,
        Response = Response<HttpCacheBody<Full<Bytes>>>,
        Error = BoxError,
    >,
{
    send(svc, req("GET", path, &[])).await
}

fn counting(fields: &'static [(&'static str, &'static str)]) -> Origin {
    Origin::new(move |_, n| res(200, fields, &format!("#{n}")))
}

fn layer() -> HttpCacheLayer {
    HttpCacheLayer::builder().build().unwrap()
}

// ---------------------------------------------------------------------------
// Authorization, private, shared vs private.

#[tokio::test(start_paused = true)]
async fn a_response_to_an_authorized_request_is_not_served_to_another_unless_it_allows_it() {
    let origin = Origin::new(|p, n| {
        let cc = match p.uri.path() {
            "/plain" => "max-age=60",
            "/public" => "public, max-age=60",
            "/s-maxage" => "s-maxage=60",
            _ => "max-age=60, must-revalidate",
        };
        res(200, &[("cache-control", cc)], &format!("#{n}"))
    });
    let mut svc = layer().layer(origin.service());
    let auth = [("authorization", "Bearer alice")];

    let a = send(&mut svc, req("GET", "/plain", &auth)).await;
    let b = get(&mut svc, "/plain").await;
    assert_eq!((a.body.as_ref(), b.body.as_ref()), (&b"#1"[..], &b"#2"[..]));
    assert_eq!(
        origin.calls(),
        2,
        "alice's answer must not reach an anonymous request"
    );

    for path in ["/public", "/s-maxage", "/must-revalidate"] {
        let before = origin.calls();
        send(&mut svc, req("GET", path, &auth)).await;
        get(&mut svc, path).await;
        assert_eq!(origin.calls(), before + 1, "{path} allows sharing");
    }
}

#[tokio::test(start_paused = true)]
async fn private_responses_are_kept_by_a_private_cache_only() {
    let fields: &[(&str, &str)] = &[("cache-control", "private, max-age=60")];
    let origin = counting(fields);
    let mut shared = layer().layer(origin.service());
    get(&mut shared, "/p").await;
    get(&mut shared, "/p").await;
    assert_eq!(origin.calls(), 2);

    let origin = counting(fields);
    let private = HttpCacheLayer::builder().shared(false).build().unwrap();
    let mut svc = private.layer(origin.service());
    get(&mut svc, "/p").await;
    let b = get(&mut svc, "/p").await;
    assert_eq!((origin.calls(), b.body.as_ref()), (1, &b"#1"[..]));
}

// ---------------------------------------------------------------------------
// Vary.

#[tokio::test(start_paused = true)]
async fn vary_accept_encoding_keeps_two_variants_apart() {
    let origin = Origin::new(|p, _| {
        let enc = p
            .headers
            .get("accept-encoding")
            .map_or("identity", |v| v.to_str().unwrap());
        res(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
            enc,
        )
    });
    let mut svc = layer().layer(origin.service());
    let gzip = [("accept-encoding", "gzip")];
    let br = [("accept-encoding", "br")];
    assert_eq!(send(&mut svc, req("GET", "/v", &gzip)).await.body, "gzip");
    assert_eq!(send(&mut svc, req("GET", "/v", &br)).await.body, "br");
    assert_eq!(
        origin.calls(),
        2,
        "a gzip answer must not serve a br request"
    );
    assert_eq!(send(&mut svc, req("GET", "/v", &gzip)).await.body, "gzip");
    assert_eq!(send(&mut svc, req("GET", "/v", &br)).await.body, "br");
    // Spelled differently, the same selection.
    assert_eq!(
        send(&mut svc, req("GET", "/v", &[("accept-encoding", " GZIP ")]))
            .await
            .body,
        "gzip"
    );
    assert_eq!(origin.calls(), 2);
    assert_eq!(get(&mut svc, "/v").await.body, "identity");
    assert_eq!(origin.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn vary_star_is_never_served() {
    let origin = counting(&[("cache-control", "max-age=60"), ("vary", "*")]);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/s").await;
    get(&mut svc, "/s").await;
    assert_eq!(origin.calls(), 2);
}

// ---------------------------------------------------------------------------
// The scheme.

#[tokio::test(start_paused = true)]
async fn an_answer_over_http_is_not_served_to_the_same_uri_over_https() {
    // The common upgrade: `http://` answers a lasting redirect to
    // `https://`. Served from the store to the `https://` request, it would
    // send the client where it already is, for good.
    let origin = Origin::new(|p, n| match p.uri.scheme_str() {
        Some("http") => res(
            301,
            &[
                ("cache-control", "max-age=3600"),
                ("location", "https://origin.test/r"),
            ],
            "",
        ),
        _ => res(200, &[("cache-control", "max-age=60")], &format!("#{n}")),
    });
    let mut svc = layer().layer(origin.service());
    let at = |uri: &str| Request::get(uri).body(Full::default()).unwrap();
    let plain = send(&mut svc, at("http://origin.test/r")).await;
    assert_eq!(plain.status, StatusCode::MOVED_PERMANENTLY);
    let secure = send(&mut svc, at("https://origin.test/r")).await;
    assert_eq!(
        (secure.status, secure.body.as_ref()),
        (StatusCode::OK, &b"#2"[..])
    );
    // Each is then served from the store to its own scheme.
    assert_eq!(send(&mut svc, at("https://origin.test/r")).await.body, "#2");
    let again = send(&mut svc, at("http://origin.test/r")).await;
    assert_eq!(again.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(origin.calls(), 2);
    // A request in origin form (as a server sees one: no scheme) is not
    // told apart: it is served the newest that fits.
    let server_side = Request::get("/r")
        .header("host", "origin.test")
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&mut svc, server_side).await.body, "#2");
    assert_eq!(origin.calls(), 2);
    // An unsafe request invalidates the URI under either scheme.
    let post = Request::post("https://origin.test/r")
        .body(Full::default())
        .unwrap();
    send(&mut svc, post).await;
    send(&mut svc, at("http://origin.test/r")).await;
    assert_eq!(origin.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_host_of_its_own_is_a_resource_of_its_own() {
    // One address, two virtual hosts: the client names the host in `Host`.
    let origin = Origin::new(|p, _| {
        let host = p
            .headers
            .get("host")
            .map_or("(none)", |h| h.to_str().unwrap());
        res(200, &[("cache-control", "max-age=60")], host)
    });
    let mut svc = layer().layer(origin.service());
    let to = |host: Option<&str>| {
        let mut b = Request::get("http://10.0.0.1/page");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(Full::default()).unwrap()
    };
    assert_eq!(send(&mut svc, to(Some("a.test"))).await.body, "a.test");
    assert_eq!(send(&mut svc, to(Some("b.test"))).await.body, "b.test");
    assert_eq!(origin.calls(), 2, "b.test's page is not a.test's");
    // Each from the store, however its host is spelled.
    assert_eq!(send(&mut svc, to(Some("A.Test"))).await.body, "a.test");
    assert_eq!(send(&mut svc, to(Some("b.test"))).await.body, "b.test");
    assert_eq!(origin.calls(), 2);
    // Without a `Host`, the URI's authority is the host.
    assert_eq!(send(&mut svc, to(None)).await.body, "(none)");
    assert_eq!(send(&mut svc, to(Some("10.0.0.1"))).await.body, "(none)");
    assert_eq!(origin.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_request_with_directives_is_served_under_any_spelling_of_the_stored_uri() {
    // A request with directives of its own is answered by the stored
    // response's policy, which compares URIs as the key does: the host
    // without case, user information (never sent) left out.
    let origin = counting(&[("cache-control", "max-age=60")]);
    let mut svc = layer().layer(origin.service());
    let at = |uri: &str| {
        Request::get(uri)
            .header("cache-control", "max-age=100")
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(get(&mut svc, "/s").await.body, "#1");
    for uri in [
        "http://origin.test/s",
        "http://ORIGIN.Test/s",
        "http://user:secret@origin.test/s",
    ] {
        assert_eq!(send(&mut svc, at(uri)).await.body, "#1", "{uri}");
    }
    assert_eq!(origin.calls(), 1);
    // Another path under the same host is another resource.
    assert_eq!(send(&mut svc, at("http://origin.test/t")).await.body, "#2");
}

// ---------------------------------------------------------------------------
// Freshness: max-age, s-maxage, Expires, Age, heuristics.

#[tokio::test(start_paused = true)]
async fn max_age_counts_the_age_the_response_arrived_with_and_age_grows() {
    let origin = counting(&[("cache-control", "max-age=10"), ("age", "4")]);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/m").await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let hit = get(&mut svc, "/m").await;
    assert_eq!((origin.calls(), hit.field("age")), (1, "7"));
    tokio::time::advance(Duration::from_secs(4)).await; // age 11 > 10
    get(&mut svc, "/m").await;
    assert_eq!(origin.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn expires_is_counted_from_date_and_max_age_wins_over_it() {
    let origin = Origin::new(|p, n| {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let expires = httpdate::fmt_http_date(now + Duration::from_secs(100));
        let mut fields = vec![("date", date.as_str()), ("expires", expires.as_str())];
        if p.uri.path() == "/both" {
            fields.push(("cache-control", "max-age=0"));
        }
        res(200, &fields, &format!("#{n}"))
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/e").await;
    tokio::time::advance(Duration::from_secs(50)).await;
    get(&mut svc, "/e").await;
    assert_eq!(origin.calls(), 1);
    tokio::time::advance(Duration::from_secs(52)).await;
    get(&mut svc, "/e").await;
    assert_eq!(origin.calls(), 2, "past Expires");

    get(&mut svc, "/both").await;
    get(&mut svc, "/both").await;
    assert_eq!(origin.calls(), 4, "max-age=0 overrides a future Expires");
}

#[tokio::test(start_paused = true)]
async fn s_maxage_governs_a_shared_cache_only() {
    let fields: &[(&str, &str)] = &[("cache-control", "max-age=100, s-maxage=5")];
    let origin = counting(fields);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/s").await;
    tokio::time::advance(Duration::from_secs(6)).await;
    get(&mut svc, "/s").await;
    assert_eq!(origin.calls(), 2);

    let origin = counting(fields);
    let mut svc = HttpCacheLayer::builder()
        .shared(false)
        .build()
        .unwrap()
        .layer(origin.service());
    get(&mut svc, "/s").await;
    tokio::time::advance(Duration::from_secs(6)).await;
    get(&mut svc, "/s").await;
    assert_eq!(origin.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn heuristic_freshness_is_a_tenth_of_the_time_since_last_modified() {
    let origin = Origin::new(|_, n| {
        let now = SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let lm = httpdate::fmt_http_date(now - Duration::from_secs(1000));
        res(
            200,
            &[("date", &date), ("last-modified", &lm)],
            &format!("#{n}"),
        )
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/h").await;
    tokio::time::advance(Duration::from_secs(90)).await;
    get(&mut svc, "/h").await;
    assert_eq!(origin.calls(), 1);
    tokio::time::advance(Duration::from_secs(20)).await;
    get(&mut svc, "/h").await;
    assert_eq!(origin.calls(), 2);
}

// ---------------------------------------------------------------------------
// no-store, no-cache.

#[tokio::test(start_paused = true)]
async fn no_store_in_the_response_or_the_request_is_never_stored() {
    let origin = counting(&[("cache-control", "no-store, max-age=60")]);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/n").await;
    get(&mut svc, "/n").await;
    assert_eq!(origin.calls(), 2);

    let origin = counting(&[("cache-control", "max-age=60")]);
    let mut svc = layer().layer(origin.service());
    send(&mut svc, req("GET", "/r", &[("cache-control", "no-store")])).await;
    get(&mut svc, "/r").await;
    assert_eq!(origin.calls(), 2);
    assert_eq!(svc.stats().stored, 1);
}

#[tokio::test(start_paused = true)]
async fn response_no_cache_is_stored_but_revalidated_on_every_use() {
    let origin = Origin::new(|p, _| {
        if p.headers.get("if-none-match").is_some_and(|v| v == "\"x\"") {
            return res(304, &[("etag", "\"x\"")], "");
        }
        res(
            200,
            &[("cache-control", "no-cache, max-age=60"), ("etag", "\"x\"")],
            "body",
        )
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/nc").await;
    let b = get(&mut svc, "/nc").await;
    assert_eq!((b.status, b.body.as_ref()), (StatusCode::OK, &b"body"[..]));
    assert_eq!(origin.calls(), 2);
    assert_eq!(origin.last().headers["if-none-match"], "\"x\"");
    assert_eq!(svc.stats().not_modified, 1);
}

// ---------------------------------------------------------------------------
// Conditional revalidation and 304s.

#[tokio::test(start_paused = true)]
async fn a_304_refreshes_the_stored_fields_and_reuses_the_body() {
    let origin = Origin::new(|p, n| {
        if p.headers
            .get("if-none-match")
            .is_some_and(|v| v == "\"v1\"")
        {
            let version = format!("{n}");
            return res(
                304,
                &[
                    ("cache-control", "max-age=10"),
                    ("etag", "\"v1\""),
                    ("x-version", &version),
                    ("content-length", "999"),
                ],
                "",
            );
        }
        res(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("etag", "\"v1\""),
                ("x-version", "1"),
                ("content-length", "8"),
            ],
            "the body",
        )
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/c").await;
    tokio::time::advance(Duration::from_secs(11)).await;
    let b = get(&mut svc, "/c").await;
    assert_eq!(origin.calls(), 2);
    assert_eq!(origin.last().headers["if-none-match"], "\"v1\"");
    assert_eq!(
        (b.status, b.body.as_ref()),
        (StatusCode::OK, &b"the body"[..])
    );
    assert_eq!(
        b.field("x-version"),
        "2",
        "the 304's field replaces the stored one"
    );
    assert_eq!(b.field("content-length"), "8", "but not Content-Length");
    // Fresh again for 10 s, with the refreshed field.
    tokio::time::advance(Duration::from_secs(5)).await;
    let c = get(&mut svc, "/c").await;
    assert_eq!((origin.calls(), c.field("x-version")), (2, "2"));
}

#[tokio::test(start_paused = true)]
async fn last_modified_is_sent_back_as_if_modified_since() {
    const LM: &str = "Wed, 01 Jan 2020 00:00:00 GMT";
    let origin = Origin::new(|p, _| {
        if p.headers.get("if-modified-since").is_some_and(|v| v == LM) {
            return res(304, &[("cache-control", "max-age=10")], "");
        }
        res(
            200,
            &[("cache-control", "max-age=10"), ("last-modified", LM)],
            "lm",
        )
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/lm").await;
    tokio::time::advance(Duration::from_secs(11)).await;
    let b = get(&mut svc, "/lm").await;
    assert_eq!((b.status, b.body.as_ref()), (StatusCode::OK, &b"lm"[..]));
    assert_eq!(origin.last().headers["if-modified-since"], LM);
}

#[tokio::test(start_paused = true)]
async fn a_clients_own_conditions_are_answered_304_from_the_store() {
    let origin = counting(&[("cache-control", "max-age=60"), ("etag", "W/\"e\"")]);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/inm").await;
    let b = send(
        &mut svc,
        req("GET", "/inm", &[("if-none-match", "\"a\", \"e\"")]),
    )
    .await;
    assert_eq!(
        (b.status, b.body.len(), b.field("etag")),
        (StatusCode::NOT_MODIFIED, 0, "W/\"e\"")
    );
    let c = send(
        &mut svc,
        req("GET", "/inm", &[("if-none-match", "\"other\"")]),
    )
    .await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(origin.calls(), 1);
}

// ---------------------------------------------------------------------------
// Request directives.

#[tokio::test(start_paused = true)]
async fn request_directives_no_cache_max_age_min_fresh_max_stale_only_if_cached() {
    let origin = counting(&[("cache-control", "max-age=10")]);
    let mut svc = layer().layer(origin.service());
    let only = [("cache-control", "only-if-cached")];
    let gw = send(&mut svc, req("GET", "/q", &only)).await;
    assert_eq!(
        (gw.status, origin.calls()),
        (StatusCode::GATEWAY_TIMEOUT, 0)
    );

    get(&mut svc, "/q").await;
    assert_eq!(
        send(&mut svc, req("GET", "/q", &only)).await.status,
        StatusCode::OK
    );
    send(&mut svc, req("GET", "/q", &[("cache-control", "no-cache")])).await;
    assert_eq!(origin.calls(), 2, "no-cache goes to the origin");

    tokio::time::advance(Duration::from_secs(5)).await;
    send(
        &mut svc,
        req("GET", "/q", &[("cache-control", "max-age=2")]),
    )
    .await;
    assert_eq!(origin.calls(), 3, "max-age=2 refuses an answer 5 s old");
    tokio::time::advance(Duration::from_secs(5)).await;
    send(
        &mut svc,
        req("GET", "/q", &[("cache-control", "min-fresh=8")]),
    )
    .await;
    assert_eq!(origin.calls(), 4, "min-fresh=8 refuses one 5 s from stale");

    tokio::time::advance(Duration::from_secs(15)).await; // stale by 5
    let stale = send(
        &mut svc,
        req("GET", "/q", &[("cache-control", "max-stale=60")]),
    )
    .await;
    assert_eq!((origin.calls(), stale.body.as_ref()), (4, &b"#4"[..]));
    let gw = send(&mut svc, req("GET", "/q", &only)).await;
    assert_eq!(
        gw.status,
        StatusCode::GATEWAY_TIMEOUT,
        "stale and only-if-cached"
    );
    assert_eq!(origin.calls(), 4);
}

// ---------------------------------------------------------------------------
// Unsafe methods.

#[tokio::test(start_paused = true)]
async fn a_successful_post_invalidates_the_uri_and_its_location() {
    let origin = Origin::new(|p, n| match p.method.as_str() {
        "POST" if p.uri.path() == "/fail" => res(500, &[], ""),
        "POST" => res(
            201,
            &[
                ("location", "/b"),
                ("content-location", "http://elsewhere.test/c"),
            ],
            "",
        ),
        _ => res(200, &[("cache-control", "max-age=60")], &format!("#{n}")),
    });
    let mut svc = layer().layer(origin.service());
    for path in ["/a", "/b", "/fail"] {
        get(&mut svc, path).await;
    }
    assert_eq!(origin.calls(), 3);
    send(&mut svc, req("POST", "/fail", &[])).await;
    get(&mut svc, "/fail").await;
    assert_eq!(origin.calls(), 4, "a failed POST invalidates nothing");

    send(&mut svc, req("POST", "/a", &[])).await;
    get(&mut svc, "/a").await;
    get(&mut svc, "/b").await;
    assert_eq!(
        origin.calls(),
        7,
        "both the target and its Location went stale"
    );
    assert_eq!(svc.stats().invalidations, 2);

    for method in ["PUT", "DELETE", "PATCH"] {
        let before = origin.calls();
        get(&mut svc, "/a").await;
        send(&mut svc, req(method, "/a", &[])).await;
        get(&mut svc, "/a").await;
        assert_eq!(origin.calls(), before + 2, "{method} invalidates");
    }
}

// ---------------------------------------------------------------------------
// HEAD, stale serving, large bodies, Cache-Status, the handle.

#[tokio::test(start_paused = true)]
async fn head_is_answered_from_a_stored_get() {
    let origin = counting(&[("cache-control", "max-age=60"), ("content-length", "2")]);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/h").await;
    let head = send(&mut svc, req("HEAD", "/h", &[])).await;
    assert_eq!(
        (head.status, head.body.len(), head.field("content-length")),
        (StatusCode::OK, 0, "2")
    );
    assert_eq!(origin.calls(), 1);

    // A HEAD that misses goes on as a HEAD; its bodiless answer is not
    // stored for GETs.
    send(&mut svc, req("HEAD", "/first-head", &[])).await;
    assert_eq!(origin.last().method, "HEAD");
    let body = get(&mut svc, "/first-head").await.body;
    assert_eq!((origin.calls(), body.as_ref()), (3, &b"#3"[..]));
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_stored_response_when_the_origin_fails() {
    let origin = Origin::new(|_, n| match n {
        1 => res(
            200,
            &[("cache-control", "max-age=1, stale-if-error=60")],
            "good",
        ),
        2 => res(503, &[], "down"),
        3 => Err("connection reset".into()),
        _ => res(503, &[], "down"),
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/sie").await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let a = get(&mut svc, "/sie").await;
    assert_eq!((a.status, a.body.as_ref()), (StatusCode::OK, &b"good"[..]));
    let b = get(&mut svc, "/sie").await;
    assert_eq!((b.status, b.body.as_ref()), (StatusCode::OK, &b"good"[..]));
    tokio::time::advance(Duration::from_secs(60)).await;
    let c = get(&mut svc, "/sie").await;
    assert_eq!(c.status, StatusCode::SERVICE_UNAVAILABLE, "past the window");
    assert_eq!(svc.stats().stale_served, 2);
}

#[tokio::test(start_paused = true)]
async fn must_revalidate_forbids_stale_if_error() {
    let origin = Origin::new(|_, n| match n {
        1 => res(
            200,
            &[(
                "cache-control",
                "max-age=1, must-revalidate, stale-if-error=60",
            )],
            "good",
        ),
        _ => res(503, &[], "down"),
    });
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/mr").await;
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        get(&mut svc, "/mr").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let origin = counting(&[("cache-control", "max-age=1, stale-while-revalidate=30")]);
    let mut svc = layer().layer(origin.service());
    get(&mut svc, "/swr").await;
    tokio::time::advance(Duration::from_secs(3)).await;
    let stale = get(&mut svc, "/swr").await;
    assert_eq!(stale.body, "#1");
    // The refresh runs in its own task.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(origin.calls(), 2);
    let fresh = get(&mut svc, "/swr").await;
    assert_eq!((fresh.body.as_ref(), origin.calls()), (&b"#2"[..], 2));
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_streams_through_uncached() {
    let big = "x".repeat(100);
    let origin = Origin::new(move |p, _| {
        let body = if p.uri.path() == "/big" {
            big.as_str()
        } else {
            "small"
        };
        res(200, &[("cache-control", "max-age=60")], body)
    });
    let mut svc = HttpCacheLayer::builder()
        .max_body_bytes(16)
        .build()
        .unwrap()
        .layer(origin.service());
    assert_eq!(get(&mut svc, "/big").await.body.len(), 100);
    assert_eq!(get(&mut svc, "/big").await.body.len(), 100);
    get(&mut svc, "/small").await;
    get(&mut svc, "/small").await;
    assert_eq!(origin.calls(), 3);
    assert_eq!(svc.stats().too_large, 2);
}

#[tokio::test(start_paused = true)]
async fn cache_status_is_off_by_default_and_says_what_happened_when_on() {
    let origin = counting(&[("cache-control", "max-age=60")]);
    let mut svc = layer().layer(origin.service());
    assert_eq!(get(&mut svc, "/cs").await.field("cache-status"), "");

    let origin = counting(&[("cache-control", "max-age=60")]);
    let mut svc = HttpCacheLayer::builder()
        .cache_status(true)
        .name("edge")
        .build()
        .unwrap()
        .layer(origin.service());
    assert_eq!(
        get(&mut svc, "/cs").await.field("cache-status"),
        "edge; fwd=uri-miss; stored"
    );
    assert_eq!(
        get(&mut svc, "/cs").await.field("cache-status"),
        "edge; hit; ttl=60"
    );
}

#[tokio::test(start_paused = true)]
async fn the_handle_invalidates_and_clears() {
    let origin = counting(&[("cache-control", "max-age=60")]);
    let layer = layer();
    let handle = layer.handle();
    let mut svc = layer.layer(origin.service());
    get(&mut svc, "/x").await;
    get(&mut svc, "/y").await;
    assert!(handle.invalidate(&"http://origin.test/x".parse().unwrap()));
    get(&mut svc, "/x").await;
    get(&mut svc, "/y").await;
    assert_eq!(origin.calls(), 3);
    handle.clear();
    get(&mut svc, "/y").await;
    assert_eq!(origin.calls(), 4);
    let s = handle.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 4, 1));
}

#[test]
fn the_builder_refuses_values_out_of_range() {
    let e = HttpCacheLayer::builder()
        .max_variants(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_variants");
    let e = HttpCacheLayer::builder()
        .heuristic_fraction(1.5)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "heuristic_fraction");
    let e = HttpCacheLayer::builder()
        .max_body_bytes(0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "max_body_bytes");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_for_one_uri_make_one_request_upstream() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    async fn burst(cc: &'static str, coalesce: bool) -> (usize, u64) {
        let calls = Arc::new(AtomicUsize::new(0));
        let origin = {
            let calls = calls.clone();
            service_fn(move |_: Request<Full<Bytes>>| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    res(200, &[("cache-control", cc)], &format!("#{n}"))
                }
            })
        };
        let layer = HttpCacheLayer::builder()
            .coalesce(coalesce)
            .build()
            .unwrap();
        let svc = layer.layer(origin);
        let answers = futures::future::join_all((0..5).map(|_| {
            let svc = svc.clone();
            async move {
                let r = svc.oneshot(req("GET", "/burst", &[])).await.unwrap();
                r.into_body().collect().await.unwrap().to_bytes()
            }
        }))
        .await;
        if cc == "max-age=60" && coalesce {
            assert!(answers.iter().all(|b| b == "#1"), "{answers:?}");
        }
        (calls.load(Ordering::SeqCst), layer.stats().coalesced)
    }
    assert_eq!(burst("max-age=60", true).await, (1, 4));
    assert_eq!(burst("max-age=60", false).await, (5, 0));
    // Not storable: the waiters go on by themselves.
    assert_eq!(burst("no-store", true).await, (5, 0));
}

#[tokio::test(start_paused = true)]
async fn a_post_answer_with_freshness_and_its_own_content_location_serves_gets() {
    let origin = Origin::new(|p, n| {
        let here = format!("http://origin.test{}", p.uri.path());
        match (p.method.as_str(), p.uri.path()) {
            ("POST", "/elsewhere") => res(
                200,
                &[
                    ("cache-control", "max-age=60"),
                    ("content-location", "/other"),
                ],
                "posted",
            ),
            ("POST", _) => res(
                200,
                &[("cache-control", "max-age=60"), ("content-location", &here)],
                "posted",
            ),
            _ => res(200, &[], &format!("#{n}")),
        }
    });
    let mut svc = layer().layer(origin.service());
    send(&mut svc, req("POST", "/form", &[])).await;
    let b = get(&mut svc, "/form").await;
    assert_eq!((origin.calls(), b.body.as_ref()), (1, &b"posted"[..]));

    send(&mut svc, req("POST", "/elsewhere", &[])).await;
    get(&mut svc, "/elsewhere").await;
    assert_eq!(
        origin.calls(),
        3,
        "a Content-Location of another URI is not this GET's"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stored_language_serves_a_request_that_wants_it_most() {
    let origin = counting(&[
        ("cache-control", "max-age=60"),
        ("vary", "Accept-Language"),
        ("content-language", "de"),
    ]);
    let mut svc = layer().layer(origin.service());
    send(&mut svc, req("GET", "/l", &[("accept-language", "en, de")])).await;
    let b = send(
        &mut svc,
        req("GET", "/l", &[("accept-language", "fr;q=0.5, de;q=1.0")]),
    )
    .await;
    assert_eq!((origin.calls(), b.body.as_ref()), (1, &b"#1"[..]));
    send(
        &mut svc,
        req("GET", "/l", &[("accept-language", "fr, de;q=0.9")]),
    )
    .await;
    assert_eq!(
        origin.calls(),
        2,
        "French is wanted more than the stored German"
    );
    // Not to another host, however much it wants German.
    let elsewhere = [("accept-language", "de"), ("host", "other.test")];
    send(&mut svc, req("GET", "/l", &elsewhere)).await;
    assert_eq!(origin.calls(), 3, "another host's request is not served");
}

// ---------------------------------------------------------------------------
// Memory.

/// A buffer that says when it is freed: hyper's read buffer, standing in.
struct ReadBuffer(Vec<u8>, Arc<AtomicBool>);

impl AsRef<[u8]> for ReadBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        self.1.store(true, Ordering::SeqCst);
    }
}

/// hyper hands out field values, and a server a request's URI, as slices
/// of the connection's read buffer. A stored response keeps copies, so
/// each buffer is freed once the messages that came in it are gone (a
/// cache entry would otherwise pin one, 8 KiB or more, however small the
/// response), and the copies still answer.
#[tokio::test(start_paused = true)]
async fn a_stored_response_keeps_no_slice_of_the_buffers_it_came_in() {
    let res_freed = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let origin = service_fn({
        let (res_freed, calls) = (res_freed.clone(), calls.clone());
        move |_: Request<Full<Bytes>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let buffer = Bytes::from_owner(ReadBuffer(
                b"max-age=60x-varianttext/plain".to_vec(),
                res_freed.clone(),
            ));
            let value = |at| HeaderValue::from_maybe_shared(buffer.slice(at)).unwrap();
            let mut res = Response::new(Full::new(Bytes::from_static(b"stored")));
            res.headers_mut().insert("cache-control", value(0..10));
            res.headers_mut().insert("vary", value(10..19));
            res.headers_mut().insert("content-type", value(19..29));
            async move { Ok::<_, BoxError>(res) }
        }
    });
    let mut svc = layer().layer(origin);

    let req_freed = Arc::new(AtomicBool::new(false));
    let incoming = Bytes::from_owner(ReadBuffer(
        b"http://origin.test/a one".to_vec(),
        req_freed.clone(),
    ));
    let mut first = Request::new(Full::default());
    *first.uri_mut() = http::Uri::from_maybe_shared(incoming.slice(0..20)).unwrap();
    let variant = HeaderValue::from_maybe_shared(incoming.slice(21..24)).unwrap();
    first.headers_mut().insert("x-variant", variant);
    drop(incoming);
    let answer = send(&mut svc, first).await;
    assert_eq!(answer.body, "stored");
    drop(answer);
    assert!(
        res_freed.load(Ordering::SeqCst),
        "the stored response holds the origin's buffer"
    );
    assert!(
        req_freed.load(Ordering::SeqCst),
        "the stored response holds the request's buffer"
    );

    let hit = send(&mut svc, req("GET", "/a", &[("x-variant", "one")])).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "served from the store");
    assert_eq!(
        (hit.body.as_ref(), hit.field("content-type")),
        (&b"stored"[..], "text/plain")
    );
}
