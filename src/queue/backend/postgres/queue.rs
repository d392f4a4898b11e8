//! [`PgQueue`]: submission, lookups, awaitable results, cancellation, the
//! dead list, cleanup, workers and shutdown.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_postgres::types::Type;
use tower_service::Service;

use super::config::{millis, Config};
use super::error::PgQueueError;
use super::listen::RECHECK;
use super::recording::Outcome;
use super::schema;
use super::shared::{Phase, Shared};
use super::sql::{CANCELLED, COMPLETED, DEAD, PENDING, RUNNING};
use super::stats::{add, PgQueueStats};
use super::task::{DeadTask, TaskOptions, TaskRecord};
use super::worker;
use crate::pool::postgres::PgManager;
use crate::pool::Pool;
use crate::queue::backend::Backend;
use crate::queue::{QueueClosed, Shutdown, ShutdownSummary, TaskError, TaskId, TaskStatus};
use crate::sync::lock;
use crate::BoxError;

/// A durable task queue on PostgreSQL: tasks and results are JSON rows in
/// one table, claimed by workers in any number of processes with leases.
///
/// A handle submits, looks up and waits for tasks; after
/// [`start`](Self::start) it also runs them. Clones share the handle (its
/// workers, its `LISTEN` connection and its counters). See the
/// [module docs](super) for an example and the guarantees.
pub struct PgQueue<Req, Res> {
    shared: Arc<Shared>,
    _types: PhantomData<fn(Req) -> Res>,
}

impl<Req, Res> PgQueue<Req, Res> {
    pub(super) fn from_config(cfg: Config, pool: Pool<PgManager>) -> Self {
        PgQueue {
            shared: Arc::new(Shared::new(cfg, pool)),
            _types: PhantomData,
        }
    }

    /// Creates the table (or migrates it to this crate's schema version).
    /// Safe to call from every process at startup: processes wait for each
    /// other, and a table already current is left alone.
    ///
    /// # Errors
    ///
    /// [`PgQueueError::SchemaTooNew`] if a newer crate migrated the table;
    /// a database error.
    pub async fn migrate(&self) -> Result<(), PgQueueError> {
        let mut conn = self.shared.pool.acquire().await?;
        schema::migrate(&mut conn, &self.shared.cfg.sql.table).await?;
        Ok(())
    }

