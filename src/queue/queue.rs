//! The queue itself: builder, shared state, submission, lookups, shutdown.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tower_service::Service;

use super::error::{QueueClosed, QueueFull, TrySubmitError};
use super::task::{
    Cancel, Cell, Table, TaskError, TaskHandle, TaskId, TaskResult, TaskStatus, Waiter, Waiters,
};
use super::worker::run_worker;
use crate::trace::trace_event;
use crate::{BoxError, ConfigError};

/// Number of independently locked parts of the task table.
const SHARDS: usize = 8;
/// Retention above this is treated as "until taken or evicted by count".
const MAX_RETAIN: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under the queue's locks; recover from poisoning anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps hot atomics and shard locks on their own cache lines.
#[repr(align(64))]
struct Padded<T>(T);

/// How to stop a queue; see [`TaskQueue::shutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// Stop taking tasks, let the workers finish every accepted task, and
    /// cancel whatever is still pending or running when the deadline passes.
    Graceful(Duration),
    /// Stop taking tasks and cancel every pending and running task now.
    Now,
}

/// What a [`TaskQueue::shutdown`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSummary {
    /// Tasks that completed between the start of the shutdown and its end.
    pub completed: u64,
    /// Tasks that failed (error or panic) between the start of the shutdown
    /// and its end.
    pub failed: u64,
    /// Tasks the shutdown cancelled because they had not finished by the
    /// deadline (all of them, pending and running, for [`Shutdown::Now`]).
    /// Each has status [`TaskStatus::Cancelled`] and its waiters get
    /// [`TaskError::Cancelled`].
    pub cancelled: Vec<TaskId>,
    /// True if accepted work was still unfinished at the deadline.
    pub deadline_reached: bool,
}

/// A snapshot of a queue's counters; see [`TaskQueue::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Tasks accepted since the queue was built.
    pub submitted: u64,
    /// Tasks waiting for a worker now.
    pub queued: u64,
    /// Tasks a worker is running now.
    pub running: u64,
    /// Tasks that completed (the inner service returned a response).
    pub completed: u64,
    /// Tasks that failed (an error, or a panic: see `panicked`).
    pub failed: u64,
    /// Of the failed tasks, those that panicked.
    pub panicked: u64,
    /// Tasks cancelled (by `cancel`, a shutdown, or stopped workers).
    pub cancelled: u64,
    /// Finished results kept for later `status` / `result` calls now.
    pub retained: usize,
    /// Tasks the queue tracks now (pending + running + retained): bounded by
    /// `capacity + workers + max_retained` (plus results whose waiters are
    /// about to take them).
    pub tracked: usize,
}

/// Builds a [`TaskQueue`]; see [`TaskQueue::builder`].
#[derive(Clone, Debug)]
pub struct TaskQueueBuilder {
    workers: usize,
    capacity: usize,
    retain: Duration,
    max_retained: usize,
}

impl Default for TaskQueueBuilder {
    fn default() -> Self {
        TaskQueueBuilder {
            workers: 5,
            capacity: 1_000,
            retain: Duration::from_secs(300),
            max_retained: 10_000,
        }
    }
}

impl TaskQueueBuilder {
    /// Number of workers, i.e. tasks run at the same time (default 5, at
    /// least 1). Each worker is a tokio task with its own clone of the inner
    /// service.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Most tasks waiting for a worker (default 1000, at least 1). When
    /// full, `submit` and `poll_ready` wait and `try_submit` returns
    /// [`QueueFull`].
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long a finished task's status and result are kept when nobody
    /// is waiting for it (default 300 s). A result is forgotten as soon as
    /// it is taken. A small janitor task spawned by `build` drops expired
    /// results on time, even on an idle queue (it uses `tokio::time`, so the
    /// runtime needs its time driver); lookups and `stats` also check expiry
    /// first. Zero keeps nothing that no one waits for (and spawns no
    /// janitor).
    pub fn retain_results(mut self, retain: Duration) -> Self {
        self.retain = retain;
        self
    }

    /// Most finished results kept at once (default 10 000); beyond it the
    /// oldest are forgotten before they expire. Enforced per table shard
    /// (8 shards), so the bound is this value rounded up to a multiple of 8.
    pub fn max_retained(mut self, max_retained: usize) -> Self {
        self.max_retained = max_retained;
        self
    }

