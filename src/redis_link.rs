//! Internal: one guarded link to Redis, shared by the Redis backends
//! ([`rate_limit::RedisStore`](crate::rate_limit::RedisStore) and
//! [`cache::RedisStore`](crate::cache::RedisStore)).
//!
//! A [`Link`] parses the URL without connecting, connects lazily through the
//! redis crate's `ConnectionManager` (which reconnects by itself), bounds
//! every operation with one timeout and puts our own circuit breaker in
//! front, so that a Redis that is down costs one fast check per call, not a
//! timeout per call. It counts what went wrong, by kind.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult, Value};
use tower_layer::Layer;
use tower_service::Service;

use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer, Open};
use crate::error::{check, ConfigError};
use crate::BoxError;

/// The failures of a link, by kind.
#[derive(Default)]
pub(crate) struct LinkCounters {
    pub(crate) redis_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) rejected_by_breaker: AtomicU64,
}

impl LinkCounters {
    /// `[redis_errors, timeouts, rejected_by_breaker]`.
    pub(crate) fn get(&self) -> [u64; 3] {
        [
            self.redis_errors.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
            self.rejected_by_breaker.load(Ordering::Relaxed),
        ]
    }
}

/// What the Redis stores' builders take: the URL, the key prefix, the
/// timeout and the breaker. Its `Debug` leaves the URL out (it may hold a
/// password).
pub(crate) struct LinkSettings {
    pub(crate) url: String,
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) breaker: Option<CircuitBreakerLayer>,
}

impl LinkSettings {
    pub(crate) fn new(url: String, prefix: &str, timeout: Duration) -> Self {
        LinkSettings {
            url,
            prefix: prefix.to_owned(),
            timeout,
            breaker: None,
        }
    }

    /// The link these settings describe, and the prefix.
    pub(crate) fn link(self, component: &'static str) -> Result<(Link, String), ConfigError> {
        let link = Link::new(component, &self.url, self.timeout, self.breaker)?;
        Ok((link, self.prefix))
    }
}

impl std::fmt::Debug for LinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSettings")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A guarded link to one Redis server. Cheap to clone: clones share the
/// connection, the breaker and the counters.
#[derive(Clone)]
pub(crate) struct Link {
    breaker: CircuitBreaker<Run>,
    conn: Arc<ConnShared>,
    pub(crate) client: redis::Client,
    pub(crate) timeout: Duration,
    pub(crate) counters: Arc<LinkCounters>,
}

