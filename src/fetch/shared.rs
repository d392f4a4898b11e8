//! What every clone of an [`HttpClient`](super::HttpClient) and every body
//! it hands out share: the configuration and the counters behind
//! [`FetchStats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::header::HeaderValue;

/// The default body limit of every JSON and HTTP decoder in this crate
/// (10 MiB): [`HttpClientBuilder::max_body_bytes`](super::HttpClientBuilder::max_body_bytes),
/// [`JsonLayerBuilder::max_body_bytes`](super::JsonLayerBuilder::max_body_bytes)
/// and [`JsonPages::max_body_bytes`](crate::paginate::JsonPages::max_body_bytes).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 << 20;

pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub(crate) const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 32;
pub(crate) const DEFAULT_USER_AGENT: &str = concat!("tower-patterns/", env!("CARGO_PKG_VERSION"));

/// A client's settings, shared by its clones, its futures and its bodies.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) connect_timeout: Duration,
    pub(crate) timeout: Duration,
    pub(crate) max_body_bytes: u64,
    pub(crate) user_agent: HeaderValue,
    pub(crate) counters: Counters,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::metrics::Instruments<crate::metrics::FetchMetrics>,
}

/// Shared by every clone of a client; relaxed atomics, one cache line of
/// traffic per event.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) finished: AtomicU64,
    pub(crate) responses: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) transport_errors: AtomicU64,
    pub(crate) bodies_too_large: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> FetchStats {
        // `finished` is read first so `in_flight` never underflows.
        let finished = self.finished.load(Ordering::Relaxed);
        let requests = self.requests.load(Ordering::Relaxed);
        FetchStats {
            requests,
            in_flight: requests.saturating_sub(finished),
            responses: self.responses.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            bodies_too_large: self.bodies_too_large.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of an [`HttpClient`](super::HttpClient)'s counters (shared by
/// all its clones), from [`HttpClient::stats`](super::HttpClient::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchStats {
    /// Requests sent (not counting ones refused for an invalid URI).
    pub requests: u64,
    /// Requests waiting for their response head right now.
    pub in_flight: u64,
    /// Response heads received, whatever their status.
    pub responses: u64,
    /// Requests and bodies that ran out of time (connect timeouts included).
    pub timeouts: u64,
    /// Connect, TLS and I/O failures.
    pub transport_errors: u64,
    /// Bodies cut at `max_body_bytes`.
    pub bodies_too_large: u64,
}
