//! The synchronous half of a request: answer from the store now, or say
//! what to ask the inner service.

use std::sync::Arc;

use http::header::{self, HeaderMap};
use http::{Method, Response, Uri};
use http_cache_semantics::BeforeRequest;

use super::body::HttpCacheBody;
use super::key::key_of;
use super::parse;
use super::policy;
use super::respond::{self, Outcome};
use super::shared::{bump, Shared};
use super::stored::Stored;

/// What to send the inner service.
pub(crate) enum Plan {
    /// An unsafe method: on success, invalidate the target URI and the
    /// same-origin `Location` / `Content-Location`.
    Unsafe,
    /// A safe method the cache does not store (OPTIONS, TRACE).
    Pass,
    /// Nothing stored matches: send the request as it is.
    Miss { key: String, why: &'static str },
    /// The stored response must be validated: send this request head
    /// (the request's fields plus the stored validators).
    Revalidate(Revalidate),
}

/// A conditional request for a stored response.
pub(crate) struct Revalidate {
    pub(crate) key: String,
    pub(crate) stored: Arc<Stored>,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
}

/// The counters, or none.
struct Tally<'a> {
    c: &'a super::shared::Counters,
    on: bool,
}

impl Tally<'_> {
    fn hit(&self) {
        if self.on {
            self.c.hit();
        }
    }
    fn miss(&self) {
        if self.on {
            self.c.miss();
        }
    }
    fn revalidation(&self) {
        if self.on {
            self.c.revalidation();
        }
    }
    fn stale(&self) {
        if self.on {
            self.c.stale();
        }
    }
    fn pass(&self) {
        if self.on {
            bump(&self.c.passes);
        }
    }
}

/// The outcome of a lookup.
pub(crate) enum Step<B> {
    /// Answer with this, without the inner service.
    Answer(Response<HttpCacheBody<B>>),
    /// Answer with this stale response, and revalidate in the background
    /// (`stale-while-revalidate`).
    AnswerAndRefresh(Response<HttpCacheBody<B>>, Revalidate),
    /// Ask the inner service.
    Forward(Plan),
}

/// Decides what to do with a request, from the store alone; `count`:
/// whether the request is counted in the statistics (not when a request
/// that waited for another looks again).
pub(crate) fn lookup<B>(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    count: bool,
) -> Step<B> {
    let c = Tally {
        c: &shared.counters,
        on: count,
    };
    if method != Method::GET && method != Method::HEAD {
        c.pass();
        let safe = matches!(*method, Method::OPTIONS | Method::TRACE);
        return Step::Forward(if safe { Plan::Pass } else { Plan::Unsafe });
    }
    let key = key_of(uri, headers);
    let only_if_cached = headers.contains_key(header::CACHE_CONTROL)
        && parse::has(
            &parse::directives(headers.get_all(header::CACHE_CONTROL)),
            "only-if-cached",
        );
    let cfg = &shared.cfg;
    let variants = shared.get(&key);
    let stored = variants.as_ref().and_then(|v| v.select(&key, uri, headers));
    let Some(stored) = stored else {
        if only_if_cached {
            c.hit();
            return Step::Answer(respond::gateway_timeout(cfg));
        }
        c.miss();
        let why = if variants.is_some() {
            "vary-miss"
        } else {
            "uri-miss"
        };
        return Step::Forward(Plan::Miss { key, why });
    };
    let now = shared.clock.now();
    if now < stored.fresh_until
        && !headers.contains_key(header::CACHE_CONTROL)
        && !headers.contains_key(header::PRAGMA)
    {
        // Fresh, and the request has no directives: what the policy would
        // say, without building its answer (the hot path).
        c.hit();
        let res = respond::from_stored(cfg, stored, method, headers, now, Outcome::hit());
        return Step::Answer(res);
    }
    let view = policy::request_view(method, uri, headers);
    let pol = stored.policy(&key, cfg.opts);
    match pol.before_request(&view, now) {
        BeforeRequest::Fresh(_) => {
            c.hit();
            let mut outcome = Outcome::hit();
            if pol.is_stale(now) {
                // The request's max-stale allowed it.
                c.stale();
                outcome.detail = Some("max-stale");
            }
            Step::Answer(respond::from_stored(
                cfg, stored, method, headers, now, outcome,
            ))
        }
        BeforeRequest::Stale { request, .. } => {
            if only_if_cached {
                c.hit();
                return Step::Answer(respond::gateway_timeout(cfg));
            }
            let mut request_headers = request.headers;
            if !headers.contains_key(header::IF_MODIFIED_SINCE) {
                // The crate read a normalised Last-Modified: send the
                // origin's own, byte for byte.
                if let (true, Some(lm)) = (
                    request_headers.contains_key(header::IF_MODIFIED_SINCE),
                    stored.headers.get(header::LAST_MODIFIED),
                ) {
                    request_headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
                }
            }
            let plan = Revalidate {
                key,
                stored: stored.clone(),
                method: request.method,
                headers: request_headers,
            };
            let asks_validation = view.headers.contains_key(header::CACHE_CONTROL)
                || headers
                    .get(header::PRAGMA)
                    .and_then(|p| p.to_str().ok())
                    .is_some_and(|p| p.contains("no-cache"));
            if !asks_validation
                && pol.is_stale(now)
                && stored.within(stored.stale.while_revalidate, now)
            {
                c.hit();
                c.stale();
                let outcome = Outcome {
                    hit: true,
                    detail: Some("stale-while-revalidate"),
                    ..Outcome::default()
                };
                let res = respond::from_stored(cfg, stored, method, headers, now, outcome);
                return Step::AnswerAndRefresh(res, plan);
            }
            c.revalidation();
            Step::Forward(Plan::Revalidate(plan))
        }
    }
}
