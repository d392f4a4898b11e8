//! The workers: one claiming loop per handle that claims as many tasks as
//! there are free slots (`FOR UPDATE SKIP LOCKED`) and keeps the reaping and
//! cleanup on time, and one tokio task per claim slot that decodes its
//! task, runs it with heartbeats, and stores the outcome guarded by worker
//! id and attempt; a success is stored together with the claim of the
//! slot's next task, so a busy slot goes from task to task in one round
//! trip each.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_postgres::types::{ToSql, Type};
use tower::ServiceExt;
use tower_service::Service;

use super::config::millis;
use super::error::PgQueueError;
use super::recording::Outcome;
use super::shared::{Phase, Shared, Workers};
use super::sql::DEAD;
use super::stats::add;
use crate::queue::TaskId;
use crate::sync::lock;
use crate::trace::trace_event;
use crate::BoxError;

/// A row this worker claimed.
struct Claimed {
    id: i64,
    payload: String,
    attempt: i32,
    /// Seconds since it was due, at the claim (the server's clock).
    waited: f64,
    claimed_at: Instant,
}

/// Starts the claiming loop for `service`.
pub(super) fn spawn<Req, Res, S>(shared: Arc<Shared>, service: S) -> Workers
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let (phase, rx) = watch::channel(Phase::Running);
    #[cfg(feature = "metrics")]
    tokio::spawn(super::recording::sample_depth(shared.clone(), rx.clone()));
    let dispatcher = tokio::spawn(dispatch(shared, service, rx));
    Workers { phase, dispatcher }
}

async fn dispatch<Req, Res, S>(shared: Arc<Shared>, service: S, mut phase: watch::Receiver<Phase>)
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let cfg = &shared.cfg;
    let workers = cfg.workers;
    // Claimed tasks (running, or waiting for a run slot: `prefetch` more
    // than the workers), and the run slots themselves.
    let claims = workers + cfg.prefetch;
    let slots = Arc::new(Semaphore::new(claims));
    let run_slots = Arc::new(Semaphore::new(workers));
    let reap_every = (cfg.lease / 4).min(cfg.poll_interval);
    let mut last_reap: Option<Instant> = None;
    let mut last_cleanup = Instant::now();
    let mut failures = 0u32;
    shared.listen().await;
    loop {
        if *phase.borrow() != Phase::Running {
            break;
        }
        // Every slot may stay busy for long (tasks that run long, or slots
        // that go from task to task, claiming the next as they store the
        // last): the reaping and cleanup are kept on time regardless.
        let upkeep_at = last_reap
            .map_or_else(Instant::now, |t| crate::time::deadline(t, reap_every))
            .min(crate::time::deadline(
                last_cleanup,
                crate::time::capped(cfg.cleanup_interval),
            ));
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the slots are never closed"),
            _ = phase.changed() => continue,
            _ = tokio::time::sleep_until(upkeep_at) => {
                upkeep(&shared, &mut last_reap, &mut last_cleanup, reap_every).await;
                continue;
            }
        };
        let mut permits = vec![first];
        while let Ok(p) = slots.clone().try_acquire_owned() {
            permits.push(p);
        }
        upkeep(&shared, &mut last_reap, &mut last_cleanup, reap_every).await;
        let claimed = claim(&shared, permits.len()).await;
        let (rows, due) = match claimed {
            Ok(claimed) => claimed,
            Err(_e) => {
                trace_event!(WARN, error = %_e, "queue: claim failed");
                add(&shared.counters.db_errors, 1);
                drop(permits);
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(50 << failures.min(6)).min(cfg.poll_interval);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = phase.changed() => {}
                }
                continue;
            }
        };
        failures = 0;
        let full = rows.len() == permits.len();
        add(&shared.counters.claimed, rows.len() as u64);
        for row in rows {
            let permit = permits.pop().expect("no more rows than permits");
            let task = run_task(
                shared.clone(),
                service.clone(),
                row,
                permit,
                run_slots.clone(),
                phase.clone(),
            );
            tokio::spawn(task);
        }
        drop(permits);
        if full {
            continue;
        }
        // Idle: wait for a notification, the next run-at or lease end, the
        // safety poll, or a shutdown.
        let mut wait = cfg.poll_interval;
        match due {
            Some(ms) if ms <= 0.0 => {
                // Due but locked by another worker's claim, or a lease
                // that ran out: reap now, look again shortly.
                last_reap = None;
                wait = wait.min(Duration::from_millis(25));
            }
            Some(ms) => {
                if let Ok(due) = Duration::try_from_secs_f64(ms / 1000.0) {
                    wait = wait.min(due);
                }
            }
            None => {}
        }
        tokio::select! {
            _ = shared.hub.new.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = phase.changed() => {}
        }
    }
    // Wait for the tasks to finish or hand themselves back.
    let _all = slots.acquire_many(claims as u32).await;
}

