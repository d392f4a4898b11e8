//! [`ClassifyExt`]: adjust a classifier for one error type and keep the
//! rest of it, `Retry-After` included.

use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::rejected::is;
use super::{Classify, Outcome};

/// Combinators on every classifier.
///
/// Writing a closure to change one verdict loses the classifier's
/// [`retry_after`](Classify::retry_after) (a closure has none); these
/// combinators change only the verdict on errors of one type and ask the
/// wrapped classifier for everything else.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::classify::{Classify, ClassifyExt, HttpClassify, Outcome};
/// use tower_patterns::limit::Overloaded;
/// use tower_patterns::BoxError;
///
/// #[derive(Debug)]
/// struct Cancelled;
/// impl std::fmt::Display for Cancelled {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("cancelled by the caller")
///     }
/// }
/// impl std::error::Error for Cancelled {}
///
/// // Our own error type is not the server's fault: neither success nor failure.
/// let classify = HttpClassify.ignoring::<Cancelled>();
/// let cancelled: Result<http::Response<()>, BoxError> = Err(Box::new(Cancelled));
/// assert_eq!(classify.classify(&cancelled), Outcome::Ignored);
///
/// // The server's Retry-After still reaches retry.
/// let busy: Result<_, BoxError> = Ok(http::Response::builder()
///     .status(503)
///     .header("retry-after", "3")
///     .body(())
///     .unwrap());
/// assert_eq!(classify.classify(&busy), Outcome::Failure);
/// assert_eq!(classify.retry_after(&busy), Some(Duration::from_secs(3)));
///
/// // Asked for: a shared limiter's rejection counts as a failure, so retry
/// // tries again (the built-in classifiers ignore the crate's rejections).
/// let retry_overload = HttpClassify.failing_on::<Overloaded>();
/// # let _ = retry_overload;
/// ```
pub trait ClassifyExt: Sized {
    /// Errors of type `T` (as such, or anywhere in a boxed error's source
    /// chain) are [`Outcome::Ignored`]: not retried, not counted by the
    /// breaker. Everything else, and every `retry_after`, is `self`'s.
    fn ignoring<T: Error + 'static>(self) -> Ignoring<Self, T> {
        Ignoring {
            inner: self,
            _error: PhantomData,
        }
    }

    /// Errors of type `T` (as such, or anywhere in a boxed error's source
    /// chain) are [`Outcome::Failure`]: retried, counted by the breaker.
    /// Use it to ask for what the built-in classifiers refuse by default,
    /// retrying the crate's own rejections
    /// ([`Open`](crate::circuit_breaker::Open),
    /// [`Overloaded`](crate::limit::Overloaded),
    /// [`QueueFull`](crate::queue::QueueFull)). An `Open` then waits for
    /// the breaker's next probe: the built-in classifiers read its
    /// [`retry_after`](crate::circuit_breaker::Open::retry_after).
    fn failing_on<T: Error + 'static>(self) -> FailingOn<Self, T> {
        FailingOn {
            inner: self,
            _error: PhantomData,
        }
    }
}

impl<C> ClassifyExt for C {}

/// A classifier that ignores errors of type `T`; made by
/// [`ClassifyExt::ignoring`].
pub struct Ignoring<C, T> {
    inner: C,
    _error: PhantomData<fn() -> T>,
}

/// A classifier that counts errors of type `T` as failures; made by
/// [`ClassifyExt::failing_on`].
pub struct FailingOn<C, T> {
    inner: C,
    _error: PhantomData<fn() -> T>,
}

macro_rules! combinator {
    ($name:ident, $verdict:expr) => {
        impl<C: Clone, T> Clone for $name<C, T> {
            fn clone(&self) -> Self {
                $name {
                    inner: self.inner.clone(),
                    _error: PhantomData,
                }
            }
        }

        impl<C: Copy, T> Copy for $name<C, T> {}

        impl<C: fmt::Debug, T> fmt::Debug for $name<C, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("inner", &self.inner)
                    .field("error", &std::any::type_name::<T>())
                    .finish()
            }
        }

        impl<C, T, Res, E> Classify<Res, E> for $name<C, T>
        where
            C: Classify<Res, E>,
            T: Error + 'static,
            E: 'static,
        {
            #[inline]
            fn classify(&self, result: &Result<Res, E>) -> Outcome {
                match result {
                    Err(e) if is::<T, E>(e) => $verdict,
                    _ => self.inner.classify(result),
                }
            }

            fn retry_after(&self, result: &Result<Res, E>) -> Option<Duration> {
                self.inner.retry_after(result)
            }
        }
    };
}

combinator!(Ignoring, Outcome::Ignored);
combinator!(FailingOn, Outcome::Failure);
