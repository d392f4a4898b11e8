//! `pool::postgres::PgManager` against a real PostgreSQL server.
//!
//! The server's URL comes from `TOWER_PATTERNS_PG_URL` (CI starts one with
//! `.ci/postgres.sh`). Without it each test reports itself as skipped on
//! the terminal (not captured output) and returns; under CI it fails.
#![cfg(feature = "postgres")]

mod common;
use common::pg_url;

use std::time::Duration;

use tower_patterns::pool::postgres::PgManager;
use tower_patterns::pool::{Pool, PoolError};

fn pg_pool(url: &str, min: usize, max: usize) -> Pool<PgManager> {
    Pool::builder()
        .min_size(min)
        .max_size(max)
        .acquire_timeout(Duration::from_secs(10))
        .build(PgManager::from_url(url).unwrap())
        .unwrap()
}

/// Table names unique to this test run, so parallel runs do not collide.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

#[tokio::test]
async fn seed_scenario_one_transaction_inserts_a_user_and_bumps_a_counter() {
    let Some(url) = pg_url() else { return };
    let pool = pg_pool(&url, 2, 4);
    let users = unique("users");
    let counters = unique("counters");
    {
        let conn = pool.acquire().await.unwrap();
        conn.batch_execute(&format!(
            "CREATE TABLE {users} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE {counters} (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
             INSERT INTO {counters} VALUES ('signups', 41);"
        ))
        .await
        .unwrap();
    }

    // One transaction, two writes.
    let user_id: i64 = {
        let mut conn = pool.acquire().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        let row = tx
            .query_one(
                &format!("INSERT INTO {users} (name) VALUES ($1) RETURNING id"),
                &[&"ada"],
            )
            .await
            .unwrap();
        tx.execute(
            &format!("UPDATE {counters} SET value = value + 1 WHERE name = 'signups'"),
            &[],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        row.get(0)
    };

    // A transaction dropped without commit changes nothing.
    {
        let mut conn = pool.acquire().await.unwrap();
        let tx = conn.transaction().await.unwrap();
        tx.execute(&format!("INSERT INTO {users} (name) VALUES ('ghost')"), &[])
            .await
            .unwrap();
        tx.execute(&format!("UPDATE {counters} SET value = 0"), &[])
            .await
            .unwrap();
    }

    // Read both back, from whichever pooled connection comes.
    let conn = pool.acquire().await.unwrap();
    let name: String = conn
        .query_one(
            &format!("SELECT name FROM {users} WHERE id = $1"),
            &[&user_id],
        )
        .await
        .unwrap()
        .get(0);
    let count: i64 = conn
        .query_one(&format!("SELECT count(*) FROM {users}"), &[])
        .await
        .unwrap()
        .get(0);
    let signups: i64 = conn
        .query_one(
            &format!("SELECT value FROM {counters} WHERE name = 'signups'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((name.as_str(), count, signups), ("ada", 1, 42));

    conn.batch_execute(&format!("DROP TABLE {users}; DROP TABLE {counters};"))
        .await
        .unwrap();
    drop(conn);
    let stats = pool.stats();
    assert!(stats.created <= 4 && stats.recycled >= 1, "{stats:?}");
    pool.close().await;
}

async fn backend_pid(conn: &tokio_postgres::Client) -> i32 {
    conn.query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_killed_backend_is_replaced() {
    let Some(url) = pg_url() else { return };
    let pool = pg_pool(&url, 0, 1);
    let old_pid = {
        let conn = pool.acquire().await.unwrap();
        backend_pid(&conn).await
    }; // back in the pool, idle

    // Another session kills that backend, waiting until it is gone.
    let (killer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1, 5000)", &[&old_pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);

    // The next acquire finds the dead connection, closes it and hands out
    // a fresh one.
    let conn = pool.acquire().await.unwrap();
    let new_pid = backend_pid(&conn).await;
    assert_ne!(new_pid, old_pid);
    let one: i32 = conn.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let stats = pool.stats();
    assert_eq!(stats.closed_by_reason.recycle_failed, 1, "{stats:?}");
    assert_eq!((stats.created, stats.size), (2, 1), "{stats:?}");
}

#[tokio::test]
async fn a_killed_backend_is_skipped_for_a_healthy_idle_one() {
    let Some(url) = pg_url() else { return };
    let pool = pg_pool(&url, 0, 2);
    let (older, newer) = {
        let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        let pids = (backend_pid(&a).await, backend_pid(&b).await);
        drop(a);
        drop(b); // returned last: the newest idle connection
        pids
    };
    let (killer, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1, 5000)", &[&newer])
        .await
        .unwrap()
        .get(0);
    assert!(killed);

    // The dead newest connection is closed; the older, healthy one is
    // handed out instead of a new connection being opened.
    let conn = pool.acquire().await.unwrap();
    assert_eq!(backend_pid(&conn).await, older);
    let stats = pool.stats();
    assert_eq!(stats.closed_by_reason.recycle_failed, 1, "{stats:?}");
    assert_eq!(
        (stats.created, stats.size, stats.idle),
        (2, 1, 0),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_says_so() {
    let Some(url) = pg_url() else { return };
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.password("definitely-not-the-password");
    let pool = Pool::builder()
        .max_size(1)
        .build(PgManager::new(config, tokio_postgres::NoTls))
        .unwrap();
    let err = pool.acquire().await.unwrap_err();
    assert!(
        matches!(err, PoolError::Create(_)),
        "expected the connect error, got {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert_eq!(pool.stats().size, 0);
}
