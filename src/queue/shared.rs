//! The state every [`TaskQueue`](super::TaskQueue) clone, task handle and
//! worker shares: the job queue under its lock, the task table, the
//! counters, and the janitor that expires kept results.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::active::Active;
use super::cell::{Cell, Finished};
use super::error::TaskError;
use super::jobs::{Job, Jobs};
use super::stats::QueueStats;
use super::table::TaskTable;
use super::task::{TaskId, TaskStatus};
use crate::sync::{lock, Padded};
use crate::trace::{record, trace_event};

/// When a worker took a job or finished one, for the time-in-queue and
/// run-time histograms: a clock read with the `metrics` feature, nothing
/// without it. A worker that goes straight from one task to the next reads
/// the clock once between them (see `run_worker`).
#[cfg(feature = "metrics")]
pub(crate) type Stamp = tokio::time::Instant;
/// Without `metrics`: nothing (no clock is read).
#[cfg(not(feature = "metrics"))]
#[derive(Clone, Copy)]
pub(crate) struct Stamp;

/// Now, as a [`Stamp`].
#[cfg(feature = "metrics")]
#[inline]
pub(crate) fn stamp() -> Stamp {
    tokio::time::Instant::now()
}

/// Now, as a [`Stamp`] (nothing to read without `metrics`).
#[cfg(not(feature = "metrics"))]
#[inline]
pub(crate) fn stamp() -> Stamp {
    Stamp
}

/// How a started task went, for the histograms and gauges (see
/// `Shared::finish`).
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Ran {
    /// When the worker took it.
    pub(crate) started: Stamp,
    /// When its run ended, if the worker ran it (not for one whose deadline
    /// had passed).
    pub(crate) ended: Option<Stamp>,
    /// It waited at least once, so `Shared::waits` showed it as running.
    pub(crate) waited: bool,
}

/// Task counts since the queue was built; the hot ones on their own cache
/// lines.
#[derive(Default)]
pub(crate) struct Counters {
    started: Padded<AtomicU64>,
    pub(crate) completed: Padded<AtomicU64>,
    pub(crate) failed: Padded<AtomicU64>,
    panicked: AtomicU64,
    expired: AtomicU64,
    pub(crate) cancelled: Padded<AtomicU64>,
    pub(crate) cancelled_pending: AtomicU64,
}

/// Everything the queue handles, handles and workers share.
pub(crate) struct Shared<Req, Res, E> {
    pub(crate) jobs: Mutex<Jobs<Req, Res, E>>,
    pub(crate) table: TaskTable<Res, E>,
    pub(crate) counters: Counters,
    pub(crate) capacity: usize,
    pub(crate) workers: usize,
    /// Live `TaskQueue` clones; the last one to go closes the queue.
    pub(crate) handles: AtomicUsize,
    live_workers: AtomicUsize,
    /// Becomes true when the last worker has stopped.
    pub(crate) stopped: watch::Sender<bool>,
    /// Set by a shutdown that cancels everything unfinished.
    pub(crate) cancelling: AtomicBool,
    /// What a shutdown must reach that the table may not list.
    pub(crate) active: Active<Res, E>,
    /// Jobs a worker took from the queue and has not started yet, and
    /// whether submitters may wait for room: see [`Claimed`].
    claimed: Padded<Claimed>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments<crate::metrics::QueueMetrics>,
}

/// Jobs workers took from the queue and have not started yet: still
/// pending, still counted against the capacity (see `Shared::has_room`).
/// On its own cache line, apart from the queue's lock: a worker lowers it
/// without the lock as it starts each job.
#[derive(Default)]
struct Claimed {
    count: AtomicUsize,
    /// Set (under the queue lock) while submitters may wait for room; read
    /// by a worker, without the lock, after it lowers `count`.
    space_waiting: AtomicBool,
}

impl<Req, Res, E> Shared<Req, Res, E> {
    /// An open queue with one handle and `workers` live workers (the caller
    /// spawns them).
    pub(crate) fn new(
        workers: usize,
        capacity: usize,
        retain: Duration,
        max_retained: usize,
    ) -> Self {
        Shared {
            jobs: Mutex::new(Jobs::new(workers, capacity)),
            table: TaskTable::new(retain, max_retained),
            counters: Counters::default(),
            capacity,
            workers,
            handles: AtomicUsize::new(1),
            live_workers: AtomicUsize::new(workers),
            stopped: watch::channel(false).0,
            cancelling: AtomicBool::new(false),
            active: Active::new(workers),
            claimed: Padded::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new("queue".into()),
        }
    }

