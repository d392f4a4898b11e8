//! [`ChaosHandle`]: turns a chaos layer on and off and changes its rates
//! while it runs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::shared::{ChaosRates, ChaosStats, State};
use crate::trace::trace_event;
use crate::ConfigError;

/// Steers a [`ChaosLayer`](super::ChaosLayer) and every service it made,
/// at run time: on and off, rates, latency and seed. Get one from
/// [`ChaosLayer::handle`](super::ChaosLayer::handle); clones steer the
/// same layer.
///
/// Every change takes effect from the next call (calls already made keep
/// their fault); the services read it with one relaxed atomic load, so a
/// change made on one thread is seen by calls on another promptly but
/// without a happens-before edge.
///
/// ```
/// use tower_patterns::chaos::{ChaosLayer, ChaosRates};
///
/// let layer = ChaosLayer::off();
/// let handle = layer.handle();
/// handle.set_error_rate(0.1)?;
/// handle.enable();
/// assert!(handle.is_enabled());
/// assert_eq!(handle.rates().error, 0.1);
///
/// // Out of range: refused, nothing changes.
/// let err = handle.set_rates(ChaosRates { error: 0.8, latency: 0.3, substitute: 0.0 }).unwrap_err();
/// assert_eq!(err.field(), "rates");
/// assert_eq!(handle.rates().error, 0.1);
/// handle.disable();
/// # Ok::<(), tower_patterns::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct ChaosHandle {
    state: Arc<State>,
}

impl ChaosHandle {
    pub(crate) fn new(state: Arc<State>) -> Self {
        ChaosHandle { state }
    }

    /// Switches injection on (at the current rates).
    pub fn enable(&self) {
        self.set_enabled(true);
    }

    /// Switches injection off: every call goes to the inner service,
    /// untouched, for the cost of one atomic load.
    pub fn disable(&self) {
        self.set_enabled(false);
    }

    /// Switches injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        // Cannot fail: the rates in force were checked when set.
        let _ = self.state.update(|c| {
            c.enabled = enabled;
            Ok(())
        });
        trace_event!(INFO, enabled, "chaos: injection switched");
    }

    /// Whether injection is switched on (it injects only with some rate
    /// above zero too).
    pub fn is_enabled(&self) -> bool {
        self.state.config().enabled
    }

    /// The current rates.
    pub fn rates(&self) -> ChaosRates {
        self.state.config().rates
    }

    /// Replaces all three rates at once.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `error_rate`, `latency_rate` or
    /// `substitute_rate` (outside `0.0..=1.0`, or a substitute rate above
    /// zero for a layer without a substituted response) or `rates` (a sum
    /// above 1.0); nothing changes then.
    pub fn set_rates(&self, rates: ChaosRates) -> Result<(), ConfigError> {
        self.state.update(|c| {
            c.rates = rates;
            Ok(())
        })?;
        trace_event!(
            INFO,
            error = rates.error,
            latency = rates.latency,
            substitute = rates.substitute,
            "chaos: rates changed"
        );
        Ok(())
    }

    /// Changes the share of calls failed with
    /// [`Injected`](super::Injected); errors as for
    /// [`set_rates`](Self::set_rates).
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.set_rates(ChaosRates {
            error: rate,
            ..self.rates()
        })
    }

    /// Changes the share of calls delayed; errors as for
    /// [`set_rates`](Self::set_rates).
    pub fn set_latency_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.set_rates(ChaosRates {
            latency: rate,
            ..self.rates()
        })
    }

    /// Changes the share of calls answered with the substituted response;
    /// errors as for [`set_rates`](Self::set_rates).
    pub fn set_substitute_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.set_rates(ChaosRates {
            substitute: rate,
            ..self.rates()
        })
    }

    /// The injected latency.
    pub fn latency(&self) -> Duration {
        self.state.latency()
    }

    /// Changes the injected latency (any duration; `Duration::MAX` is
    /// "never answers", as everywhere in the crate).
    pub fn set_latency(&self, latency: Duration) {
        self.state.set_latency(latency);
    }

    /// The seed of the fault sequence.
    pub fn seed(&self) -> u64 {
        self.state.config().seed
    }

    /// Sets the seed and starts the sequence again from call 0 (also when
    /// the seed is the one already set): the calls that follow get the
    /// faults a fresh layer with this seed would give.
    pub fn set_seed(&self, seed: u64) {
        let _ = self.state.update(|c| {
            c.seed = seed;
            Ok(())
        });
        self.state.restart();
    }

    /// A snapshot of the layer's counters.
    pub fn stats(&self) -> ChaosStats {
        self.state.stats()
    }
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.state.config();
        f.debug_struct("ChaosHandle")
            .field("enabled", &config.enabled)
            .field("rates", &config.rates)
            .field("latency", &self.state.latency())
            .field("seed", &config.seed)
            .field("stats", &self.stats())
            .finish()
    }
}
