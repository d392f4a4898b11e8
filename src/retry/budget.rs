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
//! is considered: a ring of [`SLOTS`] time slots (each `window / SLOTS` long)
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

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::check;
use crate::sync::lock;
use crate::ConfigError;

/// The component named in configuration errors.
const RETRY: &str = "retry";

/// Number of time slots the window is divided into.
pub(crate) const SLOTS: usize = 10;

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

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Slot number since `origin`; meaningful only when `used`.
    index: u64,
    /// The first-attempt counter when this slot was opened.
    first_at_open: u64,
    /// Retries granted in this slot.
    retries: u64,
    used: bool,
}

#[derive(Debug, Default)]
struct Ring {
    origin: Option<Instant>,
    head: usize,
    slots: [Slot; SLOTS],
}

/// The live state of a [`RetryBudget`], shared through the layer's `Arc`.
#[derive(Debug)]
pub(crate) struct BudgetState {
    ratio: f64,
    /// `min_per_sec × window`, in retries.
    floor: f64,
    slot_nanos: u128,
    ring: Mutex<Ring>,
}

impl BudgetState {
    pub(crate) fn new(budget: &RetryBudget) -> Self {
        BudgetState {
            ratio: budget.ratio,
            floor: f64::from(budget.min_per_sec) * budget.window.as_secs_f64(),
            slot_nanos: (budget.window.as_nanos() / SLOTS as u128).max(1),
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Asks for one retry at `now`; `first_attempts` reads the monotonic
    /// count of first attempts. Returns whether the retry may go ahead
    /// (and, if so, records it).
    pub(crate) fn try_withdraw(&self, now: Instant, first_attempts: impl FnOnce() -> u64) -> bool {
        let mut ring = lock(&self.ring);
        // Read under the lock so every reader sees a value at least as new
        // as the one stored in any slot.
        let total = first_attempts();
        let origin = *ring.origin.get_or_insert(now);
        let slot = (now.saturating_duration_since(origin).as_nanos() / self.slot_nanos)
            .min(u128::from(u64::MAX)) as u64;

        let head = ring.head;
        if !ring.slots[head].used || ring.slots[head].index != slot {
            let next = (head + 1) % SLOTS;
            ring.head = next;
            ring.slots[next] = Slot {
                index: slot,
                first_at_open: total,
                retries: 0,
                used: true,
            };
        }

        let mut retries = 0u64;
        let mut oldest = total;
        for s in ring.slots.iter().filter(|s| s.used) {
            // In the window: the current slot and the SLOTS - 1 before it.
            if s.index.saturating_add(SLOTS as u64) > slot {
                retries += s.retries;
                oldest = oldest.min(s.first_at_open);
            }
        }
        let deposits = total.saturating_sub(oldest) as f64;
        let allowed = self.ratio * deposits + self.floor;
        if (retries + 1) as f64 <= allowed {
            let head = ring.head;
            ring.slots[head].retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn ratio_and_floor() {
        let state = BudgetState::new(&RetryBudget::new(0.5, 1, Duration::from_secs(10)));
        let first = AtomicU64::new(0);
        // Floor alone: 1/s over 10 s = 10 retries.
        let granted = (0..50)
            .filter(|_| state.try_withdraw(Instant::now(), || first.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 10);
        // 40 more first attempts: + 20 retries.
        first.fetch_add(40, Ordering::Relaxed);
        let granted = (0..50)
            .filter(|_| state.try_withdraw(Instant::now(), || first.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides() {
        let state = BudgetState::new(&RetryBudget::new(0.0, 1, Duration::from_secs(10)));
        let first = AtomicU64::new(0);
        let granted = (0..20)
            .filter(|_| state.try_withdraw(Instant::now(), || first.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 10);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!state.try_withdraw(Instant::now(), || first.load(Ordering::Relaxed)));
        // Once the slot holding the early retries leaves the window, the
        // budget refills.
        tokio::time::advance(Duration::from_secs(6)).await;
        let granted = (0..20)
            .filter(|_| state.try_withdraw(Instant::now(), || first.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 10);
    }

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
