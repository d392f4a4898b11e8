//! Internal: the adaptive limit algorithms, pure (no I/O, no clock), so
//! they are tested with scripted RTT sequences.
//!
//! Both follow Netflix's concurrency-limits: the limiter reports one
//! [`Sample`] per finished call and the algorithm answers with the new limit.

use std::time::Duration;

use tokio::time::Instant;

/// What one finished call tells the algorithm.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// When the call started (its permit was granted).
    pub(crate) started: Instant,
    /// How long it took.
    pub(crate) rtt: Duration,
    /// Permits held when it started, itself included.
    pub(crate) in_flight: usize,
    /// The call failed (classified [`Outcome::Failure`](crate::classify::Outcome)).
    pub(crate) dropped: bool,
}

/// An adaptive limit algorithm.
pub(crate) trait Algorithm: Send + 'static {
    /// The current limit.
    fn limit(&self) -> usize;
    /// Takes one sample into account; returns the new limit.
    fn update(&mut self, sample: &Sample) -> usize;
}

/// Limits shared by both algorithms (validated by the builder:
/// `1 <= min <= initial <= max`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bounds {
    pub(crate) initial: usize,
    pub(crate) min: usize,
    pub(crate) max: usize,
}

/// How many times more slowly the long-term RTT average rises than falls.
const RISE_SLOWDOWN: f64 = 10.0;

/// An exponential moving average over about `window` samples (rising
/// [`RISE_SLOWDOWN`] times more slowly), seeded with the plain mean of the
/// first `warmup` samples.
#[derive(Clone, Debug)]
struct ExpAvg {
    value: f64,
    count: u32,
    warmup: u32,
    fall: f64,
    rise: f64,
}

impl ExpAvg {
    fn new(window: u32, warmup: u32) -> Self {
        let window = f64::from(window);
        ExpAvg {
            value: 0.0,
            count: 0,
            warmup,
            fall: 2.0 / (window + 1.0),
            rise: 2.0 / (window * RISE_SLOWDOWN + 1.0),
        }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.value += (sample - self.value) / f64::from(self.count);
        } else {
            let factor = if sample > self.value {
                self.rise
            } else {
                self.fall
            };
            self.value += (sample - self.value) * factor;
        }
        self.value
    }
}

/// Gradient2 tuning, validated by the builder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GradientConfig {
    /// Weight of each new estimate, in (0, 1].
    pub(crate) smoothing: f64,
    /// How much the limit may grow per sample while latency is flat (>= 1).
    pub(crate) queue_size: usize,
    /// Samples in the long-term RTT average (>= 1).
    pub(crate) long_window: u32,
}

impl Default for GradientConfig {
    fn default() -> Self {
        GradientConfig {
            smoothing: 0.1,
            queue_size: 1,
            long_window: 600,
        }
    }
}

/// Netflix's Gradient2: compares the latest RTT (short) with a slow
/// exponential average (long). While the short RTT is at or below the long
/// one, the limit grows by up to `queue_size` per sample; when it rises
/// above, the limit shrinks in proportion (at most halving per sample
/// before smoothing). No growth while fewer than half the permits are in
/// use: an idle client learns nothing about the server's capacity.
///
/// One change from Netflix's version: the long average rises
/// [`RISE_SLOWDOWN`] times more slowly than it falls. With a symmetric
/// average, steady queueing drags the baseline up behind the latency and
/// the limit creeps upward without end (under a pure queueing backend with
/// a knee at 20, from 20 to 85 in 20,000 calls); with the slow rise it
/// stays within a few permits of the knee, while a real, lasting latency
/// increase is still absorbed over a few thousand calls.
#[derive(Clone, Debug)]
pub(crate) struct Gradient2 {
    estimate: f64,
    bounds: Bounds,
    config: GradientConfig,
    long_rtt: ExpAvg,
}

impl Gradient2 {
    pub(crate) fn new(bounds: Bounds, config: GradientConfig) -> Self {
        Gradient2 {
            estimate: bounds.initial as f64,
            bounds,
            config,
            long_rtt: ExpAvg::new(config.long_window, 10),
        }
    }

    #[cfg(test)]
    fn long_rtt(&self) -> f64 {
        self.long_rtt.value
    }
}

impl Algorithm for Gradient2 {
    fn limit(&self) -> usize {
        self.estimate as usize
    }

