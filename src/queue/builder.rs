//! [`TaskQueueBuilder`]: checks the settings, spawns the workers and the
//! janitor, and returns the [`TaskQueue`].

use std::sync::Arc;
use std::time::Duration;

use tower_service::Service;

use super::service::TaskQueue;
use super::shared::{janitor, Shared};
use super::worker::run_worker;
use crate::error::check;
use crate::ConfigError;

/// The component named in this module's [`ConfigError`]s.
const COMPONENT: &str = "queue";

impl TaskQueue<(), (), ()> {
    /// A builder with the defaults: 5 workers, capacity 1000, results kept
    /// 300 s, at most 10 000 results kept.
    pub fn builder() -> TaskQueueBuilder {
        TaskQueueBuilder::default()
    }
}

/// Builds a [`TaskQueue`]; see [`TaskQueue::builder`] for the defaults.
///
/// Nothing is checked until [`build`](TaskQueueBuilder::build), which
/// returns a [`ConfigError`] naming the first field out of range.
#[derive(Clone, Debug)]
#[must_use = "call .build(service) to get a TaskQueue"]
pub struct TaskQueueBuilder {
    workers: usize,
    capacity: usize,
    retain: Duration,
    max_retained: usize,
    name: crate::trace::Name,
}

impl Default for TaskQueueBuilder {
    fn default() -> Self {
        TaskQueueBuilder {
            workers: 5,
            capacity: 1_000,
            retain: Duration::from_secs(300),
            max_retained: 10_000,
            name: crate::trace::Name::Borrowed("queue"),
        }
    }
}

impl TaskQueueBuilder {
    /// The instance name every metric of this queue carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: `"queue"`.
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Number of workers, i.e. tasks run at the same time (default 5, at
    /// least 1). Each worker is a tokio task with its own clone of the inner
    /// service.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Most tasks waiting for a worker (default 1000, at least 1). When
    /// full, `submit` and `poll_ready` wait and `try_submit` returns
    /// [`QueueFull`](super::QueueFull).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long a finished task's status and result are kept when nobody
    /// is waiting for it (default 300 s). A result is forgotten as soon as
    /// it is taken. A small janitor task spawned by `build` drops expired
    /// results on time, even on an idle queue (it uses `tokio::time`, so the
    /// runtime needs its time driver); lookups and `stats` also check expiry
    /// first. Zero keeps nothing that no one waits for (and spawns no
    /// janitor); `Duration::MAX` means no limit (kept until taken or
    /// evicted by `max_retained`).
    pub fn retain_results(mut self, retain: Duration) -> Self {
        self.retain = retain;
        self
    }

    /// Most finished results kept at once (default 10 000); beyond it the
    /// oldest are forgotten before they expire. Enforced per table shard
    /// (8 shards), so the bound is this value rounded up to a multiple of 8.
    pub fn max_retained(mut self, max_retained: usize) -> Self {
        self.max_retained = max_retained;
        self
    }

    /// Spawns the workers on the current tokio runtime and returns the
    /// queue.
    ///
    /// The inner service is cloned once per worker; workers call
    /// `poll_ready` before every `call`, so layers inside the queue (limits,
    /// retries, breakers) apply per task. Wrap a service that is not
    /// `Clone` in `tower::buffer::Buffer`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `workers` or `capacity` is zero, or if called
    /// outside a tokio runtime (field `runtime`).
    pub fn build<S, Req>(
        self,
        service: S,
    ) -> Result<TaskQueue<Req, S::Response, S::Error>, ConfigError>
    where
        S: Service<Req> + Clone + Send + 'static,
        S::Future: Send,
        Req: Send + 'static,
        S::Response: Send + 'static,
        S::Error: Send + 'static,
    {
        let workers = check::at_least(COMPONENT, "workers", self.workers, 1)?;
        let capacity = check::at_least(COMPONENT, "capacity", self.capacity, 1)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                COMPONENT,
                "runtime",
                "none",
                "build() must be called inside a tokio runtime: it spawns the workers",
            )
        })?;
        let shared = Shared::new(workers, capacity, self.retain, self.max_retained);
        #[cfg(feature = "metrics")]
        let shared = shared.named(self.name);
        let shared = Arc::new(shared);
        for index in 0..workers {
            runtime.spawn(run_worker(shared.clone(), service.clone(), index));
        }
        if !shared.table.retain().is_zero() {
            runtime.spawn(janitor(Arc::downgrade(&shared), shared.table.janitor()));
        }
        Ok(TaskQueue::from_shared(shared))
    }
}