/// Reaps expired leases every `reap_every` and deletes old rows every
/// cleanup interval, whichever is due.
async fn upkeep(
    shared: &Shared,
    last_reap: &mut Option<Instant>,
    last_cleanup: &mut Instant,
    reap_every: Duration,
) {
    if last_reap.is_none_or(|t| t.elapsed() >= reap_every) {
        *last_reap = Some(Instant::now());
        if let Err(_e) = reap(shared).await {
            add(&shared.counters.db_errors, 1);
        }
    }
    if last_cleanup.elapsed() >= crate::time::capped(shared.cfg.cleanup_interval) {
        *last_cleanup = Instant::now();
        if let Ok(n) = cleanup(shared).await {
            add(&shared.counters.cleaned, n);
        }
    }
}

/// Claims up to `n` tasks; also returns the milliseconds until the next
/// pending task is due or lease runs out (`None` if there is none).
async fn claim(shared: &Shared, n: usize) -> Result<(Vec<Claimed>, Option<f64>), PgQueueError> {
    let cfg = &shared.cfg;
    let lease = millis(cfg.lease);
    let n = n as i64;
    let rows = shared
        .work(
            0,
            &cfg.sql.claim,
            &[
                (&cfg.worker_id, Type::TEXT),
                (&lease, Type::FLOAT8),
                (&n, Type::INT8),
            ],
        )
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    let mut due = None;
    let claimed_at = Instant::now();
    for r in &rows {
        match r.get::<_, Option<i64>>(0) {
            Some(id) => claimed.push(Claimed {
                id,
                payload: r.get(1),
                attempt: r.get(2),
                waited: r.get::<_, Option<f64>>(4).unwrap_or(0.0),
                claimed_at,
            }),
            None => due = r.get(3),
        }
    }
    Ok((claimed, due))
}

/// Puts expired leases back (or buries them after their last attempt).
pub(super) async fn reap(shared: &Shared) -> Result<u64, PgQueueError> {
    let rows = shared.work(0, &shared.cfg.sql.reap, &[]).await?;
    let c = &shared.counters;
    add(&c.reaped, rows.len() as u64);
    for r in &rows {
        let status: &str = r.get(1);
        if status == DEAD {
            add(&c.dead, 1);
            shared.record_outcome(Outcome::Dead, 1);
        }
    }
    if !rows.is_empty() {
        trace_event!(INFO, count = rows.len(), "queue: expired leases reclaimed");
    }
    Ok(rows.len() as u64)
}

/// Deletes finished rows past their retention.
pub(super) async fn cleanup(shared: &Shared) -> Result<u64, PgQueueError> {
    let cfg = &shared.cfg;
    let keep = millis(cfg.retain_results);
    let keep_dead = millis(cfg.retain_dead);
    // `RETURNING` only to count; the rows are dropped at once.
    let rows = shared
        .work(
            0,
            &cfg.sql.cleanup,
            &[(&keep, Type::FLOAT8), (&keep_dead, Type::FLOAT8)],
        )
        .await?;
    Ok(rows.len() as u64)
}

/// Runs a guarded statement (`$1` id, `$2` worker id, `$3` attempt, then
/// `extra`) and returns its rows; retried a few times on a database error,
/// since a lost write means the task runs again.
async fn guarded(
    shared: &Shared,
    sql: &str,
    task: &Claimed,
    extra: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<tokio_postgres::Row>, PgQueueError> {
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&task.id, Type::INT8),
        (&shared.cfg.worker_id, Type::TEXT),
        (&task.attempt, Type::INT4),
    ];
    params.extend(extra.iter().cloned());
    let mut tries = 0;
    loop {
        let res = shared.work(task.id as u64, sql, &params).await;
        match res {
            Ok(rows) => return Ok(rows),
            Err(e) if tries >= 3 => return Err(e),
            Err(_) => {
                add(&shared.counters.db_errors, 1);
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 << tries)).await;
            }
        }
    }
}

