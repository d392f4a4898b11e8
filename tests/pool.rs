//! Behaviour of `tower_patterns::pool` with an in-memory manager.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::{Service, ServiceBuilder, ServiceExt};
use tower_patterns::pool::{Manager, Pool, PoolError, Pooled};

#[derive(Debug)]
struct TestError(String);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TestError {}

/// A resource that counts how many of its kind are alive.
#[derive(Debug)]
struct Conn {
    id: usize,
    alive: Arc<AtomicUsize>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Shared {
    next_id: AtomicUsize,
    alive: Arc<AtomicUsize>,
    creates_started: AtomicUsize,
    /// `recycle` calls, counted as they start.
    recycles_started: AtomicUsize,
    fail_create: Mutex<Option<String>>,
    broken: Mutex<HashSet<usize>>,
    create_delay_ms: AtomicUsize,
    recycle_delay_ms: AtomicUsize,
    /// Random delays up to the configured ones instead of fixed ones.
    random_delays: AtomicBool,
    /// This share (in percent) of recycle checks fails at random.
    recycle_failure_percent: AtomicUsize,
}

#[derive(Clone, Default)]
struct TestManager(Arc<Shared>);

impl TestManager {
    fn alive(&self) -> usize {
        self.0.alive.load(Ordering::SeqCst)
    }
    fn set_create_delay(&self, ms: usize) {
        self.0.create_delay_ms.store(ms, Ordering::SeqCst);
    }
    fn set_recycle_delay(&self, ms: usize) {
        self.0.recycle_delay_ms.store(ms, Ordering::SeqCst);
    }
    fn fail_create(&self, msg: Option<&str>) {
        *self.0.fail_create.lock().unwrap() = msg.map(str::to_owned);
    }
    fn fail_recycles_percent(&self, percent: usize) {
        self.0
            .recycle_failure_percent
            .store(percent, Ordering::SeqCst);
    }
    fn recycles(&self) -> usize {
        self.0.recycles_started.load(Ordering::SeqCst)
    }
    fn break_conn(&self, id: usize) {
        self.0.broken.lock().unwrap().insert(id);
    }
    async fn delay(&self, ms: usize) {
        if ms == 0 {
            return;
        }
        let ms = if self.0.random_delays.load(Ordering::SeqCst) {
            fastrand::usize(0..=ms)
        } else {
            ms
        };
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    }
}

impl Manager for TestManager {
    type Resource = Conn;
    type Error = TestError;

    async fn create(&self) -> Result<Conn, TestError> {
        self.0.creates_started.fetch_add(1, Ordering::SeqCst);
        self.delay(self.0.create_delay_ms.load(Ordering::SeqCst))
            .await;
        if let Some(msg) = self.0.fail_create.lock().unwrap().clone() {
            return Err(TestError(msg));
        }
        self.0.alive.fetch_add(1, Ordering::SeqCst);
        Ok(Conn {
            id: self.0.next_id.fetch_add(1, Ordering::SeqCst),
            alive: self.0.alive.clone(),
        })
    }

