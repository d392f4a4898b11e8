//! The breaker's state machine, driven by hand with a fake clock.

use super::*;
use crate::circuit_breaker::StateChange;
use std::cell::Cell;
use std::sync::Arc;

struct Clock(Cell<Instant>);
impl Clock {
    fn new() -> Self {
        Clock(Cell::new(Instant::now()))
    }
    fn now(&self) -> Instant {
        self.0.get()
    }
    fn advance(&self, d: Duration) {
        self.0.set(self.0.get() + d);
    }
}

fn consecutive(n: u32, open: Duration, max: Duration, probes: u32) -> Config {
    Config {
        policy: Policy::Consecutive(n),
        slow: None,
        open_duration: open,
        open_duration_max: max,
        half_open_calls: probes,
    }
}

fn go(a: Admit) -> Ticket {
    match a {
        Admit::Go(t) => t,
        Admit::Reject(o) => panic!("rejected: {o}"),
    }
}

#[test]
fn consecutive_machine_without_runtime() {
    let clock = Clock::new();
    let c = &|| clock.now();
    let s = 60 * Duration::from_secs(1);
    let core = Core::new(consecutive(3, s, s, 1), None, clock.now());
    for _ in 0..2 {
        let t = go(core.admit(c));
        core.complete(0, t, Outcome::Failure, None, c);
    }
    // A success breaks the run.
    let t = go(core.admit(c));
    core.complete(0, t, Outcome::Success, None, c);
    assert_eq!(core.stats(c).consecutive_failures, 0);
    for _ in 0..3 {
        let t = go(core.admit(c));
        core.complete(0, t, Outcome::Failure, None, c);
    }
    assert_eq!(core.state(c), State::Open);
    match core.admit(c) {
        Admit::Reject(o) => assert_eq!(o.retry_after(), Some(s)),
        Admit::Go(_) => panic!("open breaker admitted a call"),
    }
    clock.advance(s);
    let probe = go(core.admit(c));
    assert!(probe.is_probe());
    assert!(matches!(core.admit(c), Admit::Reject(_)));
    core.complete(0, probe, Outcome::Success, None, c);
    assert_eq!(core.state(c), State::Closed);
    let st = core.stats(c);
    assert_eq!(
        (st.successes, st.failures, st.rejected, st.opened),
        (2, 5, 0, 1)
    );
}

#[test]
fn stale_outcomes_are_dropped() {
    let clock = Clock::new();
    let c = &|| clock.now();
    let d = Duration::from_secs(1);
    let core = Core::new(consecutive(1, d, d, 1), None, clock.now());
    let early = go(core.admit(c));
    let t = go(core.admit(c));
    core.complete(0, t, Outcome::Failure, None, c);
    assert_eq!(core.state(c), State::Open);
    core.force_closed(c);
    // `early` was admitted before the breaker opened: its failure
    // belongs to a closed period that is over.
    core.complete(0, early, Outcome::Failure, None, c);
    assert_eq!(core.state(c), State::Closed);
}

#[test]
fn reentrant_callback_runs_every_event_in_order() {
    let clock = Clock::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let core_slot: Arc<Mutex<Option<Arc<Core>>>> = Arc::new(Mutex::new(None));
    let cb: Callback = {
        let seen = seen.clone();
        let core_slot = core_slot.clone();
        Box::new(move |c: &StateChange| {
            seen.lock().unwrap().push((c.from, c.to));
            if c.to == State::Open {
                // Closing from inside the callback must not deadlock.
                let core = core_slot.lock().unwrap().clone().unwrap();
                core.force_closed(&Instant::now);
            }
        })
    };
    let d = Duration::from_secs(1);
    let core = Arc::new(Core::new(consecutive(1, d, d, 1), Some(cb), clock.now()));
    *core_slot.lock().unwrap() = Some(core.clone());
    core.force_open(&|| clock.now());
    assert_eq!(
        *seen.lock().unwrap(),
        [(State::Closed, State::Open), (State::Open, State::Closed)]
    );
    *core_slot.lock().unwrap() = None;
}
