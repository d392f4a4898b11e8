//! Header parsing the cache needs before `http-cache-semantics` sees a
//! message: `Cache-Control` with quoted strings and case-insensitive names,
//! delta-seconds, HTTP dates in all three forms, hop-by-hop fields, and the
//! `Vary` selecting fields (normalised, so equivalent requests match).
//!
//! Pure functions, no state; tested here.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The largest delta-seconds value kept (RFC 9111 §1.2.2: larger ones are
/// taken as 2^31).
pub(crate) const DELTA_MAX: u64 = 1 << 31;

/// One `Cache-Control` directive: its name (lower case) and its value
/// (unquoted), if it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive {
    /// A registered name is a static string (no allocation per directive).
    pub(crate) name: Cow<'static, str>,
    pub(crate) value: Option<String>,
}

/// The directive names of RFC 9111, RFC 5861 (`stale-*`) and RFC 8246
/// (`immutable`): parsed to these, without allocating.
const KNOWN: &[&str] = &[
    "max-age",
    "s-maxage",
    "public",
    "private",
    "no-cache",
    "no-store",
    "no-transform",
    "must-revalidate",
    "proxy-revalidate",
    "must-understand",
    "immutable",
    "stale-while-revalidate",
    "stale-if-error",
    "max-stale",
    "min-fresh",
    "only-if-cached",
];

/// A directive's name in lower case.
fn name_of(raw: &[u8]) -> Cow<'static, str> {
    match KNOWN
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(raw))
    {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(String::from_utf8_lossy(raw).to_ascii_lowercase()),
    }
}

/// The directives of every `Cache-Control` field line in `values`, in order.
/// Malformed directives (a space before `=`, junk after a value) are
/// dropped; commas inside quoted strings do not split.
pub(crate) fn directives<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Vec<Directive> {
    let mut out = Vec::new();
    for v in values {
        parse_line(v.as_bytes(), &mut out);
    }
    out
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_line(s: &[u8], out: &mut Vec<Directive>) {
    let mut i = 0;
    let n = s.len();
    while i < n {
        // Skip separators.
        while i < n && (s[i] == b',' || s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        while i < n && is_tchar(s[i]) {
            i += 1;
        }
        let name = name_of(&s[start..i]);
        let mut value = None;
        let mut valid = !name.is_empty();
        if i < n && s[i] == b'=' {
            i += 1;
            if i < n && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                let mut closed = false;
                while i < n {
                    match s[i] {
                        b'\\' if i + 1 < n => {
                            v.push(s[i + 1]);
                            i += 2;
                        }
                        b'"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        b => {
                            v.push(b);
                            i += 1;
                        }
                    }
                }
                valid &= closed;
                value = Some(String::from_utf8_lossy(&v).into_owned());
            } else {
                let vs = i;
                while i < n && is_tchar(s[i]) {
                    i += 1;
                }
                valid &= i > vs;
                value = Some(String::from_utf8_lossy(&s[vs..i]).into_owned());
            }
        }
        // Only whitespace may sit before the next comma.
        while i < n && (s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i < n && s[i] != b',' {
            valid = false;
            skip_to_comma(s, &mut i);
        }
        if valid {
            out.push(Directive { name, value });
        }
    }
}

/// Moves `i` to the next comma outside a quoted string (or the end).
fn skip_to_comma(s: &[u8], i: &mut usize) {
    let mut quoted = false;
    while *i < s.len() {
        match s[*i] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => *i += 1,
            b',' if !quoted => return,
            _ => {}
        }
        *i += 1;
    }
}

/// A delta-seconds value: digits only, capped at [`DELTA_MAX`].
pub(crate) fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = v.trim_start_matches('0');
    if digits.len() > 10 {
        return Some(DELTA_MAX);
    }
    Some(digits.parse::<u64>().unwrap_or(0).min(DELTA_MAX))
}

/// Finds the first directive called `name`.
pub(crate) fn find<'d>(dirs: &'d [Directive], name: &str) -> Option<&'d Directive> {
    dirs.iter().find(|d| d.name == name)
}

