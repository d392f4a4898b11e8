//! The layer, and the `build()` that makes it from its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;

use super::builder::CircuitBreakerLayerBuilder;
use super::core::Core;
use super::handle::CircuitBreakerHandle;
use super::service::CircuitBreaker;
use super::stats::CircuitBreakerStats;
use super::word::FIELD_MAX;
use crate::classify::DefaultClassify;
use crate::error::ConfigError;

/// A [`Layer`] that wraps services in a [`CircuitBreaker`].
///
/// The layer *is* the breaker: every service it wraps, and every clone of
/// those services, shares one breaker state. Build a new layer for a new,
/// independent breaker. Cloning the layer is cheap and shares the state.
///
/// `C` is the [`Classify`](crate::classify::Classify) that decides what
/// counts as a failure ([`DefaultClassify`]: every `Err`). See the
/// [module docs](super) for an example.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = DefaultClassify> {
    core: Arc<Core>,
    classify: C,
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayer {
    /// The classic breaker: opens after `failures` failures in a row (a
    /// success resets the run; ignored outcomes neither count nor reset),
    /// rejects calls for `open_duration`, then lets one probe call through:
    /// its success closes the breaker, its failure opens it again.
    ///
    /// `failures` is clamped to `1 ..= 1_048_575`. Use
    /// [`builder`](Self::builder) with
    /// [`consecutive_failures`](CircuitBreakerLayerBuilder::consecutive_failures)
    /// for the other knobs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let layer = CircuitBreakerLayer::consecutive(5, Duration::from_secs(60));
    /// assert_eq!(layer.handle().state(), State::Closed);
    /// ```
    pub fn consecutive(failures: u32, open_duration: Duration) -> Self {
        CircuitBreakerLayerBuilder::new()
            .consecutive_failures(failures.clamp(1, FIELD_MAX))
            .open_duration(open_duration)
            .build()
            .expect("a clamped consecutive config is valid")
    }

    /// A builder for the rate model (by default: open when at least half of
    /// the last 100 calls failed) or, with
    /// [`consecutive_failures`](CircuitBreakerLayerBuilder::consecutive_failures),
    /// the consecutive model.
    pub fn builder() -> CircuitBreakerLayerBuilder {
        CircuitBreakerLayerBuilder::new()
    }
}

impl<C> CircuitBreakerLayerBuilder<C> {
    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range, or the
    /// rate-model field combined with `consecutive_failures`.
    pub fn build(mut self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let _name = std::mem::take(&mut self.name);
        let (cfg, on_change, classify) = self.validate()?;
        let core = Core::new(cfg, on_change, Instant::now());
        #[cfg(feature = "metrics")]
        let core = core.named(_name);
        Ok(CircuitBreakerLayer {
            core: Arc::new(core),
            classify,
        })
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// A handle on the breaker's state: inspect it, or force it open or
    /// closed. Handles are cheap to clone and stay valid as long as you
    /// hold them.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.core.clone())
    }

    /// A snapshot of the breaker's state and counters; the same as
    /// `self.handle().stats()`.
    pub fn stats(&self) -> CircuitBreakerStats {
        self.core.stats(&Instant::now)
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.core.clone(), self.classify.clone())
    }
}
