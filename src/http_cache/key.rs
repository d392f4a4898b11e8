//! The key a request's responses are stored under (authority and path),
//! read back into its parts, and a URI's authority as the key has it.

use http::header::{HeaderMap, HeaderValue};
use http::Uri;

/// `uri`'s authority without user information (never sent to the origin,
/// so it names no other resource).
pub(crate) fn authority(uri: &Uri) -> Option<&str> {
    uri.authority().and_then(|a| a.as_str().rsplit('@').next())
}

/// The key a request's responses are stored under: authority (from the
/// URI without user information, else the `Host` field, lower case) and
/// path with query. GET and HEAD share it. User information is never sent
/// to the origin, so it names no other resource; left in, it would write
/// credentials into a remote tier's key names.
pub(crate) fn key_of(uri: &Uri, headers: &HeaderMap) -> String {
    let authority = match authority(uri) {
        Some(a) => a,
        None => headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(""),
    };
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut key = String::with_capacity(2 + authority.len() + pq.len());
    key.push_str("//");
    key.push_str(authority);
    key[2..].make_ascii_lowercase();
    key.push_str(pq);
    key
}

/// The key of a `Location` / `Content-Location` reference in a response to
/// `uri`, when it resolves to the same origin (RFC 9111 §4.4); `None`
/// otherwise.
pub(crate) fn same_origin_key(
    uri: &Uri,
    headers: &HeaderMap,
    reference: &HeaderValue,
) -> Option<String> {
    let key = key_of(uri, headers);
    let (authority, path) = key_parts(&key);
    let scheme = uri.scheme_str().unwrap_or("http");
    let base = url::Url::parse(&format!("{scheme}://{authority}{path}")).ok()?;
    let target = base.join(reference.to_str().ok()?).ok()?;
    if target.origin() != base.origin() {
        return None;
    }
    let mut pq = target.path().to_owned();
    if let Some(q) = target.query() {
        pq.push('?');
        pq.push_str(q);
    }
    Some(format!("//{authority}{pq}"))
}

/// A key's authority and its path with query (see [`key_of`]:
/// `//`, the authority, then the path, which starts with `/`).
pub(crate) fn key_parts(key: &str) -> (&str, &str) {
    let rest = key.strip_prefix("//").unwrap_or(key);
    match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_use_the_authority_or_host() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("Example.org"));
        assert_eq!(key_of(&Uri::from_static("/a?b"), &h), "//example.org/a?b");
        assert_eq!(
            key_of(&Uri::from_static("http://x.test/a"), &h),
            "//x.test/a"
        );
        // User information is not part of the resource, nor of the key.
        assert_eq!(
            key_of(&Uri::from_static("http://user:secret@X.test/a"), &h),
            "//x.test/a"
        );
    }

    #[test]
    fn only_same_origin_references_are_keys() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("example.org"));
        let uri = Uri::from_static("/a/b?c");
        let k = |r: &'static str| same_origin_key(&uri, &h, &HeaderValue::from_static(r));
        assert_eq!(k("d").as_deref(), Some("//example.org/a/d"));
        assert_eq!(k("/x?y").as_deref(), Some("//example.org/x?y"));
        assert_eq!(
            k("http://example.org/z").as_deref(),
            Some("//example.org/z")
        );
        assert_eq!(k("http://other.test/z"), None);
    }

    #[test]
    fn a_key_reads_back_into_its_authority_and_path() {
        assert_eq!(key_parts("//x.test/a?b"), ("x.test", "/a?b"));
        assert_eq!(key_parts("//x.test:8080/"), ("x.test:8080", "/"));
        assert_eq!(key_parts("///a"), ("", "/a"));
        assert_eq!(key_parts("//x.test"), ("x.test", "/"));
    }
}
