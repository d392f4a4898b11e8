//! The state-change callback: transitions queue their `(from, to, reason)`
//! events here and the callbacks run after every lock is released, in
//! order, one thread at a time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::change::{ChangeReason, StateChange};
use super::stats::CircuitBreakerStats;
use crate::rejection::State;
use crate::sync::lock;

/// The state-change callback.
pub(crate) type Callback = Box<dyn Fn(&StateChange) + Send + Sync>;

/// The callback, the events it has not seen yet and who is running it.
pub(crate) struct Notifier {
    on_change: Option<Callback>,
    /// Transitions whose callback has not run yet, oldest first.
    events: Mutex<VecDeque<(State, State, ChangeReason)>>,
    draining: AtomicBool,
}

impl Notifier {
    pub(crate) fn new(on_change: Option<Callback>) -> Self {
        Notifier {
            on_change,
            events: Mutex::new(VecDeque::new()),
            draining: AtomicBool::new(false),
        }
    }

    /// Queues a transition's event. Called under the breaker's transition
    /// lock, so events queue in the order the transitions happened.
    pub(crate) fn push(&self, from: State, to: State, reason: ChangeReason) {
        if self.on_change.is_some() {
            lock(&self.events).push_back((from, to, reason));
        }
    }

    /// Runs pending callbacks, in order, one thread at a time. Call with no
    /// lock held. A callback that causes a transition itself (through the
    /// handle) finds the drain busy; its event runs right after it returns.
    /// `stats` is read once per event, with no lock held.
    pub(crate) fn run(&self, stats: &dyn Fn() -> CircuitBreakerStats) {
        let Some(cb) = &self.on_change else { return };
        loop {
            if self
                .draining
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return;
            }
            struct Release<'a>(&'a AtomicBool);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let guard = Release(&self.draining);
            loop {
                let next = lock(&self.events).pop_front();
                match next {
                    Some((from, to, reason)) => cb(&StateChange {
                        from,
                        to,
                        reason,
                        stats: stats(),
                    }),
                    None => break,
                }
            }
            drop(guard);
            // An event pushed after our last pop, whose pusher saw the
            // drain busy, is ours to run.
            if lock(&self.events).is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn events_run_in_order_and_only_with_a_callback() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let n = {
            let seen = seen.clone();
            Notifier::new(Some(Box::new(move |c: &StateChange| {
                seen.lock().unwrap().push((c.from, c.to, c.reason))
            })))
        };
        n.push(State::Closed, State::Open, ChangeReason::FailureRate);
        n.push(
            State::Open,
            State::HalfOpen,
            ChangeReason::OpenDurationElapsed,
        );
        n.run(&CircuitBreakerStats::default);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (State::Closed, State::Open, ChangeReason::FailureRate),
                (
                    State::Open,
                    State::HalfOpen,
                    ChangeReason::OpenDurationElapsed
                )
            ]
        );
        let silent = Notifier::new(None);
        silent.push(State::Closed, State::Open, ChangeReason::ForcedOpen);
        assert!(lock(&silent.events).is_empty());
    }
}
