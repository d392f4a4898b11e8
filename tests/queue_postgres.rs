//! `queue::backend::postgres::PgQueue` against a real PostgreSQL server.
//!
//! The server's URL comes from `TOWER_PATTERNS_PG_URL` (CI starts one with
//! `.ci/postgres.sh`). Without it each test says it is skipped and returns;
//! under CI it fails. Each test uses its own table, so they run in parallel.
//! Leases are short (1-2 s) so lease expiry is quick; every wait is a
//! condition wait with a deadline.
#![cfg(feature = "postgres")]

mod common;
use common::{pg_url, unique_name, wait_until};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Semaphore;
use tower::{service_fn, BoxError, Service};
use tower_patterns::pool::postgres::PgManager;
use tower_patterns::pool::Pool;
use tower_patterns::queue::backend::postgres::{
    PgQueue, PgQueueBuilder, PgQueueError, TaskOptions,
};
use tower_patterns::queue::backend::Backend;
use tower_patterns::queue::{Shutdown, TaskError, TaskQueue, TaskStatus};
use tower_patterns::retry::Backoff;

const LONG: Duration = Duration::from_secs(30);

fn pool(url: &str) -> Pool<PgManager> {
    Pool::builder()
        .max_size(8)
        .acquire_timeout(Duration::from_secs(10))
        .build(PgManager::from_url(url).unwrap())
        .unwrap()
}

/// Test settings: short lease, quick backoff, a slow safety poll (so a
/// prompt start proves NOTIFY, not polling).
fn builder(table: &str) -> PgQueueBuilder {
    PgQueue::builder()
        .table(table)
        .workers(2)
        .lease(Duration::from_secs(2))
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(200)))
        .poll_interval(Duration::from_secs(60))
}

async fn queue<Req, Res>(url: &str, b: PgQueueBuilder) -> PgQueue<Req, Res> {
    let q = b.build(pool(url)).unwrap();
    q.migrate().await.unwrap();
    q
}

fn doubler() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|n: u32| async move { Ok::<u32, BoxError>(n * 2) })
}

async fn sql(url: &str, stmt: &str) -> Vec<tokio_postgres::Row> {
    let conn = pool(url).acquire().await.unwrap();
    conn.query(stmt, &[]).await.unwrap()
}

#[tokio::test]
async fn submit_commits_and_a_worker_stores_the_result() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_basic");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    let id = q.submit(21).await.unwrap();
    // Committed: visible to another connection before any worker runs.
    let rows = sql(&url, &format!("SELECT status, payload::text FROM {t}")).await;
    assert_eq!(rows[0].get::<_, &str>(0), "pending");
    assert_eq!(rows[0].get::<_, &str>(1), "21");
    assert_eq!(q.status(id).await.unwrap(), Some(TaskStatus::Pending));

    q.start(doubler()).await.unwrap();
    let out = tokio::time::timeout(LONG, q.result(id)).await.unwrap();
    assert_eq!(out.unwrap(), 42);
    assert_eq!(q.status(id).await.unwrap(), Some(TaskStatus::Completed));
    let rec = q.record(id).await.unwrap().unwrap();
    assert_eq!((rec.attempts, rec.worker_id), (1, None));
    // Reading a result does not remove it.
    assert_eq!(q.result(id).await.unwrap(), 42);
    // The worker counts after its write commits, a moment after waiters wake.
    wait_until("the worker's counters", LONG, || async {
        let s = q.stats();
        ((s.submitted, s.claimed, s.completed) == (1, 1, 1)).then_some(())
    })
    .await;
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn a_task_submitted_to_an_idle_queue_starts_on_notify_not_on_the_poll() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_notify");
    // The safety poll is a minute: only NOTIFY can start the task in time.
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    q.start(doubler()).await.unwrap();
    // Let the claiming loop go idle (it finds nothing and waits).
    wait_until("the workers to go idle", LONG, || async {
        (q.stats().claimed == 0).then_some(())
    })
    .await;
    for n in 0..5 {
        let id = q.submit(n).await.unwrap();
        let out = tokio::time::timeout(Duration::from_secs(10), q.result(id))
            .await
            .expect("NOTIFY woke the idle worker and the waiter");
        assert_eq!(out.unwrap(), n * 2);
    }
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

