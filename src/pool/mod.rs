//! An async resource pool (database connections, clients, buffers) whose
//! guard returns the resource on drop and whose acquisition is a tower
//! [`Service`](tower_service::Service).
//!
//! A [`Manager`] says how to create a resource and how to check one before
//! it is handed out again; a [`Pool`] keeps between `min_size` and
//! `max_size` of them, and [`Pool::acquire`] checks one out as a
//! [`Pooled`] guard.
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::time::Duration;
//! use tower_patterns::pool::{Manager, Pool};
//!
//! /// Stands in for a database: each resource is a numbered "connection".
//! struct Connections(AtomicUsize);
//!
//! impl Manager for Connections {
//!     type Resource = usize;
//!     type Error = std::io::Error;
//!
//!     async fn create(&self) -> Result<usize, std::io::Error> {
//!         Ok(self.0.fetch_add(1, Ordering::Relaxed))
//!     }
//!
//!     async fn recycle(&self, _conn: &mut usize) -> Result<(), std::io::Error> {
//!         Ok(()) // a real manager pings the server here
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = Pool::builder()
//!     .min_size(2)
//!     .max_size(4)
//!     .acquire_timeout(Duration::from_secs(5))
//!     .build(Connections(AtomicUsize::new(0)))
//!     .await?;
//!
//! {
//!     let conn = pool.acquire().await?; // derefs to the resource
//!     assert!(*conn < 4);
//! } // back in the pool here
//!
//! let stats = pool.stats();
//! assert_eq!(stats.in_use, 0);
//! assert!(stats.size <= 4);
//!
//! pool.close().await; // waits for checked-out resources, closes the rest
//! assert_eq!(pool.stats().size, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # What it guarantees
//!
//! - **Cancellation leaks nothing.** Dropping an `acquire` future at any
//!   point (waiting in line, creating, recycling) frees its slot; a
//!   resource handed over to it but not yet taken goes to the next waiter.
//! - **First come, first served.** Waiters are served in order, and a new
//!   acquirer never overtakes a waiting one.
//! - **Errors say what happened.** A failed [`Manager::create`] reaches the
//!   waiter as [`PoolError::Create`] with the manager's error (a wrong
//!   password says so); the pool stays usable. Timeouts are
//!   [`PoolError::Timeout`] and are on by default (30 s).
//! - **Broken resources are replaced.** A resource whose
//!   [`Manager::recycle`] fails is closed and a new one is created in its
//!   place; it is never handed out.
//! - **Lifetimes.** `max_lifetime` (with jitter) and `idle_timeout` close
//!   old and unused resources; a background task keeps `min_size` open.
//!   The task holds only a weak reference, so dropping the pool ends it.
//!
//! # As a tower service
//!
//! `Pool<M>` implements `Service<()>` with `Response = Pooled<M>`, so
//! acquisition composes with tower layers:
//!
//! ```
//! # use std::convert::Infallible;
//! # use std::time::Duration;
//! # use tower_patterns::pool::{Manager, Pool};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! # struct Unit;
//! # impl Manager for Unit {
//! #     type Resource = ();
//! #     type Error = Infallible;
//! #     async fn create(&self) -> Result<(), Infallible> { Ok(()) }
//! #     async fn recycle(&self, _: &mut ()) -> Result<(), Infallible> { Ok(()) }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let pool = Pool::builder().max_size(1).build(Unit).await?;
//! let mut acquire = ServiceBuilder::new()
//!     .timeout(Duration::from_millis(50))
//!     .service(pool.clone());
//!
//! let held = acquire.ready().await?.call(()).await?;
//! // The only resource is checked out: the timeout layer gives up.
//! let err = acquire.ready().await?.call(()).await.unwrap_err();
//! assert!(err.is::<tower::timeout::error::Elapsed>());
//! drop(held);
//! assert_eq!(pool.stats().waiting, 0);
//! # Ok(())
//! # }
//! ```
//!
//! With the `postgres` feature, `postgres::PgManager` pools
//! `tokio_postgres` clients.

use std::fmt;
use std::time::Duration;

mod guard;
mod manager;
#[allow(clippy::module_inception)]
mod pool;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

pub use guard::Pooled;
pub use manager::Manager;
pub use pool::{AcquireFuture, Pool, PoolBuilder};

