//! What `http-cache-semantics` is shown of each message.
//!
//! The crate makes the protocol's decisions (storability, freshness
//! lifetime, heuristic freshness, Age, request directives, revalidation
//! requests, whether a 304 matches); `arrival.rs` works out its first three
//! answers for a response being stored without building its policy, held
//! to the crate's by tests. It reads headers loosely, though, so it
//! is shown a normalised view of each message while the stored response
//! keeps the origin's exact fields:
//!
//! - `Cache-Control` parsed properly (quoted strings, case-insensitive
//!   names), an invalid `max-age` / `s-maxage` taken as 0 (stale), values
//!   over 2^31 capped; in a shared cache `proxy-revalidate` and `s-maxage`
//!   also forbid serving stale (RFC 9111 §5.2.2.8, §5.2.2.10);
//! - `Age` that is not one non-negative integer taken as very old, and
//!   the apparent age (`now - Date`) counted (RFC 9111 §4.2.3);
//! - `Expires`, `Date`, `Last-Modified` in any of the three date forms;
//!   an invalid `Expires` as already expired;
//! - `Set-Cookie` hidden (RFC 9111 lets it be stored; the crate refuses
//!   it in shared mode), and `Vary` too: the cache picks the variant
//!   itself, comparing normalised field values (`selecting`, `selects`);
//! - a status code the crate does not know, cacheable only with explicit
//!   freshness (§3), unless `must-understand` says otherwise (§5.2.2.3).

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_cache_semantics::{CacheOptions, CachePolicy, RequestLike, ResponseLike};

use super::date;
use super::key;
use super::parse::{self, Directive};

