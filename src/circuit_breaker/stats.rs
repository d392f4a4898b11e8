//! A snapshot of a breaker's state and counters.

use crate::rejection::State;

/// A snapshot of a breaker's state and counters, from
/// [`CircuitBreakerHandle::stats`](super::CircuitBreakerHandle::stats),
/// [`CircuitBreakerLayer::stats`](super::CircuitBreakerLayer::stats) or
/// [`CircuitBreaker::stats`](super::CircuitBreaker::stats).
///
/// The lifetime counters (`successes` ... `opened`) only grow, except
/// through [`CircuitBreakerHandle::reset`](super::CircuitBreakerHandle::reset).
/// The [`Default`] value is a closed breaker with every counter at zero.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
///
/// let layer = CircuitBreakerLayer::consecutive(5, Duration::from_secs(60));
/// let stats = layer.stats();
/// assert_eq!(stats.state, State::Closed);
/// assert_eq!(stats.failure_rate(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CircuitBreakerStats {
    /// The state at the time of the snapshot.
    pub state: State,
    /// Calls classified as [`Outcome::Success`](crate::classify::Outcome::Success).
    pub successes: u64,
    /// Calls classified as [`Outcome::Failure`](crate::classify::Outcome::Failure).
    pub failures: u64,
    /// Calls classified as [`Outcome::Ignored`](crate::classify::Outcome::Ignored).
    pub ignored: u64,
    /// Calls (successful or not) slower than the `slow_call` threshold.
    pub slow: u64,
    /// Calls failed fast with [`Open`](super::Open) without reaching the
    /// inner service.
    pub rejected: u64,
    /// Calls whose response future was dropped before it completed.
    pub cancelled: u64,
    /// How many times the breaker opened (by itself or by `force_open`).
    pub opened: u64,
    /// Calls in the current sliding window (rate model; 0 otherwise).
    pub window_calls: u64,
    /// Failures in the current sliding window (rate model; 0 otherwise).
    pub window_failures: u64,
    /// Slow calls in the current sliding window (rate model; 0 otherwise).
    pub window_slow: u64,
    /// The current run of consecutive failures (consecutive model; 0
    /// otherwise, and 0 while not closed).
    pub consecutive_failures: u64,
}

impl Default for CircuitBreakerStats {
    fn default() -> Self {
        CircuitBreakerStats {
            state: State::Closed,
            successes: 0,
            failures: 0,
            ignored: 0,
            slow: 0,
            rejected: 0,
            cancelled: 0,
            opened: 0,
            window_calls: 0,
            window_failures: 0,
            window_slow: 0,
            consecutive_failures: 0,
        }
    }
}

impl CircuitBreakerStats {
    /// Failures over calls in the current window, or `None` for an empty
    /// window or the consecutive model.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.window_calls > 0).then(|| self.window_failures as f64 / self.window_calls as f64)
    }
}
