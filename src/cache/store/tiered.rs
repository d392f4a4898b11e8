//! Tier 2: what the cache keeps about its [`RemoteStore`] (the store, the
//! codec, the key mapping, the lease settings and the counters), and the
//! remote half of a miss: read, claim the lease or wait for its holder,
//! write, release. The in-memory store in front is tier 1; the miss path in
//! `service.rs` joins the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::remote::{Lease, LeaseToken, RemoteListener, RemoteStore};
use super::Entry;
use crate::cache::codec::{self, Codec};
use crate::sync::lock;
use crate::time;

/// What tier 2 has for a key, in tier 1's terms (tokio instants).
pub(crate) enum Read<V> {
    /// A fresh entry.
    Fresh(Entry<V>),
    /// An entry past its fresh time but still kept (stale serving).
    Stale(Entry<V>),
    /// Nothing usable (absent, expired, or bytes that do not decode).
    Miss,
    /// The store failed.
    Failed,
}

/// The outcome of [`Tier2::claim`].
pub(crate) enum Claim<V> {
    /// This replica loads, and releases the lease afterwards.
    Lease(LeaseToken),
    /// Another replica loaded meanwhile: its fresh entry.
    Filled(Entry<V>),
    /// Load without a lease: the store failed, or waiting took too long.
    Alone,
}

pub(crate) use super::tier_counters::{RemoteCounters, RemoteOp};

/// The cache's remote tier.
pub(crate) struct Tier2<K, V> {
    pub(crate) store: Arc<dyn RemoteStore>,
    /// The same store when it is the crate's [`RedisStore`](super::RedisStore):
    /// reads call it directly, without the trait's boxed future.
    #[cfg(feature = "redis")]
    redis: Option<super::RedisStore>,
    codec: Arc<dyn Codec<V>>,
    key_of: fn(&K) -> String,
    key_from: fn(&str) -> Option<K>,
    lease_ttl: Duration,
    max_bytes: usize,
    local_ttl: Duration,
    /// Misses waiting for another replica's lease, by remote key.
    waits: Mutex<HashMap<String, Arc<Notify>>>,
    pub(crate) counters: RemoteCounters,
    /// The cache's listener on the store, kept alive here.
    pub(crate) listener: OnceLock<RemoteListener>,
}

/// Settings of a [`Tier2`].
pub(crate) struct Tier2Config {
    pub(crate) lease_ttl: Duration,
    pub(crate) max_bytes: usize,
    pub(crate) local_ttl: Duration,
    pub(crate) name: crate::trace::Name,
}

impl<K, V> Tier2<K, V> {
    pub(crate) fn new<R: RemoteStore>(
        store: R,
        codec: Arc<dyn Codec<V>>,
        key_of: fn(&K) -> String,
        key_from: fn(&str) -> Option<K>,
        config: Tier2Config,
    ) -> Self {
        #[cfg(feature = "redis")]
        let redis = (&store as &dyn std::any::Any)
            .downcast_ref::<super::RedisStore>()
            .cloned();
        Tier2 {
            store: Arc::new(store),
            #[cfg(feature = "redis")]
            redis,
            codec,
            key_of,
            key_from,
            lease_ttl: config.lease_ttl,
            max_bytes: config.max_bytes,
            local_ttl: config.local_ttl,
            waits: Mutex::new(HashMap::new()),
            counters: RemoteCounters::new(config.name),
            listener: OnceLock::new(),
        }
    }

    /// The remote key of a cache key.
    pub(crate) fn key(&self, key: &K) -> String {
        (self.key_of)(key)
    }

    /// The cache key of a remote key (`None`: not one of ours).
    pub(crate) fn local_key(&self, key: &str) -> Option<K> {
        (self.key_from)(key)
    }

    /// Wakes the misses waiting on `key`'s lease.
    pub(crate) fn wake(&self, key: &str) {
        if let Some(n) = lock(&self.waits).get(key) {
            n.notify_waiters();
        }
    }

    pub(crate) fn fallback(&self) {
        self.counters.fallback();
    }

    /// Reads `key` from the store and decodes it; bytes that do not
    /// decode are counted.
    pub(crate) async fn read(&self, key: &str) -> Read<V> {
        self.read_counting(key, true).await
    }

