//! The demo's client stack, shared by `examples/demo.rs`,
//! `tests/end_to_end.rs` and `benches/http_stack.rs` (each includes this
//! file with `#[path]`, so all three run exactly the same stack).
//!
//! ```text
//! HttpCache    RFC 9111, private (one user's client): what the server's
//!              Cache-Control allows, revalidated with ETag / Last-Modified
//!  -> Retry     exponential backoff, honours Retry-After (capped)
//!  -> CircuitBreaker   opens after N failures in a row
//!  -> ConcurrencyLimit at most M requests on the wire
//!  -> Collect   HttpClient, body read to the end into `Full<Bytes>`
//! ```
//!
//! Why `fetch::Collect` sits at the bottom: reading the body inside the
//! limit means the permit covers the whole exchange and a body cut short
//! is a failure that retry and the breaker see. The answers,
//! `http::Response<HttpCacheBody<Full<Bytes>>>`, are still HTTP responses,
//! so `HttpClassify`, `fetch::JsonLayer` and `paginate::json_link_paginator`
//! work on top of the stack unchanged.
//!
//! One classifier, [`StackClassify`], decides what a failure is for every
//! layer: `HttpClassify` (5xx, 429, 408 and transport errors fail; other
//! 4xx are ignored), except that the breaker's own `Open` error is
//! *ignored*: it is not retried (the point of an open breaker is to fail
//! fast). The cache decides by the protocol alone (it answers from a
//! stored response within its `stale-if-error` when the layers below
//! fail).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tokio::time::Instant;
use tower::{BoxError, Layer};
use tower_patterns::circuit_breaker::{
    CircuitBreaker, CircuitBreakerHandle as BreakerHandle, CircuitBreakerLayer, Open, State,
};
use tower_patterns::classify::{Classify, HttpClassify, Outcome};
use tower_patterns::fetch::{Collect, CollectLayer, HttpClient};
use tower_patterns::http_cache::{
    HttpCache, HttpCacheBody, HttpCacheHandle, HttpCacheLayer, HttpCacheStats,
};
use tower_patterns::limit::{ConcurrencyLimit, ConcurrencyLimitLayer, LimitStats};
use tower_patterns::retry::{Backoff, Jitter, Retry, RetryBudget, RetryLayer, RetryStats};

/// What the stack takes.
pub type Req = Request<Full<Bytes>>;
/// What the layers below the cache answer: a response whose body has been
/// read.
pub type Collected = Response<Full<Bytes>>;
/// What the stack answers: that response, from the cache or through it.
pub type Res = Response<HttpCacheBody<Full<Bytes>>>;

/// The whole stack, top to bottom.
pub type Stack = HttpCache<
    Retry<CircuitBreaker<ConcurrencyLimit<Collect<HttpClient>>, StackClassify>, StackClassify>,
>;

/// `HttpClassify`, plus: the breaker's `Open` error is ignored (not
/// retried, not cached, and the breaker itself never sees it).
#[derive(Clone, Copy, Debug, Default)]
pub struct StackClassify;

impl<B> Classify<Response<B>, BoxError> for StackClassify {
    fn classify(&self, result: &Result<Response<B>, BoxError>) -> Outcome {
        match result {
            Err(e) if e.downcast_ref::<Open>().is_some() => Outcome::Ignored,
            other => HttpClassify.classify(other),
        }
    }

    fn retry_after(&self, result: &Result<Response<B>, BoxError>) -> Option<Duration> {
        HttpClassify.retry_after(result)
    }
}

/// The knobs of the stack.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Total attempts per request (first included).
    pub attempts: u32,
    /// First backoff delay (doubles per retry).
    pub base_delay: Duration,
    /// Cap on any wait, `Retry-After` included.
    pub max_delay: Duration,
    /// Jitter on the backoff.
    pub jitter: Jitter,
    /// Whether retries are limited by a retry budget (the default one).
    pub budget: bool,
    /// Failures in a row that open the breaker.
    pub failures_to_open: u32,
    /// How long the breaker stays open before a probe.
    pub open_duration: Duration,
    /// Requests on the wire at once.
    pub concurrency: usize,
    /// The client's whole-request timeout.
    pub timeout: Duration,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(500),
            jitter: Jitter::Full,
            budget: true,
            failures_to_open: 5,
            open_duration: Duration::from_secs(2),
            concurrency: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One breaker state change, with the time since the stack was built.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition {
    /// Time since [`build`] (tokio time).
    pub at: Duration,
    /// State left.
    pub from: State,
    /// State entered.
    pub to: State,
}

