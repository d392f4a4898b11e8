//! Sliding windows for the rate model: the last N calls, or the calls of
//! the last D of time.
//!
//! Both windows are lock-free. The count window keeps one byte per call in a
//! ring and three counters that always equal the ring's contents once every
//! writer is done (each slot change adjusts the counters by exactly what it
//! swapped out). The time window keeps, per stripe, a ring of time buckets,
//! so concurrent recorders on different threads touch different cache
//! lines.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::Padded;

/// The kind and size of the sliding window the rate model judges.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::circuit_breaker::Window;
///
/// let by_count = Window::Count(100); // the last 100 calls
/// let by_time = Window::Time(Duration::from_secs(60)); // the calls of the last minute
/// assert_ne!(by_count, by_time);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last `n` calls with a verdict (successes and failures; ignored
    /// calls are not counted). `1 ..= 1_000_000`.
    Count(usize),
    /// The calls that completed during the last `d` (at least 1 ms). The
    /// window moves in steps of `d / 20`: a call leaves it between
    /// `d - d/20` and `d` after it completed.
    Time(Duration),
}

/// Largest [`Window::Count`] accepted.
pub(crate) const MAX_COUNT: usize = 1_000_000;
/// Smallest [`Window::Time`] accepted.
pub(crate) const MIN_TIME: Duration = Duration::from_millis(1);
/// Number of time buckets in a [`Window::Time`].
pub(crate) const TIME_BUCKETS: u64 = 20;

/// What a window holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

const EMPTY: u8 = 0;
const USED: u8 = 1;
const FAIL: u8 = 2;
const SLOW: u8 = 4;

fn slot_value(failure: bool, slow: bool) -> u8 {
    USED | if failure { FAIL } else { 0 } | if slow { SLOW } else { 0 }
}

#[derive(Default)]
struct Counters {
    total: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

impl Counters {
    fn load(&self) -> Counts {
        // Counters can dip below zero for an instant while a reset races a
        // recorder (they are adjusted with wrapping arithmetic); read such a
        // dip as zero.
        let read = |a: &AtomicU64| {
            let v = a.load(Ordering::Acquire);
            if v > u64::MAX / 2 {
                0
            } else {
                v
            }
        };
        Counts {
            total: read(&self.total),
            failures: read(&self.failures),
            slow: read(&self.slow),
        }
    }

    /// Adjusts the counters for a slot that changed from `old` to `new`.
    fn apply(&self, old: u8, new: u8) {
        let delta = |a: &AtomicU64, bit: u8| {
            match (old & bit != 0, new & bit != 0) {
                (false, true) => {
                    a.fetch_add(1, Ordering::AcqRel);
                }
                (true, false) => {
                    a.fetch_sub(1, Ordering::AcqRel);
                }
                _ => {}
            };
        };
        delta(&self.total, USED);
        delta(&self.failures, FAIL);
        delta(&self.slow, SLOW);
    }
}

/// The last `n` calls.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    head: Padded<AtomicU64>,
    counters: Padded<Counters>,
}

impl CountWindow {
    pub(crate) fn new(n: usize) -> Self {
        CountWindow {
            slots: (0..n).map(|_| AtomicU8::new(EMPTY)).collect(),
            head: Padded(AtomicU64::new(0)),
            counters: Padded(Counters::default()),
        }
    }

    /// Records one call; returns the window's contents afterwards, or
    /// `None` when the call cannot have changed the verdict (a fast success
    /// into a full window that holds nothing but fast successes: writing it
    /// would replace a fast success with a fast success).
    pub(crate) fn record(&self, failure: bool, slow: bool) -> Option<Counts> {
        let n = self.slots.len() as u64;
        if !failure && !slow {
            let c = self.counters.load();
            if c.total == n && c.failures == 0 && c.slow == 0 {
                return None;
            }
        }
        let i = self.head.fetch_add(1, Ordering::Relaxed) % n;
        let new = slot_value(failure, slow);
        let old = self.slots[i as usize].swap(new, Ordering::AcqRel);
        self.counters.apply(old, new);
        Some(self.counters.load())
    }

    pub(crate) fn counts(&self) -> Counts {
        self.counters.load()
    }

    pub(crate) fn reset(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(EMPTY, Ordering::AcqRel);
            self.counters.apply(old, EMPTY);
        }
    }
}

const NO_SLICE: u64 = u64::MAX;
const ROTATING: u64 = u64::MAX - 1;

#[derive(Default)]
struct Bucket {
    /// The time slice this bucket counts, `NO_SLICE` or `ROTATING`.
    slice: AtomicU64,
    total: AtomicU64,
    failures: AtomicU64,
    slow: AtomicU64,
}

/// The calls of the last `d`, in [`TIME_BUCKETS`] buckets per stripe.
pub(crate) struct TimeWindow {
    origin: Instant,
    width_ns: u64,
    stripes: Box<[Padded<Box<[Bucket]>>]>,
    /// 1 + the slice of the latest failure or slow call (0: none yet).
    last_bad: Padded<AtomicU64>,
}

impl TimeWindow {
    pub(crate) fn new(d: Duration, stripes: usize, origin: Instant) -> Self {
        let width_ns =
            (d.as_nanos() / u128::from(TIME_BUCKETS)).clamp(1, u128::from(u64::MAX)) as u64;
        let stripes = (0..stripes)
            .map(|_| {
                Padded(
                    (0..TIME_BUCKETS)
                        .map(|_| Bucket {
                            slice: AtomicU64::new(NO_SLICE),
                            ..Bucket::default()
                        })
                        .collect(),
                )
            })
            .collect();
        TimeWindow {
            origin,
            width_ns,
            stripes,
            last_bad: Padded(AtomicU64::new(0)),
        }
    }