/// Statuses `http-cache-semantics` understands.
const UNDERSTOOD: &[u16] = &[
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// A request as the crate sees it.
pub(crate) struct ReqView {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
}

impl RequestLike for ReqView {
    fn uri(&self) -> Uri {
        self.uri.clone()
    }
    /// One resource as the cache keys it: the same scheme, authority
    /// (without case or user information, which is never sent) and path
    /// with query. A stored response's URI is made from its key, which
    /// keeps no user information.
    fn is_same_uri(&self, other: &Uri) -> bool {
        fn target(uri: &Uri) -> &str {
            uri.path_and_query().map_or("/", |p| p.as_str())
        }
        let hosts = match (key::authority(&self.uri), key::authority(other)) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        };
        self.uri.scheme() == other.scheme() && hosts && target(&self.uri) == target(other)
    }
    fn method(&self) -> &Method {
        &self.method
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// A response as the crate sees it.
pub(crate) struct ResView {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
}

impl ResponseLike for ResView {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// The request view: `Cache-Control` rewritten in a form the crate parses;
/// `method` is GET for a HEAD (a stored GET answers it).
pub(crate) fn request_view(method: &Method, uri: &Uri, raw: &HeaderMap) -> ReqView {
    let mut headers = raw.clone();
    set_request_cc(&mut headers, raw);
    let method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    ReqView {
        method,
        uri: uri.clone(),
        headers,
    }
}

/// The view of a GET to `uri` whose response is being stored (what the
/// tests hold [`arrival`](super::arrival) to): of the
/// request's fields, only those a policy reads (`fields`, made by
/// [`request_fields`]: `Host`, whether there
/// was an `Authorization`, the `Vary` selecting fields) and its
/// `Cache-Control`. The policy keeps its own copy of these, so a stored
/// response does not hold every field the client sent.
#[cfg(test)]
pub(crate) fn store_view(uri: &Uri, raw: &HeaderMap, fields: HeaderMap) -> ReqView {
    let mut headers = fields;
    set_request_cc(&mut headers, raw);
    ReqView {
        method: Method::GET,
        uri: uri.clone(),
        headers,
    }
}

/// The request fields a stored response keeps for its policy.
pub(crate) fn request_fields(req: &HeaderMap, res: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(host) = req.get(header::HOST) {
        out.insert(header::HOST, host.clone());
    }
    if req.contains_key(header::AUTHORIZATION) {
        // Only that there was one: the policy asks no more.
        out.insert(header::AUTHORIZATION, HeaderValue::from_static("present"));
    }
    for name in parse::vary_fields(res).unwrap_or_default() {
        for v in req.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

/// Replaces `headers`' `Cache-Control` with the request directives of
/// `raw`'s the crate reads, in a form it parses.
fn set_request_cc(headers: &mut HeaderMap, raw: &HeaderMap) {
    if !raw.contains_key(header::CACHE_CONTROL) {
        return;
    }
    let dirs = parse::directives(raw.get_all(header::CACHE_CONTROL));
    headers.remove(header::CACHE_CONTROL);
    let mut cc: Vec<String> = Vec::new();
    for d in &dirs {
        match &*d.name {
            "max-age" | "min-fresh" => {
                if let Some(s) = d.value.as_deref().and_then(parse::delta_seconds) {
                    cc.push(format!("{}={s}", d.name));
                }
            }
            "max-stale" => match d.value.as_deref() {
                None => cc.push("max-stale".into()),
                Some(v) => {
                    if let Some(s) = parse::delta_seconds(v) {
                        cc.push(format!("max-stale={s}"));
                    }
                }
            },
            "no-cache" | "no-store" | "only-if-cached" => cc.push(d.name.to_string()),
            _ => {}
        }
    }
    if !cc.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cc.join(", ")) {
            headers.insert(header::CACHE_CONTROL, v);
        }
    }
}

/// What the cache reads from a response's own `Cache-Control` beside the
/// crate: the stale-serving extensions (RFC 5861) and whether stale
/// serving is allowed at all.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StaleRules {
    pub(crate) while_revalidate: Option<Duration>,
    pub(crate) if_error: Option<Duration>,
    /// `false` with `must-revalidate`, `no-cache`, and in a shared cache
    /// `proxy-revalidate` or `s-maxage`.
    pub(crate) allowed: bool,
}

/// The policy for a response to `req`, and its stale rules (what the
/// tests hold [`arrival`](super::arrival) to); `None` when
/// the status can never be stored (206, 304, 1xx, or an unknown status
/// with `must-understand`).
#[cfg(test)]
pub(crate) fn policy(
    req: &ReqView,
    status: StatusCode,
    raw: &HeaderMap,
    received: SystemTime,
    opts: CacheOptions,
) -> Option<(CachePolicy, StaleRules)> {
    let dirs = parse::directives(raw.get_all(header::CACHE_CONTROL));
    let must_understand = parse::has(&dirs, "must-understand");
    let view_status = view_status(status, must_understand)?;
    let made = made(req, view_status, raw, received, opts);
    Some((made, stale_rules(&dirs, opts.shared)))
}

/// The policy for a response with fields `raw` to `req`, the crate shown
/// `view_status` (see [`view_status`]).
pub(crate) fn made(
    req: &ReqView,
    view_status: StatusCode,
    raw: &HeaderMap,
    received: SystemTime,
    opts: CacheOptions,
) -> CachePolicy {
    let dirs = parse::directives(raw.get_all(header::CACHE_CONTROL));
    let must_understand = parse::has(&dirs, "must-understand");
    let res = ResView {
        status: view_status,
        headers: response_view(raw, &dirs, opts.shared, must_understand, received),
    };
    CachePolicy::new_options(req, &res, received, opts)
}

/// The status the crate is shown for `status`: itself if the crate knows
/// it; `None` if it can never be stored (206, 304, 1xx, or an unknown
/// status with `must-understand`); else one storable with explicit
/// freshness (or `public`) only, as any status not heuristically
/// cacheable.
pub(crate) fn view_status(status: StatusCode, must_understand: bool) -> Option<StatusCode> {
    if UNDERSTOOD.contains(&status.as_u16()) {
        Some(status)
    } else if status.is_informational()
        || status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || must_understand
    {
        None
    } else {
        Some(StatusCode::FOUND)
    }
}

/// The stale-serving rules of a response with directives `dirs`.
pub(crate) fn stale_rules(dirs: &[Directive<'_>], shared: bool) -> StaleRules {
    StaleRules {
        while_revalidate: parse::seconds(dirs, "stale-while-revalidate")
            .flatten()
            .map(Duration::from_secs),
        if_error: parse::seconds(dirs, "stale-if-error")
            .flatten()
            .map(Duration::from_secs),
        allowed: !(parse::has(dirs, "must-revalidate")
            || parse::has(dirs, "no-cache")
            || (shared && (parse::has(dirs, "proxy-revalidate") || parse::has(dirs, "s-maxage")))),
    }
}

/// The response directives the crate is shown: of each, the first
/// occurrence; an invalid `max-age` / `s-maxage` as 0; in a shared cache
/// `s-maxage` and `proxy-revalidate` also as `must-revalidate`; `no-store`
/// dropped under `must-understand`; the directives the crate does not read
/// left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shown {
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) must_revalidate: bool,
    pub(crate) public: bool,
    pub(crate) private: bool,
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) immutable: bool,
}

