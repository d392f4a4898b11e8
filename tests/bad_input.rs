//! Bad input, at volume: every parser and decoder that reads bytes from the
//! network gets arbitrary input and must answer with a value or a typed
//! error, never a panic, and must not hold more memory than its limit.
//!
//! Each property runs 2,000 cases by default (`PROPTEST_CASES` overrides it;
//! RELIABILITY.md has the million-case command). Covered here:
//! - `Link` headers (`paginate::parse_next_link`) and the resolution of the
//!   reference they carry against the page's URL (`paginate::LinkHeader`);
//! - `Retry-After`, both forms (`classify::parse_retry_after`);
//! - `grpc-timeout` (`deadline::parse_grpc_timeout`);
//! - JSON bodies, through `fetch::JsonLayer` and `paginate::JsonPages`
//!   (items and cursors found by JSON pointer), with bodies cut into
//!   arbitrary frames, lying `Content-Length`s and bodies over the limit;
//! - rate-limit rejections turned into HTTP answers (`respond`), for any
//!   quota and any wait.

use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt};
use tower_patterns::classify::parse_retry_after;
use tower_patterns::deadline::parse_grpc_timeout;
use tower_patterns::fetch::{FetchError, JsonLayer};
use tower_patterns::paginate::{self, parse_next_link, JsonPages, LinkHeader, Page};

/// Cases per property: `PROPTEST_CASES`, or 2,000.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // A failure is shrunk, but not for longer than a CI step can wait.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Bytes that a header value may hold, biased towards the characters the
/// parsers split on.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => 0x20u8..0x7f,
            1 => prop::sample::select(b"<>;,\"\\= \t:/?#[]@%".to_vec()),
            1 => 0x80u8..=0xff,
        ],
        0..max,
    )
}

// ===== Link headers and URI resolution =====