/// A service that waits at a gate before answering `tag`.
fn gated(
    tag: &'static str,
    gate: Arc<Semaphore>,
) -> impl Service<u32, Response = String, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(move |_n: u32| {
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, BoxError>(tag.to_owned())
        }
    })
}

#[tokio::test]
async fn a_zombies_late_result_is_refused() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_zombie");
    // Worker A's heartbeat is far off: it will not notice it lost the lease
    // before it finishes (a process paused past its lease, in effect).
    let a: PgQueue<u32, String> = queue(
        &url,
        builder(&t)
            .worker_id("a")
            .workers(1) // busy with the task: it cannot claim the task back
            .lease(Duration::from_secs(60))
            .heartbeat(Duration::from_secs(59)),
    )
    .await;
    let gate = Arc::new(Semaphore::new(0));
    a.start(gated("from a", gate.clone())).await.unwrap();
    let id = a.submit(1).await.unwrap();
    wait_until("A to claim the task", LONG, || async {
        let r = a.record(id).await.unwrap().unwrap();
        (r.worker_id.as_deref() == Some("a")).then_some(())
    })
    .await;
    // A stalls (a GC pause, a partition): its lease runs out, B reclaims the
    // task and runs attempt 2.
    sql(
        &url,
        &format!("UPDATE {t} SET lease_until = now() - interval '1 second'"),
    )
    .await;
    let b: PgQueue<u32, String> = queue(&url, builder(&t).worker_id("b")).await;
    b.start(service_fn(|_n: u32| async {
        Ok::<_, BoxError>("from b".to_owned())
    }))
    .await
    .unwrap();
    let out = tokio::time::timeout(LONG, b.result(id)).await.unwrap();
    assert_eq!(out.unwrap(), "from b");

    // A wakes up and tries to store its result for attempt 1: refused.
    gate.add_permits(1);
    wait_until("A's result to be refused", LONG, || async {
        (a.stats().refused == 1).then_some(())
    })
    .await;
    assert_eq!(a.stats().completed, 0);
    assert_eq!(b.result(id).await.unwrap(), "from b");
    let rec = b.record(id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (TaskStatus::Completed, 2));
    b.shutdown(Shutdown::Graceful(LONG)).await;
    a.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn a_worker_that_goes_from_task_to_task_still_reaps_expired_leases() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_busy_reap");
    // One worker (reaping every lease / 4 = 500 ms) with a long backlog: it
    // stores each result and claims its next task in one statement, so its
    // claiming loop never gets a free slot until the backlog is gone.
    let q: PgQueue<u32, u32> = queue(&url, builder(&t).worker_id("a").workers(1)).await;
    const BACKLOG: u64 = 4_000;
    sql(
        &url,
        &format!(
            "INSERT INTO {t} (payload, max_attempts)
             SELECT to_jsonb(g), 3 FROM generate_series(1, {BACKLOG}) g"
        ),
    )
    .await;
    q.start(doubler()).await.unwrap();
    wait_until("the worker to be busy with the backlog", LONG, || async {
        (q.stats().completed >= 20).then_some(())
    })
    .await;
    // Another worker died holding a task: its lease has run out.
    sql(
        &url,
        &format!(
            "INSERT INTO {t} (payload, max_attempts, status, attempts, worker_id, lease_until)
             VALUES ('0', 3, 'running', 1, 'gone', now() - interval '1 second')"
        ),
    )
    .await;
    wait_until("the expired lease to be reaped", LONG, || async {
        (q.stats().reaped == 1).then_some(())
    })
    .await;
    // Reaped while the backlog was still being worked, not after it.
    let completed = q.stats().completed;
    assert!(
        completed < BACKLOG,
        "reaped only after the backlog ({completed} of {BACKLOG} done)"
    );
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_drops_the_task_at_its_next_heartbeat() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_lost");
    let a: PgQueue<u32, String> = queue(
        &url,
        builder(&t)
            .worker_id("a")
            .heartbeat(Duration::from_millis(100)),
    )
    .await;
    let gate = Arc::new(Semaphore::new(0));
    a.start(gated("from a", gate.clone())).await.unwrap();
    let id = a.submit(1).await.unwrap();
    wait_until("A to claim the task", LONG, || async {
        (a.stats().running == 1).then_some(())
    })
    .await;
    // Another worker owns it now (as after a reclaim).
    sql(
        &url,
        &format!("UPDATE {t} SET worker_id = 'b', attempts = 2"),
    )
    .await;
    wait_until("A to notice", LONG, || async {
        (a.stats().lease_lost == 1).then_some(())
    })
    .await;
    assert_eq!(a.stats().running, 0);
    assert_eq!(a.status(id).await.unwrap(), Some(TaskStatus::Running));
    a.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn failures_retry_after_the_backoff_then_go_dead_and_can_be_requeued() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_retry");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let healthy = Arc::new(AtomicBool::new(false));
    let svc = {
        let (starts, healthy) = (starts.clone(), healthy.clone());
        service_fn(move |n: u32| {
            starts.lock().unwrap().push(Instant::now());
            let ok = healthy.load(Ordering::SeqCst);
            async move {
                if ok {
                    Ok(n + 1)
                } else {
                    Err(BoxError::from(format!("upstream down for {n}")))
                }
            }
        })
    };
    q.start(svc).await.unwrap();
    let id = q.submit(7).await.unwrap();
    let out = tokio::time::timeout(LONG, q.result(id)).await.unwrap();
    match out {
        Err(TaskError::Failed(msg)) => assert_eq!(msg, "upstream down for 7"),
        other => panic!("expected the last error, got {other:?}"),
    }
    let rec = q.record(id).await.unwrap().unwrap();
    assert!(rec.dead);
    assert_eq!(
        (rec.status, rec.attempts, rec.max_attempts),
        (TaskStatus::Failed, 3, 3)
    );
    // Each retry waited in the table for its backoff (200 ms), not less.
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 3);
    for pair in starts.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(190),
            "{starts:?}"
        );
    }
    // The worker counts after its write commits, a moment after waiters wake.
    wait_until("the worker's counters", LONG, || async {
        let s = q.stats();
        ((s.retried, s.dead) == (2, 1)).then_some(())
    })
    .await;

    let dead = q.dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id, dead[0].attempts), (id, 3));
    assert_eq!(dead[0].last_error.as_deref(), Some("upstream down for 7"));
    assert_eq!(dead[0].payload, "7");

    healthy.store(true, Ordering::SeqCst);
    assert!(q.requeue(id).await.unwrap());
    assert!(
        !q.requeue(id).await.unwrap(),
        "only a dead task is requeued"
    );
    wait_until("the requeued task to complete", LONG, || async {
        (q.status(id).await.unwrap() == Some(TaskStatus::Completed)).then_some(())
    })
    .await;
    assert_eq!(q.result(id).await.unwrap(), 8);
    assert_eq!(q.record(id).await.unwrap().unwrap().attempts, 1);
    assert!(q.dead(10).await.unwrap().is_empty());
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn a_corrupt_row_goes_dead_with_a_clear_error_and_the_worker_carries_on() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_corrupt");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    // An old payload shape the worker's type cannot read.
    sql(
        &url,
        &format!("INSERT INTO {t} (payload, max_attempts) VALUES ('{{\"legacy\": true}}', 3)"),
    )
    .await;
    q.start(doubler()).await.unwrap();
    let good = q.submit(5).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, q.result(good))
            .await
            .unwrap()
            .unwrap(),
        10
    );
    let dead = wait_until("the corrupt row to be buried", LONG, || async {
        let d = q.dead(10).await.unwrap();
        (!d.is_empty()).then_some(d)
    })
    .await;
    let err = dead[0].last_error.clone().unwrap();
    assert!(err.contains("payload could not be decoded as u32"), "{err}");
    assert_eq!(
        dead[0].attempts, 1,
        "not retried: a decode error is permanent"
    );
    match q.result(dead[0].id).await {
        Err(TaskError::Failed(msg)) => assert_eq!(msg, err),
        other => panic!("{other:?}"),
    }
    // The worker counts after its write commits, a moment after waiters wake.
    wait_until("the worker's counters", LONG, || async {
        let s = q.stats();
        ((s.corrupt, s.completed) == (1, 1)).then_some(())
    })
    .await;
    // Still working.
    let again = q.submit(6).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, q.result(again))
            .await
            .unwrap()
            .unwrap(),
        12
    );
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_tasks_id() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_idem");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    let opts = TaskOptions::new().key("order-17");
    let first = q.submit_with(1, opts.clone()).await.unwrap();
    let second = q.submit_with(2, opts).await.unwrap();
    assert_eq!(first, second);
    let other = q
        .submit_with(3, TaskOptions::new().key("order-18"))
        .await
        .unwrap();
    assert_ne!(other, first);
    let rows = sql(&url, &format!("SELECT payload::text FROM {t} ORDER BY id")).await;
    let payloads: Vec<&str> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(payloads, ["1", "3"]);
    let s = q.stats();
    assert_eq!((s.submitted, s.deduplicated), (2, 1));

    // Concurrent submits with one key: one task.
    let ids =
        futures::future::join_all((0..8).map(|n| q.submit_with(n, TaskOptions::new().key("race"))))
            .await;
    let ids: Vec<_> = ids.into_iter().map(Result::unwrap).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

