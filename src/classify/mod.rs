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
//! - [`ClassifyExt`] adjusts any of them for one error type
//!   (`HttpClassify.ignoring::<MyError>()`) and keeps the rest, the
//!   server's `Retry-After` included.
//!
//! ## The crate's own rejections are not failures
//!
//! An error a layer of this crate returns *instead of* calling its inner
//! service, [`circuit_breaker::Open`](crate::circuit_breaker::Open),
//! [`limit::Overloaded`](crate::limit::Overloaded) and
//! [`queue::QueueFull`](crate::queue::QueueFull), says nothing about the
//! service behind it. Every built-in classifier therefore calls it
//! [`Outcome::Ignored`], whether it comes as such or inside a
//! [`BoxError`](crate::BoxError) (anywhere in its source chain):
//!
//! - a limit in reject mode inside a circuit breaker never opens the
//!   breaker while the backend is healthy;
//! - retry does not retry an open breaker: the call fails at once with
//!   `Open`, instead of sleeping through its backoff against a breaker
//!   that will say the same.
//!
//! A [`deadline::Elapsed`](crate::deadline::Elapsed) is a rejection only
//! when the call was not sent (its deadline had passed before it started);
//! a call that was sent and ran out of time is a failure, as a timeout
//! always is (see [`Elapsed`](crate::deadline::Elapsed#is-it-a-failure)).
//!
//! To retry them anyway, ask: `HttpClassify.failing_on::<Overloaded>()`.
//! A closure classifier sees them like any other error.
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

mod combine;
#[cfg(feature = "tonic")]
mod grpc;
mod http;
mod rejected;

pub use self::combine::{ClassifyExt, FailingOn, Ignoring};
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
    /// default says nothing, so a closure classifier never has a
    /// `Retry-After`: to change a built-in classifier's verdict and keep
    /// its `retry_after`, use the [`ClassifyExt`] combinators.
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

/// The default classifier: every `Ok` is a success, every `Err` a failure,
/// except the crate's own rejections, which are [`Outcome::Ignored`] (see
/// [the module docs](self#the-crates-own-rejections-are-not-failures)).
///
/// Use it for services whose `Ok` means success. For HTTP services, whose
/// `Ok` holds 500s too, use [`HttpClassify`].
///
/// [`Classify::retry_after`] is an open breaker's time to its next probe,
/// for an [`Open`](crate::circuit_breaker::Open) error (asked for only when
/// [`ClassifyExt::failing_on`] makes `Open` a failure).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefaultClassify;

impl<Res, E: 'static> Classify<Res, E> for DefaultClassify {
    #[inline]
    fn classify(&self, result: &Result<Res, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => error_outcome(e),
        }
    }

    fn retry_after(&self, result: &Result<Res, E>) -> Option<Duration> {
        result.as_ref().err().and_then(rejected::open_retry_after)
    }
}

/// The built-in classifiers' verdict on an error: a failure, unless it is
/// one of the crate's own rejections.
#[inline]
pub(crate) fn error_outcome<E: 'static>(err: &E) -> Outcome {
    if rejected::is_rejection(err) {
        Outcome::Ignored
    } else {
        Outcome::Failure
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::{Open, Overloaded, QueueFull};
    use crate::BoxError;

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

    /// Every rejection of the crate, bare and boxed (also one level down a
    /// source chain), as a built-in classifier sees it.
    fn rejections() -> Vec<BoxError> {
        #[derive(Debug)]
        struct Wrapped(BoxError);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("wrapped")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&*self.0)
            }
        }
        vec![
            Box::new(Open::until(Duration::from_secs(1))),
            Box::new(Overloaded::new(4, Duration::ZERO)),
            Box::new(QueueFull { capacity: 8 }),
            Box::new(Wrapped(Box::new(Open::held()))),
        ]
    }

    #[test]
    fn own_rejections_are_ignored_by_every_builtin() {
        for err in rejections() {
            let boxed: Result<::http::Response<()>, BoxError> = Err(err);
            assert_eq!(
                DefaultClassify.classify(&boxed),
                Outcome::Ignored,
                "{boxed:?}"
            );
            assert_eq!(HttpClassify.classify(&boxed), Outcome::Ignored, "{boxed:?}");
        }
        let bare: Result<(), Overloaded> = Err(Overloaded::new(1, Duration::ZERO));
        assert_eq!(DefaultClassify.classify(&bare), Outcome::Ignored);
        // Anything else is still a failure.
        let other: Result<::http::Response<()>, BoxError> = Err("connection reset".into());
        assert_eq!(DefaultClassify.classify(&other), Outcome::Failure);
        assert_eq!(HttpClassify.classify(&other), Outcome::Failure);
        assert_eq!(
            DefaultClassify.classify(&Err::<(), _>(7_u8)),
            Outcome::Failure
        );
    }

    #[test]
    fn combinators_change_one_error_type_and_keep_retry_after() {
        let asked = HttpClassify.failing_on::<Open>();
        let open: Result<::http::Response<()>, BoxError> =
            Err(Box::new(Open::until(Duration::from_millis(250))));
        assert_eq!(asked.classify(&open), Outcome::Failure);
        // The breaker's time to its next probe is the wait.
        assert_eq!(asked.retry_after(&open), Some(Duration::from_millis(250)));

        #[derive(Debug)]
        struct Mine;
        impl std::fmt::Display for Mine {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("mine")
            }
        }
        impl std::error::Error for Mine {}
        let ignoring = HttpClassify.ignoring::<Mine>();
        let mine: Result<::http::Response<()>, BoxError> = Err(Box::new(Mine));
        assert_eq!(ignoring.classify(&mine), Outcome::Ignored);
        let bare: Result<::http::Response<()>, Mine> = Err(Mine);
        assert_eq!(ignoring.classify(&bare), Outcome::Ignored);
        let busy: Result<_, BoxError> = Ok(::http::Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(())
            .unwrap());
        assert_eq!(ignoring.classify(&busy), Outcome::Failure);
        assert_eq!(ignoring.retry_after(&busy), Some(Duration::from_secs(7)));
        // Chained: each layer of the combinator asks the one inside.
        let both = DefaultClassify
            .ignoring::<Mine>()
            .failing_on::<Overloaded>();
        let over: Result<(), BoxError> = Err(Box::new(Overloaded::new(1, Duration::ZERO)));
        assert_eq!(both.classify(&over), Outcome::Failure);
        assert_eq!(
            both.classify(&Err::<(), BoxError>(Box::new(Mine))),
            Outcome::Ignored
        );
        assert_eq!(both.classify(&Ok::<(), BoxError>(())), Outcome::Success);
    }
}
