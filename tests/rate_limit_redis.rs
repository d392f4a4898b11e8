//! `rate_limit::RedisStore` against real redis-servers: the one `.ci/redis.sh`
//! starts (TOWER_PATTERNS_REDIS_URL) and, for the outage and password
//! tests, servers each test starts and kills itself.
//!
//! These run on the wall clock: the decisions are made by the Redis
//! server's clock, which paused tokio time cannot move. Nothing sleeps to
//! let something happen; waits poll a condition under a deadline.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant};

use common::redis_server::{fresh_key, raw, redis_url, wait_for, OwnServer};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open};
use tower_patterns::rate_limit::{Admission, Quota, RateLimitStore, RedisStore};

const MS: Duration = Duration::from_millis(1);
const US: Duration = Duration::from_micros(1);

async fn get_tat(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> Option<u64> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

/// `got` is `expected` minus at most `elapsed` (the server's clock moved
/// on between the calls) and the clock's 1 us granularity.
#[track_caller]
fn assert_about(got: Duration, expected: Duration, elapsed: Duration) {
    assert!(
        got <= expected && got + elapsed + US >= expected,
        "got {got:?}, expected {expected:?} less at most {elapsed:?}"
    );
}

#[track_caller]
fn go(admission: Admission) -> Duration {
    match admission {
        Admission::Go { wait } => wait,
        other => panic!("expected Go, got {other:?}"),
    }
}

#[track_caller]
fn refused(admission: Admission) -> Duration {
    match admission {
        Admission::Refused { retry_after } => retry_after,
        other => panic!("expected Refused, got {other:?}"),
    }
}

// ---- (a) the same decisions as the in-process GCRA ----------------------

/// The sequence of `gcra.rs`'s own `a_burst_then_the_steady_rate` test (10
/// a second, burst 3: interval 100 ms, tolerance 200 ms), on Redis. Every
/// call happens within `elapsed` of the first, so each answer is the
/// in-process one for "all at t = 0" less at most `elapsed`.
#[tokio::test]
async fn redis_decides_like_the_in_process_gcra() {
    let Some(url) = redis_url() else { return };
    let store = RedisStore::builder(url.as_str())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut conn = raw(&url).await;
    let key = fresh_key("same");
    let redis_key = store.redis_key(&key);
    assert!(redis_key.starts_with("tower-patterns:rl:same-"));
    let quota = Quota::new(10, Duration::from_secs(1), 3).unwrap();
    let start = Instant::now();

    // The burst, at once.
    for _ in 0..3 {
        assert_eq!(
            go(store.acquire(&key, quota, Duration::ZERO).await.unwrap()),
            Duration::ZERO
        );
    }
    let tat = get_tat(&mut conn, &redis_key)
        .await
        .expect("a taken slot writes the cell");

    // Over the quota: refused with the exact time until the next slot, and
    // nothing written, however often it is asked.
    for _ in 0..3 {
        let retry = refused(store.acquire(&key, quota, Duration::ZERO).await.unwrap());
        assert_about(retry, 100 * MS, start.elapsed());
        assert_eq!(get_tat(&mut conn, &redis_key).await, Some(tat));
    }

    // Waiting is queueing: each waiter gets the next free slot.
    let second = Duration::from_secs(1);
    assert_about(
        go(store.acquire(&key, quota, second).await.unwrap()),
        100 * MS,
        start.elapsed(),
    );
    assert_about(
        go(store.acquire(&key, quota, second).await.unwrap()),
        200 * MS,
        start.elapsed(),
    );
    let tat = get_tat(&mut conn, &redis_key).await.unwrap();
    // A wait longer than max_wait is refused, with the wait, and writes nothing...
    let retry = refused(store.acquire(&key, quota, 150 * MS).await.unwrap());
    assert_about(retry, 300 * MS, start.elapsed());
    assert_eq!(get_tat(&mut conn, &redis_key).await, Some(tat));
    // ... so the next waiter gets that same slot.
    assert_about(
        go(store.acquire(&key, quota, second).await.unwrap()),
        300 * MS,
        start.elapsed(),
    );

    // The key expires when the cell is idle again: 6 slots of 100 ms from
    // the start, less the time gone by.
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&redis_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 600, "PTTL {pttl}");

    let stats = store.stats();
    assert_eq!(
        (stats.calls, stats.admitted, stats.refused, stats.errors),
        (10, 6, 4, 0)
    );
}

