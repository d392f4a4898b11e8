//! The demo's report: each scenario collects its checks in a [`Scenario`],
//! and the [`Report`] prints one line per scenario and the failed checks.
//! Also the small formatting helpers the scenarios share.
#![allow(dead_code)]

use std::time::Duration;

use tower::BoxError;
use tower_patterns::circuit_breaker::Open;
use tower_patterns::fetch::FetchError;

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