    async fn recycle(&self, conn: &mut Conn) -> Result<(), TestError> {
        self.0.recycles_started.fetch_add(1, Ordering::SeqCst);
        self.delay(self.0.recycle_delay_ms.load(Ordering::SeqCst))
            .await;
        let percent = self.0.recycle_failure_percent.load(Ordering::SeqCst);
        if percent > 0 && fastrand::usize(0..100) < percent {
            return Err(TestError(format!("connection {} failed a check", conn.id)));
        }
        if self.0.broken.lock().unwrap().contains(&conn.id) {
            return Err(TestError(format!("connection {} is broken", conn.id)));
        }
        Ok(())
    }
}

fn pool(manager: &TestManager, min: usize, max: usize) -> Pool<TestManager> {
    Pool::builder()
        .min_size(min)
        .max_size(max)
        .build(manager.clone())
        .unwrap()
}

/// Fills the pool with `n` idle resources with ids `0..n`, returned in id
/// order: the highest id is the newest idle one.
async fn idle_resources(pool: &Pool<TestManager>, n: usize) {
    let mut conns = futures::future::join_all((0..n).map(|_| pool.acquire()))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect::<Vec<_>>();
    conns.sort_by_key(|c| c.id);
    assert_eq!(
        conns.iter().map(|c| c.id).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    for conn in conns {
        drop(conn);
    }
    assert_eq!(pool.stats().idle, n);
}

/// Lets spawned tasks run until nothing is left to do right now.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn min_size_is_filled_in_the_background() {
    let manager = TestManager::default();
    manager.set_create_delay(100);
    let pool = pool(&manager, 10, 20);
    // `build` returned before any connection was made.
    assert_eq!(pool.stats().idle, 0);
    assert_eq!(manager.alive(), 0);

    tokio::time::sleep(Duration::from_millis(150)).await;
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle, stats.in_use), (10, 10, 0));
    assert_eq!(stats.created, 10);
    assert_eq!(manager.alive(), 10);
    // Created concurrently: 10 creates of 100 ms each fit in 150 ms.

    // Detaching one drops the pool below min_size: it is refilled.
    let conn = pool.acquire().await.unwrap();
    let detached = Pooled::detach(conn);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle), (10, 10));
    assert_eq!(stats.closed_by_reason.detached, 1);
    assert_eq!(manager.alive(), 11); // 10 pooled + the detached one
    drop(detached);
    assert_eq!(manager.alive(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_is_never_exceeded_under_1000_concurrent_acquirers() {
    let manager = TestManager::default();
    let pool = Pool::builder().max_size(16).build(manager.clone()).unwrap();
    let out = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (pool, out, peak) = (pool.clone(), out.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.expect("acquire");
            let now = out.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            if i % 3 == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            } else {
                tokio::task::yield_now().await;
            }
            out.fetch_sub(1, Ordering::SeqCst);
            drop(conn);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 16, "{peak} resources were out at once");
    assert!(peak > 1, "the acquirers never overlapped");
    let stats = pool.stats();
    assert!(stats.created <= 16, "created {}", stats.created);
    assert_eq!(stats.size, stats.idle);
    assert_eq!(stats.waiting, 0);
    assert_eq!(manager.alive(), stats.size);
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_gives_a_clear_error() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .build(manager.clone())
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let start = tokio::time::Instant::now();
    let err = pool.acquire().await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let PoolError::Timeout(timeout) = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(timeout.waited(), Duration::from_secs(2));
    assert_eq!((timeout.size(), timeout.max_size()), (1, 1));
    let msg = err.to_string();
    assert!(
        msg.contains("timed out after 2s waiting for a pool resource (1 of max 1 open"),
        "{msg}"
    );
    assert!(msg.contains("raise max_size or acquire_timeout"), "{msg}");
    let stats = pool.stats();
    assert_eq!((stats.timed_out, stats.waiting, stats.size), (1, 0, 1));
    drop(held);
    assert!(pool.acquire().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_is_on_by_default() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 1);
    let _held = pool.acquire().await.unwrap();
    let start = tokio::time::Instant::now();
    assert!(pool.acquire().await.unwrap_err().is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn acquire_timeout_covers_waiting_and_creating_together() {
    let manager = TestManager::default();
    manager.set_create_delay(1_000);
    let pool = Pool::builder()
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .build(manager.clone())
        .unwrap();

    // A create slower than the timeout.
    manager.set_create_delay(5_000);
    let start = tokio::time::Instant::now();
    assert!(pool.acquire().await.unwrap_err().is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(pool.stats().size, 0, "the timed-out create kept its slot");

    // 1.5 s in line, then a 1 s create: 2.5 s in all, over the limit.
    manager.set_create_delay(0);
    let held = pool.acquire().await.unwrap();
    let held_id = held.id;
    manager.set_create_delay(1_000);
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        Pooled::detach(held) // frees the slot: the waiter must create
    });
    let start = tokio::time::Instant::now();
    assert!(pool.acquire().await.unwrap_err().is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    assert_eq!(releaser.await.unwrap().id, held_id);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.timed_out), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn a_recycle_check_slower_than_the_timeout_closes_the_resource() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .acquire_timeout(Duration::from_secs(2))
        .build(manager.clone())
        .unwrap();
    drop(pool.acquire().await.unwrap());
    manager.set_recycle_delay(5_000);
    let start = tokio::time::Instant::now();
    assert!(pool.acquire().await.unwrap_err().is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let stats = pool.stats();
    assert_eq!((stats.size, stats.closed_by_reason.interrupted), (0, 1));
    assert_eq!(manager.alive(), 0);
}

#[test]
fn pool_and_guard_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool<TestManager>>();
    send_sync::<Pooled<TestManager>>();
    send_sync::<PoolError<TestError>>();
}

#[tokio::test(start_paused = true)]
async fn background_creates_are_bounded_and_retried() {
    let manager = TestManager::default();
    manager.set_create_delay(10_000);
    let pool = Pool::builder()
        .min_size(2)
        .max_size(2)
        .acquire_timeout(Duration::from_secs(1))
        .build(manager.clone())
        .unwrap();
    // A background create may take at most acquire_timeout.
    tokio::time::sleep(Duration::from_millis(1_010)).await;
    let stats = pool.stats();
    assert_eq!((stats.create_failed, stats.size), (2, 0), "{stats:?}");

    // The server recovers; the pool fills on a later attempt.
    manager.set_create_delay(0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = pool.stats();
    assert_eq!((stats.idle, stats.created), (2, 2), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn create_error_reaches_the_caller_and_the_pool_recovers() {
    let manager = TestManager::default();
    manager.set_create_delay(10);
    let pool = pool(&manager, 0, 1);
    manager.fail_create(Some("password authentication failed for user \"app\""));

    // Two acquirers: the first creates, the second waits behind it. Each
    // gets the manager's error, not a timeout.
    let (a, b) = tokio::join!(pool.acquire(), pool.acquire());
    for err in [a.unwrap_err(), b.unwrap_err()] {
        let PoolError::Create(e) = &err else {
            panic!("expected the create error, got {err:?}");
        };
        assert_eq!(e.0, "password authentication failed for user \"app\"");
        assert_eq!(
            err.to_string(),
            "pool could not create a resource: password authentication failed for user \"app\""
        );
    }
    let stats = pool.stats();
    assert_eq!(
        (stats.create_failed, stats.size, stats.timed_out),
        (2, 0, 0)
    );

    manager.fail_create(None);
    let conn = pool.acquire().await.expect("the pool is usable again");
    assert_eq!(conn.id, 0);
}

#[tokio::test(start_paused = true)]
async fn a_resource_failing_recycle_is_replaced_never_handed_out() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 2);
    let first = pool.acquire().await.unwrap();
    assert_eq!(first.id, 0);
    drop(first);
    manager.break_conn(0);

    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 1, "the broken connection was handed out");
    let stats = pool.stats();
    assert_eq!(stats.closed_by_reason.recycle_failed, 1);
    assert_eq!((stats.created, stats.size, stats.in_use), (2, 1, 1));
    assert_eq!(manager.alive(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_recycle_falls_back_to_the_other_idle_resource() {
    // Two idle resources; the newest fails its check. The other, healthy
    // one is handed out: nothing new is created while it existed.
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 4);
    idle_resources(&pool, 2).await;
    manager.break_conn(1);

    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 0, "the healthy idle resource was passed over");
    let stats = pool.stats();
    assert_eq!(
        (stats.size, stats.idle, stats.in_use),
        (1, 0, 1),
        "{stats:?}"
    );
    assert_eq!((stats.created, stats.recycled), (2, 1), "{stats:?}");
    assert_eq!(stats.closed_by_reason.recycle_failed, 1);
    assert_eq!(manager.recycles(), 2);
    assert_eq!(manager.alive(), 1, "the broken resource is closed");
}

#[tokio::test(start_paused = true)]
async fn when_every_idle_resource_fails_recycle_each_is_closed_then_one_created() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 4);
    idle_resources(&pool, 2).await;
    manager.break_conn(0);
    manager.break_conn(1);

    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 2, "a new resource");
    let stats = pool.stats();
    assert_eq!(
        (stats.size, stats.idle, stats.in_use),
        (1, 0, 1),
        "{stats:?}"
    );
    assert_eq!(stats.closed_by_reason.recycle_failed, 2);
    assert_eq!((stats.created, stats.recycled), (3, 0));
    assert_eq!(manager.recycles(), 2);
    assert_eq!(manager.alive(), 1);
}

