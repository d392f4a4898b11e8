//! The breaker itself: a lock-free state machine with no I/O.
//!
//! Everything the service layer needs goes through [`Core`]: `admit` decides
//! whether a call may go through, `complete` / `abandon` record what
//! happened to it. Time is passed in (a clock closure), so the machine runs
//! and is tested without a runtime.
//!
//! # The state word
//!
//! One `AtomicU64` holds everything the hot paths read:
//!
//! ```text
//! bits  0..2   state: 0 Closed, 1 Open, 2 HalfOpen
//! bit   2      held open by force_open (no timer)
//! bits  3..23  Closed: consecutive failures  | HalfOpen: free probe slots
//! bits 23..43  HalfOpen: successful probes
//! bits 43..64  epoch, bumped by every transition
//! ```
//!
//! In a healthy closed breaker the word never changes, so every thread
//! reads it from its own cache. Outcomes carry the epoch of their admission
//! and are dropped if the breaker has moved on since. Counters that change
//! on every call (statistics) are striped across cache lines. Only
//! transitions take a lock.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::window::{CountWindow, Counts, Padded, RateWindow, TimeWindow, Window};
use crate::classify::Outcome;
use crate::rejection::Open;
pub use crate::rejection::State;
use crate::trace::trace_event;

/// A snapshot of a breaker's state and counters, from
/// [`Handle::stats`](super::Handle::stats).
///
/// The lifetime counters (`successes` ... `opened`) only grow, except
/// through [`Handle::reset`](super::Handle::reset).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The state at the time of the snapshot.
    pub state: State,
    /// Calls classified as [`Outcome::Success`].
    pub successes: u64,
    /// Calls classified as [`Outcome::Failure`].
    pub failures: u64,
    /// Calls classified as [`Outcome::Ignored`].
    pub ignored: u64,
    /// Calls (successful or not) slower than the `slow_call` threshold.
    pub slow: u64,
    /// Calls failed fast with [`Open`] without reaching the inner service.
    pub rejected: u64,
    /// Calls whose response future was dropped before it completed.
    pub cancelled: u64,
    /// How many times the breaker opened (by itself or by `force_open`).
    pub opened: u64,
    /// Calls in the current sliding window (rate model; 0 otherwise).
    pub window_calls: u64,
    /// Failures in the current sliding window (rate model; 0 otherwise).
    pub window_failures: u64,
    /// Slow calls in the current sliding window (rate model; 0 otherwise).
    pub window_slow: u64,
    /// The current run of consecutive failures (consecutive model; 0
    /// otherwise, and 0 while not closed).
    pub consecutive_failures: u64,
}

impl Stats {
    /// Failures over calls in the current window, or `None` for an empty
    /// window or the consecutive model.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.window_calls > 0).then(|| self.window_failures as f64 / self.window_calls as f64)
    }
}

/// What opens the breaker.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Policy {
    /// `n` failures in a row.
    Consecutive(u32),
    /// A failure (or slow-call) rate over a sliding window.
    Rate {
        threshold: f64,
        window: Window,
        minimum_calls: u64,
    },
}

/// Validated configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Config {
    pub(crate) policy: Policy,
    /// (threshold, rate): calls slower than threshold are slow; open when
    /// the slow rate reaches `rate`.
    pub(crate) slow: Option<(Duration, f64)>,
    pub(crate) open_duration: Duration,
    pub(crate) open_duration_max: Duration,
    pub(crate) half_open_calls: u32,
}

/// Largest value of the 20-bit fields (consecutive failures, probe slots).
pub(crate) const FIELD_MAX: u32 = (1 << 20) - 1;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
const STATE_MASK: u64 = 0b11;
const HELD: u64 = 0b100;
const A_SHIFT: u32 = 3;
const B_SHIFT: u32 = 23;
const FIELD_MASK: u64 = FIELD_MAX as u64;
const EPOCH_SHIFT: u32 = 43;