    /// Spawns the workers on the current tokio runtime and returns the
    /// queue.
    ///
    /// The inner service is cloned once per worker; workers call
    /// `poll_ready` before every `call`, so layers inside the queue (limits,
    /// retries, breakers) apply per task. Wrap a service that is not
    /// `Clone` in `tower::buffer::Buffer`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] if `workers` or `capacity` is zero, or if called
    /// outside a tokio runtime (field `runtime`).
    pub fn build<S, Req>(
        self,
        service: S,
    ) -> Result<TaskQueue<Req, S::Response, S::Error>, ConfigError>
    where
        S: Service<Req> + Clone + Send + 'static,
        S::Future: Send,
        Req: Send + 'static,
        S::Response: Send + 'static,
        S::Error: Send + 'static,
    {
        if self.workers == 0 {
            return Err(ConfigError::new(
                "queue",
                "workers",
                "0",
                "must be at least 1",
            ));
        }
        if self.capacity == 0 {
            return Err(ConfigError::new(
                "queue",
                "capacity",
                "0",
                "must be at least 1",
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "queue",
                "runtime",
                "none",
                "build() must be called inside a tokio runtime: it spawns the workers",
            )
        })?;
        let shared = Arc::new(Shared {
            jobs: Mutex::new(Jobs {
                queue: VecDeque::with_capacity(self.capacity.min(1024)),
                idle: (0..self.workers).map(|_| Worker::Busy).collect(),
                idle_count: 0,
                woken: 0,
                space: Waiters::default(),
                reserved: 0,
                closed: false,
                next_id: 1,
            }),
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            counters: Counters::default(),
            capacity: self.capacity,
            retain: self.retain.min(MAX_RETAIN),
            per_shard: self.max_retained.div_ceil(SHARDS),
            handles: AtomicUsize::new(1),
            live_workers: AtomicUsize::new(self.workers),
            stopped: watch::channel(false).0,
            workers: self.workers,
            janitor: Arc::new(Notify::new()),
            janitor_idle: AtomicBool::new(false),
        });
        for index in 0..self.workers {
            runtime.spawn(run_worker(shared.clone(), service.clone(), index));
        }
        if !shared.retain.is_zero() {
            runtime.spawn(janitor(Arc::downgrade(&shared), shared.janitor.clone()));
        }
        Ok(TaskQueue {
            shared,
            reserved: false,
            key: None,
        })
    }
}

/// A bounded queue of requests run by a fixed set of workers over an inner
/// [`Service`]: submit returns a [`TaskId`] at once, the result is fetched
/// later (or awaited through a [`TaskHandle`]).
///
/// It is itself a `Service<Req, Response = TaskId>`: `poll_ready` waits for
/// room (backpressure) and `call` enqueues. Clones share the queue, its
/// tasks and its statistics. When the last clone is dropped without a
/// shutdown, the queue closes and the workers finish what was accepted.
///
/// See the [module docs](super) for an example.
pub struct TaskQueue<Req, Res, E> {
    shared: Arc<Shared<Req, Res, E>>,
    /// A slot reserved by `poll_ready` for the next `call`.
    reserved: bool,
    /// This clone's place among the futures waiting for room.
    key: Option<usize>,
}

impl TaskQueue<(), (), ()> {
    /// A builder with the defaults: 5 workers, capacity 1000, results kept
    /// 300 s, at most 10 000 results kept.
    pub fn builder() -> TaskQueueBuilder {
        TaskQueueBuilder::default()
    }
}

