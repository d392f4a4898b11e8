//! The asynchronous half of a request: ask the inner service, then store,
//! merge a `304`, serve stale on error, or invalidate.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryFutureExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_cache_semantics::AfterResponse;
use tower::ServiceExt;
use tower_service::Service;

use super::arrival::{self, Arrival};
use super::body::{collect, Collected, HttpCacheBody};
use super::key::{key_of, same_origin_key};
use super::lookup::{self, Plan, Revalidate, Step};
use super::parse;
use super::policy::{self, ResView};
use super::respond::{self, Outcome};
use super::shared::{bump, Join, Shared};
use super::stored::{Stored, Variants};
use crate::BoxError;

/// The answer type.
type Answer<ResB> = Result<Response<HttpCacheBody<ResB>>, BoxError>;

/// What the client asked, kept while its request is away.
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

impl Head {
    fn of<B>(req: &Request<B>) -> Self {
        Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        }
    }
}

/// Fields a `304` must not change in the stored response.
const KEEP_ON_304: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-range",
    "content-md5",
    "etag",
    "transfer-encoding",
];

/// `req` through `svc` once it is ready. A plain future, not an `async
/// fn`: one would hold `svc` and `req` twice (its arguments and the
/// `Oneshot` they move into) inside every future that awaits it.
fn call<S, B, ResB>(
    svc: S,
    req: Request<B>,
) -> impl Future<Output = Result<Response<ResB>, BoxError>>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    svc.oneshot(req).map_err(Into::into)
}

/// Sends `req` on as `plan` says and makes the answer.
///
/// A plain function returning an `async` block, not an `async fn`: one
/// would keep its arguments twice in the future (where they arrive and
/// where its body moves them), and this future is boxed on every miss.
#[allow(clippy::manual_async_fn)] // see above: the size of the future
pub(crate) fn forward<S, B, ResB>(
    shared: Arc<Shared>,
    svc: S,
    req: Request<B>,
    plan: Plan,
) -> impl Future<Output = Answer<ResB>>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    async move {
        let head = Head::of(&req);
        match plan {
            Plan::Pass => {
                let res = call(svc, req).await?;
                Ok(passed(&shared, res, Outcome::fwd("method")))
            }
            Plan::Unsafe => {
                let res = call(svc, req).await?;
                let status = res.status();
                if status.is_success() || status.is_redirection() {
                    invalidate(&shared, &head, res.headers());
                }
                if let Some(key) = post_as_get(&head, &res) {
                    // RFC 9110 §9.3.3: the answer to a POST with explicit
                    // freshness and its own URI as Content-Location is a GET's.
                    let get = Head {
                        method: Method::GET,
                        ..head
                    };
                    return Box::pin(finish(
                        &shared,
                        key,
                        &get,
                        Method::GET,
                        res,
                        Outcome::fwd("method"),
                    ))
                    .await;
                }
                Ok(passed(&shared, res, Outcome::fwd("method")))
            }
            Plan::Miss { key, why } => {
                let mut _flight = None;
                if shared.cfg.coalesce
                    && head.method == Method::GET
                    && !head.headers.contains_key(header::CACHE_CONTROL)
                {
                    match shared.join(&key) {
                        Join::Leader(guard) => _flight = Some(guard),
                        Join::Follower(done) => {
                            // Err when the first miss is over, however it ended.
                            let _ = done.acquire().await;
                            let again = lookup::lookup(
                                &shared,
                                &head.method,
                                &head.uri,
                                &head.headers,
                                false,
                            );
                            if let Step::Answer(res) = again {
                                shared.counters.coalesced();
                                return Ok(res);
                            }
                        }
                    }
                }
                let remote = if why == "uri-miss" {
                    shared.remote_get(&key).await
                } else {
                    None
                };
                if let Some(variants) = remote {
                    let keep = variants.keep_for(shared.clock.now(), shared.cfg.keep_stale);
                    shared.put_local(key.clone(), variants, keep);
                    match lookup::lookup(&shared, &head.method, &head.uri, &head.headers, false) {
                        Step::Answer(res) | Step::AnswerAndRefresh(res, _) => {
                            bump(&shared.counters.remote_hits);
                            return Ok(res);
                        }
                        Step::Forward(Plan::Revalidate(r)) => {
                            return Box::pin(revalidate(shared, svc, req, head, r)).await;
                        }
                        Step::Forward(_) => {}
                    }
                }
                let res = call(svc, req).await?;
                // A HEAD went on as a HEAD: its answer has no body to store.
                let sent = head.method.clone();
                finish(&shared, key, &head, sent, res, Outcome::fwd(why)).await
            }
            // Boxed, as the POST-as-GET answer above: the miss path's future
            // (boxed whole by the service) stays the size a miss needs.
            Plan::Revalidate(r) => Box::pin(revalidate(shared, svc, req, head, r)).await,
        }
    }
}

