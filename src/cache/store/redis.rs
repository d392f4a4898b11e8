//! [`RedisStore`]: a [`RemoteStore`] on Redis, the cache tier every replica
//! shares (feature `redis`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::oneshot;

use super::remote::{Lease, LeaseToken, RemoteEvent, RemoteFuture, RemoteListener, RemoteStore};
use crate::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, State};
use crate::error::ConfigError;
use crate::redis_link::{Link, LinkSettings};
use crate::sync::lock;

const COMPONENT: &str = "cache::RedisStore";
const DEFAULT_PREFIX: &str = "tower-patterns:cache:";
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
/// Keys deleted per `SCAN` step of `clear`.
const SCAN_COUNT: usize = 500;

/// Deletes the lease if the token still holds it, then tells the listeners
/// (always: the value may be there even if the lease had expired).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
";

/// A [`RemoteListener`] held weakly.
type WeakListener = Weak<dyn Fn(RemoteEvent<'_>) + Send + Sync>;

/// A cache tier on Redis, shared by every replica that points at the same
/// server and key prefix (feature `redis`).
///
/// Plug it in with
/// [`CacheLayerBuilder::build_with_remote`](crate::cache::CacheLayerBuilder::build_with_remote):
/// the in-memory store stays in front (tier 1) and Redis behind it (tier 2).
///
/// - **Keys.** The value of cache key `k` lives at `prefix + "v:" + k`, its
///   lease at `prefix + "l:" + k`; every command touches one key, so Redis
///   Cluster works (except [`clear`](RemoteStore::clear), whose `SCAN` sees
///   one node). Redis expires values by itself (`PX` = fresh + stale).
/// - **Leases.** `SET NX PX` with a random token; released by a script that
///   deletes it only if the token still matches (compare-and-delete).
/// - **Broadcast.** Invalidations, clears and lease releases are published
///   on the channel `prefix + "events"`; each store subscribes (one more
///   connection, reconnected by itself with backoff) and tells its cache.
///   After a lost subscription it reports
///   [`RemoteEvent::Resync`](crate::cache::RemoteEvent::Resync): the cache
///   drops its tier 1, which may have missed invalidations.
/// - **Down or slow.** As the rate limit's
///   [`RedisStore`](crate::rate_limit::RedisStore): a lazy connection
///   (the redis crate's `ConnectionManager`), a [timeout](RedisStoreBuilder::timeout)
///   per call (default 50 ms) and our own
///   [circuit breaker](RedisStoreBuilder::circuit_breaker) in front (default:
///   open after 5 failures in a row for 1 s), so a dead Redis costs one fast
///   check per miss. [`RedisStore::stats`] counts failures by kind.
///
/// URLs: `redis://host:port/db`, `redis://user:password@host:port/db`,
/// `redis://:password@host`, `redis+unix:///path`, and `rediss://` with the
/// crate's `tls` feature.
///
/// ```no_run
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder};
/// use tower_patterns::cache::{CacheLayer, JsonCodec, RedisStore};
///
/// # async fn demo() -> Result<(), tower::BoxError> {
/// let redis = RedisStore::builder("redis://127.0.0.1:6379/0")
///     .key_prefix("my-service:users:")
///     .timeout(Duration::from_millis(20))
///     .build()?;
/// let layer = CacheLayer::<u64, String>::builder()
///     .key_fn(|id: &u64| *id)
///     .ttl(Duration::from_secs(60))
///     .build_with_remote(redis.clone(), JsonCodec)?;
/// let svc = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|id: u64| async move { Ok::<_, std::io::Error>(format!("user {id}")) }));
/// # let _ = svc;
/// println!("{:?}", redis.stats());
/// # Ok(())
/// # }
/// ```
///
/// Building checks the URL and the settings without connecting:
///
/// ```
/// use tower_patterns::cache::RedisStore;
///
/// assert!(RedisStore::builder("redis://user:secret@127.0.0.1:6379/2").build().is_ok());
/// assert_eq!(RedisStore::builder("mysql://x").build().unwrap_err().field(), "url");
/// ```
///
/// Cheap to clone: clones share the connections, the breaker and the stats.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    link: Link,
    prefix: String,
    channel: String,
    release: Arc<redis::Script>,
    /// Weak: a cache keeps its listener alive, and a dropped cache's is
    /// forgotten at the next event.
    listeners: Mutex<Vec<WeakListener>>,
    listening: AtomicBool,
    subscribed: AtomicBool,
    resyncs: AtomicU64,
    calls: AtomicU64,
    /// Dropped with the store: stops the subscriber task.
    stop: Mutex<Option<oneshot::Receiver<()>>>,
    _stop_tx: oneshot::Sender<()>,
}

