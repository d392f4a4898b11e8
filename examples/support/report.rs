//! The demo's report: each scenario collects its checks in a [`Scenario`],
//! and the [`Report`] prints one line per scenario and the failed checks.
//! Also the printing helpers the scenarios share: headings, the outage
//! [`Timeline`], error descriptions and the closing totals.
#![allow(dead_code)]

use std::time::Duration;

use tower::BoxError;
use tower_patterns::circuit_breaker::Open;
use tower_patterns::fetch::FetchError;
use tower_patterns::upstream::Upstream;

use crate::demo_stack::StackStats;

/// One scenario's checks and, once finished, its line in the report.
pub struct Scenario {
    name: &'static str,
    failures: Vec<String>,
    summary: String,
    took: Duration,
}

impl Scenario {
    /// Starts collecting checks for the scenario called `name`.
    pub fn new(name: &'static str) -> Scenario {
        Scenario {
            name,
            failures: Vec::new(),
            summary: String::new(),
            took: Duration::ZERO,
        }
    }

    /// Records a check; a failed one is printed at once and fails the scenario.
    pub fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            let what = what.into();
            println!("    !! check failed: {what}");
            self.failures.push(what);
        }
    }

    /// Ends the scenario with its one-line summary and how long it took.
    pub fn finish(mut self, summary: impl Into<String>, took: Duration) -> Scenario {
        self.summary = summary.into();
        self.took = took;
        self
    }

    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The finished scenarios, in the order they ran.
#[derive(Default)]
pub struct Report {
    scenarios: Vec<Scenario>,
}

impl Report {
    /// Adds a finished scenario.
    pub fn add(&mut self, scenario: Scenario) {
        self.scenarios.push(scenario);
    }

    /// Prints one line per scenario: name, ok or FAIL, time, summary.
    pub fn print_table(&self) {
        println!("  {:<14} {:<4} {:>9}  result", "scenario", "", "time");
        for s in &self.scenarios {
            println!(
                "  {:<14} {:<4} {:>9}  {}",
                s.name,
                if s.ok() { "ok" } else { "FAIL" },
                format!("{:.2?}", s.took),
                s.summary
            );
        }
    }

    /// Every failed check, as "scenario: check".
    pub fn failures(&self) -> Vec<String> {
        self.scenarios
            .iter()
            .flat_map(|s| s.failures.iter().map(|f| format!("{}: {f}", s.name)))
            .collect()
    }

    /// Prints "all scenarios ok" or every failed check; true if all passed.
    pub fn print_outcome(&self) -> bool {
        let failures = self.failures();
        if failures.is_empty() {
            println!("\nall scenarios ok");
        } else {
            println!("\n{} check(s) failed:", failures.len());
            for f in &failures {
                println!("  - {f}");
            }
        }
        failures.is_empty()
    }
}

/// Prints a scenario's heading, padded with `=` to a fixed width.
pub fn heading(title: &str) {
    println!(
        "\n== {title} {}",
        "=".repeat(70usize.saturating_sub(title.len()))
    );
}

/// A time since the start, as seconds with milliseconds.
pub fn secs(d: Duration) -> String {
    format!("{:>7.3}s", d.as_secs_f64())
}

/// Timestamped lines, printed with each run of calls that failed fast
/// (an open breaker, no request at the server) folded into its first line
/// and a count.
#[derive(Default)]
pub struct Timeline {
    lines: Vec<(String, String)>,
}

impl Timeline {
    /// Adds `text` at `at` (time since the stack was built).
    pub fn push(&mut self, at: Duration, text: impl Into<String>) {
        self.lines.push((secs(at), text.into()));
    }

    /// Prints the lines, folding runs of fail-fast lines.
    pub fn print(&self) {
        let lines = &self.lines;
        let fails_fast = |line: &str| {
            line.contains("circuit open")
                && line
                    .split_once("-> ")
                    .is_some_and(|(_, rest)| rest.contains("[0 "))
        };
        let mut i = 0;
        while i < lines.len() {
            let mut j = i + 1;
            if lines[i].1.contains("circuit open") {
                while j < lines.len() && fails_fast(&lines[j].1) {
                    j += 1;
                }
            }
            if j - i > 2 {
                println!("  {} {}", lines[i].0, lines[i].1);
                println!(
                    "  {} ... {} more like this, each failed fast, none reached the server",
                    lines[j - 1].0,
                    j - i - 1
                );
            } else {
                for line in &lines[i..j] {
                    println!("  {} {}", line.0, line.1);
                }
            }
            i = j;
        }
    }
}

/// Prints every layer's counters and the server's.
pub fn print_totals(s: &StackStats, upstream: &Upstream) {
    let lookups = s.cache.hits + s.cache.misses + s.cache.revalidations;
    println!(
        "  retries: {} attempts, {} retries, {} refused by the budget",
        s.retry.attempts, s.retry.retries, s.retry.budget_refusals
    );
    println!(
        "  breaker: {} now, opened {} time(s), {} calls failed fast",
        s.breaker_state, s.breaker_opened, s.breaker_rejected
    );
    println!(
        "  cache: {} hits / {} lookups = {:.0}% hit ratio ({} misses, {} revalidations, {} entries)",
        s.cache.hits,
        lookups,
        100.0 * s.cache.hits as f64 / lookups.max(1) as f64,
        s.cache.misses,
        s.cache.revalidations,
        s.cache.entries
    );
    println!(
        "  limit: {} permits, {} in flight now; client sent {} requests; upstream received {} ({} were 503s)",
        s.limit.limit,
        s.limit.in_flight,
        s.client_requests,
        upstream.requests(),
        upstream.failures_sent()
    );
}

/// Finds a breaker `Open` anywhere in an error's source chain.
pub fn find_open<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Open> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(open) = e.downcast_ref::<Open>() {
            return Some(open);
        }
        cur = e.source();
    }
    None
}

/// A short description of an error from the stack (or a layer over it).
pub fn describe(err: &BoxError) -> String {
    if let Some(open) = find_open(err.as_ref()) {
        return format!(
            "circuit open (fail fast, probe in {:.0?})",
            open.retry_after().unwrap_or_default()
        );
    }
    if let Some(f) = err.downcast_ref::<FetchError>() {
        return match f {
            FetchError::Status { status, .. } => format!("HTTP {}", status.as_u16()),
            FetchError::Decode { line, column, .. } => {
                format!("bad JSON at line {line}, column {column}")
            }
            other => other.to_string(),
        };
    }
    err.to_string()
}
