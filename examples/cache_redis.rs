//! Two replicas of a service, one Redis: the cache's shared tier.
//!
//! ```sh
//! eval "$(bash .ci/redis.sh | tail -1)"   # or any Redis you run
//! cargo run --features redis --example cache_redis -- --redis-url "$TOWER_PATTERNS_REDIS_URL"
//! ```
//!
//! Replicas `alpha` and `beta` each put a `CacheLayer` (memory in front,
//! Redis behind) over the same slow "database", as two processes behind a
//! load balancer would. It prints who served each request:
//!
//! 1. alpha misses and asks the database; beta finds the value in Redis;
//!    beta again finds it in its own memory.
//! 2. 20 concurrent requests for a new key, spread over both replicas: the
//!    database is asked once.
//! 3. alpha invalidates a key: beta drops its copy and asks the database.
//!
//! It exits non-zero if any of that does not happen (CI runs it). The keys
//! live under a prefix of this run's own, cleared at the end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::future::join_all;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};
use tower_patterns::cache::{CacheHandle, CacheLayer, JsonCodec, RedisStore};
use tower_patterns::BoxError;

/// Two cache replicas sharing one Redis, printing who served what.
#[derive(Parser)]
struct Args {
    /// The Redis to share (default: $TOWER_PATTERNS_REDIS_URL).
    #[arg(long)]
    redis_url: Option<String>,
}

struct Replica {
    name: &'static str,
    svc: BoxCloneSyncService<u64, String, BoxError>,
    cache: CacheHandle<u64, String>,
    redis: RedisStore,
}

impl Replica {
    fn new(
        name: &'static str,
        url: &str,
        prefix: &str,
        db_calls: &Arc<AtomicUsize>,
    ) -> Result<Self, BoxError> {
        let redis = RedisStore::builder(url)
            .key_prefix(prefix)
            .timeout(Duration::from_millis(500))
            .build()?;
        let layer = CacheLayer::<u64, String>::builder()
            .key_fn(|id: &u64| *id)
            .ttl(Duration::from_secs(60))
            .lease_ttl(Duration::from_secs(2))
            .build_with_remote(redis.clone(), JsonCodec)?;
        let cache = layer.handle();
        let calls = db_calls.clone();
        let database = service_fn(move |id: u64| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, BoxError>(format!("user {id} (loaded by {name})"))
            }
        });
        Ok(Replica {
            name,
            svc: BoxCloneSyncService::new(layer.layer(database)),
            cache,
            redis,
        })
    }

    /// Asks for user `id` and says who served it.
    async fn get(&self, id: u64) -> Result<&'static str, BoxError> {
        let before = self.cache.stats();
        let value = self.svc.clone().oneshot(id).await?;
        let after = self.cache.stats();
        let by = if after.hits > before.hits {
            "its memory"
        } else if after.remote_hits > before.remote_hits {
            "Redis"
        } else {
            "the database"
        };
        println!("  {:<5} user {id}: {value:<28} served by {by}", self.name);
        Ok(by)
    }
}

fn check(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("expected: {what}").into())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let url = args
        .redis_url
        .or_else(|| std::env::var("TOWER_PATTERNS_REDIS_URL").ok())
        .ok_or("give --redis-url or set TOWER_PATTERNS_REDIS_URL (bash .ci/redis.sh starts one)")?;
    let prefix = format!("cache-redis-example:{}:", std::process::id());
    let db_calls = Arc::new(AtomicUsize::new(0));
    let alpha = Replica::new("alpha", &url, &prefix, &db_calls)?;
    let beta = Replica::new("beta", &url, &prefix, &db_calls)?;
    // Both listening for invalidations before we start.
    for r in [&alpha, &beta] {
        let start = std::time::Instant::now();
        while !r.redis.stats().subscribed {
            check(
                start.elapsed() < Duration::from_secs(10),
                "a subscription to Redis within 10 s",
            )?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    println!("1. one replica loads, the other reads it from Redis");
    check(alpha.get(7).await? == "the database", "alpha: the database")?;
    check(beta.get(7).await? == "Redis", "beta: Redis")?;
    check(beta.get(7).await? == "its memory", "beta: its memory")?;

    println!("2. 20 concurrent misses for user 8 over both replicas");
    let before = db_calls.load(Ordering::SeqCst);
    let all = join_all((0..20).map(|i| {
        let r = if i % 2 == 0 { &alpha } else { &beta };
        r.svc.clone().oneshot(8)
    }))
    .await;
    let values: Vec<String> = all.into_iter().collect::<Result<_, _>>()?;
    let calls = db_calls.load(Ordering::SeqCst) - before;
    println!(
        "  20 answers, all \"{}\"; database calls: {calls}",
        values[0]
    );
    check(values.iter().all(|v| v == &values[0]), "one value for all")?;
    check(calls == 1, "one database call")?;

    println!("3. alpha invalidates user 7; beta drops its copy");
    alpha.cache.invalidate(&7);
    let start = std::time::Instant::now();
    while beta.cache.stats().entries == 2 {
        check(
            start.elapsed() < Duration::from_secs(5),
            "beta hears of it within 5 s",
        )?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("  beta heard of it after {:?}", start.elapsed());
    check(beta.get(7).await? == "the database", "beta: the database")?;

    for r in [&alpha, &beta] {
        let s = r.cache.stats();
        println!(
            "{}: {} hits, {} misses ({} answered by Redis), Redis errors: {}",
            r.name,
            s.hits,
            s.misses,
            s.remote_hits,
            r.redis.stats().errors
        );
    }
    alpha.cache.clear();
    // Beta hears of the clear once Redis is done with it.
    let start = std::time::Instant::now();
    while beta.cache.stats().entries > 0 {
        check(
            start.elapsed() < Duration::from_secs(5),
            "the clear within 5 s",
        )?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
