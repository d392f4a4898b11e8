//! Why an acquire failed: [`PoolError`], with [`AcquireTimeout`] and
//! [`PoolClosed`], which it carries.

use std::fmt;
use std::time::Duration;

/// Why [`Pool::acquire`](super::Pool::acquire) failed.
///
/// Its `Display` reads well on its own: for [`PoolError::Create`] it
/// includes the manager error's whole source chain.
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError<E> {
    /// No resource became available within `acquire_timeout`.
    Timeout(AcquireTimeout),
    /// This acquire had to create a resource and [`Manager::create`](super::Manager::create)
    /// failed with this error.
    Create(E),
    /// The pool was closed with [`Pool::close`](super::Pool::close).
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

/// [`Pool::acquire`](super::Pool::acquire) waited `acquire_timeout` without getting a resource.
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
    pub(super) fn new(waited: Duration, size: usize, max_size: usize, waiting: usize) -> Self {
        AcquireTimeout {
            waited,
            size,
            max_size,
            waiting,
        }
    }

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

/// The pool was closed with [`Pool::close`](super::Pool::close); it hands out no more resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolClosed;

impl fmt::Display for PoolClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool is closed and hands out no more resources")
    }
}

impl std::error::Error for PoolClosed {}
