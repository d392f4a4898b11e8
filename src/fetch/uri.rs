//! Which URIs the client can send to, and `GET` requests from URL strings.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, Request, Uri};
use http_body_util::Full;

use super::error::FetchError;

/// Checks that hyper-util can send to `uri` (absolute, with a host, and a
/// scheme we speak).
pub(crate) fn check_uri(uri: &Uri) -> Result<(), Cow<'static, str>> {
    let scheme = match uri.scheme_str() {
        Some(s) => s,
        None => return Err("it has no scheme (expected http:// or https://)".into()),
    };
    match scheme {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => return Err("https needs the `tls` feature of tower-patterns".into()),
        other => {
            return Err(format!("unsupported scheme `{other}` (expected http or https)").into())
        }
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("it has no host".into()),
    }
}

/// A `method` request for `url` carrying `body`, or
/// [`FetchError::InvalidUri`].
pub(crate) fn build_request(
    method: Method,
    url: &str,
    body: Bytes,
    accept: Option<&'static str>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    let invalid = |reason: Cow<'static, str>| FetchError::InvalidUri {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(e.to_string().into()))?;
    check_uri(&uri).map_err(invalid)?;
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    if let Some(accept) = accept {
        req.headers_mut()
            .insert(http::header::ACCEPT, HeaderValue::from_static(accept));
    }
    Ok(req)
}

/// A `GET` request for `url`, or [`FetchError::InvalidUri`].
pub(crate) fn get_request(
    url: &str,
    accept: Option<&'static str>,
) -> Result<Request<Full<Bytes>>, FetchError> {
    build_request(Method::GET, url, Bytes::new(), accept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_uri_refuses_what_hyper_cannot_send() {
        assert!(check_uri(&"http://h/x".parse().unwrap()).is_ok());
        assert!(check_uri(&"/relative".parse().unwrap()).is_err());
        assert!(check_uri(&"ftp://h/x".parse().unwrap()).is_err());
        assert_eq!(
            check_uri(&"https://h/".parse().unwrap()).is_ok(),
            cfg!(feature = "tls")
        );
        for bad in [
            "",
            "not a url",
            "http://",
            "http://exa mple.com/",
            "ftp://h/",
        ] {
            let e = get_request(bad, None).unwrap_err();
            assert!(matches!(e, FetchError::InvalidUri { .. }), "{bad:?}: {e:?}");
            assert_eq!(e.url(), bad);
        }
    }
}
