//! Behaviour of `tower_patterns::queue` through its public API.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::queue::{
    QueueClosed, QueueFull, QueueStats, Shutdown, TaskError, TaskHandle, TaskId, TaskQueue,
    TaskQueueBuilder, TaskStatus, TrySubmitError,
};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
use tower_patterns::ConfigError;

/// What a test task does.
#[derive(Clone)]
enum Job {
    Ok(u32),
    Fail(&'static str),
    Panic,
    Sleep(u64),
    /// Waits for a permit of this gate; sets the flag when the future is dropped.
    Gate(Arc<Semaphore>, Arc<AtomicBool>),
}

struct SetOnDrop(Arc<AtomicBool>);
impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The test service; counts the calls it receives.
fn jobs(
    calls: Arc<AtomicUsize>,
) -> impl Service<Job, Response = u32, Error = &'static str, Future: Send> + Clone + Send + 'static
{
    service_fn(move |job: Job| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match job {
                Job::Ok(n) => Ok(n),
                Job::Fail(msg) => Err(msg),
                Job::Panic => panic!("boom in task"),
                Job::Sleep(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(ms as u32)
                }
                Job::Gate(gate, dropped) => {
                    let _guard = SetOnDrop(dropped);
                    gate.acquire().await.expect("gate open").forget();
                    Ok(0)
                }
            }
        }
    })
}

/// The queue the tests build over [`jobs`].
type Queue = TaskQueue<Job, u32, &'static str>;

/// Builds `builder` over a fresh [`jobs`] service.
fn build(builder: TaskQueueBuilder) -> Result<Queue, ConfigError> {
    builder.build(jobs(Arc::default()))
}

/// Like [`build`], for a configuration that is valid.
fn start(builder: TaskQueueBuilder) -> Queue {
    build(builder).unwrap()
}

/// A queue of `workers` workers, the other settings at their defaults.
fn with_workers(workers: usize) -> Queue {
    start(TaskQueue::builder().workers(workers))
}

/// A current-thread runtime, for the tests that drive runtimes themselves.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A task that runs until the test opens its gate, and tells when its
/// future was dropped.
struct Gate {
    permits: Arc<Semaphore>,
    dropped: Arc<AtomicBool>,
}

impl Gate {
    fn new() -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(0)),
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    fn job(&self) -> Job {
        Job::Gate(self.permits.clone(), self.dropped.clone())
    }

    /// Lets one gated task finish.
    fn open(&self) {
        self.permits.add_permits(1);
    }

    /// True once a gated task's future was dropped.
    fn dropped(&self) -> bool {
        self.dropped.load(Ordering::SeqCst)
    }
}

/// Submits a gated task and waits until a worker runs it (with one worker,
/// everything submitted next stays pending until `gate.open()`).
async fn occupy(queue: &Queue) -> (TaskId, Gate) {
    let gate = Gate::new();
    let id = queue.submit(gate.job()).await.unwrap();
    wait_status(queue, id, TaskStatus::Running).await;
    (id, gate)
}

/// Like [`occupy`], through a [`TaskHandle`].
async fn occupy_with_handle(queue: &Queue) -> (TaskHandle<u32, &'static str>, Gate) {
    let gate = Gate::new();
    let handle = queue.submit_with_handle(gate.job()).await.unwrap();
    wait_status(queue, handle.id(), TaskStatus::Running).await;
    (handle, gate)
}