/// The stack plus handles on every layer's state.
pub struct DemoStack {
    /// The service; clone it freely (clones share every layer's state).
    pub svc: Stack,
    /// The client at the bottom (for `stream_body` and its stats).
    pub client: HttpClient,
    /// Cache statistics and invalidation.
    pub cache: HttpCacheHandle,
    /// Retry statistics.
    pub retry: RetryLayer<StackClassify>,
    /// Breaker state and statistics.
    pub breaker: BreakerHandle,
    /// Limit statistics.
    pub limit: ConcurrencyLimitLayer,
    /// Breaker transitions so far, in order.
    pub transitions: Arc<Mutex<Vec<Transition>>>,
    /// When the stack was built.
    pub started: Instant,
}

impl DemoStack {
    /// Builds the stack over a fresh `HttpClient`.
    pub fn build(config: &StackConfig) -> Result<DemoStack, BoxError> {
        let client = HttpClient::builder().timeout(config.timeout).build()?;
        Self::build_with(client, config)
    }

    /// Builds the stack over `client`.
    pub fn build_with(client: HttpClient, config: &StackConfig) -> Result<DemoStack, BoxError> {
        let started = Instant::now();
        let transitions = Arc::new(Mutex::new(Vec::new()));
        let log = transitions.clone();

        // One user's client: a private cache (`private` answers are kept too).
        let cache = HttpCacheLayer::builder()
            .shared(false)
            .max_entries(10_000)
            .build()?;
        let mut retry = RetryLayer::builder()
            .max_attempts(config.attempts)
            .backoff(
                Backoff::exponential(config.base_delay)
                    .max_delay(config.max_delay)
                    .jitter(config.jitter),
            )
            .classify(StackClassify);
        if config.budget {
            retry = retry.budget(RetryBudget::default());
        }
        let retry = retry.build()?;
        let breaker = CircuitBreakerLayer::builder()
            .consecutive_failures(config.failures_to_open)
            .open_duration(config.open_duration)
            .classify(StackClassify)
            .on_state_change(move |change| {
                let at = started.elapsed();
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Transition {
                        at,
                        from: change.from,
                        to: change.to,
                    });
            })
            .build()?;
        let limit = ConcurrencyLimitLayer::new(config.concurrency);

        let svc = cache.layer(
            retry.layer(breaker.layer(limit.layer(CollectLayer::new().layer(client.clone())))),
        );
        Ok(DemoStack {
            svc,
            client,
            cache: cache.handle(),
            retry,
            breaker: breaker.handle(),
            limit,
            transitions,
            started,
        })
    }

    /// A snapshot of every layer's counters.
    pub fn stats(&self) -> StackStats {
        StackStats {
            cache: self.cache.stats(),
            retry: self.retry.stats(),
            breaker_state: self.breaker.state(),
            breaker_rejected: self.breaker.stats().rejected,
            breaker_opened: self.breaker.stats().opened,
            limit: self.limit.stats(),
            client_requests: self.client.stats().requests,
        }
    }

    /// The breaker transitions so far.
    pub fn transitions(&self) -> Vec<Transition> {
        self.transitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Every layer's counters at one moment.
#[derive(Clone, Debug)]
pub struct StackStats {
    /// Cache hits, misses, revalidations, ...
    pub cache: HttpCacheStats,
    /// Attempts and retries.
    pub retry: RetryStats,
    /// Breaker state.
    pub breaker_state: State,
    /// Calls the open breaker failed fast.
    pub breaker_rejected: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Limit counters.
    pub limit: LimitStats,
    /// Requests the client sent.
    pub client_requests: u64,
}

/// A GET request for `url` (panics on a malformed URL: only for URLs the
/// caller built).
pub fn get(url: &str) -> Req {
    Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::new()))
        .expect("a valid URL")
}
