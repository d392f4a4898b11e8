//! The error a limiter returns when it gives up on a caller.

use std::fmt;
use std::time::Duration;

/// A concurrency limiter refused a call: every permit was taken and the
/// caller could not (or would not) wait any longer.
///
/// Returned, boxed in a [`BoxError`](crate::BoxError), by
/// [`ConcurrencyLimit`](super::ConcurrencyLimit) and
/// [`AdaptiveLimit`](super::AdaptiveLimit) when they were configured with
/// [`max_wait`](super::ConcurrencyLimitLayer::max_wait) or
/// [`reject_when_full`](super::ConcurrencyLimitLayer::reject_when_full).
/// The inner service was not called. Recover it with `downcast_ref`:
///
/// ```
/// # use std::time::Duration;
/// use tower_patterns::limit::Overloaded;
/// use tower_patterns::BoxError;
///
/// fn should_retry_later(err: &BoxError) -> Option<Duration> {
///     err.downcast_ref::<Overloaded>().map(|o| o.waited())
/// }
/// # let _ = should_retry_later;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overloaded {
    limit: usize,
    waited: Duration,
}

impl Overloaded {
    pub(crate) fn new(limit: usize, waited: Duration) -> Self {
        Overloaded { limit, waited }
    }

    /// The concurrency limit that was in force when the call was refused
    /// (for an adaptive limiter, its value at that moment).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How long the caller waited for a permit before giving up:
    /// [`Duration::ZERO`] for a limiter that never waits.
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "overloaded: all {} permits are in use", self.limit)?;
        if self.waited.is_zero() {
            f.write_str(" and this limiter does not wait")?;
        } else {
            write!(f, "; gave up after waiting {:?}", self.waited)?;
        }
        f.write_str(" (shed load, retry later, or raise the limit)")
    }
}

impl std::error::Error for Overloaded {}
