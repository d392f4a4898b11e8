//! Which parts of an upstream's 4xx answer are safe to pass on to our
//! client (see "Upstream answers" on [`error_response`](super::error_response)).

use http::HeaderValue;

use crate::fetch::STATUS_BODY_EXCERPT;

/// An upstream 4xx body that may be shown to our client as it is, with
/// the content type to send it under; `None` for anything else.
pub(super) fn safe_body(
    content_type: Option<&HeaderValue>,
    body: &[u8],
) -> Option<(HeaderValue, String)> {
    if body.is_empty() || body.len() >= STATUS_BODY_EXCERPT {
        // Empty: nothing to pass. At the excerpt's length: maybe cut short.
        return None;
    }
    let value = content_type?.to_str().ok()?;
    let mut params = value.split(';');
    let essence = params.next()?.trim().to_ascii_lowercase();
    let send = if essence == "text/plain" {
        let charset_ok = params.all(|p| match p.split_once('=') {
            Some((name, v)) if name.trim().eq_ignore_ascii_case("charset") => {
                let v = v.trim().trim_matches('"');
                v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("us-ascii")
            }
            _ => true,
        });
        if !charset_ok {
            return None;
        }
        HeaderValue::from_static("text/plain; charset=utf-8")
    } else if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        HeaderValue::from_str(&essence).ok()?
    } else {
        return None;
    };
    let text = std::str::from_utf8(body).ok()?;
    Some((send, text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(ct: &str, body: &str) -> Option<(String, String)> {
        safe_body(Some(&HeaderValue::from_str(ct).unwrap()), body.as_bytes())
            .map(|(ct, text)| (ct.to_str().unwrap().to_owned(), text))
    }

    #[test]
    fn text_and_json_pass_under_their_media_type() {
        let text = Some((
            "text/plain; charset=utf-8".to_owned(),
            "no such user".to_owned(),
        ));
        assert_eq!(pass("text/plain", "no such user"), text);
        assert_eq!(pass("Text/Plain; charset=\"UTF-8\"", "no such user"), text);
        assert_eq!(pass("text/plain; charset=us-ascii", "no such user"), text);
        assert_eq!(
            pass("application/json; charset=utf-8", "{}"),
            Some(("application/json".to_owned(), "{}".to_owned()))
        );
        assert_eq!(
            pass("application/problem+json", r#"{"title":"gone"}"#),
            Some((
                "application/problem+json".to_owned(),
                r#"{"title":"gone"}"#.to_owned()
            ))
        );
    }

    #[test]
    fn anything_else_is_withheld() {
        assert_eq!(pass("text/html", "<script>alert(1)</script>"), None);
        assert_eq!(pass("text/plain; charset=latin1", "caf\u{e9}"), None);
        assert_eq!(pass("application/xml", "<a/>"), None);
        assert_eq!(pass("image/svg+xml", "<svg/>"), None);
        assert_eq!(pass("text/plain", ""), None);
        assert_eq!(safe_body(None, b"no type"), None);
        // Not UTF-8.
        let latin1 = HeaderValue::from_static("text/plain");
        assert_eq!(safe_body(Some(&latin1), b"caf\xe9"), None);
        // As long as the excerpt: maybe cut, never sent.
        let long = "x".repeat(STATUS_BODY_EXCERPT);
        assert_eq!(pass("text/plain", &long), None);
        assert!(pass("text/plain", &long[1..]).is_some());
    }
}