    /// The queue with its metrics labelled `name`.
    #[cfg(feature = "metrics")]
    pub(crate) fn named(mut self, name: crate::trace::Name) -> Self {
        self.metrics = crate::metrics::Instruments::new(name);
        self
    }

    /// Sets the gauges to the present values less the effect of the event
    /// being recorded, which the caller applies next (on registration;
    /// takes the queue lock, so never called with it held).
    #[cfg(feature = "metrics")]
    fn init_gauges(&self, m: &crate::metrics::QueueMetrics, depth: f64, running: f64) {
        let s = self.stats();
        m.depth.set(s.queued as f64 - depth);
        m.running.set(s.running as f64 - running);
    }

    /// Accepts a task (room and openness checked by the caller) in `cell`,
    /// a [`Cell::unnumbered`] made before the lock was taken; numbers it and
    /// returns it, with an idle worker to wake once the lock is released.
    pub(crate) fn push_locked(
        &self,
        jobs: &mut Jobs<Req, Res, E>,
        mut cell: Arc<Cell<Res, E>>,
        req: Req,
    ) -> (Arc<Cell<Res, E>>, Option<Waker>) {
        let id = jobs.next_id;
        jobs.next_id += 1;
        Arc::get_mut(&mut cell)
            .expect("a new cell is not shared yet")
            .id = TaskId(id);
        jobs.queue.push_back(Job {
            cell: cell.clone(),
            req,
        });
        (cell, jobs.wake_worker())
    }

    /// After [`push_locked`](Self::push_locked), with the queue lock
    /// released (so workers do not wait on the table's lock): lists the
    /// task in the table before its id is handed out. A worker may already
    /// have run it meanwhile: a result it could not park yet (it was not
    /// listed) is parked now, and a task a shutdown's `cancel_all` could not
    /// see is cancelled now. (`handle`: a `TaskHandle` will be made, which
    /// alone can name the task until its id is read: not listed, see
    /// `Cell::list`.)
    pub(crate) fn track(&self, cell: &Arc<Cell<Res, E>>, handle: bool) {
        record!(
            self.metrics,
            |m| m.depth.increment(1),
            init = |m| self.init_gauges(m, 1.0, 0.0)
        );
        if !handle {
            self.table.insert(cell.id.0, cell.clone());
            if cell.parked() {
                self.table.park(cell.id);
            }
        }
        if self.cancelling.load(Ordering::SeqCst) {
            self.cancel_tracked(cell);
        }
    }

    /// Whether a task may be accepted: pending tasks (queued, claimed by a
    /// worker, or reserved by `poll_ready`) are fewer than the capacity.
    pub(crate) fn has_room(&self, jobs: &mut Jobs<Req, Res, E>) -> bool {
        let queued = jobs.queue.len() + jobs.reserved;
        // `claimed_bound` only overstates the claimed jobs (they are claimed
        // under the lock and started without it): when it leaves room, there
        // is room, and the worker's cache line need not be read.
        if queued + jobs.claimed_bound < self.capacity {
            return true;
        }
        jobs.claimed_bound = self.claimed.count.load(Ordering::SeqCst);
        queued + jobs.claimed_bound < self.capacity
    }

    /// Registers a submitter waiting for room (under the queue lock). False
    /// if there is room after all (a worker started a claimed job, which it
    /// does without the lock): the caller goes on, its `key` removed.
    pub(crate) fn wait_for_room(
        &self,
        jobs: &mut Jobs<Req, Res, E>,
        key: &mut Option<usize>,
        waker: &Waker,
    ) -> bool {
        jobs.space.register(key, waker);
        // Set before `claimed` is read again; `unclaim` lowers `claimed`
        // before reading this: one of the two sees the other.
        self.claimed.space_waiting.store(true, Ordering::SeqCst);
        if self.has_room(jobs) {
            jobs.space.remove(key);
            return false;
        }
        true
    }

    /// A claimed job is no longer pending (started, or cancelled): its slot
    /// is free, and a submitter waiting for room is woken.
    pub(crate) fn unclaim(&self) {
        self.claimed.count.fetch_sub(1, Ordering::SeqCst);
        if self.claimed.space_waiting.load(Ordering::SeqCst) {
            let wake = {
                let mut jobs = lock(&self.jobs);
                let wake = jobs.space.notify_one();
                if jobs.space.live() == 0 {
                    self.claimed.space_waiting.store(false, Ordering::SeqCst);
                }
                wake
            };
            if let Some(w) = wake {
                w.wake();
            }
        }
    }