#[tokio::test(start_paused = true)]
async fn recycle_checks_per_acquire_are_bounded() {
    // A failover: every idle resource is dead. One acquire makes at most 3
    // checks (the documented bound), then creates a new resource in the
    // last failed one's slot, without waiting, though the pool was full.
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 5);
    idle_resources(&pool, 5).await;
    for id in 0..5 {
        manager.break_conn(id);
    }

    let first = pool.acquire().await.unwrap();
    assert_eq!(first.id, 5);
    assert_eq!(manager.recycles(), 3, "checks made by one acquire");
    let stats = pool.stats();
    assert_eq!(stats.closed_by_reason.recycle_failed, 3);
    // The two oldest dead ones are left idle, unchecked...
    assert_eq!(
        (stats.size, stats.idle, stats.in_use),
        (3, 2, 1),
        "{stats:?}"
    );

    // ...for the next acquire to check (and close) them.
    let second = pool.acquire().await.unwrap();
    assert_eq!(second.id, 6);
    assert_eq!(manager.recycles(), 5);
    let stats = pool.stats();
    assert_eq!(stats.closed_by_reason.recycle_failed, 5);
    assert_eq!(
        (stats.size, stats.idle, stats.in_use),
        (2, 0, 2),
        "{stats:?}"
    );
    assert_eq!(manager.alive(), 2);
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_a_later_recycle_check_leaks_no_slot() {
    // Idle 0, 1, 2; the newest (2) fails its 1 s check, then the acquire
    // is dropped 0.5 s into checking 1.
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 3);
    idle_resources(&pool, 3).await;
    manager.break_conn(2);
    manager.set_recycle_delay(1_000);

    let cancelled = tokio::time::timeout(Duration::from_millis(1_500), pool.acquire()).await;
    assert!(
        cancelled.is_err(),
        "the acquire was not cancelled mid-check"
    );
    assert_eq!(manager.recycles(), 2);
    let stats = pool.stats();
    assert_eq!(
        (stats.size, stats.idle, stats.in_use),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(stats.closed_by_reason.recycle_failed, 1);
    assert_eq!(stats.closed_by_reason.interrupted, 1);
    assert_eq!(manager.alive(), 1);

    // The remaining resource and every freed slot are usable.
    manager.set_recycle_delay(0);
    let conns = futures::future::join_all((0..3).map(|_| pool.acquire())).await;
    let mut ids: Vec<_> = conns.iter().map(|c| c.as_ref().unwrap().id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![0, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_order_and_not_overtaken() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 1);
    let held = pool.acquire().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (pool, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let conn = pool.acquire().await.unwrap();
            order.lock().unwrap().push(i);
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(conn);
        }));
        settle().await; // each waiter is queued before the next one starts
    }
    assert_eq!(pool.stats().waiting, 5);
    drop(held);
    // A newcomer while others wait goes to the back of the line.
    let late = pool.acquire().await.unwrap();
    order.lock().unwrap().push(99);
    drop(late);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 99]);
}

