//! The layer, its builder and the handle.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;

use super::service::CircuitBreaker;
use super::state::{Callback, Config, Core, Policy, State, Stats, FIELD_MAX};
use super::window::{Window, MAX_COUNT, MIN_TIME};
use crate::classify::DefaultClassify;
use crate::error::ConfigError;

const COMPONENT: &str = "circuit_breaker";
const DEFAULT_OPEN: Duration = Duration::from_secs(60);

/// A [`Layer`] that wraps services in a [`CircuitBreaker`].
///
/// The layer *is* the breaker: every service it wraps, and every clone of
/// those services, shares one breaker state. Build a new layer for a new,
/// independent breaker. Cloning the layer is cheap and shares the state.
///
/// `C` is the [`Classify`](crate::classify::Classify) that decides what
/// counts as a failure ([`DefaultClassify`]: every `Err`).
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
    /// [`consecutive_failures`](Builder::consecutive_failures) for the other
    /// knobs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
    ///
    /// let layer = CircuitBreakerLayer::consecutive(5, Duration::from_secs(60));
    /// assert_eq!(layer.handle().state(), State::Closed);
    /// ```
    pub fn consecutive(failures: u32, open_duration: Duration) -> Self {
        Builder::new()
            .consecutive_failures(failures.clamp(1, FIELD_MAX))
            .open_duration(open_duration)
            .build()
            .expect("a clamped consecutive config is valid")
    }

    /// A builder for the rate model (by default: open when at least half of
    /// the last 100 calls failed) or, with
    /// [`consecutive_failures`](Builder::consecutive_failures), the
    /// consecutive model.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// A handle on the breaker's state: inspect it, or force it open or
    /// closed. Handles are cheap to clone and stay valid as long as you
    /// hold them.
    pub fn handle(&self) -> Handle {
        Handle {
            core: self.core.clone(),
        }
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.core.clone(), self.classify.clone())
    }
}

/// Builds a [`CircuitBreakerLayer`]; every value is checked by
/// [`build`](Builder::build).
///
/// The rate model (the default) opens the breaker when, over a sliding
/// window, the failure rate (or the slow-call rate) reaches its threshold
/// once the window holds at least `minimum_calls` calls. The consecutive
/// model ([`consecutive_failures`](Builder::consecutive_failures)) opens it
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
///     .on_state_change(|from: State, to: State| println!("breaker: {from} -> {to}"))
///     .build()?;
/// # let _ = layer;
///
/// // Out-of-range values are errors that name the field.
/// let err = CircuitBreakerLayer::builder().failure_rate_threshold(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate_threshold");
/// # Ok::<(), tower_patterns::ConfigError>(())
/// ```
pub struct Builder<C = DefaultClassify> {
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
}

impl<C> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
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

impl Builder {
    fn new() -> Self {
        Builder {
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
        }
    }
}

