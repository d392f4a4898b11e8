//! The lifetime counters, striped across cache lines so that service
//! clones on different threads never write the same line.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::classify::Outcome;
use crate::sync::Padded;

/// One stripe's counters.
#[derive(Default)]
struct Stripe {
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    slow: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
}

impl Stripe {
    fn all(&self) -> [&AtomicU64; 6] {
        [
            &self.successes,
            &self.failures,
            &self.ignored,
            &self.slow,
            &self.rejected,
            &self.cancelled,
        ]
    }
}

/// The sums over every stripe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) ignored: u64,
    pub(crate) slow: u64,
    pub(crate) rejected: u64,
    pub(crate) cancelled: u64,
}

/// Lifetime counters in a power-of-two number of stripes.
pub(crate) struct Counters {
    stripes: Box<[Padded<Stripe>]>,
}

impl Counters {
    /// `stripes` must be a power of two.
    pub(crate) fn new(stripes: usize) -> Self {
        debug_assert!(stripes.is_power_of_two());
        Counters {
            stripes: (0..stripes).map(|_| Padded(Stripe::default())).collect(),
        }
    }

    /// The number of stripes (a power of two).
    pub(crate) fn stripes(&self) -> usize {
        self.stripes.len()
    }

    #[inline]
    fn stripe(&self, stripe: usize) -> &Stripe {
        // The stripe count is a power of two: mask, don't divide.
        &self.stripes[stripe & (self.stripes.len() - 1)]
    }

    /// Counts one classified call, and whether it was slow.
    #[inline]
    pub(crate) fn outcome(&self, stripe: usize, outcome: Outcome, slow: bool) {
        let c = self.stripe(stripe);
        match outcome {
            Outcome::Success => c.successes.fetch_add(1, Ordering::Relaxed),
            Outcome::Failure => c.failures.fetch_add(1, Ordering::Relaxed),
            Outcome::Ignored => c.ignored.fetch_add(1, Ordering::Relaxed),
        };
        if slow {
            c.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one call failed fast.
    #[inline]
    pub(crate) fn rejected(&self, stripe: usize) {
        self.stripe(stripe).rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one call whose future was dropped before it completed.
    #[inline]
    pub(crate) fn cancelled(&self, stripe: usize) {
        self.stripe(stripe)
            .cancelled
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The sums over every stripe.
    pub(crate) fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for c in self.stripes.iter() {
            t.successes += c.successes.load(Ordering::Relaxed);
            t.failures += c.failures.load(Ordering::Relaxed);
            t.ignored += c.ignored.load(Ordering::Relaxed);
            t.slow += c.slow.load(Ordering::Relaxed);
            t.rejected += c.rejected.load(Ordering::Relaxed);
            t.cancelled += c.cancelled.load(Ordering::Relaxed);
        }
        t
    }

    /// Every counter back to zero.
    pub(crate) fn reset(&self) {
        for c in self.stripes.iter() {
            for a in c.all() {
                a.store(0, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_sum_and_reset() {
        let c = Counters::new(4);
        c.outcome(0, Outcome::Success, false);
        c.outcome(5, Outcome::Failure, true); // stripe 5 & 3 = 1
        c.outcome(2, Outcome::Ignored, false);
        c.rejected(3);
        c.cancelled(3);
        let t = c.totals();
        assert_eq!(
            t,
            Totals {
                successes: 1,
                failures: 1,
                ignored: 1,
                slow: 1,
                rejected: 1,
                cancelled: 1
            }
        );
        c.reset();
        assert_eq!(c.totals(), Totals::default());
    }
}
