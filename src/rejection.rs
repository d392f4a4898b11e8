//! The crate's own fast-fail rejections: errors a layer returns without
//! calling its inner service.
//!
//! They live below every pattern, beside [`ConfigError`](crate::ConfigError),
//! so that [`classify`](crate::classify) can recognise them without importing
//! the modules that raise them (imports run downward). Their public homes are
//! the pattern modules, which re-export them:
//! [`circuit_breaker::Open`](crate::circuit_breaker::Open),
//! [`circuit_breaker::State`](crate::circuit_breaker::State),
//! [`limit::Overloaded`](crate::limit::Overloaded),
//! [`queue::QueueFull`](crate::queue::QueueFull),
//! [`rate_limit::RateLimited`](crate::rate_limit::RateLimited) and
//! [`deadline::Elapsed`](crate::deadline::Elapsed).
//!
//! A rejection says "this layer would not send the call", not "the service
//! failed", so the built-in classifiers never count one as a failure (see
//! [`is_rejection`]). [`Elapsed`] is one only when the call was not sent
//! (its deadline had passed before it started); a call that was sent and
//! ran out of time is a failure, as a timeout always was.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The state of a circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail fast with [`Open`] until the open duration has passed
    /// (or, after [`CircuitBreakerHandle::force_open`](crate::circuit_breaker::CircuitBreakerHandle::force_open), until
    /// the breaker is closed by hand).
    Open,
    /// A limited number of probe calls go through; if they all succeed the
    /// breaker closes, if one fails it opens again.
    HalfOpen,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        })
    }
}

/// A call was failed fast because the circuit breaker is open (or
/// half-open with every probe slot taken). The inner service was not
/// called.
///
/// Services wrapped in a [`CircuitBreaker`](crate::circuit_breaker::CircuitBreaker) return
/// it inside a [`BoxError`](tower::BoxError); get it back with
/// `downcast_ref`:
///
/// ```
/// use std::time::Duration;
/// use tower::{BoxError, Service, ServiceExt};
/// use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CircuitBreakerLayer::consecutive(1, Duration::from_secs(30));
/// layer.handle().force_open();
/// let mut svc = tower::Layer::layer(&layer, tower::service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
/// let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
/// let open = err.downcast_ref::<Open>().expect("an Open error");
/// assert_eq!(open.retry_after(), None); // held open by force_open
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// Nanoseconds until the next probe, or `HELD` / `PROBES_BUSY`. One
    /// word, so the rejection path moves 8 bytes.
    code: u64,
}

const HELD: u64 = u64::MAX;
const PROBES_BUSY: u64 = u64::MAX - 1;

impl Open {
    pub(crate) fn until(retry_after: Duration) -> Self {
        Open {
            code: retry_after.as_nanos().min(u128::from(PROBES_BUSY - 1)) as u64,
        }
    }

    pub(crate) fn held() -> Self {
        Open { code: HELD }
    }

    pub(crate) fn probes_busy() -> Self {
        Open { code: PROBES_BUSY }
    }

    /// How long, as of the rejection, until the breaker lets a probe call
    /// through.
    ///
    /// `Some(Duration::ZERO)` when the breaker is half-open and all its
    /// probe slots are taken (a slot frees as soon as a probe finishes);
    /// `None` when the breaker is held open by
    /// [`CircuitBreakerHandle::force_open`](crate::circuit_breaker::CircuitBreakerHandle::force_open) and will not probe
    /// until it is closed by hand.
    pub fn retry_after(&self) -> Option<Duration> {
        match self.code {
            HELD => None,
            PROBES_BUSY => Some(Duration::ZERO),
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// The breaker's state at the rejection: [`State::Open`] or
    /// [`State::HalfOpen`].
    pub fn state(&self) -> State {
        if self.code == PROBES_BUSY {
            State::HalfOpen
        } else {
            State::Open
        }
    }
}

impl fmt::Display for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state(), self.retry_after()) {
            (State::HalfOpen, _) => f.write_str(
                "circuit breaker is half-open and every probe slot is taken; \
                 the call was not sent: retry once the probes have finished",
            ),
            (_, Some(d)) => write!(
                f,
                "circuit breaker is open after repeated failures; the call was not sent: \
                 a probe call is let through in {d:.1?}"
            ),
            (_, None) => f.write_str(
                "circuit breaker is held open (force_open); the call was not sent: \
                 no call goes through until the breaker is closed (force_closed or reset)",
            ),
        }
    }
}

impl fmt::Debug for Open {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Open")
            .field("state", &self.state())
            .field("retry_after", &self.retry_after())
            .finish()
    }
}

impl std::error::Error for Open {}

/// A concurrency limiter refused a call: every permit was taken and the
/// caller could not (or would not) wait any longer.
///
/// Returned, boxed in a [`BoxError`](crate::BoxError), by
/// [`ConcurrencyLimit`](crate::limit::ConcurrencyLimit) and
/// [`AdaptiveLimit`](crate::limit::AdaptiveLimit) when they were configured with
/// [`max_wait`](crate::limit::ConcurrencyLimitLayer::max_wait) or
/// [`reject_when_full`](crate::limit::ConcurrencyLimitLayer::reject_when_full).
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