impl<Req, Res, E> TaskQueue<Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    /// Submits a request, waiting for room if the queue is full; resolves to
    /// the task's id once it is accepted.
    ///
    /// # Errors
    ///
    /// [`QueueClosed`] if the queue is shut down. Dropping the future before
    /// it resolves submits nothing.
    pub fn submit(&self, req: Req) -> Submit<'_, Req, Res, E> {
        Submit {
            inner: Enqueue::new(&self.shared, req, false),
        }
    }

    /// Like [`submit`](Self::submit), but resolves to a [`TaskHandle`]: a
    /// future of the task's result that can also report its status and
    /// cancel it.
    ///
    /// # Errors
    ///
    /// [`QueueClosed`] if the queue is shut down.
    pub fn submit_with_handle(&self, req: Req) -> SubmitWithHandle<'_, Req, Res, E> {
        SubmitWithHandle {
            inner: Enqueue::new(&self.shared, req, true),
        }
    }

    /// Submits a request if there is room now.
    ///
    /// # Errors
    ///
    /// [`TrySubmitError::Full`] when `capacity` tasks are pending,
    /// [`TrySubmitError::Closed`] after a shutdown; both hand the request
    /// back.
    pub fn try_submit(&self, req: Req) -> Result<TaskId, TrySubmitError<Req>> {
        let shared = &*self.shared;
        let mut jobs = lock(&shared.jobs);
        if jobs.closed {
            return Err(TrySubmitError::Closed(QueueClosed, req));
        }
        if !jobs.has_room(shared.capacity) {
            return Err(TrySubmitError::Full(
                QueueFull {
                    capacity: shared.capacity,
                },
                req,
            ));
        }
        let (cell, wake) = shared.push_locked(&mut jobs, req, false);
        drop(jobs);
        if let Some(w) = wake {
            w.wake();
        }
        Ok(cell.id)
    }

    /// The task's status, or `None` if the id is unknown, its result was
    /// taken, or it expired.
    pub fn status(&self, id: TaskId) -> Option<TaskStatus> {
        self.shared.lookup(id).map(|cell| cell.status())
    }

    /// A future of the task's result: resolves as soon as the task
    /// finishes (the worker wakes it; there is no polling loop) and takes
    /// the result, after which the queue forgets the task. Wrap it in
    /// `tokio::time::timeout` to bound the wait; dropping it leaves the
    /// result in place for a later call.
    ///
    /// Resolves to [`TaskError::NotFound`] if the id is unknown, expired or
    /// already taken.
    pub fn result(&self, id: TaskId) -> TaskResult<Res, E> {
        let cell = self.shared.lookup(id);
        TaskResult {
            waiter: Waiter::new(id, cell, self.shared.clone(), false),
        }
    }

    /// Cancels a task: a pending task never runs (its queue slot is freed at
    /// once), a running task's future is dropped by its worker. Either way
    /// it ends `Cancelled` and its waiters get [`TaskError::Cancelled`].
    /// Returns false if the task is unknown or already finished.
    pub fn cancel(&self, id: TaskId) -> bool {
        Table::cancel(&*self.shared, id)
    }

    /// Stops the queue: no new tasks are accepted (submissions fail with
    /// [`QueueClosed`]), accepted tasks run to completion, and whatever is
    /// still pending or running at the deadline is cancelled. Resolves once
    /// every worker has stopped, with a summary; every accepted task then
    /// has a terminal status, and finished results stay available (subject
    /// to retention) through [`status`](Self::status) and
    /// [`result`](Self::result).
    ///
    /// `Graceful` times its deadline with `tokio::time`, so the runtime
    /// needs its time driver (`enable_time`), as for `tokio::time::timeout`.
    ///
    /// Calling it again (or on a clone) waits for the workers to stop and
    /// returns an empty summary. Dropping the future part-way leaves the
    /// queue closed, with accepted tasks still running.
    pub async fn shutdown(&self, how: Shutdown) -> ShutdownSummary {
        let shared = &*self.shared;
        let completed = shared.counters.completed.0.load(Ordering::Acquire);
        let failed = shared.counters.failed.0.load(Ordering::Acquire);
        trace_event!(INFO, mode = ?how, "task queue shutting down");
        shared.close();
        let mut stopped = shared.stopped.subscribe();
        let deadline_reached = match how {
            Shutdown::Graceful(deadline) => {
                tokio::time::timeout(deadline, stopped.wait_for(|s| *s))
                    .await
                    .is_err()
            }
            Shutdown::Now => !*stopped.borrow(),
        };
        let cancelled = if deadline_reached {
            shared.cancel_all()
        } else {
            Vec::new()
        };
        // Every task is now finished or cancelled, so the workers stop
        // promptly. The sender lives in `shared`, so this cannot fail.
        let _ = stopped.wait_for(|s| *s).await;
        ShutdownSummary {
            completed: shared.counters.completed.0.load(Ordering::Acquire) - completed,
            failed: shared.counters.failed.0.load(Ordering::Acquire) - failed,
            cancelled,
            deadline_reached,
        }
    }

    /// A snapshot of the queue's counters and sizes.
    pub fn stats(&self) -> QueueStats {
        self.shared.stats()
    }

    /// The queue's capacity (most pending tasks).
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// True once the queue accepts no more tasks.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.jobs).closed
    }
}

