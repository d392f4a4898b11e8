//! The latency estimator behind [`percentile`](super::HedgeLayerBuilder::percentile)
//! mode: pure data, no clock of its own (the caller passes `now`), so it is
//! tested without a runtime.
//!
//! - [`Histogram`]: counts of latencies in log-scale buckets, four per
//!   power of two of microseconds (each bucket at most 25 % wide, 12.5 %
//!   above 8 µs), from 1 µs to about 12 days in 160 `u32`s.
//! - [`Tracker`]: two histograms, the current period's and the previous
//!   one's; a period is half the layer's `window`. Estimates read both,
//!   so memory is bounded and a sample is forgotten one to two periods
//!   after it was recorded: the estimate follows a service that slows
//!   down or speeds up within a window.
//!
//! A percentile is interpolated linearly within the bucket it falls in
//! (as Prometheus' `histogram_quantile` does), so it is within one bucket
//! width (at most 12.5 % above 8 µs) of the true value, and not biased
//! upwards by the bucket's width.

use std::time::Duration;

use tokio::time::Instant;

/// Sub-buckets per power of two.
const SUB: u64 = 4;
/// Bucket count: microseconds up to 2^40 (about 12 days); longer is clamped.
pub(crate) const BUCKETS: usize = 160;

/// The bucket holding `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < SUB {
        return us as usize;
    }
    let e = u64::from(63 - us.leading_zeros()); // >= 2
    let sub = (us >> (e - 2)) & (SUB - 1);
    (((e - 1) * SUB + sub) as usize).min(BUCKETS - 1)
}

/// The exclusive upper edge of bucket `idx`, in microseconds.
fn upper(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < SUB {
        return idx + 1;
    }
    let e = idx / SUB + 1;
    let sub = idx % SUB;
    (SUB + sub + 1) << (e - 2)
}

/// Latency counts in log-scale buckets.
#[derive(Clone, Debug)]
pub(crate) struct Histogram {
    counts: [u32; BUCKETS],
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: [0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    /// Counts one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let c = &mut self.counts[bucket(us)];
        *c = c.saturating_add(1);
        self.total += 1;
    }

    /// Samples recorded.
    #[cfg(test)]
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    fn clear(&mut self) {
        *self = Histogram::default();
    }
}

/// The `percentile` (in percent) of the samples in `parts` together,
/// interpolated within its bucket; `None` with fewer than `min_samples`
/// samples.
pub(crate) fn percentile(
    parts: &[&Histogram],
    percentile: f64,
    min_samples: u64,
) -> Option<Duration> {
    let total: u64 = parts.iter().map(|h| h.total).sum();
    if total == 0 || total < min_samples {
        return None;
    }
    // The smallest rank r (1-based) with r >= p% of total.
    let rank = ((percentile / 100.0) * total as f64).ceil().max(1.0) as u64;
    let mut seen = 0u64;
    for idx in 0..BUCKETS {
        let count = parts.iter().map(|h| u64::from(h.counts[idx])).sum::<u64>();
        if seen + count >= rank {
            // The rank-th sample, assuming the bucket's samples are spread
            // evenly over it.
            let lo = if idx == 0 { 0 } else { upper(idx - 1) } as f64;
            let hi = upper(idx) as f64;
            let frac = (rank - seen) as f64 / count as f64;
            return Some(Duration::from_nanos(
                ((lo + (hi - lo) * frac) * 1_000.0) as u64,
            ));
        }
        seen += count;
    }
    Some(Duration::from_micros(upper(BUCKETS - 1)))
}

/// Two rotating histograms: the current period's and the previous one's.
#[derive(Debug)]
pub(crate) struct Tracker {
    period: Duration,
    started: Option<Instant>,
    current: Histogram,
    previous: Histogram,
}

impl Tracker {
    /// A tracker that forgets samples after one to two `period`s.
    pub(crate) fn new(period: Duration) -> Self {
        Tracker {
            period: period.max(Duration::from_millis(1)),
            started: None,
            current: Histogram::default(),
            previous: Histogram::default(),
        }
    }