/// After `SCRIPT FLUSH` (or a restart) the store loads the script again.
#[tokio::test]
async fn a_flushed_script_is_loaded_again() {
    let Some(url) = redis_url() else { return };
    let store = RedisStore::builder(url.as_str())
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let quota = Quota::new(5, Duration::from_secs(1), 5).unwrap();
    let key = fresh_key("flush");
    store.acquire(&key, quota, Duration::ZERO).await.unwrap();
    let mut conn = raw(&url).await;
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    go(store.acquire(&key, quota, Duration::ZERO).await.unwrap());
    assert_eq!(store.stats().errors, 0);
}

// ---- (b) replicas share one quota ---------------------------------------

/// Three stores (three connections, as three replicas would have) flood one
/// key for a second: together they get the global quota, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_quota() {
    let Some(url) = redis_url() else { return };
    // 100 a second (10 ms interval), burst 5.
    let quota = Quota::new(100, Duration::from_secs(1), 5).unwrap();
    let key = fresh_key("shared");
    let window = Duration::from_secs(1);
    let stores: Vec<RedisStore> = (0..3)
        .map(|_| {
            RedisStore::builder(url.as_str())
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap()
        })
        .collect();

    let start = Instant::now();
    let mut tasks = Vec::new();
    for store in &stores {
        for _ in 0..3 {
            let (store, key) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                let mut admitted = 0u64;
                while start.elapsed() < window {
                    if let Admission::Go { .. } =
                        store.acquire(&key, quota, Duration::ZERO).await.unwrap()
                    {
                        admitted += 1;
                    }
                }
                admitted
            }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    let elapsed = start.elapsed();

    // At most the burst, plus one slot per interval of the window, plus one
    // for the slot the window's end may cut.
    let most = 5 + (elapsed.as_micros() / 10_000) as u64 + 1;
    let calls: u64 = stores.iter().map(|s| s.stats().calls).sum();
    eprintln!("admitted {admitted} of {calls} calls in {elapsed:?}; the quota allows {most}");
    assert!(admitted <= most, "admitted {admitted} > {most}");
    assert!(
        admitted * 10 >= most * 9,
        "admitted {admitted}, far below {most}"
    );
    assert!(stores.iter().all(|s| s.stats().errors == 0));
    // Each store saw a share of the flood, and the refusals.
    assert!(stores.iter().all(|s| s.stats().refused > 0));
}

// ---- servers of the tests' own --------------------------------------------

// ---- (c) Redis down: fail fast, count it, reconnect ---------------------