/// `true` if a directive called `name` is present.
pub(crate) fn has(dirs: &[Directive], name: &str) -> bool {
    find(dirs, name).is_some()
}

/// The delta-seconds value of the first directive `name` (`Some(None)`: the
/// directive is there, its value is missing or not delta-seconds).
pub(crate) fn seconds(dirs: &[Directive], name: &str) -> Option<Option<u64>> {
    find(dirs, name).map(|d| d.value.as_deref().and_then(delta_seconds))
}

// ---------------------------------------------------------------------------
// Dates.

/// An HTTP date in any of its three forms (IMF-fixdate, RFC 850, asctime),
/// from a field that has exactly one line.
pub(crate) fn single_date(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<SystemTime>, ()> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(());
    }
    let s = first.to_str().map_err(|_| ())?;
    httpdate::parse_http_date(s.trim())
        .map(Some)
        .map_err(|_| ())
}

/// A response's age on arrival at `received` in seconds (RFC 9111
/// §4.2.3): its `Age` field (one non-negative integer, else very old), at
/// least its apparent age (`received` less its `Date`, if valid).
pub(crate) fn arrival_age(raw: &HeaderMap, date: Option<SystemTime>, received: SystemTime) -> u64 {
    let mut ages = raw.get_all(http::header::AGE).iter();
    let age = match (ages.next(), ages.next()) {
        (None, _) => Some(0),
        (Some(v), None) => v.to_str().ok().and_then(delta_seconds),
        _ => None,
    }
    .unwrap_or(DELTA_MAX);
    let apparent = date.map_or(0, |d| since(received, d).as_secs());
    age.max(apparent)
}

