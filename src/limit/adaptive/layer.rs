//! The adaptive layer and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;

use super::algorithm::{Aimd, AimdConfig, Algorithm, Bounds, Gradient2, GradientConfig};
use super::service::AdaptiveLimit;
use super::shared::{Kind, Shared};
use crate::classify::DefaultClassify;
use crate::limit::gate::{Acquire, LimitStats, Wait};
use crate::ConfigError;

/// A concurrency limit that moves with the latency and failures it
/// observes, as Netflix's concurrency-limits does.
///
/// - [`gradient`](Self::gradient): Gradient2. Compares each call's latency
///   with a long-term average; grows the limit while latency stays flat and
///   shrinks it as queueing makes latency rise. Finds a server's
///   concurrency knee without being told about it.
/// - [`aimd`](Self::aimd): additive increase (+1 per successful call while
///   busy), multiplicative decrease (halving by default) on a failure or a
///   call slower than a timeout.
///
/// Failures are decided by a [`Classify`](crate::classify::Classify) ([`DefaultClassify`]: every `Err`;
/// set another with [`classify`](Self::classify), e.g.
/// [`HttpClassify`](crate::classify::HttpClassify) so 503s count). Calls
/// whose future is dropped before it completes are not samples: place a
/// timeout *inside* this layer so that timeouts reach it as errors.
///
/// Permits are taken in `poll_ready` and queued first come, first served,
/// as with [`ConcurrencyLimitLayer`](crate::limit::ConcurrencyLimitLayer), including
/// [`max_wait`](Self::max_wait) and [`reject_when_full`](Self::reject_when_full).
/// The limit lives in the layer: every service it makes, and their clones,
/// share it.
pub struct AdaptiveLimitLayer<C = DefaultClassify> {
    pub(super) shared: Arc<Shared>,
    pub(super) wait: Wait,
    pub(super) classify: C,
}

impl<C: Clone> Clone for AdaptiveLimitLayer<C> {
    fn clone(&self) -> Self {
        AdaptiveLimitLayer {
            shared: self.shared.clone(),
            wait: self.wait,
            classify: self.classify.clone(),
        }
    }
}

