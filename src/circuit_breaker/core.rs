//! The breaker itself: a lock-free state machine with no I/O, shared by the
//! layer, every service clone, their futures and the handles.
//!
//! Everything the service needs goes through [`Core`]: `admit` decides
//! whether a call may go through, `complete` / `abandon` record what
//! happened to it. Time is passed in (a clock closure), so the machine runs
//! and is tested without a runtime.
//!
//! The hot paths read one atomic [state word](super::word). Outcomes carry
//! the epoch of their admission in a [`Ticket`] and are dropped if the
//! breaker has moved on since. Counters that change on every call are
//! [striped](super::counters) across cache lines. Only transitions take a
//! lock.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::change::ChangeReason::{self, *};
use super::config::{Config, Policy};
use super::counters::Counters;
use super::notify::{Callback, Notifier};
use super::stats::CircuitBreakerStats;
use super::ticket::Ticket;
use super::window::{CountWindow, Counts, RateWindow, TimeWindow, Window};
use super::word::{
    epoch_of, field_a, field_b, state_of, with_a, with_b, word, CLOSED, HALF_OPEN, HELD, OPEN,
    STATE_MASK,
};
use crate::classify::Outcome;
use crate::rejection::{Open, State};
use crate::sync::{lock, Padded};
use crate::time;
use crate::trace::{record, trace_event};

/// The answer to [`Core::admit`].
#[derive(Debug)]
pub(crate) enum Admit {
    /// Go ahead.
    Go(Ticket),
    /// Fail fast.
    Reject(Open),
}

/// What the hot paths read, on a cache line of its own. Written only by
/// transitions (and the CAS loops on the word's counting fields).
struct Hot {
    /// The [state word](super::word).
    word: AtomicU64,
    /// When an open breaker lets a probe through, in nanoseconds since
    /// `Core::origin`.
    open_until: AtomicU64,
}

/// State that only changes in transitions, behind the lock.
struct Transitions {
    /// Openings since the breaker last closed (drives open-duration growth).
    openings: u32,
    opened_total: u64,
}

/// One circuit breaker, shared by every service clone of a layer.
pub(crate) struct Core {
    hot: Padded<Hot>,
    origin: Instant,
    cfg: Config,
    window: Option<RateWindow>,
    counters: Counters,
    next_stripe: AtomicUsize,
    transitions: Mutex<Transitions>,
    notify: Notifier,
    #[cfg(feature = "metrics")]
    metrics: crate::metrics::Instruments<crate::metrics::BreakerMetrics>,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("state", &state_of(self.word()))
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A power of two: twice the CPUs, between 2 and 64.
fn default_stripes() -> usize {
    let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
    (cpus * 2).next_power_of_two().clamp(2, 64)
}

impl Core {
    /// A closed breaker. `cfg` must be valid (the builder checks it).
    pub(crate) fn new(cfg: Config, on_change: Option<Callback>, origin: Instant) -> Self {
        let stripes = default_stripes();
        let window = match cfg.policy {
            Policy::Consecutive(_) => None,
            Policy::Rate {
                window: Window::Count(n),
                ..
            } => Some(RateWindow::Count(CountWindow::new(n))),
            Policy::Rate {
                window: Window::Time(d),
                ..
            } => Some(RateWindow::Time(TimeWindow::new(d, stripes, origin))),
        };
        Core {
            hot: Padded(Hot {
                word: AtomicU64::new(word(CLOSED, false, 0, 0, 0)),
                open_until: AtomicU64::new(0),
            }),
            origin,
            cfg,
            window,
            counters: Counters::new(stripes),
            next_stripe: AtomicUsize::new(0),
            transitions: Mutex::new(Transitions {
                openings: 0,
                opened_total: 0,
            }),
            notify: Notifier::new(on_change),
            #[cfg(feature = "metrics")]
            metrics: crate::metrics::Instruments::new("circuit_breaker".into()),
        }
    }

    /// The breaker with its metrics labelled `name` (and, with a recorder
    /// installed, the state shown from the start).
    #[cfg(feature = "metrics")]
    pub(crate) fn named(mut self, name: crate::trace::Name) -> Self {
        self.metrics = crate::metrics::Instruments::new(name);
        self.record(|_| {});
        self
    }

    /// Records into the breaker's metrics; handles new to the recorder get
    /// the state gauges set first.
    #[cfg(feature = "metrics")]
    #[inline]
    fn record(&self, f: impl FnOnce(&crate::metrics::BreakerMetrics)) {
        let state = || state_of(self.word());
        self.metrics.with_init(f, |m| m.set_state(state()));
    }

