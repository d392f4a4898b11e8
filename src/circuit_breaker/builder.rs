//! The layer's builder: its settings, their defaults and their checks.
//!
//! [`build`](CircuitBreakerLayerBuilder::build) itself is defined in
//! `layer.rs`, beside the type it builds, so that imports run one way
//! (layer -> builder).

use crate::trace::Name;
use std::fmt;
use std::time::Duration;

use super::change::StateChange;
use super::config::{Config, Policy};
use super::notify::Callback;
use super::window::{Window, MAX_COUNT, MIN_TIME};
use super::word::FIELD_MAX;
use crate::classify::DefaultClassify;
use crate::error::{check, ConfigError};

const COMPONENT: &str = "circuit_breaker";
const DEFAULT_OPEN: Duration = Duration::from_secs(60);

/// Builds a [`CircuitBreakerLayer`](super::CircuitBreakerLayer); every
/// value is checked by [`build`](CircuitBreakerLayerBuilder::build).
///
/// The rate model (the default) opens the breaker when, over a sliding
/// window, the failure rate (or the slow-call rate) reaches its threshold
/// once the window holds at least `minimum_calls` calls. The consecutive
/// model ([`consecutive_failures`](Self::consecutive_failures)) opens it
/// after `n` failures in a row.
///
/// Defaults: failure rate 0.5 over [`Window::Count(100)`](Window::Count),
/// `minimum_calls` = the window's size up to 100, no slow-call rule, open
/// for 60 s without growth, 1 half-open probe, [`DefaultClassify`].
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State, Window};
///
/// let layer = CircuitBreakerLayer::builder()
///     .failure_rate_threshold(0.5)
///     .sliding_window(Window::Time(Duration::from_secs(60)))
///     .minimum_calls(20)
///     .slow_call(Duration::from_secs(2), 0.8)
///     .open_duration(Duration::from_secs(30))
///     .open_duration_max(Duration::from_secs(300))
///     .half_open_calls(3)
///     .on_state_change(|change| println!("breaker: {} -> {} ({})", change.from, change.to, change.reason))
///     .build()?;
/// # let _ = layer;
///
/// // Out-of-range values are errors that name the field.
/// let err = CircuitBreakerLayer::builder().failure_rate_threshold(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// # Ok::<(), tower_patterns::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build()` is called"]
pub struct CircuitBreakerLayerBuilder<C = DefaultClassify> {
    consecutive: Option<u32>,
    failure_rate_threshold: Option<f64>,
    window: Option<Window>,
    minimum_calls: Option<usize>,
    slow: Option<(Duration, f64)>,
    open_duration: Duration,
    open_duration_max: Option<Duration>,
    half_open_calls: u32,
    classify: C,
    on_change: Option<Callback>,
    pub(super) name: Name,
}

impl<C> fmt::Debug for CircuitBreakerLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayerBuilder")
            .field("consecutive", &self.consecutive)
            .field("failure_rate_threshold", &self.failure_rate_threshold)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("slow", &self.slow)
            .field("open_duration", &self.open_duration)
            .field("open_duration_max", &self.open_duration_max)
            .field("half_open_calls", &self.half_open_calls)
            .finish_non_exhaustive()
    }
}

impl CircuitBreakerLayerBuilder {
    pub(crate) fn new() -> Self {
        CircuitBreakerLayerBuilder {
            consecutive: None,
            failure_rate_threshold: None,
            window: None,
            minimum_calls: None,
            slow: None,
            open_duration: DEFAULT_OPEN,
            open_duration_max: None,
            half_open_calls: 1,
            classify: DefaultClassify,
            on_change: None,
            name: Name::Borrowed("circuit_breaker"),
        }
    }
}