impl<Req, Res, E> Clone for TaskQueue<Req, Res, E> {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        TaskQueue {
            shared: self.shared.clone(),
            reserved: false,
            key: None,
        }
    }
}

impl<Req, Res, E> Drop for TaskQueue<Req, Res, E> {
    fn drop(&mut self) {
        if self.reserved || self.key.is_some() {
            let mut jobs = lock(&self.shared.jobs);
            let mut free = jobs.space.remove(&mut self.key);
            if self.reserved {
                jobs.reserved -= 1;
                free = true;
            }
            let wake = if free { jobs.space.notify_one() } else { None };
            drop(jobs);
            if let Some(w) = wake {
                w.wake();
            }
        }
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.close();
        }
    }
}

impl<Req, Res, E> fmt::Debug for TaskQueue<Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskQueue")
            .field("workers", &self.shared.workers)
            .field("capacity", &self.shared.capacity)
            .field("retain_results", &self.shared.retain)
            .finish_non_exhaustive()
    }
}

/// The future of [`TaskQueue`]'s `Service::call`: already resolved, since
/// `poll_ready` reserved the slot.
pub type ResponseFuture = std::future::Ready<Result<TaskId, BoxError>>;

impl<Req, Res, E> Service<Req> for TaskQueue<Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    type Response = TaskId;
    type Error = BoxError;
    type Future = ResponseFuture;

    /// Reserves room for one task, waiting while the queue is full. Fails
    /// with [`QueueClosed`] after a shutdown.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        let mut jobs = lock(&self.shared.jobs);
        if jobs.closed {
            jobs.space.remove(&mut self.key);
            return Poll::Ready(Err(QueueClosed.into()));
        }
        if jobs.has_room(self.shared.capacity) {
            jobs.reserved += 1;
            self.reserved = true;
            jobs.space.remove(&mut self.key);
            return Poll::Ready(Ok(()));
        }
        jobs.space.register(&mut self.key, cx.waker());
        Poll::Pending
    }

    /// Enqueues the request in the slot `poll_ready` reserved. Without a
    /// reservation it enqueues only if there is room, else fails with
    /// [`QueueFull`]; after a shutdown it fails with [`QueueClosed`].
    fn call(&mut self, req: Req) -> Self::Future {
        let shared = &*self.shared;
        let mut jobs = lock(&shared.jobs);
        if std::mem::take(&mut self.reserved) {
            jobs.reserved -= 1;
        } else if !jobs.closed && !jobs.has_room(shared.capacity) {
            return std::future::ready(Err(QueueFull {
                capacity: shared.capacity,
            }
            .into()));
        }
        if jobs.closed {
            return std::future::ready(Err(QueueClosed.into()));
        }
        let (cell, wake) = shared.push_locked(&mut jobs, req, false);
        drop(jobs);
        if let Some(w) = wake {
            w.wake();
        }
        std::future::ready(Ok(cell.id))
    }
}

/// Submission shared by [`Submit`] and [`SubmitWithHandle`].
struct Enqueue<'a, Req, Res, E> {
    shared: &'a Arc<Shared<Req, Res, E>>,
    req: Option<Req>,
    key: Option<usize>,
    /// A `TaskHandle` will be made for the task.
    handle: bool,
}

impl<'a, Req, Res, E> Enqueue<'a, Req, Res, E> {
    fn new(shared: &'a Arc<Shared<Req, Res, E>>, req: Req, handle: bool) -> Self {
        Enqueue {
            shared,
            req: Some(req),
            key: None,
            handle,
        }
    }

    fn poll_enqueue(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Arc<Cell<Res, E>>, QueueClosed>> {
        let shared = &**self.shared;
        let mut jobs = lock(&shared.jobs);
        if jobs.closed {
            jobs.space.remove(&mut self.key);
            return Poll::Ready(Err(QueueClosed));
        }
        if !jobs.has_room(shared.capacity) {
            jobs.space.register(&mut self.key, cx.waker());
            return Poll::Pending;
        }
        jobs.space.remove(&mut self.key);
        let req = self
            .req
            .take()
            .expect("submit future polled after completion");
        let (cell, wake) = shared.push_locked(&mut jobs, req, self.handle);
        drop(jobs);
        if let Some(w) = wake {
            w.wake();
        }
        Poll::Ready(Ok(cell))
    }
}

impl<Req, Res, E> Drop for Enqueue<'_, Req, Res, E> {
    fn drop(&mut self) {
        if self.key.is_some() {
            let mut jobs = lock(&self.shared.jobs);
            // Pass on a wake-up this future received but did not use.
            if jobs.space.remove(&mut self.key) && jobs.has_room(self.shared.capacity) {
                if let Some(w) = jobs.space.notify_one() {
                    drop(jobs);
                    w.wake();
                }
            }
        }
    }
}