    /// Looks a task up: `None` if the id is unknown or cleaned up.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn status(&self, id: TaskId) -> Result<Option<TaskStatus>, PgQueueError> {
        let row = self
            .shared
            .query(&self.shared.cfg.sql.status, &[(&db_id(id), Type::INT8)])
            .await?
            .into_iter()
            .next();
        Ok(row.map(|r| status_of(r.get(0))))
    }

    /// The task's whole row: attempts, last error, worker, payload.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn record(&self, id: TaskId) -> Result<Option<TaskRecord>, PgQueueError> {
        let row = self
            .shared
            .query(&self.shared.cfg.sql.record, &[(&db_id(id), Type::INT8)])
            .await?
            .into_iter()
            .next();
        Ok(row.map(|r| {
            let status: &str = r.get(0);
            TaskRecord {
                status: status_of(status),
                dead: status == DEAD,
                attempts: r.get::<_, i32>(1) as u32,
                max_attempts: r.get::<_, i32>(2) as u32,
                last_error: r.get(3),
                worker_id: r.get(4),
                payload: r.get(5),
            }
        }))
    }

    /// Cancels a pending or running task (a running one is dropped by its
    /// worker at its next heartbeat, and its result would be refused).
    /// False if the task is unknown or already finished.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn cancel(&self, id: TaskId) -> Result<bool, PgQueueError> {
        let rows = self
            .shared
            .query(&self.shared.cfg.sql.cancel, &[(&db_id(id), Type::INT8)])
            .await?;
        if !rows.is_empty() {
            self.shared.record_outcome(Outcome::Cancelled, 1);
        }
        Ok(!rows.is_empty())
    }

    /// The dead tasks, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn dead(&self, limit: usize) -> Result<Vec<DeadTask>, PgQueueError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let rows = self
            .shared
            .query(&self.shared.cfg.sql.dead, &[(&limit, Type::INT8)])
            .await?;
        Ok(rows
            .iter()
            .map(|r| DeadTask {
                id: TaskId(r.get::<_, i64>(0) as u64),
                attempts: r.get::<_, i32>(1) as u32,
                last_error: r.get(2),
                payload: r.get(3),
            })
            .collect())
    }

    /// Puts a dead task back to pending with a fresh set of attempts; false
    /// if it is not dead (unknown, or not dead).
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn requeue(&self, id: TaskId) -> Result<bool, PgQueueError> {
        let rows = self
            .shared
            .query(&self.shared.cfg.sql.requeue, &[(&db_id(id), Type::INT8)])
            .await?;
        Ok(!rows.is_empty())
    }

    /// Deletes completed and cancelled tasks finished longer ago than
    /// `retain_results`, and dead ones older than `retain_dead`; returns how
    /// many. Running workers call it every `cleanup_interval`.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn cleanup(&self) -> Result<u64, PgQueueError> {
        let n = worker::cleanup(&self.shared).await?;
        add(&self.shared.counters.cleaned, n);
        Ok(n)
    }

    /// Reclaims tasks whose lease ran out now (workers do it on their own
    /// every quarter lease); returns how many.
    ///
    /// # Errors
    ///
    /// A database error.
    pub async fn reclaim_expired(&self) -> Result<u64, PgQueueError> {
        worker::reap(&self.shared).await
    }

    /// Stops this handle's workers: no more claims; a claimed task not yet
    /// started (its service not ready) is handed back at once (lease
    /// cleared, its attempt not counted); running tasks finish until the
    /// deadline, and any still running then are dropped and handed back
    /// for another worker. Submits through this handle then fail with
    /// [`QueueClosed`]. The summary lists the handed-back tasks in
    /// [`released`](ShutdownSummary::released); `failed` counts attempts
    /// that failed (retried or dead) during the shutdown.
    pub async fn shutdown(&self, how: Shutdown) -> ShutdownSummary {
        let shared = &*self.shared;
        shared.closed.store(true, Ordering::Release);
        let Some(workers) = lock(&shared.workers).take() else {
            return ShutdownSummary::default();
        };
        let c = &shared.counters;
        let completed = c.completed.load(Ordering::Relaxed);
        let failed = c.retried.load(Ordering::Relaxed) + c.dead.load(Ordering::Relaxed);
        let mut dispatcher = workers.dispatcher;
        let deadline_reached = match how {
            Shutdown::Graceful(d) => {
                let _ = workers.phase.send(Phase::Draining);
                tokio::time::timeout(crate::time::capped(d), &mut dispatcher)
                    .await
                    .is_err()
            }
            Shutdown::Now => c.running.load(Ordering::Relaxed) > 0,
        };
        if deadline_reached || how == Shutdown::Now {
            let _ = workers.phase.send(Phase::Abort);
            let _ = dispatcher.await;
        }
        ShutdownSummary {
            completed: c.completed.load(Ordering::Relaxed) - completed,
            failed: c.retried.load(Ordering::Relaxed) + c.dead.load(Ordering::Relaxed) - failed,
            cancelled: Vec::new(),
            deadline_reached,
            released: std::mem::take(&mut *lock(&shared.released)),
        }
    }

    /// A snapshot of this process's counters for this queue.
    pub fn stats(&self) -> PgQueueStats {
        self.shared.counters.snapshot()
    }

    /// The id this handle's workers write into the rows they claim.
    pub fn worker_id(&self) -> &str {
        &self.shared.cfg.worker_id
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.shared.cfg.sql.table
    }
}