#[inline]
fn state_of(w: u64) -> State {
    match w & STATE_MASK {
        CLOSED => State::Closed,
        OPEN => State::Open,
        _ => State::HalfOpen,
    }
}
#[inline]
fn field_a(w: u64) -> u32 {
    ((w >> A_SHIFT) & FIELD_MASK) as u32
}
#[inline]
fn field_b(w: u64) -> u32 {
    ((w >> B_SHIFT) & FIELD_MASK) as u32
}
#[inline]
fn epoch_of(w: u64) -> u32 {
    (w >> EPOCH_SHIFT) as u32
}
#[inline]
fn with_a(w: u64, a: u32) -> u64 {
    (w & !(FIELD_MASK << A_SHIFT)) | (u64::from(a) << A_SHIFT)
}
#[inline]
fn with_b(w: u64, b: u32) -> u64 {
    (w & !(FIELD_MASK << B_SHIFT)) | (u64::from(b) << B_SHIFT)
}
fn word(state: u64, held: bool, a: u32, b: u32, epoch: u32) -> u64 {
    let epoch = u64::from(epoch) & ((1 << (64 - EPOCH_SHIFT)) - 1);
    state
        | if held { HELD } else { 0 }
        | (u64::from(a) << A_SHIFT)
        | (u64::from(b) << B_SHIFT)
        | (epoch << EPOCH_SHIFT)
}

/// Proof of admission: the epoch the call was admitted in, and whether it
/// is a half-open probe (holding one of the probe slots).
///
/// One `u64` (epoch in the low 32 bits, then the probe bit), so that
/// moving it around the hot path is a single 8-byte copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

const TICKET_PROBE: u64 = 1 << 32;

impl Ticket {
    #[inline]
    fn new(epoch: u32, probe: bool) -> Self {
        Ticket(u64::from(epoch) | if probe { TICKET_PROBE } else { 0 })
    }
    #[inline]
    fn epoch(self) -> u32 {
        self.0 as u32
    }
    #[inline]
    pub(crate) fn is_probe(self) -> bool {
        self.0 & TICKET_PROBE != 0
    }
    /// The ticket as bits (below bit 33), for callers that pack it.
    #[inline]
    pub(crate) fn bits(self) -> u64 {
        self.0
    }
    /// A ticket from [`bits`](Self::bits) (higher bits ignored).
    #[inline]
    pub(crate) fn from_bits(bits: u64) -> Self {
        Ticket(bits & (TICKET_PROBE | u64::from(u32::MAX)))
    }
}

/// The answer to [`Core::admit`].
#[derive(Debug)]
pub(crate) enum Admit {
    /// Go ahead.
    Go(Ticket),
    /// Fail fast.
    Reject(Open),
}

/// Per-stripe lifetime counters, one cache line each.
#[derive(Default)]
struct Counters {
    successes: AtomicU64,
    failures: AtomicU64,
    ignored: AtomicU64,
    slow: AtomicU64,
    rejected: AtomicU64,
    cancelled: AtomicU64,
}

/// State that only changes in transitions, behind the lock.
struct Transitions {
    /// Openings since the breaker last closed (drives open-duration growth).
    openings: u32,
    opened_total: u64,
    /// Transitions whose callback has not run yet, oldest first.
    events: VecDeque<(State, State)>,
}

/// The state-change callback.
pub(crate) type Callback = Box<dyn Fn(State, State) + Send + Sync>;