/// Why [`Pool::acquire`] failed.
///
/// Its `Display` reads well on its own: for [`PoolError::Create`] it
/// includes the manager error's whole source chain.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// No resource became available within `acquire_timeout`.
    Timeout(AcquireTimeout),
    /// This acquire had to create a resource and [`Manager::create`]
    /// failed with this error.
    Create(E),
    /// The pool was closed with [`Pool::close`].
    Closed(PoolClosed),
}

impl<E> PoolError<E> {
    /// Whether this is [`PoolError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout(_))
    }

    /// Whether this is [`PoolError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, PoolError::Closed(_))
    }

    /// The manager's error, if this is [`PoolError::Create`].
    pub fn create_error(&self) -> Option<&E> {
        match self {
            PoolError::Create(e) => Some(e),
            _ => None,
        }
    }
}

/// The manager's error includes its sources (`tokio_postgres` says only
/// "db error" and keeps "password authentication failed" in its source),
/// skipping any a message already repeats.
impl<E: std::error::Error> fmt::Display for PoolError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Timeout(t) => t.fmt(f),
            PoolError::Create(e) => {
                let mut msg = e.to_string();
                let mut source = e.source();
                while let Some(s) = source {
                    let part = s.to_string();
                    if !msg.contains(&part) {
                        msg.push_str(": ");
                        msg.push_str(&part);
                    }
                    source = s.source();
                }
                write!(f, "pool could not create a resource: {msg}")
            }
            PoolError::Closed(c) => c.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PoolError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Timeout(t) => Some(t),
            PoolError::Create(e) => Some(e),
            PoolError::Closed(c) => Some(c),
        }
    }
}

/// [`Pool::acquire`] waited `acquire_timeout` without getting a resource.
///
/// Carries the pool's state at that moment, so the message tells whether
/// the pool was exhausted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcquireTimeout {
    waited: Duration,
    size: usize,
    max_size: usize,
    waiting: usize,
}

impl AcquireTimeout {
    /// How long the acquire waited (the configured `acquire_timeout`).
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Resources open (or being created) when the timeout struck.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The pool's `max_size`.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Other acquirers still waiting when the timeout struck.
    pub fn waiting(&self) -> usize {
        self.waiting
    }
}

impl fmt::Display for AcquireTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for a pool resource ({} of max {} open, {} other acquirers waiting); \
             return resources sooner or raise max_size or acquire_timeout",
            self.waited, self.size, self.max_size, self.waiting
        )
    }
}

impl std::error::Error for AcquireTimeout {}

/// The pool was closed with [`Pool::close`]; it hands out no more resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolClosed;

impl fmt::Display for PoolClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool is closed and hands out no more resources")
    }
}

impl std::error::Error for PoolClosed {}

/// A snapshot of a pool, from [`Pool::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Resources open or being created: `idle + in_use`.
    pub size: usize,
    /// Resources idle in the pool.
    pub idle: usize,
    /// Resources checked out, being created or checked, or being handed
    /// to a waiter.
    pub in_use: usize,
    /// Acquirers waiting in line.
    pub waiting: usize,
    /// The configured `min_size`.
    pub min_size: usize,
    /// The configured `max_size`.
    pub max_size: usize,
    /// Resources created since the pool was built.
    pub created: u64,
    /// Checkouts of an existing resource that passed [`Manager::recycle`].
    pub recycled: u64,
    /// Acquires that failed with [`PoolError::Timeout`].
    pub timed_out: u64,
    /// [`Manager::create`] calls that failed (or, in the background, timed out).
    pub create_failed: u64,
    /// Resources that left the pool, by reason.
    pub closed_by_reason: ClosedByReason,
}

/// Resources that left a pool, by reason; part of [`PoolStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClosedByReason {
    /// [`Manager::recycle`] failed, so the resource was closed and replaced.
    pub recycle_failed: u64,
    /// Older than `max_lifetime`.
    pub max_lifetime: u64,
    /// Idle longer than `idle_timeout` while the pool was above `min_size`.
    pub idle_timeout: u64,
    /// Taken out of the pool with [`Pooled::detach`].
    pub detached: u64,
    /// The acquire checking the resource was cancelled mid-`recycle`.
    pub interrupted: u64,
    /// Closed by [`Pool::close`].
    pub pool_closed: u64,
}

impl ClosedByReason {
    /// All reasons together.
    pub fn total(&self) -> u64 {
        self.recycle_failed
            + self.max_lifetime
            + self.idle_timeout
            + self.detached
            + self.interrupted
            + self.pool_closed
    }
}
