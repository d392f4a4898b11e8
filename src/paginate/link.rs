//! RFC 8288 `Link` headers: the target of `rel="next"`
//! ([`parse_next_link`]), resolved against the request that returned it
//! (RFC 3986 section 5, by the `url` crate).

use http::header::LINK;
use http::{HeaderMap, Uri};
use url::Url;

use super::error::WalkError;

/// The target of the first `rel="next"` link in `headers`' `Link` fields
/// (RFC 8288), as written (not yet resolved).
///
/// Tolerates several `Link` fields, several links per field, quoted and
/// unquoted parameters in any order and case, extra whitespace, and
/// relation lists (`rel="next last"`). Links with an `anchor` parameter
/// describe another resource and are skipped. Malformed links are skipped
/// up to the next comma.
///
/// ```
/// use http::HeaderMap;
/// use tower_patterns::paginate::parse_next_link;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(
///     "link",
///     r#"</items?page=1>; rel="prev", </items?page=3>; title="a, b"; REL = "last next""#
///         .parse()
///         .unwrap(),
/// );
/// assert_eq!(parse_next_link(&headers).as_deref(), Some("/items?page=3"));
/// ```
pub fn parse_next_link(headers: &HeaderMap) -> Option<String> {
    headers.get_all(LINK).iter().find_map(|value| {
        let text = String::from_utf8_lossy(value.as_bytes());
        next_in_field(&text)
    })
}