#[tokio::test]
async fn scheduled_tasks_wait_for_their_time() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_sched");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    q.start(doubler()).await.unwrap();
    let later = q
        .submit_after(1, Duration::from_millis(1_500))
        .await
        .unwrap();
    let far = q
        .submit_at(2, SystemTime::now() + Duration::from_secs(3_600))
        .await
        .unwrap();
    let past = q
        .submit_at(3, SystemTime::now() - Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, q.result(past))
            .await
            .unwrap()
            .unwrap(),
        6
    );
    assert_eq!(q.status(later).await.unwrap(), Some(TaskStatus::Pending));
    // The idle worker sleeps until the run-at time (not the 60 s poll).
    assert_eq!(
        tokio::time::timeout(LONG, q.result(later))
            .await
            .unwrap()
            .unwrap(),
        2
    );
    let rows = sql(
        &url,
        &format!("SELECT started_at >= run_at, run_at - created_at >= interval '1.5 s' FROM {t} WHERE id = {}", later.as_u64()),
    )
    .await;
    assert!(rows[0].get::<_, bool>(0) && rows[0].get::<_, bool>(1));
    assert_eq!(q.status(far).await.unwrap(), Some(TaskStatus::Pending));
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

/// A service whose readiness waits at a gate (a claimed task waits there,
/// not started).
#[derive(Clone)]
struct NotReady {
    open: Arc<AtomicBool>,
    waiting: Arc<AtomicUsize>,
}