impl Link {
    /// Checks `url` and `timeout` (errors name `component`), without
    /// connecting. `breaker`: default open after 5 failures in a row, 1 s,
    /// named `component`.
    pub(crate) fn new(
        component: &'static str,
        url: &str,
        timeout: Duration,
        breaker: Option<CircuitBreakerLayer>,
    ) -> Result<Link, ConfigError> {
        let timeout = check::nonzero(component, "timeout", timeout)?;
        let client = redis::Client::open(url).map_err(|err| {
            // The message, never the URL: it may hold a password.
            ConfigError::new(
                component,
                "url",
                "(not shown: it may hold a password)",
                format!(
                    "a redis://, rediss:// (feature `tls`) or redis+unix:// URL; the redis crate said: {err}"
                ),
            )
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            // Our own timeout bounds each call, connecting included: a
            // second timer per command would only cost a timer entry.
            .set_response_timeout(None)
            // Reconnect attempts are cheap but each holds callers until it
            // fails; the breaker, not the reconnect loop, spaces out retries.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let counters = Arc::new(LinkCounters::default());
        let conn = Arc::new(ConnShared {
            client: client.clone(),
            config,
            connection: Mutex::new(None),
            timeout,
            counters: counters.clone(),
        });
        // Named for the store, so its metrics (feature `metrics`) say whose
        // breaker it is: `name="cache::RedisStore"`.
        let breaker = breaker.unwrap_or_else(|| {
            CircuitBreakerLayer::builder()
                .consecutive_failures(5)
                .open_duration(Duration::from_secs(1))
                .name(component)
                .build()
                .expect("a fixed consecutive config is valid")
        });
        Ok(Link {
            breaker: breaker.layer(Run),
            conn,
            client,
            timeout,
            counters,
        })
    }

    /// A handle on the breaker in front of Redis.
    pub(crate) fn breaker(&self) -> CircuitBreakerHandle {
        self.breaker.handle()
    }

    /// Runs the operation `op` makes on a (cloned) connection, behind the
    /// breaker and the timeout, and converts its answer. Every failure is
    /// counted, by kind. One future, no boxes: the breaker judges the
    /// timed operation itself (see [`Run`]).
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, BoxError>
    where
        T: FromRedisValue,
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<Value>>,
    {
        match self.breaker.call_now(self.conn.timed(op)).await {
            Ok(value) => T::from_redis_value(value).map_err(|err| {
                self.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                BoxError::from(redis::RedisError::from(err))
            }),
            Err(err) => {
                if err.is::<Open>() {
                    self.counters
                        .rejected_by_breaker
                        .fetch_add(1, Ordering::Relaxed);
                }
                // `timed` counted the others (it knows timeouts from errors).
                Err(err)
            }
        }
    }

    /// Runs one command.
    pub(crate) async fn cmd<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, BoxError> {
        self.run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// Runs a pipeline of commands in one round trip.
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        pipe: redis::Pipeline,
    ) -> Result<T, BoxError> {
        self.run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
    }
}

// ---- The connection ------------------------------------------------------

/// The circuit breaker's inner service: "calling" it with an operation's
/// future hands that future back, not started, so the breaker admits the
/// operation (or fails it without running it) and judges its outcome.
#[derive(Clone, Copy)]
struct Run;

impl<F, T, E> Service<F> for Run
where
    F: Future<Output = Result<T, E>>,
{
    type Response = T;
    type Error = E;
    type Future = F;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, op: F) -> F {
        op
    }
}

/// The managed connection and what a call needs beside it.
struct ConnShared {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Made on the first call (it spawns a task, so it needs the runtime),
    /// then reconnects by itself on the failures it recognises; replaced by
    /// [`ConnShared::run`] on the others (see there). Held only to clone it
    /// out or swap it, never across an await.
    connection: Mutex<Option<ConnectionManager>>,
    timeout: Duration,
    counters: Arc<LinkCounters>,
}

impl ConnShared {
    /// `op` under the timeout, its failures counted by kind.
    async fn timed<F, Fut>(&self, op: F) -> Result<Value, BoxError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<Value>>,
    {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.run(op)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                // A connection attempt's own timeout: still a timeout.
                let counter = if err.is_timeout() {
                    &self.counters.timeouts
                } else {
                    &self.counters.redis_errors
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Err(err.into())
            }
            Err(_) => {
                self.counters.timeouts.fetch_add(1, Ordering::Relaxed);
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "Redis gave no answer within {timeout:?}; \
                         raise the store's timeout if Redis is slow but up"
                    ),
                )
                .into())
            }
        }
    }

    async fn run<F, Fut>(&self, op: F) -> RedisResult<Value>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<Value>>,
    {
        let connection = {
            let mut slot = self.connection.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(connection) => connection.clone(),
                None => {
                    let connection = ConnectionManager::new_lazy_with_config(
                        self.client.clone(),
                        self.config.clone(),
                    )?;
                    *slot = Some(connection.clone());
                    connection
                }
            }
        };
        let result = op(connection).await;
        if let Err(err) = &result {
            if broken(err) {
                // The redis crate's manager reconnects when it sees the
                // connection drop, but a connection cut in the middle of
                // a reply fails every later command with the same parse
                // error and is never replaced (a fault test found it
                // stuck for good). Drop it: the next call starts afresh.
                *self.connection.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
        }
        result
    }
}

/// Whether `err` says the connection itself is unusable (as opposed to an
/// error reply from a healthy server, or a value of the wrong type).
fn broken(err: &redis::RedisError) -> bool {
    matches!(err.kind(), redis::ErrorKind::Parse | redis::ErrorKind::Io)
        || err.is_connection_dropped()
        || err.is_unrecoverable_error()
}