/// The key to store a POST's answer under as a GET's: a 2xx with explicit
/// freshness whose `Content-Location` is the request's own URI.
fn post_as_get<ResB>(head: &Head, res: &Response<ResB>) -> Option<String> {
    if head.method != Method::POST || !res.status().is_success() {
        return None;
    }
    let h = res.headers();
    let dirs = parse::directives(h.get_all(header::CACHE_CONTROL));
    let explicit = h.contains_key(header::EXPIRES)
        || parse::has(&dirs, "max-age")
        || parse::has(&dirs, "s-maxage");
    let key = key_of(&head.uri, &head.headers);
    let location = h.get(header::CONTENT_LOCATION)?;
    (explicit && same_origin_key(&head.uri, &head.headers, location).as_ref() == Some(&key))
        .then_some(key)
}

/// A response that is not stored, streaming through.
fn passed<ResB>(
    shared: &Shared,
    res: Response<ResB>,
    outcome: Outcome,
) -> Response<HttpCacheBody<ResB>> {
    let mut res = res.map(|b| HttpCacheBody::stream(Bytes::new(), Box::pin(b)));
    respond::cache_status(&shared.cfg, res.headers_mut(), outcome, None);
    res
}

/// RFC 9111 §4.4: after an unsafe method's non-error answer, the target
/// URI and same-origin `Location` / `Content-Location` are stale.
fn invalidate(shared: &Shared, head: &Head, res: &HeaderMap) {
    shared.invalidate(&key_of(&head.uri, &head.headers));
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        for v in res.get_all(name) {
            if let Some(k) = same_origin_key(&head.uri, &head.headers, v) {
                shared.invalidate(&k);
            }
        }
    }
}

async fn revalidate<S, B, ResB>(
    shared: Arc<Shared>,
    svc: S,
    req: Request<B>,
    head: Head,
    r: Revalidate,
) -> Answer<ResB>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    ResB: Body<Data = Bytes>,
    ResB::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    parts.method = r.method.clone();
    parts.headers = r.headers.clone();
    let stale_outcome = |detail| Outcome {
        hit: true,
        fwd: Some("stale"),
        detail: Some(detail),
        ..Outcome::default()
    };
    let res = match call(svc, Request::from_parts(parts, body)).await {
        Ok(res) => res,
        Err(e) => {
            let now = shared.clock.now();
            if r.stored.within(r.stored.stale.if_error, now) {
                shared.counters.stale();
                let o = stale_outcome("stale-if-error");
                return Ok(respond::from_stored(
                    &shared.cfg,
                    &r.stored,
                    &head.method,
                    &head.headers,
                    now,
                    o,
                ));
            }
            return Err(e);
        }
    };
    let now = shared.clock.now();
    let status = res.status();
    if status == StatusCode::NOT_MODIFIED {
        // Without conditions of the client's own, the 304 answers ours.
        let ours = !respond::is_conditional(&head.headers) || {
            let view = policy::request_view(&r.method, &head.uri, &r.headers);
            let res_view = ResView {
                status,
                headers: res.headers().clone(),
            };
            matches!(
                r.stored
                    .policy(&r.key, shared.cfg.opts)
                    .after_response(&view, &res_view, now),
                AfterResponse::NotModified(..)
            )
        };
        if !ours {
            return Ok(passed(&shared, res, Outcome::fwd("stale")));
        }
        bump(&shared.counters.not_modified);
        let headers = merge_304(&r.stored.headers, res.headers(), now);
        // The stored body has bytes of its own; the 304's values do not.
        let judged = judge(&shared, &head, r.stored.status, &headers, now).map(|mut j| {
            crate::fields::own(&mut j.headers);
            j
        });
        let refreshed = store(
            &shared,
            r.key,
            &head,
            r.stored.status,
            r.stored.version,
            judged,
            r.stored.body.clone(),
            now,
        );
        let outcome = Outcome {
            fwd: Some("stale"),
            fwd_status: Some(304),
            stored: refreshed.is_some(),
            ..Outcome::default()
        };
        let fresh = refreshed.unwrap_or_else(|| r.stored.clone());
        return Ok(respond::from_stored(
            &shared.cfg,
            &fresh,
            &head.method,
            &head.headers,
            now,
            outcome,
        ));
    }
    if status.is_server_error() && r.stored.within(r.stored.stale.if_error, now) {
        shared.counters.stale();
        let mut o = stale_outcome("stale-if-error");
        o.fwd_status = Some(status.as_u16());
        return Ok(respond::from_stored(
            &shared.cfg,
            &r.stored,
            &head.method,
            &head.headers,
            now,
            o,
        ));
    }
    let outcome = Outcome {
        fwd: Some("stale"),
        fwd_status: Some(status.as_u16()),
        ..Outcome::default()
    };
    finish(&shared, r.key, &head, r.method, res, outcome).await
}

