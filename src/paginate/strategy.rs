//! Strategies: how to build the next page request.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use http::header::LINK;
use http::{HeaderMap, Uri};

use super::{Page, WalkError};

/// How a walk goes from one page to the next.
///
/// A strategy names the first request, and builds each next request from
/// the previous request and the page it returned. A strategy whose next
/// request does not depend on the page (page numbers) also implements
/// [`predict`](Strategy::predict), which lets
/// [`Paginator::prefetch`](super::Paginator::prefetch) send it before the
/// page arrives.
///
/// Strategies keep per-walk state (the loop guard's memory of cursors seen),
/// so a fresh walk needs a fresh strategy.
///
/// A custom strategy, `?offset=&limit=`, that stops when the server says it
/// has no more:
///
/// ```
/// use futures::TryStreamExt;
/// use tower::service_fn;
/// use tower_patterns::paginate::{Page, Paginator, Strategy, WalkError};
///
/// struct Offset {
///     limit: u64,
/// }
///
/// impl<T> Strategy<T> for Offset {
///     type Request = u64; // the offset
///
///     fn first(&mut self) -> u64 {
///         0
///     }
///
///     fn predict(&self, prev: &u64) -> Option<u64> {
///         prev.checked_add(self.limit) // known in advance: prefetch can fire early
///     }
///
///     fn next(&mut self, prev: &u64, page: &Page<T>) -> Result<Option<u64>, WalkError> {
///         // This API sets a "has_more" token on every page but the last.
///         Ok(page.next_token().and_then(|_| Strategy::<T>::predict(self, prev)))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower::BoxError> {
/// let api = service_fn(|offset: u64| async move {
///     let items: Vec<u64> = (offset..(offset + 10).min(25)).collect();
///     let more = (offset + 10 < 25).then_some("has_more");
///     Ok::<_, tower::BoxError>(Page::new(items).with_next(more))
/// });
/// let all: Vec<u64> = Paginator::new(api, Offset { limit: 10 })
///     .prefetch(2)
///     .items()
///     .try_collect()
///     .await?;
/// assert_eq!(all, (0..25).collect::<Vec<_>>());
/// # Ok(())
/// # }
/// ```
pub trait Strategy<T> {
    /// The page request the page service answers. Cloned once per page (for
    /// the checkpoint), so it should be cheap to clone.
    type Request: Clone;

    /// The request for the first page.
    fn first(&mut self) -> Self::Request;

    /// The request to start from when resuming at `checkpoint` instead of
    /// [`first`](Strategy::first). The default returns `checkpoint`
    /// unchanged; loop-guarded strategies also remember it as visited.
    fn resume(&mut self, checkpoint: Self::Request) -> Self::Request {
        checkpoint
    }

    /// The request that follows `prev` if the walk goes on, when it can be
    /// known before `prev`'s page arrives. The default, `None`, means "only
    /// once the page is here".
    ///
    /// When this returns `Some(r)`, [`next`](Strategy::next) for the same
    /// `prev` must return `Ok(None)` (stop) or `Ok(Some(r))` (the same
    /// request): the paginator may already have sent `r`.
    fn predict(&self, prev: &Self::Request) -> Option<Self::Request> {
        let _ = prev;
        None
    }

    /// The request after `prev`, given the `page` it returned: `Ok(None)`
    /// ends the walk after this page, `Err` ends it with that error after
    /// this page.
    fn next(
        &mut self,
        prev: &Self::Request,
        page: &Page<T>,
    ) -> Result<Option<Self::Request>, WalkError>;
}

// ---------------------------------------------------------------- page numbers

/// A page-number request: `?page=<page>&per_page=<per_page>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageRequest {
    /// The page to fetch (the walk counts from [`PageNumber`]'s `start`).
    pub page: u64,
    /// How many items a full page holds.
    pub per_page: u64,
}

