//! [`PgQueueBuilder`]: checks the settings and returns a [`PgQueue`].

use std::time::Duration;

use super::config::Config;
use super::queue::PgQueue;
use super::sql::Sql;
use crate::error::check;
use crate::pool::postgres::PgManager;
use crate::pool::Pool;
use crate::retry::Backoff;
use crate::ConfigError;

/// The component named in this module's [`ConfigError`]s.
const COMPONENT: &str = "queue.postgres";

/// Longest table name: `<table>_schema` and the notification channels
/// `<table>_new` / `<table>_done` must fit PostgreSQL's 63-byte identifiers.
const MAX_TABLE_LEN: usize = 48;

impl PgQueue<(), ()> {
    /// A builder with the defaults: table `tower_patterns_tasks`, 4
    /// workers, 30 s leases (heartbeat every 10 s), 5 attempts with
    /// `Backoff::exponential(1 s)` between them, a 5 s safety poll,
    /// results kept 24 h and dead tasks 7 days.
    pub fn builder() -> PgQueueBuilder {
        PgQueueBuilder::default()
    }
}

/// Builds a [`PgQueue`]; see [`PgQueue::builder`] for the defaults.
///
/// Nothing is checked until [`build`](PgQueueBuilder::build), which returns
/// a [`ConfigError`] naming the first field out of range.
#[derive(Clone, Debug)]
#[must_use = "call .build(pool) to get a PgQueue"]
pub struct PgQueueBuilder {
    table: String,
    workers: usize,
    prefetch: usize,
    statement_timeout: Duration,
    lease: Duration,
    heartbeat: Option<Duration>,
    max_attempts: u32,
    backoff: Backoff,
    poll_interval: Duration,
    retain_results: Duration,
    retain_dead: Duration,
    cleanup_interval: Duration,
    worker_id: Option<String>,
    name: Option<crate::trace::Name>,
}

impl Default for PgQueueBuilder {
    fn default() -> Self {
        PgQueueBuilder {
            table: "tower_patterns_tasks".to_owned(),
            workers: 4,
            prefetch: 0,
            statement_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            heartbeat: None,
            max_attempts: 5,
            backoff: Backoff::exponential(Duration::from_secs(1)),
            poll_interval: Duration::from_secs(5),
            retain_results: Duration::from_secs(24 * 3600),
            retain_dead: Duration::from_secs(7 * 24 * 3600),
            cleanup_interval: Duration::from_secs(60),
            worker_id: None,
            name: None,
        }
    }
}

