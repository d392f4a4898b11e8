//! [`ChaosLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::handle::ChaosHandle;
use super::service::Chaos;
use super::shared::{ChaosRates, ChaosStats, Config, State};
use super::substitute::NoSubstitute;
use crate::ConfigError;

/// Applies [`Chaos`] to services: injects errors, latency or a substituted
/// response into a share of their calls. See [the module docs](super).
///
/// Cheap to clone; clones, the services the layer makes and their clones
/// all share one switch, one set of rates, one call sequence and one
/// [`ChaosStats`], steered by [`handle`](Self::handle). A new layer starts
/// fresh.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::chaos::ChaosLayer;
///
/// let layer = ChaosLayer::builder()
///     .seed(42)
///     .error_rate(0.05)
///     .latency(0.10, Duration::from_millis(250))
///     .build()
///     .expect("valid chaos config");
/// assert!(layer.handle().is_enabled());
///
/// let err = ChaosLayer::builder().error_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "error_rate");
/// ```
pub struct ChaosLayer<T = NoSubstitute> {
    state: Arc<State>,
    substitute: Option<Arc<T>>,
}

impl<T> Clone for ChaosLayer<T> {
    fn clone(&self) -> Self {
        ChaosLayer {
            state: Arc::clone(&self.state),
            substitute: self.substitute.clone(),
        }
    }
}

impl<T> fmt::Debug for ChaosLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("handle", &self.handle())
            .field("substitute", &self.substitute.is_some())
            .finish()
    }
}

impl ChaosLayer<NoSubstitute> {
    /// A builder with the defaults: switched on, every rate 0, no latency,
    /// no substituted response, a random seed.
    pub fn builder() -> ChaosLayerBuilder<NoSubstitute> {
        ChaosLayerBuilder {
            enabled: true,
            rates: ChaosRates::default(),
            latency: Duration::ZERO,
            seed: None,
            substitute: None,
            name: crate::trace::Name::Borrowed("chaos"),
        }
    }

    /// A layer that injects nothing until its [`handle`](Self::handle)
    /// sets a rate and switches it on: switched off, every rate 0, a
    /// random seed. The layer to leave in a staging stack.
    pub fn off() -> Self {
        ChaosLayer::builder().enabled(false).finish()
    }

    /// Sugar for the common test: switched on, failing a share `rate` of
    /// calls with [`Injected`](super::Injected), seeded with `seed` (the
    /// same faults on every run). A rate outside `0.0..=1.0` is clamped
    /// into it (NaN is 0), so this never fails.
    pub fn errors(rate: f64, seed: u64) -> Self {
        let rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
        ChaosLayer::builder().error_rate(rate).seed(seed).finish()
    }
}

impl<T> ChaosLayer<T> {
    /// A handle that turns injection on and off, changes the rates, the
    /// latency and the seed, and reads the statistics, while the services
    /// run.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle::new(Arc::clone(&self.state))
    }

    /// A snapshot of the counts of every service this layer made.
    pub fn stats(&self) -> ChaosStats {
        self.state.stats()
    }
}

impl<S, T> Layer<S> for ChaosLayer<T> {
    type Service = Chaos<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::new(inner, Arc::clone(&self.state), self.substitute.clone())
    }
}

/// Builds a [`ChaosLayer`]; see [`ChaosLayer::builder`] for the defaults.
///
/// Nothing is checked until [`build`](Self::build), which returns a
/// [`ConfigError`] naming the first field out of range.
#[must_use = "call .build() to get a ChaosLayer"]
pub struct ChaosLayerBuilder<T = NoSubstitute> {
    enabled: bool,
    rates: ChaosRates,
    latency: Duration,
    seed: Option<u64>,
    substitute: Option<T>,
    name: crate::trace::Name,
}

impl<T> ChaosLayerBuilder<T> {
    /// The instance name every metric of this layer carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"chaos"`.
    #[must_use = "call .build() to get a ChaosLayer"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl<T> fmt::Debug for ChaosLayerBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayerBuilder")
            .field("enabled", &self.enabled)
            .field("rates", &self.rates)
            .field("latency", &self.latency)
            .field("seed", &self.seed)
            .field("substitute", &self.substitute.is_some())
            .finish()
    }
}

impl<T> ChaosLayerBuilder<T> {
    /// Whether the layer starts switched on (default `true`); the handle
    /// switches it later.
    #[must_use = "call .build() to get a ChaosLayer"]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The seed of the fault sequence: with the same seed, rates and
    /// sequence of calls, a rerun injects exactly the same faults into the
    /// same calls. Default: a random seed, read back with
    /// [`ChaosHandle::seed`].
    #[must_use = "call .build() to get a ChaosLayer"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The share of calls failed with [`Injected`](super::Injected),
    /// without calling the inner service. In `0.0..=1.0`; default 0.
    #[must_use = "call .build() to get a ChaosLayer"]
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.rates.error = rate;
        self
    }

    /// The share of calls delayed by `latency` (tokio time) before the
    /// inner service's future is polled. The rate is in `0.0..=1.0`
    /// (default 0); the latency any duration (default zero).
    #[must_use = "call .build() to get a ChaosLayer"]
    pub fn latency(mut self, rate: f64, latency: Duration) -> Self {
        self.rates.latency = rate;
        self.latency = latency;
        self
    }

    /// The share of calls answered with `substitute()` without calling the
    /// inner service: an HTTP 503, an empty list, a stale value. The rate
    /// is in `0.0..=1.0` (default 0).
    ///
    /// ```
    /// use tower_patterns::chaos::ChaosLayer;
    ///
    /// let layer = ChaosLayer::builder()
    ///     .substitute(0.2, || {
    ///         http::Response::builder().status(503).body(String::new()).unwrap()
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    #[must_use = "call .build() to get a ChaosLayer"]
    pub fn substitute<F>(self, rate: f64, substitute: F) -> ChaosLayerBuilder<F> {
        ChaosLayerBuilder {
            enabled: self.enabled,
            rates: ChaosRates {
                substitute: rate,
                ..self.rates
            },
            latency: self.latency,
            seed: self.seed,
            substitute: Some(substitute),
            name: self.name,
        }
    }

    /// Checks every value and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `error_rate`, `latency_rate` or
    /// `substitute_rate` (outside `0.0..=1.0`, NaN included), or `rates`
    /// (their sum above 1.0: one draw per call picks at most one fault).
    pub fn build(self) -> Result<ChaosLayer<T>, ConfigError> {
        self.rates.validate(self.substitute.is_some())?;
        Ok(self.finish())
    }

    fn finish(self) -> ChaosLayer<T> {
        let config = Config {
            enabled: self.enabled,
            rates: self.rates,
            seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
        };
        let has_substitute = self.substitute.is_some();
        ChaosLayer {
            state: Arc::new(State::new(config, self.latency, has_substitute, self.name)),
            substitute: self.substitute.map(Arc::new),
        }
    }
}