/// Page numbers: `start, start + 1, ...`, `page_size` items per page.
///
/// Stops after an empty page or a short one (fewer than `page_size` items),
/// as most page-number APIs end; a `page_size` of `0` means "unknown" and
/// stops only on an empty page. Since the next request is known in
/// advance, [`prefetch`](super::Paginator::prefetch) sends it while the
/// current page is still on its way (and cancels it if the current page
/// turns out to be the last).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageNumber {
    start: u64,
    page_size: u64,
}

impl PageNumber {
    /// Pages `start, start + 1, ...` of `page_size` items.
    pub fn new(start: u64, page_size: u64) -> Self {
        PageNumber { start, page_size }
    }
}

impl<T> Strategy<T> for PageNumber {
    type Request = PageRequest;

    fn first(&mut self) -> PageRequest {
        PageRequest {
            page: self.start,
            per_page: self.page_size,
        }
    }

    fn predict(&self, prev: &PageRequest) -> Option<PageRequest> {
        Some(PageRequest {
            page: prev.page.checked_add(1)?,
            per_page: prev.per_page,
        })
    }

    fn next(
        &mut self,
        prev: &PageRequest,
        page: &Page<T>,
    ) -> Result<Option<PageRequest>, WalkError> {
        let short = u64::try_from(page.len()).is_ok_and(|len| len < prev.per_page);
        if page.is_empty() || short {
            return Ok(None);
        }
        Ok(Strategy::<T>::predict(self, prev))
    }
}

// ---------------------------------------------------------------- cursors

/// A cursor request: the token of the page to fetch, `None` for the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CursorRequest {
    /// The cursor the server returned with the previous page.
    pub cursor: Option<String>,
}

impl From<String> for CursorRequest {
    fn from(cursor: String) -> Self {
        CursorRequest {
            cursor: Some(cursor),
        }
    }
}

impl From<&str> for CursorRequest {
    fn from(cursor: &str) -> Self {
        CursorRequest::from(cursor.to_owned())
    }
}

impl From<Option<String>> for CursorRequest {
    fn from(cursor: Option<String>) -> Self {
        CursorRequest { cursor }
    }
}

/// Cursors: the next token is read from each page by a function.
///
/// Stops when the function returns `None` (or an empty token), and ends
/// with [`WalkError::LoopDetected`] when it returns a token this walk
/// already followed (the guard remembers the last 16,384 tokens, by hash).
pub struct Cursor<F> {
    extract: F,
    seen: SeenSet,
}

impl<F> Cursor<F> {
    /// A cursor walk whose next token is `extract_next(&page)`: for
    /// example the id of the page's last item, or
    /// [`Page::next_token`] (see [`Cursor::from_page`]).
    pub fn new<T>(extract_next: F) -> Self
    where
        F: FnMut(&Page<T>) -> Option<String>,
    {
        Cursor {
            extract: extract_next,
            seen: SeenSet::default(),
        }
    }
}

impl<T> Cursor<fn(&Page<T>) -> Option<String>> {
    /// A cursor walk that reads the token the page service stored with
    /// [`Page::with_next`].
    pub fn from_page() -> Self {
        fn token<T>(page: &Page<T>) -> Option<String> {
            page.next_token().map(str::to_owned)
        }
        Cursor::new(token::<T> as fn(&Page<T>) -> Option<String>)
    }
}

impl<F> fmt::Debug for Cursor<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl<T, F> Strategy<T> for Cursor<F>
where
    F: FnMut(&Page<T>) -> Option<String>,
{
    type Request = CursorRequest;

    fn first(&mut self) -> CursorRequest {
        CursorRequest::default()
    }

    fn resume(&mut self, checkpoint: CursorRequest) -> CursorRequest {
        if let Some(token) = &checkpoint.cursor {
            self.seen.insert(token);
        }
        checkpoint
    }

    fn next(
        &mut self,
        _prev: &CursorRequest,
        page: &Page<T>,
    ) -> Result<Option<CursorRequest>, WalkError> {
        let token = match (self.extract)(page) {
            Some(token) if !token.is_empty() => token,
            _ => return Ok(None),
        };
        if !self.seen.insert(&token) {
            return Err(WalkError::LoopDetected {
                kind: "cursor",
                repeated: token,
            });
        }
        Ok(Some(CursorRequest::from(token)))
    }
}

