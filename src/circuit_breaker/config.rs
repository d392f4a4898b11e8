//! The validated configuration and the two rules it carries: when the rate
//! model opens, and how long an opening lasts. Pure functions of their
//! inputs, tested without a runtime.

use std::time::Duration;

use super::change::ChangeReason;
use super::window::{Counts, Window};

/// What opens the breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Policy {
    /// `n` failures in a row.
    Consecutive(u32),
    /// A failure (or slow-call) rate over a sliding window.
    Rate {
        threshold: f64,
        window: Window,
        minimum_calls: u64,
    },
}

/// Validated configuration (the builder checks every value).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Config {
    pub(crate) policy: Policy,
    /// (threshold, rate): calls slower than threshold are slow; open when
    /// the slow rate reaches `rate`.
    pub(crate) slow: Option<(Duration, f64)>,
    pub(crate) open_duration: Duration,
    pub(crate) open_duration_max: Duration,
    pub(crate) half_open_calls: u32,
}

impl Config {
    /// The open duration for the opening after `openings` earlier ones
    /// since the breaker last closed: doubling from `open_duration` up to
    /// `open_duration_max`.
    pub(crate) fn open_duration(&self, openings: u32) -> Duration {
        let base = self.open_duration;
        let factor = 1u32.checked_shl(openings.min(31)).unwrap_or(u32::MAX);
        base.checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.open_duration_max)
            .max(base)
    }

    /// The rate model's rule: enough calls, and a failure or slow-call rate
    /// at or above its threshold; the reason to open, if so. Always `None`
    /// for the consecutive model.
    pub(crate) fn verdict_open(&self, c: Counts) -> Option<ChangeReason> {
        let Policy::Rate {
            threshold,
            minimum_calls,
            ..
        } = self.policy
        else {
            return None;
        };
        if c.total == 0 || c.total < minimum_calls {
            return None;
        }
        let total = c.total as f64;
        if c.failures as f64 / total >= threshold {
            return Some(ChangeReason::FailureRate);
        }
        matches!(self.slow, Some((_, rate)) if c.slow as f64 / total >= rate)
            .then_some(ChangeReason::SlowCallRate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy: Policy, open: Duration, max: Duration) -> Config {
        Config {
            policy,
            slow: None,
            open_duration: open,
            open_duration_max: max,
            half_open_calls: 1,
        }
    }

    #[test]
    fn open_duration_doubles_up_to_max() {
        let d = Duration::from_secs(10);
        let cfg = config(Policy::Consecutive(1), d, Duration::from_secs(35));
        let got: Vec<u64> = (0..5).map(|i| cfg.open_duration(i).as_secs()).collect();
        assert_eq!(got, [10, 20, 35, 35, 35]);
        assert_eq!(cfg.open_duration(u32::MAX).as_secs(), 35);
    }

    #[test]
    fn rate_verdict_waits_for_minimum_calls() {
        let d = Duration::from_secs(1);
        let mut cfg = config(
            Policy::Rate {
                threshold: 0.5,
                window: Window::Count(10),
                minimum_calls: 4,
            },
            d,
            d,
        );
        let counts = |total, failures, slow| Counts {
            total,
            failures,
            slow,
        };
        assert_eq!(cfg.verdict_open(counts(3, 3, 0)), None);
        assert_eq!(
            cfg.verdict_open(counts(4, 2, 0)),
            Some(ChangeReason::FailureRate)
        );
        assert_eq!(cfg.verdict_open(counts(4, 1, 4)), None);
        cfg.slow = Some((d, 0.75));
        assert_eq!(
            cfg.verdict_open(counts(4, 1, 3)),
            Some(ChangeReason::SlowCallRate)
        );
        let consecutive = config(Policy::Consecutive(1), d, d);
        assert_eq!(consecutive.verdict_open(counts(10, 10, 10)), None);
    }
}
