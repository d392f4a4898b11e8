//! [`HedgeLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::eligible::Idempotent;
use super::service::Hedge;
use super::shared::{Config, Core, HedgeStats};
use crate::classify::{DefaultClassify, HttpClassify};
use crate::error::check;
use crate::ConfigError;

/// The component named in configuration errors.
const HEDGE: &str = "hedge";

/// Applies [`Hedge`] to services: sends up to `max_hedges` extra attempts
/// for eligible requests that have not answered after a delay, within a
/// budget, and returns the first acceptable answer. See the
/// [module docs](super).
///
/// Cheap to clone. Every service made by one layer (and every clone of
/// those services) shares one budget, one latency estimate and one set of
/// [`HedgeStats`]; a new layer starts fresh.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::classify::HttpClassify;
/// use tower_patterns::hedge::HedgeLayer;
///
/// // Fixed: hedge HTTP GETs (and other idempotent methods) after 20 ms.
/// let fixed = HedgeLayer::http(Duration::from_millis(20));
/// assert_eq!(fixed.delay(), Duration::from_millis(20));
///
/// // Learned: hedge at the 95th percentile of recent latencies, 50 ms
/// // until 100 samples are in, at most 5 % extra load.
/// let learned = HedgeLayer::builder()
///     .percentile(95.0)
///     .delay(Duration::from_millis(50))
///     .min_samples(100)
///     .budget(0.05)
///     .classify(HttpClassify)
///     .build()
///     .expect("valid hedge config");
/// assert_eq!(learned.percentile(), Some(95.0));
///
/// let err = HedgeLayer::builder().max_hedges(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_hedges");
/// ```
pub struct HedgeLayer<E = Idempotent, C = DefaultClassify> {
    core: Arc<Core>,
    config: Config,
    eligible: E,
    classify: C,
}

impl<E: Clone, C: Clone> Clone for HedgeLayer<E, C> {
    fn clone(&self) -> Self {
        HedgeLayer {
            core: Arc::clone(&self.core),
            config: self.config,
            eligible: self.eligible.clone(),
            classify: self.classify.clone(),
        }
    }
}

impl<E, C> fmt::Debug for HedgeLayer<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HedgeLayer<Idempotent, DefaultClassify> {
    /// A builder with the defaults: one hedge after a fixed 50 ms, only
    /// HTTP requests with idempotent methods ([`Idempotent`]), every `Err`
    /// a failure, a budget of 5 % extra load plus one hedge a second over
    /// a 10 s window.
    pub fn builder() -> HedgeLayerBuilder<Idempotent, DefaultClassify> {
        HedgeLayerBuilder {
            max_hedges: 1,
            delay: Duration::from_millis(50),
            percentile: None,
            min_samples: 100,
            window: Duration::from_secs(10),
            budget: 0.05,
            budget_floor: 1,
            eligible: Idempotent,
            classify: DefaultClassify,
            name: crate::trace::Name::Borrowed("hedge"),
        }
    }
}

impl HedgeLayer<Idempotent, HttpClassify> {
    /// Sugar for HTTP clients: one hedge after `delay`, for requests with
    /// an idempotent method only ([`Idempotent`]), with
    /// [`HttpClassify`] (a 5xx, 429 or 408 answer does not win while
    /// another attempt is in flight), and the default budget (5 % extra
    /// load plus one hedge a second). Never fails.
    pub fn http(delay: Duration) -> Self {
        let b = HedgeLayer::builder().delay(delay).classify(HttpClassify);
        HedgeLayer::from_builder(b)
    }
}

impl<E, C> HedgeLayer<E, C> {
    fn from_builder(b: HedgeLayerBuilder<E, C>) -> Self {
        let config = Config {
            max_hedges: b.max_hedges,
            delay: b.delay,
            percentile: b.percentile,
            min_samples: b.min_samples,
            window: b.window,
            budget_ratio: b.budget,
            budget_floor: b.budget_floor,
        };
        HedgeLayer {
            core: Core::new(&config, b.name),
            config,
            eligible: b.eligible,
            classify: b.classify,
        }
    }

    /// A snapshot of the calls, hedges and outcomes of every service this
    /// layer made.
    pub fn stats(&self) -> HedgeStats {
        self.core.stats()
    }

    /// Hedged attempts allowed per request, beyond the first attempt.
    pub fn max_hedges(&self) -> u32 {
        self.config.max_hedges
    }

    /// The fixed delay, or in percentile mode the delay used until enough
    /// samples are in.
    pub fn delay(&self) -> Duration {
        self.config.delay
    }

    /// The percentile (in percent) in percentile mode.
    pub fn percentile(&self) -> Option<f64> {
        self.config.percentile
    }

    /// The delay learned so far in percentile mode (`None` until
    /// [`min_samples`](HedgeLayerBuilder::min_samples) samples are in, and
    /// always in fixed mode).
    pub fn learned_delay(&self) -> Option<Duration> {
        self.core.learned_delay()
    }

    /// The eligibility rule.
    pub fn eligibility(&self) -> &E {
        &self.eligible
    }

    /// The classifier deciding which answers are acceptable.
    pub fn classifier(&self) -> &C {
        &self.classify
    }
}

impl<S, E: Clone, C: Clone> Layer<S> for HedgeLayer<E, C> {
    type Service = Hedge<S, E, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(
            inner,
            self.core.slot(),
            self.config,
            self.eligible.clone(),
            self.classify.clone(),
        )
    }
}