// ---------------------------------------------------------------- Link headers

/// RFC 8288 `Link` headers: follows `rel="next"` from each page's headers
/// ([`Page::headers`]) until a page has none.
///
/// Relative links are resolved against the URI of the request that returned
/// them (RFC 3986 section 5). A link this walk already followed ends it with
/// [`WalkError::LoopDetected`]; one that is not a valid URI, with
/// [`WalkError::InvalidNextLink`]. The request is the page's [`Uri`].
#[derive(Debug)]
pub struct LinkHeader {
    first: Uri,
    seen: SeenSet,
}

impl LinkHeader {
    /// A walk starting at `first`.
    pub fn new(first: Uri) -> Self {
        LinkHeader {
            first,
            seen: SeenSet::default(),
        }
    }
}

impl<T> Strategy<T> for LinkHeader {
    type Request = Uri;

    fn first(&mut self) -> Uri {
        let first = self.first.clone();
        self.seen.insert(&first.to_string());
        first
    }

    fn resume(&mut self, checkpoint: Uri) -> Uri {
        self.seen.insert(&checkpoint.to_string());
        checkpoint
    }

    fn next(&mut self, prev: &Uri, page: &Page<T>) -> Result<Option<Uri>, WalkError> {
        let Some(link) = parse_next_link(page.headers()) else {
            return Ok(None);
        };
        let resolved = resolve_reference(prev, &link);
        let uri = Uri::try_from(resolved.as_str()).map_err(|e| WalkError::InvalidNextLink {
            link: link.clone(),
            reason: e.to_string(),
        })?;
        let key = uri.to_string();
        if !self.seen.insert(&key) {
            return Err(WalkError::LoopDetected {
                kind: "link",
                repeated: key,
            });
        }
        Ok(Some(uri))
    }
}

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

/// Resolves the URI reference `reference` against `base` (RFC 3986
/// section 5.2): absolute links are kept, `//host/p`, `/p`, `p`, `../p`
/// and `?q` are resolved, dot segments removed and fragments dropped.
///
/// ```
/// use http::Uri;
/// use tower_patterns::paginate::resolve_reference;
///
/// let base: Uri = "http://api.test/v1/items?page=1".parse().unwrap();
/// assert_eq!(resolve_reference(&base, "?page=2"), "http://api.test/v1/items?page=2");
/// assert_eq!(resolve_reference(&base, "../v2/items"), "http://api.test/v2/items");
/// assert_eq!(resolve_reference(&base, "/items#top"), "http://api.test/items");
/// ```
pub fn resolve_reference(base: &Uri, reference: &str) -> String {
    let reference = reference.trim();
    let reference = reference.split('#').next().unwrap_or("");
    let r = split_reference(reference);

    let base_path = base.path();
    let base_query = base.query();
    let (scheme, authority, path, query): (Option<&str>, Option<&str>, String, Option<&str>);
    if r.scheme.is_some() {
        scheme = r.scheme;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        scheme = base.scheme_str();
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            authority = base.authority().map(|a| a.as_str());
            if r.path.is_empty() {
                path = base_path.to_owned();
                query = r.query.or(base_query);
            } else {
                path = if r.path.starts_with('/') {
                    remove_dot_segments(r.path)
                } else {
                    let merged = match base_path.rfind('/') {
                        _ if authority.is_some() && base_path.is_empty() => format!("/{}", r.path),
                        Some(slash) => format!("{}{}", &base_path[..=slash], r.path),
                        None => r.path.to_owned(),
                    };
                    remove_dot_segments(&merged)
                };
                query = r.query;
            }
        }
    }

    let mut out = String::with_capacity(reference.len() + 32);
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(&path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

struct Reference<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

fn split_reference(s: &str) -> Reference<'_> {
    let mut rest = s;
    let mut scheme = None;
    if let Some(colon) = s.find(':') {
        let candidate = &s[..colon];
        let valid = candidate
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && candidate
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if valid {
            scheme = Some(candidate);
            rest = &s[colon + 1..];
        }
    }
    let mut authority = None;
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        authority = Some(&after[..end]);
        rest = &after[end..];
    }
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    Reference {
        scheme,
        authority,
        path,
        query,
    }
}

