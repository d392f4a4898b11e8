//! Feature `metrics` on the backends: the cache's remote tier
//! (`tower_patterns.cache.remote.*`, and the breaker in front of Redis)
//! and `PgQueue` (the task queue's `tower_patterns.queue.*`).
//!
//! A remote tier that is down needs no server (a refused port). The others
//! run against the real servers: Redis from `TOWER_PATTERNS_REDIS_URL`,
//! PostgreSQL from `TOWER_PATTERNS_PG_URL` (`.ci/redis.sh`,
//! `.ci/postgres.sh`); without the variable a test says it is skipped and
//! returns, under CI it fails. Each test installs its own recorder for its
//! thread on a current-thread runtime, so spawned tasks record into it too;
//! they run on the wall clock (network, expiry in the servers) and wait for
//! conditions under a deadline.
#![cfg(feature = "metrics")]

mod common;

use std::time::Duration;

use common::recorder::TestRecorder;

const SECS: Duration = Duration::from_secs(1);

fn n(name: &'static str) -> (&'static str, &'static str) {
    ("name", name)
}

#[cfg(feature = "redis")]
mod remote_tier {
    use super::*;

    use bytes::Bytes;
    use common::redis_server::{fresh_key, redis_url};
    use common::wait_until;
    use tower::util::BoxCloneSyncService;
    use tower::{service_fn, Layer, ServiceExt};
    use tower_patterns::cache::{CacheLayer, JsonCodec, RedisStore, RemoteStore};
    use tower_patterns::BoxError;

    type Svc = BoxCloneSyncService<String, String, BoxError>;

    /// An address nothing listens on: connecting to it is refused.
    async fn refused_addr() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    }

    /// A cache called `name` over `store` on an inner service answering
    /// `"{name}:{key}"`.
    fn cache(store: &RedisStore, name: &'static str, max_entry_bytes: usize) -> Svc {
        let layer = CacheLayer::<String, String>::builder()
            .name(name)
            .key_fn(String::clone as fn(&String) -> String)
            .ttl(60 * SECS)
            .lease_ttl(2 * SECS)
            .max_entry_bytes(max_entry_bytes)
            .build_with_remote(store.clone(), JsonCodec)
            .unwrap();
        BoxCloneSyncService::new(layer.layer(service_fn(move |key: String| async move {
            Ok::<_, BoxError>(format!("{name}:{key}"))
        })))
    }

    async fn get(svc: &Svc, key: &str) -> String {
        svc.clone().oneshot(key.to_owned()).await.unwrap()
    }

    /// With Redis refusing connections, every miss falls back to the inner
    /// service: each counts a failed read and a fallback, and the store's
    /// default breaker, named for the store, records its opening.
    #[tokio::test]
    async fn a_remote_tier_that_is_down_records_errors_fallbacks_and_its_breaker() {
        let rec = TestRecorder::default();
        let _guard = metrics::set_default_local_recorder(&rec);
        let store = RedisStore::builder(format!("redis://{}", refused_addr().await))
            .timeout(SECS)
            .build()
            .unwrap();
        let svc = cache(&store, "users-cache", 1 << 20);
        for i in 0..7 {
            assert_eq!(
                get(&svc, &format!("k{i}")).await,
                format!("users-cache:k{i}")
            );
        }
        let c = n("users-cache");
        let fallbacks = ("result", "fallback");
        assert_eq!(
            rec.counter("tower_patterns.cache.remote.requests", &[c, fallbacks]),
            7
        );
        assert_eq!(
            rec.counter("tower_patterns.cache.remote.errors", &[c, ("op", "read")]),
            7
        );
        assert_eq!(
            rec.counter(
                "tower_patterns.cache.remote.requests",
                &[c, ("result", "hit")]
            ),
            0
        );
        // Five failures in a row open the default breaker; the last two
        // calls were refused by it without touching the network.
        let b = n("cache::RedisStore");
        assert_eq!(
            rec.gauge(
                "tower_patterns.circuit_breaker.state",
                &[b, ("state", "open")]
            ),
            Some(1.0)
        );
        assert_eq!(
            rec.counter(
                "tower_patterns.circuit_breaker.calls",
                &[b, ("outcome", "rejected")]
            ),
            2
        );
        assert_eq!(store.stats().rejected_by_breaker, 2);
    }

    /// Against a real Redis: a replica's miss that loads counts a remote
    /// miss, another replica's read of the same key a remote hit; bytes
    /// that do not decode count a bad entry; a response over
    /// `max_entry_bytes` is not written and counts as too large.
    #[tokio::test]
    async fn the_remote_tier_records_hits_misses_bad_entries_and_too_large() {
        let Some(url) = redis_url() else { return };
        let rec = TestRecorder::default();
        let _guard = metrics::set_default_local_recorder(&rec);
        let prefix = fresh_key("metrics");
        let store = |prefix: &str| {
            RedisStore::builder(&url)
                .key_prefix(prefix)
                .timeout(SECS)
                .build()
                .unwrap()
        };
        let (sa, sb) = (store(&prefix), store(&prefix));
        let a = cache(&sa, "tier-a", 1 << 20);
        let b = cache(&sb, "tier-b", 1 << 20);
        let requests = "tower_patterns.cache.remote.requests";

        // A loads k1 under the lease and writes it; B finds it there.
        assert_eq!(get(&a, "k1").await, "tier-a:k1");
        assert_eq!(rec.counter(requests, &[n("tier-a"), ("result", "miss")]), 1);
        assert_eq!(get(&b, "k1").await, "tier-a:k1");
        assert_eq!(rec.counter(requests, &[n("tier-b"), ("result", "hit")]), 1);
        assert_eq!(rec.counter(requests, &[n("tier-b"), ("result", "miss")]), 0);

        // Bytes that are not a frame: a bad entry, then B loads it itself.
        sa.put("k2", Bytes::from_static(b"not a frame"), None)
            .await
            .unwrap();
        assert_eq!(get(&b, "k2").await, "tier-b:k2");
        assert_eq!(
            rec.counter("tower_patterns.cache.remote.bad_entries", &[n("tier-b")]),
            1
        );
        assert_eq!(rec.counter(requests, &[n("tier-b"), ("result", "miss")]), 1);

        // A response over 64 bytes is kept out of Redis.
        let c = cache(&store(&prefix), "tier-c", 64);
        let long = "x".repeat(100);
        assert_eq!(get(&c, &long).await, format!("tier-c:{long}"));
        wait_until("the too-large count", 10 * SECS, || async {
            (rec.counter("tower_patterns.cache.remote.too_large", &[n("tier-c")]) == 1)
                .then_some(())
        })
        .await;
        assert_eq!(sa.get(&long).await.unwrap(), None, "not written");
        for name in ["tier-a", "tier-b", "tier-c"] {
            for op in ["read", "lease", "write", "release"] {
                let errors = ("op", op);
                assert_eq!(
                    rec.counter("tower_patterns.cache.remote.errors", &[n(name), errors]),
                    0,
                    "{name} {op}"
                );
            }
            let fallbacks = ("result", "fallback");
            assert_eq!(rec.counter(requests, &[n(name), fallbacks]), 0, "{name}");
        }
    }
}

