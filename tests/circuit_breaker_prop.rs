//! Property test: the breaker against a plain, sequential reference model
//! of the same rules, over random sequences of outcomes, delays and
//! cancellations (paused tokio time).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open, State, Window};
use tower_patterns::classify::Outcome;

// ---- the service under the breaker -------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ok,
    Fail,
    Ignored,
}

/// Completes with `kind` once the (paused) clock reaches `at`.
struct Delayed {
    at: Instant,
    kind: Kind,
}

impl Future for Delayed {
    type Output = Result<u16, BoxError>;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if Instant::now() < self.at {
            return Poll::Pending; // the harness polls again after each advance
        }
        Poll::Ready(match self.kind {
            Kind::Ok => Ok(200),
            Kind::Ignored => Ok(404),
            Kind::Fail => Err("boom".into()),
        })
    }
}

#[derive(Clone, Default)]
struct Inner {
    calls: Arc<AtomicUsize>,
}

impl Service<(Kind, Duration)> for Inner {
    type Response = u16;
    type Error = BoxError;
    type Future = Delayed;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, (kind, d): (Kind, Duration)) -> Delayed {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Delayed {
            at: Instant::now() + d,
            kind,
        }
    }
}

type ClassifyFn = fn(&Result<u16, BoxError>) -> Outcome;

fn classify(r: &Result<u16, BoxError>) -> Outcome {
    match r {
        Ok(404) => Outcome::Ignored,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

// ---- configuration ---------------------------------------------------------

#[derive(Clone, Debug)]
enum Policy {
    Consecutive(u32),
    Rate {
        threshold: f64,
        window: usize,
        min: usize,
    },
}

#[derive(Clone, Debug)]
struct Cfg {
    policy: Policy,
    slow: Option<(Duration, f64)>,
    open: Duration,
    open_max: Duration,
    probes: u32,
}

fn cfg_strategy() -> impl Strategy<Value = Cfg> {
    let policy = prop_oneof![
        (1u32..5).prop_map(Policy::Consecutive),
        (
            1usize..7,
            0usize..7,
            prop::sample::select(vec![0.25, 0.5, 0.75, 1.0])
        )
            .prop_map(|(window, min, threshold)| Policy::Rate {
                threshold,
                window,
                min: 1 + min % window,
            }),
    ];
    (
        policy,
        prop::option::of((20u64..80, prop::sample::select(vec![0.5, 1.0]))),
        50u64..150,
        0u64..3,
        1u32..4,
    )
        .prop_map(|(policy, slow, open, growth, probes)| {
            let slow = match policy {
                Policy::Rate { .. } => slow.map(|(ms, r)| (Duration::from_millis(ms), r)),
                Policy::Consecutive(_) => None,
            };
            let open = Duration::from_millis(open);
            Cfg {
                policy,
                slow,
                open,
                open_max: open * (1 << (2 * growth)),
                probes,
            }
        })
}

fn build(cfg: &Cfg, log: Arc<Mutex<Vec<(State, State)>>>) -> CircuitBreakerLayer<ClassifyFn> {
    let b = CircuitBreakerLayer::builder();
    let b = match cfg.policy {
        Policy::Consecutive(n) => b.consecutive_failures(n),
        Policy::Rate {
            threshold,
            window,
            min,
        } => {
            let b = b
                .failure_rate_threshold(threshold)
                .sliding_window(Window::Count(window))
                .minimum_calls(min);
            match cfg.slow {
                Some((d, r)) => b.slow_call(d, r),
                None => b,
            }
        }
    };
    b.open_duration(cfg.open)
        .open_duration_max(cfg.open_max)
        .half_open_calls(cfg.probes)
        .classify(classify as ClassifyFn)
        .on_state_change(move |c| log.lock().unwrap().push((c.from, c.to)))
        .build()
        .unwrap()
}

// ---- the reference model ---------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Ticket {
    epoch: u64,
    probe: bool,
    start: Duration,
}

struct Model {
    cfg: Cfg,
    state: State,
    epoch: u64,
    run: u32,
    window: VecDeque<(bool, bool)>,
    open_until: Duration,
    openings: u32,
    free: u32,
    probe_ok: u32,
    transitions: Vec<(State, State)>,
}

impl Model {
    fn new(cfg: Cfg) -> Self {
        Model {
            cfg,
            state: State::Closed,
            epoch: 0,
            run: 0,
            window: VecDeque::new(),
            open_until: Duration::ZERO,
            openings: 0,
            free: 0,
            probe_ok: 0,
            transitions: Vec::new(),
        }
    }

    fn go(&mut self, to: State, now: Duration) {
        self.transitions.push((self.state, to));
        self.state = to;
        self.epoch += 1;
        match to {
            State::Closed => {
                self.run = 0;
                self.window.clear();
                self.openings = 0;
            }
            State::Open => {
                let mut d = self.cfg.open;
                for _ in 0..self.openings {
                    d = (d * 2).min(self.cfg.open_max);
                }
                self.openings += 1;
                self.open_until = now + d;
            }
            State::HalfOpen => {
                self.free = self.cfg.probes;
                self.probe_ok = 0;
            }
        }
    }

    fn state(&mut self, now: Duration) -> State {
        if self.state == State::Open && now >= self.open_until {
            self.go(State::HalfOpen, now);
        }
        self.state
    }

    fn admit(&mut self, now: Duration) -> Option<Ticket> {
        match self.state(now) {
            State::Closed => Some(Ticket {
                epoch: self.epoch,
                probe: false,
                start: now,
            }),
            State::Open => None,
            State::HalfOpen if self.free == 0 => None,
            State::HalfOpen => {
                self.free -= 1;
                Some(Ticket {
                    epoch: self.epoch,
                    probe: true,
                    start: now,
                })
            }
        }
    }

    fn give_back(&mut self, t: Ticket) {
        if t.probe && self.state == State::HalfOpen && self.epoch == t.epoch {
            self.free = (self.free + 1).min(self.cfg.probes);
        }
    }

    fn complete(&mut self, t: Ticket, kind: Kind, now: Duration) {
        let slow = matches!(self.cfg.slow, Some((d, _)) if now - t.start > d);
        if t.epoch != self.epoch {
            return;
        }
        if t.probe {
            match kind {
                Kind::Ignored => self.give_back(t),
                Kind::Fail => self.go(State::Open, now),
                Kind::Ok if slow => self.go(State::Open, now),
                Kind::Ok => {
                    self.probe_ok += 1;
                    if self.probe_ok == self.cfg.probes {
                        self.go(State::Closed, now);
                    }
                }
            }
            return;
        }
        if kind == Kind::Ignored {
            return;
        }
        let fail = kind == Kind::Fail;
        match self.cfg.policy {
            Policy::Consecutive(n) => {
                self.run = if fail { self.run + 1 } else { 0 };
                if self.run >= n {
                    self.go(State::Open, now);
                }
            }
            Policy::Rate {
                threshold,
                window,
                min,
            } => {
                self.window.push_back((fail, slow));
                if self.window.len() > window {
                    self.window.pop_front();
                }
                let total = self.window.len();
                let failures = self.window.iter().filter(|c| c.0).count();
                let slows = self.window.iter().filter(|c| c.1).count();
                let over = |n: usize, r: f64| n as f64 / total as f64 >= r;
                if total >= min
                    && (over(failures, threshold)
                        || matches!(self.cfg.slow, Some((_, r)) if over(slows, r)))
                {
                    self.go(State::Open, now);
                }
            }
        }
    }
}

// ---- the harness ----------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Call(Kind, u64),
    Advance(u64),
    Cancel(usize),
    CheckState,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let kind = prop_oneof![3 => Just(Kind::Fail), 2 => Just(Kind::Ok), 1 => Just(Kind::Ignored)];
    prop_oneof![
        5 => (kind, 0u64..120).prop_map(|(k, d)| Op::Call(k, d)),
        3 => (0u64..200).prop_map(Op::Advance),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => Just(Op::CheckState),
    ]
}

