//! Task identity, status, errors, and the futures that wait for a result.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Identifies one submitted task. Ids are unique within a queue and never
/// reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub(crate) u64);

impl TaskId {
    /// The id as a number (ids count up from 1 in submission order).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// Where a task is in its life. `Completed`, `Failed` and `Cancelled` are
/// terminal: every accepted task reaches exactly one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Accepted, waiting for a worker.
    Pending,
    /// A worker is running it (waiting for the inner service's readiness or
    /// its response).
    Running,
    /// The inner service returned a response.
    Completed,
    /// The inner service returned an error, or the task panicked.
    Failed,
    /// Cancelled by [`TaskQueue::cancel`](super::TaskQueue::cancel),
    /// [`TaskHandle::cancel`] or a shutdown before it finished.
    Cancelled,
}

impl TaskStatus {
    /// True for `Completed`, `Failed` and `Cancelled`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        })
    }
}

/// Why a task produced no response. `E` is the inner service's error.
///
/// `TaskError<E>` implements [`std::error::Error`] whenever `E` is
/// `Debug + Display` (so `TaskError<tower::BoxError>` converts with `?`);
/// match on [`TaskError::Failed`] to get the inner error back.
#[derive(Debug)]
pub enum TaskError<E> {
    /// The inner service (its `poll_ready` or its response future) returned
    /// this error.
    Failed(E),
    /// The task panicked (in `poll_ready`, `call` or its future); the
    /// message is the panic's payload. The worker survived.
    Panicked(String),
    /// The task was cancelled before it finished: by `cancel`, by a
    /// shutdown deadline, or because the workers stopped.
    Cancelled,
    /// There is no result for this id: it was never issued by this queue,
    /// its result expired (`retain_results` / `max_retained`), or another
    /// waiter already took it.
    NotFound(TaskId),
}

impl<E> TaskError<E> {
    /// The terminal status this error corresponds to (`None` for `NotFound`).
    pub fn status(&self) -> Option<TaskStatus> {
        match self {
            TaskError::Failed(_) | TaskError::Panicked(_) => Some(TaskStatus::Failed),
            TaskError::Cancelled => Some(TaskStatus::Cancelled),
            TaskError::NotFound(_) => None,
        }
    }

    /// The inner service's error, if that is what this is.
    pub fn into_failed(self) -> Option<E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// True for [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }

    /// True for [`TaskError::Panicked`].
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => write!(f, "task failed: {e}"),
            TaskError::Panicked(msg) => write!(f, "task panicked: {msg}"),
            TaskError::Cancelled => f.write_str("task was cancelled before it finished"),
            TaskError::NotFound(id) => write!(
                f,
                "no result for {id}: unknown id, result expired (see retain_results) or already taken"
            ),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TaskError<E> {}

/// A panic payload as text.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<&'static str>() {
        Ok(s) => (*s).to_owned(),
        Err(payload) => match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(_) => "panic with a non-string payload".to_owned(),
        },
    }
}

/// Wakers of futures waiting on something, each keyed by a slot index the
/// future keeps, so a dropped future removes exactly its own waker.
#[derive(Default)]
pub(crate) struct Waiters {
    slots: Vec<Slot>,
    live: usize,
}

enum Slot {
    Free,
    Waiting(Waker),
    Notified,
}

impl Waiters {
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Registers (or refreshes) the waker of the future holding `key`.
    pub(crate) fn register(&mut self, key: &mut Option<usize>, waker: &Waker) {
        match *key {
            Some(k) => match &mut self.slots[k] {
                Slot::Waiting(w) if w.will_wake(waker) => {}
                slot => *slot = Slot::Waiting(waker.clone()),
            },
            None => {
                self.live += 1;
                let slot = Slot::Waiting(waker.clone());
                match self.slots.iter().position(|s| matches!(s, Slot::Free)) {
                    Some(k) => {
                        self.slots[k] = slot;
                        *key = Some(k);
                    }
                    None => {
                        self.slots.push(slot);
                        *key = Some(self.slots.len() - 1);
                    }
                }
            }
        }
    }

