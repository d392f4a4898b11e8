//! [`StateChange`]: what the state-change callback is told, and
//! [`ChangeReason`]: why the breaker moved.

use std::fmt;

use super::stats::CircuitBreakerStats;
use crate::rejection::State;

/// Why a circuit breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChangeReason {
    /// Closed → open: `consecutive_failures` failures in a row.
    ConsecutiveFailures,
    /// Closed → open: the failure rate over the window reached the
    /// threshold.
    FailureRate,
    /// Closed → open: the share of slow calls over the window reached the
    /// slow-call rate.
    SlowCallRate,
    /// Open → half-open: the open duration passed. The breaker notices on
    /// the first call (or `state()` / `stats()` read) after it: there is no
    /// timer, so an idle breaker stays open in its stats until asked.
    OpenDurationElapsed,
    /// Half-open → open: a probe failed (or was slow).
    ProbeFailed,
    /// Half-open → closed: every probe succeeded.
    ProbesSucceeded,
    /// [`CircuitBreakerHandle::force_open`](super::CircuitBreakerHandle::force_open).
    ForcedOpen,
    /// [`CircuitBreakerHandle::force_closed`](super::CircuitBreakerHandle::force_closed).
    ForcedClosed,
    /// [`CircuitBreakerHandle::reset`](super::CircuitBreakerHandle::reset).
    Reset,
}

impl fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeReason::ConsecutiveFailures => "too many failures in a row",
            ChangeReason::FailureRate => "failure rate over the threshold",
            ChangeReason::SlowCallRate => "slow-call rate over the threshold",
            ChangeReason::OpenDurationElapsed => "open duration elapsed",
            ChangeReason::ProbeFailed => "a probe call failed",
            ChangeReason::ProbesSucceeded => "every probe call succeeded",
            ChangeReason::ForcedOpen => "forced open by hand",
            ChangeReason::ForcedClosed => "forced closed by hand",
            ChangeReason::Reset => "reset by hand",
        })
    }
}

/// One state transition, as the
/// [`on_state_change`](super::CircuitBreakerLayerBuilder::on_state_change)
/// callback sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// Why.
    pub reason: ChangeReason,
    /// The breaker's counters as the callback runs (right after the
    /// change, unless calls finished in between): the failures that
    /// opened it, the successes that closed it.
    pub stats: CircuitBreakerStats,
}

impl fmt::Display for StateChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker {} -> {}: {} ({} failures, {} successes so far)",
            self.from, self.to, self.reason, self.stats.failures, self.stats.successes
        )
    }
}
