//! Memory soak: a million operations through the cache, the task queue, the
//! pool, the circuit breaker, the concurrency limit and the keyed rate limit,
//! counted by a global allocator. After a warm-up, the bytes the process
//! holds must stay flat: nothing may grow with the number of operations.
//!
//! Each soak prints its figures (bytes per live entry where there are
//! entries, bytes held after warm-up and at the end, growth per million
//! operations); RELIABILITY.md records them. `TOWER_PATTERNS_SOAK_OPS` sets
//! the number of operations per component (default 1,000,000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::cache::CacheLayer;
use tower_patterns::circuit_breaker::CircuitBreakerLayer;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::pool::{Manager, Pool};
use tower_patterns::queue::{Shutdown, TaskQueue};
use tower_patterns::rate_limit::RateLimitLayer;
use tower_patterns::BoxError;

/// Counts the bytes held, so a test can see what its code keeps.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only arithmetic on the sizes it was asked for.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One soak at a time: the counter is process-wide.
static ALONE: Mutex<()> = Mutex::new(());

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn ops() -> u64 {
    std::env::var("TOWER_PATTERNS_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A small xorshift, so keys spread without a dependency or a lock.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const ROUNDS: u64 = 10;
const WARM_ROUNDS: usize = 3;

/// Reads the bytes held after each of [`ROUNDS`] rounds of work, prints
/// the figures, and fails if the bytes held grew after the warm-up by more
/// than `slack` (plus 1% of what was held).
struct Meter {
    start: isize,
    name: &'static str,
    total: u64,
    slack: isize,
    held: Vec<isize>,
}

impl Meter {
    fn new(name: &'static str, total: u64, slack: isize) -> Self {
        // The rounds' vector is allocated before the first reading, so it
        // is not counted as growth.
        let held = Vec::with_capacity(ROUNDS as usize);
        Meter {
            start: live(),
            name,
            total,
            slack,
            held,
        }
    }

    /// Operations per round.
    fn per_round(&self) -> u64 {
        self.total / ROUNDS
    }

    /// The end of a round: lets spawned tasks finish their last steps, then
    /// reads the bytes held.
    async fn round(&mut self) {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        self.held.push(live());
    }

    fn finish(self) {
        let Meter {
            start,
            name,
            total,
            slack,
            held,
        } = self;
        assert_eq!(held.len() as u64, ROUNDS);
        let warm = held[WARM_ROUNDS - 1];
        let end = *held.last().unwrap();
        let peak = *held[WARM_ROUNDS - 1..].iter().max().unwrap();
        let measured_ops = total / ROUNDS * (ROUNDS - WARM_ROUNDS as u64);
        let growth_per_million = (end - warm) as f64 * 1e6 / measured_ops as f64;
        println!(
            "soak {name}: {total} ops; held after warm-up {warm} B, peak {peak} B, at the end \
             {end} B; growth {growth_per_million:.0} B per million ops; started at {start} B; \
             rounds {held:?}"
        );
        let bound = slack + warm.abs() / 100;
        assert!(
            peak - warm <= bound,
            "{name}: memory grew by {} B after the warm-up (bound {bound} B); rounds: {held:?}",
            peak - warm
        );
    }
}

fn runtime(paused: bool) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all();
    if paused {
        b.start_paused(true);
    }
    b.build().unwrap()
}

#[test]
fn cache_memory_is_flat_and_bounded_by_its_entries() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    runtime(true).block_on(async {
        let before = live();
        let layer = CacheLayer::builder()
            .ttl(Duration::from_secs(60))
            .max_entries(1_000)
            .key_fn(|k: &u64| *k)
            .build()
            .unwrap();
        let handle = layer.handle();
        let backend =
            service_fn(|k: u64| async move { Ok::<_, BoxError>(format!("value {k:024}")) });
        let mut svc = ServiceBuilder::new().layer(layer).service(backend);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut meter = Meter::new("cache (1,000 entries, keys from 10,000)", ops(), 16 * 1024);
        for _ in 0..ROUNDS {
            for i in 0..meter.per_round() {
                let key = rng.below(10_000);
                let v = svc.ready().await.unwrap().call(key).await.unwrap();
                assert!(v.ends_with(&format!("{key:024}")));
                if i % 10_000 == 0 {
                    // Time passes: entries expire and are replaced.
                    tokio::time::advance(Duration::from_secs(7)).await;
                }
            }
            meter.round().await;
        }
        meter.finish();
        let stats = handle.stats();
        assert!(stats.entries <= 1_000, "{stats:?}");
        assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
        let per_entry = (live() - before) / stats.entries.max(1) as isize;
        println!(
            "soak cache: {} live entries, {per_entry} B per live entry (the whole layer, \
             shared state included)",
            stats.entries
        );
        drop(svc);
        drop(handle);
    });
}

