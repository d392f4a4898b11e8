//! The table of every metric the crate records: one [`Metric`] per name.
//! The module docs' table is checked against [`TABLE`] by a test, and the
//! handles in `sets.rs` are registered from these entries.

use ::metrics::Unit;

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A monotonic count ([`metrics::Counter`](::metrics::Counter)).
    Counter,
    /// A value that goes up and down ([`metrics::Gauge`](::metrics::Gauge)).
    Gauge,
    /// A distribution of values
    /// ([`metrics::Histogram`](::metrics::Histogram)).
    Histogram,
}

impl Kind {
    /// `"counter"`, `"gauge"` or `"histogram"`, as in the docs' table.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric the crate records: its name, kind, unit, label keys and
/// meaning. Every metric carries the `name` label (the instance's
/// `.name(..)`); `labels` lists it first, then the others with their
/// values.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Metric {
    /// The metric's name, dotted as in OpenTelemetry (`tower_patterns.retry.attempts`);
    /// Prometheus exporters write dots as underscores.
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The unit: seconds for durations, bytes for sizes, a count otherwise.
    pub unit: Unit,
    /// The labels, each as `key` or `key=value|value|...`.
    pub labels: &'static [&'static str],
    /// What the metric measures.
    pub help: &'static str,
}

macro_rules! table {
    ($( $id:ident = $name:literal, $kind:ident, $unit:ident, [$($l:literal),*], $help:literal; )*) => {
        $( pub(crate) const $id: Metric = Metric {
            name: $name,
            kind: Kind::$kind,
            unit: Unit::$unit,
            labels: &[$($l),*],
            help: $help,
        }; )*
        /// Every metric the crate records, in the order of the docs' table.
        pub static TABLE: &[Metric] = &[$($id),*];
    };
}