impl<Req, Res> PgQueue<Req, Res>
where
    Req: Serialize,
{
    /// Submits a request to run now; resolves to its id once the row is
    /// committed (so it survives a crash of this process from then on).
    ///
    /// # Errors
    ///
    /// [`PgQueueError::Closed`] after [`shutdown`](Self::shutdown),
    /// [`PgQueueError::Encode`] if the request does not serialize, a pool
    /// or database error.
    pub async fn submit(&self, req: Req) -> Result<TaskId, PgQueueError> {
        self.submit_with(req, TaskOptions::new()).await
    }

    /// Submits a request to run at `at` (or as soon as a worker is free
    /// after it). Errors as [`submit`](Self::submit).
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_at(&self, req: Req, at: SystemTime) -> Result<TaskId, PgQueueError> {
        self.submit_with(req, TaskOptions::new().at(at)).await
    }

    /// Submits a request to run `delay` after the submit commits.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_after(&self, req: Req, delay: Duration) -> Result<TaskId, PgQueueError> {
        self.submit_with(req, TaskOptions::new().after(delay)).await
    }

    /// Submits a request with [`TaskOptions`]. With a key already used, no
    /// task is added and the first task's id is returned.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit).
    pub async fn submit_with(&self, req: Req, opts: TaskOptions) -> Result<TaskId, PgQueueError> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PgQueueError::Closed(QueueClosed));
        }
        let payload = serde_json::to_string(&req).map_err(PgQueueError::Encode)?;
        let max_attempts = shared.cfg.max_attempts as i32;
        let after = opts.after.map(millis);
        let sql = &shared.cfg.sql;
        loop {
            let rows = shared
                .query(
                    &sql.insert,
                    &[
                        (&payload, Type::TEXT),
                        (&max_attempts, Type::INT4),
                        (&opts.at, Type::TIMESTAMPTZ),
                        (&after, Type::FLOAT8),
                        (&opts.key, Type::TEXT),
                    ],
                )
                .await?;
            if let Some(row) = rows.first() {
                add(&shared.counters.submitted, 1);
                return Ok(TaskId(row.get::<_, i64>(0) as u64));
            }
            // The key is taken: the first task's id (a new statement, so it
            // sees a row another transaction committed while we waited on
            // it). If cleanup removed that row meanwhile, insert again.
            let rows = shared
                .query(&sql.by_key, &[(&opts.key, Type::TEXT)])
                .await?;
            if let Some(row) = rows.first() {
                add(&shared.counters.deduplicated, 1);
                return Ok(TaskId(row.get::<_, i64>(0) as u64));
            }
        }
    }
}

impl<Req, Res> PgQueue<Req, Res>
where
    Res: DeserializeOwned,
{
    /// Waits for the task to finish and resolves to its outcome: the
    /// result, [`TaskError::Failed`] with the last error if it is dead,
    /// [`TaskError::Cancelled`], or [`TaskError::NotFound`]. Woken by
    /// `NOTIFY` (the poll interval is only a safety net). Unlike the
    /// in-memory queue, reading a result does not remove it.
    ///
    /// Database errors while waiting are waited out (the task is still in
    /// the table); bound the wait with `tokio::time::timeout`. A stored
    /// result that no longer decodes as `Res` is `TaskError::Failed`.
    pub async fn result(&self, id: TaskId) -> Result<Res, TaskError<String>> {
        let shared = &*self.shared;
        shared.listen().await;
        let mut done = shared.hub.done.subscribe();
        let want = db_id(id);
        loop {
            if let Ok(Some(out)) = self.outcome(id).await {
                return out;
            }
            let wait = async {
                loop {
                    match done.recv().await {
                        Ok(got) if got == want || got == RECHECK => return,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => return,
                        Err(RecvError::Closed) => std::future::pending().await,
                    }
                }
            };
            let _ = tokio::time::timeout(shared.cfg.poll_interval, wait).await;
        }
    }

    /// The outcome if the task is finished (`None` while it is not).
    async fn outcome(
        &self,
        id: TaskId,
    ) -> Result<Option<Result<Res, TaskError<String>>>, PgQueueError> {
        let row = self
            .shared
            .query(&self.shared.cfg.sql.outcome, &[(&db_id(id), Type::INT8)])
            .await?
            .into_iter()
            .next();
        let Some(row) = row else {
            return Ok(Some(Err(TaskError::NotFound(id))));
        };
        let status: &str = row.get(0);
        Ok(match status {
            COMPLETED => {
                let json: Option<String> = row.get(1);
                Some(
                    serde_json::from_str(json.as_deref().unwrap_or("null")).map_err(|e| {
                        TaskError::Failed(format!(
                            "result could not be decoded as {}: {e}",
                            std::any::type_name::<Res>()
                        ))
                    }),
                )
            }
            DEAD => Some(Err(TaskError::Failed(
                row.get::<_, Option<String>>(2).unwrap_or_default(),
            ))),
            CANCELLED => Some(Err(TaskError::Cancelled)),
            _ => None,
        })
    }
}

