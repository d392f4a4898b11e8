//! What a response says of itself when it arrives: may it be stored, for
//! how long is it fresh, and how old is it already.
//!
//! These are the answers `http-cache-semantics` gives (`is_storable`,
//! `time_to_live`, `age`) for the normalised view `policy.rs` shows it,
//! worked out here from the parsed fields without building that view or
//! the crate's policy: a miss stores a response without either, and a
//! stored response builds its policy only when a request needs more than
//! its freshness (request directives, revalidation; see
//! [`Stored::policy`](super::stored::Stored::policy)). The tests below
//! hold the two to the same answers over every combination of the fields
//! that decide them.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};
use http::StatusCode;
use http_cache_semantics::CacheOptions;

use super::date;
use super::parse;
use super::policy::{self, Shown, StaleRules};

/// Statuses cacheable by default (RFC 9110 §15.1), as the crate lists them.
const CACHEABLE_BY_DEFAULT: &[u16] = &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// A storable response's figures on arrival.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arrival {
    /// The status the crate is shown (an unknown one as `302`).
    pub(crate) view_status: StatusCode,
    /// The freshness lifetime (RFC 9111 §4.2.1), heuristic included.
    pub(crate) max_age: Duration,
    /// The age on arrival (RFC 9111 §4.2.3).
    pub(crate) age: Duration,
    pub(crate) stale: StaleRules,
}

/// The figures of a response with `status` and fields `raw` (hop-by-hop
/// ones removed), received at `received` for a GET whose `Cache-Control`
/// had `no-store` (`req_no_store`) or not and which carried an
/// `Authorization` (`req_auth`) or not; `None` if it may not be stored.
pub(crate) fn arrival(
    req_no_store: bool,
    req_auth: bool,
    status: StatusCode,
    raw: &HeaderMap,
    received: SystemTime,
    opts: CacheOptions,
) -> Option<Arrival> {
    let dirs = parse::directives(raw.get_all(header::CACHE_CONTROL));
    let must_understand = parse::has(&dirs, "must-understand");
    let view_status = policy::view_status(status, must_understand)?;
    let shared = opts.shared;
    let mut cc = Shown::of(&dirs, shared, must_understand);
    // Without a `Cache-Control` to show, the crate reads `Pragma: no-cache`.
    if cc.is_empty() {
        cc.no_cache = raw
            .get(header::PRAGMA)
            .and_then(|p| p.to_str().ok())
            .is_some_and(|p| p.contains("no-cache"));
    }
    // RFC 9111 §3, as the crate's `is_storable` reads it: nobody said
    // `no-store`; a shared cache stores no `private` answer, nor one to a
    // request with `Authorization` unless the response allows it (§3.5);
    // and the response has explicit freshness, `public`, or a status
    // cacheable by default.
    let refused = req_no_store || cc.no_store || (shared && cc.private);
    let authorised =
        !shared || !req_auth || cc.must_revalidate || cc.public || cc.s_maxage.is_some();
    let fresh_enough = raw.contains_key(header::EXPIRES)
        || cc.max_age.is_some()
        || (shared && cc.s_maxage.is_some())
        || cc.public
        || CACHEABLE_BY_DEFAULT.contains(&view_status.as_u16());
    if refused || !authorised || !fresh_enough {
        return None;
    }
    let date = date::single_date(raw, &header::DATE).ok().flatten();
    Some(Arrival {
        view_status,
        max_age: max_age(&cc, raw, date.unwrap_or(received), opts),
        age: Duration::from_secs(date::arrival_age(raw, date, received)),
        stale: policy::stale_rules(&dirs, shared),
    })
}

