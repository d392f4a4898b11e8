//! The demo's outage scenario as a picture: requests per outcome over
//! time (one line per outcome, counted in time buckets) with the circuit
//! breaker's state as a coloured band beneath. Hand-written SVG, no
//! plotting dependency. Shared by `examples/demo.rs` (`--chart PATH`) and
//! `tests/chart.rs` (included with `#[path]`).
//!
//! The SVG names its parts for machines as well as people: each outcome's
//! line is `<polyline id="series-OUTCOME">`, each stretch of the band a
//! `<rect class="band-STATE">`, so a check can find the series without
//! parsing the drawing.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::Duration;

/// What became of one request of the outage scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered.
    Ok,
    /// Failed after reaching the server (HTTP 503 or a transport error).
    Failed,
    /// Refused by the open breaker without reaching the server.
    FailedFast,
}

impl Outcome {
    /// Every outcome, in legend order.
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::Failed, Outcome::FailedFast];

    /// The id suffix and legend text.
    pub fn name(self) -> (&'static str, &'static str) {
        match self {
            Outcome::Ok => ("ok", "ok"),
            Outcome::Failed => ("failed", "failed at the server"),
            Outcome::FailedFast => ("failed-fast", "failed fast (breaker open)"),
        }
    }

    fn colour(self) -> &'static str {
        match self {
            Outcome::Ok => "#2e7d32",
            Outcome::Failed => "#c62828",
            Outcome::FailedFast => "#ef6c00",
        }
    }
}

/// The breaker's state over a stretch of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Band {
    /// Closed: calls go through.
    Closed,
    /// Open: calls fail fast.
    Open,
    /// Half-open: probes go through.
    HalfOpen,
}

impl Band {
    /// The class suffix, the legend text and the colour.
    pub fn name(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Band::Closed => ("closed", "closed", "#a5d6a7"),
            Band::Open => ("open", "open", "#ef9a9a"),
            Band::HalfOpen => ("half-open", "half-open", "#ffe082"),
        }
    }
}

/// What the outage scenario saw: each request's start and outcome, and the
/// breaker's state changes, all as times since the scenario began.
#[derive(Clone, Debug, Default)]
pub struct OutageData {
    /// (when the request started, what became of it).
    pub requests: Vec<(Duration, Outcome)>,
    /// (when, the state entered); the state before the first is closed.
    pub states: Vec<(Duration, Band)>,
    /// When the upstream came back, if it did (it goes down at zero).
    pub down: Option<Duration>,
}

impl OutageData {
    /// Records a request that started `at`: answered, or failed (fast,
    /// without reaching the server, or not).
    pub fn push(&mut self, at: Duration, ok: bool, fast: bool) {
        let outcome = match (ok, fast) {
            (true, _) => Outcome::Ok,
            (false, true) => Outcome::FailedFast,
            (false, false) => Outcome::Failed,
        };
        self.requests.push((at, outcome));
    }
}

impl From<tower_patterns::circuit_breaker::State> for Band {
    fn from(state: tower_patterns::circuit_breaker::State) -> Band {
        use tower_patterns::circuit_breaker::State;
        match state {
            State::Closed => Band::Closed,
            State::Open => Band::Open,
            State::HalfOpen => Band::HalfOpen,
        }
    }
}

/// Writes the chart of `data` to `path` and says so.
pub fn write(path: &std::path::Path, data: &OutageData) -> std::io::Result<()> {
    std::fs::write(
        path,
        outage_svg(data, "tower-patterns demo: an outage and its recovery"),
    )?;
    println!("  chart of the outage written to {}", path.display());
    Ok(())
}

const WIDTH: f64 = 760.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const PLOT_H: f64 = 220.0;
const BAND_GAP: f64 = 34.0;
const BAND_H: f64 = 22.0;
const BUCKETS: usize = 30;