impl<C> CircuitBreakerLayerBuilder<C> {
    /// The instance name every metric of this breaker carries as its
    /// `name` label (feature `metrics`; see [`crate::metrics`]), so two
    /// breakers in one process are told apart. Default: `"circuit_breaker"`.
    #[must_use = "a setter returns the updated builder"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Use the consecutive model: open after `n` failures in a row
    /// (`1 ..= 1_048_575`). Cannot be combined with the rate-model settings
    /// (`failure_rate_threshold`, `sliding_window`, `minimum_calls`,
    /// `slow_call`).
    #[must_use = "a setter returns the updated builder"]
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive = Some(n);
        self
    }

    /// Open when the share of failures in the window reaches `rate`
    /// (`0 < rate <= 1`). Default 0.5.
    #[must_use = "a setter returns the updated builder"]
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate_threshold = Some(rate);
        self
    }

    /// The window the rates are measured over: the last `n` calls
    /// ([`Window::Count`], `1 ..= 1_000_000`) or the last `d` of time
    /// ([`Window::Time`], at least 1 ms; `Duration::MAX` means no limit:
    /// every call since the breaker last closed). Default `Window::Count(100)`.
    #[must_use = "a setter returns the updated builder"]
    pub fn sliding_window(mut self, window: Window) -> Self {
        self.window = Some(window);
        self
    }

    /// No verdict until the window holds this many calls (at least 1, and
    /// at most the size of a count window). Default: the count window's
    /// size up to 100; 100 for a time window.
    #[must_use = "a setter returns the updated builder"]
    pub fn minimum_calls(mut self, n: usize) -> Self {
        self.minimum_calls = Some(n);
        self
    }

    /// Calls that take longer than `threshold` (non-zero) are slow, whether
    /// they succeed or fail; open when the share of slow calls in the window
    /// reaches `rate` (`0 < rate <= 1`). A slow half-open probe counts as a
    /// failed probe. Off by default; when on, every call's duration is
    /// measured. A `threshold` of `Duration::MAX` means no limit: no call
    /// is slow.
    #[must_use = "a setter returns the updated builder"]
    pub fn slow_call(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow = Some((threshold, rate));
        self
    }

    /// How long the breaker stays open before it lets probes through.
    /// Default 60 s. Zero means "probe on the next call"; `Duration::MAX`
    /// means no limit: open until [`reset`](super::CircuitBreakerHandle::reset)
    /// (an open duration beyond about 30 years counts as "never").
    #[must_use = "a setter returns the updated builder"]
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// Grow the open duration: each opening that follows a failed half-open
    /// probe doubles it, up to `max` (at least `open_duration`). Closing
    /// starts again from `open_duration`. Default: no growth.
    /// `Duration::MAX` means no limit: the doubling goes on until the open
    /// duration reaches "never" (about 30 years).
    #[must_use = "a setter returns the updated builder"]
    pub fn open_duration_max(mut self, max: Duration) -> Self {
        self.open_duration_max = Some(max);
        self
    }

    /// How many probe calls the half-open breaker lets through
    /// (`1 ..= 1_048_575`); all must succeed to close it, any failure opens
    /// it again. A probe whose future is dropped, or whose outcome is
    /// ignored, gives its slot back. Default 1.
    #[must_use = "a setter returns the updated builder"]
    pub fn half_open_calls(mut self, n: u32) -> Self {
        self.half_open_calls = n;
        self
    }

    /// What counts as a failure; see [`Classify`](crate::classify::Classify).
    /// [`Outcome::Ignored`](crate::classify::Outcome::Ignored) results count
    /// as neither success nor failure.
    #[must_use = "a setter returns the updated builder"]
    pub fn classify<C2>(self, classify: C2) -> CircuitBreakerLayerBuilder<C2> {
        CircuitBreakerLayerBuilder {
            consecutive: self.consecutive,
            failure_rate_threshold: self.failure_rate_threshold,
            window: self.window,
            minimum_calls: self.minimum_calls,
            slow: self.slow,
            open_duration: self.open_duration,
            open_duration_max: self.open_duration_max,
            half_open_calls: self.half_open_calls,
            classify,
            on_change: self.on_change,
            name: self.name,
        }
    }

    /// Called once per state transition with a [`StateChange`]: `from`,
    /// `to`, the [`reason`](super::ChangeReason) and the breaker's counters.
    /// In order, on the thread that caused it (or that is already running
    /// callbacks). It may use the
    /// [`CircuitBreakerHandle`](super::CircuitBreakerHandle); keep it short,
    /// it runs on the request path.
    ///
    /// **Open → half-open has no timer.** The breaker notices that its open
    /// duration has passed on the first call after it, or on a
    /// [`state`](super::CircuitBreakerHandle::state) or `stats()` read, and
    /// the callback fires then (reason
    /// [`OpenDurationElapsed`](super::ChangeReason::OpenDurationElapsed)).
    /// An idle breaker therefore reports `Open` in a callback log until
    /// something asks; poll `handle.state()` on an interval if a dashboard
    /// must show the change on time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::circuit_breaker::{ChangeReason, CircuitBreakerLayer, State};
    ///
    /// let layer = CircuitBreakerLayer::builder()
    ///     .consecutive_failures(5)
    ///     .open_duration(Duration::from_secs(30))
    ///     .on_state_change(|change| {
    ///         // "circuit breaker closed -> open: too many failures in a row (5 failures, ...)"
    ///         eprintln!("{change}");
    ///         if change.to == State::Open && change.reason != ChangeReason::ForcedOpen {
    ///             assert!(change.stats.failures >= 5);
    ///         }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// layer.handle().force_open();
    /// ```
    #[must_use = "a setter returns the updated builder"]
    pub fn on_state_change<F>(mut self, f: F) -> Self
    where
        F: Fn(&StateChange) + Send + Sync + 'static,
    {
        self.on_change = Some(Box::new(f));
        self
    }

    /// Checks every setting, in the order the setters are documented, and
    /// splits the builder into what the breaker needs.
    pub(super) fn validate(self) -> Result<(Config, Option<Callback>, C), ConfigError> {
        let policy = match self.consecutive {
            Some(n) => {
                check::in_range(COMPONENT, "consecutive_failures", n, 1, FIELD_MAX)?;
                for (set, field) in [
                    (
                        self.failure_rate_threshold.is_some(),
                        "failure_rate_threshold",
                    ),
                    (self.window.is_some(), "sliding_window"),
                    (self.minimum_calls.is_some(), "minimum_calls"),
                    (self.slow.is_some(), "slow_call"),
                ] {
                    if set {
                        return Err(ConfigError::new(
                            COMPONENT,
                            field,
                            "set",
                            "belongs to the rate model and cannot be combined with consecutive_failures",
                        ));
                    }
                }
                Policy::Consecutive(n)
            }
            None => self.rate_policy()?,
        };
        let open_duration_max = match self.open_duration_max {
            Some(max) => check::at_least(COMPONENT, "open_duration_max", max, self.open_duration)?,
            None => self.open_duration,
        };
        check::in_range(
            COMPONENT,
            "half_open_calls",
            self.half_open_calls,
            1,
            FIELD_MAX,
        )?;
        let cfg = Config {
            policy,
            slow: self.slow,
            open_duration: self.open_duration,
            open_duration_max,
            half_open_calls: self.half_open_calls,
        };
        Ok((cfg, self.on_change, self.classify))
    }

    /// The rate model's settings, checked.
    fn rate_policy(&self) -> Result<Policy, ConfigError> {
        let threshold = rate(
            "failure_rate_threshold",
            self.failure_rate_threshold.unwrap_or(0.5),
        )?;
        let window = self.window.unwrap_or(Window::Count(100));
        let minimum_calls = match window {
            Window::Count(n) => {
                if !(1..=MAX_COUNT).contains(&n) {
                    return Err(ConfigError::in_range(
                        COMPONENT,
                        "sliding_window",
                        window,
                        Window::Count(1),
                        Window::Count(MAX_COUNT),
                    ));
                }
                match self.minimum_calls {
                    Some(m) => check::in_range(COMPONENT, "minimum_calls", m, 1, n)?,
                    None => n.min(100),
                }
            }
            Window::Time(d) => {
                if d < MIN_TIME {
                    return Err(ConfigError::at_least(
                        COMPONENT,
                        "sliding_window",
                        window,
                        Window::Time(MIN_TIME),
                    ));
                }
                match self.minimum_calls {
                    Some(m) => check::at_least(COMPONENT, "minimum_calls", m, 1)?,
                    None => 100,
                }
            }
        };
        if let Some((d, r)) = self.slow {
            check::nonzero(COMPONENT, "slow_call", d)?;
            rate("slow_call", r)?;
        }
        Ok(Policy::Rate {
            threshold,
            window,
            minimum_calls: minimum_calls as u64,
        })
    }
}

/// A rate in `0 < rate <= 1` (NaN refused).
fn rate(field: &'static str, r: f64) -> Result<f64, ConfigError> {
    check::nonzero(COMPONENT, field, r)?;
    check::in_range(COMPONENT, field, r, 0.0, 1.0)
}
