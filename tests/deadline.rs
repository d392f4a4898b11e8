//! Deadlines: `TimeoutLayer` enforces one and makes it known below; retry
//! and the queue stop starting work that cannot finish by it; `grpc-timeout`
//! is read and written; `respond` answers it with 504 / DEADLINE_EXCEEDED.
//! All in paused tokio time.

use std::future::pending;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_patterns::classify::{Classify, DefaultClassify, Outcome};
use tower_patterns::deadline::{
    self, format_grpc_timeout, parse_grpc_timeout, Deadline, Elapsed, PropagateDeadlineLayer,
    TimeoutLayer,
};
use tower_patterns::queue::{TaskError, TaskQueue, TaskStatus};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};
use tower_patterns::BoxError;

const MS: Duration = Duration::from_millis(1);

/// A retry layer with a constant backoff and no jitter.
fn retry(max_attempts: u32, backoff: Duration) -> RetryLayer {
    RetryLayer::builder()
        .max_attempts(max_attempts)
        .backoff(Backoff::constant(backoff).jitter(Jitter::None))
        .build()
        .unwrap()
}

/// A service whose every call takes `took` and fails; counts its calls.
fn failing_after(
    took: Duration,
    calls: Arc<AtomicU32>,
) -> impl Service<(), Response = (), Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |_: ()| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(took).await;
            Err::<(), BoxError>("unavailable".into())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_deadline_stops_retry_before_an_attempt_it_cannot_finish() {
    let calls = Arc::new(AtomicU32::new(0));
    let retry = retry(10, 500 * MS);
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .layer(retry.clone())
        .service(failing_after(100 * MS, calls.clone()));

    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    // Attempts start at 0 and 600 ms and fail 100 ms later; the third
    // would start at 700 + 500 ms, past the 1 s deadline: retry stops at
    // 700 ms with the last error instead of sleeping into the timeout.
    assert_eq!(err.to_string(), "unavailable");
    assert!(!err.is::<Elapsed>());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), 700 * MS);
    let stats = retry.stats();
    assert_eq!(
        (stats.attempts, stats.retries, stats.deadline_stops),
        (2, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_backoff_ending_exactly_at_the_deadline_is_not_begun() {
    let calls = Arc::new(AtomicU32::new(0));
    let retry = retry(3, 900 * MS);
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .layer(retry.clone())
        .service(failing_after(100 * MS, calls.clone()));

    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(start.elapsed(), 100 * MS);
    assert_eq!(retry.stats().deadline_stops, 1);
}

#[tokio::test(start_paused = true)]
async fn with_time_enough_retry_still_retries() {
    let calls = Arc::new(AtomicU32::new(0));
    let retry = retry(3, 100 * MS);
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(10)))
        .layer(retry.clone())
        .service(failing_after(100 * MS, calls.clone()));

    let start = Instant::now();
    let err = svc.ready().await.unwrap().call(()).await.unwrap_err();
    assert_eq!(err.to_string(), "unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), 500 * MS);
    let stats = retry.stats();
    assert_eq!((stats.retries, stats.deadline_stops), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_scoped_deadline_stops_retry_without_a_timeout_layer() {
    let calls = Arc::new(AtomicU32::new(0));
    let retry = retry(10, 500 * MS);
    let svc = ServiceBuilder::new()
        .layer(retry.clone())
        .service(failing_after(100 * MS, calls.clone()));

    let start = Instant::now();
    let by = Deadline::after(Duration::from_secs(1));
    let err = deadline::scope(by, svc.oneshot(())).await.unwrap_err();
    assert_eq!(err.to_string(), "unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(start.elapsed(), 700 * MS);
    assert_eq!(retry.stats().deadline_stops, 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_fails_with_elapsed_exactly_at_the_deadline() {
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .service(service_fn(|_: ()| async {
            pending::<()>().await;
            Ok::<(), BoxError>(())
        }));
    let start = Instant::now();
    let mut call = Box::pin(svc.ready().await.unwrap().call(()));

    // tokio's timer counts whole milliseconds: 1 ms before is the last
    // moment it can tell apart from the deadline.
    tokio::time::sleep(1999 * MS).await;
    assert!(
        futures::poll!(call.as_mut()).is_pending(),
        "still waiting just before the deadline"
    );
    let err = call.await.unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(2));
    let elapsed = err.downcast_ref::<Elapsed>().expect("deadline::Elapsed");
    assert!(elapsed.sent());
    assert_eq!(elapsed.allowed(), Duration::from_secs(2));
    // A call that ran out of time is a failure; one never sent is not.
    let res: Result<(), BoxError> = Err(err);
    assert_eq!(DefaultClassify.classify(&res), Outcome::Failure);
}

#[tokio::test(start_paused = true)]
async fn an_answer_in_time_passes_through() {
    let mut svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(2)))
        .service(service_fn(|n: u32| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<u32, BoxError>(n + 1)
        }));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn nested_timeouts_take_the_tighter_deadline() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = service_fn({
        let seen = seen.clone();
        move |_: ()| {
            seen.lock().unwrap().push(deadline::current().unwrap());
            async {
                pending::<()>().await;
                Ok::<(), BoxError>(())
            }
        }
    });
    let first = Instant::now();

    // Outer 1 s, inner 5 s: the outer one holds below both.
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(inner.clone());
    let err = svc.oneshot(()).await.unwrap_err();
    assert_eq!(first.elapsed(), Duration::from_secs(1));
    assert!(err.downcast_ref::<Elapsed>().unwrap().sent());

    // Outer 5 s, inner 1 s: the inner one is tighter.
    let second = Instant::now();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .service(inner);
    svc.oneshot(()).await.unwrap_err();
    assert_eq!(second.elapsed(), Duration::from_secs(1));

    let seen = seen.lock().unwrap();
    let second_s = Duration::from_secs(1);
    assert_eq!(
        *seen,
        [
            Deadline::at(first + second_s),
            Deadline::at(second + second_s)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_has_passed_is_not_sent() {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(5)))
        .service(failing_after(MS, calls.clone()));
    let gone = Deadline::at(Instant::now());
    let err = deadline::scope(gone, svc.oneshot(())).await.unwrap_err();
    let elapsed = err.downcast_ref::<Elapsed>().expect("deadline::Elapsed");
    assert!(!elapsed.sent());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Not sent, so not the service's fault: the breaker and retry ignore
    // it, bare or boxed.
    let bare: Result<(), Elapsed> = Err(*elapsed);
    assert_eq!(DefaultClassify.classify(&bare), Outcome::Ignored);
    let res: Result<(), BoxError> = Err(err);
    assert_eq!(DefaultClassify.classify(&res), Outcome::Ignored);
}

#[tokio::test(start_paused = true)]
async fn http_requests_carry_the_deadline_in_extensions_and_in_the_task() {
    let start = Instant::now();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::http(Duration::from_secs(3)))
        .service(service_fn(|req: http::Request<()>| async move {
            let carried = req.extensions().get::<Deadline>().copied();
            Ok::<_, BoxError>((carried, deadline::current()))
        }));
    let (carried, current) = svc.oneshot(http::Request::new(())).await.unwrap();
    let want = Deadline::at(start + Duration::from_secs(3));
    assert_eq!(carried, Some(want));
    assert_eq!(current, Some(want));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_set_by_hand_is_honoured_and_survives_a_spawned_task() {
    let start = Instant::now();
    // The inner stack runs in another task (as behind tower::buffer): only
    // the request carries the deadline there, and a second TimeoutLayer
    // with no limit of its own brings it back into the task.
    let inner = ServiceBuilder::new()
        .layer(TimeoutLayer::http(Duration::MAX))
        .service(service_fn(|_: http::Request<()>| async {
            Ok::<_, BoxError>(deadline::current())
        }));
    let handoff = service_fn(move |req: http::Request<()>| {
        let inner = inner.clone();
        async move { tokio::spawn(inner.oneshot(req)).await.unwrap() }
    });
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::http(Duration::from_secs(10)))
        .service(handoff);

    let mut req = http::Request::new(());
    let by_hand = Deadline::after(Duration::from_secs(2));
    req.extensions_mut().insert(by_hand);
    let seen = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(seen, Some(by_hand));
    assert_eq!(by_hand.instant() - start, Duration::from_secs(2));

    // Without one set by hand, the outer layer's own deadline is the one
    // that crosses.
    let seen = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(seen, Some(Deadline::at(start + Duration::from_secs(10))));
}

#[tokio::test(start_paused = true)]
async fn an_incoming_grpc_timeout_is_the_deadline_when_configured() {
    let slow = || {
        service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>("done")
        })
    };
    let req = || {
        http::Request::builder()
            .header("grpc-timeout", "250m")
            .body(())
            .unwrap()
    };

    let start = Instant::now();
    let err = ServiceBuilder::new()
        .layer(TimeoutLayer::grpc(Duration::MAX))
        .service(slow())
        .oneshot(req())
        .await
        .unwrap_err();
    assert!(err.is::<Elapsed>());
    assert_eq!(start.elapsed(), 250 * MS);

    // Not configured to read it: the header is nobody's deadline.
    let answer = ServiceBuilder::new()
        .layer(TimeoutLayer::http(Duration::from_secs(5)))
        .service(slow())
        .oneshot(req())
        .await
        .unwrap();
    assert_eq!(answer, "done");

    // A value that does not parse is ignored.
    let bad = http::Request::builder()
        .header("grpc-timeout", "soon")
        .body(())
        .unwrap();
    let answer = ServiceBuilder::new()
        .layer(TimeoutLayer::grpc(Duration::from_secs(5)))
        .service(slow())
        .oneshot(bad)
        .await
        .unwrap();
    assert_eq!(answer, "done");
}