    /// Whether completed calls need their duration measured.
    pub(crate) fn times_calls(&self) -> bool {
        self.cfg.slow.is_some()
    }

    /// Whether recording an outcome needs the time (time window).
    pub(crate) fn needs_now(&self) -> bool {
        matches!(self.window, Some(RateWindow::Time(_)))
    }

    /// A stripe for a new service clone, round robin over the clones (not
    /// per thread: clones are often all made on one accepting thread and
    /// then move; the stripe travels with the clone and costs the hot path
    /// nothing).
    pub(crate) fn stripe(&self) -> usize {
        self.next_stripe.fetch_add(1, Ordering::Relaxed) & (self.counters.stripes() - 1)
    }

    #[inline]
    fn word(&self) -> u64 {
        self.hot.word.load(Ordering::Acquire)
    }

    #[inline]
    fn cas_word(&self, current: u64, new: u64) -> Result<u64, u64> {
        self.hot
            .word
            .compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire)
    }

    /// Nanoseconds from the breaker's creation to `t`.
    pub(crate) fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin)
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64
    }

    /// The current state. An open breaker whose open duration has passed
    /// turns half-open here (so the answer is never stale).
    pub(crate) fn state(&self, clock: &impl Fn() -> Instant) -> State {
        loop {
            let w = self.word();
            if w & STATE_MASK == OPEN && w & HELD == 0 {
                let now = clock();
                if self.nanos(now) >= self.hot.open_until.load(Ordering::Acquire) {
                    let _ = self.transition(w, State::HalfOpen, OpenDurationElapsed, &|| now);
                    continue;
                }
            }
            return state_of(w);
        }
    }

    // -----------------------------------------------------------------
    // Admission

    /// May a call go through? Reads the clock only when the breaker is open
    /// on a timer.
    #[inline]
    pub(crate) fn admit(&self, clock: &impl Fn() -> Instant) -> Admit {
        let w = self.word();
        if w & STATE_MASK == CLOSED {
            return Admit::Go(Ticket::new(epoch_of(w), false));
        }
        self.admit_slow(w, clock)
    }

    #[cold]
    fn admit_slow(&self, mut w: u64, clock: &impl Fn() -> Instant) -> Admit {
        loop {
            match w & STATE_MASK {
                CLOSED => return Admit::Go(Ticket::new(epoch_of(w), false)),
                OPEN => {
                    if w & HELD != 0 {
                        return Admit::Reject(Open::held());
                    }
                    let now = clock();
                    let until = self.hot.open_until.load(Ordering::Acquire);
                    let now_ns = self.nanos(now);
                    if now_ns < until {
                        return Admit::Reject(Open::until(Duration::from_nanos(until - now_ns)));
                    }
                    if let Err(cur) =
                        self.transition(w, State::HalfOpen, OpenDurationElapsed, &|| now)
                    {
                        w = cur;
                    } else {
                        w = self.word();
                    }
                }
                _ => {
                    let free = field_a(w);
                    if free == 0 {
                        return Admit::Reject(Open::probes_busy());
                    }
                    match self.cas_word(w, with_a(w, free - 1)) {
                        Ok(_) => return Admit::Go(Ticket::new(epoch_of(w), true)),
                        Err(cur) => w = cur,
                    }
                }
            }
        }
    }

    /// Re-checks a ticket just before the call: `true` if the breaker is
    /// still in the epoch the ticket was issued in.
    #[inline]
    pub(crate) fn still_valid(&self, t: Ticket) -> bool {
        epoch_of(self.word()) == t.epoch()
    }

    /// Counts a rejection.
    #[inline]
    pub(crate) fn rejected(&self, stripe: usize) {
        self.counters.rejected(stripe);
        #[cfg(feature = "metrics")]
        self.record(|m| m.rejected.increment(1));
    }

    /// A ticket that was never used (the service was dropped or its
    /// readiness failed after admission): gives a probe slot back.
    pub(crate) fn release(&self, t: Ticket) {
        if t.is_probe() {
            self.return_probe(t.epoch());
        }
    }

    /// A call whose future was dropped before completing: counted as
    /// cancelled, neither success nor failure; a probe slot goes back.
    pub(crate) fn abandon(&self, stripe: usize, t: Ticket) {
        self.counters.cancelled(stripe);
        #[cfg(feature = "metrics")]
        self.record(|m| m.cancelled.increment(1));
        self.release(t);
    }

    fn return_probe(&self, epoch: u32) {
        let mut w = self.word();
        while w & STATE_MASK == HALF_OPEN && epoch_of(w) == epoch {
            let free = (field_a(w) + 1).min(self.cfg.half_open_calls);
            match self.cas_word(w, with_a(w, free)) {
                Ok(_) => return,
                Err(cur) => w = cur,
            }
        }
    }

    // -----------------------------------------------------------------
    // Outcomes

    /// Records the outcome of a call admitted with `t`. `elapsed` is the
    /// call's duration when slow calls are configured.
    #[inline]
    pub(crate) fn complete(
        &self,
        stripe: usize,
        t: Ticket,
        outcome: Outcome,
        elapsed: Option<Duration>,
        clock: &impl Fn() -> Instant,
    ) {
        let slow = match (self.cfg.slow, elapsed) {
            (Some((threshold, _)), Some(e)) => e > threshold,
            _ => false,
        };
        self.counters.outcome(stripe, outcome, slow);
        #[cfg(feature = "metrics")]
        self.record(|m| {
            let counter = match outcome {
                Outcome::Success => &m.success,
                Outcome::Failure => &m.failure,
                Outcome::Ignored => &m.ignored,
            };
            counter.increment(1)
        });
        if t.is_probe() {
            return self.complete_probe(t, outcome, slow, clock);
        }
        if outcome == Outcome::Ignored {
            return;
        }
        let failure = outcome == Outcome::Failure;
        match self.cfg.policy {
            Policy::Consecutive(n) => self.complete_consecutive(t, failure, n, clock),
            Policy::Rate { .. } => self.complete_rate(stripe, t, failure, slow, clock),
        }
    }

    #[inline]
    fn complete_consecutive(&self, t: Ticket, failure: bool, n: u32, clock: &impl Fn() -> Instant) {
        let mut w = self.word();
        loop {
            if w & STATE_MASK != CLOSED || epoch_of(w) != t.epoch() {
                return;
            }
            let run = field_a(w);
            let next = if failure {
                if run + 1 >= n {
                    match self.transition(w, State::Open, ConsecutiveFailures, clock) {
                        Ok(()) => return,
                        Err(cur) => {
                            w = cur;
                            continue;
                        }
                    }
                }
                run + 1
            } else if run == 0 {
                // The healthy path: nothing to write.
                return;
            } else {
                0
            };
            match self.cas_word(w, with_a(w, next)) {
                Ok(_) => return,
                Err(cur) => w = cur,
            }
        }
    }

    fn complete_rate(
        &self,
        stripe: usize,
        t: Ticket,
        failure: bool,
        slow: bool,
        clock: &impl Fn() -> Instant,
    ) {
        let w = self.word();
        if w & STATE_MASK != CLOSED || epoch_of(w) != t.epoch() {
            return;
        }
        let counts = match &self.window {
            Some(RateWindow::Count(cw)) => cw.record(failure, slow),
            Some(RateWindow::Time(tw)) => tw.record(stripe, clock(), failure, slow),
            None => None,
        };
        if let Some(counts) = counts {
            if let Some(reason) = self.cfg.verdict_open(counts) {
                // If the word changed meanwhile (another thread opened the
                // breaker, or a reset), this call's epoch is over anyway.
                let _ = self.transition(w, State::Open, reason, clock);
            }
        }
    }

    fn complete_probe(
        &self,
        t: Ticket,
        outcome: Outcome,
        slow: bool,
        clock: &impl Fn() -> Instant,
    ) {
        if outcome == Outcome::Ignored {
            return self.return_probe(t.epoch());
        }
        let good = outcome == Outcome::Success && !slow;
        let mut w = self.word();
        while w & STATE_MASK == HALF_OPEN && epoch_of(w) == t.epoch() {
            if !good {
                match self.transition(w, State::Open, ProbeFailed, clock) {
                    Ok(()) => return,
                    Err(cur) => {
                        w = cur;
                        continue;
                    }
                }
            }
            let ok = field_b(w) + 1;
            if ok >= self.cfg.half_open_calls {
                match self.transition(w, State::Closed, ProbesSucceeded, clock) {
                    Ok(()) => return,
                    Err(cur) => {
                        w = cur;
                        continue;
                    }
                }
            }
            match self.cas_word(w, with_b(w, ok)) {
                Ok(_) => return,
                Err(cur) => w = cur,
            }
        }
    }

    // -----------------------------------------------------------------
    // Transitions

    /// Moves from exactly the word `expected` to `to`. Fails with the
    /// current word if it is no longer `expected`.
    fn transition(
        &self,
        expected: u64,
        to: State,
        reason: ChangeReason,
        clock: &impl Fn() -> Instant,
    ) -> Result<(), u64> {
        let mut tr = lock(&self.transitions);
        let cur = self.word();
        if cur != expected {
            return Err(cur);
        }
        self.set_state(&mut tr, cur, to, false, reason, clock);
        drop(tr);
        self.notify_changes(clock);
        Ok(())
    }

    /// Installs the word for `to` (lock held). `held` only with `Open`.
    fn set_state(
        &self,
        tr: &mut Transitions,
        cur: u64,
        to: State,
        held: bool,
        reason: ChangeReason,
        clock: &impl Fn() -> Instant,
    ) {
        let from = state_of(cur);
        let epoch = epoch_of(cur).wrapping_add(1);
        let new = match to {
            State::Closed => {
                tr.openings = 0;
                match &self.window {
                    Some(RateWindow::Count(cw)) => cw.reset(),
                    Some(RateWindow::Time(tw)) => tw.reset(),
                    None => {}
                }
                word(CLOSED, false, 0, 0, epoch)
            }
            State::Open => {
                if from != State::Open {
                    tr.opened_total += 1;
                }
                if !held {
                    // Saturating nanoseconds cannot overflow; the cap keeps
                    // `Open::retry_after` at the crate's "never".
                    let d = time::capped(self.cfg.open_duration(tr.openings));
                    tr.openings = tr.openings.saturating_add(1);
                    let until = self
                        .nanos(clock())
                        .saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64);
                    self.hot.open_until.store(until, Ordering::Release);
                }
                word(OPEN, held, 0, 0, epoch)
            }
            State::HalfOpen => word(HALF_OPEN, false, self.cfg.half_open_calls, 0, epoch),
        };
        self.hot.word.store(new, Ordering::Release);
        if from != to {
            trace_event!(INFO, from = %from, to = %to, "circuit breaker state changed");
            record!(self.metrics, |m| m.transition(to));
            self.notify.push(from, to, reason);
        }
    }

    /// Moves to `to` from whatever the state is, under the lock; `reset`
    /// also zeroes the counters. Then runs the callbacks.
    fn force(&self, to: State, held: bool, reason: ChangeReason, clock: &impl Fn() -> Instant) {
        let mut tr = lock(&self.transitions);
        let cur = self.word();
        self.set_state(&mut tr, cur, to, held, reason, clock);
        if reason == Reset {
            tr.opened_total = 0;
            self.counters.reset();
        }
        drop(tr);
        self.notify_changes(clock);
    }

    /// Runs the state-change callbacks. The clock is passed on as a trait
    /// object: `stats` may itself make a transition, and a generic clock
    /// would instantiate without end.
    fn notify_changes(&self, clock: &impl Fn() -> Instant) {
        let clock: &dyn Fn() -> Instant = clock;
        self.notify.run(&|| self.stats(&clock));
    }

    /// Opens the breaker and holds it open until `force_closed` or `reset`.
    pub(crate) fn force_open(&self, clock: &impl Fn() -> Instant) {
        self.force(State::Open, true, ForcedOpen, clock);
    }

    /// Closes the breaker with an empty window.
    pub(crate) fn force_closed(&self, clock: &impl Fn() -> Instant) {
        self.force(State::Closed, false, ForcedClosed, clock);
    }

    /// Back to the state right after `build()`: closed, empty window,
    /// counters at zero.
    pub(crate) fn reset(&self, clock: &impl Fn() -> Instant) {
        self.force(State::Closed, false, Reset, clock);
    }

    // -----------------------------------------------------------------
    // Snapshots

    /// A snapshot of state and counters.
    pub(crate) fn stats(&self, clock: &impl Fn() -> Instant) -> CircuitBreakerStats {
        let state = self.state(clock);
        let w = self.word();
        let opened = lock(&self.transitions).opened_total;
        let t = self.counters.totals();
        let window = match &self.window {
            Some(RateWindow::Count(cw)) => cw.counts(),
            Some(RateWindow::Time(tw)) => tw.counts(clock()),
            None => Counts::default(),
        };
        let consecutive =
            matches!(self.cfg.policy, Policy::Consecutive(_)) && w & STATE_MASK == CLOSED;
        CircuitBreakerStats {
            state,
            successes: t.successes,
            failures: t.failures,
            ignored: t.ignored,
            slow: t.slow,
            rejected: t.rejected,
            cancelled: t.cancelled,
            opened,
            window_calls: window.total,
            window_failures: window.failures,
            window_slow: window.slow,
            consecutive_failures: if consecutive {
                u64::from(field_a(w))
            } else {
                0
            },
        }
    }

    /// Probe slots taken right now (half-open only; 0 otherwise).
    pub(crate) fn probes_in_flight(&self) -> u32 {
        let w = self.word();
        if w & STATE_MASK == HALF_OPEN {
            self.cfg
                .half_open_calls
                .saturating_sub(field_a(w) + field_b(w))
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests;
