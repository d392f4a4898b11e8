//! Backoff schedules: how long to wait before each retry.
//!
//! Pure arithmetic, no I/O and no runtime: [`Backoff::delay`] can be called
//! (and tested) anywhere.

use std::time::Duration;

/// The default cap on a single delay.
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(10);

/// How a computed delay is randomised, so that many clients that failed
/// together do not retry together.
///
/// With `d` the exponential delay for this retry (already capped by
/// [`Backoff::max_delay`]):
///
/// | jitter | delay |
/// |---|---|
/// | `None` | exactly `d` |
/// | `Full` (default) | uniform in `[0, d]` |
/// | `Equal` | uniform in `[d / 2, d]` |
/// | `Decorrelated` | uniform in `[base, 3 × previous delay]` (the previous delay counts as `base` before the first retry), capped by `max_delay`; the factor is not used |
///
/// These are the schemes from the AWS Architecture Blog's "Exponential
/// Backoff And Jitter"; `Full` spreads load best, `Equal` keeps a minimum
/// wait, `Decorrelated` grows from the previous actual delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// No randomness: the delays are exactly `base × factorⁿ`.
    None,
    /// Uniform between zero and the computed delay.
    #[default]
    Full,
    /// Half the computed delay, plus uniform up to the other half.
    Equal,
    /// Uniform between the base delay and three times the previous delay.
    Decorrelated,
}

/// An exponential backoff schedule: `base`, `base × factor`,
/// `base × factor²`, ..., each capped by `max_delay`, then randomised by
/// [`Jitter`].
///
/// Built with [`Backoff::exponential`] (factor 2, cap 10 s or `base` if
/// larger, [`Jitter::Full`]) or [`Backoff::constant`], then adjusted with
/// the chained setters. Values are checked when the
/// [`RetryLayer`](super::RetryLayer) is built, not here.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::retry::{Backoff, Jitter};
///
/// let backoff = Backoff::exponential(Duration::from_millis(100))
///     .factor(2.0)
///     .max_delay(Duration::from_millis(300))
///     .jitter(Jitter::None);
/// let prev = Duration::ZERO;
/// assert_eq!(backoff.delay(1, prev), Duration::from_millis(100));
/// assert_eq!(backoff.delay(2, prev), Duration::from_millis(200));
/// assert_eq!(backoff.delay(3, prev), Duration::from_millis(300)); // capped
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub(crate) base: Duration,
    pub(crate) factor: f64,
    pub(crate) max_delay: Duration,
    pub(crate) jitter: Jitter,
}

impl Default for Backoff {
    /// `Backoff::exponential(100 ms)`: factor 2, cap 10 s, full jitter.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Exponential backoff starting at `base`: factor 2.0, `max_delay`
    /// 10 s (or `base`, if larger), [`Jitter::Full`].
    ///
    /// A zero `base` retries immediately.
    pub fn exponential(base: Duration) -> Self {
        Backoff {
            base,
            factor: 2.0,
            max_delay: DEFAULT_MAX_DELAY.max(base),
            jitter: Jitter::Full,
        }
    }

    /// The same delay before every retry (factor 1.0), without jitter.
    /// `Duration::MAX` waits "never" (or until the layer's deadline).
    pub fn constant(delay: Duration) -> Self {
        Backoff {
            base: delay,
            factor: 1.0,
            max_delay: delay,
            jitter: Jitter::None,
        }
    }