#[tokio::test(start_paused = true)]
async fn propagate_writes_the_time_left_for_each_attempt() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let transport = service_fn({
        let sent = sent.clone();
        move |req: http::Request<()>| {
            let header = req.headers().get("grpc-timeout").cloned();
            sent.lock().unwrap().push(header);
            async { Err::<(), BoxError>("unavailable".into()) }
        }
    });
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .layer(retry(2, 400 * MS))
        .layer(PropagateDeadlineLayer::new())
        .service(transport);
    svc.oneshot(http::Request::new(())).await.unwrap_err();
    let sent: Vec<_> = sent.lock().unwrap().drain(..).flatten().collect();
    assert_eq!(sent, ["1000000u", "600000u"]);

    // No deadline in force: the request is untouched.
    let bare =
        PropagateDeadlineLayer::new().layer(service_fn(|req: http::Request<()>| async move {
            Ok::<_, BoxError>(req.headers().contains_key("grpc-timeout"))
        }));
    assert!(!bare.oneshot(http::Request::new(())).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn propagate_keeps_a_tighter_grpc_timeout_already_set() {
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1)))
        .layer(PropagateDeadlineLayer::new())
        .service(service_fn(|req: http::Request<()>| async move {
            Ok::<_, BoxError>(req.headers()["grpc-timeout"].clone())
        }));
    let req = http::Request::builder()
        .header("grpc-timeout", "20m")
        .body(())
        .unwrap();
    assert_eq!(svc.oneshot(req).await.unwrap(), "20000000n");
}

