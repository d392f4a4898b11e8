//! Answers made by the cache: a stored response (with `Age`, as a `304`
//! when the request's own conditions hold, bodiless for HEAD), the `504`
//! for `only-if-cached`, and the `Cache-Status` field (RFC 9211).

use std::fmt::Write as _;
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};

use super::body::HttpCacheBody;
use super::date;
use super::parse::DELTA_MAX;
use super::shared::Config;
use super::stored::Stored;

/// The `Cache-Status` field's name.
pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// What happened to a request, for `Cache-Status`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) hit: bool,
    /// Why the request went forward: `uri-miss`, `vary-miss`, `stale`,
    /// `request`, `method`, `bypass`.
    pub(crate) fwd: Option<&'static str>,
    pub(crate) fwd_status: Option<u16>,
    pub(crate) stored: bool,
    pub(crate) detail: Option<&'static str>,
}

impl Outcome {
    pub(crate) fn hit() -> Self {
        Outcome {
            hit: true,
            ..Outcome::default()
        }
    }

    pub(crate) fn fwd(why: &'static str) -> Self {
        Outcome {
            fwd: Some(why),
            ..Outcome::default()
        }
    }
}

/// Adds `Cache-Status` to `headers` when the layer has it on.
pub(crate) fn cache_status(cfg: &Config, headers: &mut HeaderMap, o: Outcome, ttl: Option<i64>) {
    let Some(name) = &cfg.cache_status else {
        return;
    };
    let mut v = String::with_capacity(48);
    v.push_str(name);
    if o.hit {
        v.push_str("; hit");
    }
    if let Some(f) = o.fwd {
        let _ = write!(v, "; fwd={f}");
    }
    if let Some(s) = o.fwd_status {
        let _ = write!(v, "; fwd-status={s}");
    }
    if o.stored {
        v.push_str("; stored");
    }
    if let Some(t) = ttl {
        let _ = write!(v, "; ttl={t}");
    }
    if let Some(d) = o.detail {
        let _ = write!(v, "; detail={d}");
    }
    if let Ok(v) = HeaderValue::from_str(&v) {
        // Appended: a cache in front of ours reports after it (RFC 9211 §2).
        headers.append(CACHE_STATUS.clone(), v);
    }
}

/// The stored response as an answer to a request with `method` and
/// `req` headers, at `now`.
pub(crate) fn from_stored<B>(
    cfg: &Config,
    stored: &Stored,
    method: &Method,
    req: &HeaderMap,
    now: SystemTime,
    outcome: Outcome,
) -> Response<HttpCacheBody<B>> {
    let mut headers = stored.headers.clone();
    let age = stored.age(now);
    headers.insert(header::AGE, age_value(age.as_secs().min(DELTA_MAX)));
    if cfg.cache_status.is_some() {
        // Seconds of freshness left; negative once stale (RFC 9211 §2.6).
        let ttl = i64::try_from(stored.lifetime.as_secs()).unwrap_or(i64::MAX)
            - i64::try_from(age.as_secs()).unwrap_or(i64::MAX);
        cache_status(cfg, &mut headers, outcome, Some(ttl));
    }
    let not_modified = stored.status == StatusCode::OK && conditions_hold(stored, req);
    let (status, body) = if not_modified {
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::CONTENT_RANGE,
            header::TRANSFER_ENCODING,
        ] {
            headers.remove(name);
        }
        headers.remove("content-md5");
        (StatusCode::NOT_MODIFIED, HttpCacheBody::empty())
    } else if let Some((start, end)) = range(stored, req) {
        let len = stored.body.len();
        let range = format!("bytes {start}-{end}/{len}");
        if let Ok(v) = HeaderValue::from_str(&range) {
            headers.insert(header::CONTENT_RANGE, v);
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end + 1 - start));
        let body = if method == Method::HEAD {
            HttpCacheBody::empty()
        } else {
            HttpCacheBody::full(stored.body.slice(start..=end))
        };
        (StatusCode::PARTIAL_CONTENT, body)
    } else if method == Method::HEAD {
        (stored.status, HttpCacheBody::empty())
    } else {
        (stored.status, HttpCacheBody::full(stored.body.clone()))
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.version_mut() = stored.version;
    *res.headers_mut() = headers;
    res
}