#[tokio::test(start_paused = true)]
async fn cancelling_during_create_frees_the_slot() {
    let manager = TestManager::default();
    manager.set_create_delay(1_000);
    let pool = pool(&manager, 0, 1);
    let cancelled = tokio::time::timeout(Duration::from_millis(100), pool.acquire()).await;
    assert!(cancelled.is_err());
    assert_eq!(pool.stats().size, 0, "the slot leaked");

    // A waiter queued behind a cancelled creator gets the slot.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|c| c.id) })
    };
    let creator = tokio::spawn({
        let pool = pool.clone();
        async move { pool.acquire().await.map(|c| c.id) }
    });
    settle().await;
    creator.abort();
    assert_eq!(waiter.await.unwrap().unwrap(), 0);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle, stats.waiting), (1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn cancelling_after_a_handover_passes_the_resource_on() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 1);
    let spawn_waiter = || {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|c| c.id) })
    };

    // The held resource is handed to the first waiter, which is cancelled
    // before it runs: the resource goes on to the second waiter.
    let held = pool.acquire().await.unwrap();
    let (first, second) = (spawn_waiter(), spawn_waiter());
    settle().await;
    assert_eq!(pool.stats().waiting, 2);
    drop(held);
    first.abort();
    assert_eq!(second.await.unwrap().unwrap(), 0);
    assert!(first.await.unwrap_err().is_cancelled());
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle, stats.waiting), (1, 1, 0));

    // Same with a freed slot (the holder detached its resource): the
    // cancelled waiter's right to create is not lost either.
    let held = pool.acquire().await.unwrap();
    let (first, second) = (spawn_waiter(), spawn_waiter());
    settle().await;
    drop(Pooled::detach(held));
    first.abort();
    assert_eq!(second.await.unwrap().unwrap(), 1);

    // And with nobody left in line, the resource simply goes idle.
    let held = pool.acquire().await.unwrap();
    let only = spawn_waiter();
    settle().await;
    drop(held);
    only.abort();
    settle().await;
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle, stats.waiting), (1, 1, 0));
    assert_eq!(manager.alive(), 1);
}

