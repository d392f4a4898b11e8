//! What counts as success, failure, or neither.
//!
//! Retry, the circuit breaker, the adaptive limiter and the cache all need
//! to know whether a call went well. They take the same [`Classify`] value,
//! so "what is a failure" is written once and every layer agrees.
//!
//! - [`DefaultClassify`]: every `Err` is a failure, every `Ok` a success.
//! - [`HttpClassify`]: `http::Response`s; 5xx, 429 and 408 are failures,
//!   and [`parse_retry_after`] reads the server's `Retry-After`.
//! - `GrpcClassify` (feature `tonic`): gRPC calls at the HTTP level, read
//!   from the `grpc-status` field.
//! - Any closure `Fn(&Result<Res, E>) -> Outcome`.
//!
//! ```
//! use tower_patterns::classify::{Classify, DefaultClassify, HttpClassify, Outcome};
//!
//! // The default: every `Err` is a failure, every `Ok` a success.
//! let ok: Result<u32, &str> = Ok(1);
//! assert_eq!(DefaultClassify.classify(&ok), Outcome::Success);
//!
//! // HTTP: 5xx, 429 and 408 are failures, other 4xx are neither.
//! let resp = http::Response::builder()
//!     .status(503)
//!     .header("retry-after", "2")
//!     .body(())
//!     .unwrap();
//! let res: Result<_, std::io::Error> = Ok(resp);
//! assert_eq!(HttpClassify.classify(&res), Outcome::Failure);
//! assert_eq!(
//!     HttpClassify.retry_after(&res),
//!     Some(std::time::Duration::from_secs(2))
//! );
//!
//! // Any closure over `&Result<Res, E>` is a classifier too.
//! let even_is_ok = |r: &Result<u32, ()>| match r {
//!     Ok(n) if n % 2 == 0 => Outcome::Success,
//!     Ok(_) => Outcome::Ignored,
//!     Err(_) => Outcome::Failure,
//! };
//! assert_eq!(even_is_ok.classify(&Ok(3)), Outcome::Ignored);
//! ```

use std::time::Duration;

#[cfg(feature = "tonic")]
mod grpc;
mod http;

#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub use self::grpc::GrpcClassify;
pub use self::http::{parse_retry_after, HttpClassify};

/// The verdict on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call did what was asked. Never retried; counts as a success for
    /// the circuit breaker; may be cached.
    Success,
    /// The call failed in a way worth reacting to: retried by retry, counted
    /// against the service by the circuit breaker, never cached.
    Failure,
    /// Neither: a definite answer that is not the service's fault (an HTTP
    /// 404, say). Not retried, not counted by the breaker, not cached.
    Ignored,
}

impl Outcome {
    /// `true` for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Success)
    }

    /// `true` for [`Outcome::Failure`].
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Failure)
    }
}

/// Decides the [`Outcome`] of a call's `Result<Res, E>`.
///
/// Implemented by [`DefaultClassify`], [`HttpClassify`] and by any closure
/// `Fn(&Result<Res, E>) -> Outcome`. Implementations should be cheap: they
/// run on every call of every layer that takes them.
pub trait Classify<Res, E> {
    /// The verdict on `result`.
    fn classify(&self, result: &Result<Res, E>) -> Outcome;

    /// How long the server asked the caller to wait before trying again,
    /// if it said so (an HTTP `Retry-After` header, say).
    ///
    /// Only asked of results classified as [`Outcome::Failure`]. The
    /// default says nothing.
    fn retry_after(&self, result: &Result<Res, E>) -> Option<Duration> {
        let _ = result;
        None
    }
}

impl<F, Res, E> Classify<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> Outcome,
{
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        self(result)
    }
}

/// The default classifier: every `Ok` is a success, every `Err` a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassify;

impl<Res, E> Classify<Res, E> for DefaultClassify {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classify() {
        assert_eq!(DefaultClassify.classify(&Ok::<_, ()>(())), Outcome::Success);
        assert_eq!(
            DefaultClassify.classify(&Err::<(), _>(())),
            Outcome::Failure
        );
    }

    #[test]
    fn closures_classify() {
        let c = |r: &Result<i32, ()>| {
            if matches!(r, Ok(n) if *n > 0) {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        };
        assert_eq!(c.classify(&Ok(1)), Outcome::Success);
        assert_eq!(c.classify(&Ok(-1)), Outcome::Failure);
        assert_eq!(Classify::<i32, ()>::retry_after(&c, &Ok(1)), None);
    }
}