impl Service<u32> for NotReady {
    type Response = u32;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<u32, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.open.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Never woken: the shutdown takes the task away.
        let _ = cx;
        Poll::Pending
    }

    fn call(&mut self, n: u32) -> Self::Future {
        Box::pin(async move { Ok(n) })
    }
}

#[tokio::test]
async fn graceful_shutdown_hands_back_claimed_tasks_that_did_not_start() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_shut");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    let svc = NotReady {
        open: Arc::new(AtomicBool::new(false)),
        waiting: Arc::new(AtomicUsize::new(0)),
    };
    let a = q.submit(1).await.unwrap();
    let b = q.submit(2).await.unwrap();
    q.start(svc.clone()).await.unwrap();
    wait_until(
        "both tasks claimed and waiting for readiness",
        LONG,
        || async { (svc.waiting.load(Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
    assert_eq!(q.status(a).await.unwrap(), Some(TaskStatus::Running));
    let summary = q.shutdown(Shutdown::Graceful(LONG)).await;
    let mut released = summary.released.clone();
    released.sort();
    assert_eq!(released, [a, b]);
    assert!(!summary.deadline_reached);
    assert_eq!(q.stats().released, 2);
    for id in [a, b] {
        let rec = q.record(id).await.unwrap().unwrap();
        assert_eq!(rec.status, TaskStatus::Pending);
        assert_eq!(
            (rec.attempts, rec.worker_id),
            (0, None),
            "lease cleared, attempt not counted"
        );
    }
    assert!(matches!(q.submit(3).await, Err(PgQueueError::Closed(_))));
    // Nothing lost: another worker runs them.
    let next: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    next.start(doubler()).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, next.result(a))
            .await
            .unwrap()
            .unwrap(),
        2
    );
    assert_eq!(
        tokio::time::timeout(LONG, next.result(b))
            .await
            .unwrap()
            .unwrap(),
        4
    );
    next.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn graceful_shutdown_lets_running_tasks_finish_and_hands_back_the_rest_at_the_deadline() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_deadline");
    let q: PgQueue<u32, String> = queue(&url, builder(&t)).await;
    let gate = Arc::new(Semaphore::new(0));
    q.start(gated("done", gate.clone())).await.unwrap();
    let quick = q.submit(1).await.unwrap();
    let stuck = q.submit(2).await.unwrap();
    wait_until("both running", LONG, || async {
        (q.stats().running == 2).then_some(())
    })
    .await;
    // One finishes during the shutdown, the other never does.
    let shutdown = q.shutdown(Shutdown::Graceful(Duration::from_millis(1_500)));
    let release_one = async {
        gate.add_permits(1);
    };
    let (summary, ()) = tokio::join!(shutdown, release_one);
    assert!(summary.deadline_reached, "{summary:?} {:?}", q.stats());
    assert_eq!(summary.completed, 1);
    assert_eq!(summary.released.len(), 1);
    let (done, back) = if summary.released[0] == stuck {
        (quick, stuck)
    } else {
        (stuck, quick)
    };
    assert_eq!(q.status(done).await.unwrap(), Some(TaskStatus::Completed));
    let rec = q.record(back).await.unwrap().unwrap();
    assert_eq!(
        (rec.status, rec.worker_id, rec.attempts),
        (TaskStatus::Pending, None, 1)
    );
}

#[tokio::test]
async fn cancel_stops_a_pending_task_and_result_says_so() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_cancel");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    let id = q.submit(1).await.unwrap();
    assert!(q.cancel(id).await.unwrap());
    assert!(!q.cancel(id).await.unwrap());
    assert!(matches!(q.result(id).await, Err(TaskError::Cancelled)));
    q.start(doubler()).await.unwrap();
    let other = q.submit(2).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, q.result(other))
            .await
            .unwrap()
            .unwrap(),
        4
    );
    assert_eq!(q.status(id).await.unwrap(), Some(TaskStatus::Cancelled));
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn cleanup_deletes_finished_rows_past_retention_and_keeps_the_rest() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_clean");
    let q: PgQueue<u32, u32> = queue(
        &url,
        builder(&t)
            .retain_results(Duration::ZERO)
            .retain_dead(Duration::from_secs(3_600)),
    )
    .await;
    q.start(doubler()).await.unwrap();
    let done = q.submit(1).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, q.result(done))
            .await
            .unwrap()
            .unwrap(),
        2
    );
    let pending = q.submit_after(2, Duration::from_secs(3_600)).await.unwrap();
    sql(&url, &format!("INSERT INTO {t} (payload, max_attempts, status, finished_at) VALUES ('9', 1, 'dead', now())")).await;
    wait_until("the finished row to be older than now()", LONG, || async {
        (q.cleanup().await.unwrap() == 1).then_some(())
    })
    .await;
    assert_eq!(q.status(done).await.unwrap(), None);
    assert!(matches!(q.result(done).await, Err(TaskError::NotFound(_))));
    assert_eq!(q.status(pending).await.unwrap(), Some(TaskStatus::Pending));
    assert_eq!(q.dead(10).await.unwrap().len(), 1, "dead rows keep longer");
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_schema");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    // Idempotent, and safe when processes start together.
    let again = futures::future::join_all((0..4).map(|_| q.migrate())).await;
    assert!(again.iter().all(Result::is_ok));
    let v = sql(&url, &format!("SELECT version FROM {t}_schema")).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].get::<_, i32>(0), 1);
    sql(&url, &format!("UPDATE {t}_schema SET version = 99")).await;
    let err = q.migrate().await.unwrap_err();
    assert!(matches!(
        err,
        PgQueueError::SchemaTooNew {
            found: 99,
            known: 1,
            ..
        }
    ));
    assert!(err.to_string().contains("upgrade tower-patterns"), "{err}");
}