type Fut = tower_patterns::circuit_breaker::ResponseFuture<Delayed, ClassifyFn>;

struct InFlight {
    fut: Pin<Box<Fut>>,
    ticket: Ticket,
    kind: Kind,
}

fn run(cfg: Cfg, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let t0 = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let layer = build(&cfg, log.clone());
        let handle = layer.handle();
        let inner = Inner::default();
        let mut svc = layer.layer(inner.clone());
        let mut model = Model::new(cfg.clone());
        let mut in_flight: Vec<InFlight> = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());

        for op in ops {
            let now = Instant::now() - t0;
            match op {
                Op::Call(kind, ms) => {
                    let before = inner.calls.load(Ordering::SeqCst);
                    let expect = model.admit(now);
                    assert!(svc.poll_ready(&mut cx).is_ready());
                    let mut fut = Box::pin(svc.call((kind, Duration::from_millis(ms))));
                    let called = inner.calls.load(Ordering::SeqCst) - before;
                    match expect {
                        None => {
                            prop_assert_eq!(called, 0, "an open breaker called the inner service");
                            match fut.as_mut().poll(&mut cx) {
                                Poll::Ready(Err(e)) => prop_assert!(e.is::<Open>(), "{}", e),
                                other => prop_assert!(
                                    false,
                                    "expected a rejection, got {:?}",
                                    other.map(|r| r.is_ok())
                                ),
                            }
                        }
                        Some(ticket) => {
                            prop_assert_eq!(called, 1);
                            in_flight.push(InFlight { fut, ticket, kind });
                        }
                    }
                }
                Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                Op::Cancel(i) => {
                    if !in_flight.is_empty() {
                        let f = in_flight.remove(i % in_flight.len());
                        drop(f.fut);
                        model.give_back(f.ticket);
                    }
                }
                Op::CheckState => {
                    prop_assert_eq!(handle.state(), model.state(now));
                }
            }
            // Deliver completions in order.
            let now = Instant::now() - t0;
            let mut i = 0;
            while i < in_flight.len() {
                if in_flight[i].fut.as_mut().poll(&mut cx).is_ready() {
                    let f = in_flight.remove(i);
                    model.complete(f.ticket, f.kind, now);
                } else {
                    i += 1;
                }
            }
            // Invariants.
            let probes = in_flight
                .iter()
                .filter(|f| f.ticket.probe && f.ticket.epoch == model.epoch)
                .count();
            prop_assert!(probes <= cfg.probes as usize, "{} probes in flight", probes);
            if model.state == State::HalfOpen {
                prop_assert_eq!(handle.probes_in_flight() as usize, probes);
            }
            prop_assert_eq!(&*log.lock().unwrap(), &model.transitions);
        }
        prop_assert_eq!(handle.state(), model.state(Instant::now() - t0));
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn breaker_matches_reference_model(cfg in cfg_strategy(), ops in prop::collection::vec(op_strategy(), 1..80)) {
        run(cfg, ops)?;
    }
}
