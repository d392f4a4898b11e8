//! The retry decision: whether a failed attempt is tried again, and after
//! how long. Called only on the slow path, once per failed attempt.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::shared::{Config, Core};
use crate::classify::Classify;
use crate::time;
use crate::trace::{record, trace_event};

/// Decides whether a failed attempt is retried; returns the delay and the
/// current time if so. Counts budget refusals.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_retry<C, Res, E>(
    config: &Config,
    classify: &C,
    core: Option<&Core>,
    attempts: u32,
    have_copy: bool,
    prev_delay: Duration,
    deadline: Option<Instant>,
    result: &Result<Res, E>,
) -> Option<(Duration, Instant)>
where
    C: Classify<Res, E>,
{
    if attempts >= config.max_attempts {
        if let Some(_core) = core {
            record!(_core.metrics, |m| m.exhausted.increment(1));
        }
        trace_event!(INFO, attempts, "retry: giving up, attempts exhausted");
        return None;
    }
    if !have_copy {
        if let Some(_core) = core {
            record!(_core.metrics, |m| m.not_replayable.increment(1));
        }
        trace_event!(
            INFO,
            attempts,
            "retry: giving up, request cannot be replayed"
        );
        return None;
    }
    let backoff = &config.backoff;
    let delay = match classify.retry_after(result) {
        Some(asked) => asked.min(config.max_retry_after),
        None => backoff.delay(attempts, prev_delay),
    };
    let now = Instant::now();
    if let Some(deadline) = deadline {
        // Neither a sleep that would end past the deadline nor an attempt
        // starting at it. A delay too long for the clock ends "never",
        // which is past any deadline.
        if time::deadline(now, delay) >= deadline {
            if let Some(core) = core {
                core.deadline_stops.fetch_add(1, Ordering::Relaxed);
                record!(core.metrics, |m| m.deadline.increment(1));
            }
            trace_event!(
                INFO,
                attempts,
                delay_ms = delay.as_millis() as u64,
                "retry: giving up, the next attempt would start past the deadline"
            );
            return None;
        }
    }
    if let Some(core) = core {
        let granted = match &core.budget {
            Some(budget) => budget.try_withdraw(now, || core.first_attempts()),
            None => true,
        };
        if !granted {
            core.refusals.fetch_add(1, Ordering::Relaxed);
            record!(core.metrics, |m| m.budget.increment(1));
            trace_event!(WARN, attempts, "retry: budget exhausted, not retrying");
            return None;
        }
    }
    trace_event!(
        INFO,
        attempts,
        delay_ms = delay.as_millis() as u64,
        "retry: attempt failed, backing off"
    );
    Some((delay, now))
}
