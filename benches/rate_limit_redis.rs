//! One rate-limit check on Redis: `RedisStore::acquire` beside a bare
//! `EVALSHA` of the same script, with the same arguments, through the same
//! kind of connection (the redis crate's `ConnectionManager`), in the same
//! run. The difference is what the store adds on top of the round trip:
//! the key's formatting, the circuit breaker, the timeout, the stats and
//! two boxed futures. Target: within 10% of the bare round trip.
//!
//! Both take a slot on every call (a quota too large to refuse), so the
//! script writes every time, as it does for a limit under its quota.
//!
//! Needs a Redis: `eval "$(bash .ci/redis.sh | tail -1)"`, then
//! `cargo bench --all-features --bench rate_limit_redis`. Without
//! TOWER_PATTERNS_REDIS_URL it says so and measures nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use redis::aio::ConnectionManager;
use tower_patterns::rate_limit::{Admission, Quota, RateLimitStore, RedisStore};

/// The store's script, the same file the crate embeds.
const SCRIPT: &str = include_str!("../src/rate_limit/redis_gcra.lua");

/// 4 billion a second, burst 1 billion: never refused. In the script's
/// microseconds: interval 1 us, tolerance 999_999_999 us, max_wait 0.
fn quota() -> Quota {
    Quota::new(u32::MAX, Duration::from_secs(1), 1_000_000_000).unwrap()
}
const ARGS: [u64; 3] = [1, 999_999_999, 0];

struct Peers {
    store: RedisStore,
    bare: ConnectionManager,
    script: redis::Script,
}

impl Peers {
    async fn ours(&self) -> Admission {
        self.store
            .acquire(&"bench-ours", quota(), Duration::ZERO)
            .await
            .unwrap()
    }

    async fn bare(&self) -> (u8, u64) {
        let mut conn = self.bare.clone();
        self.script
            .key("tower-patterns:rl:bench-bare")
            .arg(ARGS[0])
            .arg(ARGS[1])
            .arg(ARGS[2])
            .invoke_async(&mut conn)
            .await
            .unwrap()
    }
}

fn main() {
    let Some(url) = std::env::var("TOWER_PATTERNS_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "rate_limit_redis: skipped, TOWER_PATTERNS_REDIS_URL is not set \
             (start Redis with `eval \"$(bash .ci/redis.sh | tail -1)\"`)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let peers = rt.block_on(async {
        let store = RedisStore::builder(url.as_str())
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let client = redis::Client::open(url.as_str()).unwrap();
        let peers = Peers {
            store,
            bare: ConnectionManager::new(client).await.unwrap(),
            script: redis::Script::new(SCRIPT),
        };
        // Connect, load the script, check both agree on the answer.
        assert!(matches!(
            peers.ours().await,
            Admission::Go { wait } if wait.is_zero()
        ));
        assert_eq!(peers.bare().await, (1, 0));
        peers
    });

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("rate_limit_redis/acquire");
    group.bench_function("bare EVALSHA (redis ConnectionManager)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peers.bare().await) })
    });
    group.bench_function("ours (RedisStore::acquire)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(peers.ours().await) })
    });
    group.finish();

    // Criterion measures the two one after the other; a loopback round trip
    // drifts with whatever else the machine does. Alternate short batches
    // as well and report the ratio of the medians.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..30 {
            let start = Instant::now();
            for _ in 0..500 {
                black_box(peers.bare().await);
            }
            bare.push(start.elapsed() / 500);
            let start = Instant::now();
            for _ in 0..500 {
                black_box(peers.ours().await);
            }
            ours.push(start.elapsed() / 500);
        }
    });
    ours.sort();
    bare.sort();
    let (ours, bare) = (ours[ours.len() / 2], bare[bare.len() / 2]);
    println!(
        "rate_limit_redis/paired: ours {ours:?} per call, bare EVALSHA {bare:?}: ratio {:.3}",
        ours.as_secs_f64() / bare.as_secs_f64()
    );
    c.final_summary();
}
