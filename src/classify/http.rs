//! [`HttpClassify`] and [`parse_retry_after`]: HTTP outcomes and the
//! `Retry-After` header.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

use super::rejected::open_retry_after;
use super::{error_outcome, Classify, Outcome};

/// A classifier for `http::Response<B>` results.
///
/// - `Err(_)` (connect errors, timeouts, ...) is a [`Outcome::Failure`],
///   except the crate's own rejections (an open breaker, a full limit or
///   queue), which are [`Outcome::Ignored`]: see
///   [the module docs](super#the-crates-own-rejections-are-not-failures).
/// - 5xx, 429 (Too Many Requests) and 408 (Request Timeout) are failures.
/// - Every other 4xx is [`Outcome::Ignored`]: the server answered, and
///   asking again will not change its answer.
/// - Everything else (1xx, 2xx, 3xx) is a [`Outcome::Success`].
///
/// [`Classify::retry_after`] reads the `Retry-After` header in both of its
/// forms, delta-seconds (`120`) and HTTP-date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`); a date in the past means "now". For
/// an [`Open`](crate::circuit_breaker::Open) error it is the breaker's time
/// to its next probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HttpClassify;

impl HttpClassify {
    /// The outcome for a bare status code.
    pub fn classify_status(status: StatusCode) -> Outcome {
        let code = status.as_u16();
        if status.is_server_error()
            || code == StatusCode::TOO_MANY_REQUESTS.as_u16()
            || code == StatusCode::REQUEST_TIMEOUT.as_u16()
        {
            Outcome::Failure
        } else if status.is_client_error() {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

impl<B, E: 'static> Classify<http::Response<B>, E> for HttpClassify {
    #[inline]
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(resp) => Self::classify_status(resp.status()),
            Err(e) => error_outcome(e),
        }
    }

    fn retry_after(&self, result: &Result<http::Response<B>, E>) -> Option<Duration> {
        match result {
            Ok(resp) => parse_retry_after(resp.headers(), SystemTime::now()),
            Err(e) => open_retry_after(e),
        }
    }
}

/// Reads a `Retry-After` header: delta-seconds or an HTTP-date, measured
/// from `now` (wall-clock time, as HTTP dates are).
///
/// Returns `None` when the header is absent or malformed; a date in the
/// past gives `Some(Duration::ZERO)`. Never panics: delta-seconds too large
/// for a `u64` saturate to `Duration::from_secs(u64::MAX)`, and the latest
/// HTTP-date (year 9999) is read as it is. The retry layer adds either to
/// the clock without overflow (see "Durations" in the crate docs).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly large values rather than failing to parse them.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16) -> Result<http::Response<()>, ()> {
        Ok(http::Response::builder().status(status).body(()).unwrap())
    }

    #[test]
    fn http_statuses() {
        for (code, want) in [
            (200, Outcome::Success),
            (204, Outcome::Success),
            (301, Outcome::Success),
            (400, Outcome::Ignored),
            (404, Outcome::Ignored),
            (408, Outcome::Failure),
            (429, Outcome::Failure),
            (500, Outcome::Failure),
            (503, Outcome::Failure),
            (599, Outcome::Failure),
        ] {
            assert_eq!(HttpClassify.classify(&resp(code)), want, "status {code}");
        }
        assert_eq!(
            HttpClassify.classify(&Err::<http::Response<()>, _>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert("retry-after", later.parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert("retry-after", earlier.parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert("retry-after", "-3".parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), None);
        h.insert("retry-after", "99999999999999999999999".parse().unwrap());
        assert_eq!(
            parse_retry_after(&h, now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_extremes_of_the_grammar() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        // delta-seconds is 1*DIGIT: any length, leading zeros included.
        let long = "9".repeat(400);
        h.insert("retry-after", long.parse().unwrap());
        assert_eq!(
            parse_retry_after(&h, now),
            Some(Duration::from_secs(u64::MAX))
        );
        let padded = format!("{}5", "0".repeat(400));
        h.insert("retry-after", padded.parse().unwrap());
        assert_eq!(parse_retry_after(&h, now), Some(Duration::from_secs(5)));
        // The latest HTTP-date there is.
        h.insert(
            "retry-after",
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        let d = parse_retry_after(&h, now).expect("a valid date");
        assert_eq!(d.as_secs(), 253_402_300_799 - 1_700_000_000);
    }
}
