//! A tonic server (tonic-health's generated `Health` service, no protoc
//! needed) behind our concurrency limit and circuit breaker, and a tonic
//! client whose channel wears retry + breaker. Errors of our layers reach
//! gRPC callers as proper statuses:
//!
//! - `limit::Overloaded` → `RESOURCE_EXHAUSTED` (+ `grpc-retry-pushback-ms`)
//! - `circuit_breaker::Open` → `UNAVAILABLE` (+ `grpc-retry-pushback-ms`)
//!
//! ```text
//! server: Server::builder().layer(map_err(respond::into_status) ∘ limit(4, reject) ∘ breaker(3) ∘ chaos)
//! client: HealthClient::new(map_err(respond::into_status) ∘ buffer body ∘ retry(3, GrpcClassify)
//!                           ∘ breaker(3, GrpcClassify) ∘ Channel)
//! ```
//!
//! `map_err(respond::into_status)` matters on both sides: tonic's server
//! answers with a gRPC status only for errors that are a `tonic::Status`
//! (any other error resets the stream), and tonic's client reports an
//! error it does not know as `UNKNOWN`.
//!
//! ```sh
//! cargo run --example tonic_health --features tonic,metrics            # runs the scenario, then serves on :50051 until Ctrl-C
//! cargo run --example tonic_health --features tonic,metrics -- --smoke # runs the scenario and exits
//! cargo run --example tonic_health --features tonic,metrics -- --help
//! grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check
//! curl localhost:9464/metrics    # the layers' metrics (Prometheus text) on a side port
//! ```
//!
//! The server's layers are named `health-server`, the client's
//! `health-client`: that is the `name` label of their metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tonic::transport::{Endpoint, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::filter::AsyncFilterLayer;
use tower::{BoxError, Service, ServiceBuilder};
use tower_patterns::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use tower_patterns::classify::GrpcClassify;
use tower_patterns::limit::ConcurrencyLimitLayer;
use tower_patterns::respond::{self, RETRY_PUSHBACK_MS};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};

/// Failure injection between our layers and the health service.
#[derive(Default)]
struct Chaos {
    failing: AtomicBool,
    latency_ms: AtomicU64,
}

#[derive(Clone)]
struct Chaotic<S> {
    inner: S,
    chaos: Arc<Chaos>,
}

impl<S, Req> Service<Req> for Chaotic<S>
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
        let chaos = self.chaos.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let ms = chaos.latency_ms.load(Ordering::Relaxed);
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if chaos.failing.load(Ordering::Relaxed) {
                return Err(tonic::Status::unavailable("backend store is down").into());
            }
            inner.call(req).await.map_err(Into::into)
        })
    }
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

fn show(
    result: &Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status>,
) -> String {
    match result {
        Ok(res) => format!("OK {:?}", res.get_ref().status()),
        Err(status) => {
            let pushback = status
                .metadata()
                .get(RETRY_PUSHBACK_MS)
                .and_then(|v| v.to_str().ok())
                .map(|ms| format!(", pushback {ms} ms"))
                .unwrap_or_default();
            format!("{:?}: {}{pushback}", status.code(), status.message())
        }
    }
}

/// A tonic Health server behind tower-patterns' concurrency limit and
/// circuit breaker, and a client whose channel wears retry and a breaker:
/// runs a scenario through both, then serves on 127.0.0.1:50051.
#[derive(Parser)]
struct Args {
    /// Run the scenario with short timings and exit instead of serving.
    #[arg(long)]
    smoke: bool,
    /// Port of the side HTTP server for `/metrics`, on 127.0.0.1 (with
    /// --smoke a free one is picked).
    #[arg(long, default_value_t = 9464)]
    metrics_port: u16,
}

/// Serves `GET /metrics` (Prometheus text) on 127.0.0.1:`port`, apart from
/// the gRPC port; returns the address.
async fn serve_metrics(port: u16, prometheus: PrometheusHandle) -> Result<SocketAddr, BoxError> {
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let prometheus = prometheus.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    prometheus.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// Scrapes `/metrics` at `addr` and checks the scenario's marks are there.
async fn check_metrics(addr: SocketAddr) -> Result<(), BoxError> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Empty<Bytes>>();
    let res = client
        .get(format!("http://{addr}/metrics").parse()?)
        .await?;
    let text = String::from_utf8(res.into_body().collect().await?.to_bytes().to_vec())?;
    println!(
        "
6. /metrics on {addr}"
    );
    for series in [
        r#"tower_patterns_circuit_breaker_transitions{name="health-server",to="open"} 1"#,
        r#"tower_patterns_circuit_breaker_state{name="health-server",state="closed"} 1"#,
        r#"tower_patterns_limit_rejections{name="health-server"}"#,
        r#"tower_patterns_retry_attempts{name="health-client",attempt="retry"}"#,
    ] {
        expect(
            text.lines().any(|l| l.starts_with(series)),
            &format!("/metrics has {series}"),
        )?;
        println!("   {series}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let smoke = args.smoke;
    let open_for = Duration::from_millis(if smoke { 300 } else { 3_000 });
    // First, so that every layer records into it.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let metrics_addr = serve_metrics(if smoke { 0 } else { args.metrics_port }, prometheus).await?;

    // --- server ---
    let chaos = Arc::new(Chaos::default());
    let server_breaker = CircuitBreakerLayer::builder()
        .name("health-server")
        .consecutive_failures(3)
        .open_duration(open_for)
        .build()?;
    let server_state = server_breaker.handle();
    let layer = ServiceBuilder::new()
        .map_err(respond::into_status)
        .layer(
            ConcurrencyLimitLayer::builder()
                .name("health-server")
                .limit(4)
                .reject_when_full()
                .build()?,
        )
        .layer(server_breaker)
        .layer(tower::layer::layer_fn({
            let chaos = chaos.clone();
            move |inner| Chaotic {
                inner,
                chaos: chaos.clone(),
            }
        }))
        .into_inner();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let port = if smoke { 0 } else { 50051 };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = tokio::signal::ctrl_c().await;
            }),
    );
    println!("gRPC health server on {addr}, metrics on http://{metrics_addr}/metrics");

    let mut result = scenario(addr, &chaos, &server_state, open_for).await;
    if result.is_ok() {
        result = check_metrics(metrics_addr).await;
    }
    if smoke || result.is_err() {
        server.abort();
        return result;
    }
    println!("serving on {addr} until Ctrl-C");
    server.await??;
    Ok(())
}

