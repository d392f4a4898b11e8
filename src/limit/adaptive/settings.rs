//! Internal: the adaptive limiter's settings and their validation, pure
//! (no I/O, no runtime). The builder in `layer.rs` only records them.

use std::time::Duration;

use tokio::sync::Semaphore;

use super::algorithm::{Aimd, AimdConfig, Algorithm, Bounds, Gradient2, GradientConfig};
use crate::error::check;
use crate::ConfigError;

const C: &str = "adaptive_limit";

/// The limit to start from when none is given (kept within min..=max).
const DEFAULT_INITIAL: usize = 20;

/// Which algorithm moves the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Choice {
    Gradient,
    Aimd,
}

/// A setting that applies to one algorithm only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tuning {
    Smoothing,
    QueueSize,
    LongWindow,
    BackoffRatio,
    Timeout,
}

impl Tuning {
    fn field(self) -> &'static str {
        match self {
            Tuning::Smoothing => "smoothing",
            Tuning::QueueSize => "queue_size",
            Tuning::LongWindow => "long_window",
            Tuning::BackoffRatio => "backoff_ratio",
            Tuning::Timeout => "timeout",
        }
    }

    fn algorithm(self) -> Choice {
        match self {
            Tuning::Smoothing | Tuning::QueueSize | Tuning::LongWindow => Choice::Gradient,
            Tuning::BackoffRatio | Tuning::Timeout => Choice::Aimd,
        }
    }
}

/// Everything an `AdaptiveLimitLayerBuilder` was told, as given.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub(super) choice: Choice,
    pub(super) gradient: GradientConfig,
    pub(super) aimd: AimdConfig,
    /// Algorithm-specific settings given, in order, so that one given for
    /// the algorithm not chosen is refused rather than dropped.
    tuned: Vec<Tuning>,
    pub(super) initial: Option<usize>,
    pub(super) min: usize,
    pub(super) max: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            choice: Choice::Gradient,
            gradient: GradientConfig::default(),
            aimd: AimdConfig::default(),
            tuned: Vec::new(),
            initial: None,
            min: 1,
            max: 200,
        }
    }
}

impl Settings {
    pub(super) fn smoothing(&mut self, smoothing: f64) {
        self.gradient.smoothing = smoothing;
        self.tune(Tuning::Smoothing);
    }

    pub(super) fn queue_size(&mut self, queue_size: usize) {
        self.gradient.queue_size = queue_size;
        self.tune(Tuning::QueueSize);
    }

    pub(super) fn long_window(&mut self, calls: u32) {
        self.gradient.long_window = calls;
        self.tune(Tuning::LongWindow);
    }

    pub(super) fn backoff_ratio(&mut self, ratio: f64) {
        self.aimd.backoff_ratio = ratio;
        self.tune(Tuning::BackoffRatio);
    }

    pub(super) fn timeout(&mut self, timeout: Duration) {
        self.aimd.timeout = timeout;
        self.tune(Tuning::Timeout);
    }

    fn tune(&mut self, tuning: Tuning) {
        if !self.tuned.contains(&tuning) {
            self.tuned.push(tuning);
        }
    }

    /// The value a tuning setting was given, as text for an error.
    fn shown(&self, tuning: Tuning) -> String {
        match tuning {
            Tuning::Smoothing => format!("{:?}", self.gradient.smoothing),
            Tuning::QueueSize => format!("{:?}", self.gradient.queue_size),
            Tuning::LongWindow => format!("{:?}", self.gradient.long_window),
            Tuning::BackoffRatio => format!("{:?}", self.aimd.backoff_ratio),
            Tuning::Timeout => format!("{:?}", self.aimd.timeout),
        }
    }

    /// The algorithm, or a [`ConfigError`] naming the first field out of
    /// range or given for the algorithm not chosen.
    pub(super) fn algorithm(self) -> Result<Box<dyn Algorithm>, ConfigError> {
        let max_permits = Semaphore::MAX_PERMITS;
        let min = check::in_range(C, "min_limit", self.min, 1, max_permits)?;
        let max = check::in_range(C, "max_limit", self.max, min, max_permits)?;
        if let Some(initial) = self.initial {
            check::in_range(C, "initial_limit", initial, min, max)?;
        }
        if let Some(&wrong) = self.tuned.iter().find(|t| t.algorithm() != self.choice) {
            let allowed = match self.choice {
                Choice::Aimd => "applies to Gradient2 only, and AIMD was chosen",
                Choice::Gradient => {
                    "applies to AIMD only, and Gradient2 is chosen (call .aimd() to use AIMD)"
                }
            };
            return Err(ConfigError::new(
                C,
                wrong.field(),
                self.shown(wrong),
                allowed,
            ));
        }
        match self.choice {
            Choice::Gradient => {
                let c = self.gradient;
                if !(c.smoothing > 0.0 && c.smoothing <= 1.0) {
                    return Err(ConfigError::new(
                        C,
                        "smoothing",
                        format!("{:?}", c.smoothing),
                        "must be in (0, 1]",
                    ));
                }
                check::in_range(C, "queue_size", c.queue_size, 1, max)?;
                check::at_least(C, "long_window", c.long_window, 1)?;
            }
            Choice::Aimd => {
                let c = self.aimd;
                if !(c.backoff_ratio > 0.0 && c.backoff_ratio < 1.0) {
                    return Err(ConfigError::new(
                        C,
                        "backoff_ratio",
                        format!("{:?}", c.backoff_ratio),
                        "must be in (0, 1)",
                    ));
                }
                check::nonzero(C, "timeout", c.timeout)?;
            }
        }
        Ok(self.algorithm_unchecked())
    }

    /// The algorithm from settings known to be valid (the defaults).
    pub(super) fn algorithm_unchecked(self) -> Box<dyn Algorithm> {
        let bounds = Bounds {
            initial: self
                .initial
                .unwrap_or(DEFAULT_INITIAL)
                .clamp(self.min, self.max),
            min: self.min,
            max: self.max,
        };
        match self.choice {
            Choice::Gradient => Box::new(Gradient2::new(bounds, self.gradient)),
            Choice::Aimd => Box::new(Aimd::new(bounds, self.aimd)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(settings: Settings) -> ConfigError {
        settings.algorithm().err().expect("refused")
    }

    #[test]
    fn defaults_are_valid_for_both_algorithms() {
        assert_eq!(Settings::default().algorithm().unwrap().limit(), 20);
        let aimd = Settings {
            choice: Choice::Aimd,
            ..Settings::default()
        };
        assert_eq!(aimd.algorithm().unwrap().limit(), 20);
    }

    #[test]
    fn a_setting_of_the_other_algorithm_is_refused_with_its_value() {
        let mut s = Settings::default();
        s.smoothing(0.3);
        s.choice = Choice::Aimd;
        let err = refused(s);
        assert_eq!((err.field(), err.value()), ("smoothing", "0.3"));
        assert!(err.allowed().contains("Gradient2 only"), "{err}");

        let mut s = Settings::default();
        s.timeout(Duration::from_secs(1));
        let err = refused(s);
        assert_eq!((err.field(), err.value()), ("timeout", "1s"));
        assert!(err.allowed().contains("AIMD only"), "{err}");
    }
}