    /// How much each delay grows over the previous one. Must be finite and
    /// at least 1.0 (checked by the layer's `build()`, field
    /// `backoff.factor`).
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The longest single delay, and the cap on a server's `Retry-After`
    /// unless [`RetryLayerBuilder::max_retry_after`](super::RetryLayerBuilder::max_retry_after)
    /// sets one of its own. Must be at least the base delay (checked by
    /// `build()`, field `backoff.max_delay`). `Duration::MAX` means no
    /// limit: a server's `Retry-After` is then waited in full, however long
    /// (a delay the clock cannot hold waits "never", or until the deadline).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// How delays are randomised; see [`Jitter`].
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The base (first) delay.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The delay before retry number `retry` (1 for the first retry).
    ///
    /// `prev` is the delay actually waited before the previous retry (zero
    /// before the first, which counts as `base`); only
    /// [`Jitter::Decorrelated`] uses it. Never
    /// panics and never exceeds `max_delay`, whatever the configuration.
    pub fn delay(&self, retry: u32, prev: Duration) -> Duration {
        let cap = self.max_delay;
        match self.jitter {
            Jitter::None => self.exponential_delay(retry),
            Jitter::Full => scale(self.exponential_delay(retry), fastrand::f64()),
            Jitter::Equal => {
                let d = self.exponential_delay(retry);
                let half = d / 2;
                half + scale(d - half, fastrand::f64())
            }
            Jitter::Decorrelated => {
                let low = self.base.min(cap);
                // Before the first retry there is no previous delay: start from base.
                let prev = if prev.is_zero() { self.base } else { prev };
                let high = prev.saturating_mul(3).max(low).min(cap);
                low + scale(high - low, fastrand::f64())
            }
        }
    }

    /// `base × factor^(retry - 1)`, capped by `max_delay`.
    fn exponential_delay(&self, retry: u32) -> Duration {
        let cap = self.max_delay;
        let exp = retry.saturating_sub(1).min(i32::MAX as u32) as i32;
        let secs = self.base.as_secs_f64() * self.factor.powi(exp);
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => d.min(cap),
            // Overflow (or a NaN factor, which `build()` refuses anyway).
            Err(_) => cap,
        }
    }
}

/// `d × fraction` for a fraction in `[0, 1)`, without float overflow.
fn scale(d: Duration, fraction: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * fraction)
        .unwrap_or(d)
        .min(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exponential_without_jitter() {
        let b = Backoff::exponential(100 * MS).jitter(Jitter::None);
        let got: Vec<_> = (1..=5).map(|n| b.delay(n, Duration::ZERO)).collect();
        assert_eq!(got, [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS]);
    }

    #[test]
    fn huge_retry_numbers_saturate_at_the_cap() {
        let b = Backoff::exponential(100 * MS)
            .factor(10.0)
            .jitter(Jitter::None);
        assert_eq!(b.delay(u32::MAX, Duration::ZERO), Duration::from_secs(10));
        assert_eq!(b.delay(400, Duration::ZERO), Duration::from_secs(10));
    }

    #[test]
    fn constant_is_constant() {
        let b = Backoff::constant(50 * MS);
        for n in 1..10 {
            assert_eq!(b.delay(n, Duration::ZERO), 50 * MS);
        }
    }

    #[test]
    fn jitter_bounds() {
        let full = Backoff::exponential(100 * MS).jitter(Jitter::Full);
        let equal = Backoff::exponential(100 * MS).jitter(Jitter::Equal);
        let deco = Backoff::exponential(100 * MS)
            .max_delay(Duration::from_secs(1))
            .jitter(Jitter::Decorrelated);
        let mut full_spread = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            let d = full.delay(3, Duration::ZERO);
            assert!(d <= 400 * MS, "{d:?}");
            full_spread = (full_spread.0.min(d), full_spread.1.max(d));
            let d = equal.delay(3, Duration::ZERO);
            assert!(d >= 200 * MS && d <= 400 * MS, "{d:?}");
            let d = deco.delay(2, 250 * MS);
            assert!(d >= 100 * MS && d <= 750 * MS, "{d:?}");
            let d = deco.delay(5, 900 * MS);
            assert!(d >= 100 * MS && d <= Duration::from_secs(1), "{d:?}");
        }
        // Full jitter really spreads: not stuck at either end.
        assert!(full_spread.0 < 100 * MS && full_spread.1 > 300 * MS);
    }
}