fn expect(ok: bool, what: &str) -> Result<(), BoxError> {
    if ok {
        Ok(())
    } else {
        Err(format!("unexpected: {what}").into())
    }
}

async fn scenario(
    addr: SocketAddr,
    chaos: &Chaos,
    server_state: &CircuitBreakerHandle,
    open_for: Duration,
) -> Result<(), BoxError> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut plain = HealthClient::new(channel.clone());

    println!("\n1. healthy");
    let r = plain.check(check()).await;
    println!("   plain client: {}", show(&r));
    expect(r.is_ok(), "a healthy check succeeds")?;

    println!("\n2. slow backend, 8 concurrent calls, server limit 4 (reject when full)");
    chaos.latency_ms.store(200, Ordering::Relaxed);
    let calls = (0..8).map(|_| {
        let mut c = plain.clone();
        async move { c.check(check()).await }
    });
    let results = futures::future::join_all(calls).await;
    chaos.latency_ms.store(0, Ordering::Relaxed);
    let mut exhausted = 0;
    for r in &results {
        println!("   {}", show(r));
        match r {
            Ok(_) => {}
            Err(s) if s.code() == Code::ResourceExhausted => exhausted += 1,
            Err(s) => return Err(format!("unexpected status {s:?}").into()),
        }
    }
    expect(exhausted == 4, "4 of 8 calls are RESOURCE_EXHAUSTED")?;

    println!("\n3. backend down: the server's breaker opens after 3 failures");
    chaos.failing.store(true, Ordering::Relaxed);
    for _ in 0..4 {
        let r = plain.check(check()).await;
        println!(
            "   plain client: {}   [server breaker {:?}]",
            show(&r),
            server_state.state()
        );
    }
    let r = plain.check(check()).await;
    expect(
        matches!(&r, Err(s) if s.code() == Code::Unavailable && s.metadata().get(RETRY_PUSHBACK_MS).is_some()),
        "an open server breaker answers UNAVAILABLE with pushback",
    )?;

    // --- client with retry + breaker on its channel ---
    let client_breaker = CircuitBreakerLayer::builder()
        .name("health-client")
        .consecutive_failures(3)
        .open_duration(open_for)
        .classify(GrpcClassify)
        .build()?;
    let client_state = client_breaker.handle();
    let retry = RetryLayer::builder()
        .name("health-client")
        .max_attempts(3)
        .backoff(
            Backoff::exponential(Duration::from_millis(10))
                .max_delay(Duration::from_millis(50))
                .jitter(Jitter::None),
        )
        .classify(GrpcClassify)
        .build()?;
    let stack = ServiceBuilder::new()
        .map_err(respond::into_status)
        // Retry needs replayable requests: buffer the small unary body once.
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
        .service(channel);
    let mut resilient = HealthClient::new(stack);

    println!("\n4. resilient client (retry 3 + breaker 3) while the server is failing");
    let r = resilient.check(check()).await;
    println!(
        "   call 1: {}   [{} retries, client breaker {:?}]",
        show(&r),
        retry.stats().retries,
        client_state.state()
    );
    let r = resilient.check(check()).await;
    println!(
        "   call 2: {}   [client breaker {:?}: failed fast, not retried]",
        show(&r),
        client_state.state()
    );
    expect(
        matches!(&r, Err(s) if s.code() == Code::Unavailable),
        "an open client breaker is UNAVAILABLE (not UNKNOWN)",
    )?;

    println!("\n5. backend back; after the open period both breakers let a probe through");
    chaos.failing.store(false, Ordering::Relaxed);
    tokio::time::sleep(open_for + Duration::from_millis(50)).await;
    let r = resilient.check(check()).await;
    println!(
        "   resilient client: {}   [client breaker {:?}, server breaker {:?}]",
        show(&r),
        client_state.state(),
        server_state.state()
    );
    expect(r.is_ok(), "the service recovers")?;
    println!("\nscenario passed");
    Ok(())
}
