//! The state a [`ChaosLayer`](super::ChaosLayer), its services and its
//! [`ChaosHandle`](super::ChaosHandle) share: the on/off switch and rates
//! packed in one word, the call counter, the seed, and the counts behind
//! [`ChaosStats`].
//!
//! # One word on the hot path
//!
//! Whether to inject at all, and the three rates, live in one `AtomicU64`:
//! bit 63 says "active" (switched on *and* some rate above zero), and three
//! 21-bit fields hold the cumulative thresholds of the error, latency and
//! substitute rates in units of 2^-20. A call reads that word once
//! (relaxed): when the bit is clear it calls the inner service and that is
//! all; when set, the thresholds it read are a consistent set even while
//! the handle changes them.
//!
//! # The draw
//!
//! A call seen while active takes the next index from a counter and hashes
//! it with the seed (the splitmix64 finaliser of `seed + index * golden`):
//! the top 20 bits, against the thresholds, pick the fault. The fault of
//! call `i` is a pure function of the seed, `i` and the rates: no lock, no
//! shared generator state but the counter, and the same faults on a rerun.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::error::check;
use crate::sync::{lock, Padded};
use crate::trace::record;
use crate::ConfigError;

pub(crate) const COMPONENT: &str = "chaos";

const FRAC_BITS: u32 = 20;
const ONE: u64 = 1 << FRAC_BITS;
const FIELD_BITS: u32 = FRAC_BITS + 1;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
pub(crate) const ACTIVE: u64 = 1 << 63;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The share of calls that get each fault, while the layer is on.
///
/// Each rate is in `0.0..=1.0` and together they are at most `1.0`: one
/// draw per call picks at most one fault. Rates are kept to the nearest
/// 2^-20 (about one in a million).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ChaosRates {
    /// Calls that fail with [`Injected`](super::Injected) without
    /// reaching the inner service.
    pub error: f64,
    /// Calls delayed by the configured latency before the inner service's
    /// future is polled.
    pub latency: f64,
    /// Calls answered with the substituted response without reaching the
    /// inner service.
    pub substitute: f64,
}

impl ChaosRates {
    /// Checks every rate, naming the field out of range.
    pub(crate) fn validate(&self, has_substitute: bool) -> Result<(), ConfigError> {
        check::in_range(COMPONENT, "error_rate", self.error, 0.0, 1.0)?;
        check::in_range(COMPONENT, "latency_rate", self.latency, 0.0, 1.0)?;
        check::in_range(COMPONENT, "substitute_rate", self.substitute, 0.0, 1.0)?;
        if self.substitute > 0.0 && !has_substitute {
            return Err(ConfigError::new(
                COMPONENT,
                "substitute_rate",
                format!("{:?}", self.substitute),
                "must be 0 without a substituted response (set one with ChaosLayerBuilder::substitute)",
            ));
        }
        let sum = self.error + self.latency + self.substitute;
        if sum > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                COMPONENT,
                "rates",
                format!("{sum:?}"),
                "error_rate + latency_rate + substitute_rate must be at most 1.0",
            ));
        }
        Ok(())
    }

    /// The packed cumulative thresholds (without the active bit).
    fn thresholds(&self) -> u64 {
        let units = |r: f64| ((r * ONE as f64).round() as u64).min(ONE);
        let err = units(self.error);
        let lat = units(self.error + self.latency).max(err);
        let all = units(self.error + self.latency + self.substitute).max(lat);
        err | (lat << FIELD_BITS) | (all << (2 * FIELD_BITS))
    }
}

/// What one call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    Error,
    Latency,
    Substitute,
}

/// A snapshot of a chaos layer's counters, from
/// [`ChaosLayer::stats`](super::ChaosLayer::stats) or
/// [`ChaosHandle::stats`](super::ChaosHandle::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Calls seen while injection was active (switched on with some rate
    /// above zero), since the layer was made or the seed last set: the
    /// next call's index. Calls made while off are not counted.
    pub calls: u64,
    /// Calls failed with [`Injected`](super::Injected).
    pub errors: u64,
    /// Calls delayed by the injected latency.
    pub latencies: u64,
    /// Calls answered with the substituted response.
    pub substitutions: u64,
}

/// What the handle changes, kept whole under a lock (writes are rare).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) enabled: bool,
    pub(crate) rates: ChaosRates,
    pub(crate) seed: u64,
}

/// The shared state of one layer.
#[derive(Debug)]
pub(crate) struct State {
    word: AtomicU64,
    seed: AtomicU64,
    latency_nanos: AtomicU64,
    // Hit by every active call (one read-modify-write each): on its own
    // cache line, away from the word every call reads.
    calls: Padded<AtomicU64>,
    errors: AtomicU64,
    latencies: AtomicU64,
    substitutions: AtomicU64,
    config: Mutex<Config>,
    pub(crate) has_substitute: bool,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Instruments<crate::metrics::ChaosMetrics>,
}

impl State {
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn new(
        config: Config,
        latency: Duration,
        has_substitute: bool,
        name: crate::trace::Name,
    ) -> State {
        let state = State {
            word: AtomicU64::new(0),
            seed: AtomicU64::new(config.seed),
            latency_nanos: AtomicU64::new(nanos(latency)),
            calls: Padded(AtomicU64::new(0)),
            errors: AtomicU64::new(0),
            latencies: AtomicU64::new(0),
            substitutions: AtomicU64::new(0),
            config: Mutex::new(config),
            has_substitute,
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new(name),
        };
        state.publish(&config);
        state
    }