impl Shown {
    /// What the crate is shown of a response with directives `dirs`.
    pub(crate) fn of(dirs: &[Directive<'_>], shared: bool, must_understand: bool) -> Shown {
        let has = |name| parse::has(dirs, name);
        let delta = |name| parse::seconds(dirs, name).map(|v| v.unwrap_or(0));
        let s_maxage = delta("s-maxage");
        Shown {
            max_age: delta("max-age"),
            s_maxage,
            must_revalidate: has("must-revalidate")
                || (shared && (s_maxage.is_some() || has("proxy-revalidate"))),
            public: has("public"),
            private: has("private"),
            no_store: has("no-store") && !must_understand,
            no_cache: has("no-cache"),
            immutable: has("immutable"),
        }
    }

    /// Nothing to show: the crate sees no `Cache-Control` (and reads
    /// `Pragma: no-cache` instead).
    pub(crate) fn is_empty(&self) -> bool {
        *self == Shown::default()
    }

    /// The `Cache-Control` line that shows it, if any.
    fn line(&self) -> Option<HeaderValue> {
        let mut parts: Vec<String> = Vec::new();
        if let Some(s) = self.max_age {
            parts.push(format!("max-age={s}"));
        }
        if let Some(s) = self.s_maxage {
            parts.push(format!("s-maxage={s}"));
        }
        for (on, name) in [
            (self.must_revalidate, "must-revalidate"),
            (self.public, "public"),
            (self.private, "private"),
            (self.no_store, "no-store"),
            (self.no_cache, "no-cache"),
            (self.immutable, "immutable"),
        ] {
            if on {
                parts.push(name.to_string());
            }
        }
        HeaderValue::from_str(&parts.join(", "))
            .ok()
            .filter(|_| !parts.is_empty())
    }
}

/// The normalised response headers the crate is shown.
fn response_view(
    raw: &HeaderMap,
    dirs: &[Directive<'_>],
    shared: bool,
    must_understand: bool,
    received: SystemTime,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(raw.len());
    for (name, value) in raw {
        if matches!(
            name.as_str(),
            "cache-control" | "age" | "expires" | "date" | "last-modified" | "set-cookie" | "vary"
        ) {
            continue;
        }
        h.append(name.clone(), value.clone());
    }
    if let Some(cc) = Shown::of(dirs, shared, must_understand).line() {
        h.insert(header::CACHE_CONTROL, cc);
    }
    // Date, Last-Modified: any date form; invalid ones dropped.
    let date = date::single_date(raw, &header::DATE).ok().flatten();
    if let Some(d) = date {
        h.insert(header::DATE, date::date_value(d));
    }
    if let Ok(Some(lm)) = date::single_date(raw, &header::LAST_MODIFIED) {
        h.insert(header::LAST_MODIFIED, date::date_value(lm));
    }
    // Expires: invalid means already expired.
    match date::single_date(raw, &header::EXPIRES) {
        Ok(None) => {}
        Ok(Some(t)) => {
            h.insert(header::EXPIRES, date::date_value(t));
        }
        Err(()) => {
            h.insert(header::EXPIRES, date::date_value(SystemTime::UNIX_EPOCH));
        }
    }
    // Age: one non-negative integer, else very old; at least the apparent age.
    let age = date::arrival_age(raw, date, received);
    if age > 0 {
        h.insert(header::AGE, HeaderValue::from(age));
    }
    h
}

/// The request fields a response's `Vary` nominates, as the request had
/// them (`None`: `Vary: *`, matches nothing).
pub(crate) type Selecting = Option<Vec<(HeaderName, Option<String>)>>;

/// The selecting fields of `req` for a response with `res` headers.
pub(crate) fn selecting(res: &HeaderMap, req: &HeaderMap) -> Selecting {
    parse::vary_fields(res).map(|names| {
        names
            .into_iter()
            .map(|n| {
                let v = parse::selecting_value(req, &n);
                (n, v)
            })
            .collect()
    })
}

/// `true` if `req` has the selecting field values `sel` was made from.
pub(crate) fn selects(sel: &Selecting, req: &HeaderMap) -> bool {
    match sel {
        None => false,
        Some(fields) => fields
            .iter()
            .all(|(n, v)| parse::selecting_value(req, n).as_deref() == v.as_deref()),
    }
}

/// `true` if a response in `content_language`, stored under `Vary:
/// Accept-Language` alone, is what `req` prefers most: its
/// `Accept-Language` ranks that language first (highest q-value, then
/// order; RFC 9110 §12.5.4). The origin sent it for a request it matched,
/// so it has it; and no other language is wanted more.
pub(crate) fn language_selects(sel: &Selecting, content_language: &str, req: &HeaderMap) -> bool {
    let Some(fields) = sel else {
        return false;
    };
    if fields.len() != 1 || fields[0].0 != http::header::ACCEPT_LANGUAGE {
        return false;
    }
    let mut best: Option<(&str, f32)> = None;
    for v in req.get_all(http::header::ACCEPT_LANGUAGE) {
        let Ok(v) = v.to_str() else { return false };
        for item in v.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            for p in parts {
                if let Some(x) = p.trim().strip_prefix("q=") {
                    q = x.trim().parse().unwrap_or(0.0);
                }
            }
            if !tag.is_empty() && best.is_none_or(|(_, b)| q > b) {
                best = Some((tag, q));
            }
        }
    }
    best.is_some_and(|(tag, q)| q > 0.0 && tag != "*" && tag.eq_ignore_ascii_case(content_language))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CacheOptions {
        CacheOptions {
            shared: true,
            ..CacheOptions::default()
        }
    }

    fn pol(status: u16, headers: &[(&str, &str)]) -> Option<(CachePolicy, StaleRules)> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let req = request_view(&Method::GET, &Uri::from_static("/a"), &HeaderMap::new());
        policy(
            &req,
            StatusCode::from_u16(status).unwrap(),
            &h,
            SystemTime::now(),
            opts(),
        )
    }

