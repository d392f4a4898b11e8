//! The fixed-limit layer and its builder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tower_layer::Layer;

use super::policy::{HoldUntilBodyEnd, ReleaseOnResponse};
use super::service::ConcurrencyLimit;
use crate::error::check;
use crate::limit::gate::{Gate, LimitStats, Wait};
use crate::ConfigError;

/// Applies a fixed concurrency limit to a service: at most `limit` calls
/// run at once across every service this layer makes and all their clones.
///
/// The permit is reserved in `poll_ready` and released when the response
/// future completes or is dropped. Callers that find every permit taken
/// queue first come, first served, and by default wait as long as it takes
/// (as tower's `ConcurrencyLimit` does); [`max_wait`](Self::max_wait) and
/// [`reject_when_full`](Self::reject_when_full) bound the wait and fail with
/// [`Overloaded`](crate::limit::Overloaded) instead.
///
/// Unlike tower's layer, the permits live in the layer: every service it
/// makes shares one limit (an axum `Router` applying the layer to each route
/// still gets one limit), and [`stats`](Self::stats) reports for all of
/// them. A fresh limit comes from a fresh layer.
pub struct ConcurrencyLimitLayer<P = ReleaseOnResponse> {
    gate: Arc<Gate>,
    wait: Wait,
    _policy: PhantomData<fn() -> P>,
}

impl<P> Clone for ConcurrencyLimitLayer<P> {
    fn clone(&self) -> Self {
        ConcurrencyLimitLayer {
            gate: self.gate.clone(),
            wait: self.wait,
            _policy: PhantomData,
        }
    }
}

impl<P> fmt::Debug for ConcurrencyLimitLayer<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitLayer")
            .field("limit", &self.gate.limit.load(Ordering::Relaxed))
            .field("wait", &self.wait)
            .field("policy", &std::any::type_name::<P>())
            .finish()
    }
}

impl ConcurrencyLimitLayer {
    /// At most `limit` calls at once; callers wait for a permit as long as
    /// it takes.
    ///
    /// A `limit` of 0 would block every call forever, so it is raised to 1,
    /// and values above [`Semaphore::MAX_PERMITS`] are lowered to it; use
    /// [`builder`](Self::builder) to get a [`ConfigError`] instead.
    pub fn new(limit: usize) -> Self {
        Self::with(Gate::clamped(limit), Wait::Forever)
    }

    /// A builder that validates the limit.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_patterns::limit::ConcurrencyLimitLayer;
    ///
    /// let layer = ConcurrencyLimitLayer::builder()
    ///     .limit(10)
    ///     .max_wait(Duration::from_millis(50))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(layer.stats().limit, 10);
    ///
    /// let err = ConcurrencyLimitLayer::builder().limit(0).build().unwrap_err();
    /// assert_eq!(err.field(), "limit");
    /// ```
    pub fn builder() -> ConcurrencyLimitLayerBuilder {
        ConcurrencyLimitLayerBuilder {
            limit: None,
            wait: Wait::Forever,
            name: crate::trace::Name::Borrowed("limit"),
        }
    }

    fn with(gate: Gate, wait: Wait) -> Self {
        ConcurrencyLimitLayer {
            gate: Arc::new(gate),
            wait,
            _policy: PhantomData,
        }
    }

    /// Keeps each call's permit until its `http::Response` body has been read
    /// to the end, has failed, or is dropped, rather than releasing it when
    /// the response head arrives.
    ///
    /// The service's response becomes `http::Response<`[`LimitBody<B>`](crate::limit::LimitBody)`>`.
    /// Use it when the body is what costs (a streamed download, a proxied
    /// response): the limit then bounds bodies in flight, not just headers.
    pub fn hold_until_body_end(self) -> ConcurrencyLimitLayer<HoldUntilBodyEnd> {
        ConcurrencyLimitLayer {
            gate: self.gate,
            wait: self.wait,
            _policy: PhantomData,
        }
    }
}

impl<P> ConcurrencyLimitLayer<P> {
    /// Waits at most `max_wait` for a permit; after that the call fails with
    /// [`Overloaded`](crate::limit::Overloaded) and gives its place in the queue back. A zero duration
    /// is the same as [`reject_when_full`](Self::reject_when_full);
    /// `Duration::MAX` means no limit (wait as long as it takes).
    ///
    /// The refusal is the response of the next `call` (`poll_ready` returns
    /// `Ready(Ok)` so that the error travels like any other response error
    /// and the inner service is never called), as tower's `LoadShed` does.
    /// A bounded wait uses the tokio timer: it must run inside a tokio
    /// runtime with time enabled (the fast path, a free permit, does not).
    #[must_use = "the changed layer is returned"]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// Never waits: when every permit is taken the call fails at once with
    /// [`Overloaded`](crate::limit::Overloaded) (load shedding).
    #[must_use = "the changed layer is returned"]
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// A snapshot of the shared counters.
    pub fn stats(&self) -> LimitStats {
        self.gate.stats()
    }
}

impl<S, P> Layer<S> for ConcurrencyLimitLayer<P> {
    type Service = ConcurrencyLimit<S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit::with_gate(inner, self.gate.clone(), self.wait)
    }
}

/// Builds a [`ConcurrencyLimitLayer`], validating the limit; from
/// [`ConcurrencyLimitLayer::builder`].
#[must_use = "call .build() to get a ConcurrencyLimitLayer"]
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayerBuilder {
    limit: Option<usize>,
    wait: Wait,
    name: crate::trace::Name,
}

impl ConcurrencyLimitLayerBuilder {
    /// The instance name every metric of this limiter carries as its
    /// `name` label (feature `metrics`; see [`crate::metrics`]). Default: `"limit"`.
    #[must_use = "the changed builder is returned"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The most calls allowed at once (required; 1 to [`Semaphore::MAX_PERMITS`]).
    #[must_use = "the changed builder is returned"]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// See [`ConcurrencyLimitLayer::max_wait`].
    #[must_use = "the changed builder is returned"]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.wait = Wait::up_to(max_wait);
        self
    }

    /// See [`ConcurrencyLimitLayer::reject_when_full`].
    #[must_use = "the changed builder is returned"]
    pub fn reject_when_full(mut self) -> Self {
        self.wait = Wait::Never;
        self
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `limit` when it is unset, zero or above
    /// [`Semaphore::MAX_PERMITS`].
    pub fn build(self) -> Result<ConcurrencyLimitLayer, ConfigError> {
        const C: &str = "concurrency_limit";
        let Some(limit) = self.limit else {
            return Err(ConfigError::new(
                C,
                "limit",
                "unset",
                format!("required: between 1 and {}", Semaphore::MAX_PERMITS),
            ));
        };
        let limit = check::in_range(C, "limit", limit, 1, Semaphore::MAX_PERMITS)?;
        Ok(ConcurrencyLimitLayer::with(
            Gate::new(limit).named(self.name),
            self.wait,
        ))
    }
}