/// Escapes text for an SVG text node or attribute.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as a standalone SVG document.
pub fn outage_svg(data: &OutageData, title: &str) -> String {
    let end = data
        .requests
        .iter()
        .map(|r| r.0)
        .chain(data.states.iter().map(|s| s.0))
        .max()
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(1));
    let span = end.as_secs_f64();
    let bucket = span / BUCKETS as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: f64| LEFT + plot_w * (t / span).clamp(0.0, 1.0);

    // Requests per outcome per bucket.
    let mut counts = [[0u32; BUCKETS]; 3];
    for (at, outcome) in &data.requests {
        let i = ((at.as_secs_f64() / bucket) as usize).min(BUCKETS - 1);
        let k = Outcome::ALL.iter().position(|o| o == outcome).unwrap_or(0);
        counts[k][i] += 1;
    }
    let peak = counts.iter().flatten().copied().max().unwrap_or(0).max(1);
    let y = |n: u32| TOP + PLOT_H - PLOT_H * f64::from(n) / f64::from(peak);

    let band_top = TOP + PLOT_H + BAND_GAP;
    let height = band_top + BAND_H + 90.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(svg, r##"<title>{}</title>"##, esc(title));
    let _ = writeln!(
        svg,
        r##"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"##,
        esc(title)
    );

    // Axes, grid and labels.
    let _ = writeln!(svg, r##"<g id="axes" stroke="#999" stroke-width="1">"##);
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}"/>"##,
        TOP + PLOT_H
    );
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}"/>"##,
        TOP + PLOT_H,
        LEFT + plot_w
    );
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r##"<g id="y-labels" text-anchor="end" fill="#444">"##);
    for n in [0, peak / 2, peak] {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}">{n}</text>"##,
            LEFT - 6.0,
            y(n) + 4.0
        );
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle" fill="#444">requests per {:.0} ms</text>"##,
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        bucket * 1000.0
    );
    let _ = writeln!(
        svg,
        r##"<g id="x-labels" text-anchor="middle" fill="#444">"##
    );
    for i in 0..=4 {
        let t = span * f64::from(i) / 4.0;
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}">{t:.2} s</text>"##,
            x(t),
            band_top + BAND_H + 18.0
        );
    }
    let _ = writeln!(svg, "</g>");

    // The outage itself, shaded behind the lines.
    {
        let (from, to) = (Duration::ZERO, data.down.unwrap_or(end));
        let _ = writeln!(
            svg,
            r##"<rect id="outage" x="{:.1}" y="{TOP}" width="{:.1}" height="{PLOT_H}" fill="#000" fill-opacity="0.05"><title>upstream down</title></rect>"##,
            x(from.as_secs_f64()),
            x(to.as_secs_f64()) - x(from.as_secs_f64())
        );
    }

    // One line per outcome, through the middle of each bucket.
    for (k, outcome) in Outcome::ALL.iter().enumerate() {
        let (id, label) = outcome.name();
        let points: Vec<String> = (0..BUCKETS)
            .map(|i| {
                let t = (i as f64 + 0.5) * bucket;
                format!("{:.1},{:.1}", x(t), y(counts[k][i]))
            })
            .collect();
        let total: u32 = counts[k].iter().sum();
        let _ = writeln!(
            svg,
            r##"<polyline id="series-{id}" fill="none" stroke="{}" stroke-width="2" points="{}"><title>{} ({total} requests)</title></polyline>"##,
            outcome.colour(),
            points.join(" "),
            esc(label)
        );
    }

    // The breaker's state as a band beneath.
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#444">breaker</text>"##,
        LEFT - 6.0,
        band_top + BAND_H / 2.0 + 4.0
    );
    let _ = writeln!(svg, r##"<g id="breaker-state">"##);
    let mut from = 0.0;
    let mut state = Band::Closed;
    let mut stretches = Vec::new();
    for (at, next) in &data.states {
        stretches.push((from, at.as_secs_f64(), state));
        from = at.as_secs_f64();
        state = *next;
    }
    stretches.push((from, span, state));
    for (a, b, state) in stretches {
        if b <= a {
            continue;
        }
        let (class, label, colour) = state.name();
        let _ = writeln!(
            svg,
            r##"<rect class="band-{class}" x="{:.1}" y="{band_top:.1}" width="{:.1}" height="{BAND_H}" fill="{colour}"><title>{label} {a:.2}-{b:.2} s</title></rect>"##,
            x(a),
            // A probe's moment of half-open stays visible.
            (x(b) - x(a)).max(2.0)
        );
    }
    let _ = writeln!(svg, "</g>");

    // Legend.
    let legend_y = band_top + BAND_H + 44.0;
    let _ = writeln!(svg, r##"<g id="legend" fill="#222">"##);
    let mut lx = LEFT;
    for outcome in Outcome::ALL {
        let (_, label) = outcome.name();
        let _ = writeln!(
            svg,
            r##"<line x1="{lx:.1}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="{2}" stroke-width="3"/><text x="{3:.1}" y="{4:.1}">{5}</text>"##,
            legend_y,
            lx + 18.0,
            outcome.colour(),
            lx + 24.0,
            legend_y + 4.0,
            esc(label)
        );
        lx += 24.0 + 7.0 * label.len() as f64 + 18.0;
    }
    // The band's colours on a second row.
    lx = LEFT;
    let legend_y = legend_y + 20.0;
    for band in [Band::Closed, Band::Open, Band::HalfOpen] {
        let (_, label, colour) = band.name();
        let _ = writeln!(
            svg,
            r##"<rect x="{lx:.1}" y="{:.1}" width="14" height="10" fill="{colour}"/><text x="{:.1}" y="{:.1}">breaker {label}</text>"##,
            legend_y - 5.0,
            lx + 20.0,
            legend_y + 4.0
        );
        lx += 20.0 + 7.0 * (label.len() + 8) as f64 + 14.0;
    }
    let _ = writeln!(svg, "</g>");
    svg.push_str("</svg>\n");
    svg
}