    /// The next job for the worker at `index`: from `batch`, the jobs it
    /// claimed earlier, or else from the queue. A lone worker claims the
    /// whole queue at once (it is the only one who could run those jobs),
    /// so it takes the queue's lock once per batch rather than per task;
    /// with several workers each claims one job at a time.
    pub(crate) fn poll_next_job(
        &self,
        cx: &mut Context<'_>,
        index: usize,
        batch: &mut VecDeque<Job<Req, Res, E>>,
    ) -> Poll<Option<Job<Req, Res, E>>> {
        if let Some(job) = batch.pop_front() {
            return Poll::Ready(Some(job));
        }
        let mut jobs = lock(&self.jobs);
        jobs.unidle(index);
        if !jobs.queue.is_empty() {
            let n = if self.workers == 1 {
                jobs.queue.len()
            } else {
                1
            };
            jobs.claimed_bound = self.claimed.count.fetch_add(n, Ordering::SeqCst) + n;
            batch.extend(jobs.queue.drain(..n));
            let worker = jobs.wake_worker();
            drop(jobs);
            if let Some(w) = worker {
                w.wake();
            }
            return Poll::Ready(batch.pop_front());
        }
        if jobs.closed {
            return Poll::Ready(None);
        }
        jobs.idle(index, cx.waker().clone());
        Poll::Pending
    }

    /// A claimed job: Pending -> Running, counted, its slot freed; false if
    /// it was cancelled meanwhile (the cancel freed the slot). The gauges
    /// and the time in queue are recorded when the task first waits
    /// ([`waits`](Self::waits)), or else with its outcome: one recorder
    /// lookup for a task that never waits.
    pub(crate) fn start(&self, cell: &Cell<Res, E>) -> bool {
        if cell.start() {
            self.counters.started.fetch_add(1, Ordering::Relaxed);
            self.unclaim();
            true
        } else {
            false
        }
    }

    /// A started task waits for the first time (it was taken at
    /// `started`): it shows in the gauges as running from now on.
    pub(crate) fn waits(&self, cell: &Cell<Res, E>, started: Stamp) {
        #[cfg(not(feature = "metrics"))]
        let _ = (cell, started);
        record!(
            self.metrics,
            |m| {
                m.depth.decrement(1);
                m.running.increment(1);
                m.wait
                    .record(started.saturating_duration_since(cell.submitted))
            },
            init = |m| self.init_gauges(m, -1.0, 1.0)
        );
    }

    /// Running -> its terminal status, counted, result delivered or parked,
    /// and recorded as `ran` says.
    pub(crate) fn finish(&self, cell: &Cell<Res, E>, out: Result<Res, TaskError<E>>, ran: Ran) {
        #[cfg(not(feature = "metrics"))]
        let _ = ran;
        let panicked = matches!(out, Err(TaskError::Panicked(_)));
        let expired = matches!(out, Err(TaskError::DeadlineExceeded(_)));
        let Some(Finished { status, park, wake }) = cell.finish(out) else {
            return;
        };
        record!(
            self.metrics,
            |m| {
                if ran.waited {
                    m.running.decrement(1);
                } else {
                    // Never shown as running (see `waits`): it leaves the
                    // queue's depth now, having waited there until it started.
                    m.depth.decrement(1);
                    m.wait
                        .record(ran.started.saturating_duration_since(cell.submitted));
                }
                if let Some(ended) = ran.ended {
                    m.run.record(ended.saturating_duration_since(ran.started));
                }
                match status {
                    TaskStatus::Completed => &m.completed,
                    TaskStatus::Cancelled if expired => &m.expired,
                    TaskStatus::Cancelled => &m.cancelled,
                    _ if panicked => &m.panicked,
                    _ => &m.failed,
                }
                .increment(1)
            },
            init = |m| if ran.waited {
                self.init_gauges(m, 0.0, 0.0)
            } else {
                // Running still counts it; the gauge must not.
                self.init_gauges(m, -1.0, 1.0)
            }
        );
        let c = &self.counters;
        match status {
            TaskStatus::Completed => c.completed.fetch_add(1, Ordering::Release),
            TaskStatus::Cancelled => {
                if expired {
                    c.expired.fetch_add(1, Ordering::Relaxed);
                    trace_event!(DEBUG, task = %cell.id, "task deadline passed before it started; not run");
                }
                c.cancelled.fetch_add(1, Ordering::Release)
            }
            _ => {
                if panicked {
                    c.panicked.fetch_add(1, Ordering::Relaxed);
                    trace_event!(WARN, task = %cell.id, "task panicked; worker carries on");
                }
                c.failed.fetch_add(1, Ordering::Release)
            }
        };
        if park {
            self.table.park(cell.id);
        }
        // Last: a woken waiter must find the task counted.
        if let Some(w) = wake {
            w.wake();
        }
    }