    async fn read_counting(&self, key: &str, count_bad: bool) -> Read<V> {
        #[cfg(feature = "redis")]
        let got = match &self.redis {
            Some(redis) => redis.read(key).await,
            None => self.store.get(key).await,
        };
        #[cfg(not(feature = "redis"))]
        let got = self.store.get(key).await;
        let bytes = match got {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Read::Miss,
            Err(_) => return self.counters.failed(RemoteOp::Read, Read::Failed),
        };
        let decoded = codec::frame_parts(&bytes)
            .and_then(|(fresh, keep, value)| Ok((fresh, keep, self.codec.decode(value)?)));
        let (fresh_ms, keep_ms, value) = match decoded {
            Ok(parts) => parts,
            Err(_) => {
                if count_bad {
                    self.counters.bad_entry();
                }
                return Read::Miss;
            }
        };
        let now_ms = codec::unix_ms(SystemTime::now());
        if keep_ms <= now_ms {
            return Read::Miss;
        }
        let now = Instant::now();
        let fresh_left = codec::left(now_ms, fresh_ms).min(self.local_ttl);
        let fresh_until = time::deadline(now, fresh_left);
        let keep_until = time::deadline(now, codec::left(now_ms, keep_ms)).min(time::deadline(
            fresh_until,
            Duration::from_millis(keep_ms - fresh_ms),
        ));
        let entry = Entry {
            value,
            fresh_until,
            keep_until,
        };
        if fresh_ms > now_ms {
            Read::Fresh(entry)
        } else {
            Read::Stale(entry)
        }
    }

    /// Writes `value`, fresh for `ttl` then kept `keep` more, unless its
    /// frame is over the size limit. `false` when the store failed.
    pub(crate) async fn write(&self, key: &str, value: &V, ttl: Duration, keep: Duration) -> bool {
        let now_ms = codec::unix_ms(SystemTime::now());
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let fresh_ms = now_ms.saturating_add(ms(ttl));
        let keep_ms = fresh_ms.saturating_add(ms(keep));
        let mut out = Vec::with_capacity(64);
        codec::frame_head(&mut out, fresh_ms, keep_ms);
        if self.codec.encode(value, &mut out).is_err() {
            return true;
        }
        if out.len() > self.max_bytes {
            self.counters.too_large();
            return true;
        }
        let total = ttl.saturating_add(keep);
        let expiry = (total < time::NEVER).then_some(total);
        let put = self.store.put(key, Bytes::from(out), expiry).await;
        put.map_err(|_| self.counters.error(RemoteOp::Write))
            .is_ok()
    }

    /// Takes the lease on `key`, or waits for its holder and reads what it
    /// left. Waits at most twice the lease time in all.
    pub(crate) async fn claim(&self, key: &str) -> Claim<V> {
        let give_up = time::deadline(Instant::now(), self.lease_ttl.saturating_mul(2));
        let slot = WaitSlot::new(self, key);
        loop {
            let notified = slot.notify.notified();
            tokio::pin!(notified);
            // Registered before the lease attempt: a release between the
            // attempt and the wait still wakes us.
            notified.as_mut().enable();
            match self.store.lease(key, self.lease_ttl).await {
                Err(_) => return self.counters.failed(RemoteOp::Lease, Claim::Alone),
                Ok(Lease::Acquired(token)) => {
                    // The holder before us may have just filled it.
                    // (Bad bytes were counted by the read before the claim.)
                    return match self.read_counting(key, false).await {
                        Read::Fresh(entry) => {
                            self.release(key, token).await;
                            Claim::Filled(entry)
                        }
                        _ => {
                            self.counters.miss();
                            Claim::Lease(token)
                        }
                    };
                }
                Ok(Lease::Busy { expires_in }) => {
                    let now = Instant::now();
                    if now >= give_up {
                        return Claim::Alone;
                    }
                    let wait = expires_in
                        .unwrap_or(self.lease_ttl)
                        .saturating_add(Duration::from_millis(1))
                        .min(give_up - now);
                    let _ = tokio::time::timeout(wait, notified).await;
                    match self.read_counting(key, false).await {
                        Read::Fresh(entry) => return Claim::Filled(entry),
                        Read::Failed => return Claim::Alone,
                        Read::Stale(_) | Read::Miss => {}
                    }
                }
            }
        }
    }

    /// Releases a lease; a failure only leaves it to expire.
    pub(crate) async fn release(&self, key: &str, token: LeaseToken) {
        let released = self.store.release(key, token).await;
        let _ = released.map_err(|_| self.counters.error(RemoteOp::Release));
    }
}

/// A registration in [`Tier2::waits`], removed on drop.
struct WaitSlot<'a, K, V> {
    tier: &'a Tier2<K, V>,
    key: &'a str,
    notify: Arc<Notify>,
}

impl<'a, K, V> WaitSlot<'a, K, V> {
    fn new(tier: &'a Tier2<K, V>, key: &'a str) -> Self {
        let notify = lock(&tier.waits)
            .entry(key.to_owned())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        WaitSlot { tier, key, notify }
    }
}

impl<K, V> Drop for WaitSlot<'_, K, V> {
    fn drop(&mut self) {
        let mut waits = lock(&self.tier.waits);
        // The map's and ours: nobody else waits on this key.
        if Arc::strong_count(&self.notify) == 2 {
            waits.remove(self.key);
        }
    }
}
