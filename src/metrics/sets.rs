//! Internal: the handles each layer and service records through, one
//! [`Set`](super::instruments::Set) per module, registered from the
//! entries of [`TABLE`](super::TABLE).

use super::instruments::instruments;
use super::table::*;

instruments! {
    /// [`RetryLayer`](crate::retry::RetryLayer).
    pub(crate) struct RetryMetrics {
        first: counter(RETRY_ATTEMPTS, "attempt" = "first"),
        retry: counter(RETRY_ATTEMPTS, "attempt" = "retry"),
        exhausted: counter(RETRY_GAVE_UP, "reason" = "exhausted"),
        budget: counter(RETRY_GAVE_UP, "reason" = "budget"),
        deadline: counter(RETRY_GAVE_UP, "reason" = "deadline"),
        not_replayable: counter(RETRY_GAVE_UP, "reason" = "not_replayable"),
    }
}

instruments! {
    /// [`CircuitBreakerLayer`](crate::circuit_breaker::CircuitBreakerLayer).
    pub(crate) struct BreakerMetrics {
        closed: gauge(BREAKER_STATE, "state" = "closed"),
        open: gauge(BREAKER_STATE, "state" = "open"),
        half_open: gauge(BREAKER_STATE, "state" = "half_open"),
        to_closed: counter(BREAKER_TRANSITIONS, "to" = "closed"),
        to_open: counter(BREAKER_TRANSITIONS, "to" = "open"),
        to_half_open: counter(BREAKER_TRANSITIONS, "to" = "half_open"),
        success: counter(BREAKER_CALLS, "outcome" = "success"),
        failure: counter(BREAKER_CALLS, "outcome" = "failure"),
        ignored: counter(BREAKER_CALLS, "outcome" = "ignored"),
        rejected: counter(BREAKER_CALLS, "outcome" = "rejected"),
        cancelled: counter(BREAKER_CALLS, "outcome" = "cancelled"),
    }
}

instruments! {
    /// [`ConcurrencyLimitLayer`](crate::limit::ConcurrencyLimitLayer) and
    /// [`AdaptiveLimitLayer`](crate::limit::AdaptiveLimitLayer).
    pub(crate) struct LimitMetrics {
        in_flight: gauge(LIMIT_IN_FLIGHT),
        limit: gauge(LIMIT_LIMIT),
        rejections: counter(LIMIT_REJECTIONS),
        wait: histogram(LIMIT_WAIT),
    }
}

instruments! {
    /// [`RateLimitLayer`](crate::rate_limit::RateLimitLayer).
    pub(crate) struct RateLimitMetrics {
        allowed: counter(RATE_LIMIT_REQUESTS, "outcome" = "allowed"),
        waited: counter(RATE_LIMIT_WAITS),
        limited: counter(RATE_LIMIT_REQUESTS, "outcome" = "limited"),
    }
}

instruments! {
    /// [`HedgeLayer`](crate::hedge::HedgeLayer).
    pub(crate) struct HedgeMetrics {
        primary: counter(HEDGE_REQUESTS, "kind" = "primary"),
        hedge: counter(HEDGE_REQUESTS, "kind" = "hedge"),
        wins: counter(HEDGE_WINS),
    }
}

instruments! {
    /// [`FallbackLayer`](crate::fallback::FallbackLayer).
    pub(crate) struct FallbackMetrics {
        calls: counter(FALLBACK_CALLS),
        served: counter(FALLBACK_USED, "result" = "served"),
        failed: counter(FALLBACK_USED, "result" = "failed"),
    }
}

instruments! {
    /// [`TimeoutLayer`](crate::deadline::TimeoutLayer).
    pub(crate) struct DeadlineMetrics {
        timeouts: counter(DEADLINE_TIMEOUTS),
    }
}

instruments! {
    /// [`ChaosLayer`](crate::chaos::ChaosLayer).
    pub(crate) struct ChaosMetrics {
        error: counter(CHAOS_INJECTED, "fault" = "error"),
        latency: counter(CHAOS_INJECTED, "fault" = "latency"),
        substitute: counter(CHAOS_INJECTED, "fault" = "substitute"),
    }
}

instruments! {
    /// [`CacheLayer`](crate::cache::CacheLayer).
    pub(crate) struct CacheMetrics {
        hit: counter(CACHE_REQUESTS, "result" = "hit"),
        miss: counter(CACHE_REQUESTS, "result" = "miss"),
        coalesced: counter(CACHE_REQUESTS, "result" = "coalesced"),
        stale: counter(CACHE_STALE),
        evictions: counter(CACHE_EVICTIONS),
        load: histogram(CACHE_LOAD),
    }
}