/// The stored fields refreshed by a `304`'s (RFC 9111 §3.2, §4.3.4).
fn merge_304(old: &HeaderMap, new: &HeaderMap, now: SystemTime) -> HeaderMap {
    let mut out = old.clone();
    let mut new = new.clone();
    parse::strip_hop_by_hop(&mut new);
    for name in new.keys() {
        if KEEP_ON_304.contains(&name.as_str()) {
            continue;
        }
        out.remove(name);
        for v in new.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    if !new.contains_key(header::AGE) {
        out.remove(header::AGE);
    }
    if !new.contains_key(header::DATE) {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
            out.insert(header::DATE, v);
        }
    }
    out
}

/// A response to `head` that may be stored, as it would be: its fields
/// without the hop-by-hop ones, the request fields its policy reads, and
/// its figures on arrival.
struct Judged {
    /// The response's fields, their values maybe still slices of a
    /// connection's read buffer: [`keep`](Self::keep) or
    /// `crate::fields::own` before they are stored.
    headers: HeaderMap,
    request: HeaderMap,
    arrival: Arrival,
}

impl Judged {
    /// `body` as it is stored with these fields, both with bytes of their
    /// own rather than slices of a connection's read buffer (see
    /// `crate::fields`): as they are when they are already the copy
    /// `fetch::Collect` made of both (`raw`: the response's fields as they
    /// came), else copied together into one buffer of their size.
    fn keep(&mut self, body: &Bytes, raw: &HeaderMap) -> Bytes {
        if crate::fields::owned_with(body, raw) {
            body.clone()
        } else {
            crate::fields::own_with_body(&mut self.headers, body)
        }
    }
}

/// Decides, once, whether a response with `status` and `headers` to
/// `head` may be stored, as of `now`; `None` if not. Only a response that
/// may be stored has its fields copied.
fn judge(
    shared: &Shared,
    head: &Head,
    status: StatusCode,
    raw: &HeaderMap,
    now: SystemTime,
) -> Option<Judged> {
    // Judged and kept without its hop-by-hop fields (copied to strip them
    // only when it has some: `Connection` is one).
    let stripped = parse::has_hop_by_hop(raw).then(|| {
        let mut h = raw.clone();
        parse::strip_hop_by_hop(&mut h);
        h
    });
    let headers = stripped.as_ref().unwrap_or(raw);
    let no_store = head.headers.contains_key(header::CACHE_CONTROL)
        && parse::has(
            &parse::directives(head.headers.get_all(header::CACHE_CONTROL)),
            "no-store",
        );
    let auth = head.headers.contains_key(header::AUTHORIZATION);
    let arrival = arrival::arrival(no_store, auth, status, headers, now, shared.cfg.opts)?;
    // (A clone costs less than a map built anew: the clone copies the
    // table, where inserting hashes every name again.) Its values are
    // given bytes of their own with the body, by `Judged::keep`.
    let headers = stripped.unwrap_or_else(|| raw.clone());
    let mut request = policy::request_fields(&head.headers, &headers);
    crate::fields::own(&mut request);
    Some(Judged {
        headers,
        request,
        arrival,
    })
}

