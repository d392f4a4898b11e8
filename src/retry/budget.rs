//! A retry budget: retries may add at most a fixed fraction of load.
//!
//! Without a budget, a service where every call fails gets
//! `max_attempts` times its normal load from each client, exactly when it
//! can least take it. A [`RetryBudget`] allows, over any recent `window`,
//!
//! ```text
//! retries ≤ ratio × first_attempts + min_per_sec × window
//! ```
//!
//! so a full outage costs at most `1 + ratio` times the normal load (plus
//! a small floor that keeps low-traffic clients able to retry at all).
//!
//! # How it is counted (and why it is cheap)
//!
//! The path where the first attempt succeeds only bumps the calling
//! handle's own first-attempt counter (see the statistics), which the
//! retry statistics need anyway. Everything else happens only when a retry
//! is considered: a ring of ten time slots (each a tenth of the window)
//! records, per slot, the counter's value when the slot was first seen and
//! the retries granted in it. First attempts in the window are the counter
//! now minus its value at the oldest slot still in the window. The ring
//! sits behind a short, uncontended-in-practice mutex that is only taken
//! on the retry path.
//!
//! Slots are opened lazily (by the first retry in them), so first attempts
//! made before the oldest open slot are not credited: after a quiet
//! period the budget errs on the strict side for at most one window. The
//! floor keeps occasional retries flowing meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use crate::budget::Budget;
use crate::error::check;
use crate::ConfigError;

/// The component named in configuration errors.
const RETRY: &str = "retry";

/// Limits retries to a fraction of recent first attempts plus a floor.
///
/// `RetryBudget::new(0.2, 10, Duration::from_secs(10))` allows, in any
/// 10-second window, retries up to 20 % of the first attempts made in that
/// window plus 10 per second (100 per window). A retry the budget refuses
/// is not made: the caller gets the last result unchanged and
/// [`RetryStats::budget_refusals`](super::RetryStats::budget_refusals)
/// counts it.
///
/// The budget is shared by every clone of the service built from one
/// [`RetryLayer`](super::RetryLayer). Values are checked by the layer's
/// `build()`: `ratio` in `[0, 1000]` (field `budget.ratio`), `window`
/// between 10 ms and 1 hour (field `budget.window`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: u32,
    window: Duration,
}

impl Default for RetryBudget {
    /// `RetryBudget::new(0.2, 10, 10 s)`.
    fn default() -> Self {
        RetryBudget::new(0.2, 10, Duration::from_secs(10))
    }
}

impl RetryBudget {
    /// A budget of `ratio` retries per first attempt plus `min_per_sec`
    /// retries per second, both measured over the last `window`.
    pub fn new(ratio: f64, min_per_sec: u32, window: Duration) -> Self {
        RetryBudget {
            ratio,
            min_per_sec,
            window,
        }
    }

    /// Retries allowed per first attempt.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    /// Retries allowed per second regardless of traffic.
    pub fn min_per_sec(&self) -> u32 {
        self.min_per_sec
    }

    /// The window over which attempts and retries are counted.
    pub fn window(&self) -> Duration {
        self.window
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check::in_range(RETRY, "budget.ratio", self.ratio, 0.0, 1000.0)?;
        check::in_range(
            RETRY,
            "budget.window",
            self.window,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        Ok(())
    }
}

/// The live state of a [`RetryBudget`], shared through the layer's `Arc`:
/// the crate's one extra-call budget (`crate::budget`), counting retries
/// against first attempts.
#[derive(Debug)]
pub(crate) struct BudgetState(Budget);

impl BudgetState {
    pub(crate) fn new(budget: &RetryBudget) -> Self {
        BudgetState(Budget::new(budget.ratio, budget.min_per_sec, budget.window))
    }

    /// Asks for one retry at `now`; `first_attempts` reads the monotonic
    /// count of first attempts. Returns whether the retry may go ahead
    /// (and, if so, records it).
    pub(crate) fn try_withdraw(&self, now: Instant, first_attempts: impl FnOnce() -> u64) -> bool {
        self.0.try_withdraw(now, first_attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_fields() {
        let e = RetryBudget::new(-1.0, 0, Duration::from_secs(1))
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "budget.ratio");
        let e = RetryBudget::new(f64::NAN, 0, Duration::from_secs(1))
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "budget.ratio");
        let e = RetryBudget::new(0.1, 0, Duration::ZERO)
            .validate()
            .unwrap_err();
        assert_eq!(e.field(), "budget.window");
        assert!(RetryBudget::default().validate().is_ok());
    }
}