impl PgQueueBuilder {
    /// The table holding the tasks (default `tower_patterns_tasks`): a
    /// lowercase identifier (`a-z`, `0-9`, `_`, not starting with a digit)
    /// of at most 48 bytes. The crate also creates `<table>_schema` (the
    /// schema version) and notifies on channels `<table>_new` and
    /// `<table>_done`. Queues on different tables are independent.
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Tasks this process runs at once after [`PgQueue::start`] (default 4,
    /// at least 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Tasks claimed ahead of the workers (default 0): a worker that
    /// finishes starts the next task at once instead of waiting for the
    /// round trip that stores its result and claims its next one, which
    /// raises throughput for very short tasks. Tasks
    /// claimed ahead are heartbeated like running ones and handed back by a
    /// shutdown, but no other process can run them meanwhile: keep it 0
    /// for long tasks spread over many processes.
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The longest one statement may take, round trip included (default
    /// 30 s; must be non-zero). A server or network that stops answering
    /// in the middle of a session would otherwise hold the call (a submit,
    /// a claim, a result) for as long as the socket lives: past this, the
    /// call fails with [`PgQueueError::Timeout`](super::PgQueueError::Timeout) and the connection is
    /// replaced. Set it above your slowest statement under load.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// How long a claim holds a task without a heartbeat (default 30 s, at
    /// least 100 ms). A worker that dies loses its tasks to other workers
    /// once this runs out; a shorter lease recovers faster and costs more
    /// heartbeats.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often a running task renews its lease (default a third of the
    /// lease; more than zero and less than the lease).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every);
        self
    }

    /// Attempts per task before it is dead (default 5, at least 1). An
    /// attempt whose worker died (lease ran out) counts.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The wait before each retry of a failed task (default
    /// `Backoff::exponential(1 s)`, full jitter). The task waits in the
    /// table with a run-at time, not in a worker. Its `factor` must be
    /// finite and at least 1.0 (field `backoff.factor`), its `max_delay`
    /// at least its base (`backoff.max_delay`).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The safety net under `LISTEN/NOTIFY` (default 5 s, more than zero):
    /// an idle worker, or a `result` waiter, looks at the table at least
    /// this often even if no notification arrives (a lost listener
    /// connection, a notification sent before it listened).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How long completed and cancelled tasks (and their results and
    /// idempotency keys) are kept before cleanup deletes them (default
    /// 24 h).
    pub fn retain_results(mut self, keep: Duration) -> Self {
        self.retain_results = keep;
        self
    }

    /// How long dead tasks are kept for inspection and
    /// [`PgQueue::requeue`] before cleanup deletes them (default 7 days).
    pub fn retain_dead(mut self, keep: Duration) -> Self {
        self.retain_dead = keep;
        self
    }

    /// How often running workers call [`PgQueue::cleanup`] (default 60 s,
    /// more than zero; `Duration::MAX` never).
    pub fn cleanup_interval(mut self, every: Duration) -> Self {
        self.cleanup_interval = every;
        self
    }

    /// The instance name every metric of this queue carries as its `name`
    /// label (feature `metrics`; see [`crate::metrics`]). Default: the
    /// table's name. The metrics are the [`TaskQueue`](crate::queue::TaskQueue)'s
    /// (`tower_patterns.queue.*`), as this process sees them; see the
    /// [module docs](super#metrics).
    pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// This process's worker id, stored in the rows it claims (default
    /// `<pid>-<random>`). Must be unique among live workers: completions
    /// are guarded by it.
    pub fn worker_id(mut self, id: impl Into<String>) -> Self {
        self.worker_id = Some(id.into());
        self
    }

    /// Checks the settings and returns the queue handle. Nothing touches
    /// the database until it is used; call [`PgQueue::migrate`] once at
    /// startup to create or upgrade the table.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tower_patterns::pool::{postgres::PgManager, Pool};
    /// use tower_patterns::queue::backend::postgres::PgQueue;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = Pool::builder().build(PgManager::from_url("postgresql://app@127.0.0.1/app")?)?;
    /// let queue: PgQueue<String, usize> = PgQueue::builder()
    ///     .table("emails")
    ///     .lease(Duration::from_secs(10))
    ///     .build(pool)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `table`, `workers`, `lease`, `heartbeat`,
    /// `max_attempts`, `backoff.factor`, `backoff.max_delay`,
    /// `poll_interval`, `statement_timeout`, `cleanup_interval` or `worker_id` (empty).
    pub fn build<Req, Res>(self, pool: Pool<PgManager>) -> Result<PgQueue<Req, Res>, ConfigError> {
        let t = &self.table;
        let ok = !t.is_empty()
            && t.len() <= MAX_TABLE_LEN
            && !t.starts_with(|c: char| c.is_ascii_digit())
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(ConfigError::new(
                COMPONENT,
                "table",
                format!("{t:?}"),
                "must be 1 to 48 of a-z, 0-9 and _, not starting with a digit",
            ));
        }
        check::at_least(COMPONENT, "workers", self.workers, 1)?;
        check::at_least(COMPONENT, "lease", self.lease, Duration::from_millis(100))?;
        let heartbeat = self.heartbeat.unwrap_or(self.lease / 3);
        if heartbeat.is_zero() || heartbeat >= self.lease {
            return Err(ConfigError::new(
                COMPONENT,
                "heartbeat",
                format!("{heartbeat:?}"),
                format!(
                    "must be more than zero and less than the lease ({:?})",
                    self.lease
                ),
            ));
        }
        check::in_range(
            COMPONENT,
            "max_attempts",
            self.max_attempts,
            1,
            i32::MAX as u32,
        )?;
        let b = &self.backoff;
        if !(b.factor.is_finite() && b.factor >= 1.0) {
            return Err(ConfigError::new(
                COMPONENT,
                "backoff.factor",
                format!("{:?}", b.factor),
                "must be a finite number of at least 1.0",
            ));
        }
        check::at_least(COMPONENT, "backoff.max_delay", b.max_delay, b.base)?;
        check::nonzero(COMPONENT, "poll_interval", self.poll_interval)?;
        check::nonzero(COMPONENT, "statement_timeout", self.statement_timeout)?;
        check::nonzero(COMPONENT, "cleanup_interval", self.cleanup_interval)?;
        let worker_id = match self.worker_id {
            Some(id) if id.is_empty() => {
                return Err(ConfigError::new(
                    COMPONENT,
                    "worker_id",
                    "\"\"",
                    "must not be empty",
                ))
            }
            Some(id) => id,
            None => format!("{}-{:08x}", std::process::id(), fastrand::u32(..)),
        };
        Ok(PgQueue::from_config(
            Config {
                sql: Sql::new(&self.table),
                workers: self.workers,
                prefetch: self.prefetch,
                lease: self.lease,
                heartbeat,
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                poll_interval: self.poll_interval,
                retain_results: self.retain_results,
                retain_dead: self.retain_dead,
                cleanup_interval: self.cleanup_interval,
                worker_id,
                statement_timeout: self.statement_timeout,
                name: self.name.unwrap_or_else(|| self.table.clone().into()),
            },
            pool,
        ))
    }
}
