//! The adaptive layer and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::service::AdaptiveLimit;
use super::settings::{Choice, Settings};
use super::shared::Shared;
use crate::classify::DefaultClassify;
use crate::limit::gate::{LimitStats, Wait};
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
/// set another with the builder's
/// [`classify`](AdaptiveLimitLayerBuilder::classify) or [`classify`](Self::classify), e.g.
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
    shared: Arc<Shared>,
    wait: Wait,
    classify: C,
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
        AdaptiveLimitLayerBuilder::new().build_unchecked()
    }

    /// AIMD with the defaults: limit starts at 20 and moves within 1..=200;
    /// halves on a failure or a call slower than 5 s.
    pub fn aimd() -> Self {
        AdaptiveLimitLayerBuilder::new().aimd().build_unchecked()
    }

    /// A builder for the limits, the tuning and the classifier (Gradient2
    /// unless [`aimd`](AdaptiveLimitLayerBuilder::aimd) is chosen).
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
    pub fn builder() -> AdaptiveLimitLayerBuilder {
        AdaptiveLimitLayerBuilder::new()
    }
}

impl<C> AdaptiveLimitLayer<C> {
    /// Uses `classify` to decide which calls failed (failures shrink the
    /// limit); also on the builder, as
    /// [`AdaptiveLimitLayerBuilder::classify`].
    #[must_use = "the layer with the new classifier is returned"]
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayer<C2> {
        AdaptiveLimitLayer {
            shared: self.shared,
            wait: self.wait,
            classify,
        }
    }

    /// Waits at most `max_wait` for a permit, then fails with [`Overloaded`](crate::limit::Overloaded).
    /// Zero means [`reject_when_full`](Self::reject_when_full);
    /// `Duration::MAX` means no limit (wait as long as it takes).
    #[must_use = "the changed layer is returned"]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// Never waits: fails at once with [`Overloaded`](crate::limit::Overloaded) when the limit is
    /// reached (Netflix's server-side behaviour).
    #[must_use = "the changed layer is returned"]
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
        AdaptiveLimit::with_shared(inner, self.shared.clone(), self.wait, self.classify.clone())
    }
}

/// Builds an [`AdaptiveLimitLayer`]; from [`AdaptiveLimitLayer::builder`].
///
/// Gradient2 unless [`aimd`](Self::aimd) is chosen. The limits, the wait
/// and the classifier apply to both algorithms; each tuning setting applies
/// to one, and [`build`](Self::build) refuses one given for the other
/// rather than ignore it:
///
/// ```
/// use tower_patterns::classify::HttpClassify;
/// use tower_patterns::limit::AdaptiveLimitLayer;
///
/// let layer = AdaptiveLimitLayer::builder()
///     .aimd()
///     .backoff_ratio(0.7)
///     .classify(HttpClassify)
///     .build()
///     .unwrap();
/// assert_eq!(layer.stats().limit, 20);
///
/// // `smoothing` tunes Gradient2 only.
/// let err = AdaptiveLimitLayer::builder().aimd().smoothing(0.3).build().unwrap_err();
/// assert_eq!(err.field(), "smoothing");
/// ```
#[must_use = "call .build() to get an AdaptiveLimitLayer"]
#[derive(Clone, Debug)]
pub struct AdaptiveLimitLayerBuilder<C = DefaultClassify> {
    settings: Settings,
    wait: Wait,
    classify: C,
    name: crate::trace::Name,
}

impl AdaptiveLimitLayerBuilder {
    fn new() -> Self {
        AdaptiveLimitLayerBuilder {
            settings: Settings::default(),
            wait: Wait::Forever,
            classify: DefaultClassify,
            name: crate::trace::Name::Borrowed("limit"),
        }
    }
}

impl<C> AdaptiveLimitLayerBuilder<C> {
    /// The instance name every metric of this limiter carries as its
    /// `name` label (feature `metrics`; see [`crate::metrics`]). Default: `"limit"`.
    #[must_use = "the changed builder is returned"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Use Gradient2 (the default).
    #[must_use = "the changed builder is returned"]
    pub fn gradient(mut self) -> Self {
        self.settings.choice = Choice::Gradient;
        self
    }

