//! What the demo's scenarios run against: the flaky upstream, the client
//! stack from `demo_stack.rs` with the demo's settings, and the JSON types
//! the upstream serves. `Plan` holds the durations and sizes of a full or
//! a `--quick` run.
#![allow(dead_code)]

use std::time::Duration;

use serde::Deserialize;
use tower::{BoxError, Layer};
use tower_patterns::fetch::{Json, JsonLayer};
use tower_patterns::retry::Jitter;
use tower_patterns::upstream::{Upstream, UpstreamConfig};

use crate::demo_stack::{DemoStack, Stack, StackConfig};

/// A user, as the upstream serves it at `/users/{id}`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
}

/// An item of the upstream's paginated `/items` lists.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct Item {
    pub id: u64,
    pub name: String,
}

/// Durations and sizes for a full or a `--quick` run.
pub struct Plan {
    /// Whether this is the `--quick` run.
    pub quick: bool,
    /// How long the breaker stays open before a probe.
    pub open_duration: Duration,
    /// The first retry backoff.
    pub base_delay: Duration,
    /// The cap on any retry wait.
    pub max_delay: Duration,
    /// The size of the streamed body.
    pub stream_bytes: u64,
    /// The pause between requests during the outage.
    pub tick: Duration,
    /// The upstream's latency per request.
    pub latency: Duration,
    /// How long the slow share of requests waits in the hedging scenario.
    pub slow: Duration,
    /// GETs per batch in the hedging scenario.
    pub hedge_calls: usize,
}

impl Plan {
    /// A few seconds for `quick`, 10-15 s otherwise.
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                open_duration: Duration::from_millis(300),
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                stream_bytes: 4 << 20,
                tick: Duration::from_millis(20),
                latency: Duration::ZERO,
                slow: Duration::from_millis(200),
                hedge_calls: 400,
            }
        } else {
            Plan {
                quick,
                open_duration: Duration::from_secs(2),
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_millis(250),
                stream_bytes: 64 << 20,
                tick: Duration::from_millis(100),
                latency: Duration::from_millis(2),
                slow: Duration::from_millis(250),
                hedge_calls: 1_000,
            }
        }
    }
}

/// What every scenario runs against.
pub struct Demo {
    /// Durations and sizes for this run.
    pub plan: Plan,
    /// The flaky server.
    pub upstream: Upstream,
    /// The client stack and handles on its layers.
    pub stack: DemoStack,
    /// The stack with a JSON decoder on top: GET a URL, get a `User`.
    pub users: Json<Stack, User>,
}

impl Demo {
    /// Starts the server, builds the stack and prints what was built.
    pub async fn start(plan: Plan) -> Result<Demo, BoxError> {
        let upstream = Upstream::start(UpstreamConfig {
            latency: plan.latency,
            retry_after_secs: 1,
            ..UpstreamConfig::default()
        })
        .await?;
        let config = StackConfig {
            attempts: 3,
            base_delay: plan.base_delay,
            max_delay: plan.max_delay,
            jitter: Jitter::Full,
            budget: true,
            failures_to_open: 5,
            open_duration: plan.open_duration,
            concurrency: 8,
            timeout: Duration::from_secs(5),
        };
        let stack = DemoStack::build(&config)?;
        let users = JsonLayer::<User>::new().layer(stack.svc.clone());

        println!(
            "tower-patterns demo{}: upstream on http://{}",
            if plan.quick { " (--quick)" } else { "" },
            upstream.addr()
        );
        println!(
            "stack: http cache(RFC 9111, private) -> retry({} attempts, {:?}x2 backoff, cap {:?}, budget) \
             -> breaker({} failures in a row, open {:?}) -> limit({}) -> HttpClient",
            config.attempts,
            config.base_delay,
            config.max_delay,
            config.failures_to_open,
            config.open_duration,
            config.concurrency
        );
        Ok(Demo {
            plan,
            upstream,
            stack,
            users,
        })
    }
}
