//! The deadline itself: [`Deadline`], and the task-local that makes the
//! one in force visible to every layer below in the same task
//! ([`current`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::time;

/// The instant by which a call must be answered.
///
/// A `Copy` wrapper around a tokio [`Instant`] (so paused-time tests drive
/// it). One is in force below a [`TimeoutLayer`](super::TimeoutLayer) or
/// inside [`scope`](super::scope); [`current`] reads it. For
/// `http::Request`s it also travels in the request extensions, where a
/// caller can set one by hand:
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::Deadline;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(Deadline::after(Duration::from_secs(2)));
/// let deadline = req.extensions().get::<Deadline>().copied().unwrap();
/// assert!(deadline.remaining() <= Duration::from_secs(2));
/// assert!(!deadline.has_passed());
/// # }
/// ```
///
/// Deadlines order by time: the tighter of two is their `min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `timeout` from now (tokio's clock). A timeout too long
    /// for the clock saturates to "never" (about 30 years ahead), as every
    /// duration in this crate does: `Duration::MAX` is fine.
    pub fn after(timeout: Duration) -> Self {
        Deadline(time::deadline(Instant::now(), timeout))
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// The time left until the deadline, zero once it has passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed (it is now, or later).
    pub fn has_passed(self) -> bool {
        Instant::now() >= self.0
    }
}

/// The tighter of two optional deadlines.
#[inline]
pub(crate) fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

tokio::task_local! {
    /// The deadline in force while a future runs inside a deadline scope.
    static CURRENT: Deadline;
}

/// The deadline in force in this task, if any: the tightest of the
/// enclosing [`TimeoutLayer`](super::TimeoutLayer)s and
/// [`scope`](super::scope)s, read while their inner future (or the inner
/// service's `call`) runs.
///
/// It works for every request type, because it is carried by the task,
/// not by the request. It does not cross into another task (a spawned
/// task, `tower::buffer`'s worker, a queue's worker): there the deadline
/// travels with the request instead, in the `http::Request` extensions
/// (see [`HttpExtensions`](super::HttpExtensions)) or in the queued task
/// (see [`queue`](crate::queue#deadlines)).
///
/// Reading it costs a thread-local access; [`retry`](crate::retry) reads
/// it only after a failed attempt.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::{self, Deadline};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(deadline::current(), None);
/// let by = Deadline::after(Duration::from_secs(1));
/// let seen = deadline::scope(by, async { deadline::current() }).await;
/// assert_eq!(seen, Some(by));
/// # }
/// ```
#[inline]
pub fn current() -> Option<Deadline> {
    CURRENT.try_with(|d| *d).ok()
}

/// Runs `f` with `deadline` in force (restoring what was before after).
#[inline]
pub(crate) fn in_scope<R>(deadline: Deadline, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(deadline, f)
}

/// Runs `f` with `deadline` in force, if there is one.
#[inline]
pub(crate) fn in_scope_opt<R>(deadline: Option<Deadline>, f: impl FnOnce() -> R) -> R {
    match deadline {
        Some(d) => in_scope(d, f),
        None => f(),
    }
}

/// The metric handles a [`TimeoutLayer`](super::TimeoutLayer) and its
/// services and futures carry: a `'static` reference (the layer is `Copy`),
/// or nothing at all without the `metrics` feature.
#[cfg(feature = "metrics")]
pub(crate) type Meter = &'static crate::metrics::Instruments<crate::metrics::DeadlineMetrics>;
/// The metric handles (none: the `metrics` feature is off).
#[cfg(not(feature = "metrics"))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meter;

/// The handles for the instance called `name`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn meter(name: crate::trace::Name) -> Meter {
    #[cfg(feature = "metrics")]
    {
        crate::metrics::instruments::interned(name)
    }
    #[cfg(not(feature = "metrics"))]
    {
        Meter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn earliest_takes_the_tighter() {
        let a = Deadline::after(Duration::from_secs(1));
        let b = Deadline::after(Duration::from_secs(2));
        assert_eq!(earliest(Some(a), Some(b)), Some(a));
        assert_eq!(earliest(Some(b), Some(a)), Some(a));
        assert_eq!(earliest(None, Some(b)), Some(b));
        assert_eq!(earliest(Some(a), None), Some(a));
        assert_eq!(earliest(None, None), None);
    }

    #[tokio::test(start_paused = true)]
    async fn scopes_nest_and_restore() {
        let outer = Deadline::after(Duration::from_secs(2));
        let inner = Deadline::after(Duration::from_secs(1));
        in_scope(outer, || {
            assert_eq!(current(), Some(outer));
            in_scope(inner, || assert_eq!(current(), Some(inner)));
            assert_eq!(current(), Some(outer));
        });
        assert_eq!(current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn overlong_timeouts_saturate() {
        let d = Deadline::after(Duration::MAX);
        assert_eq!(d.remaining(), time::NEVER);
        assert!(!d.has_passed());
    }
}
