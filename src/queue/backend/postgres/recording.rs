//! Internal: what a [`PgQueue`](super::PgQueue) records (feature
//! `metrics`): the [`TaskQueue`](crate::queue::TaskQueue)'s metrics
//! (`tower_patterns.queue.*`), as this process sees them. Without the
//! feature every method here is empty.

use tokio::time::Instant;

use super::shared::Shared;
use crate::trace::record;

/// How a task (or an attempt) ended, for the tasks counter's `outcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Its result is stored.
    Completed,
    /// The attempt failed; the task waits for its retry.
    Retried,
    /// It failed its last attempt, or its payload did not decode.
    Dead,
    /// Cancelled through this handle.
    Cancelled,
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl Shared {
    /// Counts `n` tasks that ended with `outcome`.
    pub(super) fn record_outcome(&self, outcome: Outcome, n: u64) {
        record!(self.metrics, |m| match outcome {
            Outcome::Completed => &m.completed,
            Outcome::Retried => &m.retried,
            Outcome::Dead => &m.dead,
            Outcome::Cancelled => &m.cancelled,
        }
        .increment(n));
    }

    /// Sets the running gauge to the tasks this process holds (running,
    /// or claimed ahead and waiting for a worker).
    pub(super) fn record_running(&self) {
        record!(self.metrics, |m| m.running.set(
            self.counters
                .running
                .load(std::sync::atomic::Ordering::Relaxed) as f64
        ));
    }

    /// A task starts: records the time since it was due (`waited_s`
    /// seconds at its claim, by the server's clock, plus the time since
    /// `claimed_at`). Returns the start, for [`record_ran`](Self::record_ran).
    pub(super) fn record_started(&self, waited_s: f64, claimed_at: Instant) -> Instant {
        let now = Instant::now();
        record!(self.metrics, |m| {
            let waited =
                std::time::Duration::try_from_secs_f64(waited_s.max(0.0)).unwrap_or_default();
            m.wait
                .record(waited + now.saturating_duration_since(claimed_at))
        });
        now
    }

    /// A task that started at `started` has run to its outcome.
    pub(super) fn record_ran(&self, started: Instant) {
        record!(self.metrics, |m| m
            .run
            .record(crate::metrics::Elapsed(Some(started))));
    }
}

/// Samples the depth gauge (pending tasks that are due, in the whole
/// table) every poll interval, until the workers stop. The count runs on
/// the claiming loop's connection (pipelined beside its claims), so it
/// takes no connection of its own; the first is a poll interval after the
/// start, when that connection is up.
#[cfg(feature = "metrics")]
pub(super) async fn sample_depth(
    shared: std::sync::Arc<Shared>,
    mut phase: tokio::sync::watch::Receiver<super::shared::Phase>,
) {
    use super::shared::Phase;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.cfg.poll_interval) => {}
            changed = phase.changed() => if changed.is_err() { return },
        }
        if *phase.borrow() != Phase::Running {
            return;
        }
        if let Ok(rows) = shared.work(0, &shared.cfg.sql.depth, &[]).await {
            if let Some(n) = rows.first().map(|r| r.get::<_, i64>(0)) {
                record!(shared.metrics, |m| m.depth.set(n as f64));
            }
        }
    }
}