impl<Req, Res> PgQueue<Req, Res>
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
{
    /// Starts this handle's workers on `service`: they claim tasks from
    /// the table (in this and every other process), run them, and store the
    /// outcome. Returns once the workers are spawned (it opens the `LISTEN`
    /// connection first, waiting up to 5 s for it).
    ///
    /// # Errors
    ///
    /// [`PgQueueError::AlreadyStarted`] if workers run on this handle (or a
    /// clone); [`PgQueueError::Closed`] after a shutdown.
    pub async fn start<S>(&self, service: S) -> Result<(), PgQueueError>
    where
        S: Service<Req, Response = Res> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send,
    {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(PgQueueError::Closed(QueueClosed));
        }
        shared.listen().await;
        let mut slot = lock(&shared.workers);
        if slot.is_some() {
            return Err(PgQueueError::AlreadyStarted);
        }
        *slot = Some(worker::spawn(shared.clone(), service));
        Ok(())
    }
}

fn db_id(id: TaskId) -> i64 {
    id.0.min(i64::MAX as u64) as i64
}

fn status_of(s: &str) -> TaskStatus {
    match s {
        PENDING => TaskStatus::Pending,
        RUNNING => TaskStatus::Running,
        COMPLETED => TaskStatus::Completed,
        CANCELLED => TaskStatus::Cancelled,
        _ => TaskStatus::Failed,
    }
}

impl<Req, Res> Clone for PgQueue<Req, Res> {
    fn clone(&self) -> Self {
        PgQueue {
            shared: self.shared.clone(),
            _types: PhantomData,
        }
    }
}

impl<Req, Res> fmt::Debug for PgQueue<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cfg = &self.shared.cfg;
        f.debug_struct("PgQueue")
            .field("table", &cfg.sql.table)
            .field("worker_id", &cfg.worker_id)
            .field("workers", &cfg.workers)
            .field("lease", &cfg.lease)
            .finish_non_exhaustive()
    }
}

/// Submitting as a tower service: `call` resolves to the task's id once
/// the row is committed. `poll_ready` is always ready (the table has no
/// capacity limit; the pool's size bounds concurrent submits).
impl<Req, Res> Service<Req> for PgQueue<Req, Res>
where
    Req: Serialize + Send + 'static,
    Res: 'static,
{
    type Response = TaskId;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TaskId, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let queue = self.clone();
        Box::pin(async move { Ok(queue.submit(req).await?) })
    }
}

impl<Req, Res> Backend<Req> for PgQueue<Req, Res>
where
    Req: Serialize + Send + 'static,
    Res: DeserializeOwned + Send + 'static,
{
    type Response = Res;
    type Error = String;

    async fn submit(&self, req: Req) -> Result<TaskId, BoxError> {
        Ok(PgQueue::submit(self, req).await?)
    }

    async fn status(&self, id: TaskId) -> Result<Option<TaskStatus>, BoxError> {
        Ok(PgQueue::status(self, id).await?)
    }

    fn result(&self, id: TaskId) -> impl Future<Output = Result<Res, TaskError<String>>> + Send {
        PgQueue::result(self, id)
    }

    async fn cancel(&self, id: TaskId) -> Result<bool, BoxError> {
        Ok(PgQueue::cancel(self, id).await?)
    }

    fn shutdown(&self, how: Shutdown) -> impl Future<Output = ShutdownSummary> + Send {
        PgQueue::shutdown(self, how)
    }
}