    fn update(&mut self, sample: &Sample) -> usize {
        // Nanoseconds as f64; a zero RTT (a mocked instant service) counts
        // as one nanosecond so ratios stay finite.
        let short = (sample.rtt.as_nanos() as f64).max(1.0);
        let mut long = self.long_rtt.add(short);

        // After a long overload the average sits far above the present
        // latency: pull it down faster than the window alone would.
        if long / short > 2.0 {
            self.long_rtt.value *= 0.9;
            long = self.long_rtt.value;
        }

        // App-limited: too few calls to learn anything.
        if (sample.in_flight as f64) < self.estimate / 2.0 {
            return self.limit();
        }

        // A failure's RTT says nothing about queueing (it may be a fast
        // refusal): treat it as the steepest allowed gradient.
        let gradient = if sample.dropped {
            0.5
        } else {
            (long / short).clamp(0.5, 1.0)
        };
        let target = self.estimate * gradient + self.config.queue_size as f64;
        let next = self.estimate * (1.0 - self.config.smoothing) + target * self.config.smoothing;
        self.estimate = next.clamp(self.bounds.min as f64, self.bounds.max as f64);
        self.limit()
    }
}

/// AIMD tuning, validated by the builder.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AimdConfig {
    /// Factor applied to the limit on a failure, in (0, 1).
    pub(crate) backoff_ratio: f64,
    /// A call slower than this counts as a failure.
    pub(crate) timeout: Duration,
}

