//! [`RetryLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::backoff::Backoff;
use super::budget::RetryBudget;
use super::service::Retry;
use super::shared::{Config, Core, RetryStats};
use crate::classify::DefaultClassify;
use crate::error::check;
use crate::trace::Name;
use crate::ConfigError;

/// Applies [`Retry`] to services: retries calls the classifier calls a
/// [`Failure`](crate::classify::Outcome::Failure), with backoff, an
/// optional budget and an optional overall deadline.
///
/// Cheap to clone (the configuration is copied, the classifier cloned,
/// the shared state reference counted). Every service made by one layer
/// (and every clone of those services) shares one budget and one set of
/// [`RetryStats`]; a new layer starts fresh.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::retry::{Backoff, Jitter, RetryBudget, RetryLayer};
///
/// let layer = RetryLayer::builder()
///     .max_attempts(3)
///     .backoff(
///         Backoff::exponential(Duration::from_millis(100))
///             .factor(2.0)
///             .max_delay(Duration::from_secs(10))
///             .jitter(Jitter::Full),
///     )
///     .budget(RetryBudget::new(0.2, 10, Duration::from_secs(10)))
///     .deadline(Duration::from_secs(30))
///     .build()
///     .expect("valid retry config");
/// assert_eq!(layer.stats().attempts, 0);
///
/// let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
/// assert_eq!(err.field(), "max_attempts");
/// ```
pub struct RetryLayer<C = DefaultClassify> {
    core: Arc<Core>,
    config: Config,
    classify: C,
}

impl<C: Clone> Clone for RetryLayer<C> {
    fn clone(&self) -> Self {
        RetryLayer {
            core: Arc::clone(&self.core),
            config: self.config,
            classify: self.classify.clone(),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("config", &self.config)
            .field("budget", &self.core.budget_config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RetryLayer<DefaultClassify> {
    /// A builder with the defaults: 3 attempts, [`Backoff::default`]
    /// (100 ms doubling to at most 10 s, full jitter), every `Err` a
    /// failure, no budget, no deadline.
    pub fn builder() -> RetryLayerBuilder<DefaultClassify> {
        RetryLayerBuilder {
            max_attempts: 3,
            backoff: Backoff::default(),
            classify: DefaultClassify,
            budget: None,
            deadline: None,
            max_retry_after: None,
            name: Name::Borrowed("retry"),
        }
    }

    /// Sugar for the common case: `max_attempts` calls in total, backoff
    /// from 100 ms doubling up to 10 s with full jitter, every `Err` a
    /// failure, and the default [`RetryBudget`] (20 % of recent first
    /// attempts plus 10 retries a second, over 10 s).
    ///
    /// `max_attempts` of 0 is treated as 1 (no retries), so this never
    /// fails.
    pub fn exponential(max_attempts: u32) -> Self {
        let cfg = RetryLayer::builder()
            .max_attempts(max_attempts.max(1))
            .budget(RetryBudget::default());
        RetryLayer::from_parts(
            Config {
                max_attempts: cfg.max_attempts,
                backoff: cfg.backoff,
                deadline: None,
                max_retry_after: cfg.backoff.max_delay,
            },
            DefaultClassify,
            cfg.budget,
            cfg.name,
        )
    }
}

impl<C> RetryLayer<C> {
    fn from_parts(config: Config, classify: C, budget: Option<RetryBudget>, name: Name) -> Self {
        RetryLayer {
            core: Core::new(budget, name),
            config,
            classify,
        }
    }

    /// A snapshot of the attempts, retries and budget refusals of every
    /// service this layer made.
    pub fn stats(&self) -> RetryStats {
        self.core.stats()
    }

    /// Total calls allowed per request, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.config.max_attempts
    }

    /// The backoff schedule.
    pub fn backoff(&self) -> Backoff {
        self.config.backoff
    }

    /// The overall deadline per request, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.config.deadline
    }

    /// The longest wait a server's `Retry-After` can ask for; see
    /// [`RetryLayerBuilder::max_retry_after`].
    pub fn max_retry_after(&self) -> Duration {
        self.config.max_retry_after
    }

    /// The retry budget, if any.
    pub fn budget(&self) -> Option<RetryBudget> {
        self.core.budget_config
    }

    /// The classifier deciding which results are retried.
    pub fn classifier(&self) -> &C {
        &self.classify
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.core.slot(), self.config, self.classify.clone())
    }
}

/// Builds a [`RetryLayer`]; see [`RetryLayer::builder`] for the defaults.
///
/// Nothing is checked until [`build`](RetryLayerBuilder::build), which
/// returns a [`ConfigError`] naming the first field out of range.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get a RetryLayer"]
pub struct RetryLayerBuilder<C = DefaultClassify> {
    max_attempts: u32,
    backoff: Backoff,
    classify: C,
    budget: Option<RetryBudget>,
    deadline: Option<Duration>,
    max_retry_after: Option<Duration>,
    name: Name,
}

impl<C> RetryLayerBuilder<C> {
    /// The instance name every metric of this layer carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"retry"`.
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Total calls per request, the first one included: 3 means one call
    /// and up to two retries. At least 1.
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The delays between attempts.
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// What counts as a failure (and is retried) and what a server's
    /// `Retry-After` says: any [`Classify`](crate::classify::Classify), such
    /// as [`HttpClassify`](crate::classify::HttpClassify) or a closure.
    /// Only [`Outcome::Failure`](crate::classify::Outcome::Failure) is
    /// retried.
    ///
    /// The classifier must be `Clone` to be used as a layer: each response
    /// future carries its own copy, so that the success path touches no
    /// shared state. Keep it cheap to clone (the built-in ones and
    /// capture-free closures are zero-sized; put large state in an `Arc`).
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn classify<C2>(self, classify: C2) -> RetryLayerBuilder<C2> {
        RetryLayerBuilder {
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            classify,
            budget: self.budget,
            deadline: self.deadline,
            max_retry_after: self.max_retry_after,
            name: self.name,
        }
    }

