//! [`TimeoutLayer`] and its builder.

use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use super::carry::{HttpExtensions, TaskLocal};
use super::service::Timeout;
use super::shared::{meter, Meter};
use crate::error::check;
use crate::time;
use crate::trace::Name;
use crate::ConfigError;

/// Applies [`Timeout`] to services: a deadline per call, enforced and made
/// known to every layer below. See the [module docs](super).
///
/// `K` says where requests carry the deadline besides the task (see
/// [`Carry`](super::Carry)): [`TaskLocal`] for any request type,
/// [`HttpExtensions`] for `http::Request`s.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::{HttpExtensions, TimeoutLayer};
///
/// // Any request type; the deadline travels with the task.
/// let any = TimeoutLayer::new(Duration::from_secs(2));
/// assert_eq!(any.timeout(), Some(Duration::from_secs(2)));
///
/// // A gRPC server: the caller's `grpc-timeout` counts, capped at 30 s.
/// let grpc = TimeoutLayer::builder()
///     .timeout(Duration::from_secs(30))
///     .carry(HttpExtensions::new().read_grpc_timeout())
///     .build()
///     .expect("valid timeout config");
/// assert!(grpc.carry().reads_grpc_timeout());
///
/// let err = TimeoutLayer::builder().timeout(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "timeout");
/// ```
#[derive(Clone, Copy)]
pub struct TimeoutLayer<K = TaskLocal> {
    timeout: Option<Duration>,
    carry: K,
    meter: Meter,
}

impl TimeoutLayer<TaskLocal> {
    /// A deadline `timeout` after each call, for any request type.
    /// `Duration::MAX` sets no limit of its own (deadlines already in force
    /// still apply); a zero timeout fails every call at once without
    /// calling the inner service (the builder refuses it).
    pub fn new(timeout: Duration) -> Self {
        TimeoutLayer {
            timeout: own_limit(timeout),
            carry: TaskLocal,
            meter: meter(Name::Borrowed("deadline")),
        }
    }

    /// A builder with the defaults: no limit of its own (only deadlines
    /// already in force), [`TaskLocal`].
    pub fn builder() -> TimeoutLayerBuilder<TaskLocal> {
        TimeoutLayerBuilder {
            timeout: Duration::MAX,
            carry: TaskLocal,
            name: Name::Borrowed("deadline"),
        }
    }
}

impl TimeoutLayer<HttpExtensions> {
    /// [`TimeoutLayer::new`] for `http::Request`s: a [`Deadline`](super::Deadline)
    /// already in the request's extensions is honoured, and the one in force
    /// is put there.
    pub fn http(timeout: Duration) -> Self {
        TimeoutLayer {
            timeout: own_limit(timeout),
            carry: HttpExtensions::new(),
            meter: meter(Name::Borrowed("deadline")),
        }
    }

    /// [`TimeoutLayer::http`] for gRPC servers: an incoming `grpc-timeout`
    /// is honoured too (see [`HttpExtensions::read_grpc_timeout`]). With
    /// `Duration::MAX` only the caller's deadline applies.
    ///
    /// tonic's own server (0.14) also enforces an incoming `grpc-timeout`,
    /// around every layer given to it, and answers `CANCELLED` when its
    /// timer fires first. What this layer adds is the deadline made known
    /// to the work below (retries, queues, calls to other servers, which
    /// then stop in time) and, through
    /// [`respond::into_status`](crate::respond), `DEADLINE_EXCEEDED`
    /// when it fires first (as it does on the same timer tick: tonic polls
    /// the layers before its own timer).
    pub fn grpc(timeout: Duration) -> Self {
        TimeoutLayer {
            timeout: own_limit(timeout),
            carry: HttpExtensions::new().read_grpc_timeout(),
            meter: meter(Name::Borrowed("deadline")),
        }
    }
}

/// `None` for a timeout that means "no limit" under the crate's duration
/// rule.
fn own_limit(timeout: Duration) -> Option<Duration> {
    (timeout < time::NEVER).then_some(timeout)
}

impl<K> TimeoutLayer<K> {
    /// The layer's own limit per call; `None` when it only applies
    /// deadlines already in force.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Where requests carry their deadline.
    pub fn carry(&self) -> &K {
        &self.carry
    }
}

impl<K: fmt::Debug> fmt::Debug for TimeoutLayer<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("timeout", &self.timeout)
            .field("carry", &self.carry)
            .finish()
    }
}

impl<S, K: Clone> Layer<S> for TimeoutLayer<K> {
    type Service = Timeout<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::new(inner, self.timeout, self.carry.clone(), self.meter)
    }
}

/// Builds a [`TimeoutLayer`]; see [`TimeoutLayer::builder`] for the
/// defaults.
#[derive(Clone, Debug)]
#[must_use = "call .build() to get a TimeoutLayer"]
pub struct TimeoutLayerBuilder<K = TaskLocal> {
    timeout: Duration,
    carry: K,
    name: Name,
}

impl<K> TimeoutLayerBuilder<K> {
    /// The instance name every metric of this layer carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"deadline"`.
    #[must_use = "call .build() to get a TimeoutLayer"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The time allowed per call, from the moment the layer receives it.
    /// Must be more than zero; `Duration::MAX` (the default) sets no limit
    /// of its own, so the layer only applies (and passes on) deadlines
    /// already in force: a caller's `grpc-timeout`, a `Deadline` in the
    /// request, an outer layer's.
    #[must_use = "call .build() to get a TimeoutLayer"]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where requests carry their deadline besides the task: any
    /// [`Carry`](super::Carry), such as [`HttpExtensions`].
    #[must_use = "call .build() to get a TimeoutLayer"]
    pub fn carry<K2>(self, carry: K2) -> TimeoutLayerBuilder<K2> {
        TimeoutLayerBuilder {
            timeout: self.timeout,
            carry,
            name: self.name,
        }
    }

    /// Checks the settings and builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for field `timeout` when it is zero.
    pub fn build(self) -> Result<TimeoutLayer<K>, ConfigError> {
        check::nonzero("deadline", "timeout", self.timeout)?;
        Ok(TimeoutLayer {
            timeout: own_limit(self.timeout),
            carry: self.carry,
            meter: meter(self.name),
        })
    }
}