impl Default for AimdConfig {
    fn default() -> Self {
        AimdConfig {
            backoff_ratio: 0.5,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Additive increase, multiplicative decrease: +1 per successful call while
/// at least half the permits are in use; times `backoff_ratio` on a failure
/// or a call slower than `timeout`.
///
/// As in TCP, one congestion event backs off once: failures of calls that
/// started before the last decrease were sent at the old limit and are
/// ignored, so a burst of failures halves the limit rather than collapsing
/// it to the minimum.
#[derive(Clone, Debug)]
pub(crate) struct Aimd {
    limit: usize,
    bounds: Bounds,
    config: AimdConfig,
    last_decrease: Option<Instant>,
}

impl Aimd {
    pub(crate) fn new(bounds: Bounds, config: AimdConfig) -> Self {
        Aimd {
            limit: bounds.initial,
            bounds,
            config,
            last_decrease: None,
        }
    }
}

impl Algorithm for Aimd {
    fn limit(&self) -> usize {
        self.limit
    }

    fn update(&mut self, sample: &Sample) -> usize {
        if sample.dropped || sample.rtt > self.config.timeout {
            let stale = self.last_decrease.is_some_and(|at| sample.started < at);
            if !stale {
                let next = (self.limit as f64 * self.config.backoff_ratio) as usize;
                self.limit = next.max(self.bounds.min);
                self.last_decrease = Some(sample.started + sample.rtt);
            }
        } else if sample.in_flight.saturating_mul(2) >= self.limit {
            self.limit = (self.limit + 1).min(self.bounds.max);
        }
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn bounds(initial: usize, min: usize, max: usize) -> Bounds {
        Bounds { initial, min, max }
    }

    fn sample(t0: Instant, at_ms: u64, rtt_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample {
            started: t0 + MS * at_ms as u32,
            rtt: MS * rtt_ms as u32,
            in_flight,
            dropped,
        }
    }

    #[test]
    fn gradient_grows_while_latency_is_flat_and_busy() {
        let t0 = Instant::now();
        let mut g = Gradient2::new(bounds(10, 1, 100), GradientConfig::default());
        let mut last = g.limit();
        for i in 0..200 {
            let limit = g.update(&sample(t0, i, 10, g.limit(), false));
            assert!(limit >= last, "flat latency never shrinks the limit");
            last = limit;
        }
        assert!(last > 20, "grew from 10 to {last}");
    }

    #[test]
    fn gradient_does_not_grow_when_app_limited() {
        let t0 = Instant::now();
        let mut g = Gradient2::new(bounds(40, 1, 100), GradientConfig::default());
        for i in 0..500 {
            // 5 in flight is under half of 40.
            assert_eq!(g.update(&sample(t0, i, 10, 5, false)), 40);
        }
    }

    #[test]
    fn gradient_shrinks_when_latency_rises_and_is_bounded() {
        let t0 = Instant::now();
        let mut g = Gradient2::new(bounds(50, 5, 100), GradientConfig::default());
        for i in 0..100 {
            g.update(&sample(t0, i, 10, 50, false));
        }
        let before = g.limit();
        // Latency jumps 4x: the gradient is clamped at 0.5, so one sample
        // may cut at most smoothing * 50% of the limit.
        let after_one = g.update(&sample(t0, 100, 40, before, false));
        assert!(after_one < before);
        assert!(after_one as f64 >= before as f64 * (1.0 - 0.1 * 0.5) - 1.0);
        let mut limit = after_one;
        for i in 101..200 {
            limit = g.update(&sample(t0, i, 40, limit, false));
        }
        assert!(limit < before / 2, "{limit} vs {before}");
        assert!(limit >= 5, "never below min");
    }

    #[test]
    fn gradient_long_rtt_decays_fast_after_overload() {
        let t0 = Instant::now();
        let mut g = Gradient2::new(bounds(20, 1, 100), GradientConfig::default());
        for i in 0..2000 {
            g.update(&sample(t0, i, 100, 20, false));
        }
        assert!((g.long_rtt() - 100e6).abs() < 1e6);
        // Latency back to 10 ms: the long average would need thousands of
        // samples at the EMA rate alone; the decay rule gets it under 2x fast.
        for i in 0..100 {
            g.update(&sample(t0, 2000 + i, 10, 20, false));
        }
        assert!(g.long_rtt() < 20e6, "long rtt {}", g.long_rtt() / 1e6);
    }

    #[test]
    fn gradient_respects_max_and_failures_shrink() {
        let t0 = Instant::now();
        let mut g = Gradient2::new(bounds(10, 2, 15), GradientConfig::default());
        for i in 0..1000 {
            g.update(&sample(t0, i, 10, 15, false));
        }
        assert_eq!(g.limit(), 15);
        let mut limit = 15;
        for i in 0..100 {
            limit = g.update(&sample(t0, 1000 + i, 1, 15, true));
        }
        assert!(limit < 10, "fast failures must not grow the limit: {limit}");
    }

    /// A backend with `knee` workers and 10 ms of work per call, driven by
    /// more clients than it can serve: a call's RTT is its queueing plus
    /// service time. The limit settles near the knee.
    fn queueing_rtt(limit: usize, knee: usize) -> Duration {
        MS.mul_f64(10.0 * (limit as f64 / knee as f64).max(1.0))
    }

    /// Drives the algorithm through `calls` samples against a knee; returns
    /// the lowest and highest limit seen over the last half.
    fn drive(g: &mut Gradient2, t0: Instant, knee: usize, calls: u32) -> (usize, usize) {
        let (mut lo, mut hi) = (usize::MAX, 0);
        for i in 0..calls {
            let limit = g.limit();
            let limit = g.update(&Sample {
                started: t0 + MS * i,
                rtt: queueing_rtt(limit, knee),
                in_flight: limit,
                dropped: false,
            });
            if i >= calls / 2 {
                lo = lo.min(limit);
                hi = hi.max(limit);
            }
        }
        (lo, hi)
    }

    #[test]
    fn gradient_scripted_knee_and_recovery() {
        let t0 = Instant::now();
        let mut g = Gradient2::new(bounds(5, 1, 200), GradientConfig::default());
        let (lo, hi) = drive(&mut g, t0, 20, 10_000);
        assert!(lo >= 18 && hi <= 28, "knee 20: limit ranged {lo}..={hi}");
        // The backend degrades: its knee falls to 5.
        let (lo, hi) = drive(&mut g, t0, 5, 10_000);
        assert!(lo >= 4 && hi <= 10, "knee 5: limit ranged {lo}..={hi}");
        // And recovers beyond where it was.
        let (lo, hi) = drive(&mut g, t0, 40, 10_000);
        assert!(lo >= 38 && hi <= 55, "knee 40: limit ranged {lo}..={hi}");
    }

    #[test]
    fn aimd_increases_when_busy_only() {
        let t0 = Instant::now();
        let mut a = Aimd::new(bounds(10, 1, 12), AimdConfig::default());
        assert_eq!(
            a.update(&sample(t0, 0, 10, 2, false)),
            10,
            "idle: no growth"
        );
        assert_eq!(a.update(&sample(t0, 1, 10, 5, false)), 11);
        assert_eq!(a.update(&sample(t0, 2, 10, 6, false)), 12);
        assert_eq!(a.update(&sample(t0, 3, 10, 12, false)), 12, "capped at max");
    }

    #[test]
    fn aimd_halves_once_per_congestion_event() {
        let t0 = Instant::now();
        let mut a = Aimd::new(bounds(40, 2, 100), AimdConfig::default());
        // 40 calls started together at t=0 all fail at t=100ms.
        for _ in 0..40 {
            a.update(&sample(t0, 0, 100, 40, true));
        }
        assert_eq!(a.limit(), 20, "one event, one halving");
        // A call sent after the decrease that fails again halves again.
        assert_eq!(a.update(&sample(t0, 150, 10, 20, true)), 10);
        // Timeouts count as failures.
        assert_eq!(a.update(&sample(t0, 200, 6_000, 10, false)), 5);
        for i in 0..10 {
            a.update(&sample(t0, 7_000 + i, 10, 5, true));
        }
        assert_eq!(a.limit(), 2, "never below min");
    }
}
