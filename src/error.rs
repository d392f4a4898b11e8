//! Errors shared by every pattern.

use std::borrow::Cow;
use std::fmt;

/// A builder was given a value outside its allowed range.
///
/// Every `builder().build()` in this crate returns this error rather than
/// panicking. Its message names the field, the value given and what is
/// allowed, for example:
/// `invalid retry config: max_attempts = 0 (must be at least 1)`.
///
/// ```
/// use tower_patterns::ConfigError;
///
/// let err = ConfigError::new("retry", "max_attempts", "0", "must be at least 1");
/// assert_eq!(err.field(), "max_attempts");
/// assert_eq!(
///     err.to_string(),
///     "invalid retry config: max_attempts = 0 (must be at least 1)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    component: &'static str,
    field: &'static str,
    value: Cow<'static, str>,
    allowed: Cow<'static, str>,
}

impl ConfigError {
    /// A new error: `component` is the pattern (`"retry"`), `field` the
    /// builder method's name, `value` what was given and `allowed` a short
    /// phrase saying what would have been accepted.
    pub fn new(
        component: &'static str,
        field: &'static str,
        value: impl Into<Cow<'static, str>>,
        allowed: impl Into<Cow<'static, str>>,
    ) -> Self {
        ConfigError {
            component,
            field,
            value: value.into(),
            allowed: allowed.into(),
        }
    }

    /// The pattern whose builder refused the value (`"retry"`, `"circuit_breaker"`, ...).
    pub fn component(&self) -> &'static str {
        self.component
    }

    /// The builder field that was out of range.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The value that was given, as text.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// What the field accepts.
    pub fn allowed(&self) -> &str {
        &self.allowed
    }
}

// ---------------------------------------------------------------------------
// Checks every builder shares. Each returns the value when it is allowed, so
// a builder reads `let n = check::at_least(C, "workers", self.workers, 1)?;`.
// Values are shown with `Debug` (`0`, `0.5`, `0ns`), as the messages always were.

impl ConfigError {
    /// `value` must be at least `min`.
    pub(crate) fn at_least<T: fmt::Debug>(
        component: &'static str,
        field: &'static str,
        value: T,
        min: T,
    ) -> Self {
        ConfigError::new(
            component,
            field,
            format!("{value:?}"),
            format!("must be at least {min:?}"),
        )
    }

    /// `value` must lie in `lo..=hi`.
    pub(crate) fn in_range<T: fmt::Debug>(
        component: &'static str,
        field: &'static str,
        value: T,
        lo: T,
        hi: T,
    ) -> Self {
        ConfigError::new(
            component,
            field,
            format!("{value:?}"),
            format!("must be between {lo:?} and {hi:?}"),
        )
    }

    /// `value` must be greater than zero.
    pub(crate) fn nonzero<T: fmt::Debug>(
        component: &'static str,
        field: &'static str,
        value: T,
    ) -> Self {
        ConfigError::new(
            component,
            field,
            format!("{value:?}"),
            "must be greater than zero",
        )
    }
}

/// Range checks that return the value when it is allowed.
pub(crate) mod check {
    use super::ConfigError;
    use std::fmt::Debug;

    /// `value >= min`, or a [`ConfigError::at_least`].
    pub(crate) fn at_least<T: PartialOrd + Debug>(
        component: &'static str,
        field: &'static str,
        value: T,
        min: T,
    ) -> Result<T, ConfigError> {
        if value >= min {
            Ok(value)
        } else {
            Err(ConfigError::at_least(component, field, value, min))
        }
    }

    /// `lo <= value <= hi` (false for NaN), or a [`ConfigError::in_range`].
    pub(crate) fn in_range<T: PartialOrd + Debug>(
        component: &'static str,
        field: &'static str,
        value: T,
        lo: T,
        hi: T,
    ) -> Result<T, ConfigError> {
        if value >= lo && value <= hi {
            Ok(value)
        } else {
            Err(ConfigError::in_range(component, field, value, lo, hi))
        }
    }

    /// `value > zero` (`T::default()`), or a [`ConfigError::nonzero`].
    pub(crate) fn nonzero<T: PartialOrd + Default + Debug>(
        component: &'static str,
        field: &'static str,
        value: T,
    ) -> Result<T, ConfigError> {
        if value > T::default() {
            Ok(value)
        } else {
            Err(ConfigError::nonzero(component, field, value))
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} config: {} = {} ({})",
            self.component, self.field, self.value, self.allowed
        )
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::check;
    use std::time::Duration;

    #[test]
    fn checks_pass_allowed_values_through() {
        assert_eq!(check::at_least("queue", "workers", 3, 1), Ok(3));
        assert_eq!(check::in_range("cb", "rate", 0.5, 0.0, 1.0), Ok(0.5));
        assert_eq!(
            check::nonzero("fetch", "timeout", Duration::from_millis(1)),
            Ok(Duration::from_millis(1))
        );
    }

    #[test]
    fn checks_name_the_field_value_and_range() {
        let e = check::at_least("queue", "workers", 0, 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid queue config: workers = 0 (must be at least 1)"
        );
        let e = check::in_range("cb", "rate", f64::NAN, 0.0, 1.0).unwrap_err();
        assert_eq!(e.field(), "rate");
        assert_eq!(e.allowed(), "must be between 0.0 and 1.0");
        let e = check::nonzero("fetch", "timeout", Duration::ZERO).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid fetch config: timeout = 0ns (must be greater than zero)"
        );
    }
}
