//! `PgQueue` with real worker processes: killed with SIGKILL mid-task, and
//! restarted under load.
//!
//! The worker processes are this test binary run again: the parent starts
//! `current_exe() --exact child_worker` with `TP_PGQ_CHILD_TABLE` set, and
//! `child_worker` then runs a queue worker until it is killed (without the
//! variable it returns at once: it is the children's entry point, not a
//! test of its own). Needs `TOWER_PATTERNS_PG_URL`, as the other
//! PostgreSQL tests.
#![cfg(all(feature = "postgres", unix))]

mod common;
use common::{pg_url, unique_name, wait_until};

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tower::{service_fn, BoxError};
use tower_patterns::pool::postgres::PgManager;
use tower_patterns::pool::Pool;
use tower_patterns::queue::backend::postgres::{PgQueue, PgQueueBuilder};
use tower_patterns::queue::{Shutdown, TaskStatus};
use tower_patterns::retry::Backoff;

const CHILD_TABLE: &str = "TP_PGQ_CHILD_TABLE";
/// A child never finishes the task with this `n` (it hangs, as if stuck).
const CHILD_HANG: &str = "TP_PGQ_CHILD_HANG";

/// A task: `n`, and how long it takes.
#[derive(Serialize, Deserialize)]
struct Job {
    n: i64,
    ms: u64,
}

fn pool(url: &str, max: usize) -> Pool<PgManager> {
    Pool::builder()
        .max_size(max)
        .acquire_timeout(Duration::from_secs(20))
        .build(PgManager::from_url(url).unwrap())
        .unwrap()
}

fn builder(table: &str) -> PgQueueBuilder {
    PgQueue::builder()
        .table(table)
        .workers(4)
        .lease(Duration::from_secs(2))
        .max_attempts(5)
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .poll_interval(Duration::from_secs(30))
}

/// The worker process's body (see the file's docs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker() {
    let Ok(table) = std::env::var(CHILD_TABLE) else {
        return;
    };
    let url = std::env::var("TOWER_PATTERNS_PG_URL").expect("the parent passes the URL");
    let hang: Option<i64> = std::env::var(CHILD_HANG).ok().map(|v| v.parse().unwrap());
    let pool = pool(&url, 10);
    let queue: PgQueue<Job, i64> = builder(&table).build(pool.clone()).unwrap();
    queue.migrate().await.unwrap();
    // Open the connections before claiming: a cold start on a busy machine
    // (connects racing three other processes) can take longer than the
    // short test lease, and a lease that runs out is a rerun.
    let warm = futures::future::join_all((0..8).map(|_| pool.acquire())).await;
    assert!(warm.iter().all(Result::is_ok));
    drop(warm);
    let runs = format!("INSERT INTO {table}_runs (n, pid) VALUES ($1, $2)");
    let svc = service_fn(move |job: Job| {
        let (pool, runs) = (pool.clone(), runs.clone());
        async move {
            let conn = pool.acquire().await?;
            conn.execute(&runs, &[&job.n, &(std::process::id() as i32)])
                .await?;
            drop(conn);
            if Some(job.n) == hang {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(job.ms)).await;
            Ok::<_, BoxError>(job.n * 2)
        }
    });
    queue.start(svc).await.unwrap();
    std::future::pending::<()>().await;
}

/// Worker processes, killed when the test ends however it ends.
struct Workers(Vec<Child>);

impl Workers {
    fn spawn(&mut self, table: &str, hang: Option<i64>) -> usize {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
            .env(CHILD_TABLE, table)
            .stdout(Stdio::null());
        if let Some(n) = hang {
            cmd.env(CHILD_HANG, n.to_string());
        }
        self.0
            .push(cmd.spawn().expect("the test binary runs again"));
        self.0.len() - 1
    }

    fn pid(&self, i: usize) -> i32 {
        self.0[i].id() as i32
    }

    /// SIGKILL: no shutdown, no cleanup, leases left in the table.
    fn kill(&mut self, i: usize) {
        self.0[i].kill().unwrap();
        self.0[i].wait().unwrap();
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn setup(url: &str, prefix: &str) -> (String, PgQueue<Job, i64>, Pool<PgManager>) {
    let table = unique_name(prefix);
    let pool = pool(url, 8);
    let queue: PgQueue<Job, i64> = builder(&table).build(pool.clone()).unwrap();
    queue.migrate().await.unwrap();
    pool.acquire()
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE TABLE {table}_runs (n bigint NOT NULL, pid integer NOT NULL, \
             at timestamptz NOT NULL DEFAULT clock_timestamp())"
        ))
        .await
        .unwrap();
    (table, queue, pool)
}

