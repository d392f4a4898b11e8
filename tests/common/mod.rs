//! What the integration test files share. Each test file is its own crate
//! and uses a part of this module, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::io::Write;

use tower_patterns::upstream::{Upstream, UpstreamConfig};

/// The URL of a real server a test needs, from the environment variable
/// `var` (`.ci/postgres.sh` and `.ci/redis.sh` print it).
///
/// Without it the test is skipped: the reason goes straight to stderr, past
/// the harness's capture, so a skip is never mistaken for a pass. Under CI
/// (`CI` set) a missing server is a failure, not a skip.
pub fn service_url(var: &str, how_to_start: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set under CI: {how_to_start}")
        }
        _ => {
            let _ = writeln!(std::io::stderr(), "skipped: {var} not set ({how_to_start})");
            None
        }
    }
}

/// The PostgreSQL URL for the `postgres` tests, or `None` (skipped) outside CI.
pub fn pg_url() -> Option<String> {
    service_url(
        "TOWER_PATTERNS_PG_URL",
        "start PostgreSQL with `eval \"$(bash .ci/postgres.sh | tail -1)\"`",
    )
}

/// Starts a loopback [`Upstream`] with `config`.
pub async fn upstream(config: UpstreamConfig) -> Upstream {
    Upstream::start(config)
        .await
        .expect("the test upstream binds a loopback port")
}

/// Starts a loopback [`Upstream`] that fails `fail_rate` of its requests
/// with 503 and is otherwise at its defaults.
pub async fn flaky_upstream(fail_rate: f64) -> Upstream {
    upstream(UpstreamConfig {
        fail_rate,
        ..UpstreamConfig::default()
    })
    .await
}

pub mod redis_server;

/// A recorder that keeps every value, for the `metrics` tests.
#[cfg(feature = "metrics")]
pub mod recorder;

/// A name unique to this process and moment (lowercase, for SQL tables), so
/// tests against a shared server run in parallel without colliding.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// Polls `check` every 10 ms until it returns `Some`, for at most `limit`;
/// panics with `what` if it never does. For conditions only visible by
/// looking (a row in a database, a child process's effect).
pub async fn wait_until<T, F, Fut>(what: &str, limit: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