/// The future returned by [`TaskQueue::submit`].
#[must_use = "futures do nothing unless polled"]
pub struct Submit<'a, Req, Res, E> {
    inner: Enqueue<'a, Req, Res, E>,
}

// The request is never pinned.
impl<Req, Res, E> Unpin for Submit<'_, Req, Res, E> {}

impl<Req, Res, E> Future for Submit<'_, Req, Res, E> {
    type Output = Result<TaskId, QueueClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .inner
            .poll_enqueue(cx)
            .map(|r| r.map(|cell| cell.id))
    }
}

impl<Req, Res, E> fmt::Debug for Submit<'_, Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submit").finish_non_exhaustive()
    }
}

/// The future returned by [`TaskQueue::submit_with_handle`].
#[must_use = "futures do nothing unless polled"]
pub struct SubmitWithHandle<'a, Req, Res, E> {
    inner: Enqueue<'a, Req, Res, E>,
}

impl<Req, Res, E> Unpin for SubmitWithHandle<'_, Req, Res, E> {}

impl<Req, Res, E> Future for SubmitWithHandle<'_, Req, Res, E>
where
    Req: Send + 'static,
    Res: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<TaskHandle<Res, E>, QueueClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.get_mut().inner;
        inner.poll_enqueue(cx).map(|r| {
            r.map(|cell| {
                let table: Arc<dyn Table<Res, E>> = inner.shared.clone();
                TaskHandle {
                    waiter: Waiter::new(cell.id, Some(cell), table, true),
                }
            })
        })
    }
}

impl<Req, Res, E> fmt::Debug for SubmitWithHandle<'_, Req, Res, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitWithHandle").finish_non_exhaustive()
    }
}

/// A task waiting for a worker.
pub(crate) struct Job<Req, Res, E> {
    pub(crate) cell: Arc<Cell<Res, E>>,
    pub(crate) req: Req,
}

/// The pending tasks and who waits on them, under one lock.
struct Jobs<Req, Res, E> {
    queue: VecDeque<Job<Req, Res, E>>,
    /// What each worker is doing, by worker index.
    idle: Vec<Worker>,
    /// Workers in `Worker::Idle`.
    idle_count: usize,
    /// Workers in `Worker::Woken`.
    woken: usize,
    /// Submitters waiting for room.
    space: Waiters,
    /// Slots reserved by `poll_ready` and not yet used.
    reserved: usize,
    closed: bool,
    next_id: u64,
}

impl<Req, Res, E> Jobs<Req, Res, E> {
    fn has_room(&self, capacity: usize) -> bool {
        self.queue.len() + self.reserved < capacity
    }

    /// The worker at `index` is looking for work.
    fn unidle(&mut self, index: usize) {
        match std::mem::replace(&mut self.idle[index], Worker::Busy) {
            Worker::Idle(_) => self.idle_count -= 1,
            Worker::Woken => self.woken -= 1,
            Worker::Busy => {}
        }
    }

