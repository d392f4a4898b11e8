//! Latency percentiles for the demo's hedging scenario: send the same GET
//! many times, a few at a time, through any HTTP service, and summarise
//! how long the calls took.
#![allow(dead_code)]

use std::time::Duration;

use futures::stream::{self, StreamExt};
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceExt};
use tower_patterns::fetch::CollectLayer;
use tower_patterns::hedge::HedgeLayer;

use tower_patterns::upstream::Upstream;

use crate::demo_setup::Demo;
use crate::demo_stack::{get, Req};
use crate::report::{heading, Scenario};

/// How long a batch of calls took: median, p99 and the slowest.
#[derive(Clone, Copy, Debug)]
pub struct Tail {
    pub calls: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Tail {
    fn of(mut took: Vec<Duration>) -> Tail {
        took.sort_unstable();
        let at = |q: f64| took[((q * took.len() as f64).ceil() as usize).clamp(1, took.len()) - 1];
        Tail {
            calls: took.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }

    /// One line of a small table.
    pub fn row(&self, name: &str) -> String {
        format!(
            "  {name:<12} {:>5} calls   p50 {:>9.2?}   p99 {:>9.2?}   max {:>9.2?}",
            self.calls, self.p50, self.p99, self.max
        )
    }
}

/// `calls` GETs of `url` through `svc`, `concurrency` at a time; the first
/// error stops the batch.
pub async fn measure<S, B>(
    svc: S,
    url: &str,
    calls: usize,
    concurrency: usize,
) -> Result<Tail, BoxError>
where
    S: Service<Req, Response = http::Response<B>> + Clone,
    S::Error: Into<BoxError>,
{
    let took: Vec<Result<Duration, BoxError>> = stream::iter(0..calls)
        .map(|_| {
            let svc = svc.clone();
            async move {
                let t = Instant::now();
                svc.oneshot(get(url)).await.map_err(Into::into)?;
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Ok(Tail::of(took.into_iter().collect::<Result<_, _>>()?))
}

/// A batch without hedging and the same batch with it, against one upstream.
pub struct Comparison {
    pub without: Tail,
    pub with: Tail,
    /// Requests the upstream made slow during the unhedged batch.
    pub slowed: u64,
    /// Extra requests the hedged batch sent, as a share of its calls.
    pub extra: f64,
}

impl Comparison {
    /// `calls` GETs of `url` through `plain`, then through `hedged`, 8 at a time.
    pub async fn run<P, H, B1, B2>(
        plain: P,
        hedged: H,
        upstream: &Upstream,
        url: &str,
        calls: usize,
    ) -> Result<Comparison, BoxError>
    where
        P: Service<Req, Response = http::Response<B1>> + Clone,
        P::Error: Into<BoxError>,
        H: Service<Req, Response = http::Response<B2>> + Clone,
        H::Error: Into<BoxError>,
    {
        let slow_before = upstream.slow_sent();
        let without = measure(plain, url, calls, 8).await?;
        let slowed = upstream.slow_sent() - slow_before;
        let sent_before = upstream.requests();
        let with = measure(hedged, url, calls, 8).await?;
        let extra = (upstream.requests() - sent_before) as f64 / calls as f64 - 1.0;
        println!("{}", without.row("no hedging"));
        println!("{}", with.row("hedged"));
        Ok(Comparison {
            without,
            with,
            slowed,
            extra,
        })
    }
}

/// Scenario 7: A long tail (3% of requests wait far longer than the rest):
/// the same GETs without and with a hedge after 20 ms; hedging cuts the
/// p99 to about the delay, for a few percent of extra requests.
pub async fn hedging(demo: &Demo) -> Result<Scenario, BoxError> {
    let (plan, upstream) = (&demo.plan, &demo.upstream);
    heading(&format!("7. hedging (3% of requests wait {:?})", plan.slow));
    let mut s = Scenario::new("hedging");
    let t = Instant::now();
    upstream.set_slow(0.03, plan.slow);
    let plain = CollectLayer::new().layer(demo.stack.client.clone());
    let hedge = HedgeLayer::http(Duration::from_millis(20));
    let hedged = hedge.layer(plain.clone());
    let url = upstream.url("/users/1");
    let run = Comparison::run(plain, hedged, upstream, &url, plan.hedge_calls).await?;
    upstream.set_slow(0.0, Duration::ZERO);
    let (st, extra) = (hedge.stats(), run.extra * 100.0);
    println!(
        "  {} hedges ({extra:.1}% extra requests), {} answered first, {} losers cancelled",
        st.hedges, st.hedge_wins, st.cancelled
    );
    s.check(run.slowed > 0, "the unhedged batch met the tail");
    s.check(
        st.hedge_wins > 0,
        "hedges were sent and some answered first",
    );
    let within = st.hedges <= st.calls / 20 + 10;
    s.check(within, format!("within the budget: {} hedges", st.hedges));
    let (before, after) = (run.without.p99, run.with.p99);
    s.check(
        after < plan.slow / 2,
        format!("hedged p99 {after:?} < half the tail"),
    );
    let summary = format!("p99 {before:.0?} -> {after:.0?}, {extra:.1}% extra requests");
    Ok(s.finish(summary, t.elapsed()))
}