/// Decrements the running gauge when a task's run ends, however it ends.
struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.counters.running.fetch_sub(1, Ordering::Relaxed);
        self.0.record_running();
    }
}

/// Runs a claimed task, and while each one completes with a next task
/// claimed in the same statement, that one too, on the same claim slot.
async fn run_task<Req, Res, S>(
    shared: Arc<Shared>,
    mut svc: S,
    mut task: Claimed,
    _claim: OwnedSemaphorePermit,
    run_slots: Arc<Semaphore>,
    mut phase: watch::Receiver<Phase>,
) where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
    S: Service<Req, Response = Res> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    while let Some(next) = run_one(&shared, &mut svc, task, &run_slots, &mut phase).await {
        task = next;
    }
}

/// Runs one claimed task and stores its outcome; returns the next task if
/// the success was stored together with a claim (see `complete`).
async fn run_one<Req, Res, S>(
    shared: &Shared,
    svc: &mut S,
    task: Claimed,
    run_slots: &Semaphore,
    phase: &mut watch::Receiver<Phase>,
) -> Option<Claimed>
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
    S: Service<Req, Response = Res> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
{
    let c = &shared.counters;
    add(&c.running, 1);
    shared.record_running();
    let _running = Running(shared);
    let req: Req = match serde_json::from_str(&task.payload) {
        Ok(req) => req,
        Err(e) => {
            let msg = format!(
                "payload could not be decoded as {}: {e}",
                std::any::type_name::<Req>()
            );
            trace_event!(WARN, id = task.id, error = %msg, "queue: corrupt task buried");
            let _ = guarded(shared, &shared.cfg.sql.bury, &task, &[(&msg, Type::TEXT)]).await;
            add(&c.corrupt, 1);
            add(&c.dead, 1);
            shared.record_outcome(Outcome::Dead, 1);
            return None;
        }
    };
    // Not started until it has a run slot and the service is ready: a
    // shutdown hands it back. The lease is renewed from the claim on.
    let started = AtomicBool::new(false);
    let phase_now = phase.clone();
    let work = async {
        let _slot = run_slots.acquire().await.expect("never closed");
        svc.ready().await.map_err(|e| e.into().to_string())?;
        if *phase_now.borrow() != Phase::Running {
            // A shutdown began while this task waited for its run slot:
            // it is handed back (the `until` below), never started, even
            // if the slot came free before that was noticed.
            std::future::pending::<()>().await;
        }
        started.store(true, Ordering::Relaxed);
        let began = shared.record_started(task.waited, task.claimed_at);
        let out = match AssertUnwindSafe(svc.call(req)).catch_unwind().await {
            Ok(Ok(res)) => Ok(res),
            Ok(Err(e)) => Err(e.into().to_string()),
            Err(panic) => Err(format!("task panicked: {}", panic_message(&*panic))),
        };
        shared.record_ran(began);
        out
    };
    tokio::pin!(work);
    let every = shared.cfg.heartbeat;
    let mut beat = tokio::time::interval_at(Instant::now() + every, every);
    let lease = millis(shared.cfg.lease);
    let stop = |p: Phase| {
        if started.load(Ordering::Relaxed) {
            p == Phase::Abort
        } else {
            p != Phase::Running
        }
    };
    let outcome: Result<Res, String> = loop {
        tokio::select! {
            out = &mut work => break out,
            _ = beat.tick() => {
                match guarded(shared, &shared.cfg.sql.heartbeat, &task, &[(&lease, Type::FLOAT8)]).await {
                    Ok(rows) if rows.is_empty() => {
                        // Reclaimed or cancelled: someone else owns it now.
                        trace_event!(WARN, id = task.id, "queue: lease lost, task dropped");
                        add(&c.lease_lost, 1);
                        return None;
                    }
                    Ok(_) => {}
                    Err(_) => add(&c.db_errors, 1),
                }
            }
            _ = until(phase, stop) => {
                release(shared, &task, !started.load(Ordering::Relaxed)).await;
                return None;
            }
        }
    };
    let mut next = None;
    let written = match outcome.map(|res| serde_json::to_string(&res)) {
        Ok(Ok(json)) => {
            let going_on = *phase.borrow() == Phase::Running;
            complete(shared, &task, &json, going_on)
                .await
                .map(|(stored, claimed)| {
                    next = claimed;
                    stored
                })
        }
        Ok(Err(e)) => fail(shared, &task, format!("result could not be encoded: {e}")).await,
        Err(msg) => fail(shared, &task, msg).await,
    };
    match written {
        Ok(true) => {}
        Ok(false) => {
            // A zombie: the lease was lost (the row was reclaimed or cancelled).
            trace_event!(WARN, id = task.id, "queue: outcome refused, lease lost");
            add(&c.refused, 1);
        }
        Err(_) => add(&c.db_errors, 1),
    }
    next
}