/// One circuit breaker, shared by every service clone of a layer.
pub(crate) struct Core {
    /// The state word and, next to it, when an open breaker lets a probe
    /// through (nanoseconds since `origin`). Written only by transitions.
    hot: Padded<(AtomicU64, AtomicU64)>,
    origin: Instant,
    cfg: Config,
    window: Option<RateWindow>,
    counters: Box<[Padded<Counters>]>,
    next_stripe: AtomicUsize,
    transitions: Mutex<Transitions>,
    draining: AtomicBool,
    on_change: Option<Callback>,
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
            hot: Padded((
                AtomicU64::new(word(CLOSED, false, 0, 0, 0)),
                AtomicU64::new(0),
            )),
            origin,
            cfg,
            window,
            counters: (0..stripes).map(|_| Padded(Counters::default())).collect(),
            next_stripe: AtomicUsize::new(0),
            transitions: Mutex::new(Transitions {
                openings: 0,
                opened_total: 0,
                events: VecDeque::new(),
            }),
            draining: AtomicBool::new(false),
            on_change,
        }
    }

    /// Whether completed calls need their duration measured.
    pub(crate) fn times_calls(&self) -> bool {
        self.cfg.slow.is_some()
    }

    /// Whether recording an outcome needs the time (time window).
    pub(crate) fn needs_now(&self) -> bool {
        matches!(self.window, Some(RateWindow::Time(_)))
    }

    /// A stripe for a new service clone, round robin.
    pub(crate) fn stripe(&self) -> usize {
        self.next_stripe.fetch_add(1, Ordering::Relaxed) & (self.counters.len() - 1)
    }

    #[inline]
    fn word(&self) -> u64 {
        self.hot.0 .0.load(Ordering::Acquire)
    }

    #[inline]
    fn counters(&self, stripe: usize) -> &Counters {
        // The stripe count is a power of two: mask, don't divide.
        &self.counters[stripe & (self.counters.len() - 1)]
    }

    fn lock(&self) -> MutexGuard<'_, Transitions> {
        // A panicking callback never runs under this lock, and the guarded
        // data stays consistent at every await-free step; recover from
        // poisoning rather than propagate it.
        self.transitions.lock().unwrap_or_else(|e| e.into_inner())
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
                if self.nanos(now) >= self.hot.0 .1.load(Ordering::Acquire) {
                    let _ = self.transition(w, State::HalfOpen, &|| now);
                    continue;
                }
            }
            return state_of(w);
        }
    }

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
                    let until = self.hot.0 .1.load(Ordering::Acquire);
                    let now_ns = self.nanos(now);
                    if now_ns < until {
                        return Admit::Reject(Open::until(Duration::from_nanos(until - now_ns)));
                    }
                    if let Err(cur) = self.transition(w, State::HalfOpen, &|| now) {
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
                    match self.hot.0 .0.compare_exchange_weak(
                        w,
                        with_a(w, free - 1),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
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
        self.counters(stripe)
            .rejected
            .fetch_add(1, Ordering::Relaxed);
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
        self.counters(stripe)
            .cancelled
            .fetch_add(1, Ordering::Relaxed);
        self.release(t);
    }

    fn return_probe(&self, epoch: u32) {
        let mut w = self.word();
        while w & STATE_MASK == HALF_OPEN && epoch_of(w) == epoch {
            let free = (field_a(w) + 1).min(self.cfg.half_open_calls);
            match self.hot.0 .0.compare_exchange_weak(
                w,
                with_a(w, free),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(cur) => w = cur,
            }
        }
    }

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
        let c = self.counters(stripe);
        match outcome {
            Outcome::Success => c.successes.fetch_add(1, Ordering::Relaxed),
            Outcome::Failure => c.failures.fetch_add(1, Ordering::Relaxed),
            Outcome::Ignored => c.ignored.fetch_add(1, Ordering::Relaxed),
        };
        if slow {
            c.slow.fetch_add(1, Ordering::Relaxed);
        }
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
                    match self.transition(w, State::Open, clock) {
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
            match self.hot.0 .0.compare_exchange_weak(
                w,
                with_a(w, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
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
            if self.verdict_open(counts) {
                // If the word changed meanwhile (another thread opened the
                // breaker, or a reset), this call's epoch is over anyway.
                let _ = self.transition(w, State::Open, clock);
            }
        }
    }

    /// The rate model's rule: enough calls, and a failure or slow-call rate
    /// at or above its threshold.
    pub(crate) fn verdict_open(&self, c: Counts) -> bool {
        let Policy::Rate {
            threshold,
            minimum_calls,
            ..
        } = self.cfg.policy
        else {
            return false;
        };
        if c.total == 0 || c.total < minimum_calls {
            return false;
        }
        let total = c.total as f64;
        if c.failures as f64 / total >= threshold {
            return true;
        }
        matches!(self.cfg.slow, Some((_, rate)) if c.slow as f64 / total >= rate)
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
                match self.transition(w, State::Open, clock) {
                    Ok(()) => return,
                    Err(cur) => {
                        w = cur;
                        continue;
                    }
                }
            }
            let ok = field_b(w) + 1;
            if ok >= self.cfg.half_open_calls {
                match self.transition(w, State::Closed, clock) {
                    Ok(()) => return,
                    Err(cur) => {
                        w = cur;
                        continue;
                    }
                }
            }
            match self.hot.0 .0.compare_exchange_weak(
                w,
                with_b(w, ok),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(cur) => w = cur,
            }
        }
    }

    /// Moves from exactly the word `expected` to `to`. Fails with the
    /// current word if it is no longer `expected`.
    fn transition(
        &self,
        expected: u64,
        to: State,
        clock: &impl Fn() -> Instant,
    ) -> Result<(), u64> {
        let mut tr = self.lock();
        let cur = self.word();
        if cur != expected {
            return Err(cur);
        }
        self.set_state(&mut tr, cur, to, false, clock);
        drop(tr);
        self.run_callbacks();
        Ok(())
    }

    /// Installs the word for `to` (lock held). `held` only with `Open`.
    fn set_state(
        &self,
        tr: &mut Transitions,
        cur: u64,
        to: State,
        held: bool,
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
                    let d = self.open_duration(tr.openings);
                    tr.openings = tr.openings.saturating_add(1);
                    let until = self
                        .nanos(clock())
                        .saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64);
                    self.hot.0 .1.store(until, Ordering::Release);
                }
                word(OPEN, held, 0, 0, epoch)
            }
            State::HalfOpen => word(HALF_OPEN, false, self.cfg.half_open_calls, 0, epoch),
        };
        self.hot.0 .0.store(new, Ordering::Release);
        if from != to {
            trace_event!(INFO, from = %from, to = %to, "circuit breaker state changed");
            if self.on_change.is_some() {
                tr.events.push_back((from, to));
            }
        }
    }

    /// The open duration for the opening after `openings` earlier ones
    /// since the breaker last closed: doubling from `open_duration` up to
    /// `open_duration_max`.
    pub(crate) fn open_duration(&self, openings: u32) -> Duration {
        let base = self.cfg.open_duration;
        let factor = 1u32.checked_shl(openings.min(31)).unwrap_or(u32::MAX);
        base.checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.cfg.open_duration_max)
            .max(base)
    }

    /// Runs pending state-change callbacks, in order, one thread at a time.
    /// A callback that causes a transition itself (through the handle)
    /// finds the drain busy; its event runs right after it returns.
    fn run_callbacks(&self) {
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
                let next = self.lock().events.pop_front();
                match next {
                    Some((from, to)) => cb(from, to),
                    None => break,
                }
            }
            drop(guard);
            // An event pushed after our last pop, whose pusher saw the
            // drain busy, is ours to run.
            if self.lock().events.is_empty() {
                return;
            }
        }
    }

    /// Opens the breaker and holds it open until `force_closed` or `reset`.
    pub(crate) fn force_open(&self, clock: &impl Fn() -> Instant) {
        let mut tr = self.lock();
        let cur = self.word();
        self.set_state(&mut tr, cur, State::Open, true, clock);
        drop(tr);
        self.run_callbacks();
    }

    /// Closes the breaker with an empty window.
    pub(crate) fn force_closed(&self, clock: &impl Fn() -> Instant) {
        let mut tr = self.lock();
        let cur = self.word();
        self.set_state(&mut tr, cur, State::Closed, false, clock);
        drop(tr);
        self.run_callbacks();
    }

    /// Back to the state right after `build()`: closed, empty window,
    /// counters at zero.
    pub(crate) fn reset(&self, clock: &impl Fn() -> Instant) {
        let mut tr = self.lock();
        let cur = self.word();
        self.set_state(&mut tr, cur, State::Closed, false, clock);
        tr.opened_total = 0;
        for c in self.counters.iter() {
            for a in [
                &c.successes,
                &c.failures,
                &c.ignored,
                &c.slow,
                &c.rejected,
                &c.cancelled,
            ] {
                a.store(0, Ordering::Relaxed);
            }
        }
        drop(tr);
        self.run_callbacks();
    }

    /// A snapshot of state and counters.
    pub(crate) fn stats(&self, clock: &impl Fn() -> Instant) -> Stats {
        let state = self.state(clock);
        let w = self.word();
        let opened = self.lock().opened_total;
        let mut s = Stats {
            state,
            successes: 0,
            failures: 0,
            ignored: 0,
            slow: 0,
            rejected: 0,
            cancelled: 0,
            opened,
            window_calls: 0,
            window_failures: 0,
            window_slow: 0,
            consecutive_failures: 0,
        };
        for c in self.counters.iter() {
            s.successes += c.successes.load(Ordering::Relaxed);
            s.failures += c.failures.load(Ordering::Relaxed);
            s.ignored += c.ignored.load(Ordering::Relaxed);
            s.slow += c.slow.load(Ordering::Relaxed);
            s.rejected += c.rejected.load(Ordering::Relaxed);
            s.cancelled += c.cancelled.load(Ordering::Relaxed);
        }
        let counts = match &self.window {
            Some(RateWindow::Count(cw)) => cw.counts(),
            Some(RateWindow::Time(tw)) => tw.counts(clock()),
            None => Counts::default(),
        };
        s.window_calls = counts.total;
        s.window_failures = counts.failures;
        s.window_slow = counts.slow;
        if matches!(self.cfg.policy, Policy::Consecutive(_)) && w & STATE_MASK == CLOSED {
            s.consecutive_failures = u64::from(field_a(w));
        }
        s
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
mod tests {
    use super::*;
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
    fn word_fields_round_trip() {
        let w = word(HALF_OPEN, false, 7, 9, 12345);
        assert_eq!(state_of(w), State::HalfOpen);
        assert_eq!((field_a(w), field_b(w), epoch_of(w)), (7, 9, 12345));
        let w = with_b(with_a(w, FIELD_MAX), 0);
        assert_eq!((field_a(w), field_b(w), epoch_of(w)), (FIELD_MAX, 0, 12345));
        // The epoch wraps instead of spilling into other fields.
        let w = word(OPEN, true, 0, 0, u32::MAX);
        assert_eq!(state_of(w), State::Open);
        assert_eq!(w & HELD, HELD);
        assert_eq!(epoch_of(w), (1 << 21) - 1);
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
    fn open_duration_doubles_up_to_max() {
        let d = Duration::from_secs(10);
        let core = Core::new(
            consecutive(1, d, Duration::from_secs(35), 1),
            None,
            Instant::now(),
        );
        let got: Vec<u64> = (0..5).map(|i| core.open_duration(i).as_secs()).collect();
        assert_eq!(got, [10, 20, 35, 35, 35]);
        assert_eq!(core.open_duration(u32::MAX).as_secs(), 35);
    }

    #[test]
    fn reentrant_callback_runs_every_event_in_order() {
        let clock = Clock::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let core_slot: Arc<Mutex<Option<Arc<Core>>>> = Arc::new(Mutex::new(None));
        let cb: Callback = {
            let seen = seen.clone();
            let core_slot = core_slot.clone();
            Box::new(move |from, to| {
                seen.lock().unwrap().push((from, to));
                if to == State::Open {
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
}
