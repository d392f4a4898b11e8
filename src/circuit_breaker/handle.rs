//! The handle on one breaker.

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::core::Core;
use super::stats::CircuitBreakerStats;
use crate::rejection::State;

/// A handle on one breaker, from
/// [`CircuitBreakerLayer::handle`](super::CircuitBreakerLayer::handle) or
/// [`CircuitBreaker::handle`](super::CircuitBreaker::handle): read its state
/// and counters, or override it.
///
/// Every transition made through the handle fires the state-change
/// callback like any other.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
///
/// let layer = CircuitBreakerLayer::consecutive(5, Duration::from_secs(60));
/// let handle = layer.handle();
/// handle.force_open();
/// assert_eq!(handle.state(), State::Open);
/// handle.force_closed();
/// assert_eq!(handle.stats().opened, 1);
/// ```
#[derive(Clone)]
pub struct CircuitBreakerHandle {
    core: Arc<Core>,
}

impl fmt::Debug for CircuitBreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CircuitBreakerHandle")
            .field(&self.core)
            .finish()
    }
}

impl CircuitBreakerHandle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        CircuitBreakerHandle { core }
    }

    /// The current state. An open breaker whose open duration has passed
    /// reports (and becomes) [`State::HalfOpen`].
    pub fn state(&self) -> State {
        self.core.state(&Instant::now)
    }

    /// A snapshot of the state, lifetime counters and window contents.
    pub fn stats(&self) -> CircuitBreakerStats {
        self.core.stats(&Instant::now)
    }

    /// Opens the breaker and holds it open (no timer, no probes) until
    /// [`force_closed`](Self::force_closed) or [`reset`](Self::reset).
    /// Calls fail with an [`Open`](super::Open) whose `retry_after` is
    /// `None`.
    pub fn force_open(&self) {
        self.core.force_open(&Instant::now)
    }

    /// Closes the breaker now, with an empty window and the open duration
    /// back at its base value. Lifetime counters are kept.
    pub fn force_closed(&self) {
        self.core.force_closed(&Instant::now)
    }

    /// Returns the breaker to its state right after `build()`: closed,
    /// empty window, base open duration, every counter at zero.
    pub fn reset(&self) {
        self.core.reset(&Instant::now)
    }

    /// Half-open probe calls in flight right now (0 unless half-open).
    pub fn probes_in_flight(&self) -> u32 {
        self.core.probes_in_flight()
    }
}
