//! [`FallbackLayer`] and its builder.

use std::any::TypeId;
use std::fmt;
use std::sync::{Arc, Mutex};

use tower_layer::Layer;

use super::service::Fallback;
use super::shared::{FallbackStats, Shared};
use super::strategy::{Backup, FromFn, NoFallback, Value};
use crate::classify::DefaultClassify;
use crate::ConfigError;

/// Applies [`Fallback`] to services: a call the classifier calls a
/// failure is answered by a value, a function of the failure, or a backup
/// service. See [the module docs](super).
///
/// Cheap to clone; clones, the services the layer makes and their clones
/// share one strategy, one hook and one [`FallbackStats`].
///
/// ```
/// use tower_patterns::classify::HttpClassify;
/// use tower_patterns::fallback::FallbackLayer;
///
/// // The sugar: every `Err` is answered with a clone of the value.
/// let layer = FallbackLayer::value(String::from("cached"));
/// assert_eq!(layer.stats().fallbacks, 0);
///
/// // The builder: HTTP failures (5xx, 429, 408, errors) answered by a function.
/// let layer = FallbackLayer::builder()
///     .from_fn(|_failed: Result<http::Response<String>, tower_patterns::BoxError>| {
///         http::Response::new("try again later".to_string())
///     })
///     .classify(HttpClassify)
///     .build()
///     .unwrap();
/// # let _ = layer;
///
/// // No strategy: refused.
/// let err = FallbackLayer::builder().build().unwrap_err();
/// assert_eq!(err.field(), "strategy");
/// ```
pub struct FallbackLayer<St, C = DefaultClassify, H = ()> {
    shared: Arc<Shared<St, H>>,
    classify: C,
}

impl<St, C: Clone, H> Clone for FallbackLayer<St, C, H> {
    fn clone(&self) -> Self {
        FallbackLayer {
            shared: Arc::clone(&self.shared),
            classify: self.classify.clone(),
        }
    }
}

impl<St: fmt::Debug, C, H> fmt::Debug for FallbackLayer<St, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("strategy", &self.shared.strategy)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl FallbackLayer<NoFallback> {
    /// A builder with the defaults: no strategy yet (choose one of
    /// [`value`](FallbackLayerBuilder::value),
    /// [`from_fn`](FallbackLayerBuilder::from_fn) or
    /// [`backup`](FallbackLayerBuilder::backup)), [`DefaultClassify`] (every
    /// `Err` fails), no hook.
    pub fn builder() -> FallbackLayerBuilder<NoFallback> {
        FallbackLayerBuilder {
            strategy: NoFallback,
            classify: DefaultClassify,
            hook: (),
            name: crate::trace::Name::Borrowed("fallback"),
        }
    }
}

impl<T> FallbackLayer<Value<T>>
where
    T: Send + Sync + 'static,
{
    /// Sugar: answers every failed call (every `Err`, by
    /// [`DefaultClassify`]) with a clone of `value`.
    pub fn value(value: T) -> Self {
        FallbackLayer::builder().value(value).finish()
    }
}

impl<F> FallbackLayer<FromFn<F>>
where
    F: Send + Sync + 'static,
{
    /// Sugar: answers every failed call (every `Err`, by
    /// [`DefaultClassify`]) with `f(failed)`, `failed` being the original
    /// result.
    pub fn from_fn(f: F) -> Self {
        FallbackLayer::builder().from_fn(f).finish()
    }
}

impl<B> FallbackLayer<Backup<B>>
where
    B: Send + 'static,
{
    /// Sugar: sends every failed call (every `Err`, by
    /// [`DefaultClassify`]) to `backup`, a service with the same request,
    /// response and error types. See [`Backup`] for what it costs.
    pub fn backup(backup: B) -> Self {
        FallbackLayer::builder().backup(backup).finish()
    }
}

impl<St, C, H> FallbackLayer<St, C, H> {
    /// A snapshot of the counts of every service this layer made.
    pub fn stats(&self) -> FallbackStats {
        self.shared.counters.stats()
    }

    /// The classifier deciding which calls fall back.
    pub fn classifier(&self) -> &C {
        &self.classify
    }
}

impl<S, St, C: Clone, H> Layer<S> for FallbackLayer<St, C, H> {
    type Service = Fallback<S, St, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Fallback::new(inner, Arc::clone(&self.shared), self.classify.clone())
    }
}

