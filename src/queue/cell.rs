//! The shared record of one task: its state machine (pending, running,
//! done, taken), its result once finished, and who waits for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use std::time::Duration;

use tokio::time::Instant;

use super::error::TaskError;
use super::task::{TaskId, TaskStatus};
use super::waiters::Waiters;
use crate::deadline::{self, Deadline};
use crate::sync::lock;

/// A task's deadline, and how long it had when it was submitted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TaskDeadline {
    pub(crate) at: Deadline,
    pub(crate) allowed: Duration,
}

impl TaskDeadline {
    /// The deadline in force in this task (see [`deadline::current`]), if
    /// any. A task without one costs a thread-local read; one with a
    /// deadline a clock read too.
    pub(crate) fn current() -> Option<Box<Self>> {
        deadline::current().map(|at| {
            Box::new(TaskDeadline {
                at,
                allowed: at.instant().saturating_duration_since(Instant::now()),
            })
        })
    }
}

/// The shared record of one task: its state, its result once finished, and
/// who waits for it.
pub(crate) struct Cell<Res, E> {
    pub(crate) id: TaskId,
    /// The deadline in force where the task was submitted: a worker does
    /// not start the task once it has passed, and runs it with the
    /// deadline in force. Boxed, as most tasks have none: the cell both
    /// submitter and worker touch stays small. Kept here rather than in
    /// the queued job, so the job that moves through the queue stays two
    /// words.
    pub(crate) deadline: Option<Box<TaskDeadline>>,
    cancel: AtomicBool,
    inner: Mutex<Inner<Res, E>>,
    /// When the task was submitted (for the time-in-queue histogram; the
    /// only clock read a task costs its submitter).
    #[cfg(feature = "metrics")]
    pub(crate) submitted: Instant,
}

struct Inner<Res, E> {
    state: State<Res, E>,
    /// The worker's waker while the task runs and is not ready, so `cancel`
    /// can interrupt it.
    worker: Option<Waker>,
    waiters: Waiters,
    /// Somebody already handed the finished result to the expiry queue.
    parked: bool,
    /// A `TaskHandle` exists: it will take the result, or park it when
    /// dropped, so the worker need not.
    handle: bool,
    /// The task is in the queue's table, so it can be found by id. A task
    /// submitted with a handle is listed only once its id is read from the
    /// handle: until then nothing else can name it.
    listed: bool,
}

enum State<Res, E> {
    Pending,
    Running,
    Done(Result<Res, TaskError<E>>),
    Taken(TaskStatus),
}

fn outcome_status<Res, E>(out: &Result<Res, TaskError<E>>) -> TaskStatus {
    match out {
        Ok(_) => TaskStatus::Completed,
        Err(e) => e.status().unwrap_or(TaskStatus::Failed),
    }
}

/// What a waiter found in `Cell::poll_take`.
pub(crate) enum Taken<Res, E> {
    /// The finished result, now taken, its status, and whether the task is
    /// listed in the table (which must then forget it).
    Result(TaskStatus, Result<Res, TaskError<E>>, bool),
    /// Another waiter took the result first; the task ended with this status.
    Gone(TaskStatus),
}

/// What `Cell::finish` did: the caller counts the outcome, parks the
/// result if `park`, and only then wakes the waiter, so a waiter that
/// wakes finds the counters already updated.
pub(crate) struct Finished {
    pub(crate) status: TaskStatus,
    /// Nobody is there to take the result: hand it to the expiry queue.
    pub(crate) park: bool,
    /// The waiter to wake last.
    pub(crate) wake: Option<Waker>,
}

/// What `Cell::cancel` did.
pub(crate) enum Cancel {
    /// The task had already finished (or was being cancelled).
    NotActive,
    /// A pending task is now `Cancelled`; `park` says whether the caller
    /// must hand the result to the expiry queue; `wake` is the waiter to
    /// wake once the caller has counted the cancellation.
    Pending { park: bool, wake: Option<Waker> },
    /// A running task was asked to stop; its worker finishes it.
    Running,
}

impl<Res, E> Cell<Res, E> {
    pub(crate) fn new(id: TaskId, handle: bool) -> Self {
        Cell {
            id,
            deadline: None,
            cancel: AtomicBool::new(false),
            #[cfg(feature = "metrics")]
            submitted: Instant::now(),
            inner: Mutex::new(Inner {
                state: State::Pending,
                worker: None,
                waiters: Waiters::default(),
                parked: false,
                handle,
                listed: !handle,
            }),
        }
    }

    /// A cell for a task about to be submitted: made before the queue's
    /// lock is taken, numbered under it (see `Shared::push_locked`).
    /// It carries the deadline in force in the submitter's task (read
    /// here, before the lock).
    pub(crate) fn unnumbered(handle: bool) -> Arc<Self> {
        let mut cell = Cell::new(TaskId(0), handle);
        cell.deadline = TaskDeadline::current();
        Arc::new(cell)
    }