impl<C> fmt::Debug for AdaptiveLimitLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimitLayer")
            .field("stats", &self.shared.stats())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimitLayer {
    /// Gradient2 with the defaults: limit starts at 20 and moves within
    /// 1..=200. See [`builder`](Self::builder) to change them.
    pub fn gradient() -> Self {
        AdaptiveLimitBuilder::new().build_unchecked()
    }

    /// AIMD with the defaults: limit starts at 20 and moves within 1..=200;
    /// halves on a failure or a call slower than 5 s.
    pub fn aimd() -> Self {
        AdaptiveLimitBuilder::new().aimd().build_unchecked()
    }

    /// A builder for the limits and tuning (Gradient2 unless
    /// [`aimd`](AdaptiveLimitBuilder::aimd) is chosen).
    ///
    /// ```
    /// use tower_patterns::limit::AdaptiveLimitLayer;
    ///
    /// let layer = AdaptiveLimitLayer::builder()
    ///     .aimd()
    ///     .initial_limit(8)
    ///     .min_limit(2)
    ///     .max_limit(64)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.stats().limit, 8);
    ///
    /// let err = AdaptiveLimitLayer::builder().min_limit(10).max_limit(5).build();
    /// assert_eq!(err.unwrap_err().field(), "max_limit");
    /// ```
    pub fn builder() -> AdaptiveLimitBuilder {
        AdaptiveLimitBuilder::new()
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Uses `classify` to decide which calls failed (failures shrink the
    /// limit).
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            shared: self.shared,
            wait: self.wait,
            classify,
        }
    }

    /// Waits at most `max_wait` for a permit, then fails with [`Overloaded`](crate::limit::Overloaded).
    /// Zero means [`reject_when_full`](Self::reject_when_full).
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// Never waits: fails at once with [`Overloaded`](crate::limit::Overloaded) when the limit is
    /// reached (Netflix's server-side behaviour).
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// A snapshot: the current limit, permits in flight, callers waiting,
    /// calls rejected.
    pub fn stats(&self) -> LimitStats {
        self.shared.stats()
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveLimitLayer<C> {
    type Service = AdaptiveLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveLimit {
            inner,
            shared: self.shared.clone(),
            wait: self.wait,
            classify: self.classify.clone(),
            permit: None,
            rejected: None,
            acquire: Acquire::Idle,
        }
    }
}

/// Builds an [`AdaptiveLimitLayer`]; [`build`](Self::build) validates.
#[derive(Clone, Debug)]
pub struct AdaptiveLimitBuilder {
    kind: Kind,
    initial: Option<usize>,
    min: usize,
    max: usize,
    wait: Wait,
}

const DEFAULT_INITIAL: usize = 20;

impl AdaptiveLimitBuilder {
    fn new() -> Self {
        AdaptiveLimitBuilder {
            kind: Kind::Gradient(GradientConfig::default()),
            initial: None,
            min: 1,
            max: 200,
            wait: Wait::Forever,
        }
    }

    /// Use Gradient2 (the default), with its default tuning.
    pub fn gradient(mut self) -> Self {
        if !matches!(self.kind, Kind::Gradient(_)) {
            self.kind = Kind::Gradient(GradientConfig::default());
        }
        self
    }

    /// Use AIMD, with its default tuning.
    pub fn aimd(mut self) -> Self {
        if !matches!(self.kind, Kind::Aimd(_)) {
            self.kind = Kind::Aimd(AimdConfig::default());
        }
        self
    }

    /// The limit to start from (default 20, kept within min..=max when not
    /// set explicitly).
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.initial = Some(limit);
        self
    }

    /// The lowest the limit may go (default 1; at least 1).
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.min = limit;
        self
    }

    /// The highest the limit may go (default 200).
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.max = limit;
        self
    }

    /// Gradient2 only: the weight of each new estimate, in (0, 1]. Lower is
    /// steadier, higher reacts faster. Default 0.1 (Netflix uses 0.2 with
    /// windowed samples; this limiter updates on every call).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        if let Kind::Gradient(c) = &mut self.kind {
            c.smoothing = smoothing;
        }
        self
    }

    /// Gradient2 only: how far the limit may grow per call while latency
    /// is flat (before smoothing). Default 1.
    pub fn queue_size(mut self, queue_size: usize) -> Self {
        if let Kind::Gradient(c) = &mut self.kind {
            c.queue_size = queue_size;
        }
        self
    }

    /// Gradient2 only: how many calls the long-term latency average spans.
    /// Default 600.
    pub fn long_window(mut self, calls: u32) -> Self {
        if let Kind::Gradient(c) = &mut self.kind {
            c.long_window = calls;
        }
        self
    }

    /// AIMD only: the factor applied to the limit on a failure, in (0, 1).
    /// Default 0.5.
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        if let Kind::Aimd(c) = &mut self.kind {
            c.backoff_ratio = ratio;
        }
        self
    }

    /// AIMD only: a call slower than this counts as a failure. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        if let Kind::Aimd(c) = &mut self.kind {
            c.timeout = timeout;
        }
        self
    }

    /// See [`AdaptiveLimitLayer::max_wait`].
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// See [`AdaptiveLimitLayer::reject_when_full`].
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// The layer, or a [`ConfigError`] naming the first field out of range.
    pub fn build(self) -> Result<AdaptiveLimitLayer, ConfigError> {
        const C: &str = "adaptive_limit";
        let err =
            |field, value: String, allowed: String| Err(ConfigError::new(C, field, value, allowed));
        if self.min == 0 || self.min > Semaphore::MAX_PERMITS {
            return err(
                "min_limit",
                self.min.to_string(),
                format!("must be between 1 and {}", Semaphore::MAX_PERMITS),
            );
        }
        if self.max < self.min || self.max > Semaphore::MAX_PERMITS {
            return err(
                "max_limit",
                self.max.to_string(),
                format!(
                    "must be between min_limit ({}) and {}",
                    self.min,
                    Semaphore::MAX_PERMITS
                ),
            );
        }
        if let Some(initial) = self.initial {
            if initial < self.min || initial > self.max {
                return err(
                    "initial_limit",
                    initial.to_string(),
                    format!(
                        "must be between min_limit ({}) and max_limit ({})",
                        self.min, self.max
                    ),
                );
            }
        }
        match self.kind {
            Kind::Gradient(c) => {
                if !(c.smoothing > 0.0 && c.smoothing <= 1.0) {
                    return err(
                        "smoothing",
                        c.smoothing.to_string(),
                        "must be in (0, 1]".into(),
                    );
                }
                if c.queue_size == 0 || c.queue_size > self.max {
                    return err(
                        "queue_size",
                        c.queue_size.to_string(),
                        format!("must be between 1 and max_limit ({})", self.max),
                    );
                }
                if c.long_window == 0 {
                    return err("long_window", "0".into(), "must be at least 1".into());
                }
            }
            Kind::Aimd(c) => {
                if !(c.backoff_ratio > 0.0 && c.backoff_ratio < 1.0) {
                    return err(
                        "backoff_ratio",
                        c.backoff_ratio.to_string(),
                        "must be in (0, 1)".into(),
                    );
                }
                if c.timeout.is_zero() {
                    return err("timeout", "0s".into(), "must be more than zero".into());
                }
            }
        }
        Ok(self.build_unchecked())
    }

    fn build_unchecked(self) -> AdaptiveLimitLayer {
        let bounds = Bounds {
            initial: self
                .initial
                .unwrap_or(DEFAULT_INITIAL)
                .clamp(self.min, self.max),
            min: self.min,
            max: self.max,
        };
        let algorithm: Box<dyn Algorithm> = match self.kind {
            Kind::Gradient(c) => Box::new(Gradient2::new(bounds, c)),
            Kind::Aimd(c) => Box::new(Aimd::new(bounds, c)),
        };
        AdaptiveLimitLayer {
            shared: Arc::new(Shared::new(algorithm)),
            wait: self.wait,
            classify: DefaultClassify,
        }
    }
}