instruments! {
    /// The remote tier of a [`CacheLayer`](crate::cache::CacheLayer).
    pub(crate) struct CacheRemoteMetrics {
        hit: counter(CACHE_REMOTE_REQUESTS, "result" = "hit"),
        miss: counter(CACHE_REMOTE_REQUESTS, "result" = "miss"),
        fallback: counter(CACHE_REMOTE_REQUESTS, "result" = "fallback"),
        read_errors: counter(CACHE_REMOTE_ERRORS, "op" = "read"),
        lease_errors: counter(CACHE_REMOTE_ERRORS, "op" = "lease"),
        write_errors: counter(CACHE_REMOTE_ERRORS, "op" = "write"),
        release_errors: counter(CACHE_REMOTE_ERRORS, "op" = "release"),
        bad_entries: counter(CACHE_REMOTE_BAD_ENTRIES),
        too_large: counter(CACHE_REMOTE_TOO_LARGE),
    }
}

instruments! {
    /// [`TaskQueue`](crate::queue::TaskQueue).
    pub(crate) struct QueueMetrics {
        depth: gauge(QUEUE_DEPTH),
        running: gauge(QUEUE_RUNNING),
        completed: counter(QUEUE_TASKS, "outcome" = "completed"),
        failed: counter(QUEUE_TASKS, "outcome" = "failed"),
        panicked: counter(QUEUE_TASKS, "outcome" = "panicked"),
        cancelled: counter(QUEUE_TASKS, "outcome" = "cancelled"),
        expired: counter(QUEUE_TASKS, "outcome" = "expired"),
        wait: histogram(QUEUE_WAIT),
        run: histogram(QUEUE_RUN),
    }
}

/// Only with the `postgres` feature (nothing else records them).
#[cfg(feature = "postgres")]
mod pg_queue {
    use super::super::instruments::instruments;
    use super::super::table::*;

    instruments! {
        /// [`PgQueue`](crate::queue::backend::postgres::PgQueue): the
        /// [`TaskQueue`](crate::queue::TaskQueue)'s metrics, with its own outcomes.
        pub(crate) struct PgQueueMetrics {
            depth: gauge(QUEUE_DEPTH),
            running: gauge(QUEUE_RUNNING),
            completed: counter(QUEUE_TASKS, "outcome" = "completed"),
            retried: counter(QUEUE_TASKS, "outcome" = "retried"),
            dead: counter(QUEUE_TASKS, "outcome" = "dead"),
            cancelled: counter(QUEUE_TASKS, "outcome" = "cancelled"),
            wait: histogram(QUEUE_WAIT),
            run: histogram(QUEUE_RUN),
        }
    }
}
#[cfg(feature = "postgres")]
pub(crate) use pg_queue::PgQueueMetrics;

instruments! {
    /// [`Pool`](crate::pool::Pool).
    pub(crate) struct PoolMetrics {
        size: gauge(POOL_SIZE),
        in_use: gauge(POOL_IN_USE),
        wait: histogram(POOL_WAIT),
        create_errors: counter(POOL_CREATE_ERRORS),
    }
}

instruments! {
    /// [`HttpClient`](crate::fetch::HttpClient).
    pub(crate) struct FetchMetrics {
        s1xx: histogram(HTTP_DURATION, "status_class" = "1xx"),
        s2xx: histogram(HTTP_DURATION, "status_class" = "2xx"),
        s3xx: histogram(HTTP_DURATION, "status_class" = "3xx"),
        s4xx: histogram(HTTP_DURATION, "status_class" = "4xx"),
        s5xx: histogram(HTTP_DURATION, "status_class" = "5xx"),
        error: histogram(HTTP_DURATION, "status_class" = "error"),
        body_size: histogram(HTTP_BODY_SIZE),
    }
}

impl BreakerMetrics {
    /// Sets the state gauges to `state`: 1 for it, 0 for the others.
    pub(crate) fn set_state(&self, state: crate::rejection::State) {
        use crate::rejection::State;
        self.closed.set(u8::from(state == State::Closed));
        self.open.set(u8::from(state == State::Open));
        self.half_open.set(u8::from(state == State::HalfOpen));
    }

    /// Counts a transition into `to` and sets the state gauges.
    pub(crate) fn transition(&self, to: crate::rejection::State) {
        use crate::rejection::State;
        self.set_state(to);
        match to {
            State::Closed => &self.to_closed,
            State::Open => &self.to_open,
            State::HalfOpen => &self.to_half_open,
        }
        .increment(1);
    }
}
