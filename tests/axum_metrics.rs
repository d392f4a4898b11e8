//! `examples/axum_server.rs`'s app serves its layers' metrics on `/metrics`
//! in Prometheus text: after a cache hit, an overload and an outage, a
//! scrape over HTTP finds the breaker's state, the limit's rejections and
//! the cache's hits, each labelled `name="users"`.
#![cfg(all(feature = "axum", feature = "metrics"))]

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::BoxError;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

#[path = "../examples/support/axum_app.rs"]
mod axum_app;

/// The value of the series `series` (name and labels, as Prometheus
/// writes them) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_shows_breaker_state_limit_rejections_and_cache_hits(
) -> Result<(), BoxError> {
    let prometheus = axum_app::install_prometheus();
    let upstream = Arc::new(
        Upstream::start(UpstreamConfig {
            latency: Duration::from_millis(5),
            ..UpstreamConfig::default()
        })
        .await?,
    );
    let (router, app) = axum_app::app(upstream.clone(), Duration::from_secs(30), prometheus);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let res = client.get(format!("http://{addr}{path}").parse()?).await?;
            let status = res.status();
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, BoxError>((status, body))
        }
    };

    // A miss, then a hit.
    assert_eq!(get("/users/1".into()).await?.0, StatusCode::OK);
    assert_eq!(get("/users/1".into()).await?.0, StatusCode::OK);

    // 64 at once against a limit of 16 and a slow upstream: some are shed.
    upstream.set_latency(Duration::from_millis(300));
    let answers = futures::future::join_all((100..164).map(|id| get(format!("/users/{id}")))).await;
    upstream.set_latency(Duration::from_millis(5));
    let mut shed = 0;
    for a in answers {
        if a?.0 == StatusCode::SERVICE_UNAVAILABLE {
            shed += 1;
        }
    }
    assert!(shed > 0, "the limit shed some of the 64");

    // An outage: five failures open the breaker (open for 30 s).
    upstream.set_down(true);
    for id in 200..206 {
        get(format!("/users/{id}")).await?;
    }
    assert_eq!(
        app.breaker.state(),
        tower_patterns::circuit_breaker::State::Open
    );

    let (status, body) = get("/metrics".into()).await?;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec())?;
    let breaker = |state: &str| {
        value(
            &text,
            &format!(r#"tower_patterns_circuit_breaker_state{{name="users",state="{state}"}}"#),
        )
    };
    assert_eq!(breaker("open"), Some(1.0), "{text}");
    assert_eq!(breaker("closed"), Some(0.0));
    assert_eq!(
        value(
            &text,
            r#"tower_patterns_circuit_breaker_transitions{name="users",to="open"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, r#"tower_patterns_limit_rejections{name="users"}"#),
        Some(f64::from(shed))
    );
    assert_eq!(
        value(
            &text,
            r#"tower_patterns_cache_requests{name="users",result="hit"}"#
        ),
        Some(1.0)
    );
    assert!(
        text.contains("# TYPE tower_patterns_circuit_breaker_state gauge"),
        "typed: {text}"
    );
    // The HTTP client underneath reports too, under OpenTelemetry's name.
    assert!(
        text.contains(r#"http_client_request_duration_seconds{name="users",status_class="2xx""#)
            || text.contains(r#"http_client_request_duration{name="users",status_class="2xx""#),
        "{text}"
    );
    server.abort();
    Ok(())
}
