//! The pending tasks, the submitters waiting for room and the idle workers:
//! the part of the shared state that lives under the queue's one lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;

use super::cell::Cell;
use super::waiters::Waiters;

/// A task waiting for a worker.
pub(crate) struct Job<Req, Res, E> {
    pub(crate) cell: Arc<Cell<Res, E>>,
    pub(crate) req: Req,
}

/// The pending tasks and who waits on them, under one lock.
pub(crate) struct Jobs<Req, Res, E> {
    pub(crate) queue: VecDeque<Job<Req, Res, E>>,
    /// What each worker is doing, by worker index.
    idle: Vec<Worker>,
    /// Workers in `Worker::Idle`.
    idle_count: usize,
    /// Workers in `Worker::Woken`.
    woken: usize,
    /// Submitters waiting for room.
    pub(crate) space: Waiters,
    /// Slots reserved by `poll_ready` and not yet used.
    pub(crate) reserved: usize,
    /// At least the number of jobs workers claimed and have not started
    /// (see `Shared::has_room`).
    pub(crate) claimed_bound: usize,
    pub(crate) closed: bool,
    pub(crate) next_id: u64,
}

impl<Req, Res, E> Jobs<Req, Res, E> {
    /// An open, empty queue for `workers` workers (all busy until they first
    /// look for work).
    pub(crate) fn new(workers: usize, capacity: usize) -> Self {
        Jobs {
            queue: VecDeque::with_capacity(capacity.min(1024)),
            idle: (0..workers).map(|_| Worker::Busy).collect(),
            idle_count: 0,
            woken: 0,
            space: Waiters::default(),
            reserved: 0,
            claimed_bound: 0,
            closed: false,
            next_id: 1,
        }
    }

    /// The worker at `index` is looking for work.
    pub(crate) fn unidle(&mut self, index: usize) {
        match std::mem::replace(&mut self.idle[index], Worker::Busy) {
            Worker::Idle(_) => self.idle_count -= 1,
            Worker::Woken => self.woken -= 1,
            Worker::Busy => {}
        }
    }

    /// The worker at `index` found no work and waits with this waker.
    pub(crate) fn idle(&mut self, index: usize, waker: Waker) {
        self.idle[index] = Worker::Idle(waker);
        self.idle_count += 1;
    }

    /// Wakes an idle worker for queued work, unless one already woken is
    /// on its way (it wakes the next one if more work is left, so a burst
    /// of submissions wakes workers one by one instead of all at once).
    pub(crate) fn wake_worker(&mut self) -> Option<Waker> {
        if self.woken > 0 || self.idle_count == 0 || self.queue.is_empty() {
            return None;
        }
        let slot = self
            .idle
            .iter_mut()
            .find(|w| matches!(w, Worker::Idle(_)))?;
        let Worker::Idle(waker) = std::mem::replace(slot, Worker::Woken) else {
            return None;
        };
        self.idle_count -= 1;
        self.woken += 1;
        Some(waker)
    }

    /// Marks the queue closed and wakes every idle worker (to drain and
    /// exit) and every waiting submitter (to fail). Waking under the lock
    /// only schedules tasks. False if it was closed already.
    pub(crate) fn close(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        for worker in self.idle.iter_mut() {
            if matches!(worker, Worker::Idle(_)) {
                if let Worker::Idle(w) = std::mem::replace(worker, Worker::Woken) {
                    w.wake();
                }
            }
        }
        self.woken += self.idle_count;
        self.idle_count = 0;
        self.space.notify_all();
        true
    }
}

/// A worker as the job queue sees it.
enum Worker {
    /// Running a task, or about to look for one.
    Busy,
    /// Waiting for work.
    Idle(Waker),
    /// Woken for work, not yet back.
    Woken,
}