proptest! {
    #![proptest_config(config())]

    #[test]
    fn link_headers_never_panic_and_answer_a_part_of_the_header(
        prefix in "(<[a-zA-Z0-9/?=&.%:#-]{0,24}>; ?rel=\"?(next|prev|last)\"?,? ?){0,3}",
        noise in header_bytes(96),
        second in proptest::option::of(header_bytes(48)),
    ) {
        let mut value = prefix.into_bytes();
        value.extend(noise);
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.append(http::header::LINK, value.clone());
        if let Some(second) = second.and_then(|b| HeaderValue::from_bytes(&b).ok()) {
            headers.append(http::header::LINK, second);
        }
        if let Some(next) = parse_next_link(&headers) {
            // Whatever it found was between angle brackets in some value:
            // the parser never invents bytes.
            let all: Vec<u8> = headers
                .get_all(http::header::LINK)
                .iter()
                .flat_map(|v| v.as_bytes().to_vec())
                .collect();
            let found = next.as_bytes();
            prop_assert!(
                found.is_empty() || all.windows(found.len()).any(|w| w == found),
                "{next:?} is not in the header"
            );
        }
    }

    #[test]
    fn any_link_reference_resolves_or_is_a_typed_error(
        base_path in "(/[a-z0-9%.]{0,8}){0,4}",
        base_query in proptest::option::of("[a-z0-9=&%]{0,12}"),
        reference in prop_oneof![
            "[a-zA-Z0-9:/?#.%@\\[\\]!$&'()*+,;=~ -]{0,48}",
            "(https?|ftp|mailto|data|javascript):[a-z0-9/.:@%?#]{0,24}",
            "//[a-z0-9.:@\\[\\]-]{0,24}(/[a-z0-9]{0,8}){0,3}",
            "(\\.\\./){0,6}[a-z]{0,4}",
        ],
    ) {
        let query = base_query.map(|q| format!("?{q}")).unwrap_or_default();
        let Ok(base) = format!("http://api.test{base_path}{query}").parse::<Uri>() else {
            return Ok(());
        };
        let Ok(value) = HeaderValue::from_str(&format!("<{reference}>; rel=\"next\"")) else {
            return Ok(());
        };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::LINK, value);
        let page = Page::<u8>::new(vec![1]).with_headers(headers);
        let mut walk = LinkHeader::new(base.clone());
        match paginate::Strategy::<u8>::next(&mut walk, &base, &page) {
            Ok(Some(next)) => {
                // Resolved: absolute, over HTTP, no fragment.
                prop_assert!(
                    matches!(next.scheme_str(), Some("http" | "https")),
                    "{next} is not an http(s) URL"
                );
                prop_assert!(next.authority().is_some(), "{next} has no host");
                prop_assert!(!next.to_string().contains('#'), "{next} kept its fragment");
            }
            Ok(None) => {}
            Err(e) => {
                // A typed error that names what was wrong.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

// ===== Retry-After, both forms =====

const DAYS: [&str; 8] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Xyz"];
const MONTHS: [&str; 13] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec", "Foo",
];

fn retry_after_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // delta-seconds, from small to absurd, with padding and signs.
        "[ \t]{0,2}[+-]?[0-9]{0,30}[ \t]{0,2}".prop_map(String::into_bytes),
        // IMF-fixdate with any field out of range.
        (
            prop::sample::select(DAYS.to_vec()),
            0u32..40,
            prop::sample::select(MONTHS.to_vec()),
            0u32..12_000,
            0u32..30,
            0u32..70,
            0u32..70,
            prop::sample::select(vec!["GMT", "UTC", "PST", ""]),
        )
            .prop_map(|(d, day, m, y, h, min, s, z)| {
                format!("{d}, {day:02} {m} {y:04} {h:02}:{min:02}:{s:02} {z}").into_bytes()
            }),
        // The obsolete forms (RFC 850 and asctime), some valid.
        (0u32..40, prop::sample::select(MONTHS.to_vec()), 0u32..100).prop_map(|(day, m, y)| {
            format!("Sunday, {day:02}-{m}-{y:02} 08:49:37 GMT").into_bytes()
        }),
        (
            prop::sample::select(MONTHS.to_vec()),
            0u32..40,
            0u32..12_000
        )
            .prop_map(|(m, day, y)| { format!("Sun {m} {day:>2} 08:49:37 {y}").into_bytes() }),
        header_bytes(40),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn retry_after_is_a_duration_or_nothing(
        value in retry_after_value(),
        now_secs in 0u64..=253_402_300_799, // up to 9999-12-31
    ) {
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let text = value.to_str().map(|s| s.trim().to_owned()).unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, value);
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let got = parse_retry_after(&headers, now);
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            // Digits are always read, saturating.
            let want = text.parse::<u64>().unwrap_or(u64::MAX);
            prop_assert_eq!(got, Some(Duration::from_secs(want)));
        } else if let Some(wait) = got {
            // A date: the wait ends at that date, never before now.
            let at = httpdate::parse_http_date(&text).expect("only valid dates are read");
            prop_assert_eq!(wait, at.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }

    #[test]
    fn a_date_round_trips_through_retry_after(
        at_secs in 0u64..=253_402_300_799,
        now_secs in 0u64..=253_402_300_799,
    ) {
        let at = UNIX_EPOCH + Duration::from_secs(at_secs);
        let now = UNIX_EPOCH + Duration::from_secs(now_secs);
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(at)).unwrap(),
        );
        prop_assert_eq!(
            parse_retry_after(&headers, now),
            Some(at.duration_since(now).unwrap_or(Duration::ZERO))
        );
    }

    // ===== grpc-timeout =====

    #[test]
    fn grpc_timeout_is_a_duration_or_a_typed_error(
        value in prop_oneof![
            "[0-9]{0,10}[HMSmun]?".prop_map(String::into_bytes),
            header_bytes(12),
        ],
    ) {
        match parse_grpc_timeout(&value) {
            Ok(d) => {
                // At most 8 digits of hours.
                prop_assert!(d <= Duration::from_secs(99_999_999 * 3600));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

// ===== JSON bodies =====

/// A body that arrives in the given frames.
type Frames =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn framed(body: &[u8], cuts: &[usize]) -> Frames {
    let mut frames = Vec::new();
    let mut at = 0;
    for &cut in cuts {
        let end = (at + cut).min(body.len());
        frames.push(Ok(Frame::data(Bytes::copy_from_slice(&body[at..end]))));
        at = end;
    }
    frames.push(Ok(Frame::data(Bytes::copy_from_slice(&body[at..]))));
    StreamBody::new(futures::stream::iter(frames))
}

/// JSON that is nearly right: valid documents, truncated, with bytes
/// flipped, or nested deeper than a decoder's stack.
fn json_body() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map("(id|name|items|next_cursor|[a-z]{1,4})", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        4 => value.clone().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        2 => (value.clone(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let bytes = serde_json::to_vec(&v).unwrap();
            let cut = cut.index(bytes.len() + 1);
            bytes[..cut].to_vec()
        }),
        2 => (value, any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, at, b)| {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            bytes
        }),
        1 => (1usize..4_000).prop_map(|depth| {
            let mut bytes = vec![b'['; depth];
            bytes.extend(std::iter::repeat_n(b']', depth));
            bytes
        }),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)] // Read by the decoder only.
struct Item {
    id: u64,
    name: Option<String>,
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_layer_decodes_or_fails_with_a_typed_error(
        body in json_body(),
        cuts in proptest::collection::vec(0usize..16, 0..6),
        status in prop::sample::select(vec![200u16, 201, 204, 301, 404, 429, 500, 503]),
        length in proptest::option::of(0u64..100),
        limit in 1u64..512,
    ) {
        let runtime = runtime();
        let len = body.len() as u64;
        let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let mut resp = Response::new(framed(&body, &cuts));
            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
            if let Some(length) = length {
                // Often a lie.
                resp.headers_mut().insert(http::header::CONTENT_LENGTH, length.into());
            }
            async move { Ok::<_, Infallible>(resp) }
        });
        let svc = JsonLayer::<Vec<Item>>::builder()
            .max_body_bytes(limit)
            .build()
            .unwrap()
            .layer(inner);
        let req = Request::get("http://api.test/items").body(Full::new(Bytes::new())).unwrap();
        let got = runtime.block_on(svc.oneshot(req));
        match got {
            Ok(items) => {
                prop_assert!((200..300).contains(&status));
                prop_assert!(len <= limit, "a body over the limit was decoded");
                let _ = items;
            }
            Err(e) => {
                let e = e.downcast::<FetchError>().expect("the layer's errors are FetchErrors");
                match *e {
                    FetchError::Status { status: s, ref body, .. } => {
                        prop_assert_eq!(s.as_u16(), status);
                        prop_assert!(body.len() <= tower_patterns::fetch::STATUS_BODY_EXCERPT);
                    }
                    FetchError::BodyTooLarge { .. } => prop_assert!(len > limit || length.is_some_and(|l| l > limit)),
                    FetchError::Decode { .. } => prop_assert!((200..300).contains(&status)),
                    ref other => prop_assert!(false, "unexpected error {other:?}"),
                }
            }
        }
    }

    #[test]
    fn json_pages_read_items_and_cursors_or_fail_typed(
        body in json_body(),
        cuts in proptest::collection::vec(0usize..16, 0..4),
        items_at in prop::sample::select(vec!["/items", "/", "", "/items/0", "/a~1b", "/~2", "items"]),
        next_at in prop::sample::select(vec!["/next_cursor", "/id", "/items", "/x/y/z", "nope"]),
    ) {
        let runtime = runtime();
        let body_copy = body.clone();
        let client = tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let resp = Response::new(framed(&body, &cuts));
            async move { Ok::<_, Infallible>(resp) }
        });
        let mut pages = JsonPages::<Item>::new(client)
            .max_body_bytes(4096)
            .items_at(items_at)
            .next_at(next_at);
        let page = runtime.block_on(async {
            pages.ready().await?;
            pages.call(Uri::from_static("http://api.test/items")).await
        });
        match page {
            Ok(page) => {
                // Decoded: the body was JSON, and the cursor is what the
                // pointer names in it (a string as it is, a number as
                // digits, null or nothing as "last page").
                let doc: serde_json::Value =
                    serde_json::from_slice(&body_copy).expect("a decoded page was JSON");
                let want = match doc.pointer(next_at) {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                prop_assert_eq!(page.next_token().map(str::to_owned), want);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

// ===== Rate-limit answers =====

proptest! {
    #![proptest_config(config())]

    /// Any quota (from one call a nanosecond to one a century) and any
    /// wait become a 429 whose headers are valid and say the same thing.
    #[test]
    fn rate_limit_answers_have_valid_headers_for_any_quota(
        count in 1u32..=u32::MAX,
        period_ns in prop_oneof![1u64..1_000, 1_000u64..1_000_000_000, 1_000_000_000u64..=3_155_760_000_000_000_000],
    ) {
        // Time stands still between the two calls, however short the
        // interval.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let period = Duration::from_nanos(period_ns);
        let err = runtime.block_on(async {
            let layer = tower_patterns::rate_limit::RateLimitLayer::builder()
                .rate(count, period)
                .burst(1)
                .reject()
                .build()
                .unwrap();
            let mut svc = layer.layer(tower::service_fn(|n: u32| async move {
                Ok::<_, tower::BoxError>(n)
            }));
            // The first call takes the only slot; the second is over.
            svc.ready().await.unwrap().call(1).await.unwrap();
            svc.ready().await.unwrap().call(2).await.unwrap_err()
        });
        let limited = err.downcast_ref::<tower_patterns::rate_limit::RateLimited>().unwrap();
        prop_assert_eq!(limited.count(), count);
        let answer = tower_patterns::respond::error_response(&err);
        prop_assert_eq!(answer.status(), http::StatusCode::TOO_MANY_REQUESTS);
        let response: Response<String> = answer.into_http();
        let headers = response.headers();
        let retry_after: u64 = headers[http::header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
        // At least a second, and not shorter than the wait it stands for.
        prop_assert!(retry_after >= 1);
        prop_assert!(Duration::from_secs(retry_after) >= limited.retry_after());
        for name in ["ratelimit-policy", "ratelimit"] {
            let value = headers.get(name);
            prop_assert!(value.is_some(), "no {} header", name);
            let text = value.unwrap().to_str();
            prop_assert!(text.is_ok(), "{} is not visible ASCII", name);
        }
        let policy = headers["ratelimit-policy"].to_str().unwrap();
        prop_assert!(policy.contains(&format!("q={count}")), "{policy}");
    }
}

// ===== Cache entries read back from a store =====

fn response() -> impl Strategy<Value = http::Response<Bytes>> {
    (
        100u16..1000,
        proptest::collection::vec(("[a-z][a-z0-9-]{0,16}", header_bytes(40)), 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
        prop::sample::select(vec![
            http::Version::HTTP_10,
            http::Version::HTTP_11,
            http::Version::HTTP_2,
        ]),
    )
        .prop_filter_map("a valid response", |(status, headers, body, version)| {
            let mut resp = http::Response::new(Bytes::from(body));
            *resp.status_mut() = http::StatusCode::from_u16(status).ok()?;
            *resp.version_mut() = version;
            for (name, value) in headers {
                let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
                let value = HeaderValue::from_bytes(&value).ok()?;
                resp.headers_mut().append(name, value);
            }
            Some(resp)
        })
}

proptest! {
    #![proptest_config(config())]

    /// What a store hands back may be anything (another version's format,
    /// a hand-written key, a cut value): decoding is a value or an error.
    #[test]
    fn stored_bytes_decode_or_fail_typed(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        use tower_patterns::cache::{Codec, HttpCodec, JsonCodec};
        let http: Result<http::Response<Bytes>, _> = HttpCodec.decode(&bytes);
        if let Err(e) = http {
            prop_assert!(!e.to_string().is_empty());
        }
        let json: Result<Vec<(u64, String)>, _> = JsonCodec.decode(&bytes);
        if let Err(e) = json {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Every response survives the trip to the store: status, version,
    /// every header in order, and the body; and every prefix of its bytes
    /// (a value cut short) is refused, never mistaken for another response.
    #[test]
    fn responses_round_trip_through_the_http_codec(resp in response()) {
        use tower_patterns::cache::{Codec, HttpCodec};
        let mut bytes = Vec::new();
        HttpCodec.encode(&resp, &mut bytes).unwrap();
        let back: http::Response<Bytes> = HttpCodec.decode(&bytes).unwrap();
        prop_assert_eq!(back.status(), resp.status());
        prop_assert_eq!(back.version(), resp.version());
        prop_assert_eq!(back.headers(), resp.headers());
        prop_assert_eq!(back.body(), resp.body());
        for cut in 0..bytes.len() {
            let short: Result<http::Response<Bytes>, _> = HttpCodec.decode(&bytes[..cut]);
            prop_assert!(short.is_err(), "a prefix of {} bytes decoded", cut);
        }
    }
}