/// Builds a [`RedisStore`]; from [`RedisStore::builder`].
#[must_use]
#[derive(Debug)]
pub struct RedisStoreBuilder {
    settings: LinkSettings,
}

/// A snapshot of a [`RedisStore`]'s counters, from [`RedisStore::stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStoreStats {
    /// Calls to Redis that finished (an answer or an error).
    pub calls: u64,
    /// Calls that failed, for any reason: the sum of the three below.
    pub errors: u64,
    /// Failures that Redis or the connection returned.
    pub redis_errors: u64,
    /// Calls that got no answer within the [timeout](RedisStoreBuilder::timeout).
    pub timeouts: u64,
    /// Calls the open circuit breaker failed at once, without touching Redis.
    pub rejected_by_breaker: u64,
    /// The breaker's state now.
    pub breaker: State,
    /// Whether the subscription to the events channel is up now.
    pub subscribed: bool,
    /// Times the subscription came back after it was lost (each one a
    /// [`RemoteEvent::Resync`](crate::cache::RemoteEvent::Resync)).
    pub resyncs: u64,
}

impl RedisStore {
    /// A builder for a store on the Redis server at `url` (see the
    /// [type docs](RedisStore) for the URL forms). Defaults: key prefix
    /// `"tower-patterns:cache:"`, timeout 50 ms, breaker open after 5
    /// failures in a row for 1 s.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            settings: LinkSettings::new(url.into(), DEFAULT_PREFIX, DEFAULT_TIMEOUT),
        }
    }

    /// A snapshot of the counters, shared by every clone.
    pub fn stats(&self) -> RedisStoreStats {
        let s = &*self.shared;
        let [redis_errors, timeouts, rejected_by_breaker] = s.link.counters.get();
        RedisStoreStats {
            calls: s.calls.load(Ordering::Relaxed),
            errors: redis_errors + timeouts + rejected_by_breaker,
            redis_errors,
            timeouts,
            rejected_by_breaker,
            breaker: s.link.breaker().state(),
            subscribed: s.subscribed.load(Ordering::Relaxed),
            resyncs: s.resyncs.load(Ordering::Relaxed),
        }
    }

    /// A handle on the circuit breaker in front of Redis.
    pub fn breaker(&self) -> CircuitBreakerHandle {
        self.shared.link.breaker()
    }

    /// The Redis key that holds the value of cache key `key`.
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}v:{key}", self.shared.prefix)
    }

    /// The value's key as a command argument ([`KeyArg`]).
    fn value_arg<'a>(&'a self, key: &'a str) -> KeyArg<'a> {
        KeyArg {
            prefix: &self.shared.prefix,
            kind: "v:",
            key,
        }
    }

    /// The lease's key as a command argument ([`KeyArg`]).
    fn lease_arg<'a>(&'a self, key: &'a str) -> KeyArg<'a> {
        KeyArg {
            prefix: &self.shared.prefix,
            kind: "l:",
            key,
        }
    }

    /// Starts the subscriber task once, when there is a runtime to run it.
    fn ensure_listening(&self) {
        let s = &*self.shared;
        if s.listening.load(Ordering::Relaxed) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(stop) = lock(&s.stop).take() else {
            return;
        };
        s.listening.store(true, Ordering::Relaxed);
        rt.spawn(subscriber(
            Arc::downgrade(&self.shared),
            s.link.client.clone(),
            s.channel.clone(),
            s.link.timeout.max(Duration::from_millis(500)),
            stop,
        ));
    }

    /// [`RemoteStore::get`], unboxed: the cache's remote tier calls it
    /// directly on its miss path.
    pub(crate) async fn read(&self, key: &str) -> Result<Option<Bytes>, crate::BoxError> {
        self.ensure_listening();
        let cmd = key_cmd("GET", self.value_arg(key), 0, 0);
        let v: Option<Vec<u8>> = self.counted(self.shared.link.cmd(cmd).await)?;
        Ok(v.map(Bytes::from))
    }

    fn counted<T>(&self, r: Result<T, crate::BoxError>) -> Result<T, crate::BoxError> {
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        r
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.shared.prefix)
            .field("timeout", &self.shared.link.timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The prefix of every Redis key (and of the events channel) this store
    /// uses (default `"tower-patterns:cache:"`). Caches that must not share
    /// entries need different prefixes; [`clear`](RemoteStore::clear)
    /// deletes only keys under it.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// The longest one call waits for Redis, connecting included (default
    /// 50 ms, more than zero). A call that takes longer fails and counts as
    /// a failure for the breaker.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The circuit breaker in front of Redis (default
    /// `CircuitBreakerLayer::consecutive(5, Duration::from_secs(1))`, whose
    /// metrics carry `name="cache::RedisStore"`: name your own to tell two
    /// stores apart). A fresh breaker per store: pass a layer used nowhere
    /// else.
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
        let (stop_tx, stop) = oneshot::channel();
        Ok(RedisStore {
            shared: Arc::new(Shared {
                link,
                channel: format!("{prefix}events"),
                prefix,
                release: Arc::new(redis::Script::new(RELEASE)),
                listeners: Mutex::new(Vec::new()),
                listening: AtomicBool::new(false),
                subscribed: AtomicBool::new(false),
                resyncs: AtomicU64::new(0),
                calls: AtomicU64::new(0),
                stop: Mutex::new(Some(stop)),
                _stop_tx: stop_tx,
            }),
        })
    }
}

