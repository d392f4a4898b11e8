//! tonic servers and clients behind our layers: `Open` reaches the
//! caller as `UNAVAILABLE`, `Overloaded` as `RESOURCE_EXHAUSTED`, on both
//! sides of a real connection on 127.0.0.1.
//!
//! Real sockets and real time: nothing here waits on a timer (breakers
//! stay open for longer than any test runs, backoffs are 1 ms), so
//! paused time is not needed.
#![cfg(feature = "tonic")]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::{Notify, Semaphore};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::filter::AsyncFilterLayer;
use tower::{BoxError, Service, ServiceBuilder};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, State};
use tower_patterns::classify::GrpcClassify;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::respond::{self, RETRY_PUSHBACK_MS};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};

/// Failures and stalls injected between our layers and tonic's routes.
struct Faults {
    /// Requests to fail with `UNAVAILABLE` (usize::MAX: all of them).
    fail: AtomicUsize,
    /// Make requests wait on `gate`.
    hold: AtomicBool,
    gate: Semaphore,
    entered: Notify,
    /// Requests that reached the routes (or the failure injection).
    seen: AtomicUsize,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            fail: AtomicUsize::new(0),
            hold: AtomicBool::new(false),
            gate: Semaphore::new(0),
            entered: Notify::new(),
            seen: AtomicUsize::new(0),
        }
    }
}

#[derive(Clone)]
struct Faulty<S> {
    inner: S,
    faults: Arc<Faults>,
}

impl<S, Req> Service<Req> for Faulty<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let faults = self.faults.clone();
        faults.seen.fetch_add(1, Ordering::SeqCst);
        let fail = faults
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                0 => None,
                usize::MAX => Some(usize::MAX),
                n => Some(n - 1),
            })
            .is_ok();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if fail {
                return Err(tonic::Status::unavailable("injected failure").into());
            }
            if faults.hold.load(Ordering::SeqCst) {
                faults.entered.notify_one();
                let _pass = faults.gate.acquire().await.expect("gate");
            }
            inner.call(req).await.map_err(Into::into)
        })
    }
}