    /// Stops accepting tasks; idle workers wake to drain and exit.
    pub(crate) fn close(&self) {
        lock(&self.jobs).close();
    }

    pub(crate) fn worker_stopped(&self, index: usize) {
        {
            // A worker dropped while woken must not hold up the others.
            let mut jobs = lock(&self.jobs);
            jobs.unidle(index);
            let wake = jobs.wake_worker();
            drop(jobs);
            if let Some(w) = wake {
                w.wake();
            }
        }
        if self.live_workers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close();
            // Only reachable with tasks left if the workers were dropped
            // (runtime shutdown): make sure none is left hanging.
            self.cancel_queued();
            self.stopped.send_replace(true);
            trace_event!(INFO, "task queue workers stopped");
        }
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let (submitted, queued) = {
            let jobs = lock(&self.jobs);
            let claimed = self.claimed.count.load(Ordering::SeqCst);
            (jobs.next_id - 1, (jobs.queue.len() + claimed) as u64)
        };
        let (retained, tracked) = self.table.sizes();
        let c = &self.counters;
        let started = c.started.load(Ordering::Acquire);
        let completed = c.completed.load(Ordering::Acquire);
        let failed = c.failed.load(Ordering::Acquire);
        let cancelled = c.cancelled.load(Ordering::Acquire);
        let cancelled_pending = c.cancelled_pending.load(Ordering::Acquire);
        let finished_running = completed + failed + cancelled.saturating_sub(cancelled_pending);
        QueueStats {
            submitted,
            queued,
            running: started.saturating_sub(finished_running),
            completed,
            failed,
            panicked: c.panicked.load(Ordering::Relaxed),
            cancelled,
            expired: c.expired.load(Ordering::Relaxed),
            retained,
            tracked,
        }
    }
}

/// Expires retained results on time even when the queue is idle: sleeps
/// until the earliest expiry, or until a result is parked. Holds only a
/// weak reference, so it never keeps a dropped queue alive.
pub(crate) async fn janitor<Req, Res, E>(shared: Weak<Shared<Req, Res, E>>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            shared.table.next_expiry()
        };
        match next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => wake.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestShared = Shared<u32, u32, ()>;

    /// Accepts a task the way a submitter does, up to (not including) `track`.
    fn push(shared: &TestShared) -> Arc<Cell<u32, ()>> {
        let mut jobs = lock(&shared.jobs);
        let (cell, _wake) = shared.push_locked(&mut jobs, Cell::unnumbered(false), 7);
        cell
    }

    /// A worker takes the task from the queue and starts it.
    fn take_and_start(shared: &TestShared) -> Arc<Cell<u32, ()>> {
        let job = lock(&shared.jobs).queue.pop_front().expect("a job");
        assert!(shared.start(&job.cell));
        job.cell
    }

    #[test]
    fn a_result_finished_before_its_task_is_tracked_is_still_kept() {
        let shared = TestShared::new(1, 10, Duration::from_secs(60), 100);
        let cell = push(&shared);
        let running = take_and_start(&shared);
        shared.finish(
            &running,
            Ok(1),
            Ran {
                started: stamp(),
                ended: None,
                waited: false,
            },
        );
        shared.track(&cell, false);
        // Kept for a later `result(id)`, and expiring like any other.
        assert_eq!(shared.table.sizes(), (1, 1));
    }

    #[test]
    fn a_task_tracked_after_a_cancel_all_is_cancelled() {
        let shared = TestShared::new(1, 10, Duration::from_secs(60), 100);
        let cell = push(&shared);
        let running = take_and_start(&shared);
        assert!(shared.cancel_all().is_empty(), "not listed yet");
        shared.track(&cell, false);
        assert!(running.cancel_requested());
    }
}
