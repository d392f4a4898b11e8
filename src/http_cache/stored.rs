//! A stored response ([`Stored`]) and the variants kept under one URI
//! ([`Variants`]), chosen by the request's `Vary` selecting fields.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::uri::Scheme;
use http::{Method, StatusCode, Uri, Version};
use http_cache_semantics::{CacheOptions, CachePolicy};

use super::arrival::Arrival;
use super::key::{self, key_parts};
use super::policy::{self, language_selects, selects, ReqView, Selecting, StaleRules};

/// One stored response: the origin's fields (hop-by-hop ones removed), its
/// body, its figures on arrival, and the policy that governs it (made
/// when first needed).
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// `http-cache-semantics`' policy: made by [`policy`](Self::policy)
    /// for the first request with directives of its own or revalidation,
    /// not for a miss that stores the response. Boxed: a policy is 448
    /// bytes, and most stored responses never make one.
    policy: OnceLock<Box<CachePolicy>>,
    /// The status the policy is shown.
    view_status: StatusCode,
    pub(crate) stale: StaleRules,
    pub(crate) selecting: Selecting,
    /// The freshness lifetime, when the response was fresh on arrival
    /// (else zero: how stale it is then counts from its whole age).
    pub(crate) lifetime: Duration,
    /// When it arrived, and its age then (as the policy counts it).
    pub(crate) received: SystemTime,
    initial_age: Duration,
    /// Until when it is fresh for a request without directives of its own.
    pub(crate) fresh_until: SystemTime,
    /// The request's scheme, and whether its URI named an authority: with
    /// the key (which holds the authority and the path) they give back
    /// the URI, made only for the policy and the remote tier (see
    /// [`uri`](Self::uri)), so a miss copies no URI to store.
    scheme: Option<Scheme>,
    absolute: bool,
    /// The fields of the request the policy reads (see
    /// `policy::request_fields`), to make the policy.
    pub(crate) request: HeaderMap,
    /// Whether `request` has a `Host` (else the URI's authority is the
    /// host, and equal to any other request's under the same key).
    has_host: bool,
}