/// The `504 Gateway Timeout` for `only-if-cached` with nothing usable
/// stored (RFC 9111 §5.2.1.7).
pub(crate) fn gateway_timeout<B>(cfg: &Config) -> Response<HttpCacheBody<B>> {
    let mut res = Response::new(HttpCacheBody::empty());
    *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    cache_status(
        cfg,
        res.headers_mut(),
        Outcome {
            detail: Some("only-if-cached"),
            ..Outcome::default()
        },
        None,
    );
    res
}

/// `true` if the request's `If-None-Match` (or, without it,
/// `If-Modified-Since`) says the client already has the stored response.
pub(crate) fn conditions_hold(stored: &Stored, req: &HeaderMap) -> bool {
    if req.contains_key(header::IF_NONE_MATCH) {
        let Some(etag) = stored.etag().and_then(|e| e.to_str().ok()) else {
            return false;
        };
        let etag = weak(etag);
        return req
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|t| t == "*" || weak(t) == etag);
    }
    let Ok(Some(since)) = date::single_date(req, &http::header::IF_MODIFIED_SINCE) else {
        return false;
    };
    let last = date::single_date(&stored.headers, &http::header::LAST_MODIFIED)
        .ok()
        .flatten()
        .or_else(|| {
            date::single_date(&stored.headers, &http::header::DATE)
                .ok()
                .flatten()
        });
    last.is_some_and(|lm| lm <= since)
}

/// The byte range a request's `Range` asks of a stored `200` (one range of
/// `bytes` that the body can satisfy; RFC 9110 §14.2), unless an
/// `If-Range` does not match. `None`: answer with the whole response.
fn range(stored: &Stored, req: &HeaderMap) -> Option<(usize, usize)> {
    let spec = req.get(header::RANGE)?.to_str().ok()?.trim();
    if stored.status != StatusCode::OK {
        return None;
    }
    if let Some(cond) = req.get(header::IF_RANGE) {
        // A strong entity-tag or the exact Last-Modified date.
        let strong = stored.etag().filter(|e| !e.as_bytes().starts_with(b"W/"));
        let lm = stored.headers.get(header::LAST_MODIFIED);
        if Some(cond) != strong && Some(cond) != lm {
            return None;
        }
    }
    let set = spec.strip_prefix("bytes=")?.trim();
    if set.contains(',') {
        return None;
    }
    let len = stored.body.len();
    let (first, last) = set.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| -> Option<usize> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.is_empty() {
        let n = digits(last)?.min(len);
        return (n > 0).then(|| (len - n, len - 1));
    }
    let start = digits(first)?;
    let end = if last.is_empty() {
        len.checked_sub(1)?
    } else {
        digits(last)?.min(len.checked_sub(1)?)
    };
    (start <= end && start < len).then_some((start, end))
}

/// An entity-tag for weak comparison.
fn weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

/// `true` if the request carries conditions of its own.
pub(crate) fn is_conditional(req: &HeaderMap) -> bool {
    req.contains_key(header::IF_NONE_MATCH) || req.contains_key(header::IF_MODIFIED_SINCE)
}

/// An `Age` value: the first minute's from a table (a fresh hit's age is
/// usually seconds; formatting one allocates).
fn age_value(secs: u64) -> HeaderValue {
    const SECONDS: [&str; 60] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
        "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
        "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44", "45", "46",
        "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59",
    ];
    match usize::try_from(secs).ok().and_then(|i| SECONDS.get(i)) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_from_the_table_read_as_formatted_ones() {
        for secs in (0..200).chain([DELTA_MAX]) {
            assert_eq!(age_value(secs), HeaderValue::from(secs), "{secs}");
        }
    }
}