    fn ttl(p: &Option<(CachePolicy, StaleRules)>) -> u64 {
        let (p, _) = p.as_ref().unwrap();
        if !p.is_storable() {
            return 0;
        }
        p.time_to_live(SystemTime::now()).as_secs()
    }

    #[test]
    fn the_crate_reads_the_normalised_view() {
        assert!(ttl(&pol(200, &[("cache-control", "MaX-AgE=100")])) > 90);
        assert_eq!(ttl(&pol(200, &[("cache-control", "max-age='100'")])), 0);
        assert_eq!(
            ttl(&pol(
                200,
                &[("cache-control", "extension=\"max-age=100\", max-age=1")]
            )),
            0
        );
        assert!(ttl(&pol(200, &[("cache-control", "max-age=99999999999")])) > 1 << 30);
        assert_eq!(
            ttl(&pol(
                200,
                &[("cache-control", "max-age=100"), ("age", "1, 2")]
            )),
            0
        );
        assert!(
            ttl(&pol(
                200,
                &[("cache-control", "max-age=100"), ("set-cookie", "a=b")]
            )) > 90
        );
        assert_eq!(ttl(&pol(200, &[("expires", "0")])), 0);
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        assert!(ttl(&pol(200, &[("expires", &future)])) > 90);
    }

    #[test]
    fn private_is_not_stored_by_a_shared_cache() {
        let p = pol(200, &[("cache-control", "private, max-age=60")]);
        assert!(!p.unwrap().0.is_storable());
    }

    #[test]
    fn unknown_statuses_need_explicit_freshness_and_must_understand() {
        assert!(ttl(&pol(599, &[("cache-control", "max-age=100")])) > 90);
        assert_eq!(
            ttl(&pol(
                599,
                &[("last-modified", "Thu, 01 Jan 1970 00:00:00 GMT")]
            )),
            0
        );
        assert!(pol(
            599,
            &[("cache-control", "max-age=100, must-understand, no-store")]
        )
        .is_none());
        assert!(
            ttl(&pol(
                200,
                &[("cache-control", "max-age=100, must-understand, no-store")]
            )) > 90
        );
    }

    #[test]
    fn the_most_wanted_language_selects_a_stored_response_in_it() {
        let sel: Selecting = Some(vec![(header::ACCEPT_LANGUAGE, Some("en,de".into()))]);
        let mut req = HeaderMap::new();
        req.insert(
            "accept-language",
            HeaderValue::from_static("fr;q=0.5, DE;q=1.0"),
        );
        assert!(language_selects(&sel, "de", &req));
        req.insert("accept-language", HeaderValue::from_static("fr, de"));
        assert!(!language_selects(&sel, "de", &req));
        req.insert("accept-language", HeaderValue::from_static("de;q=0"));
        assert!(!language_selects(&sel, "de", &req));
    }

    #[test]
    fn shared_stale_rules() {
        let (_, s) = pol(200, &[("cache-control", "max-age=1, s-maxage=1")]).unwrap();
        assert!(!s.allowed);
        let (_, s) = pol(200, &[("cache-control", "max-age=1, stale-if-error=60")]).unwrap();
        assert!(s.allowed);
        assert_eq!(s.if_error, Some(Duration::from_secs(60)));
    }
}
