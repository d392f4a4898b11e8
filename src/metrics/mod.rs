//! Metrics for every layer and service, through the
//! [`metrics`](https://docs.rs/metrics) facade (feature `metrics`).
//!
//! With the feature on, each layer and service records counters, gauges and
//! histograms into whatever recorder the application installed: a
//! Prometheus exporter (`metrics-exporter-prometheus`), an OpenTelemetry
//! bridge, or a test recorder. With no recorder installed, recording costs
//! a look at the recorder and nothing else, but for the start of a
//! duration: a request, a cache load or a queued task reads the clock when
//! it starts (the queue also between two tasks), before anything can know
//! whether it will be recorded; the end is read only for a recorder that
//! takes it. With the feature off, nothing is compiled in at all.
//!
//! ```
//! use std::time::Duration;
//! use tower_patterns::circuit_breaker::CircuitBreakerLayer;
//!
//! // Every metric of this breaker carries `name="users-api"`.
//! let breaker = CircuitBreakerLayer::builder()
//!     .name("users-api")
//!     .build()
//!     .unwrap();
//! # let _ = breaker;
//! ```
//!
//! # Prometheus in five lines
//!
//! With `metrics-exporter-prometheus` and axum: install the recorder, name
//! the layers, serve the text.
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_patterns::BoxError> {
//! let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! let breaker = tower_patterns::circuit_breaker::CircuitBreakerLayer::builder().name("users-api").build()?;
//! let metrics = axum::routing::get(move || std::future::ready(prometheus.render()));
//! let app = axum::Router::new().route("/metrics", metrics); // + your routes, wearing `breaker`
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:9000").await?, app).await?;
//! # let _ = breaker;
//! # Ok(())
//! # }
//! ```
//!
//! A scrape then shows, among the rest:
//!
//! ```text
//! # TYPE tower_patterns_circuit_breaker_state gauge
//! tower_patterns_circuit_breaker_state{name="users-api",state="closed"} 1
//! tower_patterns_circuit_breaker_state{name="users-api",state="open"} 0
//! tower_patterns_circuit_breaker_state{name="users-api",state="half_open"} 0
//! ```
//!
//! `examples/axum_server.rs` serves a full `/metrics` (and
//! `tests/axum_metrics.rs` scrapes it); histograms are Prometheus
//! summaries unless the exporter is given buckets.
//!
//! # Names and labels
//!
//! Names follow OpenTelemetry's style: dotted, durations in seconds in
//! `.duration` histograms, and OpenTelemetry's own names where a
//! convention exists (`http.client.request.duration` for
//! [`HttpClient`](crate::fetch::HttpClient)). Prometheus exporters write
//! the dots as underscores (`tower_patterns_circuit_breaker_state`).
//!
//! Every metric carries the label `name`: the instance name given to the
//! builder's `.name(..)` (`RetryLayer::builder().name("users-api")`), so
//! two breakers in one process are told apart. Unnamed instances use the
//! module's name (`retry`, `circuit_breaker`, `limit`, ...). Give each
//! instance its own name: instances that share a name add into the same
//! series (and the last to change a gauge sets it).
//!
//! # When the recorder is installed
//!
//! Each instance registers its handles with the recorder on its first
//! recording, and keeps them, so a call builds no key and searches no
//! registry. A recorder installed after the layers were built, or after
//! they have already served traffic into the no-op recorder, is picked up
//! at their next recording: nothing needs rebuilding, and no metric stays
//! silent. Counts made before the recorder existed are not replayed (the
//! [`stats()`](crate::circuit_breaker::CircuitBreakerLayer::stats)
//! snapshots have them). Gauges are set to the present value when the
//! handles are registered (the breaker's state, a limit) or move with each
//! change from then on (in-flight calls, queue depth).
//!
//! # Every metric
//!
//! The table is checked against what the crate registers ([`TABLE`]) by a
//! test. Labels are written `key=value|value` where the values are fixed.
//!
//! | metric | type | unit | labels | meaning |
//! |---|---|---|---|---|
//! | `tower_patterns.retry.attempts` | counter | count | `name`, `attempt=first|retry` | Calls sent to the inner service: first attempts and retries. |
//! | `tower_patterns.retry.gave_up` | counter | count | `name`, `reason=exhausted|budget|deadline|not_replayable` | Failed calls not retried, by reason (budget is a retry budget refusal). |
//! | `tower_patterns.circuit_breaker.state` | gauge | count | `name`, `state=closed|open|half_open` | 1 for the breaker's present state, 0 for the others. |
//! | `tower_patterns.circuit_breaker.transitions` | counter | count | `name`, `to=closed|open|half_open` | State changes, by the state entered. |
//! | `tower_patterns.circuit_breaker.calls` | counter | count | `name`, `outcome=success|failure|ignored|rejected|cancelled` | Calls by outcome; rejected calls failed fast with `Open`. |
//! | `tower_patterns.limit.in_flight` | gauge | count | `name` | Calls holding a permit of a concurrency or adaptive limit. |
//! | `tower_patterns.limit.limit` | gauge | count | `name` | The present limit (fixed, or the adaptive limit's latest estimate). |
//! | `tower_patterns.limit.rejections` | counter | count | `name` | Calls refused with `Overloaded`. |
//! | `tower_patterns.limit.wait.duration` | histogram | seconds | `name` | Time a call waited for a permit, for calls that had to wait. |
//! | `tower_patterns.rate_limit.requests` | counter | count | `name`, `outcome=allowed|limited` | Calls allowed (at once or after a wait) and calls refused with `RateLimited`. |
//! | `tower_patterns.rate_limit.waits` | counter | count | `name` | Allowed calls that waited for their slot. |
//! | `tower_patterns.hedge.requests` | counter | count | `name`, `kind=primary|hedge` | Calls sent to the inner service: primaries and hedges. |
//! | `tower_patterns.hedge.wins` | counter | count | `name` | Calls answered by a hedge rather than the primary. |
//! | `tower_patterns.fallback.calls` | counter | count | `name` | Calls through the layer. |
//! | `tower_patterns.fallback.fallbacks` | counter | count | `name`, `result=served|failed` | Failed calls handed to the fallback, by whether the fallback's answer was a success. |
//! | `tower_patterns.deadline.timeouts` | counter | count | `name` | Calls cut short with `Elapsed`. |
//! | `tower_patterns.chaos.injected` | counter | count | `name`, `fault=error|latency|substitute` | Faults injected, by kind. |
//! | `tower_patterns.cache.requests` | counter | count | `name`, `result=hit|miss|coalesced` | Lookups by result: hit (stale entries served included), miss (a load), joined a load in flight. `HttpCacheLayer` records hit and miss (a revalidation is a miss). |
//! | `tower_patterns.cache.stale_served` | counter | count | `name` | Stale entries served: while revalidating, or in place of a failed load. |
//! | `tower_patterns.cache.evictions` | counter | count | `name` | Entries evicted to stay within capacity. |
//! | `tower_patterns.cache.load.duration` | histogram | seconds | `name` | Time a miss spent loading from the inner service. |
//! | `tower_patterns.cache.remote.requests` | counter | count | `name`, `result=hit|miss|fallback` | Misses of tier 1 looked up in the remote tier, by result: hit (answered by it, at once or left by the lease holder), miss (this replica loads), fallback (the remote tier failed or the lease wait ran out; the inner service answered). |
//! | `tower_patterns.cache.remote.errors` | counter | count | `name`, `op=read|lease|write|release` | Calls to the remote store that failed (error, timeout, or its circuit breaker open), by operation. |
//! | `tower_patterns.cache.remote.bad_entries` | counter | count | `name` | Remote entries whose bytes did not decode (treated as misses). |
//! | `tower_patterns.cache.remote.too_large` | counter | count | `name` | Responses not written to the remote tier: larger than `max_entry_bytes`. |
//! | `tower_patterns.queue.depth` | gauge | count | `name` | Tasks waiting for a worker. |
//! | `tower_patterns.queue.running` | gauge | count | `name` | Tasks running on a worker. |
//! | `tower_patterns.queue.tasks` | counter | count | `name`, `outcome=completed|failed|panicked|cancelled|expired|retried|dead` | Tasks finished, by outcome; `PgQueue` counts a failed attempt put back to wait for its retry as retried, and a task that failed its last attempt (or did not decode) as dead. |
//! | `tower_patterns.queue.wait.duration` | histogram | seconds | `name` | Time a task spent queued before a worker took it. |
//! | `tower_patterns.queue.run.duration` | histogram | seconds | `name` | Time a task ran on its worker. |
//! | `tower_patterns.pool.size` | gauge | count | `name` | Resources the pool holds, idle and in use. |
//! | `tower_patterns.pool.in_use` | gauge | count | `name` | Resources checked out. |
//! | `tower_patterns.pool.acquire.duration` | histogram | seconds | `name` | Time a successful acquire took from its first wait: in line, recycling checks and creating included; one answered at once records 0. |
//! | `tower_patterns.pool.create_errors` | counter | count | `name` | Resources the manager failed to create. |
//! | `http.client.request.duration` | histogram | seconds | `name`, `status_class=1xx|2xx|3xx|4xx|5xx|error` | Time from sending a request to its response head (OpenTelemetry's HTTP client metric). |
//! | `http.client.response.body.size` | histogram | bytes | `name` | Bytes of each response body read to its end. |
//!
//! # Backends
//!
//! A cache with a remote tier
//! ([`build_with_remote`](crate::cache::CacheLayerBuilder::build_with_remote))
//! records `tower_patterns.cache.remote.*` under the cache's name; tier 1
//! is the cache's own metrics. The circuit breaker in front of a
//! [`cache::RedisStore`](crate::cache::RedisStore) or a
//! [`rate_limit::RedisStore`](crate::rate_limit::RedisStore) records the
//! breaker's metrics, named `cache::RedisStore` or
//! `rate_limit::RedisStore` unless you pass your own named breaker.
//!
//! [`PgQueue`](crate::queue::backend::postgres::PgQueue) records the task
//! queue's metrics under its `.name(..)` (default: its table's name), as
//! this process sees them: `running` counts the tasks this process holds
//! (prefetched ones included) and the outcomes are this process's (a
//! failed attempt put back is `retried`; a task past its last attempt,
//! or whose payload did not decode, is `dead`; `cancelled` counts
//! cancellations made through this handle). `depth` is the whole table's:
//! pending tasks that are due, counted by a query every `poll_interval`
//! while the workers run; every process with workers reports it, so
//! aggregate it with `max`, not `sum`. The wait is from the time a task
//! was due (by the server's clock) to its start.

pub(crate) mod instruments;
pub(crate) mod sets;
mod table;

pub use table::{Kind, Metric, TABLE};

pub(crate) use instruments::{Elapsed, Instruments};
pub(crate) use sets::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// The docs' table and [`TABLE`] list the same metrics, in the same
    /// order, with the same type, unit, labels and meaning.
    #[test]
    fn docs_table_matches_the_table() {
        let docs = include_str!("mod.rs");
        let rows: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("//! | `"))
            .collect();
        assert_eq!(rows.len(), TABLE.len(), "one docs row per metric");
        for (row, m) in rows.iter().zip(TABLE) {
            let unit = match m.unit {
                ::metrics::Unit::Seconds => "seconds",
                ::metrics::Unit::Bytes => "bytes",
                _ => "count",
            };
            let labels: Vec<String> = m.labels.iter().map(|l| format!("`{l}`")).collect();
            let want = format!(
                "{}` | {} | {unit} | {} | {} |",
                m.name,
                m.kind.as_str(),
                labels.join(", "),
                m.help
            );
            assert_eq!(*row, want, "docs row for {}", m.name);
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = TABLE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }
}