impl Stored {
    /// Builds a stored response to a request to `uri` with its figures
    /// on arrival; `received` is when it arrived.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        status: StatusCode,
        version: Version,
        headers: HeaderMap,
        body: Bytes,
        arrival: Arrival,
        selecting: Selecting,
        received: SystemTime,
        uri: &Uri,
        request: HeaderMap,
    ) -> Self {
        // What the policy's `time_to_live` and `age` say on arrival.
        let ttl = arrival.max_age.saturating_sub(arrival.age);
        let initial_age = arrival.age;
        let lifetime = if ttl.is_zero() {
            Duration::ZERO
        } else {
            ttl + initial_age
        };
        let fresh_until = received.checked_add(ttl).unwrap_or(received);
        Stored {
            status,
            version,
            headers,
            body,
            policy: OnceLock::new(),
            view_status: arrival.view_status,
            stale: arrival.stale,
            selecting,
            lifetime,
            received,
            initial_age,
            fresh_until,
            scheme: uri.scheme().cloned(),
            absolute: uri.authority().is_some(),
            has_host: request.contains_key(http::header::HOST),
            request,
        }
    }

    /// The URI this response was requested with, stored under `key`:
    /// the scheme, and the authority (as the key has it: lower case,
    /// without user information) if it named one, then the path.
    pub(crate) fn uri(&self, key: &str) -> Uri {
        let (authority, path) = key_parts(key);
        let built = match (&self.scheme, self.absolute) {
            (Some(scheme), true) => format!("{scheme}://{authority}{path}").parse(),
            _ => path.parse(),
        };
        built.unwrap_or_default()
    }

    /// The policy that governs this response, stored under `key`, under
    /// `opts` (the cache's, the same for every call), made on first use
    /// from what is stored.
    pub(crate) fn policy(&self, key: &str, opts: CacheOptions) -> &CachePolicy {
        self.policy.get_or_init(|| {
            let view = ReqView {
                method: Method::GET,
                uri: self.uri(key),
                headers: self.request.clone(),
            };
            Box::new(policy::made(
                &view,
                self.view_status,
                &self.headers,
                self.received,
                opts,
            ))
        })
    }

    /// The response's age at `now` (RFC 9111 §4.2.3): what the policy
    /// says, without asking it.
    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.received).unwrap_or_default()
    }

    /// How long past its freshness lifetime the response is at `now`.
    pub(crate) fn staleness(&self, now: SystemTime) -> Duration {
        self.age(now).saturating_sub(self.lifetime)
    }

    /// Whether a stale-serving window (`stale-while-revalidate` or
    /// `stale-if-error`) still covers the response at `now`.
    pub(crate) fn within(&self, window: Option<Duration>, now: SystemTime) -> bool {
        self.stale.allowed && window.is_some_and(|w| self.staleness(now) <= w)
    }

    /// Whether a request to `uri` has this response's scheme, when both
    /// say one. Responses are keyed without it (a server sees requests in
    /// origin form, with no scheme); a client's `http://` answer must not
    /// serve its `https://` request (a lasting redirect to `https://`
    /// would send the client where it already is, for good, and an
    /// answer that came in the clear is not one that came over TLS).
    fn same_scheme(&self, uri: &Uri) -> bool {
        match (&self.scheme, uri.scheme()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// Whether `asked` is for this response's host: its `Host` field, else
    /// its URI's authority, compared without case. The key has the URI's
    /// authority, and a client may send a `Host` of its own (one address,
    /// several virtual hosts); the host the origin served is the one the
    /// `Host` named. Without a `Host` on either side both hosts are the
    /// authorities, equal under one key: nothing to compare.
    fn same_host(&self, asked: &Asked<'_>) -> bool {
        if !self.has_host && asked.host.is_none() {
            return true;
        }
        // Without a `Host` of its own, this response's host is the
        // authority its URI named: the key's.
        let ours = match self.request.get(http::header::HOST) {
            Some(h) => Some(h.as_bytes()),
            None => Some(key_parts(asked.key).0.as_bytes()).filter(|a| !a.is_empty()),
        };
        match (ours, host_of(asked.uri, asked.host)) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => true,
        }
    }

    /// Whether `asked` is for this response's resource: its scheme and
    /// its host (the key holds the rest).
    fn same_resource(&self, asked: &Asked<'_>) -> bool {
        self.same_scheme(asked.uri) && self.same_host(asked)
    }

    /// Whether `asked` (a request with fields `req`) selects this
    /// response: its resource, and its `Vary` fields.
    fn selected_by(&self, asked: &Asked<'_>, req: &HeaderMap) -> bool {
        self.same_resource(asked) && selects(&self.selecting, req)
    }

    /// The response's `ETag`, if it has one.
    pub(crate) fn etag(&self) -> Option<&HeaderValue> {
        self.headers.get(http::header::ETAG)
    }

    /// How long the response stays fresh after `now`: the policy's
    /// `time_to_live`, from what was worked out on arrival instead of
    /// parsing the fields again (the lifetime and the age only move with
    /// the clock).
    pub(crate) fn time_to_live(&self, now: SystemTime) -> Duration {
        let from = now.max(self.received);
        self.fresh_until.duration_since(from).unwrap_or_default()
    }

    /// How long the response is worth keeping after `now`: while fresh, and
    /// then as long as it may be served stale (`stale-while-revalidate`,
    /// `stale-if-error`, a request's `max-stale`) or revalidated.
    pub(crate) fn keep_for(&self, now: SystemTime, keep_stale: Duration) -> Duration {
        let mut after = keep_stale;
        if self.stale.allowed {
            after = after
                .max(self.stale.while_revalidate.unwrap_or_default())
                .max(self.stale.if_error.unwrap_or_default());
        }
        self.time_to_live(now).saturating_add(after)
    }
}