#[tokio::test(start_paused = true)]
async fn thousands_of_random_cancellations_leave_counts_exact() {
    // POOL_TEST_SEED=n replays another random schedule.
    let seed = std::env::var("POOL_TEST_SEED").map_or(7, |s| s.parse().unwrap());
    fastrand::seed(seed);
    let manager = TestManager::default();
    manager.0.random_delays.store(true, Ordering::SeqCst);
    manager.set_create_delay(20);
    manager.set_recycle_delay(5);
    // Acquires also go on from failed checks to other idle resources.
    manager.fail_recycles_percent(30);
    let max = 8;
    let pool = Pool::builder()
        .min_size(2)
        .max_size(max)
        .build(manager.clone())
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..3000u64 {
        let pool = pool.clone();
        let give_up = Duration::from_millis(fastrand::u64(0..40));
        let hold = Duration::from_millis(fastrand::u64(0..10));
        let start = Duration::from_millis(i / 10);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(start).await;
            // Dropped at a random point: queued, creating, recycling or
            // while handing over.
            if let Ok(Ok(conn)) = tokio::time::timeout(give_up, pool.acquire()).await {
                tokio::time::sleep(hold).await;
                drop(conn);
            }
        }));
        if i % 7 == 0 {
            // Some are aborted from outside as well.
            let victim = tasks.len() - 1;
            let handle = tasks[victim].abort_handle();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..400))).await;
                handle.abort();
            });
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = pool.stats();
    // Acquires were dropped while creating, while recycling and in line.
    assert!(manager.0.creates_started.load(Ordering::SeqCst) as u64 > stats.created);
    assert!(stats.closed_by_reason.interrupted > 0, "{stats:?}");
    assert!(stats.recycled > 0, "{stats:?}");
    assert!(stats.closed_by_reason.recycle_failed > 0, "{stats:?}");
    assert_eq!(stats.in_use, 0, "{stats:?}");
    assert_eq!(stats.waiting, 0, "{stats:?}");
    assert_eq!(stats.size, stats.idle, "{stats:?}");
    assert!(stats.size >= 2 && stats.size <= max, "{stats:?}");
    assert_eq!(manager.alive(), stats.size, "{stats:?}");

    // Every slot is still usable: max_size resources can be out at once.
    let mut all = Vec::new();
    for _ in 0..max {
        all.push(pool.acquire().await.unwrap());
    }
    assert_eq!(pool.stats().size, max);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cancellations_across_threads_leave_counts_exact() {
    let manager = TestManager::default();
    manager.0.random_delays.store(true, Ordering::SeqCst);
    manager.set_create_delay(2);
    manager.set_recycle_delay(1);
    manager.fail_recycles_percent(30);
    let max = 4;
    let pool = Pool::builder()
        .max_size(max)
        .build(manager.clone())
        .unwrap();
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let give_up = Duration::from_micros(fastrand::u64(0..3000));
                let acquired = tokio::time::timeout(give_up, pool.acquire()).await;
                if let Ok(Ok(conn)) = acquired {
                    if i % 2 == 0 {
                        tokio::task::yield_now().await;
                    }
                    drop(conn);
                }
            })
        })
        .collect();
    for (i, task) in tasks.iter().enumerate() {
        if i % 5 == 0 {
            task.abort();
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let stats = pool.stats();
    assert_eq!((stats.in_use, stats.waiting), (0, 0), "{stats:?}");
    assert_eq!(stats.size, stats.idle, "{stats:?}");
    assert!(stats.size <= max, "{stats:?}");
    assert_eq!(manager.alive(), stats.size, "{stats:?}");
    let all: Vec<_> = futures::future::join_all((0..max).map(|_| pool.acquire())).await;
    assert!(all.iter().all(Result::is_ok));
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_closes_old_resources_with_jitter() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .min_size(4)
        .max_size(8)
        .max_lifetime(Some(Duration::from_secs(100)))
        .idle_timeout(None)
        .build(manager.clone())
        .unwrap();
    settle().await;
    assert_eq!(pool.stats().idle, 4);
    let held = pool.acquire().await.unwrap();

    // Lifetimes are jittered down by at most 10%: nothing goes before 90 s.
    tokio::time::sleep(Duration::from_secs(89)).await;
    assert_eq!(pool.stats().closed_by_reason.max_lifetime, 0);
    tokio::time::sleep(Duration::from_secs(11)).await;
    settle().await;
    let stats = pool.stats();
    // The three idle ones were closed and replaced; the checked-out one
    // is closed when it comes back.
    assert_eq!(stats.closed_by_reason.max_lifetime, 3, "{stats:?}");
    assert_eq!(stats.created, 7);
    drop(held);
    settle().await;
    let stats = pool.stats();
    assert_eq!(stats.closed_by_reason.max_lifetime, 4, "{stats:?}");
    assert_eq!((stats.size, stats.idle, stats.created), (4, 4, 8));
    assert_eq!(manager.alive(), 4);
}

#[tokio::test(start_paused = true)]
async fn lifetimes_are_spread_out() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .min_size(20)
        .max_size(20)
        .max_lifetime(Some(Duration::from_secs(1000)))
        .idle_timeout(None)
        .build(manager.clone())
        .unwrap();
    settle().await;
    assert_eq!(pool.stats().created, 20);
    // Between 900 s and 1000 s the 20 resources expire a few at a time.
    tokio::time::sleep(Duration::from_secs(899)).await;
    assert_eq!(pool.stats().closed_by_reason.max_lifetime, 0);
    let mut steps = 0;
    let mut last = 0;
    for _ in 0..11 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let closed = pool.stats().closed_by_reason.max_lifetime;
        if closed != last {
            steps += 1;
            last = closed;
        }
    }
    assert_eq!(last, 20);
    assert!(steps >= 3, "all lifetimes ended within {steps} 10 s steps");
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_shrinks_to_min_size() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(5)
        .idle_timeout(Some(Duration::from_secs(10)))
        .max_lifetime(None)
        .build(manager.clone())
        .unwrap();
    let conns: Vec<_> = futures::future::join_all((0..5).map(|_| pool.acquire())).await;
    drop(conns);
    assert_eq!(pool.stats().idle, 5);

    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(pool.stats().idle, 5);
    tokio::time::sleep(Duration::from_secs(2)).await;
    settle().await;
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle), (1, 1), "{stats:?}");
    assert_eq!(stats.closed_by_reason.idle_timeout, 4);
    assert_eq!(manager.alive(), 1);
    // min_size resources stay however long they idle.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(pool.stats().size, 1);
}

