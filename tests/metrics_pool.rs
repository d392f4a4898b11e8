//! Feature `metrics`: what the pool records for an acquire and when it
//! sets its size gauges (`tests/metrics.rs` checks the table as a whole).
//!
//! Each test installs its own recorder for its thread and runs on a
//! current-thread runtime, as in `tests/metrics.rs`.
#![cfg(feature = "metrics")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tower_patterns::pool::{Manager, Pool};

mod common;

use common::recorder::TestRecorder;

const ACQUIRE: &str = "tower_patterns.pool.acquire.duration";
const SIZE: &str = "tower_patterns.pool.size";
const IN_USE: &str = "tower_patterns.pool.in_use";

/// Creates numbers, taking `create` (on tokio's clock) for each; zero
/// creates without a timer.
struct Numbers {
    next: AtomicU32,
    create: Duration,
}

impl Numbers {
    fn taking(create: Duration) -> Self {
        Numbers {
            next: AtomicU32::new(0),
            create,
        }
    }
}

impl Manager for Numbers {
    type Resource = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        if !self.create.is_zero() {
            tokio::time::sleep(self.create).await;
        }
        Ok(self.next.fetch_add(1, Ordering::Relaxed))
    }

    async fn recycle(&self, _: &mut u32) -> Result<(), std::io::Error> {
        Ok(())
    }
}

fn n(name: &'static str) -> (&'static str, &'static str) {
    ("name", name)
}

/// An acquire that never has to wait (a create or a check that finishes
/// on its first poll) records zero and reads no clock. On the real clock:
/// a time measured from the call would be above zero.
#[tokio::test]
async fn an_acquire_answered_at_once_records_zero() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let pool = Pool::builder()
        .name("at-once")
        .max_size(1)
        .build(Numbers::taking(Duration::ZERO))
        .unwrap();
    drop(pool.acquire().await.unwrap()); // created
    drop(pool.acquire().await.unwrap()); // idle, checked
    assert_eq!(rec.histogram(ACQUIRE, &[n("at-once")]), vec![0.0, 0.0]);
}

/// The time counts from the first moment the acquire waits: for a
/// create, or in line for a resource.
#[tokio::test(start_paused = true)]
async fn an_acquire_records_the_time_from_its_first_wait() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let pool = Pool::builder()
        .name("waits")
        .max_size(1)
        .build(Numbers::taking(Duration::from_secs(2)))
        .unwrap();
    let first = pool.acquire().await.unwrap(); // creating: 2 s
    let next = tokio::spawn({
        let pool = pool.clone();
        async move { *pool.acquire().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_secs(3)).await; // `next` waits in line
    drop(first);
    assert_eq!(next.await.unwrap(), 0, "handed the same resource");
    assert_eq!(rec.histogram(ACQUIRE, &[n("waits")]), vec![2.0, 3.0]);
}

/// A resource handed from a release straight to a waiter changes no
/// size, so the gauges are not set again; they still show the sizes, and
/// a recorder installed while the pool is busy is shown them at its
/// first acquire.
#[tokio::test(start_paused = true)]
async fn the_size_gauges_stay_true_across_hand_offs_and_a_late_recorder() {
    let pool = Pool::builder()
        .name("hand-off")
        .max_size(2)
        .build(Numbers::taking(Duration::ZERO))
        .unwrap();
    let a = pool.acquire().await.unwrap();
    let b = pool.acquire().await.unwrap();
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn({
        let pool = pool.clone();
        async move {
            let c = pool.acquire().await.unwrap();
            let _ = wait.await;
            drop(c);
        }
    });
    tokio::task::yield_now().await; // the waiter joins the line
    assert_eq!(pool.stats().waiting, 1);

    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let name = [n("hand-off")];
    drop(a); // handed to the waiter: no size changes
    tokio::task::yield_now().await;
    assert_eq!(pool.stats().waiting, 0);
    assert_eq!(rec.gauge(SIZE, &name), Some(2.0));
    assert_eq!(rec.gauge(IN_USE, &name), Some(2.0));

    drop(b); // goes idle
    assert_eq!(rec.gauge(IN_USE, &name), Some(1.0));
    go.send(()).unwrap();
    waiter.await.unwrap();
    assert_eq!(rec.gauge(SIZE, &name), Some(2.0));
    assert_eq!(rec.gauge(IN_USE, &name), Some(0.0));
    assert_eq!(rec.histogram(ACQUIRE, &name).len(), 1, "the waiter's");
}

/// The size gauges follow what the background task does with no acquire
/// or release after it: idle resources closed by `idle_timeout` leave the
/// gauges at the smaller size.
#[tokio::test(start_paused = true)]
async fn the_size_gauges_follow_the_background_task() {
    let rec = TestRecorder::default();
    let _guard = metrics::set_default_local_recorder(&rec);
    let pool = Pool::builder()
        .name("reaped")
        .max_size(2)
        .idle_timeout(Some(Duration::from_secs(10)))
        .build(Numbers::taking(Duration::ZERO))
        .unwrap();
    let name = [n("reaped")];
    let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
    drop((a, b));
    assert_eq!(rec.gauge(SIZE, &name), Some(2.0));
    assert_eq!(rec.gauge(IN_USE, &name), Some(0.0));

    // The background task runs on this runtime; wait on tokio's clock
    // until it has closed both (bounded: a minute of paused time).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pool.stats().size > 0 {
        assert!(tokio::time::Instant::now() < deadline, "not reaped");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(rec.gauge(SIZE, &name), Some(0.0));
    assert_eq!(rec.gauge(IN_USE, &name), Some(0.0));
}