/// Stores a success; with `claim_next`, claims the worker's next task in
/// the same statement (one round trip instead of two: the claim slot goes
/// on at once instead of going back to the claiming loop). Returns whether
/// the outcome was stored (false: refused, the lease was lost) and the
/// claimed task. If that statement fails it is not retried as it is (its
/// claim may have gone through): the outcome is stored alone, with retries.
async fn complete(
    shared: &Shared,
    task: &Claimed,
    json: &str,
    claim_next: bool,
) -> Result<(bool, Option<Claimed>), PgQueueError> {
    let c = &shared.counters;
    let sql = &shared.cfg.sql;
    let stored = |n: usize| {
        if n > 0 {
            add(&c.completed, 1);
            shared.record_outcome(Outcome::Completed, 1);
        }
        n > 0
    };
    if claim_next {
        let lease = millis(shared.cfg.lease);
        let one = 1i64;
        let params: [(&(dyn ToSql + Sync), Type); 6] = [
            (&task.id, Type::INT8),
            (&shared.cfg.worker_id, Type::TEXT),
            (&task.attempt, Type::INT4),
            (&json, Type::TEXT),
            (&lease, Type::FLOAT8),
            (&one, Type::INT8),
        ];
        match shared
            .work(task.id as u64, &sql.complete_claim, &params)
            .await
        {
            Ok(rows) => {
                let claimed_at = Instant::now();
                let mut done = 0;
                let mut next = None;
                for r in &rows {
                    if r.get::<_, i32>(0) == 0 {
                        done += 1;
                    } else {
                        next = Some(Claimed {
                            id: r.get(1),
                            payload: r.get(2),
                            attempt: r.get(3),
                            waited: r.get::<_, Option<f64>>(4).unwrap_or(0.0),
                            claimed_at,
                        });
                    }
                }
                if next.is_some() {
                    add(&c.claimed, 1);
                }
                return Ok((stored(done), next));
            }
            Err(_) => add(&c.db_errors, 1),
        }
    }
    let rows = guarded(shared, &sql.complete, task, &[(&json, Type::TEXT)]).await?;
    Ok((stored(rows.len()), None))
}

/// Stores a failure: pending again after the backoff, or dead after the
/// last attempt. False if refused (lease lost).
async fn fail(shared: &Shared, task: &Claimed, msg: String) -> Result<bool, PgQueueError> {
    let delay = shared
        .cfg
        .backoff
        .delay(task.attempt.max(1) as u32, Duration::ZERO);
    let delay = millis(delay);
    let rows = guarded(
        shared,
        &shared.cfg.sql.fail,
        task,
        &[(&msg, Type::TEXT), (&delay, Type::FLOAT8)],
    )
    .await?;
    let Some(row) = rows.first() else {
        return Ok(false);
    };
    let status: &str = row.get(1);
    if status == DEAD {
        add(&shared.counters.dead, 1);
        shared.record_outcome(Outcome::Dead, 1);
    } else {
        add(&shared.counters.retried, 1);
        shared.record_outcome(Outcome::Retried, 1);
    }
    Ok(true)
}

/// Hands a claimed task back (lease cleared, pending now); an attempt that
/// never started is not counted.
async fn release(shared: &Shared, task: &Claimed, not_started: bool) {
    if let Ok(rows) = guarded(
        shared,
        &shared.cfg.sql.release,
        task,
        &[(&not_started, Type::BOOL)],
    )
    .await
    {
        if !rows.is_empty() {
            add(&shared.counters.released, 1);
            lock(&shared.released).push(TaskId(task.id as u64));
        }
    }
}

/// Resolves once the phase satisfies `f` (or the workers are gone).
async fn until(phase: &mut watch::Receiver<Phase>, f: impl Fn(Phase) -> bool) {
    let _ = phase.wait_for(|p| f(*p)).await;
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string payload".to_owned()
    }
}