#[cfg(feature = "postgres")]
mod pg_queue {
    use super::*;

    use std::sync::Arc;

    use common::{pg_url, unique_name, wait_until};
    use tokio::sync::Semaphore;
    use tower::{service_fn, BoxError};
    use tower_patterns::pool::postgres::PgManager;
    use tower_patterns::pool::Pool;
    use tower_patterns::queue::backend::postgres::{PgQueue, TaskOptions};
    use tower_patterns::queue::TaskError;
    use tower_patterns::retry::Backoff;

    /// `PgQueue` records the task queue's metrics: the table's due tasks
    /// (depth), this process's running tasks, outcomes (completed, retried,
    /// dead, cancelled), and the time each run waited and took.
    #[tokio::test]
    async fn pg_queue_records_the_task_queue_metrics() {
        let Some(url) = pg_url() else { return };
        let rec = TestRecorder::default();
        let _guard = metrics::set_default_local_recorder(&rec);
        let pool = Pool::builder()
            .max_size(4)
            .build(PgManager::from_url(&url).unwrap())
            .unwrap();
        let q: PgQueue<u32, u32> = PgQueue::builder()
            .table(unique_name("q_metrics"))
            .name("pg-jobs")
            .workers(1)
            .max_attempts(2)
            .backoff(Backoff::constant(Duration::from_millis(20)))
            .poll_interval(Duration::from_millis(50))
            .build(pool)
            .unwrap();
        q.migrate().await.unwrap();
        // Tasks wait for the gate; 0 fails.
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let svc = service_fn(move |x: u32| {
            let g = g.clone();
            async move {
                if x == 0 {
                    return Err::<u32, BoxError>("zero".into());
                }
                g.acquire().await.unwrap().forget();
                Ok(x * 2)
            }
        });
        let mut ids = Vec::new();
        for x in 1..=3 {
            ids.push(q.submit(x).await.unwrap());
        }
        q.start(svc).await.unwrap();
        let p = n("pg-jobs");
        // One task runs (held by the gate), two wait: the sampled depth.
        wait_until("depth 2 and one running", 10 * SECS, || async {
            let depth = rec.gauge("tower_patterns.queue.depth", &[p]);
            let running = rec.gauge("tower_patterns.queue.running", &[p]);
            (depth == Some(2.0) && running == Some(1.0)).then_some(())
        })
        .await;
        gate.add_permits(3);
        for (id, x) in ids.into_iter().zip(1..) {
            assert_eq!(q.result(id).await.unwrap(), x * 2);
        }
        let dead = q.submit(0).await.unwrap();
        assert!(matches!(q.result(dead).await, Err(TaskError::Failed(_))));
        let later = q
            .submit_with(9, TaskOptions::new().after(3600 * SECS))
            .await
            .unwrap();
        assert!(q.cancel(later).await.unwrap());

        let tasks = "tower_patterns.queue.tasks";
        assert_eq!(rec.counter(tasks, &[p, ("outcome", "completed")]), 3);
        assert_eq!(rec.counter(tasks, &[p, ("outcome", "retried")]), 1);
        assert_eq!(rec.counter(tasks, &[p, ("outcome", "dead")]), 1);
        assert_eq!(rec.counter(tasks, &[p, ("outcome", "cancelled")]), 1);
        // Five runs: three completed, two failed attempts of the dead one.
        wait_until("five runs and none running", 10 * SECS, || async {
            let runs = rec
                .histogram("tower_patterns.queue.run.duration", &[p])
                .len();
            let running = rec.gauge("tower_patterns.queue.running", &[p]);
            (runs == 5 && running == Some(0.0)).then_some(())
        })
        .await;
        let waits = rec.histogram("tower_patterns.queue.wait.duration", &[p]);
        assert_eq!(waits.len(), 5);
        assert!(
            waits.iter().all(|w| w.is_finite() && *w >= 0.0),
            "{waits:?}"
        );
        wait_until("depth 0", 10 * SECS, || async {
            (rec.gauge("tower_patterns.queue.depth", &[p]) == Some(0.0)).then_some(())
        })
        .await;
        let stats = q.stats();
        assert_eq!((stats.completed, stats.retried, stats.dead), (3, 1, 1));
        q.shutdown(tower_patterns::queue::Shutdown::Graceful(SECS))
            .await;
    }
}
