//! The checked settings of a [`PgQueue`](super::PgQueue), shared by the
//! front, the workers and the listener.

use std::time::Duration;

use super::sql::Sql;
use crate::retry::Backoff;

/// The checked settings.
#[derive(Debug)]
pub(super) struct Config {
    pub(super) sql: Sql,
    pub(super) workers: usize,
    pub(super) prefetch: usize,
    pub(super) lease: Duration,
    pub(super) heartbeat: Duration,
    pub(super) max_attempts: u32,
    pub(super) backoff: Backoff,
    pub(super) poll_interval: Duration,
    pub(super) retain_results: Duration,
    pub(super) retain_dead: Duration,
    pub(super) cleanup_interval: Duration,
    pub(super) worker_id: String,
    pub(super) statement_timeout: Duration,
    /// The `name` label of the metrics (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(super) name: crate::trace::Name,
}

/// A duration in milliseconds for SQL, saturating at about 30 years.
pub(super) fn millis(d: Duration) -> f64 {
    d.min(crate::time::NEVER).as_secs_f64() * 1000.0
}
