//! [`RedisStore`]: a [`RateLimitStore`] on Redis, so replicas share one
//! quota per key (feature `redis`). The docs are on the type (this module
//! is private; its items are re-exported by `rate_limit`).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::store::{Admission, Quota, RateLimitStore, StoreFuture};
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer};
use crate::error::ConfigError;
use crate::redis_link::{Link, LinkSettings};

/// The GCRA script (commented Lua, beside this file).
const SCRIPT: &str = include_str!("redis_gcra.lua");

/// The largest value (microseconds) sent to the script: Lua's doubles hold
/// every integer below 2^53, and a TAT is now + at most two of these.
const MAX_US: u64 = 1 << 50;

const COMPONENT: &str = "rate_limit::RedisStore";

/// The default key prefix.
const DEFAULT_PREFIX: &str = "tower-patterns:rl:";
/// The default per-call timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);

/// A rate-limit store on Redis, shared by every replica that points at the
/// same server (feature `redis`).
///
///
/// Each [`acquire`](RateLimitStore::acquire) runs one Lua script on the
/// server (loaded once, then called by its SHA1 with `EVALSHA`; reloaded
/// when the server answers `NOSCRIPT`, after a restart or a
/// `SCRIPT FLUSH`). The script is the GCRA of the in-process limiter, on
/// the **server's clock** (`TIME`), so replicas with skewed clocks agree;
/// it touches one key, `prefix + key`, so it runs on Redis Cluster. The
/// key holds the cell's theoretical arrival time and expires when the cell
/// is idle again, so idle keys vanish from Redis on their own. Times on the
/// server are microseconds (`TIME`'s resolution): the quota's interval is
/// rounded up to a whole microsecond (never faster than asked), `max_wait`
/// down, and waits come back as whole microseconds.
///
/// A Redis that is down or slow must not stall the calls it limits:
///
/// - **Lazy connection.** [`build`](RedisStoreBuilder::build) only checks
///   the URL; the first call connects, and a connection that fails is
///   re-established by a later call (the redis crate's `ConnectionManager`).
/// - **A timeout per call** ([`timeout`](RedisStoreBuilder::timeout),
///   default 50 ms) bounds connecting and the round trip.
/// - **Our [circuit breaker](crate::circuit_breaker)** around the calls
///   ([`circuit_breaker`](RedisStoreBuilder::circuit_breaker), default:
///   open after 5 failures in a row, probe again after 1 s): while Redis is
///   down, calls fail at once with [`Open`](crate::circuit_breaker::Open)
///   instead of each waiting for the timeout.
///
/// A failed call is an `Err` (the [`redis::RedisError`], an
/// [`io::ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut) error, or
/// [`Open`](crate::circuit_breaker::Open)); the layer then fails open or
/// closed as configured. [`RedisStore::stats`] counts calls, decisions and
/// each kind of failure.
///
/// URLs: `redis://host:port`, `redis://host:port/db`,
/// `redis://user:password@host:port/db` (ACL users; `redis://:password@..`
/// for `requirepass`), `redis+unix:///path/to/socket`. `rediss://` (TLS)
/// needs the crate's `tls` feature as well (the redis crate's rustls
/// support, on the rustls with `ring` that `tls` already brings; a program
/// that also enables rustls's `aws-lc-rs` must install a default
/// `CryptoProvider`); without it `build` refuses the URL.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_patterns::rate_limit::{Admission, Quota, RateLimitStore, RedisStore};
///
/// # async fn demo(quota: Quota) -> Result<(), tower_patterns::BoxError> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379/0")
///     .key_prefix("my-service:rl:")
///     .timeout(Duration::from_millis(20))
///     .build()?;
///
/// // One call for the key "tenant-42" (Redis key "my-service:rl:tenant-42"),
/// // waiting at most 100 ms for its slot.
/// match store.acquire(&"tenant-42", quota, Duration::from_millis(100)).await? {
///     Admission::Go { wait } => tokio::time::sleep(wait).await,
///     Admission::Refused { retry_after } => println!("over quota; retry in {retry_after:?}"),
/// }
/// println!("{:?}", store.stats());
/// # Ok(())
/// # }
/// ```
///
/// Building checks the URL and the settings without connecting:
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::rate_limit::RedisStore;
///
/// assert!(RedisStore::builder("redis://user:secret@127.0.0.1:6379/2").build().is_ok());
/// let err = RedisStore::builder("mysql://127.0.0.1").build().unwrap_err();
/// assert_eq!(err.field(), "url");
/// let err = RedisStore::builder("redis://127.0.0.1")
///     .timeout(Duration::ZERO)
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "timeout");
/// ```
///
/// Cheap to clone: clones share the connection, the breaker and the stats.
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    script: Arc<redis::Script>,
    prefix: Arc<str>,
    counters: Arc<Counters>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.link.timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`]; from [`RedisStore::builder`].
#[must_use]
#[derive(Debug)]
pub struct RedisStoreBuilder {
    settings: LinkSettings,
}

/// A snapshot of a [`RedisStore`]'s counters, from [`RedisStore::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStoreStats {
    /// Calls to [`acquire`](RateLimitStore::acquire) that finished (an
    /// answer or an error); a call dropped before it finished is not counted.
    pub calls: u64,
    /// Calls that took a slot ([`Admission::Go`]).
    pub admitted: u64,
    /// Calls over the quota ([`Admission::Refused`]).
    pub refused: u64,
    /// Calls that failed, for any reason: the sum of the three below.
    pub errors: u64,
    /// Failures that Redis or the connection returned (refused connection,
    /// broken pipe, authentication, script error).
    pub redis_errors: u64,
    /// Calls that got no answer within the [timeout](RedisStoreBuilder::timeout).
    pub timeouts: u64,
    /// Calls the open circuit breaker failed at once, without touching Redis.
    pub rejected_by_breaker: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    admitted: AtomicU64,
    refused: AtomicU64,
}