#[test]
fn queue_memory_is_flat_when_results_are_taken() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    runtime(false).block_on(async {
        let queue = TaskQueue::builder()
            .workers(4)
            .capacity(256)
            .max_retained(1_000)
            .retain_results(Duration::from_secs(60))
            .build(service_fn(|n: u64| async move {
                if n.is_multiple_of(97) {
                    Err::<u64, &str>("unlucky")
                } else {
                    Ok(n * 2)
                }
            }))
            .unwrap();
        let mut meter = Meter::new("queue (4 workers, 1,000 results kept)", ops(), 64 * 1024);
        let mut next = 0;
        for _ in 0..ROUNDS {
            let end = next + meter.per_round();
            // 16 in flight at a time; every result is read back.
            while next < end {
                let batch = (end - next).min(16);
                let ids =
                    futures::future::join_all((next..next + batch).map(|i| queue.submit(i))).await;
                for (id, i) in ids.into_iter().zip(next..) {
                    let got = queue.result(id.unwrap()).await;
                    assert_eq!(got.is_ok(), !i.is_multiple_of(97));
                }
                next += batch;
            }
            meter.round().await;
        }
        meter.finish();
        let stats = queue.stats();
        assert_eq!(stats.completed + stats.failed, ops() / ROUNDS * ROUNDS);
        queue
            .shutdown(Shutdown::Graceful(Duration::from_secs(5)))
            .await;
    });
}

struct Counter(AtomicUsize);

impl Manager for Counter {
    type Resource = Vec<u8>;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Vec<u8>, std::io::Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(vec![0; 64])
    }

    async fn recycle(&self, conn: &mut Vec<u8>) -> Result<(), std::io::Error> {
        conn[0] = conn[0].wrapping_add(1);
        Ok(())
    }
}

#[test]
fn pool_memory_is_flat_under_contention() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    runtime(false).block_on(async {
        let pool = Pool::builder()
            .max_size(4)
            .acquire_timeout(Duration::from_secs(5))
            .build(Counter(AtomicUsize::new(0)))
            .unwrap();
        let p = &pool;
        let mut meter = Meter::new("pool (4 resources, 8 tasks)", ops(), 16 * 1024);
        for _ in 0..ROUNDS {
            // 8 tasks share 4 resources: half of them wait each time.
            let each = meter.per_round() / 8;
            futures::future::join_all((0..8).map(|_| async move {
                for _ in 0..each {
                    let conn = p.acquire().await.unwrap();
                    assert_eq!(conn.len(), 64);
                    drop(conn);
                    tokio::task::yield_now().await;
                }
            }))
            .await;
            meter.round().await;
        }
        meter.finish();
        assert!(pool.stats().size <= 4);
        pool.close().await;
    });
}

#[test]
fn breaker_and_limit_memory_is_flat_while_opening_and_closing() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    runtime(true).block_on(async {
        let breaker = CircuitBreakerLayer::consecutive(5, Duration::from_millis(100));
        let handle = breaker.handle();
        let limit = ConcurrencyLimitLayer::new(4).max_wait(Duration::from_millis(1));
        // Fails in bursts of 10 every 100 calls: the breaker opens, waits,
        // probes and closes again, over and over.
        let backend = service_fn(|i: u64| async move {
            tokio::time::sleep(Duration::from_micros(10)).await;
            if i % 100 < 10 {
                Err::<u64, BoxError>("down".into())
            } else {
                Ok(i)
            }
        });
        let svc = ServiceBuilder::new()
            .layer(breaker)
            .layer(limit)
            .service(backend);
        let mut meter = Meter::new("circuit breaker + concurrency limit", ops(), 16 * 1024);
        let mut next = 0;
        for _ in 0..ROUNDS {
            let end = next + meter.per_round();
            while next < end {
                // 8 at once against a limit of 4.
                let batch = (end - next).min(8);
                let results =
                    futures::future::join_all((next..next + batch).map(|i| svc.clone().oneshot(i)))
                        .await;
                assert_eq!(results.len() as u64, batch);
                next += batch;
            }
            meter.round().await;
        }
        meter.finish();
        let stats = handle.stats();
        assert!(stats.rejected > 0, "the breaker opened: {stats:?}");
    });
}

#[test]
fn keyed_rate_limit_memory_is_bounded_by_max_keys() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    runtime(true).block_on(async {
        let layer = RateLimitLayer::builder()
            .rate(10, Duration::from_secs(1))
            .reject()
            .key_fn(|k: &u64| *k)
            .max_keys(10_000)
            .build()
            .unwrap();
        let before = live();
        let mut svc = layer.layer(service_fn(|k: u64| async move { Ok::<_, BoxError>(k) }));
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        // Every call a new key most of the time: the table must stay within
        // its bound, evicting, and its memory with it.
        let mut meter = Meter::new(
            "keyed rate limit (10,000 keys max, 1,000,000 distinct)",
            ops(),
            16 * 1024,
        );
        for _ in 0..ROUNDS {
            for _ in 0..meter.per_round() {
                let key = rng.below(1_000_000);
                let _ = svc.ready().await.unwrap().call(key).await;
            }
            meter.round().await;
        }
        meter.finish();
        let stats = layer.stats();
        assert!(stats.evicted > 0, "{stats:?}");
        println!(
            "soak keyed rate limit: {} B per key of the bound (10,000), room for churn included",
            (live() - before) / 10_000
        );
    });
}
