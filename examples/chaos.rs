//! Fault injection: watch retry and a circuit breaker react to injected
//! errors, then recover when the chaos is switched off.
//!
//! ```text
//! cargo run --example chaos
//! cargo run --example chaos -- --error-rate 0.9 --seed 3 --calls 60
//! ```
//!
//! The stack is retry → circuit breaker → chaos → a local service that
//! always answers. Three phases, each `--calls` calls one after another:
//!
//! 1. chaos off: every call succeeds on its first attempt;
//! 2. chaos switched on through its handle, failing `--error-rate` of the
//!    calls that reach it: retry retries them, the breaker counts them and
//!    opens after 3 failures in a row, then calls fail fast with `Open`
//!    (not retried: it is the crate's own rejection), and after the open
//!    duration a probe goes through (and may fail again);
//! 3. chaos switched off: after at most one open duration the breaker's
//!    probe succeeds, it closes, and every call succeeds again.
//!
//! Each call prints one character: `.` first attempt, `r` succeeded after
//! retries, `x` failed (an injected error after every attempt), `o`
//! rejected by the open breaker. With the same seed a rerun gives the same
//! faults (the breaker's timing can shift a line by a call or two). The
//! example checks what it shows and exits non-zero if it did not happen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_patterns::chaos::{ChaosLayer, Injected};
use tower_patterns::circuit_breaker::{CircuitBreakerLayer, Open, State};
use tower_patterns::retry::{Backoff, Jitter, RetryLayer};

/// Watch retry and a circuit breaker react to injected faults, then recover.
#[derive(Parser)]
struct Args {
    /// Calls per phase.
    #[arg(long, default_value_t = 40)]
    calls: u32,
    /// Share of calls failed by the chaos layer while it is on (0.0 to 1.0).
    #[arg(long, default_value_t = 0.6)]
    error_rate: f64,
    /// Seed of the fault sequence: the same seed gives the same faults.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// How long the breaker stays open before a probe, in milliseconds.
    #[arg(long, default_value_t = 50)]
    open_ms: u64,
    /// Pause between calls, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pause_ms: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();

    // The service behind it all: healthy, counts what reaches it.
    let reached = Arc::new(AtomicU64::new(0));
    let service = service_fn({
        let reached = reached.clone();
        move |n: u32| {
            reached.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, BoxError>(n) }
        }
    });

    let chaos = ChaosLayer::builder()
        .enabled(false)
        .seed(args.seed)
        .error_rate(args.error_rate)
        .build()?;
    let handle = chaos.handle();
    let changes = Arc::new(Mutex::new(Vec::new()));
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_millis(args.open_ms))
        .on_state_change({
            let changes = changes.clone();
            move |change| {
                changes.lock().unwrap().push(change.to);
                println!("\n  [breaker] {change}");
            }
        })
        .build()?;
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(1)).jitter(Jitter::None))
        .build()?;
    let mut svc = ServiceBuilder::new()
        .layer(retry.clone())
        .layer(breaker.clone())
        .layer(chaos)
        .service(service);

    let pause = Duration::from_millis(args.pause_ms);
    let phase = |name: &str| println!("\n== {name}");

    phase("1. chaos off");
    let healthy = run(&mut svc, &retry, args.calls, pause).await;

    phase(&format!(
        "2. chaos on: {:.0}% injected errors (seed {})",
        args.error_rate * 100.0,
        handle.seed()
    ));
    handle.enable();
    let chaotic = run(&mut svc, &retry, args.calls, pause).await;
    let injected = handle.stats();

    phase("3. chaos off again");
    handle.disable();
    let recovered = run(&mut svc, &retry, args.calls, pause).await;

    let retries = retry.stats();
    let opened = breaker.stats().opened;
    println!("\n== what happened");
    println!("  phase 1: {healthy}");
    println!("  phase 2: {chaotic}");
    println!("  phase 3: {recovered}");
    println!(
        "  chaos: {} calls drew a fault index, {} injected errors",
        injected.calls, injected.errors
    );
    println!(
        "  retry: {} attempts, {} retries; breaker opened {opened} time(s), now {}",
        retries.attempts,
        retries.retries,
        breaker.handle().state()
    );
    println!(
        "  the service itself was reached {} times",
        reached.load(Ordering::Relaxed)
    );

    // The example checks what it shows.
    let mut problems = Vec::new();
    if healthy.ok_first != u64::from(args.calls) {
        problems.push("phase 1: not every call succeeded at once");
    }
    if args.error_rate > 0.0 && chaotic.retried + chaotic.failed == 0 {
        problems.push("phase 2: no call was retried");
    }
    if args.error_rate >= 0.5 && opened == 0 {
        problems.push("phase 2: the breaker never opened");
    }
    if breaker.handle().state() != State::Closed {
        problems.push("phase 3: the breaker did not close again");
    }
    if recovered.ok_first + recovered.retried + recovered.rejected != u64::from(args.calls)
        || recovered.failed != 0
    {
        problems.push("phase 3: an injected error after the chaos was switched off");
    }
    if problems.is_empty() {
        println!("\nok: retry and the breaker reacted to the injected faults and recovered");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("check failed: {p}");
        }
        Err(problems.join("; ").into())
    }
}

/// How one phase's calls ended.
#[derive(Default)]
struct Tally {
    ok_first: u64,
    retried: u64,
    failed: u64,
    rejected: u64,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ok at once, {} ok after retries, {} failed, {} rejected by the open breaker",
            self.ok_first, self.retried, self.failed, self.rejected
        )
    }
}

async fn run<S>(svc: &mut S, retry: &RetryLayer, calls: u32, pause: Duration) -> Tally
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    let mut tally = Tally::default();
    print!("  ");
    for n in 0..calls {
        let before = retry.stats().retries;
        let result = match svc.ready().await {
            Ok(svc) => svc.call(n).await,
            Err(e) => Err(e),
        };
        let retried = retry.stats().retries > before;
        let mark = match result {
            Ok(_) if retried => {
                tally.retried += 1;
                'r'
            }
            Ok(_) => {
                tally.ok_first += 1;
                '.'
            }
            Err(e) if e.downcast_ref::<Open>().is_some() => {
                tally.rejected += 1;
                'o'
            }
            Err(e) if e.downcast_ref::<Injected>().is_some() => {
                tally.failed += 1;
                'x'
            }
            Err(e) => panic!("unexpected error: {e}"),
        };
        print!("{mark}");
        tokio::time::sleep(pause).await;
    }
    println!();
    tally
}