/// The queue already holds `capacity` pending tasks.
///
/// Returned inside a [`tower::BoxError`] by the [`Service`](tower_service::Service)
/// impl when `call` is used without a successful `poll_ready`, and inside
/// [`TrySubmitError::Full`](crate::queue::TrySubmitError::Full) by [`TaskQueue::try_submit`](crate::queue::TaskQueue::try_submit).
/// Wait with [`TaskQueue::submit`](crate::queue::TaskQueue::submit) or `poll_ready`
/// instead, or raise the builder's `capacity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull {
    pub(crate) capacity: usize,
}

impl QueueFull {
    /// The queue's capacity (pending tasks it holds at most).
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task queue is full ({} pending tasks); wait for room with submit().await or poll_ready, or raise capacity",
            self.capacity
        )
    }
}

impl std::error::Error for QueueFull {}

/// A call was refused (or would have waited longer than allowed) because
/// it is over a rate limit's quota. The inner service was not called.
///
/// Returned, boxed in a [`BoxError`](crate::BoxError), by
/// [`RateLimit`](crate::rate_limit::RateLimit);
/// [`respond`](crate::respond) answers it with 429 and `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::rate_limit::RateLimited;
/// use tower_patterns::BoxError;
///
/// fn wait_for(err: &BoxError) -> Option<Duration> {
///     err.downcast_ref::<RateLimited>().map(|r| r.retry_after())
/// }
/// # let _ = wait_for;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub(crate) retry_after: Duration,
    pub(crate) count: u32,
    pub(crate) period: Duration,
}

impl RateLimited {
    /// How long until a call would conform (for one call; others may take
    /// the slot first).
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// The quota: calls allowed per [`period`](Self::period).
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The quota's period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limited: over the quota of {} calls per {:?}; the call was not sent: retry in {:?}",
            self.count, self.period, self.retry_after
        )
    }
}

impl std::error::Error for RateLimited {}

/// A deadline passed: the call ran out of time, or was never started
/// because its deadline had already passed.
///
/// Returned, boxed in a [`BoxError`](crate::BoxError), by
/// [`deadline::Timeout`](crate::deadline::Timeout), and inside
/// [`TaskError::DeadlineExceeded`](crate::queue::TaskError::DeadlineExceeded)
/// for a queued task whose deadline passed before a worker could start it.
/// [`respond`](crate::respond) answers it with 504 Gateway Timeout and
/// `DEADLINE_EXCEEDED`.
///
/// # Is it a failure?
///
/// The built-in classifiers call it a
/// [`Failure`](crate::classify::Outcome::Failure) when the call was
/// [`sent`](Self::sent) (the service did not answer in time: a circuit
/// breaker counts it, a retry above a per-attempt timeout retries it while
/// the overall deadline allows) and
/// [`Ignored`](crate::classify::Outcome::Ignored) when it was not (the
/// deadline had passed before the call reached the service, which says
/// nothing about the service: like an open breaker's rejection).
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::Elapsed;
/// use tower_patterns::BoxError;
///
/// fn timed_out(err: &BoxError) -> Option<Duration> {
///     err.downcast_ref::<Elapsed>().map(|e| e.allowed())
/// }
/// # let _ = timed_out;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elapsed {
    allowed: Duration,
    sent: bool,
}

impl Elapsed {
    pub(crate) fn new(allowed: Duration, sent: bool) -> Self {
        Elapsed { allowed, sent }
    }

    /// How long the call had when it arrived: from the moment the
    /// [`Timeout`](crate::deadline::Timeout) received it (or the task was
    /// submitted to the queue) to its deadline. Zero when the deadline had
    /// already passed on arrival.
    pub fn allowed(&self) -> Duration {
        self.allowed
    }

    /// Whether the call was passed to the inner service before the deadline
    /// passed. `false`: the deadline had passed before it could start, and
    /// the inner service was not called (or the queued task not run).
    pub fn sent(&self) -> bool {
        self.sent
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.sent {
            write!(
                f,
                "deadline exceeded: no answer within the {:?} the call had \
                 (raise the timeout, or make the service faster)",
                self.allowed
            )
        } else if self.allowed.is_zero() {
            f.write_str(
                "deadline exceeded: the deadline had passed before the call could start; \
                 it was not sent (an outer timeout or the caller's grpc-timeout is too short)",
            )
        } else {
            write!(
                f,
                "deadline exceeded: the call had {:?} but its deadline passed before it \
                 could start; it was not sent (the queue in front is too long for the deadline)",
                self.allowed
            )
        }
    }
}

impl std::error::Error for Elapsed {}

/// Whether `err`, or an error in its [`source`](Error::source) chain, is
/// one of the crate's own rejections: [`Open`], [`Overloaded`],
/// [`QueueFull`], [`RateLimited`], or an [`Elapsed`] that was not sent.
///
/// The chain is walked because wrappers such as `tower::buffer` carry the
/// inner error as their source.
pub(crate) fn is_rejection(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<Open>() || e.is::<Overloaded>() || e.is::<QueueFull>() || e.is::<RateLimited>() {
            return true;
        }
        if e.downcast_ref::<Elapsed>().is_some_and(|e| !e.sent) {
            return true;
        }
        next = e.source();
    }
    false
}