    /// Removes the future holding `key`; true if it had been notified and
    /// had not acted on it yet.
    pub(crate) fn remove(&mut self, key: &mut Option<usize>) -> bool {
        let Some(k) = key.take() else { return false };
        let notified = matches!(self.slots[k], Slot::Notified);
        self.slots[k] = Slot::Free;
        self.live -= 1;
        while matches!(self.slots.last(), Some(Slot::Free)) {
            self.slots.pop();
        }
        notified
    }

    /// Marks one waiting future notified and returns its waker.
    pub(crate) fn notify_one(&mut self) -> Option<Waker> {
        for slot in &mut self.slots {
            if let Slot::Waiting(_) = slot {
                if let Slot::Waiting(w) = std::mem::replace(slot, Slot::Notified) {
                    return Some(w);
                }
            }
        }
        None
    }

    /// Wakes every waiting future (under the caller's lock: waking only
    /// schedules tasks).
    pub(crate) fn notify_all(&mut self) {
        for slot in &mut self.slots {
            if let Slot::Waiting(_) = slot {
                if let Slot::Waiting(w) = std::mem::replace(slot, Slot::Notified) {
                    w.wake();
                }
            }
        }
    }
}

/// The shared record of one task: its state, its result once finished, and
/// who waits for it.
pub(crate) struct Cell<Res, E> {
    pub(crate) id: TaskId,
    cancel: AtomicBool,
    inner: Mutex<Inner<Res, E>>,
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

/// What `Cell::cancel` did.
pub(crate) enum Cancel {
    /// The task had already finished (or was being cancelled).
    NotActive,
    /// A pending task is now `Cancelled`; `park` says whether the caller
    /// must hand the result to the expiry queue.
    Pending { park: bool },
    /// A running task was asked to stop; its worker finishes it.
    Running,
}

impl<Res, E> Cell<Res, E> {
    pub(crate) fn new(id: TaskId, handle: bool) -> Self {
        Cell {
            id,
            cancel: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                state: State::Pending,
                worker: None,
                waiters: Waiters::default(),
                parked: false,
                handle,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<Res, E>> {
        // No user code runs under this lock; recover from poisoning anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Running -> Done. Returns the final status and whether the caller must
    /// park the result (no waiter is there to take it), or `None` if the
    /// task was not running.
    pub(crate) fn finish(&self, out: Result<Res, TaskError<E>>) -> Option<(TaskStatus, bool)> {
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
        Some((status, Self::settle(&mut g)))
    }

    /// After a transition to Done: wake the waiters, or decide to park.
    fn settle(g: &mut Inner<Res, E>) -> bool {
        if g.waiters.live() > 0 {
            g.waiters.notify_all();
            false
        } else if g.handle {
            false
        } else {
            g.parked = true;
            true
        }
    }

    pub(crate) fn cancel(&self) -> Cancel {
        let mut g = self.lock();
        match g.state {
            State::Pending => {
                g.state = State::Done(Err(TaskError::Cancelled));
                Cancel::Pending {
                    park: Self::settle(&mut g),
                }
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
}

/// What waiters need from the queue, without its request type.
pub(crate) trait Table<Res, E>: Send + Sync {
    /// The result of `id` was taken: forget the task.
    fn taken(&self, id: TaskId);
    /// The finished result of `id` has nobody waiting: keep it until it
    /// expires or is taken.
    fn park(&self, id: TaskId);
    /// Cancels `id` (see `TaskQueue::cancel`).
    fn cancel(&self, id: TaskId) -> bool;
}

/// Waits for one task's result (shared by [`TaskHandle`] and
/// [`TaskResult`]).
pub(crate) struct Waiter<Res, E> {
    id: TaskId,
    cell: Option<Arc<Cell<Res, E>>>,
    table: Arc<dyn Table<Res, E>>,
    key: Option<usize>,
    /// The status once the cell was let go of.
    last: Option<TaskStatus>,
    /// This is the task's `TaskHandle` (see `Inner::handle`).
    handle: bool,
}

impl<Res, E> Waiter<Res, E> {
    pub(crate) fn new(
        id: TaskId,
        cell: Option<Arc<Cell<Res, E>>>,
        table: Arc<dyn Table<Res, E>>,
        handle: bool,
    ) -> Self {
        Waiter {
            id,
            cell,
            table,
            key: None,
            last: None,
            handle,
        }
    }

    fn poll_result(&mut self, cx: &mut Context<'_>) -> Poll<Result<Res, TaskError<E>>> {
        let Some(cell) = &self.cell else {
            return Poll::Ready(Err(TaskError::NotFound(self.id)));
        };
        let mut g = cell.lock();
        match &g.state {
            State::Done(out) => {
                let status = outcome_status(out);
                let State::Done(out) = std::mem::replace(&mut g.state, State::Taken(status)) else {
                    unreachable!("matched Done above")
                };
                g.waiters.remove(&mut self.key);
                drop(g);
                self.cell = None;
                self.last = Some(status);
                self.table.taken(self.id);
                Poll::Ready(out)
            }
            State::Taken(status) => {
                self.last = Some(*status);
                g.waiters.remove(&mut self.key);
                drop(g);
                self.cell = None;
                Poll::Ready(Err(TaskError::NotFound(self.id)))
            }
            State::Pending | State::Running => {
                g.waiters.register(&mut self.key, cx.waker());
                Poll::Pending
            }
        }
    }

    fn status(&self) -> Option<TaskStatus> {
        match &self.cell {
            Some(c) => Some(c.status()),
            None => self.last,
        }
    }
}

impl<Res, E> Drop for Waiter<Res, E> {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else { return };
        let park = {
            let mut g = cell.lock();
            g.waiters.remove(&mut self.key);
            if self.handle {
                g.handle = false;
            }
            if matches!(g.state, State::Done(_)) && g.waiters.live() == 0 && !g.handle && !g.parked
            {
                g.parked = true;
                true
            } else {
                false
            }
        };
        if park {
            self.table.park(self.id);
        }
    }
}

/// A future of one task's result, returned by
/// [`TaskQueue::submit_with_handle`](super::TaskQueue::submit_with_handle).
///
/// Awaiting it takes the result (the task is then forgotten by the queue).
/// Dropping it does **not** cancel the task: its result is then kept like
/// any other (see `retain_results`). Call [`TaskHandle::cancel`] to cancel.
pub struct TaskHandle<Res, E> {
    pub(crate) waiter: Waiter<Res, E>,
}

impl<Res, E> TaskHandle<Res, E> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.waiter.id
    }

    /// The task's current status (still known after the result was taken
    /// through this handle).
    pub fn status(&self) -> TaskStatus {
        // Only a result another waiter took leaves no status behind.
        self.waiter.status().unwrap_or(TaskStatus::Completed)
    }

    /// Cancels the task: a pending task never runs, a running task's future
    /// is dropped. Returns false if it had already finished.
    pub fn cancel(&self) -> bool {
        self.waiter.table.cancel(self.waiter.id)
    }
}

impl<Res, E> Future for TaskHandle<Res, E> {
    type Output = Result<Res, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().waiter.poll_result(cx)
    }
}

impl<Res, E> fmt::Debug for TaskHandle<Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("id", &self.waiter.id)
            .finish_non_exhaustive()
    }
}

/// The future returned by [`TaskQueue::result`](super::TaskQueue::result):
/// resolves when the task finishes (woken by the worker, no polling loop)
/// and takes its result. Dropping it leaves the result in place.
#[must_use = "futures do nothing unless polled"]
pub struct TaskResult<Res, E> {
    pub(crate) waiter: Waiter<Res, E>,
}

impl<Res, E> Future for TaskResult<Res, E> {
    type Output = Result<Res, TaskError<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().waiter.poll_result(cx)
    }
}

impl<Res, E> fmt::Debug for TaskResult<Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskResult")
            .field("id", &self.waiter.id)
            .finish_non_exhaustive()
    }
}