table! {
    RETRY_ATTEMPTS = "tower_patterns.retry.attempts", Counter, Count,
        ["name", "attempt=first|retry"],
        "Calls sent to the inner service: first attempts and retries.";
    RETRY_GAVE_UP = "tower_patterns.retry.gave_up", Counter, Count,
        ["name", "reason=exhausted|budget|deadline|not_replayable"],
        "Failed calls not retried, by reason (budget is a retry budget refusal).";
    BREAKER_STATE = "tower_patterns.circuit_breaker.state", Gauge, Count,
        ["name", "state=closed|open|half_open"],
        "1 for the breaker's present state, 0 for the others.";
    BREAKER_TRANSITIONS = "tower_patterns.circuit_breaker.transitions", Counter, Count,
        ["name", "to=closed|open|half_open"],
        "State changes, by the state entered.";
    BREAKER_CALLS = "tower_patterns.circuit_breaker.calls", Counter, Count,
        ["name", "outcome=success|failure|ignored|rejected|cancelled"],
        "Calls by outcome; rejected calls failed fast with `Open`.";
    LIMIT_IN_FLIGHT = "tower_patterns.limit.in_flight", Gauge, Count,
        ["name"],
        "Calls holding a permit of a concurrency or adaptive limit.";
    LIMIT_LIMIT = "tower_patterns.limit.limit", Gauge, Count,
        ["name"],
        "The present limit (fixed, or the adaptive limit's latest estimate).";
    LIMIT_REJECTIONS = "tower_patterns.limit.rejections", Counter, Count,
        ["name"],
        "Calls refused with `Overloaded`.";
    LIMIT_WAIT = "tower_patterns.limit.wait.duration", Histogram, Seconds,
        ["name"],
        "Time a call waited for a permit, for calls that had to wait.";
    RATE_LIMIT_REQUESTS = "tower_patterns.rate_limit.requests", Counter, Count,
        ["name", "outcome=allowed|limited"],
        "Calls allowed (at once or after a wait) and calls refused with `RateLimited`.";
    RATE_LIMIT_WAITS = "tower_patterns.rate_limit.waits", Counter, Count,
        ["name"],
        "Allowed calls that waited for their slot.";
    HEDGE_REQUESTS = "tower_patterns.hedge.requests", Counter, Count,
        ["name", "kind=primary|hedge"],
        "Calls sent to the inner service: primaries and hedges.";
    HEDGE_WINS = "tower_patterns.hedge.wins", Counter, Count,
        ["name"],
        "Calls answered by a hedge rather than the primary.";
    FALLBACK_CALLS = "tower_patterns.fallback.calls", Counter, Count,
        ["name"],
        "Calls through the layer.";
    FALLBACK_USED = "tower_patterns.fallback.fallbacks", Counter, Count,
        ["name", "result=served|failed"],
        "Failed calls handed to the fallback, by whether the fallback's answer was a success.";
    DEADLINE_TIMEOUTS = "tower_patterns.deadline.timeouts", Counter, Count,
        ["name"],
        "Calls cut short with `Elapsed`.";
    CHAOS_INJECTED = "tower_patterns.chaos.injected", Counter, Count,
        ["name", "fault=error|latency|substitute"],
        "Faults injected, by kind.";
    CACHE_REQUESTS = "tower_patterns.cache.requests", Counter, Count,
        ["name", "result=hit|miss|coalesced"],
        "Lookups by result: hit (stale entries served included), miss (a load), joined a load in flight. `HttpCacheLayer` records hit and miss (a revalidation is a miss).";
    CACHE_STALE = "tower_patterns.cache.stale_served", Counter, Count,
        ["name"],
        "Stale entries served: while revalidating, or in place of a failed load.";
    CACHE_EVICTIONS = "tower_patterns.cache.evictions", Counter, Count,
        ["name"],
        "Entries evicted to stay within capacity.";
    CACHE_LOAD = "tower_patterns.cache.load.duration", Histogram, Seconds,
        ["name"],
        "Time a miss spent loading from the inner service.";
    CACHE_REMOTE_REQUESTS = "tower_patterns.cache.remote.requests", Counter, Count,
        ["name", "result=hit|miss|fallback"],
        "Misses of tier 1 looked up in the remote tier, by result: hit (answered by it, at once or left by the lease holder), miss (this replica loads), fallback (the remote tier failed or the lease wait ran out; the inner service answered).";
    CACHE_REMOTE_ERRORS = "tower_patterns.cache.remote.errors", Counter, Count,
        ["name", "op=read|lease|write|release"],
        "Calls to the remote store that failed (error, timeout, or its circuit breaker open), by operation.";
    CACHE_REMOTE_BAD_ENTRIES = "tower_patterns.cache.remote.bad_entries", Counter, Count,
        ["name"],
        "Remote entries whose bytes did not decode (treated as misses).";
    CACHE_REMOTE_TOO_LARGE = "tower_patterns.cache.remote.too_large", Counter, Count,
        ["name"],
        "Responses not written to the remote tier: larger than `max_entry_bytes`.";
    QUEUE_DEPTH = "tower_patterns.queue.depth", Gauge, Count,
        ["name"],
        "Tasks waiting for a worker.";
    QUEUE_RUNNING = "tower_patterns.queue.running", Gauge, Count,
        ["name"],
        "Tasks running on a worker.";
    QUEUE_TASKS = "tower_patterns.queue.tasks", Counter, Count,
        ["name", "outcome=completed|failed|panicked|cancelled|expired|retried|dead"],
        "Tasks finished, by outcome; `PgQueue` counts a failed attempt put back to wait for its retry as retried, and a task that failed its last attempt (or did not decode) as dead.";
    QUEUE_WAIT = "tower_patterns.queue.wait.duration", Histogram, Seconds,
        ["name"],
        "Time a task spent queued before a worker took it.";
    QUEUE_RUN = "tower_patterns.queue.run.duration", Histogram, Seconds,
        ["name"],
        "Time a task ran on its worker.";
    POOL_SIZE = "tower_patterns.pool.size", Gauge, Count,
        ["name"],
        "Resources the pool holds, idle and in use.";
    POOL_IN_USE = "tower_patterns.pool.in_use", Gauge, Count,
        ["name"],
        "Resources checked out.";
    POOL_WAIT = "tower_patterns.pool.acquire.duration", Histogram, Seconds,
        ["name"],
        "Time a successful acquire took from its first wait: in line, recycling checks and creating included; one answered at once records 0.";
    POOL_CREATE_ERRORS = "tower_patterns.pool.create_errors", Counter, Count,
        ["name"],
        "Resources the manager failed to create.";
    HTTP_DURATION = "http.client.request.duration", Histogram, Seconds,
        ["name", "status_class=1xx|2xx|3xx|4xx|5xx|error"],
        "Time from sending a request to its response head (OpenTelemetry's HTTP client metric).";
    HTTP_BODY_SIZE = "http.client.response.body.size", Histogram, Bytes,
        ["name"],
        "Bytes of each response body read to its end.";
}