#[tokio::test]
async fn bad_settings_are_config_errors() {
    let Some(url) = pg_url() else { return };
    let bad = |b: PgQueueBuilder| b.build::<u32, u32>(pool(&url)).unwrap_err().field();
    assert_eq!(
        bad(PgQueue::builder().table("Robert'); DROP TABLE")),
        "table"
    );
    assert_eq!(bad(PgQueue::builder().table("")), "table");
    assert_eq!(bad(PgQueue::builder().workers(0)), "workers");
    assert_eq!(
        bad(PgQueue::builder().lease(Duration::from_millis(10))),
        "lease"
    );
    assert_eq!(
        bad(PgQueue::builder()
            .lease(Duration::from_secs(1))
            .heartbeat(Duration::from_secs(1))),
        "heartbeat"
    );
    assert_eq!(bad(PgQueue::builder().max_attempts(0)), "max_attempts");
    assert_eq!(
        bad(PgQueue::builder().poll_interval(Duration::ZERO)),
        "poll_interval"
    );
}

/// Code written once against `Backend` runs on both backends.
async fn round_trip<B: Backend<u32, Response = u32>>(b: &B) -> (u32, Option<TaskStatus>) {
    let id = b.submit(4).await.unwrap();
    let out = match tokio::time::timeout(LONG, b.result(id)).await.unwrap() {
        Ok(v) => v,
        Err(_) => panic!("the task failed"),
    };
    let status = b.status(id).await.unwrap();
    b.shutdown(Shutdown::Graceful(LONG)).await;
    (out, status)
}