impl<C> Builder<C> {
    /// Use the consecutive model: open after `n` failures in a row
    /// (`1 ..= 1_048_575`). Cannot be combined with the rate-model settings
    /// (`failure_rate_threshold`, `sliding_window`, `minimum_calls`,
    /// `slow_call`).
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive = Some(n);
        self
    }

    /// Open when the share of failures in the window reaches `rate`
    /// (`0 < rate <= 1`). Default 0.5.
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate_threshold = Some(rate);
        self
    }

    /// The window the rates are measured over: the last `n` calls
    /// ([`Window::Count`], `1 ..= 1_000_000`) or the last `d` of time
    /// ([`Window::Time`], at least 1 ms). Default `Window::Count(100)`.
    pub fn sliding_window(mut self, window: Window) -> Self {
        self.window = Some(window);
        self
    }

    /// No verdict until the window holds this many calls (at least 1, and
    /// at most the size of a count window). Default: the count window's
    /// size up to 100; 100 for a time window.
    pub fn minimum_calls(mut self, n: usize) -> Self {
        self.minimum_calls = Some(n);
        self
    }

    /// Calls that take longer than `threshold` (non-zero) are slow, whether
    /// they succeed or fail; open when the share of slow calls in the window
    /// reaches `rate` (`0 < rate <= 1`). A slow half-open probe counts as a
    /// failed probe. Off by default; when on, every call's duration is
    /// measured.
    pub fn slow_call(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow = Some((threshold, rate));
        self
    }

    /// How long the breaker stays open before it lets probes through.
    /// Default 60 s. Zero means "probe on the next call".
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// Grow the open duration: each opening that follows a failed half-open
    /// probe doubles it, up to `max` (at least `open_duration`). Closing
    /// starts again from `open_duration`. Default: no growth.
    pub fn open_duration_max(mut self, max: Duration) -> Self {
        self.open_duration_max = Some(max);
        self
    }

    /// How many probe calls the half-open breaker lets through
    /// (`1 ..= 1_048_575`); all must succeed to close it, any failure opens
    /// it again. A probe whose future is dropped, or whose outcome is
    /// ignored, gives its slot back. Default 1.
    pub fn half_open_calls(mut self, n: u32) -> Self {
        self.half_open_calls = n;
        self
    }

    /// What counts as a failure; see [`Classify`](crate::classify::Classify).
    /// [`Outcome::Ignored`](crate::classify::Outcome::Ignored) results count
    /// as neither success nor failure.
    pub fn classify<C2>(self, classify: C2) -> Builder<C2> {
        Builder {
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
        }
    }

    /// Called once per state transition with `(from, to)`, in order, on the
    /// thread that caused it (or that is already running callbacks). It may
    /// use the [`Handle`]; keep it short, it runs on the request path.
    pub fn on_state_change<F>(mut self, f: F) -> Self
    where
        F: Fn(State, State) + Send + Sync + 'static,
    {
        self.on_change = Some(Box::new(f));
        self
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first field out of range, or the
    /// rate-model field combined with `consecutive_failures`.
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let err = |field, value: String, allowed: &'static str| {
            Err(ConfigError::new(COMPONENT, field, value, allowed))
        };
        let policy = if let Some(n) = self.consecutive {
            if n == 0 || n > FIELD_MAX {
                return err(
                    "consecutive_failures",
                    n.to_string(),
                    "must be in 1..=1048575",
                );
            }
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
                    return err(
                        field,
                        "set".into(),
                        "belongs to the rate model and cannot be combined with consecutive_failures",
                    );
                }
            }
            Policy::Consecutive(n)
        } else {
            let threshold = self.failure_rate_threshold.unwrap_or(0.5);
            if !(threshold > 0.0 && threshold <= 1.0) {
                return err(
                    "failure_rate_threshold",
                    threshold.to_string(),
                    "must be > 0 and <= 1",
                );
            }
            let window = self.window.unwrap_or(Window::Count(100));
            match window {
                Window::Count(n) if n == 0 || n > MAX_COUNT => {
                    return err(
                        "sliding_window",
                        format!("{window:?}"),
                        "Count must be in 1..=1000000",
                    );
                }
                Window::Time(d) if d < MIN_TIME => {
                    return err(
                        "sliding_window",
                        format!("{window:?}"),
                        "Time must be at least 1ms",
                    );
                }
                _ => {}
            }
            let minimum_calls = match (self.minimum_calls, window) {
                (Some(0), _) => return err("minimum_calls", "0".into(), "must be at least 1"),
                (Some(m), Window::Count(n)) if m > n => {
                    return err(
                        "minimum_calls",
                        m.to_string(),
                        "must not exceed the Count window's size",
                    );
                }
                (Some(m), _) => m,
                (None, Window::Count(n)) => n.min(100),
                (None, Window::Time(_)) => 100,
            };
            if let Some((d, rate)) = self.slow {
                if d.is_zero() {
                    return err("slow_call", format!("{d:?}"), "threshold must be non-zero");
                }
                if !(rate > 0.0 && rate <= 1.0) {
                    return err("slow_call", rate.to_string(), "rate must be > 0 and <= 1");
                }
            }
            Policy::Rate {
                threshold,
                window,
                minimum_calls: minimum_calls as u64,
            }
        };
        let open_duration_max = match self.open_duration_max {
            Some(max) if max < self.open_duration => {
                return err(
                    "open_duration_max",
                    format!("{max:?}"),
                    "must be at least open_duration",
                );
            }
            Some(max) => max,
            None => self.open_duration,
        };
        if self.half_open_calls == 0 || self.half_open_calls > FIELD_MAX {
            return err(
                "half_open_calls",
                self.half_open_calls.to_string(),
                "must be in 1..=1048575",
            );
        }
        let cfg = Config {
            policy,
            slow: self.slow,
            open_duration: self.open_duration,
            open_duration_max,
            half_open_calls: self.half_open_calls,
        };
        Ok(CircuitBreakerLayer {
            core: Arc::new(Core::new(cfg, self.on_change, Instant::now())),
            classify: self.classify,
        })
    }
}

/// A handle on one breaker, from [`CircuitBreakerLayer::handle`] or
/// [`CircuitBreaker::handle`]: read its state and counters, or override it.
///
/// Every transition made through the handle fires the state-change
/// callback like any other.
#[derive(Clone)]
pub struct Handle {
    core: Arc<Core>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Handle").field(&self.core).finish()
    }
}

impl Handle {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Handle { core }
    }

    /// The current state. An open breaker whose open duration has passed
    /// reports (and becomes) [`State::HalfOpen`].
    pub fn state(&self) -> State {
        self.core.state(&Instant::now)
    }

    /// A snapshot of the state, lifetime counters and window contents.
    pub fn stats(&self) -> Stats {
        self.core.stats(&Instant::now)
    }

    /// Opens the breaker and holds it open (no timer, no probes) until
    /// [`force_closed`](Self::force_closed) or [`reset`](Self::reset).
    /// Calls fail with an [`Open`](super::Open) whose `retry_after` is
    /// `None`.
    pub fn force_open(&self) {
        self.core.force_open(&Instant::now)
    }

    /// Closes the breaker now, with an empty window and the open duration
    /// back at its base value. Lifetime counters are kept.
    pub fn force_closed(&self) {
        self.core.force_closed(&Instant::now)
    }

    /// Returns the breaker to its state right after `build()`: closed,
    /// empty window, base open duration, every counter at zero.
    pub fn reset(&self) {
        self.core.reset(&Instant::now)
    }

    /// Half-open probe calls in flight right now (0 unless half-open).
    pub fn probes_in_flight(&self) -> u32 {
        self.core.probes_in_flight()
    }
}