/// Stores a judged response for `head` under `key` if it may be stored;
/// returns what was stored. A response that may not be stored removes
/// the variant it would have replaced.
#[allow(clippy::too_many_arguments)]
fn store(
    shared: &Shared,
    key: String,
    head: &Head,
    status: StatusCode,
    version: Version,
    judged: Option<Judged>,
    body: Bytes,
    now: SystemTime,
) -> Option<Arc<Stored>> {
    let Some(judged) = judged else {
        forget(shared, &key, head);
        return None;
    };
    let existing = shared.entry(&key);
    let selecting = policy::selecting(&judged.headers, &head.headers);
    let stored = Arc::new(Stored::new(
        status,
        version,
        judged.headers,
        body,
        judged.arrival,
        selecting,
        now,
        &head.uri,
        judged.request,
    ));
    let keep = stored.keep_for(now, shared.cfg.keep_stale);
    if keep.is_zero() {
        return None;
    }
    let replaced = existing.as_ref().map(|e| e.keep_until);
    let variants = match existing.map(|e| e.value) {
        Some(v) => v.with(
            stored.clone(),
            &key,
            &head.uri,
            &head.headers,
            shared.cfg.max_variants,
        ),
        None => Variants::one(stored.clone()),
    };
    bump(&shared.counters.stored);
    shared.put(key, variants, keep, replaced);
    Some(stored)
}

/// Removes the variant `head` selects under `key`.
fn forget(shared: &Shared, key: &String, head: &Head) {
    if let Some(e) = shared.entry(key) {
        let v = &e.value;
        if v.select(key, &head.uri, &head.headers).is_some() {
            match v.without(key, &head.uri, &head.headers) {
                Some(rest) => {
                    let keep = std::time::Duration::ZERO;
                    shared.put(key.clone(), rest, keep, Some(e.keep_until));
                }
                None => {
                    shared.remove(key);
                }
            }
        }
    }
}

/// A full response from the inner service to a request fetched with
/// `fetched`: stored when it may be (its body collected up to the
/// limit), passed through otherwise.
#[allow(clippy::manual_async_fn)] // as `forward`
fn finish<'a, ResB>(
    shared: &'a Shared,
    key: String,
    head: &'a Head,
    fetched: Method,
    res: Response<ResB>,
    mut outcome: Outcome,
) -> impl Future<Output = Answer<ResB>> + 'a
where
    ResB: Body<Data = Bytes> + 'a,
    ResB::Error: Into<BoxError>,
{
    // An `async` block, as in `forward`: the arguments are kept once.
    async move {
        if fetched != Method::GET {
            return Ok(passed(shared, res, outcome));
        }
        let now = shared.clock.now();
        let Some(mut judged) = judge(shared, head, res.status(), res.headers(), now) else {
            // Whatever was stored for this request is outdated now (unless this
            // is a part of it, or an answer to the client's own conditions).
            let status = res.status();
            if status != StatusCode::PARTIAL_CONTENT && status != StatusCode::NOT_MODIFIED {
                forget(shared, &key, head);
            }
            return Ok(passed(shared, res, outcome));
        };
        let (parts, body) = res.into_parts();
        let body = match collect(body, shared.cfg.max_body_bytes).await? {
            Collected::Whole(b) => b,
            Collected::TooLarge(prefix, rest) => {
                bump(&shared.counters.too_large);
                outcome.detail = Some("too-large");
                let mut res = Response::from_parts(parts, HttpCacheBody::stream(prefix, rest));
                respond::cache_status(&shared.cfg, res.headers_mut(), outcome, None);
                return Ok(res);
            }
        };
        let kept = judged.keep(&body, &parts.headers);
        let stored = store(
            shared,
            key,
            head,
            parts.status,
            parts.version,
            Some(judged),
            kept,
            now,
        );
        outcome.stored = stored.is_some();
        let body = if head.method == Method::HEAD {
            HttpCacheBody::empty()
        } else {
            HttpCacheBody::full(body)
        };
        let mut res = Response::from_parts(parts, body);
        respond::cache_status(&shared.cfg, res.headers_mut(), outcome, None);
        Ok(res)
    }
}