/// A paused Redis (SIGSTOP) answers nothing: the call fails with the
/// documented `io::ErrorKind::TimedOut` error and counts as a timeout
/// (the redis crate's own response timeout, which fired at the same
/// moment and failed it with its own error, is off).
#[tokio::test]
async fn a_paused_redis_fails_with_the_documented_timeout_error() {
    if redis_url().is_none() {
        return;
    }
    let server = OwnServer::start(&[]).await;
    let store = RedisStore::builder(server.url(""))
        .timeout(100 * MS)
        .build()
        .unwrap();
    let quota = Quota::new(1_000, Duration::from_secs(1), 1_000).unwrap();
    let key = fresh_key("paused");
    go(store.acquire(&key, quota, Duration::ZERO).await.unwrap());

    server.signal("STOP");
    let err = store
        .acquire(&key, quota, Duration::ZERO)
        .await
        .unwrap_err();
    server.signal("CONT");
    let kind = err
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind);
    assert_eq!(kind, Some(std::io::ErrorKind::TimedOut), "{err:?}");
    let stats = store.stats();
    assert_eq!((stats.timeouts, stats.redis_errors), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_stopped_redis_fails_fast_and_recovers_after_restart() {
    if redis_url().is_none() {
        return;
    }
    let mut server = OwnServer::start(&[]).await;
    // A long timeout: a call that reached the dead server would wait it out.
    let timeout = Duration::from_secs(2);
    let store = RedisStore::builder(server.url(""))
        .timeout(timeout)
        .circuit_breaker(CircuitBreakerLayer::consecutive(3, 300 * MS))
        .build()
        .unwrap();
    let quota = Quota::new(1_000, Duration::from_secs(1), 1_000).unwrap();
    let key = fresh_key("outage");
    go(store.acquire(&key, quota, Duration::ZERO).await.unwrap());

    server.kill().await;

    // Calls fail; after 3 failures the breaker answers for Redis.
    let open = wait_for("breaker rejection", Duration::from_secs(10), || {
        let store = store.clone();
        let key = key.clone();
        async move {
            let begun = Instant::now();
            let err = store
                .acquire(&key, quota, Duration::ZERO)
                .await
                .unwrap_err();
            err.downcast_ref::<Open>().map(|_| begun.elapsed())
        }
    })
    .await;
    // The open breaker answered without Redis, far inside the timeout.
    assert!(
        open < timeout / 4,
        "a rejection by the open breaker took {open:?}"
    );
    let stats = store.stats();
    assert!(stats.redis_errors + stats.timeouts >= 3, "{stats:?}");
    assert!(stats.rejected_by_breaker >= 1, "{stats:?}");
    assert_eq!(
        stats.errors,
        stats.redis_errors + stats.timeouts + stats.rejected_by_breaker
    );
    assert_eq!(stats.calls, stats.admitted + stats.refused + stats.errors);

    // Back on the same port: the breaker's probe reconnects.
    server.restart().await;
    let admission = wait_for(
        "a call through the restarted Redis",
        Duration::from_secs(10),
        || {
            let store = store.clone();
            let key = key.clone();
            async move { store.acquire(&key, quota, Duration::ZERO).await.ok() }
        },
    )
    .await;
    go(admission);
    assert_eq!(store.stats().admitted, 2);
}

// ---- (d) passwords and ACL users ------------------------------------------

#[tokio::test]
async fn password_and_acl_user_urls_work() {
    if redis_url().is_none() {
        return;
    }
    let server = OwnServer::start(&[
        "--requirepass",
        "s3cret",
        // One config line, one argument per word.
        "--user",
        "limiter",
        "on",
        ">hunter2",
        "~tower-patterns:*",
        "+@all",
    ])
    .await;
    let quota = Quota::new(10, Duration::from_secs(1), 2).unwrap();
    let key = fresh_key("auth");

    // `requirepass` is the default user's password; db 3.
    let default_user = RedisStore::builder(format!("{}/3", server.url(":s3cret@")))
        .build()
        .unwrap();
    go(default_user
        .acquire(&key, quota, Duration::ZERO)
        .await
        .unwrap());
    // The ACL user, in db 3 as well: the same cell.
    let acl_user = RedisStore::builder(format!("{}/3", server.url("limiter:hunter2@")))
        .build()
        .unwrap();
    go(acl_user.acquire(&key, quota, Duration::ZERO).await.unwrap());
    refused(acl_user.acquire(&key, quota, Duration::ZERO).await.unwrap());
    // The cell lives in db 3.
    let mut conn = raw(&format!("{}/3", server.url(":s3cret@"))).await;
    assert!(get_tat(&mut conn, &acl_user.redis_key(&key))
        .await
        .is_some());

    // A wrong password is an error (counted), not a decision.
    let wrong = RedisStore::builder(server.url("limiter:wrong@"))
        .build()
        .unwrap();
    assert!(wrong.acquire(&key, quota, Duration::ZERO).await.is_err());
    assert_eq!(wrong.stats().redis_errors, 1);
}

// ---- the layer over a RedisStore ------------------------------------------

/// Three rate-limit layers (three replicas), each with its own connection,
/// keyed to one shared key: together they allow the global quota, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_limiter_layers_share_one_global_quota() {
    use tower::{service_fn, Layer, ServiceExt};
    use tower_patterns::rate_limit::{RateLimitLayer, RateLimited};

    let Some(url) = redis_url() else { return };
    let key = fresh_key("layers");
    let layers: Vec<_> = (0..3)
        .map(|_| {
            let store = RedisStore::builder(url.as_str())
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let key = key.clone();
            RateLimitLayer::builder()
                .rate(100, Duration::from_secs(1))
                .burst(5)
                .reject()
                .key_fn(move |_: &u32| key.clone())
                .store(store)
                .fail_closed()
                .build()
                .unwrap()
        })
        .collect();
    let echo = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
    let window = Duration::from_secs(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for layer in &layers {
        for _ in 0..2 {
            let svc = layer.layer(echo);
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut limited) = (0u64, 0u64);
                while start.elapsed() < window {
                    match svc.clone().oneshot(1).await {
                        Ok(_) => ok += 1,
                        Err(e) if e.is::<RateLimited>() => limited += 1,
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
                (ok, limited)
            }));
        }
    }
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        let (o, l) = task.await.unwrap();
        ok += o;
        limited += l;
    }
    let most = 5 + (start.elapsed().as_micros() / 10_000) as u64 + 1;
    eprintln!("layers allowed {ok}, limited {limited}; the quota allows {most}");
    assert!(ok <= most, "allowed {ok} > {most}");
    assert!(ok * 10 >= most * 9, "allowed {ok}, far below {most}");
    let allowed: u64 = layers.iter().map(|l| l.stats().allowed).sum();
    assert_eq!(allowed, ok);
    assert!(layers.iter().all(|l| l.stats().store_errors == 0));
}