/// Builds a [`FallbackLayer`]; see [`FallbackLayer::builder`] for the
/// defaults.
#[derive(Clone)]
#[must_use = "call .build() to get a FallbackLayer"]
pub struct FallbackLayerBuilder<St, C = DefaultClassify, H = ()> {
    strategy: St,
    classify: C,
    hook: H,
    name: crate::trace::Name,
}

impl<St, C, H> FallbackLayerBuilder<St, C, H> {
    /// The instance name every metric of this layer carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"fallback"`.
    #[must_use = "call .build() to get a FallbackLayer"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl<St: fmt::Debug, C, H> fmt::Debug for FallbackLayerBuilder<St, C, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayerBuilder")
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl<St, C, H> FallbackLayerBuilder<St, C, H> {
    /// Answers a failed call with a clone of `value` (the response type
    /// must be `Clone`; for `http::Response`, which is not, use
    /// [`from_fn`](Self::from_fn)).
    #[must_use = "call .build() to get a FallbackLayer"]
    pub fn value<T>(self, value: T) -> FallbackLayerBuilder<Value<T>, C, H> {
        self.strategy(Value(value))
    }

    /// Answers a failed call with `f(failed)`: `failed` is the original
    /// result (`Err(error)`, or `Ok(response)` for a failed response such
    /// as an HTTP 503), owned, so the answer can carry it (in a response
    /// extension, say).
    #[must_use = "call .build() to get a FallbackLayer"]
    pub fn from_fn<F>(self, f: F) -> FallbackLayerBuilder<FromFn<F>, C, H> {
        self.strategy(FromFn(f))
    }

    /// Sends a failed call to `backup`, a service with the same request,
    /// response and error types; requests must be
    /// [`Replay`](crate::retry::Replay). See [`Backup`].
    #[must_use = "call .build() to get a FallbackLayer"]
    pub fn backup<B>(self, backup: B) -> FallbackLayerBuilder<Backup<B>, C, H> {
        self.strategy(Backup(Mutex::new(backup)))
    }

    fn strategy<St2>(self, strategy: St2) -> FallbackLayerBuilder<St2, C, H> {
        FallbackLayerBuilder {
            strategy,
            classify: self.classify,
            hook: self.hook,
            name: self.name,
        }
    }

    /// What counts as a failure that falls back: any
    /// [`Classify`](crate::classify::Classify), such as
    /// [`HttpClassify`](crate::classify::HttpClassify) (so a 503 response
    /// falls back too) or a closure. [`Outcome::Failure`] falls back; so
    /// does an error that is one of the crate's own rejections (an open
    /// breaker's [`Open`](crate::circuit_breaker::Open), a full limit's
    /// [`Overloaded`](crate::limit::Overloaded)), which is no answer at all.
    /// Each response future carries its own copy: keep it cheap to clone.
    ///
    /// [`Outcome::Failure`]: crate::classify::Outcome::Failure
    #[must_use = "call .build() to get a FallbackLayer"]
    pub fn classify<C2>(self, classify: C2) -> FallbackLayerBuilder<St, C2, H> {
        FallbackLayerBuilder {
            strategy: self.strategy,
            classify,
            hook: self.hook,
            name: self.name,
        }
    }

    /// Called with the original failed result of every call the fallback
    /// answers, before it answers: where to log or count the error the
    /// caller will not see. See [`OnFallback`](super::OnFallback).
    #[must_use = "call .build() to get a FallbackLayer"]
    pub fn on_fallback<H2>(self, hook: H2) -> FallbackLayerBuilder<St, C, H2> {
        FallbackLayerBuilder {
            strategy: self.strategy,
            classify: self.classify,
            hook,
            name: self.name,
        }
    }
}

impl<St, C, H> FallbackLayerBuilder<St, C, H>
where
    St: Send + Sync + 'static,
    H: Send + Sync + 'static,
{
    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `strategy` when none was chosen.
    pub fn build(self) -> Result<FallbackLayer<St, C, H>, ConfigError> {
        if TypeId::of::<St>() == TypeId::of::<NoFallback>() {
            return Err(ConfigError::new(
                "fallback",
                "strategy",
                "none",
                "choose one with value, from_fn or backup",
            ));
        }
        Ok(self.finish())
    }

    fn finish(self) -> FallbackLayer<St, C, H> {
        FallbackLayer {
            shared: Shared::new(self.strategy, self.hook, self.name),
            classify: self.classify,
        }
    }
}