/// Escapes glob characters for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `prefix + kind + key`: a Redis key written straight into the command
/// that uses it, with no string of its own (a read is on the miss path).
#[derive(Clone, Copy)]
struct KeyArg<'a> {
    prefix: &'a str,
    kind: &'static str,
    key: &'a str,
}

impl KeyArg<'_> {
    fn len(self) -> usize {
        self.prefix.len() + self.kind.len() + self.key.len()
    }
}

impl redis::ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in [self.prefix, self.kind, self.key] {
            // A command's buffer is a `Vec`: writing to it cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// A command named `name` whose first argument is `key`, its buffer sized
/// for `extra_args` more arguments of `extra_bytes` in all.
fn key_cmd(name: &str, key: KeyArg<'_>, extra_args: usize, extra_bytes: usize) -> redis::Cmd {
    let mut cmd = redis::Cmd::with_capacity(2 + extra_args, name.len() + key.len() + extra_bytes);
    cmd.arg(name).arg(key);
    cmd
}

fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

impl RemoteStore for RedisStore {
    fn get<'a>(&'a self, key: &'a str) -> RemoteFuture<'a, Option<Bytes>> {
        Box::pin(self.read(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> RemoteFuture<'a, ()> {
        self.ensure_listening();
        let mut cmd = key_cmd("SET", self.value_arg(key), 3, value.len() + 24);
        cmd.arg(value.as_ref());
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ms(ttl));
        }
        Box::pin(async move {
            let () = self.counted(self.shared.link.cmd(cmd).await)?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> RemoteFuture<'a, ()> {
        self.ensure_listening();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.value_arg(key)).ignore();
        pipe.cmd("PUBLISH")
            .arg(&self.shared.channel)
            .arg(format!("i{key}"))
            .ignore();
        Box::pin(async move {
            let () = self.counted(self.shared.link.pipe(pipe).await)?;
            Ok(())
        })
    }

    fn clear(&self) -> RemoteFuture<'_, ()> {
        self.ensure_listening();
        Box::pin(async move {
            let pattern = format!("{}*", glob_escape(&self.shared.prefix));
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let (next, keys): (u64, Vec<Vec<u8>>) =
                    self.counted(self.shared.link.cmd(scan).await)?;
                if !keys.is_empty() {
                    // One key per command: fine on Redis Cluster too.
                    let mut pipe = redis::pipe();
                    for k in keys {
                        pipe.cmd("UNLINK").arg(k).ignore();
                    }
                    let () = self.counted(self.shared.link.pipe(pipe).await)?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(&self.shared.channel).arg("c");
            let _: i64 = self.counted(self.shared.link.cmd(publish).await)?;
            Ok(())
        })
    }

    fn lease<'a>(&'a self, key: &'a str, ttl: Duration) -> RemoteFuture<'a, Lease> {
        self.ensure_listening();
        let token = LeaseToken::random();
        let lease_key = self.lease_arg(key);
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(lease_key)
            .arg(token.to_string())
            .arg("NX")
            .arg("PX")
            .arg(ms(ttl));
        pipe.cmd("PTTL").arg(lease_key);
        Box::pin(async move {
            let (set, pttl): (Option<String>, i64) =
                self.counted(self.shared.link.pipe(pipe).await)?;
            Ok(match set {
                Some(_) => Lease::Acquired(token),
                None => Lease::Busy {
                    expires_in: u64::try_from(pttl).ok().map(Duration::from_millis),
                },
            })
        })
    }

    fn release<'a>(&'a self, key: &'a str, token: LeaseToken) -> RemoteFuture<'a, ()> {
        self.ensure_listening();
        let script = self.shared.release.clone();
        let lease_key = format!("{}l:{key}", self.shared.prefix);
        let channel = self.shared.channel.clone();
        let message = format!("r{key}");
        Box::pin(async move {
            let r: Result<i64, _> = self
                .shared
                .link
                .run(move |mut conn| async move {
                    script
                        .key(lease_key)
                        .arg(token.to_string())
                        .arg(channel)
                        .arg(message)
                        .invoke_async(&mut conn)
                        .await
                })
                .await;
            self.counted(r)?;
            Ok(())
        })
    }

    fn listen(&self, listener: RemoteListener) {
        lock(&self.shared.listeners).push(Arc::downgrade(&listener));
        self.ensure_listening();
    }
}

// ---- The subscriber --------------------------------------------------------

fn dispatch(shared: &Shared, payload: &[u8]) {
    let Ok(text) = std::str::from_utf8(payload) else {
        return;
    };
    let event = match text.split_at_checked(1) {
        Some(("i", key)) => RemoteEvent::Invalidated(key),
        Some(("r", key)) => RemoteEvent::Released(key),
        Some(("c", "")) => RemoteEvent::Cleared,
        _ => return,
    };
    tell(shared, event);
}

fn tell(shared: &Shared, event: RemoteEvent<'_>) {
    let listeners: Vec<RemoteListener> = {
        let mut all = lock(&shared.listeners);
        all.retain(|l| l.strong_count() > 0);
        all.iter().filter_map(Weak::upgrade).collect()
    };
    for l in listeners {
        l(event);
    }
}

/// Subscribes to the events channel and tells the listeners, until the
/// store is dropped; reconnects with backoff when the subscription is lost.
async fn subscriber(
    shared: Weak<Shared>,
    client: redis::Client,
    channel: String,
    connect_timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut lost = false;
    let mut backoff = Duration::from_millis(50);
    loop {
        let connect = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let connected = tokio::select! {
            _ = &mut stop => return,
            r = tokio::time::timeout(connect_timeout, connect) => r,
        };
        if let Ok(Ok(pubsub)) = connected {
            {
                let Some(s) = shared.upgrade() else { return };
                s.subscribed.store(true, Ordering::Relaxed);
                if lost {
                    s.resyncs.fetch_add(1, Ordering::Relaxed);
                    tell(&s, RemoteEvent::Resync);
                }
            }
            backoff = Duration::from_millis(50);
            let mut messages = pubsub.into_on_message();
            loop {
                let msg = tokio::select! {
                    _ = &mut stop => return,
                    m = messages.next() => m,
                };
                let Some(msg) = msg else { break };
                let Some(s) = shared.upgrade() else { return };
                dispatch(&s, msg.get_payload_bytes());
            }
            let Some(s) = shared.upgrade() else { return };
            s.subscribed.store(false, Ordering::Relaxed);
        }
        lost = true;
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn url_forms() {
        for url in [
            "redis://127.0.0.1",
            "redis://cache:hunter2@127.0.0.1:6379/0",
            "redis://:s3cret@127.0.0.1",
        ] {
            assert!(RedisStore::builder(url).build().is_ok(), "{url}");
        }
        let tls = RedisStore::builder("rediss://127.0.0.1:6380").build();
        assert_eq!(tls.is_ok(), cfg!(feature = "tls"));
        let err = RedisStore::builder("redis://127.0.0.1")
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "timeout");
    }
}