async fn wait_status<Req: Send + 'static, Res: Send + 'static, E: Send + 'static>(
    queue: &TaskQueue<Req, Res, E>,
    id: TaskId,
    want: TaskStatus,
) {
    for _ in 0..10_000 {
        if queue.status(id) == Some(want) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{id} never reached {want:?}: {:?}", queue.status(id));
}

#[tokio::test]
async fn results_are_delivered_for_success_failure_and_panic() {
    let queue = with_workers(1);
    let ok = queue.submit(Job::Ok(7)).await.unwrap();
    let fail = queue.submit(Job::Fail("bad input")).await.unwrap();
    let panic = queue.submit(Job::Panic).await.unwrap();
    // The single worker survives the panic and runs the next task.
    let after = queue.submit(Job::Ok(8)).await.unwrap();

    assert_eq!(queue.result(ok).await.unwrap(), 7);
    match queue.result(fail).await {
        Err(TaskError::Failed(msg)) => assert_eq!(msg, "bad input"),
        other => panic!("expected Failed, got {other:?}"),
    }
    match queue.result(panic).await {
        Err(TaskError::Panicked(msg)) => assert!(msg.contains("boom in task"), "{msg}"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(queue.result(after).await.unwrap(), 8);

    let stats = queue.stats();
    assert_eq!(stats.submitted, 4);
    assert_eq!(stats.completed, 2);
    assert_eq!(stats.failed, 2);
    assert_eq!(stats.panicked, 1);
    assert_eq!((stats.queued, stats.running, stats.tracked), (0, 0, 0));
    // Taken results are forgotten.
    assert_eq!(queue.status(ok), None);
    assert!(matches!(queue.result(ok).await, Err(TaskError::NotFound(id)) if id == ok));
}

#[tokio::test]
async fn statuses_are_kept_until_taken() {
    let queue = with_workers(2);
    let ok = queue.submit(Job::Ok(1)).await.unwrap();
    let fail = queue.submit(Job::Fail("no")).await.unwrap();
    let panic = queue.submit(Job::Panic).await.unwrap();
    wait_status(&queue, ok, TaskStatus::Completed).await;
    wait_status(&queue, fail, TaskStatus::Failed).await;
    wait_status(&queue, panic, TaskStatus::Failed).await;
    assert_eq!(queue.stats().retained, 3);
    assert!(queue.result(panic).await.unwrap_err().is_panic());
    assert_eq!(queue.stats().retained, 2);
}

/// A result taken through its handle is forgotten at once, although the
/// taker does not lock the task table (the table drops the entry later):
/// the id is unknown to `status`, `result` and `cancel`, and nothing is
/// tracked, also after many tasks.
#[tokio::test]
async fn a_result_taken_through_its_handle_is_forgotten() {
    let queue = with_workers(1);
    let mut ids = Vec::new();
    for round in 0..20u32 {
        let mut handles = Vec::new();
        for n in 0..500 {
            handles.push(queue.submit_with_handle(Job::Ok(n)).await.unwrap());
        }
        for (n, handle) in handles.into_iter().enumerate() {
            let id = handle.id();
            assert_eq!(handle.await.unwrap(), n as u32);
            if n % 97 == 0 {
                ids.push(id);
                assert_eq!(queue.status(id), None, "round {round}: {id}");
            }
        }
    }
    for id in ids {
        assert_eq!(queue.status(id), None, "{id}");
        assert!(!queue.cancel(id), "{id}");
        assert!(matches!(queue.result(id).await, Err(TaskError::NotFound(i)) if i == id));
    }
    assert_eq!(queue.stats().tracked, 0);
    assert_eq!(queue.stats().completed, 10_000);
}

/// A task submitted with a handle is named by its handle alone until its
/// id is read: the queue lists it then, not before, and a result nobody
/// can ask for is not kept.
#[tokio::test]
async fn a_task_submitted_with_a_handle_is_listed_once_its_id_is_read() {
    let queue = with_workers(1);
    let (blocker, gate) = occupy(&queue).await;
    let handle = queue.submit_with_handle(Job::Ok(7)).await.unwrap();
    assert_eq!(queue.stats().tracked, 1, "only the blocker is listed");
    let id = handle.id();
    assert_eq!(queue.stats().tracked, 2);
    assert_eq!(queue.status(id), Some(TaskStatus::Pending));
    // Listed, so a dropped handle leaves its result for `result(id)`.
    drop(handle);

    // Unread handles: one cancelled through the handle, one dropped.
    let cancelled = queue.submit_with_handle(Job::Ok(8)).await.unwrap();
    let dropped = queue.submit_with_handle(Job::Ok(9)).await.unwrap();
    assert!(cancelled.cancel(), "a pending task can be cancelled");
    assert!(!cancelled.cancel(), "only once");
    drop(dropped);
    assert_eq!(queue.stats().tracked, 2);

    gate.open();
    assert_eq!(queue.result(blocker).await.unwrap(), 0);
    assert_eq!(queue.result(id).await.unwrap(), 7);
    assert!(cancelled.await.unwrap_err().is_cancelled());
    while queue.stats().completed < 3 {
        tokio::task::yield_now().await;
    }
    let stats = queue.stats();
    assert_eq!((stats.completed, stats.cancelled), (3, 1));
    assert_eq!(
        (stats.retained, stats.tracked),
        (0, 0),
        "nothing kept for the dropped handle"
    );
}

/// A shutdown cancels the tasks only their handles name in every state: the
/// one running (and waiting), those the worker took and had not started,
/// and the one still queued; the summary lists them all.
#[tokio::test]
async fn shutdown_now_cancels_tasks_only_their_handles_name() {
    let queue = start(TaskQueue::builder().workers(1).capacity(10));
    let gate = Gate::new();
    // Submitted before the worker first runs: it takes all four at once.
    let running = queue.submit_with_handle(gate.job()).await.unwrap();
    let mut handles = Vec::new();
    for n in 0..3 {
        handles.push(queue.submit_with_handle(Job::Ok(n)).await.unwrap());
    }
    for _ in 0..10_000 {
        if running.status() == TaskStatus::Running {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(running.status(), TaskStatus::Running);
    assert_eq!(queue.stats().tracked, 0, "none listed");
    handles.push(queue.submit_with_handle(Job::Ok(9)).await.unwrap());
    handles.push(running);

    let summary = tokio::time::timeout(Duration::from_secs(10), queue.shutdown(Shutdown::Now))
        .await
        .expect("the shutdown ends");
    assert!(gate.dropped());
    let mut ids: Vec<_> = handles.iter().map(|h| h.id()).collect();
    ids.sort_unstable();
    assert_eq!(summary.cancelled, ids);
    for handle in handles {
        assert!(handle.await.unwrap_err().is_cancelled());
    }
    let stats = queue.stats();
    assert_eq!((stats.cancelled, stats.completed), (5, 0));
    assert_eq!((stats.queued, stats.running, stats.tracked), (0, 0, 0));
}

#[tokio::test]
async fn a_dropped_handle_leaves_the_result_for_later() {
    let queue = with_workers(1);
    let handle = queue.submit_with_handle(Job::Ok(4)).await.unwrap();
    let id = handle.id();
    drop(handle);
    wait_status(&queue, id, TaskStatus::Completed).await;
    assert_eq!(queue.stats().retained, 1);
    assert_eq!(queue.result(id).await.unwrap(), 4);
    assert_eq!(queue.stats().tracked, 0);

    // A handle kept alive reports the status, and still has it once taken.
    let mut handle = queue.submit_with_handle(Job::Fail("nope")).await.unwrap();
    wait_status(&queue, handle.id(), TaskStatus::Failed).await;
    assert_eq!(handle.status(), TaskStatus::Failed);
    assert_eq!(queue.stats().retained, 0, "the live handle will take it");
    assert!((&mut handle).await.is_err());
    assert_eq!(handle.status(), TaskStatus::Failed);
    assert!(!handle.cancel(), "already finished");
}

#[tokio::test]
async fn panics_in_poll_ready_and_call_become_task_errors() {
    /// Panics in its first `poll_ready`, and in `call` for zero.
    #[derive(Clone, Default)]
    struct Faulty(Arc<AtomicBool>);
    impl Service<u8> for Faulty {
        type Response = u8;
        type Error = BoxError;
        type Future = std::future::Ready<Result<u8, BoxError>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            if !self.0.swap(true, Ordering::SeqCst) {
                panic!("not ready, ever");
            }
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, n: u8) -> Self::Future {
            if n == 0 {
                panic!("call refused zero");
            }
            std::future::ready(Ok(n))
        }
    }
    let queue = TaskQueue::builder()
        .workers(1)
        .build(Faulty::default())
        .unwrap();
    let first = queue.submit_with_handle(1).await.unwrap();
    match first.await {
        Err(TaskError::Panicked(msg)) => assert_eq!(msg, "not ready, ever"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    let zero = queue.submit_with_handle(0).await.unwrap();
    let one = queue.submit_with_handle(1).await.unwrap();
    match zero.await {
        Err(TaskError::Panicked(msg)) => assert_eq!(msg, "call refused zero"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(one.await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn result_waits_and_can_be_bounded_by_a_timeout() {
    let queue = with_workers(1);
    let id = queue.submit(Job::Sleep(10_000)).await.unwrap();
    let started = tokio::time::Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(1), queue.result(id)).await;
    assert!(waited.is_err(), "the task takes 10 s");
    assert_eq!(queue.status(id), Some(TaskStatus::Running));
    // The timed-out wait left the result in place for this one.
    assert_eq!(queue.result(id).await.unwrap(), 10_000);
    // Woken at completion: no polling interval added to the task's 10 s.
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test]
async fn cancel_pending_task_never_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let queue = TaskQueue::builder()
        .workers(1)
        .build(jobs(calls.clone()))
        .unwrap();
    let (blocker, gate) = occupy(&queue).await;
    let pending = queue.submit_with_handle(Job::Ok(5)).await.unwrap();
    assert_eq!(pending.status(), TaskStatus::Pending);
    assert_eq!(queue.stats().queued, 1);

    assert!(queue.cancel(pending.id()));
    assert!(!queue.cancel(pending.id()), "already cancelled");
    assert_eq!(queue.status(pending.id()), Some(TaskStatus::Cancelled));
    assert_eq!(queue.stats().queued, 0, "its slot is freed at once");

    gate.open();
    assert_eq!(queue.result(blocker).await.unwrap(), 0);
    assert!(pending.await.unwrap_err().is_cancelled());
    // Let the worker look for more work: the cancelled task must not run.
    let probe = queue.submit(Job::Ok(1)).await.unwrap();
    queue.result(probe).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2, "blocker and probe only");
    assert_eq!(queue.stats().cancelled, 1);
}

#[tokio::test]
async fn cancel_running_task_drops_its_future() {
    let queue = with_workers(1);
    let (handle, gate) = occupy_with_handle(&queue).await;
    assert!(!gate.dropped());

    assert!(handle.cancel());
    let id = handle.id();
    assert!(handle.await.unwrap_err().is_cancelled());
    assert!(gate.dropped(), "the task's future was dropped");
    assert_eq!(queue.status(id), None, "taken");
    // The worker is free again.
    let next = queue.submit(Job::Ok(3)).await.unwrap();
    assert_eq!(queue.result(next).await.unwrap(), 3);
    let stats = queue.stats();
    assert_eq!((stats.cancelled, stats.running), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn backpressure_at_capacity() {
    let queue = start(TaskQueue::builder().workers(1).capacity(2));
    let (_, gate) = occupy(&queue).await;
    let a = queue.try_submit(Job::Ok(1)).unwrap();
    let b = queue.try_submit(Job::Ok(2)).unwrap();

    match queue.try_submit(Job::Ok(3)) {
        Err(TrySubmitError::Full(full, Job::Ok(3))) => assert_eq!(full.capacity(), 2),
        other => panic!("expected Full, got {:?}", other.map_err(|e| e.to_string())),
    }
    // `submit` waits for room...
    let waiting = tokio::time::timeout(Duration::from_secs(5), queue.submit(Job::Ok(4))).await;
    assert!(waiting.is_err(), "submit must wait while the queue is full");
    // ...and so does the Service's poll_ready.
    let mut svc = queue.clone();
    let ready = tokio::time::timeout(Duration::from_secs(5), svc.ready()).await;
    assert!(
        ready.is_err(),
        "poll_ready must wait while the queue is full"
    );
    // `call` without readiness reports QueueFull.
    let err = svc.call(Job::Ok(5)).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<QueueFull>().map(|e| e.capacity()),
        Some(2)
    );
    assert!(err.to_string().contains("full"), "{err}");

    // Room appears as the worker takes the next task.
    let submit = tokio::spawn({
        let queue = queue.clone();
        async move { queue.submit(Job::Ok(6)).await }
    });
    tokio::task::yield_now().await;
    assert!(!submit.is_finished());
    gate.open();
    let c = submit.await.unwrap().unwrap();
    for (id, want) in [(a, 1), (b, 2), (c, 6)] {
        assert_eq!(queue.result(id).await.unwrap(), want);
    }
    // A reserved slot is honoured by call.
    let id = svc.ready().await.unwrap().call(Job::Ok(9)).await.unwrap();
    assert_eq!(queue.result(id).await.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_submit_passes_its_wake_up_on() {
    let queue = start(TaskQueue::builder().workers(1).capacity(1));
    let (_, gate) = occupy(&queue).await;
    let queued = queue.submit(Job::Ok(1)).await.unwrap();

    // Two submitters wait for room: first `a`, then `b`.
    let mut a = Box::pin(queue.submit(Job::Ok(2)));
    assert!(futures::poll!(a.as_mut()).is_pending());
    let b = tokio::spawn({
        let queue = queue.clone();
        async move { queue.submit(Job::Ok(3)).await }
    });
    tokio::task::yield_now().await;
    // Room appears and `a` is told; `a` is dropped without using it.
    assert!(queue.cancel(queued));
    drop(a);
    let b = tokio::time::timeout(Duration::from_secs(5), b)
        .await
        .expect("b must get the room a gave up")
        .unwrap()
        .unwrap();
    gate.open();
    assert_eq!(queue.result(b).await.unwrap(), 3);
}

#[tokio::test]
async fn service_impl_submits_and_reports_closed() {
    let queue = with_workers(2);
    let id = queue.clone().oneshot(Job::Ok(11)).await.unwrap();
    assert_eq!(queue.result(id).await.unwrap(), 11);

    let summary = queue.shutdown(Shutdown::Now).await;
    assert!(summary.cancelled.is_empty());
    let err = queue.clone().oneshot(Job::Ok(1)).await.unwrap_err();
    assert!(err.downcast_ref::<QueueClosed>().is_some(), "{err}");
    assert_eq!(queue.submit(Job::Ok(1)).await, Err(QueueClosed));
    assert!(queue.try_submit(Job::Ok(1)).unwrap_err().is_closed());
    assert!(queue.is_closed());
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_finishes_accepted_work() {
    let queue = with_workers(2);
    let mut ids = Vec::new();
    for i in 1..=10 {
        ids.push(queue.submit(Job::Sleep(i * 100)).await.unwrap());
    }
    let summary = queue
        .shutdown(Shutdown::Graceful(Duration::from_secs(60)))
        .await;
    assert!(!summary.deadline_reached);
    assert!(summary.cancelled.is_empty());
    assert_eq!(summary.completed, 10);
    for (i, id) in ids.into_iter().enumerate() {
        assert_eq!(queue.status(id), Some(TaskStatus::Completed));
        assert_eq!(queue.result(id).await.unwrap(), (i as u32 + 1) * 100);
    }
    assert_eq!(queue.stats().tracked, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_deadline_cancels_the_rest_and_accounts_for_every_id() {
    let queue = with_workers(2);
    let mut handles = Vec::new();
    for _ in 0..10 {
        handles.push(queue.submit_with_handle(Job::Sleep(1_000)).await.unwrap());
    }
    let ids: Vec<_> = handles.iter().map(|h| h.id()).collect();
    // Two workers, 1 s per task: by 2.5 s four tasks are done, two are
    // running and four still pending.
    let summary = queue
        .shutdown(Shutdown::Graceful(Duration::from_millis(2_500)))
        .await;
    assert!(summary.deadline_reached);
    assert_eq!(summary.completed, 4);
    assert_eq!(summary.cancelled.len(), 6);

    let cancelled: HashSet<_> = summary.cancelled.iter().copied().collect();
    for (id, handle) in ids.iter().zip(handles) {
        let status = queue.status(*id).expect("every accepted task has a status");
        let result = handle.await;
        if cancelled.contains(id) {
            assert_eq!(status, TaskStatus::Cancelled);
            assert!(result.unwrap_err().is_cancelled());
        } else {
            assert_eq!(status, TaskStatus::Completed);
            assert_eq!(result.unwrap(), 1_000);
        }
    }
    let stats = queue.stats();
    assert_eq!((stats.completed, stats.cancelled), (4, 6));
    assert_eq!((stats.queued, stats.running, stats.tracked), (0, 0, 0));
}

#[tokio::test]
async fn shutdown_now_cancels_everything_unfinished() {
    let queue = with_workers(1);
    let (running, gate) = occupy(&queue).await;
    let pending = queue.submit(Job::Ok(1)).await.unwrap();
    let summary = queue.shutdown(Shutdown::Now).await;
    assert_eq!(summary.cancelled, vec![running, pending]);
    assert!(gate.dropped());
    assert!(queue.result(running).await.unwrap_err().is_cancelled());
    assert!(queue.result(pending).await.unwrap_err().is_cancelled());
    // A second shutdown has nothing left to do.
    assert_eq!(queue.shutdown(Shutdown::Now).await.cancelled, vec![]);
}

#[tokio::test]
async fn dropping_the_last_queue_handle_drains_accepted_tasks() {
    let queue = with_workers(1);
    let a = queue.submit_with_handle(Job::Ok(1)).await.unwrap();
    let b = queue.submit_with_handle(Job::Ok(2)).await.unwrap();
    drop(queue);
    assert_eq!(a.await.unwrap(), 1);
    assert_eq!(b.await.unwrap(), 2);
}

#[test]
fn stopped_runtime_cancels_tasks_instead_of_losing_them() {
    let rt = runtime();
    let (queue, running, pending) = rt.block_on(async {
        let queue = with_workers(1);
        let (running, _gate) = occupy_with_handle(&queue).await;
        let pending = queue.submit_with_handle(Job::Ok(1)).await.unwrap();
        (queue, running, pending)
    });
    drop(rt);
    runtime().block_on(async {
        assert!(running.await.unwrap_err().is_cancelled());
        assert!(pending.await.unwrap_err().is_cancelled());
        assert!(queue.is_closed());
    });
}

#[tokio::test(start_paused = true)]
async fn finished_results_expire_after_retention() {
    let queue = start(
        TaskQueue::builder()
            .workers(1)
            .retain_results(Duration::from_secs(60)),
    );
    let id = queue.submit(Job::Ok(1)).await.unwrap();
    wait_status(&queue, id, TaskStatus::Completed).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(queue.status(id), Some(TaskStatus::Completed));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(queue.status(id), None);
    assert!(matches!(
        queue.result(id).await,
        Err(TaskError::NotFound(_))
    ));
    assert_eq!(queue.stats().tracked, 0);
}

#[tokio::test(start_paused = true)]
async fn idle_queue_drops_expired_results_on_time() {
    /// A response that reports when it is dropped.
    struct Tracked(Arc<AtomicBool>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let svc = service_fn({
        let dropped = dropped.clone();
        move |()| std::future::ready(Ok::<_, BoxError>(Tracked(dropped.clone())))
    });
    let queue = TaskQueue::builder()
        .workers(1)
        .retain_results(Duration::from_secs(60))
        .build(svc)
        .unwrap();
    let id = queue.submit(()).await.unwrap();
    wait_status(&queue, id, TaskStatus::Completed).await;
    // Nobody touches the queue: the janitor alone must drop the result.
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(
        !dropped.load(Ordering::SeqCst),
        "kept for the retention period"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(dropped.load(Ordering::SeqCst), "dropped once expired");
    assert_eq!(queue.status(id), None);
}

#[tokio::test(start_paused = true)]
async fn memory_stays_bounded_over_a_long_run() {
    const TASKS: u32 = 100_000;
    let queue = start(
        TaskQueue::builder()
            .workers(4)
            .capacity(256)
            .max_retained(1_000)
            .retain_results(Duration::from_secs(300)),
    );
    let mut max_tracked = 0;
    let (mut first, mut last) = (None, None);
    for i in 0..TASKS {
        // Nobody waits: every result is parked in the table.
        let id = queue.submit(Job::Ok(i)).await.unwrap();
        first.get_or_insert(id);
        last = Some(id);
        if i % 1_000 == 0 {
            max_tracked = max_tracked.max(queue.stats().tracked);
        }
    }
    let last = last.unwrap();
    wait_status(&queue, last, TaskStatus::Completed).await;
    let stats = queue.stats();
    assert_eq!(stats.completed, u64::from(TASKS));
    assert_eq!(stats.retained, 1_000, "at the bound");
    assert_eq!(stats.tracked, 1_000);
    assert!(max_tracked <= 1_000 + 256 + 4, "tracked {max_tracked}");
    // The newest are kept, the oldest forgotten.
    assert_eq!(queue.result(last).await.unwrap(), TASKS - 1);
    assert_eq!(queue.status(last), None, "taken");
    assert_eq!(
        queue.status(first.unwrap()),
        None,
        "evicted by max_retained"
    );

    // Results taken through handles leave nothing behind.
    for i in 0..10_000 {
        let handle = queue.submit_with_handle(Job::Ok(i)).await.unwrap();
        if i % 2 == 0 {
            assert_eq!(handle.await.unwrap(), i);
        } else {
            drop(handle); // dropped: the result is parked instead
        }
    }
    assert!(queue.stats().tracked <= 1_000 + 256 + 4);
    while queue.stats().completed < u64::from(TASKS) + 10_000 {
        tokio::task::yield_now().await;
    }
    // Retention ends and everything is forgotten.
    tokio::time::advance(Duration::from_secs(301)).await;
    let stats = queue.stats();
    assert_eq!((stats.retained, stats.tracked), (0, 0));
}

/// Fails every request's first attempt; tracks how many run at once.
#[derive(Clone, Default)]
struct Flaky {
    attempts: Arc<Mutex<std::collections::HashMap<u32, u32>>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl Service<u32> for Flaky {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let a = attempts.entry(n).or_default();
            *a += 1;
            *a
        };
        let in_flight = self.in_flight.clone();
        let max = self.max_in_flight.clone();
        Box::pin(async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            if attempt == 1 {
                Err("first attempt fails".into())
            } else {
                Ok(n * 10)
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn layered_inner_service_applies_per_task() {
    // The crate's own limit and retry layers inside the queue.
    let flaky = Flaky::default();
    let limit = ConcurrencyLimitLayer::new(2);
    let retry = RetryLayer::builder()
        .max_attempts(2)
        .backoff(Backoff::constant(Duration::from_millis(1)).jitter(Jitter::None))
        .build()
        .unwrap();
    let inner = ServiceBuilder::new()
        .layer(limit.clone())
        .layer(retry.clone())
        .service(flaky.clone());
    let queue = TaskQueue::builder().workers(5).build(inner).unwrap();
    let mut handles = Vec::new();
    for n in 0..20 {
        handles.push(queue.submit_with_handle(n).await.unwrap());
    }
    for (n, handle) in (0..20).zip(handles) {
        assert_eq!(handle.await.unwrap(), n * 10, "retried inside the queue");
    }
    let attempts = flaky.attempts.lock().unwrap();
    assert!(attempts.values().all(|&a| a == 2), "{attempts:?}");
    // Five workers, but the limit inside the queue holds them to two.
    assert_eq!(flaky.max_in_flight.load(Ordering::SeqCst), 2);
    let stats = retry.stats();
    assert_eq!((stats.attempts, stats.retries), (40, 20));
    assert_eq!(limit.stats().in_flight, 0);
}

#[test]
fn builder_rejects_bad_values() {
    let rt = runtime();
    let _enter = rt.enter();
    let err = build(TaskQueue::builder().workers(0)).unwrap_err();
    assert_eq!(err.field(), "workers");
    let err = build(TaskQueue::builder().capacity(0)).unwrap_err();
    assert_eq!(err.field(), "capacity");
    drop(_enter);
    let err = build(TaskQueue::builder()).unwrap_err();
    assert_eq!(err.field(), "runtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submitters_and_cancels_account_for_every_task() {
    let queue = start(TaskQueue::builder().workers(3).capacity(64));
    let mut submitters = Vec::new();
    for s in 0..4u32 {
        let queue = queue.clone();
        submitters.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..2_000u32 {
                let job = if i % 3 == 0 {
                    Job::Sleep(0)
                } else {
                    Job::Ok(i)
                };
                let handle = queue.submit_with_handle(job).await.unwrap();
                if (i + s) % 5 == 0 {
                    handle.cancel();
                }
                handles.push(handle);
            }
            let (mut ok, mut cancelled) = (0u64, 0u64);
            for handle in handles {
                match handle.await {
                    Ok(_) => ok += 1,
                    Err(TaskError::Cancelled) => cancelled += 1,
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            (ok, cancelled)
        }));
    }
    let (mut ok, mut cancelled) = (0, 0);
    for s in submitters {
        let (o, c) = s.await.unwrap();
        ok += o;
        cancelled += c;
    }
    assert_eq!(ok + cancelled, 8_000);
    let stats = queue.stats();
    assert_eq!(stats.submitted, 8_000);
    assert_eq!((stats.completed, stats.cancelled), (ok, cancelled));
    assert_eq!((stats.queued, stats.running, stats.tracked), (0, 0, 0));
}

#[tokio::test]
async fn futures_are_send_and_queue_is_shareable() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Sync>(_: &T) {}
    let queue = with_workers(1);
    assert_send(&queue);
    assert_sync(&queue);
    let submit = queue.submit(Job::Ok(1));
    assert_send(&submit);
    let id = submit.await.unwrap();
    let result = queue.result(id);
    assert_send(&result);
    assert_eq!(result.await.unwrap(), 1);
    let handle = queue.submit_with_handle(Job::Ok(2)).await.unwrap();
    assert_send(&handle);
    assert_sync(&handle);
    let shutdown = queue.shutdown(Shutdown::Graceful(Duration::from_secs(1)));
    assert_send(&shutdown);
    // Shutdown runs from another task while the handle is awaited here.
    let queue2 = queue.clone();
    let summary = tokio::spawn(async move {
        queue2
            .shutdown(Shutdown::Graceful(Duration::from_secs(1)))
            .await
    });
    drop(shutdown);
    assert_eq!(handle.await.unwrap(), 2);
    assert!(summary.await.unwrap().cancelled.is_empty());
}

/// A waker that reads the queue's statistics at the moment it is woken.
struct StatsAtWake {
    queue: Queue,
    seen: Mutex<Vec<QueueStats>>,
}

impl std::task::Wake for StatsAtWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.seen.lock().unwrap().push(self.queue.stats());
    }
}

#[tokio::test]
async fn stats_count_a_task_finished_before_its_waiter_wakes() {
    let queue = with_workers(1);
    for round in 1..=3u64 {
        let (id, gate) = occupy(&queue).await;
        let probe = Arc::new(StatsAtWake {
            queue: queue.clone(),
            seen: Mutex::default(),
        });
        let waker = std::task::Waker::from(probe.clone());
        let mut result = Box::pin(queue.result(id));
        assert!(result
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        gate.open();
        while probe.seen.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let at_wake = probe.seen.lock().unwrap()[0];
        assert_eq!(
            (at_wake.running, at_wake.completed),
            (0, round),
            "{at_wake:?}"
        );
        assert_eq!(result.await.unwrap(), 0);
    }
}

#[tokio::test]
async fn a_task_a_worker_took_but_not_started_frees_its_slot_when_cancelled() {
    let queue = start(TaskQueue::builder().workers(1).capacity(3));
    let gate = Gate::new();
    // Submitted together, so the lone worker takes all three at once.
    let running = queue.try_submit(gate.job()).unwrap();
    let a = queue.try_submit(Job::Ok(1)).unwrap();
    let b = queue.try_submit(Job::Ok(2)).unwrap();
    wait_status(&queue, running, TaskStatus::Running).await;
    assert_eq!(queue.status(a), Some(TaskStatus::Pending));
    assert_eq!(queue.stats().queued, 2);
    // Room for one more, then for two once `a` is cancelled.
    assert!(queue.cancel(a));
    assert_eq!(queue.stats().queued, 1);
    let c = queue.try_submit(Job::Ok(3)).unwrap();
    let d = queue.try_submit(Job::Ok(4)).unwrap();
    assert!(matches!(
        queue.try_submit(Job::Ok(5)),
        Err(TrySubmitError::Full(..))
    ));
    gate.open();
    assert!(queue.result(a).await.unwrap_err().is_cancelled());
    for (id, want) in [(running, 0), (b, 2), (c, 3), (d, 4)] {
        assert_eq!(queue.result(id).await.unwrap(), want);
    }
    let stats = queue.stats();
    assert_eq!((stats.queued, stats.running, stats.cancelled), (0, 0, 1));
}