    /// Wakes an idle worker for queued work, unless one already woken is
    /// on its way (it wakes the next one if more work is left, so a burst
    /// of submissions wakes workers one by one instead of all at once).
    fn wake_worker(&mut self) -> Option<Waker> {
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

/// Hashes the sequential task ids (a multiply and a fold is plenty).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry<Res, E> {
    cell: Arc<Cell<Res, E>>,
    /// Finished with nobody waiting: listed in `Shard::expiry`.
    parked: bool,
}

/// One part of the task table: the tasks whose id falls in it, and the
/// expiry order of their parked results.
struct Shard<Res, E> {
    map: HashMap<u64, Entry<Res, E>, BuildHasherDefault<IdHasher>>,
    /// Parked ids in parking order (so in expiry order); ids taken since
    /// are skipped when reached and compacted away when they pile up.
    expiry: VecDeque<(u64, Instant)>,
    /// Parked entries still in `map`.
    retained: usize,
}

impl<Res, E> Default for Shard<Res, E> {
    fn default() -> Self {
        Shard {
            map: HashMap::default(),
            expiry: VecDeque::new(),
            retained: 0,
        }
    }
}

impl<Res, E> Shard<Res, E> {
    /// Forgets expired results, and the oldest beyond `limit`.
    fn sweep(&mut self, now: Instant, limit: usize) {
        while let Some(&(id, at)) = self.expiry.front() {
            if at > now && self.retained <= limit {
                break;
            }
            self.expiry.pop_front();
            if self.map.get(&id).is_some_and(|e| e.parked) {
                self.map.remove(&id);
                self.retained -= 1;
            }
        }
        if self.expiry.len() > 2 * self.retained + 64 {
            let map = &self.map;
            self.expiry
                .retain(|(id, _)| map.get(id).is_some_and(|e| e.parked));
        }
    }
}

/// A shard on its own cache line.
type ShardLock<Res, E> = Padded<Mutex<Shard<Res, E>>>;

#[derive(Default)]
struct Counters {
    started: Padded<AtomicU64>,
    completed: Padded<AtomicU64>,
    failed: Padded<AtomicU64>,
    panicked: AtomicU64,
    cancelled: Padded<AtomicU64>,
    cancelled_pending: AtomicU64,
}

impl Default for Padded<AtomicU64> {
    fn default() -> Self {
        Padded(AtomicU64::new(0))
    }
}

/// Everything the queue handles, handles and workers share.
pub(crate) struct Shared<Req, Res, E> {
    jobs: Mutex<Jobs<Req, Res, E>>,
    shards: Box<[ShardLock<Res, E>]>,
    counters: Counters,
    capacity: usize,
    workers: usize,
    retain: Duration,
    per_shard: usize,
    /// Live `TaskQueue` clones; the last one to go closes the queue.
    handles: AtomicUsize,
    live_workers: AtomicUsize,
    /// Becomes true when the last worker has stopped.
    stopped: watch::Sender<bool>,
    /// Wakes the janitor when it waits with nothing to expire.
    janitor: Arc<Notify>,
    janitor_idle: AtomicBool,
}

impl<Req, Res, E> Drop for Shared<Req, Res, E> {
    fn drop(&mut self) {
        // Let the janitor see the queue is gone and exit.
        self.janitor.notify_one();
    }
}

/// Expires retained results on time even when the queue is idle: sleeps
/// until the earliest expiry, or until a result is parked. Holds only a
/// weak reference, so it never keeps a dropped queue alive.
async fn janitor<Req, Res, E>(shared: Weak<Shared<Req, Res, E>>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match shared.sweep_all() {
                Some(at) => Some(at),
                None => {
                    shared.janitor_idle.store(true, Ordering::SeqCst);
                    // Check again: a result parked before the flag was set
                    // did not wake us.
                    let again = shared.sweep_all();
                    if again.is_some() {
                        shared.janitor_idle.store(false, Ordering::SeqCst);
                    }
                    again
                }
            }
        };
        match next {
            Some(at) => tokio::time::sleep_until(at).await,
            None => wake.notified().await,
        }
    }
}

