//! Header parsing the cache needs before `http-cache-semantics` sees a
//! message: `Cache-Control` with quoted strings and case-insensitive names,
//! delta-seconds, HTTP dates in all three forms, hop-by-hop fields, and the
//! `Vary` selecting fields (normalised, so equivalent requests match).
//!
//! Pure functions, no state; tested here.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// The largest delta-seconds value kept (RFC 9111 §1.2.2: larger ones are
/// taken as 2^31).
pub(crate) const DELTA_MAX: u64 = 1 << 31;

/// One `Cache-Control` directive: its name (lower case) and its value
/// (unquoted), if it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive<'a> {
    /// A registered name is a static string (no allocation per directive).
    pub(crate) name: Cow<'static, str>,
    /// Borrowed from the field value, except a quoted string with escapes.
    pub(crate) value: Option<Cow<'a, str>>,
}

/// The directives of a message, in order: a response has a few, held
/// without allocating.
pub(crate) type Directives<'a> = SmallVec<[Directive<'a>; 4]>;

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
        .find(|k| k.len() == raw.len() && k.as_bytes().eq_ignore_ascii_case(raw))
    {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(String::from_utf8_lossy(raw).to_ascii_lowercase()),
    }
}

/// The directives of every `Cache-Control` field line in `values`, in order.
/// Malformed directives (a space before `=`, junk after a value) are
/// dropped; commas inside quoted strings do not split.
pub(crate) fn directives<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> Directives<'a> {
    let mut out = Directives::new();
    for v in values {
        parse_line(v.as_bytes(), &mut out);
    }
    out
}

/// The token characters of RFC 9110 §5.6.2, one bit each.
const TCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    t
};

fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// `b` as text: borrowed when it is UTF-8 (always, for tokens).
fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(b),
    }
}

fn parse_line<'a>(s: &'a [u8], out: &mut Directives<'a>) {
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
                let (v, closed) = quoted(s, &mut i);
                valid &= closed;
                value = Some(v);
            } else {
                let vs = i;
                while i < n && is_tchar(s[i]) {
                    i += 1;
                }
                valid &= i > vs;
                value = Some(text(&s[vs..i]));
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

/// The quoted string opening at `s[*i]`, unescaped (borrowed unless it
/// has escapes), with `i` moved past it; `false` if it is not closed.
fn quoted<'a>(s: &'a [u8], i: &mut usize) -> (Cow<'a, str>, bool) {
    let n = s.len();
    *i += 1;
    let start = *i;
    while *i < n && s[*i] != b'"' && s[*i] != b'\\' {
        *i += 1;
    }
    if *i >= n || s[*i] == b'"' {
        let closed = *i < n;
        let v = text(&s[start..*i]);
        *i += usize::from(closed);
        return (v, closed);
    }
    let mut v = s[start..*i].to_vec();
    while *i < n {
        match s[*i] {
            b'\\' if *i + 1 < n => {
                v.push(s[*i + 1]);
                *i += 2;
            }
            b'"' => {
                *i += 1;
                return (Cow::Owned(String::from_utf8_lossy(&v).into_owned()), true);
            }
            b => {
                v.push(b);
                *i += 1;
            }
        }
    }
    (Cow::Owned(String::from_utf8_lossy(&v).into_owned()), false)
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
pub(crate) fn find<'d, 'a>(dirs: &'d [Directive<'a>], name: &str) -> Option<&'d Directive<'a>> {
    dirs.iter().find(|d| d.name == name)
}

/// `true` if a directive called `name` is present.
pub(crate) fn has(dirs: &[Directive<'_>], name: &str) -> bool {
    find(dirs, name).is_some()
}

/// The delta-seconds value of the first directive `name` (`Some(None)`: the
/// directive is there, its value is missing or not delta-seconds).
pub(crate) fn seconds(dirs: &[Directive<'_>], name: &str) -> Option<Option<u64>> {
    find(dirs, name).map(|d| d.value.as_deref().and_then(delta_seconds))
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

/// Whether `headers` has anything [`strip_hop_by_hop`] would remove.
pub(crate) fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(is_hop_by_hop)
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
            .map(|d| (d.name.into_owned(), d.value.map(Cow::into_owned)))
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
        assert_eq!(
            cc(&["a=\"x\\\"y\", b=\"z\", c=\"open"]),
            vec![
                ("a".into(), Some("x\"y".into())),
                ("b".into(), Some("z".into()))
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
    fn token_characters_are_those_of_rfc_9110() {
        for b in 0..=255u8 {
            let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), want, "{b:#x}");
        }
    }

    #[test]
    fn values_without_escapes_are_borrowed_from_the_field() {
        let v = HeaderValue::from_static("max-age=60, x=\"a, b\", y=\"c\\\"d\"");
        let dirs = directives([&v]);
        assert!(matches!(dirs[0].value, Some(Cow::Borrowed("60"))));
        assert!(matches!(dirs[1].value, Some(Cow::Borrowed("a, b"))));
        assert!(matches!(&dirs[2].value, Some(Cow::Owned(s)) if s == "c\"d"));
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
}
