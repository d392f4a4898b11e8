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