    /// Moves to the period holding `now`; returns whether it rotated.
    fn rotate(&mut self, now: Instant) -> bool {
        let started = *self.started.get_or_insert(now);
        let age = now.saturating_duration_since(started);
        if age < self.period {
            return false;
        }
        if age < self.period * 2 {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        } else {
            // Idle for more than a period: everything is stale.
            self.current.clear();
            self.previous.clear();
        }
        self.started = Some(now);
        true
    }

    /// Records one latency measured at `now`; returns whether the periods
    /// rotated first.
    pub(crate) fn record(&mut self, now: Instant, latency: Duration) -> bool {
        let rotated = self.rotate(now);
        self.current.record(latency);
        rotated
    }

    /// The `p`th percentile of the samples of the current and the previous
    /// period, or `None` with fewer than `min_samples` of them.
    pub(crate) fn percentile(&self, p: f64, min_samples: u64) -> Option<Duration> {
        percentile(&[&self.current, &self.previous], p, min_samples)
    }

    /// Samples the estimate reads.
    #[cfg(test)]
    pub(crate) fn samples(&self) -> u64 {
        self.current.total() + self.previous.total()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for us in 0..100_000u64 {
            let b = bucket(us);
            assert!(b >= last, "bucket({us}) went back");
            assert!(us < upper(b), "{us} not below the upper edge of its bucket");
            if b > 0 {
                assert!(us >= upper(b - 1), "{us} belongs to an earlier bucket");
            }
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        // Width: at most a quarter of the lower edge above 8 µs.
        for idx in 8..BUCKETS {
            let (lo, hi) = (upper(idx - 1), upper(idx));
            assert!((hi - lo) * 4 <= lo, "bucket {idx}: {lo}..{hi}");
        }
    }

    #[test]
    fn percentile_is_within_a_bucket_of_the_true_value() {
        let mut h = Histogram::default();
        for _ in 0..98 {
            h.record(ms(1));
        }
        for _ in 0..2 {
            h.record(ms(100));
        }
        let p50 = percentile(&[&h], 50.0, 1).unwrap();
        assert!(p50 >= ms(1) * 7 / 8 && p50 <= ms(1) * 9 / 8, "{p50:?}");
        let p98 = percentile(&[&h], 98.0, 1).unwrap();
        assert!(p98 <= ms(2), "{p98:?}");
        let p99 = percentile(&[&h], 99.0, 1).unwrap();
        assert!(p99 >= ms(100) * 7 / 8 && p99 <= ms(125), "{p99:?}");
        // Interpolated: the lower of two samples in a bucket sits halfway.
        let p100 = percentile(&[&h], 100.0, 1).unwrap();
        assert!(p99 < p100, "{p99:?} {p100:?}");
        assert_eq!(percentile(&[&h], 99.0, 101), None);
        assert_eq!(percentile(&[&Histogram::default()], 50.0, 0), None);
    }

    #[test]
    fn tracker_forgets_after_two_periods() {
        let t0 = Instant::now();
        let mut t = Tracker::new(ms(100));
        for _ in 0..10 {
            t.record(t0, ms(50));
        }
        assert_eq!(t.samples(), 10);
        // Next period: old samples still count.
        assert!(t.record(t0 + ms(150), ms(5)));
        assert_eq!(t.samples(), 11);
        let p = t.percentile(50.0, 1).unwrap();
        assert!(p >= ms(50), "{p:?}");
        // One more period: the 50 ms samples are gone.
        for _ in 0..10 {
            t.record(t0 + ms(260), ms(5));
        }
        assert_eq!(t.samples(), 11);
        let p = t.percentile(99.0, 1).unwrap();
        assert!(p < ms(7), "{p:?}");
        // A long idle gap forgets everything.
        t.record(t0 + ms(10_000), ms(1));
        assert_eq!(t.samples(), 1);
    }
}