    fn slice(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.origin).as_nanos();
        (ns / u128::from(self.width_ns)).min(u128::from(ROTATING - 1)) as u64
    }

    /// Records one call that completed at `now` through `stripe`; returns
    /// the window's contents afterwards, or `None` when the window holds no
    /// failure and no slow call (the verdict cannot be "open").
    pub(crate) fn record(
        &self,
        stripe: usize,
        now: Instant,
        failure: bool,
        slow: bool,
    ) -> Option<Counts> {
        let t = self.slice(now);
        // `stripes.len()` is a power of two (see `core::default_stripes`).
        let buckets = &self.stripes[stripe & (self.stripes.len() - 1)].0;
        let b = &buckets[(t % TIME_BUCKETS) as usize];
        loop {
            let cur = b.slice.load(Ordering::Acquire);
            if cur == t {
                break;
            }
            if cur == ROTATING {
                std::hint::spin_loop();
                continue;
            }
            if cur != NO_SLICE && cur > t {
                // A straggler from a slice this bucket has already moved
                // past: the call is older than the window.
                return None;
            }
            if b.slice
                .compare_exchange(cur, ROTATING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                b.total.store(0, Ordering::Relaxed);
                b.failures.store(0, Ordering::Relaxed);
                b.slow.store(0, Ordering::Relaxed);
                b.slice.store(t, Ordering::Release);
                break;
            }
        }
        b.total.fetch_add(1, Ordering::AcqRel);
        if failure {
            b.failures.fetch_add(1, Ordering::AcqRel);
        }
        if slow {
            b.slow.fetch_add(1, Ordering::AcqRel);
        }
        if failure || slow {
            self.last_bad.fetch_max(t + 1, Ordering::AcqRel);
        }
        let bad = self.last_bad.load(Ordering::Acquire);
        if bad == 0 || t + 1 - bad.min(t + 1) >= TIME_BUCKETS {
            return None;
        }
        Some(self.counts_at_slice(t))
    }

    fn counts_at_slice(&self, t: u64) -> Counts {
        let mut c = Counts::default();
        for stripe in self.stripes.iter() {
            for b in stripe.0.iter() {
                let s = b.slice.load(Ordering::Acquire);
                if s >= ROTATING || s > t || t - s >= TIME_BUCKETS {
                    continue;
                }
                c.total += b.total.load(Ordering::Acquire);
                c.failures += b.failures.load(Ordering::Acquire);
                c.slow += b.slow.load(Ordering::Acquire);
            }
        }
        c
    }

    pub(crate) fn counts(&self, now: Instant) -> Counts {
        self.counts_at_slice(self.slice(now))
    }

    pub(crate) fn reset(&self) {
        for stripe in self.stripes.iter() {
            for b in stripe.0.iter() {
                loop {
                    let cur = b.slice.load(Ordering::Acquire);
                    if cur == ROTATING {
                        std::hint::spin_loop();
                        continue;
                    }
                    if b.slice
                        .compare_exchange(cur, NO_SLICE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        break;
                    }
                }
            }
        }
        self.last_bad.store(0, Ordering::Release);
    }
}

/// The window of a rate-model breaker.
pub(crate) enum RateWindow {
    Count(CountWindow),
    Time(TimeWindow),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_window_slides() {
        let w = CountWindow::new(4);
        assert_eq!(
            w.record(true, false).unwrap(),
            Counts {
                total: 1,
                failures: 1,
                slow: 0
            }
        );
        w.record(false, true);
        w.record(false, false);
        let c = w.record(false, false).unwrap();
        assert_eq!(
            c,
            Counts {
                total: 4,
                failures: 1,
                slow: 1
            }
        );
        // The fifth call evicts the first (the failure).
        let c = w.record(false, false).unwrap();
        assert_eq!(
            c,
            Counts {
                total: 4,
                failures: 0,
                slow: 1
            }
        );
        // The sixth evicts the slow one; afterwards the window is all fast
        // successes and further successes need no bookkeeping.
        assert_eq!(w.record(false, false).unwrap().slow, 0);
        assert_eq!(w.record(false, false), None);
        assert_eq!(w.record(true, false).unwrap().failures, 1);
        w.reset();
        assert_eq!(w.counts(), Counts::default());
    }

    #[test]
    fn time_window_ages_out() {
        let t0 = Instant::now();
        let w = TimeWindow::new(Duration::from_secs(20), 2, t0);
        assert_eq!(
            w.record(0, t0, true, false).unwrap(),
            Counts {
                total: 1,
                failures: 1,
                slow: 0
            }
        );
        let c = w
            .record(1, t0 + Duration::from_secs(10), false, false)
            .unwrap();
        assert_eq!(
            c,
            Counts {
                total: 2,
                failures: 1,
                slow: 0
            }
        );
        // 20 s later the failure has left; the success from t0 + 10 s stays.
        assert_eq!(
            w.counts(t0 + Duration::from_secs(20)),
            Counts {
                total: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(
            w.record(0, t0 + Duration::from_secs(20), false, false),
            None
        );
        assert_eq!(w.counts(t0 + Duration::from_secs(41)), Counts::default());
        w.record(0, t0 + Duration::from_secs(41), false, true);
        w.reset();
        assert_eq!(w.counts(t0 + Duration::from_secs(41)), Counts::default());
    }
}