    fn lock(&self) -> MutexGuard<'_, Inner<Res, E>> {
        lock(&self.inner)
    }

    pub(crate) fn status(&self) -> TaskStatus {
        match &self.lock().state {
            State::Pending => TaskStatus::Pending,
            State::Running => TaskStatus::Running,
            State::Done(out) => outcome_status(out),
            State::Taken(s) => *s,
        }
    }

    /// Pending -> Running; false if the task was cancelled meanwhile.
    pub(crate) fn start(&self) -> bool {
        let mut g = self.lock();
        if matches!(g.state, State::Pending) {
            g.state = State::Running;
            true
        } else {
            false
        }
    }

    /// Whether the finished result was handed to the expiry queue.
    pub(crate) fn parked(&self) -> bool {
        self.lock().parked
    }

    /// Marks a task submitted with a handle as listed, once its id is read;
    /// true if the caller must now list it (it was not, and its result was
    /// not taken yet).
    pub(crate) fn list(&self) -> bool {
        let mut g = self.lock();
        if g.listed || matches!(g.state, State::Taken(_)) {
            return false;
        }
        g.listed = true;
        true
    }

    pub(crate) fn cancel_requested(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// Stores the worker's waker so `cancel` can wake it; returns whether a
    /// cancel was requested (checked after storing, so none is missed).
    pub(crate) fn park_worker(&self, waker: &Waker) -> bool {
        {
            let mut g = self.lock();
            match &g.worker {
                Some(w) if w.will_wake(waker) => {}
                _ => g.worker = Some(waker.clone()),
            }
        }
        self.cancel_requested()
    }

    /// Running -> Done. Returns the final status, whether the caller must
    /// park the result (no waiter is there to take it) and the waiter to
    /// wake, or `None` if the task was not running.
    pub(crate) fn finish(&self, out: Result<Res, TaskError<E>>) -> Option<Finished> {
        let mut g = self.lock();
        if !matches!(g.state, State::Running) {
            return None;
        }
        // A cancel that won the race with completion stands: `cancel`
        // returned true, so the task ends `Cancelled`.
        let out = if self.cancel_requested() {
            Err(TaskError::Cancelled)
        } else {
            out
        };
        let status = outcome_status(&out);
        g.state = State::Done(out);
        g.worker = None;
        let (park, wake) = Self::settle(&mut g);
        Some(Finished { status, park, wake })
    }

    /// After a transition to Done: notify the waiters (the first one's
    /// waker is returned, to wake after the caller's bookkeeping), or decide
    /// to park.
    fn settle(g: &mut Inner<Res, E>) -> (bool, Option<Waker>) {
        if g.waiters.live() > 0 {
            (false, g.waiters.notify_all_but_one())
        } else if g.handle || !g.listed {
            // The handle takes the result; or nobody can ask for it.
            (false, None)
        } else {
            g.parked = true;
            (true, None)
        }
    }

    pub(crate) fn cancel(&self) -> Cancel {
        let mut g = self.lock();
        match g.state {
            State::Pending => {
                g.state = State::Done(Err(TaskError::Cancelled));
                let (park, wake) = Self::settle(&mut g);
                Cancel::Pending { park, wake }
            }
            State::Running => {
                if self.cancel.swap(true, Ordering::AcqRel) {
                    return Cancel::NotActive;
                }
                if let Some(w) = g.worker.take() {
                    w.wake();
                }
                Cancel::Running
            }
            State::Done(_) | State::Taken(_) => Cancel::NotActive,
        }
    }

    /// Takes the finished result for the waiter holding `key` (and removes
    /// its waker), or registers its waker until the task finishes.
    pub(crate) fn poll_take(&self, key: &mut Option<usize>, waker: &Waker) -> Poll<Taken<Res, E>> {
        let mut g = self.lock();
        match &g.state {
            State::Done(out) => {
                let status = outcome_status(out);
                let State::Done(out) = std::mem::replace(&mut g.state, State::Taken(status)) else {
                    unreachable!("matched Done above")
                };
                g.waiters.remove(key);
                Poll::Ready(Taken::Result(status, out, g.listed))
            }
            State::Taken(status) => {
                let status = *status;
                g.waiters.remove(key);
                Poll::Ready(Taken::Gone(status))
            }
            State::Pending | State::Running => {
                g.waiters.register(key, waker);
                Poll::Pending
            }
        }
    }

    /// A waiter holding `key` goes away (`handle`: it is the task's
    /// `TaskHandle`). Returns whether the caller must park the finished
    /// result, now that nobody will take it (only a listed task's: nobody
    /// can ask for another's).
    pub(crate) fn leave(&self, key: &mut Option<usize>, handle: bool) -> bool {
        let mut g = self.lock();
        g.waiters.remove(key);
        if handle {
            g.handle = false;
        }
        let unclaimed = g.waiters.live() == 0 && !g.handle;
        if matches!(g.state, State::Done(_)) && unclaimed && g.listed && !g.parked {
            g.parked = true;
            true
        } else {
            false
        }
    }
}
