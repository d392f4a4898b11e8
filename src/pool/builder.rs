//! [`PoolBuilder`]: configures, validates and starts a [`Pool`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::maintenance::maintain;
use super::manager::Manager;
use super::service::Pool;
use super::shared::{Config, Inner};
use crate::error::check;
use crate::ConfigError;

/// The component named in this builder's [`ConfigError`]s.
const POOL: &str = "pool";

/// Default [`PoolBuilder::max_size`].
const DEFAULT_MAX_SIZE: usize = 20;
/// Default [`PoolBuilder::acquire_timeout`].
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`PoolBuilder::max_lifetime`].
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Default [`PoolBuilder::idle_timeout`].
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

impl<M: Manager> Pool<M> {
    /// A builder with the defaults: `min_size` 0, `max_size` 20,
    /// `acquire_timeout` 30 s, `max_lifetime` 30 min, `idle_timeout` 10 min.
    pub fn builder() -> PoolBuilder<M> {
        PoolBuilder {
            min_size: 0,
            max_size: DEFAULT_MAX_SIZE,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            _manager: PhantomData,
            name: crate::trace::Name::Borrowed("pool"),
        }
    }
}

/// Configures and builds a [`Pool`]; from [`Pool::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct PoolBuilder<M> {
    min_size: usize,
    max_size: usize,
    acquire_timeout: Duration,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
    _manager: PhantomData<fn() -> M>,
    name: crate::trace::Name,
}

impl<M> fmt::Debug for PoolBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("min_size", &self.min_size)
            .field("max_size", &self.max_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl<M: Manager> PoolBuilder<M> {
    /// The instance name every metric of this pool carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"pool"`.
    #[must_use = "call .build(manager) to get a Pool"]
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Resources the pool keeps open even when idle (default 0). They are
    /// created in the background after `build` and re-created when closed
    /// (lifetime, failed recycle); `idle_timeout` never shrinks the pool
    /// below this. Must not exceed `max_size`.
    pub fn min_size(mut self, min_size: usize) -> Self {
        self.min_size = min_size;
        self
    }

    /// Most resources open at once, idle or checked out (default 20); at
    /// least 1. Acquirers beyond it wait in line.
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Longest an [`acquire`](Pool::acquire) may take, waiting, creating
    /// and recycling included (default 30 s; must be greater than zero;
    /// `Duration::MAX` means no limit). Also bounds each background create.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Resources older than this are closed when they are next returned or
    /// found idle (default 30 min; `None` keeps them forever). Each
    /// resource's lifetime is shortened by a random amount of up to 10% so
    /// resources opened together do not all close together. Must be
    /// greater than zero; `Duration::MAX` means no limit, like `None`.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Idle resources beyond `min_size` are closed after sitting unused
    /// this long (default 10 min; `None` keeps them). Must be greater than
    /// zero; `Duration::MAX` means no limit, like `None`.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Validates the configuration and starts the pool.
    ///
    /// Returns at once: the `min_size` resources are created by a
    /// background task, which ends when the pool is dropped or closed.
    /// Must be called within a Tokio runtime, which runs that task and the
    /// pool's timers.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field if `max_size` is 0, `min_size`
    /// exceeds `max_size`, a duration is zero, or no Tokio runtime is
    /// running (field `runtime`).
    pub fn build(self, manager: M) -> Result<Pool<M>, ConfigError> {
        let max_size = check::at_least(POOL, "max_size", self.max_size, 1)?;
        if self.min_size > max_size {
            return Err(ConfigError::new(
                POOL,
                "min_size",
                self.min_size.to_string(),
                format!("must not exceed max_size ({max_size})"),
            ));
        }
        let acquire_timeout = check::nonzero(POOL, "acquire_timeout", self.acquire_timeout)?;
        if self.max_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                POOL,
                "max_lifetime",
                "Some(0s)",
                "must be greater than zero, or None for no limit",
            ));
        }
        if self.idle_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                POOL,
                "idle_timeout",
                "Some(0s)",
                "must be greater than zero, or None for no limit",
            ));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(ConfigError::new(
                POOL,
                "runtime",
                "none",
                "build must be called inside a Tokio runtime: it spawns the pool's background task",
            ));
        };
        let config = Config {
            min_size: self.min_size,
            max_size,
            acquire_timeout,
            max_lifetime: self.max_lifetime,
            idle_timeout: self.idle_timeout,
        };
        let inner = Inner::new(manager, config);
        #[cfg(feature = "metrics")]
        let inner = inner.named(self.name);
        let inner = Arc::new(inner);
        runtime.spawn(maintain(Arc::downgrade(&inner), inner.maintenance.clone()));
        Ok(Pool::from_inner(inner))
    }
}
