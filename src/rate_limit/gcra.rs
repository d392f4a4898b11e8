//! The generic cell rate algorithm: a quota as an emission interval and a
//! burst tolerance, and one cell's state as one word, its *theoretical
//! arrival time* (TAT).
//!
//! Times are nanoseconds since the limiter's origin. A call at `now`
//! conforms when `max(tat, now) - now <= tolerance`; it then moves the TAT
//! to `max(tat, now) + interval`. A TAT at or before `now` is the same as
//! a fresh cell (the whole burst is available), which is why idle keys can
//! be forgotten without changing any decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A validated quota in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Time between two cells at the steady rate (`period / count`), at
    /// least 1 ns.
    interval: u64,
    /// How far ahead of `now` the TAT may run: `interval * (burst - 1)`.
    tolerance: u64,
}

/// What [`Gcra::decide`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Take the cell: the new TAT, and how long to wait before the call
    /// goes (zero when it conforms now).
    Take { tat: u64, wait: u64 },
    /// The call would have to wait this long, more than allowed.
    Refuse { wait: u64 },
}

impl Gcra {
    /// `count` calls per `period`, `burst` of them at once (both at least 1,
    /// checked by the builder).
    pub(crate) fn new(count: u32, period: Duration, burst: u32) -> Self {
        let period = period.as_nanos().min(u128::from(u64::MAX));
        let interval = (period / u128::from(count.max(1))).max(1) as u64;
        let tolerance = interval.saturating_mul(u64::from(burst.max(1) - 1));
        Gcra {
            interval,
            tolerance,
        }
    }

    /// The emission interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// The decision for a call at `now` on a cell whose TAT is `tat`,
    /// waiting at most `max_wait` nanoseconds.
    #[inline]
    pub(crate) fn decide(&self, tat: u64, now: u64, max_wait: u64) -> Decision {
        let base = tat.max(now);
        let wait = (base - now).saturating_sub(self.tolerance);
        if wait > max_wait {
            Decision::Refuse { wait }
        } else {
            Decision::Take {
                tat: base.saturating_add(self.interval),
                wait,
            }
        }
    }

    /// Gives back a cell taken at `taken` (the TAT it set), if no call took
    /// one after it: a waiter that was cancelled frees its place.
    pub(crate) fn give_back(&self, cell: &AtomicU64, taken: u64) {
        let _ = cell.compare_exchange(
            taken,
            taken - self.interval.min(taken),
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Decides and, for [`Decision::Take`], moves the cell's TAT: one CAS
    /// loop on one word, lock-free.
    #[inline]
    pub(crate) fn acquire(&self, cell: &AtomicU64, now: u64, max_wait: u64) -> Decision {
        let mut tat = cell.load(Ordering::Acquire);
        loop {
            let decision = self.decide(tat, now, max_wait);
            let Decision::Take { tat: next, .. } = decision else {
                return decision;
            };
            match cell.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return decision,
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_burst_then_the_steady_rate() {
        // 10 per second, burst 3: interval 100 ms, tolerance 200 ms.
        let g = Gcra::new(10, Duration::from_secs(1), 3);
        let cell = AtomicU64::new(0);
        for _ in 0..3 {
            assert!(matches!(
                g.acquire(&cell, 0, 0),
                Decision::Take { wait: 0, .. }
            ));
        }
        assert_eq!(g.acquire(&cell, 0, 0), Decision::Refuse { wait: 100 * MS });
        assert_eq!(g.acquire(&cell, 99 * MS, 0), Decision::Refuse { wait: MS });
        assert!(matches!(
            g.acquire(&cell, 100 * MS, 0),
            Decision::Take { .. }
        ));
        assert_eq!(
            g.acquire(&cell, 100 * MS, 0),
            Decision::Refuse { wait: 100 * MS }
        );
        // Waiting is queueing: each waiter gets the next free slot.
        assert_eq!(
            g.acquire(&cell, 100 * MS, u64::MAX),
            Decision::Take {
                tat: 500 * MS,
                wait: 100 * MS
            }
        );
        assert_eq!(
            g.acquire(&cell, 100 * MS, u64::MAX),
            Decision::Take {
                tat: 600 * MS,
                wait: 200 * MS
            }
        );
        // A cancelled last waiter gives its slot back; an earlier one cannot.
        g.give_back(&cell, 500 * MS);
        assert_eq!(cell.load(Ordering::Relaxed), 600 * MS);
        g.give_back(&cell, 600 * MS);
        assert_eq!(cell.load(Ordering::Relaxed), 500 * MS);
    }

    #[test]
    fn an_idle_cell_is_a_fresh_one() {
        let g = Gcra::new(5, Duration::from_secs(1), 5);
        // Long after, the old TAT changes nothing.
        assert_eq!(
            g.decide(1_200 * MS, 9_000 * MS, 0),
            g.decide(0, 9_000 * MS, 0)
        );
    }

    #[test]
    fn extreme_quotas_do_not_overflow() {
        let g = Gcra::new(u32::MAX, Duration::from_nanos(1), u32::MAX);
        assert_eq!(g.interval(), Duration::from_nanos(1));
        let g = Gcra::new(1, Duration::MAX, 1);
        assert!(matches!(g.decide(u64::MAX, 0, 0), Decision::Refuse { .. }));
        assert!(matches!(g.decide(0, u64::MAX, 0), Decision::Take { .. }));
    }
}