/// Builds a [`HedgeLayer`]; see [`HedgeLayer::builder`] for the defaults.
///
/// Nothing is checked until [`build`](HedgeLayerBuilder::build), which
/// returns a [`ConfigError`] naming the first field out of range.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get a HedgeLayer"]
pub struct HedgeLayerBuilder<E = Idempotent, C = DefaultClassify> {
    max_hedges: u32,
    delay: Duration,
    percentile: Option<f64>,
    min_samples: u32,
    window: Duration,
    budget: f64,
    budget_floor: u32,
    eligible: E,
    classify: C,
    name: crate::trace::Name,
}

impl<E, C> HedgeLayerBuilder<E, C> {
    /// The instance name every metric of this layer carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"hedge"`.
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Hedged attempts per request beyond the first, each sent `delay`
    /// after the previous attempt (default 1, between 1 and 16).
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn max_hedges(mut self, max_hedges: u32) -> Self {
        self.max_hedges = max_hedges;
        self
    }

    /// How long the first attempt may run before a hedge is sent (default
    /// 50 ms). With [`percentile`](Self::percentile), the delay used until
    /// [`min_samples`](Self::min_samples) latencies are known. Measured
    /// from the first poll that finds the inner call pending. Zero sends
    /// the hedge at once; `Duration::MAX` never.
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Learns the delay: hedge when the first attempt has run longer than
    /// this percentile (in percent, between 1.0 and 99.99) of recent first
    /// attempts. Unset by default (a fixed delay).
    ///
    /// Latencies come from first attempts that were still pending at their
    /// first poll (an answer ready at once costs nothing and is not
    /// timed); a first attempt cancelled because a hedge won counts with
    /// the time it ran, a lower bound, so hedging does not talk the
    /// estimate down. Memory is bounded (two small histograms) and samples
    /// are forgotten after one to two half-[`window`](Self::window)s.
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn percentile(mut self, percentile: f64) -> Self {
        self.percentile = Some(percentile);
        self
    }

    /// In percentile mode, the samples needed before the learned delay
    /// replaces [`delay`](Self::delay) (default 100, at least 1).
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn min_samples(mut self, min_samples: u32) -> Self {
        self.min_samples = min_samples;
        self
    }

    /// What "recent" means for the budget and the latency estimate
    /// (default 10 s, between 10 ms and 1 hour).
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The budget: hedges may add at most this share of the calls made in
    /// the last [`window`](Self::window) (default 0.05, i.e. 5 % extra
    /// load; between 0.0 and 16.0), plus the
    /// [`budget_floor`](Self::budget_floor). A hedge the budget refuses is
    /// not sent ([`HedgeStats::budget_refusals`]).
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn budget(mut self, ratio: f64) -> Self {
        self.budget = ratio;
        self
    }

    /// Hedges allowed per second whatever the traffic (default 1), so a
    /// quiet client can still hedge; 0 for none.
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn budget_floor(mut self, per_sec: u32) -> Self {
        self.budget_floor = per_sec;
        self
    }

    /// Which requests may be hedged: any [`Eligible`](super::Eligible), such
    /// as [`AnyRequest`](super::AnyRequest) or a closure `|req: &Req| ->
    /// bool`. The default, [`Idempotent`], hedges HTTP requests with an
    /// idempotent method and does not compile for other request types.
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn eligible<E2>(self, eligible: E2) -> HedgeLayerBuilder<E2, C> {
        HedgeLayerBuilder {
            max_hedges: self.max_hedges,
            delay: self.delay,
            percentile: self.percentile,
            min_samples: self.min_samples,
            window: self.window,
            budget: self.budget,
            budget_floor: self.budget_floor,
            eligible,
            classify: self.classify,
            name: self.name,
        }
    }

    /// Which answers are acceptable: any [`Classify`](crate::classify::Classify);
    /// an answer it calls a [`Failure`](crate::classify::Outcome::Failure)
    /// does not win while another attempt is in flight. Use
    /// [`HttpClassify`] for HTTP. Each future carries a clone: keep it
    /// cheap to clone.
    #[must_use = "call .build() to get a HedgeLayer"]
    pub fn classify<C2>(self, classify: C2) -> HedgeLayerBuilder<E, C2> {
        HedgeLayerBuilder {
            max_hedges: self.max_hedges,
            delay: self.delay,
            percentile: self.percentile,
            min_samples: self.min_samples,
            window: self.window,
            budget: self.budget,
            budget_floor: self.budget_floor,
            eligible: self.eligible,
            classify,
            name: self.name,
        }
    }

    /// Checks every value and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `max_hedges` (not 1 to 16),
    /// `percentile` (not 1.0 to 99.99), `min_samples` (0), `window` (not
    /// 10 ms to 1 hour) or `budget` (not 0.0 to 16.0).
    pub fn build(self) -> Result<HedgeLayer<E, C>, ConfigError> {
        check::in_range(HEDGE, "max_hedges", self.max_hedges, 1, 16)?;
        if let Some(p) = self.percentile {
            check::in_range(HEDGE, "percentile", p, 1.0, 99.99)?;
        }
        check::at_least(HEDGE, "min_samples", self.min_samples, 1)?;
        check::in_range(
            HEDGE,
            "window",
            self.window,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )?;
        check::in_range(HEDGE, "budget", self.budget, 0.0, 16.0)?;
        Ok(HedgeLayer::from_builder(self))
    }
}