/// RFC 3986 section 5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    let pop = |out: &mut String| match out.rfind('/') {
        Some(i) => out.truncate(i),
        None => out.clear(),
    };
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = &input[3..];
            pop(&mut out);
        } else if input == "/.." {
            input = "/";
            pop(&mut out);
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

// ---------------------------------------------------------------- loop guard

/// The loop guard's memory: hashes of the tokens or URLs followed so far,
/// bounded (oldest forgotten first).
#[derive(Debug, Default)]
struct SeenSet {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

const SEEN_CAPACITY: usize = 16_384;

impl SeenSet {
    /// Records `key`; `false` when it was already there.
    fn insert(&mut self, key: &str) -> bool {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let hash = hasher.finish();
        if !self.set.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        if self.order.len() > SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    fn len(&self) -> usize {
        self.order.len()
    }
}

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
            assert_eq!(
                resolve_reference(&base, reference),
                expected,
                "reference {reference:?}"
            );
        }
    }

    #[test]
    fn page_numbers_stop_on_short_or_empty_pages() {
        let mut s = PageNumber::new(1, 3);
        let first = Strategy::<u8>::first(&mut s);
        assert_eq!(
            first,
            PageRequest {
                page: 1,
                per_page: 3
            }
        );
        let full = Page::new(vec![1u8, 2, 3]);
        assert_eq!(
            s.next(&first, &full).unwrap(),
            Some(PageRequest {
                page: 2,
                per_page: 3
            })
        );
        assert_eq!(s.next(&first, &Page::new(vec![1u8, 2])).unwrap(), None);
        assert_eq!(s.next(&first, &Page::<u8>::new(vec![])).unwrap(), None);
        let mut unknown = PageNumber::new(1, 0);
        let first = Strategy::<u8>::first(&mut unknown);
        assert!(unknown
            .next(&first, &Page::new(vec![1u8]))
            .unwrap()
            .is_some());
        assert_eq!(
            unknown.next(&first, &Page::<u8>::new(vec![])).unwrap(),
            None
        );
    }

    #[test]
    fn cursor_loop_guard() {
        let mut s = Cursor::from_page();
        let first = Strategy::<u8>::first(&mut s);
        let a = s
            .next(&first, &Page::new(vec![1u8]).with_next(Some("a")))
            .unwrap()
            .unwrap();
        let b = s
            .next(&a, &Page::new(vec![2u8]).with_next(Some("b")))
            .unwrap()
            .unwrap();
        let err = s
            .next(&b, &Page::new(vec![3u8]).with_next(Some("a")))
            .unwrap_err();
        assert!(err.is_loop());
        assert!(err.to_string().contains("\"a\""), "{err}");
        assert_eq!(
            s.next(&b, &Page::new(vec![3u8]).with_next(None::<String>))
                .unwrap(),
            None
        );
        assert_eq!(
            s.next(&b, &Page::new(vec![3u8]).with_next(Some("")))
                .unwrap(),
            None
        );
    }

    #[test]
    fn seen_set_is_bounded() {
        let mut seen = SeenSet::default();
        for i in 0..SEEN_CAPACITY + 10 {
            assert!(seen.insert(&i.to_string()));
        }
        assert_eq!(seen.len(), SEEN_CAPACITY);
        assert_eq!(seen.set.len(), SEEN_CAPACITY);
        assert!(!seen.insert(&(SEEN_CAPACITY + 9).to_string()));
        assert!(seen.insert("0"), "the oldest entry was forgotten");
    }
}