#[tokio::test]
async fn the_backend_trait_runs_the_same_code_on_memory_and_postgres() {
    let memory = TaskQueue::builder().workers(1).build(doubler()).unwrap();
    assert_eq!(round_trip(&memory).await, (8, None));
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_trait");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    q.start(doubler()).await.unwrap();
    assert_eq!(round_trip(&q).await, (8, Some(TaskStatus::Completed)));
}

#[tokio::test]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_relisten");
    let q: PgQueue<u32, u32> = queue(&url, builder(&t)).await;
    q.start(doubler()).await.unwrap();
    let first = q.submit(1).await.unwrap();
    assert_eq!(
        tokio::time::timeout(LONG, q.result(first))
            .await
            .unwrap()
            .unwrap(),
        2
    );
    // The server drops the LISTEN connection (a restart, a proxy timeout).
    let killed = sql(
        &url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query LIKE 'LISTEN {t}_new%'"
        ),
    )
    .await;
    assert_eq!(killed.len(), 1);
    wait_until("the listener to listen again", LONG, || async {
        let again = sql(
            &url,
            &format!("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'LISTEN {t}_new%'"),
        )
        .await;
        (!again.is_empty()).then_some(())
    })
    .await;
    // The safety poll is a minute: a prompt start means NOTIFY works again.
    let second = q.submit(2).await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), q.result(second)).await;
    assert_eq!(
        out.expect("woken by NOTIFY after the reconnect").unwrap(),
        4
    );
    q.shutdown(Shutdown::Graceful(LONG)).await;
}

#[tokio::test]
async fn tasks_claimed_ahead_are_handed_back_by_a_shutdown_and_the_running_one_finishes() {
    let Some(url) = pg_url() else { return };
    let t = unique_name("q_prefetch");
    let q: PgQueue<u32, String> = queue(&url, builder(&t).workers(1).prefetch(2)).await;
    let gate = Arc::new(Semaphore::new(0));
    for n in 0..3 {
        q.submit(n).await.unwrap();
    }
    q.start(gated("done", gate.clone())).await.unwrap();
    wait_until("one running and two claimed ahead", LONG, || async {
        (q.stats().running == 3).then_some(())
    })
    .await;
    let shutdown = q.shutdown(Shutdown::Graceful(LONG));
    let finish_running = async {
        gate.add_permits(1);
    };
    let (summary, ()) = tokio::join!(shutdown, finish_running);
    assert_eq!(
        (summary.completed, summary.released.len()),
        (1, 2),
        "{summary:?}"
    );
    assert!(!summary.deadline_reached);
    for id in summary.released {
        let rec = q.record(id).await.unwrap().unwrap();
        assert_eq!(
            (rec.status, rec.attempts, rec.worker_id),
            (TaskStatus::Pending, 0, None)
        );
    }
}