    /// The word a call reads: test it against [`ACTIVE`] first.
    #[inline]
    pub(crate) fn word(&self) -> u64 {
        self.word.load(Ordering::Relaxed)
    }

    /// Takes the next call index and draws its fault from `word`'s rates.
    pub(crate) fn draw(&self, word: u64) -> (u64, Fault) {
        let index = self.calls.fetch_add(1, Ordering::Relaxed);
        let seed = self.seed.load(Ordering::Relaxed);
        (index, fault_of(word, seed, index))
    }

    pub(crate) fn count(&self, fault: Fault) {
        let counter = match fault {
            Fault::None => return,
            Fault::Error => &self.errors,
            Fault::Latency => &self.latencies,
            Fault::Substitute => &self.substitutions,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        record!(self.metrics, |m| match fault {
            Fault::Error => &m.error,
            Fault::Latency => &m.latency,
            _ => &m.substitute,
        }
        .increment(1));
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_nanos(self.latency_nanos.load(Ordering::Relaxed))
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.latency_nanos.store(nanos(latency), Ordering::Relaxed);
    }

    pub(crate) fn config(&self) -> Config {
        *lock(&self.config)
    }

    /// Changes the configuration with `f`, then publishes the new word.
    pub(crate) fn update(
        &self,
        f: impl FnOnce(&mut Config) -> Result<(), ConfigError>,
    ) -> Result<Config, ConfigError> {
        let mut guard = lock(&self.config);
        let mut next = *guard;
        f(&mut next)?;
        next.rates.validate(self.has_substitute)?;
        if next.seed != guard.seed {
            self.seed.store(next.seed, Ordering::Relaxed);
        }
        *guard = next;
        self.publish(&next);
        Ok(next)
    }

    fn publish(&self, config: &Config) {
        let thresholds = config.rates.thresholds();
        let active = config.enabled && thresholds >> (2 * FIELD_BITS) != 0;
        let word = thresholds | if active { ACTIVE } else { 0 };
        self.word.store(word, Ordering::Relaxed);
    }

    /// Starts the call sequence again from index 0.
    pub(crate) fn restart(&self) {
        self.calls.store(0, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> ChaosStats {
        ChaosStats {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latencies: self.latencies.load(Ordering::Relaxed),
            substitutions: self.substitutions.load(Ordering::Relaxed),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// The splitmix64 finaliser.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fault of call `index` under `seed` and the rates packed in `word`.
#[inline]
pub(crate) fn fault_of(word: u64, seed: u64, index: u64) -> Fault {
    let draw =
        mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN))) >> (64 - FRAC_BITS);
    if draw < word & FIELD_MASK {
        Fault::Error
    } else if draw < (word >> FIELD_BITS) & FIELD_MASK {
        Fault::Latency
    } else if draw < (word >> (2 * FIELD_BITS)) & FIELD_MASK {
        Fault::Substitute
    } else {
        Fault::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(error: f64, latency: f64, substitute: f64) -> u64 {
        ChaosRates {
            error,
            latency,
            substitute,
        }
        .thresholds()
            | ACTIVE
    }

    #[test]
    fn rates_split_the_draws() {
        let w = word(0.25, 0.25, 0.5);
        let mut seen = [0u32; 4];
        for i in 0..40_000 {
            seen[fault_of(w, 7, i) as usize] += 1;
        }
        // Nothing is left for "no fault" when the rates sum to 1.
        assert_eq!(seen[Fault::None as usize], 0);
        for (kind, expect) in [
            (Fault::Error, 10_000),
            (Fault::Latency, 10_000),
            (Fault::Substitute, 20_000),
        ] {
            let got = f64::from(seen[kind as usize]);
            assert!((got - f64::from(expect)).abs() < 600.0, "{kind:?}: {got}");
        }
    }

    #[test]
    fn zero_and_one_are_exact() {
        for i in 0..10_000 {
            assert_eq!(fault_of(word(0.0, 0.0, 0.0), 1, i), Fault::None);
            assert_eq!(fault_of(word(1.0, 0.0, 0.0), 1, i), Fault::Error);
            assert_eq!(fault_of(word(0.0, 0.0, 1.0), 1, i), Fault::Substitute);
        }
    }

    #[test]
    fn publish_sets_active_only_when_on_with_a_rate() {
        let rates = ChaosRates {
            error: 0.5,
            ..ChaosRates::default()
        };
        let on = Config {
            enabled: true,
            rates,
            seed: 1,
        };
        let state = State::new(on, Duration::ZERO, false, "chaos".into());
        assert_ne!(state.word() & ACTIVE, 0);
        state
            .update(|c| {
                c.enabled = false;
                Ok(())
            })
            .unwrap();
        assert_eq!(state.word() & ACTIVE, 0);
        state
            .update(|c| {
                c.enabled = true;
                c.rates.error = 0.0;
                Ok(())
            })
            .unwrap();
        assert_eq!(state.word() & ACTIVE, 0);
    }
}