/// `Duration::MAX` means "no limit" for every duration setting.
#[tokio::test(start_paused = true)]
async fn acquire_timeout_max_waits_without_limit() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .max_size(1)
        .acquire_timeout(Duration::MAX)
        .build(manager.clone())
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.acquire().await.map(|c| c.id) })
    };
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!waiter.is_finished(), "the waiter gave up within an hour");
    let stats = pool.stats();
    assert_eq!((stats.waiting, stats.timed_out), (1, 0));
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), 0);

    // A create and a recycle check that have to wait are not cut short.
    manager.set_create_delay(3_600_000);
    let pool = Pool::builder()
        .acquire_timeout(Duration::MAX)
        .min_size(1)
        .build(manager.clone())
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let stats = pool.stats();
    assert_eq!((stats.idle, stats.create_failed), (1, 0), "{stats:?}");
    manager.set_recycle_delay(3_600_000);
    let start = tokio::time::Instant::now();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
    assert_eq!(pool.stats().recycled, 1);
    drop(conn);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_max_keeps_resources_without_limit() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .min_size(1)
        .max_size(2)
        .max_lifetime(Some(Duration::MAX))
        .idle_timeout(None)
        .build(manager.clone())
        .unwrap();
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 0);
    drop(conn);
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 0, "a day later the resource is still reused");
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    drop(conn); // returned after a day checked out: still kept
    let stats = pool.stats();
    assert_eq!(
        (stats.size, stats.idle, stats.created),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.closed_by_reason.max_lifetime, 0);
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_max_keeps_idle_resources_without_limit() {
    let manager = TestManager::default();
    let pool = Pool::builder()
        .min_size(0)
        .max_size(2)
        .idle_timeout(Some(Duration::MAX))
        .max_lifetime(None)
        .build(manager.clone())
        .unwrap();
    idle_resources(&pool, 2).await;
    tokio::time::sleep(Duration::from_secs(86_400)).await;
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle), (2, 2), "{stats:?}");
    assert_eq!(stats.closed_by_reason.idle_timeout, 0);
    let conn = pool.acquire().await.unwrap();
    assert_eq!(conn.id, 1, "a day later the idle resource is still reused");
    assert_eq!(pool.stats().created, 2);
}