impl RedisStore {
    /// A builder for a store on the Redis server at `url` (see the
    /// [type docs](RedisStore) for the URL forms). Defaults: key prefix
    /// `"tower-patterns:rl:"`, timeout 50 ms, breaker open after 5 failures
    /// in a row for 1 s.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            settings: LinkSettings::new(url.into(), DEFAULT_PREFIX, DEFAULT_TIMEOUT),
        }
    }

    /// A snapshot of the counters, shared by every clone.
    pub fn stats(&self) -> RedisStoreStats {
        let c = &*self.counters;
        let [redis_errors, timeouts, rejected_by_breaker] = self.link.counters.get();
        RedisStoreStats {
            calls: c.calls.load(Ordering::Relaxed),
            admitted: c.admitted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            errors: redis_errors + timeouts + rejected_by_breaker,
            redis_errors,
            timeouts,
            rejected_by_breaker,
        }
    }

    /// A handle on the circuit breaker in front of Redis (its state, its
    /// stats, forcing it open or closed).
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.link.breaker()
    }

    /// The Redis key that holds `key`'s cell: the prefix, then `key`.
    pub fn redis_key(&self, key: &impl fmt::Display) -> String {
        format!("{}{}", self.prefix, key)
    }
}

impl RedisStoreBuilder {
    /// The prefix of every Redis key this store writes (default
    /// `"tower-patterns:rl:"`); the key of a cell is the prefix followed by
    /// the limit's key as [`Display`](fmt::Display) prints it. Give two
    /// limits that must not share cells different prefixes. With Redis
    /// Cluster, a `{hash tag}` in the prefix puts every cell in one slot
    /// (rarely what you want).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// The longest one call waits for Redis, connecting included (default
    /// 50 ms, more than zero). A call that takes longer fails with an
    /// [`io::ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut) error and
    /// counts as a failure for the breaker.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The circuit breaker in front of Redis (default
    /// `CircuitBreakerLayer::consecutive(5, Duration::from_secs(1))`: open
    /// after 5 failures in a row, one probe call after 1 s). Every failure
    /// of a call counts (timeouts and Redis errors alike). The default's
    /// metrics carry `name="rate_limit::RedisStore"`. A fresh breaker per
    /// store: pass a layer used nowhere else.
    pub fn circuit_breaker(mut self, breaker: CircuitBreakerLayer) -> Self {
        self.settings.breaker = Some(breaker);
        self
    }

    /// The store, without connecting: the first call connects.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a URL the redis crate cannot parse (field
    /// `url`; `rediss://` without the `tls` feature is one) or a zero
    /// timeout (field `timeout`).
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        let (link, prefix) = self.settings.link(COMPONENT)?;
        Ok(RedisStore {
            link,
            script: Arc::new(redis::Script::new(SCRIPT)),
            prefix: prefix.into(),
            counters: Arc::new(Counters::default()),
        })
    }
}

/// The script's arguments for `quota` and `max_wait`, in microseconds:
/// `[interval, tolerance, max_wait]`. The interval rounds up (never faster
/// than the quota), `max_wait` down (never a longer wait than allowed).
fn script_args(quota: Quota, max_wait: Duration) -> [u64; 3] {
    let interval = quota.interval().as_nanos().div_ceil(1_000).max(1);
    let interval = interval.min(u128::from(MAX_US)) as u64;
    let tolerance = interval
        .saturating_mul(u64::from(quota.burst().max(1) - 1))
        .min(MAX_US);
    let max_wait = (max_wait.as_micros()).min(u128::from(MAX_US)) as u64;
    [interval, tolerance, max_wait]
}