/// Redis stopped under a layer: fail-open lets calls through, fail-closed
/// refuses them with the store's error; both count it, and both recover
/// once Redis is back.
#[tokio::test]
async fn a_layer_fails_open_or_closed_while_redis_is_down() {
    use tower::{service_fn, Layer, ServiceExt};
    use tower_patterns::rate_limit::RateLimitLayer;

    if redis_url().is_none() {
        return;
    }
    let mut server = OwnServer::start(&[]).await;
    let layer = |fail_open: bool| {
        let store = RedisStore::builder(server.url(""))
            .timeout(200 * MS)
            .circuit_breaker(CircuitBreakerLayer::consecutive(2, 200 * MS))
            .build()
            .unwrap();
        let b = RateLimitLayer::builder()
            .rate(1_000, Duration::from_secs(1))
            .reject()
            .key_fn(|n: &u32| *n)
            .store(store);
        if fail_open {
            b.fail_open()
        } else {
            b.fail_closed()
        }
        .build()
        .unwrap()
    };
    let (open, closed) = (layer(true), layer(false));
    let echo = service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) });
    assert_eq!(open.layer(echo).oneshot(1).await.unwrap(), 1);
    assert_eq!(closed.layer(echo).oneshot(1).await.unwrap(), 1);

    server.kill().await;
    for _ in 0..4 {
        assert_eq!(open.layer(echo).oneshot(2).await.unwrap(), 2, "fail-open");
        assert!(closed.layer(echo).oneshot(2).await.is_err(), "fail-closed");
    }
    assert_eq!(open.stats().store_errors, 4);
    assert_eq!(closed.stats().store_errors, 4);
    // Once the store's breaker is open, the refusal is its `Open`.
    let err = closed.layer(echo).oneshot(3).await.unwrap_err();
    assert!(err.is::<Open>(), "{err}");

    server.restart().await;
    wait_for(
        "the closed layer to pass again",
        Duration::from_secs(10),
        || {
            let svc = closed.layer(echo);
            async move { svc.oneshot(4).await.ok() }
        },
    )
    .await;
    let before = open.stats().store_errors;
    wait_for(
        "the open layer to decide by Redis again",
        Duration::from_secs(10),
        || {
            let svc = open.layer(echo);
            async move { svc.oneshot(5).await.ok() }
        },
    )
    .await;
    // From here on Redis decides again: no new store errors.
    let settled = open.stats().store_errors;
    open.layer(echo).oneshot(6).await.unwrap();
    assert_eq!(open.stats().store_errors, settled);
    assert!(settled >= before);
}