/// What a request brings to choosing a stored response beside its `Vary`
/// fields: its key, its URI, and its `Host` (read once for every variant).
struct Asked<'a> {
    key: &'a str,
    uri: &'a Uri,
    host: Option<&'a HeaderValue>,
}

impl<'a> Asked<'a> {
    fn of(key: &'a str, uri: &'a Uri, req: &'a HeaderMap) -> Self {
        Asked {
            key,
            uri,
            host: req.get(http::header::HOST),
        }
    }
}

/// The host of a request to `uri` with `Host` field `host`: that field,
/// else the URI's authority (without user information).
fn host_of<'a>(uri: &'a Uri, host: Option<&'a HeaderValue>) -> Option<&'a [u8]> {
    match host {
        Some(h) => Some(h.as_bytes()),
        None => key::authority(uri).map(str::as_bytes),
    }
}

/// The stored responses for one URI, newest first.
#[derive(Clone, Debug)]
pub(crate) struct Variants(Repr);

/// One response on its own (most URIs have one: no list to allocate, make
/// or free), or a list of them.
#[derive(Clone, Debug)]
enum Repr {
    One(Arc<Stored>),
    Many(Arc<[Arc<Stored>]>),
}

impl Variants {
    /// The newest response whose selecting fields a request to `uri` with
    /// fields `req` matches; these are the variants stored under `key`.
    pub(crate) fn select(&self, key: &str, uri: &Uri, req: &HeaderMap) -> Option<&Arc<Stored>> {
        let asked = Asked::of(key, uri, req);
        self.list()
            .iter()
            .find(|s| s.selected_by(&asked, req))
            .or_else(|| {
                // Content negotiation, normalised: the language asked for most.
                self.list().iter().find(|s| {
                    s.same_resource(&asked)
                        && s.headers
                            .get(http::header::CONTENT_LANGUAGE)
                            .and_then(|l| l.to_str().ok())
                            .is_some_and(|l| language_selects(&s.selecting, l.trim(), req))
                })
            })
    }

    /// These variants with `new` first, less the ones a request to `uri`
    /// with fields `req` selected (`new` replaces them), at most `max` in
    /// all.
    pub(crate) fn with(
        &self,
        new: Arc<Stored>,
        key: &str,
        uri: &Uri,
        req: &HeaderMap,
        max: usize,
    ) -> Variants {
        let asked = Asked::of(key, uri, req);
        let mut list: Vec<Arc<Stored>> = Vec::with_capacity(self.list().len() + 1);
        list.push(new);
        list.extend(
            self.list()
                .iter()
                .filter(|s| !s.selected_by(&asked, req))
                .cloned(),
        );
        list.truncate(max.max(1));
        Variants::from_list(list)
    }

    /// The variants, newest first.
    pub(crate) fn list(&self) -> &[Arc<Stored>] {
        match &self.0 {
            Repr::One(one) => std::slice::from_ref(one),
            Repr::Many(list) => list,
        }
    }

    /// Variants from a list, newest first.
    pub(crate) fn from_list(mut list: Vec<Arc<Stored>>) -> Variants {
        match list.pop() {
            Some(one) if list.is_empty() => Variants::one(one),
            Some(last) => {
                list.push(last);
                Variants(Repr::Many(list.into()))
            }
            None => Variants(Repr::Many(list.into())),
        }
    }

    /// How long the longest-kept variant is worth keeping after `now`.
    pub(crate) fn keep_for(&self, now: SystemTime, keep_stale: Duration) -> Duration {
        self.list()
            .iter()
            .map(|s| s.keep_for(now, keep_stale))
            .max()
            .unwrap_or_default()
    }

    /// A single variant.
    pub(crate) fn one(new: Arc<Stored>) -> Variants {
        Variants(Repr::One(new))
    }