    /// Use AIMD.
    #[must_use = "the changed builder is returned"]
    pub fn aimd(mut self) -> Self {
        self.settings.choice = Choice::Aimd;
        self
    }

    /// Uses `classify` to decide which calls failed (failures shrink the
    /// limit). Default [`DefaultClassify`]: every `Err`; use
    /// [`HttpClassify`](crate::classify::HttpClassify) so 5xx, 429 and 408
    /// responses count too.
    #[must_use = "the changed builder is returned"]
    pub fn classify<C2>(self, classify: C2) -> AdaptiveLimitLayerBuilder<C2> {
        AdaptiveLimitLayerBuilder {
            settings: self.settings,
            wait: self.wait,
            classify,
            name: self.name,
        }
    }

    /// The limit to start from (default 20, kept within min..=max when not
    /// set explicitly; when set, it must lie within them).
    #[must_use = "the changed builder is returned"]
    pub fn initial_limit(mut self, limit: usize) -> Self {
        self.settings.initial = Some(limit);
        self
    }

    /// The lowest the limit may go (default 1; at least 1).
    #[must_use = "the changed builder is returned"]
    pub fn min_limit(mut self, limit: usize) -> Self {
        self.settings.min = limit;
        self
    }

    /// The highest the limit may go (default 200; at least `min_limit`).
    #[must_use = "the changed builder is returned"]
    pub fn max_limit(mut self, limit: usize) -> Self {
        self.settings.max = limit;
        self
    }

    /// Gradient2 only: the weight of each new estimate, in (0, 1]. Lower is
    /// steadier, higher reacts faster. Default 0.1 (Netflix uses 0.2 with
    /// windowed samples; this limiter updates on every call).
    #[must_use = "the changed builder is returned"]
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.settings.smoothing(smoothing);
        self
    }

    /// Gradient2 only: how far the limit may grow per call while latency
    /// is flat (before smoothing). Default 1; 1 to `max_limit`.
    #[must_use = "the changed builder is returned"]
    pub fn queue_size(mut self, queue_size: usize) -> Self {
        self.settings.queue_size(queue_size);
        self
    }

    /// Gradient2 only: how many calls the long-term latency average spans.
    /// Default 600; at least 1.
    #[must_use = "the changed builder is returned"]
    pub fn long_window(mut self, calls: u32) -> Self {
        self.settings.long_window(calls);
        self
    }

    /// AIMD only: the factor applied to the limit on a failure, in (0, 1).
    /// Default 0.5.
    #[must_use = "the changed builder is returned"]
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.settings.backoff_ratio(ratio);
        self
    }

    /// AIMD only: a call slower than this counts as a failure. Default 5 s;
    /// more than zero; `Duration::MAX` means no limit (only errors count).
    #[must_use = "the changed builder is returned"]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout(timeout);
        self
    }

    /// See [`AdaptiveLimitLayer::max_wait`].
    #[must_use = "the changed builder is returned"]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// See [`AdaptiveLimitLayer::reject_when_full`].
    #[must_use = "the changed builder is returned"]
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range
    /// (`min_limit`, `max_limit`, `initial_limit`, then the chosen
    /// algorithm's tuning), or a tuning setting of the algorithm not chosen
    /// (`smoothing`, `queue_size`, `long_window` under AIMD;
    /// `backoff_ratio`, `timeout` under Gradient2).
    pub fn build(self) -> Result<AdaptiveLimitLayer<C>, ConfigError> {
        let algorithm = self.settings.algorithm()?;
        Ok(AdaptiveLimitLayer {
            shared: Arc::new(Shared::new(algorithm, self.name)),
            wait: self.wait,
            classify: self.classify,
        })
    }

    fn build_unchecked(self) -> AdaptiveLimitLayer<C> {
        AdaptiveLimitLayer {
            shared: Arc::new(Shared::new(self.settings.algorithm_unchecked(), self.name)),
            wait: self.wait,
            classify: self.classify,
        }
    }
}