    /// Caps retries to a fraction of recent traffic; see [`RetryBudget`].
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// An overall time limit per request, measured from the call: no
    /// attempt starts after it and no backoff sleep is begun that would end
    /// past it. It does not cut short an attempt already in flight (put a
    /// [`TimeoutLayer`](crate::deadline::TimeoutLayer) inside the retry for
    /// that). Must be more than zero; `Duration::MAX` means no limit.
    ///
    /// A deadline in force from a
    /// [`TimeoutLayer`](crate::deadline::TimeoutLayer) above is honoured
    /// without this setting; with both, the tighter one applies.
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The longest wait a server can ask for with `Retry-After` (or an
    /// open breaker's time to its next probe, when the classifier retries
    /// [`Open`](crate::circuit_breaker::Open)): a longer one is cut to this.
    /// It is apart from the backoff's
    /// [`max_delay`](Backoff::max_delay), which caps only the delays this
    /// layer computes; unset, it is that same `max_delay` (10 s by
    /// default).
    ///
    /// A server's `Retry-After: 1` replaces a 20 ms backoff step, so one
    /// retry adds a second to the call. Set this to what the caller can
    /// afford; `Duration::ZERO` retries at once whatever the server asked.
    /// The [`deadline`](Self::deadline) still applies: a wait that would
    /// end past it is not begun.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::classify::HttpClassify;
    /// use tower_patterns::retry::{Backoff, RetryLayer};
    ///
    /// let layer = RetryLayer::builder()
    ///     .classify(HttpClassify)
    ///     .backoff(Backoff::exponential(Duration::from_millis(20)))
    ///     .max_retry_after(Duration::from_millis(200))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.max_retry_after(), Duration::from_millis(200));
    /// ```
    #[must_use = "call .build() to get a RetryLayer"]
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = Some(max);
        self
    }

    /// Checks every value and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field: `max_attempts` (0),
    /// `backoff.factor` (below 1.0 or not finite), `backoff.max_delay`
    /// (below the base delay), `budget.ratio`, `budget.window` (see
    /// [`RetryBudget`]) or `deadline` (zero).
    pub fn build(self) -> Result<RetryLayer<C>, ConfigError> {
        const RETRY: &str = "retry";
        check::at_least(RETRY, "max_attempts", self.max_attempts, 1)?;
        let b = &self.backoff;
        if !(b.factor.is_finite() && b.factor >= 1.0) {
            return Err(ConfigError::new(
                RETRY,
                "backoff.factor",
                format!("{:?}", b.factor),
                "must be a finite number of at least 1.0",
            ));
        }
        check::at_least(RETRY, "backoff.max_delay", b.max_delay, b.base)?;
        if let Some(budget) = &self.budget {
            budget.validate()?;
        }
        if let Some(deadline) = self.deadline {
            check::nonzero(RETRY, "deadline", deadline)?;
        }
        Ok(RetryLayer::from_parts(
            Config {
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                deadline: self.deadline,
                max_retry_after: self.max_retry_after.unwrap_or(self.backoff.max_delay),
            },
            self.classify,
            self.budget,
            self.name,
        ))
    }
}