struct TestServer {
    addr: SocketAddr,
    faults: Arc<Faults>,
    breaker: CircuitBreakerLayer,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// tonic-health behind: into_status ∘ limit(1, reject) ∘ breaker(opens
/// after `failures` in a row, for 60 s) ∘ faults.
async fn start_server(failures: u32) -> TestServer {
    let faults = Arc::new(Faults::default());
    let breaker = CircuitBreakerLayer::consecutive(failures, Duration::from_secs(60));
    let layer = ServiceBuilder::new()
        .map_err(respond::into_status)
        .layer(ConcurrencyLimitLayer::new(1).reject_when_full())
        .layer(breaker.clone())
        .layer(tower::layer::layer_fn({
            let faults = faults.clone();
            move |inner| Faulty {
                inner,
                faults: faults.clone(),
            }
        }))
        .into_inner();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    TestServer {
        addr,
        faults,
        breaker,
        task,
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

fn pushback_ms(status: &tonic::Status) -> Option<u64> {
    status
        .metadata()
        .get(RETRY_PUSHBACK_MS)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test]
async fn server_maps_overloaded_to_resource_exhausted() {
    let server = start_server(2).await;
    let mut client = HealthClient::new(channel(server.addr).await);

    let ok = client.check(check()).await.unwrap().into_inner();
    assert_eq!(ok.status(), ServingStatus::Serving);

    // One call holds the only permit; the next is turned away.
    server.faults.hold.store(true, Ordering::SeqCst);
    let held = tokio::spawn({
        let mut client = client.clone();
        async move { client.check(check()).await }
    });
    server.faults.entered.notified().await;
    let err = client.check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("at capacity"), "{}", err.message());
    assert_eq!(pushback_ms(&err), Some(1000));

    server.faults.hold.store(false, Ordering::SeqCst);
    server.faults.gate.add_permits(1);
    assert!(held.await.unwrap().is_ok());
    // The rejection never reached the routes, and did not count against the breaker.
    assert_eq!(server.faults.seen.load(Ordering::SeqCst), 2);
    assert_eq!(server.breaker.handle().stats().failures, 0);
}

#[tokio::test]
async fn server_maps_open_to_unavailable() {
    let server = start_server(2).await;
    let mut client = HealthClient::new(channel(server.addr).await);

    // The backend's own UNAVAILABLE passes through untouched...
    server.faults.fail.store(usize::MAX, Ordering::SeqCst);
    for _ in 0..2 {
        let err = client.check(check()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(err.message(), "injected failure");
    }
    assert_eq!(server.breaker.handle().state(), State::Open);

    // ...and the open breaker answers for it without calling it.
    let err = client.check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("dependency is failing"),
        "{}",
        err.message()
    );
    let ms = pushback_ms(&err).expect("pushback metadata");
    assert!((50_000..=60_000).contains(&ms), "{ms}");
    assert_eq!(server.faults.seen.load(Ordering::SeqCst), 2);
}

/// A tonic client whose channel wears retry + breaker (both with
/// [`GrpcClassify`]) and `map_err(into_status)`.
#[tokio::test]
async fn client_stack_retries_breaks_and_maps_open_to_unavailable() {
    // The server's own breaker must not interfere here: it needs a long run.
    let server = start_server(100).await;
    let client_breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(30))
        .classify(GrpcClassify)
        .build()
        .unwrap();
    let client_state = client_breaker.handle();
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(1)).jitter(Jitter::None))
        .classify(GrpcClassify)
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .map_err(respond::into_status)
        // Retry needs requests it can send again: buffer the (small,
        // unary) request body once.
        .layer(AsyncFilterLayer::new(
            |req: http::Request<tonic::body::Body>| async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await?.to_bytes();
                Ok::<_, tonic::Status>(http::Request::from_parts(parts, Full::new(bytes)))
            },
        ))
        .layer(retry.clone())
        .layer(client_breaker)
        .map_request(|req: http::Request<Full<Bytes>>| req.map(tonic::body::Body::new))
        .service(channel(server.addr).await);
    let mut client = HealthClient::new(stack);

    // One failure on the server: retried, the caller sees success.
    server.faults.fail.store(1, Ordering::SeqCst);
    let ok = client.check(check()).await.unwrap().into_inner();
    assert_eq!(ok.status(), ServingStatus::Serving);
    assert_eq!(server.faults.seen.load(Ordering::SeqCst), 2);
    assert_eq!(retry.stats().retries, 1);

    // Three more failures in a row open the client's breaker.
    server.faults.fail.store(3, Ordering::SeqCst);
    let err = client.check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "injected failure");
    assert_eq!(server.faults.seen.load(Ordering::SeqCst), 5);
    assert_eq!(client_state.state(), State::Open);

    // Open: failed fast on the client, not retried, and UNAVAILABLE
    // rather than the UNKNOWN tonic gives errors it does not know.
    let err = client.check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("dependency is failing"));
    assert!(pushback_ms(&err).is_some());
    assert_eq!(server.faults.seen.load(Ordering::SeqCst), 5);
    assert_eq!(retry.stats().retries, 3);
}

/// Without `map_err(into_status)` tonic would not know our error; the
/// mapping is what makes the difference.
#[tokio::test]
async fn client_without_mapping_sees_unknown() {
    let server = start_server(2).await;
    let breaker = CircuitBreakerLayer::consecutive(1, Duration::from_secs(30));
    breaker.handle().force_open();
    let bare = ServiceBuilder::new()
        .layer(breaker.clone())
        .service(channel(server.addr).await);
    let err = HealthClient::new(bare).check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);

    let mapped = ServiceBuilder::new()
        .map_err(respond::into_status)
        .layer(breaker)
        .service(channel(server.addr).await);
    let err = HealthClient::new(mapped).check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // Held open by hand: no time to announce.
    assert_eq!(pushback_ms(&err), None);
    assert_eq!(server.faults.seen.load(Ordering::SeqCst), 0);
}
