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
//!     .build(Connections(AtomicUsize::new(0)))?;
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
//! - **Broken resources are closed, healthy idle ones used first.** A
//!   resource whose [`Manager::recycle`] fails is closed (counted in
//!   [`ClosedByReason::recycle_failed`]) and never handed out; the acquire
//!   then checks the next idle resource, newest first, and creates a new
//!   one only when none is left. See [Recycle checks](#recycle-checks).
//! - **Lifetimes.** `max_lifetime` (with jitter) and `idle_timeout` close
//!   old and unused resources; a background task keeps `min_size` open.
//!   The task holds only a weak reference, so dropping the pool ends it.
//! - **Durations saturate.** `Duration::MAX` for `acquire_timeout`,
//!   `max_lifetime` or `idle_timeout` means "no limit" (the crate's rule
//!   for durations meeting the clock; see [Durations](crate#durations)).
//!
//! # Recycle checks
//!
//! One acquire makes at most **3** [`Manager::recycle`] checks. If the
//! newest idle resource fails its check, it is closed and its slot freed,
//! and the next newest is checked, and so on. After 3 failures in a row
//! the acquire stops checking and creates a new resource in the slot of
//! the last one that failed (so it never has to wait for room). Any idle
//! resources left unchecked stay idle: later acquires check them (each
//! with its own 3), and `max_lifetime` and `idle_timeout` close them in
//! the background. So a pool full of dead connections after a database
//! failover costs any one caller at most 3 failed checks and a create,
//! all within its `acquire_timeout`, and is cleared by the next few
//! acquires. Dropping the acquire future during a check closes the
//! resource being checked (counted in
//! [`ClosedByReason::interrupted`]) and frees its slot.
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
//! let pool = Pool::builder().max_size(1).build(Unit)?;
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

mod acquire;
mod builder;
mod error;
mod future;
mod guard;
mod maintenance;
mod manager;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
mod service;
mod shared;
mod stats;
mod waiters;

pub use builder::PoolBuilder;
pub use error::{AcquireTimeout, PoolClosed, PoolError};
pub use future::AcquireFuture;
pub use guard::Pooled;
pub use manager::Manager;
pub use service::Pool;
pub use stats::{ClosedByReason, PoolStats};