fn next_in_field(field: &str) -> Option<String> {
    let b = field.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    while i < b.len() {
        // Between links: whitespace and commas.
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] != b'<' {
            i = skip_to_comma(b, i);
            continue;
        }
        let Some(close) = field[i + 1..].find('>') else {
            break;
        };
        let target = field[i + 1..i + 1 + close].trim();
        i += close + 2;
        let mut rel: Option<String> = None;
        let mut anchored = false;
        loop {
            skip_ws(&mut i);
            if i >= b.len() || b[i] != b';' {
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let name_start = i;
            while i < b.len() && !matches!(b[i], b'=' | b';' | b',' | b' ' | b'\t') {
                i += 1;
            }
            let name = &field[name_start..i];
            skip_ws(&mut i);
            let mut value = String::new();
            if i < b.len() && b[i] == b'=' {
                i += 1;
                skip_ws(&mut i);
                if i < b.len() && b[i] == b'"' {
                    i += 1;
                    while i < b.len() && b[i] != b'"' {
                        if b[i] == b'\\' && i + 1 < b.len() {
                            i += 1;
                        }
                        // Copy one (possibly multi-byte) character.
                        let ch = field[i..].chars().next().unwrap_or('\u{fffd}');
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                    i = (i + 1).min(b.len()); // the closing quote, if any
                } else {
                    let start = i;
                    while i < b.len() && !matches!(b[i], b';' | b',' | b' ' | b'\t') {
                        i += 1;
                    }
                    value.push_str(&field[start..i]);
                }
            }
            if name.eq_ignore_ascii_case("rel") {
                // Only the first `rel` counts (RFC 8288 section 3.3).
                rel.get_or_insert(value);
            } else if name.eq_ignore_ascii_case("anchor") {
                anchored = true;
            }
        }
        skip_ws(&mut i);
        if i < b.len() && b[i] != b',' {
            i = skip_to_comma(b, i);
        }
        let is_next = rel.as_deref().is_some_and(|rel| {
            rel.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next && !anchored {
            return Some(target.to_owned());
        }
    }
    None
}

/// The index of the next comma outside quotes and angle brackets (or the end).
fn skip_to_comma(b: &[u8], mut i: usize) -> usize {
    let mut quoted = false;
    let mut bracketed = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' if !bracketed => quoted = !quoted,
            b'<' if !quoted => bracketed = true,
            b'>' if !quoted => bracketed = false,
            b',' if !quoted && !bracketed => return i,
            _ => {}
        }
        i += 1;
    }
    b.len()
}

/// Resolves the `next` link `link` (as written in the header) against
/// `base`, the URI of the request that returned it (RFC 3986 section 5.2,
/// by [`Url::join`]); the fragment is dropped.
pub(crate) fn resolve_next(base: &Uri, link: &str) -> Result<Uri, WalkError> {
    let invalid = |reason: String| WalkError::InvalidNextLink {
        link: link.to_owned(),
        reason,
    };
    let reference = link.trim();
    let (mut url, relative_base) = match Url::parse(reference) {
        // Absolute already.
        Ok(url) => (url, false),
        Err(_) if base.scheme().is_some() && base.authority().is_some() => {
            let base = Url::parse(&base.to_string()).map_err(|e| invalid(e.to_string()))?;
            (
                base.join(reference).map_err(|e| invalid(e.to_string()))?,
                false,
            )
        }
        Err(_) => {
            // A base without scheme or host (just a path): resolve against
            // a placeholder origin and keep only the path and query.
            let origin = Url::parse(PLACEHOLDER).map_err(|e| invalid(e.to_string()))?;
            let base = origin
                .join(&base.to_string())
                .map_err(|e| invalid(e.to_string()))?;
            (
                base.join(reference).map_err(|e| invalid(e.to_string()))?,
                true,
            )
        }
    };
    // A page is fetched over HTTP: `mailto:`, `file:`, `data:` and the like
    // are not a next page, whoever sent them.
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    url.set_fragment(None);
    let text = if relative_base && url.host_str() == Some(PLACEHOLDER_HOST) {
        &url[url::Position::BeforePath..]
    } else {
        url.as_str()
    };
    Uri::try_from(text).map_err(|e| invalid(e.to_string()))
}

const PLACEHOLDER: &str = "http://relative.invalid/";
const PLACEHOLDER_HOST: &str = "relative.invalid";

#[cfg(test)]
mod tests {
    use super::*;

    fn link(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.append(LINK, value.parse().unwrap());
        parse_next_link(&headers)
    }

    #[test]
    fn link_parsing_is_robust() {
        assert_eq!(
            link(r#"<https://a/x?page=2>; rel="next""#).as_deref(),
            Some("https://a/x?page=2")
        );
        assert_eq!(
            link("<https://a/2>;rel=next").as_deref(),
            Some("https://a/2")
        );
        assert_eq!(
            link(r#"<https://a/1>; rel="prev", <https://a/3>; rel="next""#).as_deref(),
            Some("https://a/3")
        );
        assert_eq!(
            link(r#"  < /p/4 > ;  rel = "Next"  "#).as_deref(),
            Some("/p/4")
        );
        // A comma and a fake rel inside a quoted parameter do not split the link.
        assert_eq!(
            link(r#"</a>; title="x, <b>; rel=next"; rel="prev", </c>; rel="next""#).as_deref(),
            Some("/c")
        );
        // Escaped quotes in quoted strings.
        assert_eq!(
            link(r#"</a>; title="say \"hi\""; rel="next""#).as_deref(),
            Some("/a")
        );
        // Only the first rel counts.
        assert_eq!(link(r#"</a>; rel="prev"; rel="next""#), None);
        // Relation lists.
        assert_eq!(link(r#"</a>; rel="last next""#).as_deref(), Some("/a"));
        // Anchored links describe another resource.
        assert_eq!(link(r#"</a>; anchor="/other"; rel="next""#), None);
        // Garbage before a valid link is skipped.
        assert_eq!(
            link(r#"garbage; rel="next", </ok>; rel="next""#).as_deref(),
            Some("/ok")
        );
        assert_eq!(link(r#"</a>; rel="nextpage""#), None);
        assert_eq!(link("<unterminated; rel=next"), None);
        assert_eq!(link(""), None);
    }

    #[test]
    fn several_link_fields() {
        let mut headers = HeaderMap::new();
        headers.append(LINK, r#"</first>; rel="first""#.parse().unwrap());
        headers.append(LINK, r#"</second>; rel="next""#.parse().unwrap());
        assert_eq!(parse_next_link(&headers).as_deref(), Some("/second"));
    }

    #[test]
    fn resolves_rfc3986_examples() {
        // RFC 3986 section 5.4.1, base "http://a/b/c/d;p?q".
        let base: Uri = "http://a/b/c/d;p?q".parse().unwrap();
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("https://other:8443/x?p=2", "https://other:8443/x?p=2"),
        ];
        for (reference, expected) in cases {
            let expected: Uri = expected.parse().unwrap();
            assert_eq!(
                resolve_next(&base, reference).unwrap(),
                expected,
                "reference {reference:?}"
            );
        }
    }

    #[test]
    fn refuses_links_that_are_not_http() {
        let base: Uri = "https://a/items?page=1".parse().unwrap();
        for link in [
            "mailto:",
            "mailto:a@b",
            "file:///etc/passwd",
            "data:,x",
            "javascript:1",
            "ftp://a/x",
        ] {
            let err = resolve_next(&base, link).unwrap_err();
            assert!(
                err.to_string().contains("not http or https"),
                "{link}: {err}"
            );
        }
        assert_eq!(resolve_next(&base, "HTTP://b/x").unwrap(), "http://b/x");
    }

    #[test]
    fn resolves_against_a_path_only_base() {
        let base: Uri = "/v1/items?page=1".parse().unwrap();
        assert_eq!(resolve_next(&base, "?page=2").unwrap(), "/v1/items?page=2");
        assert_eq!(resolve_next(&base, "http://h/x").unwrap(), "http://h/x");
    }
}
