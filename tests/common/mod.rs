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