#[tokio::test(start_paused = true)]
async fn close_waits_for_checked_out_resources() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 2);
    let held = pool.acquire().await.unwrap();
    drop(pool.acquire().await.unwrap()); // one idle
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let _second = pool.acquire().await.unwrap();
            pool.acquire().await.map(|_| ())
        })
    };
    settle().await;
    assert_eq!(pool.stats().waiting, 1);

    let closing = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.close().await })
    };
    settle().await;
    assert!(
        !closing.is_finished(),
        "close did not wait for the checked-out resource"
    );
    assert!(waiter.await.unwrap().unwrap_err().is_closed());
    assert!(pool.acquire().await.unwrap_err().is_closed());
    assert_eq!(pool.stats().size, 1);

    drop(held);
    closing.await.unwrap();
    let stats = pool.stats();
    assert_eq!((stats.size, stats.idle), (0, 0));
    assert_eq!(stats.closed_by_reason.pool_closed, 2);
    assert_eq!(manager.alive(), 0);
    pool.close().await; // again: returns at once
}

#[tokio::test(start_paused = true)]
async fn service_form_composes_with_a_timeout_layer() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 1);
    let mut svc = ServiceBuilder::new()
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            100,
        )))
        .service(pool.clone());
    let held = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(held.id, 0);
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    assert_eq!(pool.stats().waiting, 0);
    drop(held);
    let again = svc.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(again.id, 0);
    drop(again);

    // The pool's own errors come through the stack, downcastable.
    pool.close().await;
    let err = svc.ready().await.unwrap_err();
    assert!(err
        .downcast_ref::<PoolError<TestError>>()
        .is_some_and(PoolError::is_closed));
}

#[tokio::test(start_paused = true)]
async fn detach_takes_the_resource_out_for_good() {
    let manager = TestManager::default();
    let pool = pool(&manager, 0, 1);
    let conn = Pooled::detach(pool.acquire().await.unwrap());
    assert_eq!(conn.id, 0);
    let stats = pool.stats();
    assert_eq!((stats.size, stats.closed_by_reason.detached), (0, 1));
    // Its slot is free: a new resource can be made while it lives on.
    let next = pool.acquire().await.unwrap();
    assert_eq!(next.id, 1);
    assert_eq!(manager.alive(), 2);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_pool_ends_the_background_task() {
    let manager = TestManager::default();
    let pool = pool(&manager, 3, 3);
    settle().await;
    assert_eq!(manager.alive(), 3);
    // The manager (inside the pool) holds one reference to `Shared`.
    assert_eq!(Arc::strong_count(&manager.0), 2);
    drop(pool);
    settle().await;
    assert_eq!(Arc::strong_count(&manager.0), 1, "the pool was kept alive");
    assert_eq!(manager.alive(), 0);
}

#[tokio::test]
async fn bad_configuration_is_a_config_error() {
    let err = Pool::builder()
        .max_size(0)
        .build(TestManager::default())
        .unwrap_err();
    assert_eq!(err.field(), "max_size");
    let err = Pool::builder()
        .min_size(10)
        .max_size(5)
        .build(TestManager::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid pool config: min_size = 10 (must not exceed max_size (5))"
    );
    let err = Pool::builder()
        .acquire_timeout(Duration::ZERO)
        .build(TestManager::default())
        .unwrap_err();
    assert_eq!(err.field(), "acquire_timeout");
    let err = Pool::builder()
        .max_lifetime(Some(Duration::ZERO))
        .build(TestManager::default())
        .unwrap_err();
    assert_eq!(err.field(), "max_lifetime");
    let err = Pool::builder()
        .idle_timeout(Some(Duration::ZERO))
        .build(TestManager::default())
        .unwrap_err();
    assert_eq!(err.field(), "idle_timeout");
}

#[test]
fn build_outside_a_runtime_is_a_config_error() {
    let err = Pool::builder().build(TestManager::default()).unwrap_err();
    assert_eq!(err.field(), "runtime");
}