#[tokio::test(start_paused = true)]
async fn the_queue_does_not_start_a_task_whose_deadline_has_passed() {
    let runs = Arc::new(AtomicU32::new(0));
    let work = service_fn({
        let runs = runs.clone();
        move |n: u32| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, BoxError>((n, deadline::current()))
            }
        }
    });
    let queue = TaskQueue::builder().workers(1).build(work).unwrap();

    // Submitted under a 1.5 s deadline behind a task that takes 1 s: it
    // starts in time, and runs with its deadline in force in the worker.
    let by = Deadline::after(1500 * MS);
    let first = queue.submit(1).await.unwrap();
    let (second, third) = deadline::scope(by, async {
        let second = queue.submit(2).await.unwrap();
        let third = queue.submit(3).await.unwrap();
        (second, third)
    })
    .await;
    assert_eq!(queue.result(first).await.unwrap(), (1, None));
    assert_eq!(queue.result(second).await.unwrap(), (2, Some(by)));

    // The third comes up at 2 s, past its deadline: it is not run.
    let err = queue.result(third).await.unwrap_err();
    let TaskError::DeadlineExceeded(elapsed) = err else {
        panic!("expected DeadlineExceeded, got {err:?}");
    };
    assert!(!elapsed.sent());
    assert_eq!(elapsed.allowed(), 1500 * MS);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(queue.status(third), None, "result taken");
    let stats = queue.stats();
    assert_eq!((stats.completed, stats.cancelled, stats.expired), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_expired_queued_task_ends_cancelled_and_maps_to_504() {
    let queue = TaskQueue::builder()
        .workers(1)
        .build(service_fn(|_: u32| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(())
        }))
        .unwrap();
    queue.submit(0).await.unwrap();
    let late = deadline::scope(Deadline::after(10 * MS), queue.submit(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(queue.status(late), Some(TaskStatus::Cancelled));
    let err: BoxError = queue.result(late).await.unwrap_err().into();
    let answer = tower_patterns::respond::error_response(&err);
    assert_eq!(answer.status(), 504);
}

#[tokio::test(start_paused = true)]
async fn respond_maps_elapsed_to_504() {
    let err = ServiceBuilder::new()
        .layer(TimeoutLayer::new(10 * MS))
        .service(service_fn(|_: ()| async {
            pending::<()>().await;
            Ok::<(), BoxError>(())
        }))
        .oneshot(())
        .await
        .unwrap_err();
    let answer = tower_patterns::respond::error_response(&err);
    assert_eq!(answer.status(), 504);
    assert_eq!(
        answer.kind(),
        tower_patterns::respond::ErrorKind::DeadlineExceeded
    );
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn an_axum_route_past_its_deadline_answers_504() {
    use axum::error_handling::HandleErrorLayer;
    use axum::routing::get;
    use axum::Router;
    use tower_patterns::respond;

    let app: Router = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "late"
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(respond::handle_error))
                .layer(TimeoutLayer::http(Duration::from_secs(2))),
        );
    let req = http::Request::get("/slow")
        .body(axum::body::Body::empty())
        .unwrap();
    let start = Instant::now();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), http::StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[cfg(feature = "tonic")]
#[tokio::test(start_paused = true)]
async fn a_grpc_server_stack_answers_the_callers_deadline_with_deadline_exceeded() {
    use tower_patterns::respond;

    // The stack a tonic server would wear: map_err(into_status) outermost,
    // the caller's grpc-timeout read by the TimeoutLayer.
    let svc = ServiceBuilder::new()
        .map_err(respond::into_status)
        .layer(TimeoutLayer::grpc(Duration::from_secs(30)))
        .service(service_fn(|_: http::Request<()>| async {
            pending::<()>().await;
            Ok::<(), BoxError>(())
        }));
    let req = http::Request::builder()
        .header("grpc-timeout", "100m")
        .body(())
        .unwrap();
    let start = Instant::now();
    let status = svc.oneshot(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert_eq!(start.elapsed(), 100 * MS);
}

#[test]
fn builder_refuses_a_zero_timeout() {
    let err = TimeoutLayer::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout");
    assert!(TimeoutLayer::builder().build().unwrap().timeout().is_none());
}

#[test]
fn grpc_timeout_rejects_bad_input() {
    for bad in [
        "",
        "m",
        "12",
        "1h",
        "1.0S",
        "-5m",
        " 5m",
        "5m ",
        "123456789m",
        "5mm",
    ] {
        assert!(parse_grpc_timeout(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_grpc_timeout("99999999H").unwrap().as_secs(),
        99_999_999 * 3600
    );
}

proptest! {
    /// Formatting never allows more time than given, fits gRPC's grammar,
    /// and parses back to within one unit of the value.
    #[test]
    fn grpc_timeout_round_trips(nanos in any::<u64>(), secs in any::<u64>()) {
        for d in [Duration::from_nanos(nanos), Duration::new(secs, (nanos % 1_000_000_000) as u32)] {
            let text = format_grpc_timeout(d);
            let bytes = text.as_bytes();
            prop_assert!(bytes.len() >= 2 && bytes.len() <= 9, "{text:?}");
            let back = parse_grpc_timeout(&text).unwrap();
            prop_assert!(back <= d, "{text:?} allows more than {d:?}");
            // Less than a 100 000th of the value is lost, unless it
            // saturated at 99999999H.
            if text != "99999999H" {
                let lost = d - back;
                prop_assert!(lost.as_nanos() * 100_000 <= d.as_nanos(), "{d:?} -> {text:?}");
            }
            // What was sent is sent again unchanged.
            prop_assert_eq!(parse_grpc_timeout(format_grpc_timeout(back)).unwrap(), back);
        }
    }

    /// Any input parses or is an error; never a panic.
    #[test]
    fn grpc_timeout_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
        if let Ok(d) = parse_grpc_timeout(&bytes) {
            prop_assert!(d <= Duration::from_secs(99_999_999 * 3600));
        }
    }
}