/// The freshness lifetime of a storable response (`server_date`: its
/// `Date`, or when it arrived).
fn max_age(cc: &Shown, raw: &HeaderMap, server_date: SystemTime, opts: CacheOptions) -> Duration {
    if cc.no_cache {
        return Duration::ZERO;
    }
    if opts.shared {
        if let Some(s) = cc.s_maxage {
            return Duration::from_secs(s);
        }
    }
    if let Some(s) = cc.max_age {
        return Duration::from_secs(s);
    }
    let floor = if cc.immutable {
        opts.immutable_min_time_to_live
    } else {
        Duration::ZERO
    };
    if raw.contains_key(header::EXPIRES) {
        // An invalid `Expires` is already expired.
        let expires = date::single_date(raw, &header::EXPIRES)
            .ok()
            .flatten()
            .unwrap_or(SystemTime::UNIX_EPOCH);
        return floor.max(date::since(expires, server_date));
    }
    if let Ok(Some(modified)) = date::single_date(raw, &header::LAST_MODIFIED) {
        if let Ok(since) = server_date.duration_since(modified) {
            let secs = since.as_secs() as f64 * f64::from(opts.cache_heuristic);
            return floor.max(Duration::from_secs(secs as u64));
        }
    }
    floor
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};
    use http::{Method, Uri};

    use crate::http_cache::policy::{made, policy, request_fields, store_view, ReqView};

    const CC: &[&[&str]] = &[
        &[],
        &["max-age=60"],
        &["max-age=0"],
        &["MAX-AGE=30"],
        &["max-age=abc"],
        &["max-age"],
        &["max-age=\"60\""],
        &["max-age=60, max-age=10"],
        &["max-age=99999999999"],
        &["extension=\"max-age=100\", max-age=1"],
        &["s-maxage=30"],
        &["s-maxage=30, max-age=5"],
        &["public"],
        &["public, s-maxage=5"],
        &["private"],
        &["private, max-age=60"],
        &["no-store"],
        &["no-cache"],
        &["no-cache, max-age=60"],
        &["must-revalidate"],
        &["must-revalidate, max-age=60"],
        &["proxy-revalidate, max-age=60"],
        &["proxy-revalidate"],
        &["immutable"],
        &["immutable, max-age=10"],
        &["must-understand, no-store, max-age=60"],
        &["must-understand, no-store"],
        &["stale-while-revalidate=30, stale-if-error=60"],
        &["max-age=10", "no-cache"],
        &["max-age=10", "max-age=20"],
        &["community=\"UCI\""],
    ];

    /// Seconds after (or, negative, before) the arrival; `None`: an
    /// invalid value; a second entry: two field lines.
    type When = &'static [Option<i64>];
    const EXPIRES: &[When] = &[
        &[],
        &[Some(100)],
        &[Some(-100)],
        &[None],
        &[Some(50), Some(60)],
    ];
    const DATE: &[When] = &[&[], &[Some(-10)], &[Some(10)], &[Some(-5000)], &[None]];
    const MODIFIED: &[When] = &[
        &[],
        &[Some(-1000)],
        &[Some(1000)],
        &[Some(-100_000)],
        &[None],
    ];
    const AGE: &[&[&str]] = &[&[], &["5"], &["abc"], &["1", "2"], &["100000"], &["0"]];
    const STATUS: &[u16] = &[
        200, 203, 204, 206, 300, 301, 302, 304, 307, 404, 410, 500, 599, 100,
    ];

    fn at(received: SystemTime, secs: i64) -> SystemTime {
        // Whole seconds, as an HTTP date has them.
        let base = received
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        SystemTime::UNIX_EPOCH + Duration::from_secs(base.saturating_add_signed(secs))
    }

    fn dates(h: &mut HeaderMap, name: HeaderName, when: When, received: SystemTime) {
        for w in when {
            let v = match w {
                Some(s) => httpdate::fmt_http_date(at(received, *s)),
                None => "0".to_string(),
            };
            h.append(name.clone(), HeaderValue::from_str(&v).unwrap());
        }
    }

    /// Holds `arrival` to the crate's policy for one response, and the
    /// policy a stored response makes later to the one made on arrival.
    fn check(req: &HeaderMap, status: u16, raw: &HeaderMap, opts: CacheOptions, what: &str) {
        let received = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let status = StatusCode::from_u16(status).unwrap();
        let uri = Uri::from_static("http://example.com/a");
        let fields = request_fields(req, raw);
        let view = store_view(&uri, req, fields.clone());
        let theirs = policy(&view, status, raw, received, opts).filter(|(p, _)| p.is_storable());
        let no_store = req.contains_key(header::CACHE_CONTROL)
            && parse::has(
                &parse::directives(req.get_all(header::CACHE_CONTROL)),
                "no-store",
            );
        let auth = req.contains_key(header::AUTHORIZATION);
        let ours = arrival(no_store, auth, status, raw, received, opts);
        let (Some((pol, stale)), Some(a)) = (&theirs, &ours) else {
            assert_eq!(theirs.is_some(), ours.is_some(), "storable: {what}");
            return;
        };
        assert_eq!(pol.age(received), a.age, "age: {what}");
        assert_eq!(
            pol.time_to_live(received),
            a.max_age.saturating_sub(a.age),
            "time to live: {what}"
        );
        assert_eq!(stale.allowed, a.stale.allowed, "{what}");
        // The policy a stored response makes when first needed (from the
        // fields it kept) says what the one made on arrival says.
        let kept = ReqView {
            method: Method::GET,
            uri,
            headers: fields,
        };
        let later = made(&kept, a.view_status, raw, received, opts);
        assert!(later.is_storable(), "{what}");
        for s in [0, 1, 7, 59, 60, 61, 3600, 1 << 20] {
            let t = received + Duration::from_secs(s);
            assert_eq!(
                later.time_to_live(t),
                pol.time_to_live(t),
                "{what} at +{s}s"
            );
            assert_eq!(later.is_stale(t), pol.is_stale(t), "{what} at +{s}s");
        }
    }

    fn options(shared: bool, heuristic: f32, immutable: u64) -> CacheOptions {
        CacheOptions {
            shared,
            cache_heuristic: heuristic,
            immutable_min_time_to_live: Duration::from_secs(immutable),
            ignore_cargo_cult: false,
        }
    }

    #[test]
    fn every_cache_control_and_status_as_the_crate_says() {
        let received = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        for shared in [false, true] {
            for auth in [false, true] {
                let mut req = HeaderMap::new();
                if auth {
                    req.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
                }
                for cc in CC {
                    for pragma in [false, true] {
                        for status in STATUS {
                            for modified in [&[][..], &[Some(-1000)][..]] {
                                let mut raw = HeaderMap::new();
                                for line in *cc {
                                    raw.append(
                                        header::CACHE_CONTROL,
                                        HeaderValue::from_static(line),
                                    );
                                }
                                if pragma {
                                    raw.insert(
                                        header::PRAGMA,
                                        HeaderValue::from_static("no-cache"),
                                    );
                                }
                                dates(&mut raw, header::LAST_MODIFIED, modified, received);
                                let what =
                                    format!("shared {shared}, auth {auth}, {status} {raw:?}");
                                check(&req, *status, &raw, options(shared, 0.1, 0), &what);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_date_and_age_as_the_crate_says() {
        let received = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let req = HeaderMap::new();
        for shared in [false, true] {
            for cc in [
                &[][..],
                &["public"][..],
                &["immutable"][..],
                &["s-maxage=30"][..],
            ] {
                for expires in EXPIRES {
                    for date in DATE {
                        for modified in MODIFIED {
                            for age in AGE {
                                let mut raw = HeaderMap::new();
                                for line in cc {
                                    raw.append(
                                        header::CACHE_CONTROL,
                                        HeaderValue::from_static(line),
                                    );
                                }
                                dates(&mut raw, header::EXPIRES, expires, received);
                                dates(&mut raw, header::DATE, date, received);
                                dates(&mut raw, header::LAST_MODIFIED, modified, received);
                                for a in *age {
                                    raw.append(header::AGE, HeaderValue::from_static(a));
                                }
                                for (h, m) in [(0.1, 0), (1.0, 3600), (0.0, 0)] {
                                    let what = format!("shared {shared}, {h}, {m}: {raw:?}");
                                    check(&req, 200, &raw, options(shared, h, m), &what);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_request_with_no_store_stores_nothing() {
        let mut req = HeaderMap::new();
        req.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=5, No-Store"),
        );
        let mut raw = HeaderMap::new();
        raw.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        check(&req, 200, &raw, options(true, 0.1, 0), "request no-store");
        assert!(arrival(
            true,
            false,
            StatusCode::OK,
            &raw,
            SystemTime::now(),
            options(true, 0.1, 0)
        )
        .is_none());
    }
}