    /// These variants less the ones a request to `uri` with fields `req`
    /// selects (`None` if none is left).
    pub(crate) fn without(&self, key: &str, uri: &Uri, req: &HeaderMap) -> Option<Variants> {
        let asked = Asked::of(key, uri, req);
        let list: Vec<Arc<Stored>> = self
            .list()
            .iter()
            .filter(|s| !s.selected_by(&asked, req))
            .cloned()
            .collect();
        (!list.is_empty()).then(|| Variants::from_list(list))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use http::header::{HeaderMap, HeaderValue};
    use http::{StatusCode, Uri, Version};
    use http_cache_semantics::CacheOptions;

    use super::super::{arrival, policy};
    use super::Stored;

    const OPTS: CacheOptions = CacheOptions {
        shared: true,
        cache_heuristic: 0.1,
        immutable_min_time_to_live: Duration::from_secs(24 * 3600),
        ignore_cargo_cult: false,
    };

    fn stored(cache_control: &str, age: Option<&str>, received: SystemTime) -> Stored {
        let mut h = HeaderMap::new();
        h.insert(
            "cache-control",
            HeaderValue::from_str(cache_control).unwrap(),
        );
        if let Some(a) = age {
            h.insert("age", HeaderValue::from_str(a).unwrap());
        }
        let uri = Uri::from_static("/a");
        let arrival = arrival::arrival(false, false, StatusCode::OK, &h, received, OPTS).unwrap();
        let sel = policy::selecting(&h, &HeaderMap::new());
        Stored::new(
            StatusCode::OK,
            Version::HTTP_11,
            h,
            bytes::Bytes::new(),
            arrival,
            sel,
            received,
            &uri,
            HeaderMap::new(),
        )
    }

    #[test]
    fn a_stored_response_carries_no_policy_inline() {
        // Most stored responses never make their policy (448 bytes): it
        // is boxed once made, so each entry costs a pointer for it.
        assert!(
            std::mem::size_of::<Stored>() < 512,
            "{} bytes",
            std::mem::size_of::<Stored>()
        );
    }

    #[test]
    fn the_uri_is_made_again_from_the_key_as_it_was_asked() {
        let received = SystemTime::UNIX_EPOCH;
        let with = |uri: &str| {
            let mut s = stored("max-age=60", None, received);
            let uri: Uri = uri.parse().unwrap();
            s.scheme = uri.scheme().cloned();
            s.absolute = uri.authority().is_some();
            s
        };
        for (asked, key, made) in [
            (
                "http://api.test/a?b=c",
                "//api.test/a?b=c",
                "http://api.test/a?b=c",
            ),
            (
                "https://api.test:8443/",
                "//api.test:8443/",
                "https://api.test:8443/",
            ),
            ("http://api.test", "//api.test/", "http://api.test/"),
            // The key's authority: lower case, no user information.
            ("http://u:p@API.test/x", "//api.test/x", "http://api.test/x"),
            // Origin form (a server's request): the path alone.
            ("/a?b", "//api.test/a?b", "/a?b"),
        ] {
            assert_eq!(with(asked).uri(key).to_string(), made, "{asked}");
        }
    }

    #[test]
    fn time_to_live_is_the_policys_made_later_at_every_instant() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for (cc, age) in [
            ("max-age=60", None),
            ("max-age=60", Some("15")),
            ("max-age=60", Some("90")),
            ("no-cache", None),
            ("max-age=0", None),
        ] {
            let s = stored(cc, age, t0);
            for dt in [0u64, 1, 30, 44, 45, 59, 60, 61, 3600] {
                let now = t0 + Duration::from_secs(dt);
                assert_eq!(
                    s.time_to_live(now),
                    s.policy("//h/a", OPTS).time_to_live(now),
                    "{cc} age {age:?} at +{dt}s"
                );
            }
            let before = t0 - Duration::from_secs(5);
            assert_eq!(
                s.time_to_live(before),
                s.policy("//h/a", OPTS).time_to_live(before)
            );
        }
    }
}
