//! The [`RemoteStore`] trait: an asynchronous store shared by replicas,
//! the cache's tier 2, and the small types its methods speak.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::BoxError;

/// The future every [`RemoteStore`] method returns.
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send + 'a>>;

/// Proof of a lease taken with [`RemoteStore::lease`]; hand it back to
/// [`RemoteStore::release`]. Random, so a holder whose lease expired and
/// was taken by another cannot release the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseToken(u128);

impl LeaseToken {
    /// A fresh random token.
    pub fn random() -> Self {
        LeaseToken(u128::from(fastrand::u64(..)) << 64 | u128::from(fastrand::u64(..)))
    }

    /// The token as a number (what a store writes).
    pub fn get(self) -> u128 {
        self.0
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// The answer to [`RemoteStore::lease`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    /// The caller holds the lease for the key: it loads the value, puts it
    /// and releases the lease.
    Acquired(LeaseToken),
    /// Another holds it, for at most `expires_in` more (`None`: not known).
    Busy {
        /// How long until the lease expires by itself, if known.
        expires_in: Option<Duration>,
    },
}

/// What another replica (or this one) did, as a [`RemoteStore`] tells its
/// listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteEvent<'a> {
    /// The entry for this key was deleted: drop local copies.
    Invalidated(&'a str),
    /// Every entry of this store was deleted: drop every local copy.
    Cleared,
    /// The lease on this key was released (the value, if any, is there):
    /// waiters read again.
    Released(&'a str),
    /// The store may have missed events (its subscription was lost and is
    /// back): drop every local copy.
    Resync,
}

/// A callback for [`RemoteEvent`]s; see [`RemoteStore::listen`].
pub type RemoteListener = Arc<dyn Fn(RemoteEvent<'_>) + Send + Sync>;

/// An asynchronous store shared by every replica: the cache's second tier,
/// behind the in-memory store. [`RedisStore`](super::RedisStore) (feature
/// `redis`) is the crate's; plug one in with
/// [`CacheLayerBuilder::build_with_remote`](crate::cache::CacheLayerBuilder::build_with_remote).
///
/// Keys are strings and values bytes: the cache makes both (keys from its
/// own keys' `Display`, values with a [`Codec`](crate::cache::Codec) in a
/// frame that carries the wall-clock expiry). Every method may fail; the
/// cache then goes on without the store (a miss calls the inner service)
/// and counts it. Implementations should bound each call with a timeout.
/// Usable as a trait object.
///
/// Single flight across replicas uses a lease per key: the replica that
/// [`lease`](RemoteStore::lease)s a key loads it, [`put`](RemoteStore::put)s
/// the value and [`release`](RemoteStore::release)s the lease; the others
/// wait until they hear [`RemoteEvent::Released`] or the lease expires,
/// then read again.
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use tower_patterns::cache::{Lease, LeaseToken, RemoteFuture, RemoteListener, RemoteStore};
///
/// /// A store that keeps nothing: every read misses, every lease is granted.
/// struct Nothing;
///
/// impl RemoteStore for Nothing {
///     fn get<'a>(&'a self, _: &'a str) -> RemoteFuture<'a, Option<Bytes>> {
///         Box::pin(async { Ok(None) })
///     }
///     fn put<'a>(&'a self, _: &'a str, _: Bytes, _: Option<Duration>) -> RemoteFuture<'a, ()> {
///         Box::pin(async { Ok(()) })
///     }
///     fn delete<'a>(&'a self, _: &'a str) -> RemoteFuture<'a, ()> {
///         Box::pin(async { Ok(()) })
///     }
///     fn clear(&self) -> RemoteFuture<'_, ()> {
///         Box::pin(async { Ok(()) })
///     }
///     fn lease<'a>(&'a self, _: &'a str, _: Duration) -> RemoteFuture<'a, Lease> {
///         Box::pin(async { Ok(Lease::Acquired(LeaseToken::random())) })
///     }
///     fn release<'a>(&'a self, _: &'a str, _: LeaseToken) -> RemoteFuture<'a, ()> {
///         Box::pin(async { Ok(()) })
///     }
///     fn listen(&self, _: RemoteListener) {}
/// }
///
/// let store: Box<dyn RemoteStore> = Box::new(Nothing);
/// # let _ = store;
/// ```
pub trait RemoteStore: Send + Sync + 'static {
    /// The bytes stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> RemoteFuture<'a, Option<Bytes>>;

    /// Stores `value` under `key`, replacing what was there, for `ttl`
    /// (`None`: until deleted).
    fn put<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>)
        -> RemoteFuture<'a, ()>;

    /// Deletes the entry for `key` and tells every listener
    /// ([`RemoteEvent::Invalidated`]), this replica's included.
    fn delete<'a>(&'a self, key: &'a str) -> RemoteFuture<'a, ()>;

    /// Deletes every entry of this store (and only this store's: its key
    /// namespace) and tells every listener ([`RemoteEvent::Cleared`]).
    fn clear(&self) -> RemoteFuture<'_, ()>;

    /// Takes the lease on `key` for `ttl` if nobody holds it.
    fn lease<'a>(&'a self, key: &'a str, ttl: Duration) -> RemoteFuture<'a, Lease>;

    /// Releases the lease on `key` if `token` still holds it (a lease that
    /// expired and was taken by another stays theirs), and tells every
    /// listener ([`RemoteEvent::Released`]).
    fn release<'a>(&'a self, key: &'a str, token: LeaseToken) -> RemoteFuture<'a, ()>;

    /// Calls `listener` with every event from now on, from any replica
    /// (this one included). Called once per cache at build time, maybe
    /// outside a runtime; a store may start listening on its first call.
    ///
    /// The cache keeps `listener` alive as long as it lives, so a store
    /// may hold it weakly and forget it once it is gone
    /// ([`RedisStore`](super::RedisStore) does): building caches over one
    /// store again and again does not grow the store.
    fn listen(&self, listener: RemoteListener);
}