impl<K: fmt::Display> RateLimitStore<K> for RedisStore {
    fn acquire(&self, key: &K, quota: Quota, max_wait: Duration) -> StoreFuture {
        let key = self.redis_key(key);
        let [interval, tolerance, max_wait] = script_args(quota, max_wait);
        let script = self.script.clone();
        let link = self.link.clone();
        let counters = self.counters.clone();
        Box::pin(async move {
            let result: Result<(u8, u64), _> = link
                .run(move |mut conn| async move {
                    script
                        .key(key)
                        .arg(interval)
                        .arg(tolerance)
                        .arg(max_wait)
                        .invoke_async(&mut conn)
                        .await
                })
                .await;
            counters.calls.fetch_add(1, Ordering::Relaxed);
            let (taken, wait) = result?;
            let wait = Duration::from_micros(wait);
            Ok(if taken == 1 {
                counters.admitted.fetch_add(1, Ordering::Relaxed);
                Admission::Go { wait }
            } else {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                Admission::Refused { retry_after: wait }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::store::MemoryStore;

    /// The Redis of `.ci/redis.sh`; skipped without it, except under CI.
    fn redis_url() -> Option<String> {
        match std::env::var("TOWER_PATTERNS_REDIS_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => {
                panic!("TOWER_PATTERNS_REDIS_URL is not set under CI: bash .ci/redis.sh")
            }
            _ => {
                eprintln!("skipped: TOWER_PATTERNS_REDIS_URL not set (bash .ci/redis.sh)");
                None
            }
        }
    }

    /// The same calls on the in-memory store and on Redis, alternately, on
    /// the wall clock: the same decision each time, and the same wait up to
    /// the time gone by since the first call (each store measures from its
    /// own first call) and the server clock's microsecond.
    #[tokio::test]
    async fn decides_like_the_memory_store() {
        let Some(url) = redis_url() else { return };
        let redis = RedisStore::builder(url)
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let memory = MemoryStore::new(16);
        let key = format!(
            "unit-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        );
        // 10 a second, burst 3: interval 100 ms, tolerance 200 ms.
        let quota = Quota::new(10, Duration::from_secs(1), 3).unwrap();
        let ms = Duration::from_millis;
        let max_waits = [0, 0, 0, 0, 0, 1_000, 1_000, 150, 1_000, 0, 50];
        let start = std::time::Instant::now();
        for (step, max_wait) in max_waits.into_iter().enumerate() {
            let m = memory.acquire(&key, quota, ms(max_wait)).await.unwrap();
            let r = redis.acquire(&key, quota, ms(max_wait)).await.unwrap();
            let slack = start.elapsed() + Duration::from_micros(1);
            let close = |a: Duration, b: Duration| a.abs_diff(b) <= slack;
            let same = match (m, r) {
                (Admission::Go { wait: a }, Admission::Go { wait: b }) => close(a, b),
                (Admission::Refused { retry_after: a }, Admission::Refused { retry_after: b }) => {
                    close(a, b)
                }
                _ => false,
            };
            assert!(
                same,
                "step {step}: memory {m:?}, redis {r:?} (slack {slack:?})"
            );
        }
        assert_eq!(redis.stats().admitted, 6);
    }

    fn quota(count: u32, period: Duration, burst: u32) -> Quota {
        Quota {
            count,
            period,
            burst,
        }
    }

    #[test]
    fn url_forms() {
        for url in [
            "redis://127.0.0.1",
            "redis://127.0.0.1:6379/2",
            "redis://limiter:hunter2@127.0.0.1:6379/0",
            "redis://:s3cret@127.0.0.1",
            "redis+unix:///run/redis.sock",
        ] {
            assert!(RedisStore::builder(url).build().is_ok(), "{url}");
        }
        let tls = RedisStore::builder("rediss://127.0.0.1:6380").build();
        assert_eq!(tls.is_ok(), cfg!(feature = "tls"));
        let err = RedisStore::builder("redis://:secret@[::1")
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "url");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn arguments_are_microseconds_rounded_safely() {
        // 10 per second, burst 3: 100 ms interval, 200 ms tolerance.
        let q = quota(10, Duration::from_secs(1), 3);
        assert_eq!(
            script_args(q, Duration::from_millis(150)),
            [100_000, 200_000, 150_000]
        );
        // 3 per second: 333_333_333.. ns rounds up to 333_334 us; max_wait down.
        let q = quota(3, Duration::from_secs(1), 2);
        assert_eq!(
            script_args(q, Duration::from_nanos(1_999)),
            [333_334, 333_334, 1]
        );
        // Sub-microsecond intervals are one microsecond.
        let q = quota(u32::MAX, Duration::from_secs(1), 1);
        assert_eq!(script_args(q, Duration::ZERO), [1, 0, 0]);
        // Huge values are clamped where Lua's doubles are still exact.
        let q = quota(1, Duration::MAX, u32::MAX);
        assert_eq!(script_args(q, Duration::MAX), [MAX_US, MAX_US, MAX_US]);
    }
}