async fn count(pool: &Pool<PgManager>, sql: &str) -> i64 {
    pool.acquire()
        .await
        .unwrap()
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_task_loses_it_to_another_after_the_lease() {
    let Some(url) = pg_url() else { return };
    let (t, queue, pool) = setup(&url, "q_kill").await;
    let mut workers = Workers(Vec::new());
    let a = workers.spawn(&t, Some(21));
    let id = queue.submit(Job { n: 21, ms: 0 }).await.unwrap();
    wait_until(
        "worker A to start the task",
        Duration::from_secs(60),
        || async {
            (count(&pool, &format!("SELECT count(*) FROM {t}_runs")).await == 1).then_some(())
        },
    )
    .await;
    let a_pid = workers.pid(a);
    workers.kill(a);
    assert_eq!(queue.status(id).await.unwrap(), Some(TaskStatus::Running));

    let b = workers.spawn(&t, None);
    let out = tokio::time::timeout(Duration::from_secs(60), queue.result(id))
        .await
        .expect("B finished the task after A's lease ran out");
    assert_eq!(out.unwrap(), 42);
    let b_pid = workers.pid(b);
    let rows = pool
        .acquire()
        .await
        .unwrap()
        .query(&format!("SELECT pid FROM {t}_runs ORDER BY at"), &[])
        .await
        .unwrap();
    let pids: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(pids, [a_pid, b_pid]);
    let rec = queue.record(id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.attempts), (TaskStatus::Completed, 2));
    // Stored once: one row, completed by attempt 2, with B's result.
    assert_eq!(count(&pool, &format!("SELECT count(*) FROM {t}")).await, 1);
    queue
        .shutdown(Shutdown::Graceful(Duration::from_secs(5)))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_tasks_over_three_processes_with_one_killed_and_restarted() {
    const TASKS: i64 = 2_000;
    let Some(url) = pg_url() else { return };
    let (t, queue, pool) = setup(&url, "q_fleet").await;
    let ids: Vec<_> = futures::stream::iter(0..TASKS)
        .map(|n| queue.submit(Job { n, ms: 2 }))
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(ids.iter().all(Result::is_ok));

    let mut workers = Workers(Vec::new());
    let victim = workers.spawn(&t, None);
    workers.spawn(&t, None);
    workers.spawn(&t, None);
    let completed = format!("SELECT count(*) FROM {t} WHERE status = 'completed'");
    wait_until(
        "a quarter of the tasks done",
        Duration::from_secs(120),
        || async { (count(&pool, &completed).await >= TASKS / 4).then_some(()) },
    )
    .await;
    let victim_pid = workers.pid(victim);
    workers.kill(victim);
    let done_at_kill = count(&pool, &completed).await;
    assert!(done_at_kill < TASKS, "the kill came midway");
    workers.spawn(&t, None);
    wait_until("every task done", Duration::from_secs(300), || async {
        (count(&pool, &completed).await == TASKS).then_some(())
    })
    .await;

    // Every task completed once, with its own result.
    let right = format!(
        "SELECT count(*) FROM {t} WHERE status = 'completed' \
         AND (result #>> '{{}}')::bigint = (payload->>'n')::bigint * 2"
    );
    assert_eq!(count(&pool, &right).await, TASKS);
    assert_eq!(
        count(&pool, &format!("SELECT count(DISTINCT n) FROM {t}_runs")).await,
        TASKS
    );
    // Only the tasks in flight in the killed process ran twice: at most its
    // 4 workers' worth, each first run there.
    let twice = pool
        .acquire()
        .await
        .unwrap()
        .query(
            &format!(
                "SELECT n, array_agg(pid ORDER BY at) FROM {t}_runs GROUP BY n HAVING count(*) > 1"
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(twice.len() <= 4, "{} tasks ran twice", twice.len());
    for row in &twice {
        let pids: Vec<i32> = row.get(1);
        assert_eq!(
            pids.len(),
            2,
            "task {} ran {} times",
            row.get::<_, i64>(0),
            pids.len()
        );
        assert_eq!(
            pids[0], victim_pid,
            "a rerun task was first run in the killed process"
        );
    }
    // Claimed again: the killed process's claims (run or not yet), no others.
    let reclaimed = count(
        &pool,
        &format!("SELECT count(*) FROM {t} WHERE attempts > 1"),
    )
    .await;
    assert!(
        (twice.len() as i64..=4).contains(&reclaimed),
        "{reclaimed} tasks claimed twice, {} ran twice",
        twice.len()
    );
}
