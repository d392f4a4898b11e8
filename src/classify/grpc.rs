//! [`GrpcClassify`]: gRPC outcomes for retry and the circuit breaker.

use std::time::Duration;

use super::{error_outcome, Classify, Outcome};

// gRPC status codes (grpc/doc/statuscodes.md); no tonic needed here.
const OK: i32 = 0;
const UNKNOWN: i32 = 2;
const DEADLINE_EXCEEDED: i32 = 4;
const RESOURCE_EXHAUSTED: i32 = 8;
const INTERNAL: i32 = 13;
const UNAVAILABLE: i32 = 14;
const DATA_LOSS: i32 = 15;

/// A classifier for gRPC calls at the HTTP level (`http::Response<B>`
/// results, as a tonic `Channel` returns them).
///
/// gRPC answers nearly everything with HTTP 200 and puts the outcome in
/// the `grpc-status` field. An error a server decides on before it
/// streams anything (an open breaker, an overload, a handler returning
/// `Err(Status)` from a unary call) arrives *trailers-only*: the
/// `grpc-status` field is among the response headers, where this
/// classifier reads it. Statuses sent in real trailers, after a body,
/// are beyond what a response-level classifier can see; they count as
/// successes.
///
/// - `Err(_)` (connect errors, resets): [`Outcome::Failure`], except the
///   crate's own rejections ([`circuit_breaker::Open`](crate::circuit_breaker::Open),
///   [`limit::Overloaded`](crate::limit::Overloaded),
///   [`queue::QueueFull`](crate::queue::QueueFull), as such or inside a
///   [`BoxError`](crate::BoxError)): the call never left this process, so
///   it is [`Outcome::Ignored`]: retry does not hammer an open breaker,
///   and an outer breaker does not count it.
/// - A non-200 HTTP status: [`Outcome::Failure`].
/// - `grpc-status` `UNAVAILABLE` (14), `RESOURCE_EXHAUSTED` (8),
///   `DEADLINE_EXCEEDED` (4), `INTERNAL` (13), `UNKNOWN` (2),
///   `DATA_LOSS` (15): [`Outcome::Failure`].
/// - Any other non-zero `grpc-status` (`NOT_FOUND`, `INVALID_ARGUMENT`,
///   ...): [`Outcome::Ignored`]: the server answered, and asking again
///   will not change its answer.
/// - Otherwise: [`Outcome::Success`].
///
/// [`Classify::retry_after`] reads `grpc-retry-pushback-ms`
/// ([`RETRY_PUSHBACK_MS`](crate::respond::RETRY_PUSHBACK_MS)), as
/// [`respond::into_status`](crate::respond::into_status) writes it on the
/// server.
///
/// ```
/// use tower_patterns::classify::{Classify, GrpcClassify, Outcome};
///
/// let unavailable = http::Response::builder()
///     .header("grpc-status", "14")
///     .header("grpc-retry-pushback-ms", "1500")
///     .body(())
///     .unwrap();
/// let res: Result<_, std::io::Error> = Ok(unavailable);
/// assert_eq!(GrpcClassify.classify(&res), Outcome::Failure);
/// assert_eq!(GrpcClassify.retry_after(&res), Some(std::time::Duration::from_millis(1500)));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrpcClassify;

impl GrpcClassify {
    /// The outcome for a bare gRPC status code number.
    pub fn classify_code(code: i32) -> Outcome {
        match code {
            OK => Outcome::Success,
            UNKNOWN | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED | INTERNAL | UNAVAILABLE
            | DATA_LOSS => Outcome::Failure,
            _ => Outcome::Ignored,
        }
    }
}

impl<B, E: 'static> Classify<http::Response<B>, E> for GrpcClassify {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        let res = match result {
            Ok(res) => res,
            Err(e) => return error_outcome(e),
        };
        if res.status() != http::StatusCode::OK {
            return Outcome::Failure;
        }
        match res.headers().get("grpc-status") {
            None => Outcome::Success,
            Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                Some(code) => Self::classify_code(code),
                // A status field that does not parse: the peer is broken.
                None => Outcome::Failure,
            },
        }
    }

    fn retry_after(&self, result: &Result<http::Response<B>, E>) -> Option<Duration> {
        let res = result.as_ref().ok()?;
        let ms = res.headers().get("grpc-retry-pushback-ms")?.to_str().ok()?;
        match ms.trim().parse::<u64>() {
            Ok(ms) => Some(Duration::from_millis(ms)),
            // A number too large for u64 saturates: the peer asked for "never".
            Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
                Some(Duration::from_millis(u64::MAX))
            }
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::Open;
    use crate::BoxError;

    fn res(status: u16, grpc: Option<&str>) -> Result<http::Response<()>, ()> {
        let mut b = http::Response::builder().status(status);
        if let Some(g) = grpc {
            b = b.header("grpc-status", g);
        }
        Ok(b.body(()).unwrap())
    }

    #[test]
    fn classifies_trailers_only_statuses() {
        let c = GrpcClassify;
        assert_eq!(c.classify(&res(200, None)), Outcome::Success);
        assert_eq!(c.classify(&res(200, Some("0"))), Outcome::Success);
        for code in ["14", "8", "4", "13", "2", "15"] {
            assert_eq!(
                c.classify(&res(200, Some(code))),
                Outcome::Failure,
                "{code}"
            );
        }
        assert_eq!(c.classify(&res(200, Some("5"))), Outcome::Ignored);
        assert_eq!(c.classify(&res(200, Some("3"))), Outcome::Ignored);
        assert_eq!(c.classify(&res(200, Some("junk"))), Outcome::Failure);
        assert_eq!(c.classify(&res(502, None)), Outcome::Failure);
        assert_eq!(
            c.classify(&Err::<http::Response<()>, ()>(())),
            Outcome::Failure
        );
        assert_eq!(c.retry_after(&res(200, Some("14"))), None);

        // An open breaker's rejection, as such or boxed as the breaker
        // returns it: the call never left this process.
        let open: Result<http::Response<()>, Open> = Err(Open::held());
        assert_eq!(c.classify(&open), Outcome::Ignored);
        let boxed: Result<http::Response<()>, BoxError> =
            Err(Open::until(Duration::from_secs(1)).into());
        assert_eq!(c.classify(&boxed), Outcome::Ignored);
        let other: Result<http::Response<()>, BoxError> = Err("reset".into());
        assert_eq!(c.classify(&other), Outcome::Failure);
    }

    #[test]
    fn pushback_saturates_instead_of_failing() {
        let with = |ms: &str| -> Result<http::Response<()>, ()> {
            Ok(http::Response::builder()
                .header("grpc-status", "14")
                .header("grpc-retry-pushback-ms", ms)
                .body(())
                .unwrap())
        };
        let c = GrpcClassify;
        assert_eq!(
            c.retry_after(&with("250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            c.retry_after(&with("99999999999999999999999999")),
            Some(Duration::from_millis(u64::MAX))
        );
        assert_eq!(c.retry_after(&with("-1")), None);
        assert_eq!(c.retry_after(&with("soon")), None);
    }
}