impl<Req, Res, E> Shared<Req, Res, E> {
    fn shard(&self, id: u64) -> MutexGuard<'_, Shard<Res, E>> {
        lock(&self.shards[id as usize % SHARDS].0)
    }

    /// Accepts a task (room and openness checked by the caller); returns its
    /// cell and an idle worker to wake once the lock is released.
    fn push_locked(
        &self,
        jobs: &mut Jobs<Req, Res, E>,
        req: Req,
        handle: bool,
    ) -> (Arc<Cell<Res, E>>, Option<Waker>) {
        let id = jobs.next_id;
        jobs.next_id += 1;
        let cell = Arc::new(Cell::new(TaskId(id), handle));
        self.shard(id).map.insert(
            id,
            Entry {
                cell: cell.clone(),
                parked: false,
            },
        );
        jobs.queue.push_back(Job {
            cell: cell.clone(),
            req,
        });
        (cell, jobs.wake_worker())
    }

    pub(crate) fn poll_next_job(
        &self,
        cx: &mut Context<'_>,
        index: usize,
    ) -> Poll<Option<Job<Req, Res, E>>> {
        let mut jobs = lock(&self.jobs);
        jobs.unidle(index);
        if let Some(job) = jobs.queue.pop_front() {
            let submitter = if jobs.space.live() > 0 {
                jobs.space.notify_one()
            } else {
                None
            };
            let worker = jobs.wake_worker();
            drop(jobs);
            if let Some(w) = submitter {
                w.wake();
            }
            if let Some(w) = worker {
                w.wake();
            }
            return Poll::Ready(Some(job));
        }
        if jobs.closed {
            return Poll::Ready(None);
        }
        jobs.idle[index] = Worker::Idle(cx.waker().clone());
        jobs.idle_count += 1;
        Poll::Pending
    }

    /// Pending -> Running, counted; false if it was cancelled meanwhile.
    pub(crate) fn start(&self, cell: &Cell<Res, E>) -> bool {
        if cell.start() {
            self.counters.started.0.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Running -> its terminal status, counted, result delivered or parked.
    pub(crate) fn finish(&self, cell: &Cell<Res, E>, out: Result<Res, TaskError<E>>) {
        let panicked = matches!(out, Err(TaskError::Panicked(_)));
        let Some((status, park)) = cell.finish(out) else {
            return;
        };
        let c = &self.counters;
        match status {
            TaskStatus::Completed => c.completed.0.fetch_add(1, Ordering::Release),
            TaskStatus::Cancelled => c.cancelled.0.fetch_add(1, Ordering::Release),
            _ => {
                if panicked {
                    c.panicked.fetch_add(1, Ordering::Relaxed);
                    trace_event!(WARN, task = %cell.id, "task panicked; worker carries on");
                }
                c.failed.0.fetch_add(1, Ordering::Release)
            }
        };
        if park {
            self.park_id(cell.id);
        }
    }

    fn park_id(&self, id: TaskId) {
        let now = Instant::now();
        let mut shard = self.shard(id.0);
        if let Some(entry) = shard.map.get_mut(&id.0) {
            if !entry.parked {
                entry.parked = true;
                shard.expiry.push_back((id.0, now + self.retain));
                shard.retained += 1;
                if self.janitor_idle.load(Ordering::Relaxed)
                    && self.janitor_idle.swap(false, Ordering::SeqCst)
                {
                    self.janitor.notify_one();
                }
            }
        }
        shard.sweep(now, self.per_shard);
    }

    /// Sweeps every shard; returns the earliest expiry still ahead.
    fn sweep_all(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for shard in self.shards.iter() {
            let mut shard = lock(&shard.0);
            shard.sweep(now, self.per_shard);
            if let Some(&(_, at)) = shard.expiry.front() {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    pub(crate) fn lookup(&self, id: TaskId) -> Option<Arc<Cell<Res, E>>> {
        let now = Instant::now();
        let mut shard = self.shard(id.0);
        shard.sweep(now, self.per_shard);
        shard.map.get(&id.0).map(|e| e.cell.clone())
    }

    /// Stops accepting tasks; idle workers wake to drain and exit.
    pub(crate) fn close(&self) {
        let mut jobs = lock(&self.jobs);
        if jobs.closed {
            return;
        }
        jobs.closed = true;
        for worker in jobs.idle.iter_mut() {
            if matches!(worker, Worker::Idle(_)) {
                if let Worker::Idle(w) = std::mem::replace(worker, Worker::Woken) {
                    w.wake();
                }
            }
        }
        jobs.woken += jobs.idle_count;
        jobs.idle_count = 0;
        jobs.space.notify_all();
    }

    /// A cancelled pending task, counted, parked if nobody waits.
    fn cancelled_pending(&self, id: TaskId, park: bool) {
        self.counters.cancelled.0.fetch_add(1, Ordering::Release);
        self.counters
            .cancelled_pending
            .fetch_add(1, Ordering::Relaxed);
        if park {
            self.park_id(id);
        }
    }

    /// Cancels every task still waiting in the queue.
    fn cancel_queued(&self) -> Vec<TaskId> {
        let drained: Vec<_> = {
            let mut jobs = lock(&self.jobs);
            let drained = jobs.queue.drain(..).collect();
            jobs.space.notify_all();
            drained
        };
        let mut ids = Vec::with_capacity(drained.len());
        for job in drained {
            if let Cancel::Pending { park } = job.cell.cancel() {
                self.cancelled_pending(job.cell.id, park);
                ids.push(job.cell.id);
            }
        }
        ids
    }

    /// Cancels every unfinished task, pending or running.
    fn cancel_all(&self) -> Vec<TaskId> {
        let mut ids = self.cancel_queued();
        for shard in self.shards.iter() {
            let active: Vec<_> = lock(&shard.0)
                .map
                .values()
                .filter(|e| !e.parked)
                .map(|e| e.cell.clone())
                .collect();
            for cell in active {
                match cell.cancel() {
                    Cancel::NotActive => {}
                    Cancel::Running => ids.push(cell.id),
                    Cancel::Pending { park } => {
                        self.cancelled_pending(cell.id, park);
                        ids.push(cell.id);
                    }
                }
            }
        }
        ids.sort_unstable();
        if !ids.is_empty() {
            trace_event!(
                WARN,
                cancelled = ids.len(),
                "task queue deadline passed: tasks cancelled"
            );
        }
        ids
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

    fn stats(&self) -> QueueStats {
        let now = Instant::now();
        let (submitted, queued) = {
            let jobs = lock(&self.jobs);
            (jobs.next_id - 1, jobs.queue.len() as u64)
        };
        let (mut retained, mut tracked) = (0, 0);
        for shard in self.shards.iter() {
            let mut shard = lock(&shard.0);
            shard.sweep(now, self.per_shard);
            retained += shard.retained;
            tracked += shard.map.len();
        }
        let c = &self.counters;
        let started = c.started.0.load(Ordering::Acquire);
        let completed = c.completed.0.load(Ordering::Acquire);
        let failed = c.failed.0.load(Ordering::Acquire);
        let cancelled = c.cancelled.0.load(Ordering::Acquire);
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
            retained,
            tracked,
        }
    }
}

impl<Req, Res, E> Table<Res, E> for Shared<Req, Res, E>
where
    Req: Send,
    Res: Send,
    E: Send,
{
    fn taken(&self, id: TaskId) {
        let mut shard = self.shard(id.0);
        if let Some(entry) = shard.map.remove(&id.0) {
            if entry.parked {
                shard.retained -= 1;
            }
        }
    }

    fn park(&self, id: TaskId) {
        self.park_id(id);
    }

    fn cancel(&self, id: TaskId) -> bool {
        let Some(cell) = self.lookup(id) else {
            return false;
        };
        match cell.cancel() {
            Cancel::NotActive => false,
            Cancel::Running => {
                trace_event!(DEBUG, task = %id, "running task cancelled");
                true
            }
            Cancel::Pending { park } => {
                let wake = {
                    let mut jobs = lock(&self.jobs);
                    match jobs.queue.iter().position(|j| j.cell.id == id) {
                        Some(pos) => {
                            jobs.queue.remove(pos);
                            jobs.space.notify_one()
                        }
                        None => None,
                    }
                };
                if let Some(w) = wake {
                    w.wake();
                }
                self.cancelled_pending(id, park);
                trace_event!(DEBUG, task = %id, "pending task cancelled");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked_shard(n: u64, now: Instant) -> Shard<(), ()> {
        let mut shard = Shard::default();
        for id in 0..n {
            shard.map.insert(
                id,
                Entry {
                    cell: Arc::new(Cell::new(TaskId(id), false)),
                    parked: true,
                },
            );
            shard.expiry.push_back((id, now + Duration::from_secs(60)));
            shard.retained += 1;
        }
        shard
    }

    #[test]
    fn sweep_evicts_the_oldest_beyond_the_limit() {
        let now = Instant::now();
        let mut shard = parked_shard(100, now);
        shard.sweep(now, 10);
        assert_eq!(shard.retained, 10);
        assert_eq!(shard.map.len(), 10);
        assert!(shard.map.contains_key(&99) && !shard.map.contains_key(&89));
        shard.sweep(now + Duration::from_secs(60), 10);
        assert_eq!(
            (shard.retained, shard.map.len(), shard.expiry.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn expiry_list_stays_bounded_when_results_are_taken() {
        let now = Instant::now();
        let mut shard = parked_shard(10_000, now);
        // Taken results leave their ids behind in the expiry list...
        for id in 0..9_990 {
            shard.map.remove(&id);
            shard.retained -= 1;
        }
        assert_eq!(shard.expiry.len(), 10_000);
        // ...until the next sweep compacts them away.
        shard.sweep(now, 1_000);
        assert_eq!(shard.retained, 10);
        assert!(shard.expiry.len() <= 2 * 10 + 64, "{}", shard.expiry.len());
    }
}