/// A date as `http-cache-semantics` reads it (RFC 2822 with a numeric
/// zone): `Thu, 01 Jan 1970 00:00:00 +0000`. Written byte by byte, as
/// every stored response has one or more.
pub(crate) fn date_value(t: SystemTime) -> HeaderValue {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Dates before 1970 are clamped to it (HTTP dates before then are
    // long expired either way); after 9999 to its last second.
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(253_402_300_799);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (the proleptic Gregorian
    // calendar, counted in 400-year eras from 0000-03-01).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);

    let mut b = *b"Thu, 01 Jan 1970 00:00:00 +0000";
    b[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |b: &mut [u8], v: u64| {
        b[0] = b'0' + (v / 10) as u8;
        b[1] = b'0' + (v % 10) as u8;
    };
    two(&mut b[5..7], day);
    b[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut b[12..14], year / 100);
    two(&mut b[14..16], year % 100);
    two(&mut b[17..19], rem / 3_600);
    two(&mut b[20..22], rem / 60 % 60);
    two(&mut b[23..25], rem % 60);
    HeaderValue::from_bytes(&b).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

// ---------------------------------------------------------------------------
// Hop-by-hop fields.

/// Whether `name` is a hop-by-hop field (RFC 9110 §7.6.1).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authentication-info"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// Removes hop-by-hop fields and the fields `Connection` lists. One pass
/// over the names; nothing is allocated when there are none (the usual
/// case).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut drop: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    drop.extend(headers.keys().filter(|n| is_hop_by_hop(n)).cloned());
    for name in drop {
        headers.remove(name);
    }
}

// ---------------------------------------------------------------------------
// Vary.

/// The fields a response's `Vary` nominates (lower case), or `None` for
/// `*` (or a name that is not a field name): matches no request.
pub(crate) fn vary_fields(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut out: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(http::header::VARY) {
        let s = v.to_str().ok()?;
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if t == "*" {
                return None;
            }
            let name = HeaderName::from_bytes(t.as_bytes()).ok()?;
            if !out.contains(&name) {
                out.push(name);
            }
        }
    }
    Some(out)
}

/// A request's value for a selecting field, normalised: every line
/// combined, whitespace removed, and for the `Accept-*` fields lower case
/// (`Accept-Language` also sorted). `None` when the field is absent.
pub(crate) fn selecting_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut items: Vec<String> = Vec::new();
    let mut any = false;
    for v in headers.get_all(name) {
        any = true;
        let s = String::from_utf8_lossy(v.as_bytes());
        for item in s.split(',') {
            let item: String = item.chars().filter(|c| *c != ' ' && *c != '\t').collect();
            if !item.is_empty() {
                items.push(item);
            }
        }
    }
    if !any {
        return None;
    }
    let n = name.as_str();
    if n.starts_with("accept") {
        for i in &mut items {
            i.make_ascii_lowercase();
        }
    }
    if n == "accept-language" {
        items.sort();
    }
    Some(items.join(","))
}

/// Saturating `SystemTime` difference.
pub(crate) fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(lines: &[&str]) -> Vec<(String, Option<String>)> {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|l| HeaderValue::from_str(l).unwrap())
            .collect();
        directives(&values)
            .into_iter()
            .map(|d| (d.name.into_owned(), d.value))
            .collect()
    }

    #[test]
    fn cache_control_names_are_case_insensitive_and_quotes_do_not_split() {
        assert_eq!(
            cc(&["MaX-AgE=5, extension=\"max-age=3600, a\", no-store"]),
            vec![
                ("max-age".into(), Some("5".into())),
                ("extension".into(), Some("max-age=3600, a".into())),
                ("no-store".into(), None),
            ]
        );
        assert_eq!(cc(&["max-age =3600"]), vec![]);
        assert_eq!(cc(&["max-age= 3600"]), vec![]);
        assert_eq!(
            cc(&["max-age=\"1\"", "private"]),
            vec![
                ("max-age".into(), Some("1".into())),
                ("private".into(), None)
            ]
        );
    }

    #[test]
    fn delta_seconds_are_digits_capped_at_two_to_the_31() {
        assert_eq!(delta_seconds("003600"), Some(3600));
        assert_eq!(delta_seconds("99999999999"), Some(DELTA_MAX));
        assert_eq!(delta_seconds("2147483649"), Some(DELTA_MAX));
        assert_eq!(delta_seconds("-1"), None);
        assert_eq!(delta_seconds("'3600'"), None);
        assert_eq!(delta_seconds("3600.0"), None);
    }

    #[test]
    fn vary_star_matches_nothing_and_values_normalise() {
        let mut h = HeaderMap::new();
        h.append("vary", HeaderValue::from_static(", Foo"));
        h.append("vary", HeaderValue::from_static("*"));
        assert!(vary_fields(&h).is_none());
        let mut r = HeaderMap::new();
        r.append("accept-language", HeaderValue::from_static("EN-us, fr"));
        r.append("accept-language", HeaderValue::from_static("de"));
        let name = HeaderName::from_static("accept-language");
        assert_eq!(selecting_value(&r, &name).as_deref(), Some("de,en-us,fr"));
    }

    #[test]
    fn dates_parse_in_every_form_and_multiple_lines_are_invalid() {
        let mut h = HeaderMap::new();
        h.insert(
            "expires",
            HeaderValue::from_static("Sunday, 06-Nov-94 08:49:37 GMT"),
        );
        assert!(single_date(&h, &http::header::EXPIRES).unwrap().is_some());
        h.append(
            "expires",
            HeaderValue::from_static("Sun Nov  6 08:49:37 1994"),
        );
        assert!(single_date(&h, &http::header::EXPIRES).is_err());
        assert_eq!(
            date_value(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
    }

    #[test]
    fn dates_are_written_as_the_policy_reads_them() {
        // Every day of several years (leap days, century rules) and the
        // clamps, against httpdate's own IMF-fixdate with the zone swapped.
        let day = Duration::from_secs(86_400);
        let mut t = SystemTime::UNIX_EPOCH + Duration::from_secs(37_230);
        for _ in 0..(366 * 3) {
            let want = httpdate::fmt_http_date(t).replace("GMT", "+0000");
            assert_eq!(date_value(t), want.as_str());
            t += day;
        }
        for secs in [951_782_399u64, 951_868_799, 4_107_542_400, 1_798_761_599] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let want = httpdate::fmt_http_date(t).replace("GMT", "+0000");
            assert_eq!(date_value(t), want.as_str());
        }
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(date_value(before), "Thu, 01 Jan 1970 00:00:00 +0000");
    }
}
