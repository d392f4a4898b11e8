//! The errors a cache hands its callers: [`SharedError`] and
//! [`LoadAbandoned`].

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::BoxError;

/// An error of the inner service shared by several callers: the waiters
/// of one coalesced load, or every caller served an error cached by
/// [`cache_errors`](super::CacheLayerBuilder::cache_errors).
///
/// The inner service's own error is its [`source`](Error::source) and
/// [`inner`](SharedError::inner); a caller whose load was not shared with
/// anyone gets the inner error itself, not this wrapper.
#[derive(Clone)]
pub struct SharedError {
    inner: Arc<BoxError>,
}

impl SharedError {
    pub(crate) fn new(inner: BoxError) -> Self {
        SharedError {
            inner: Arc::new(inner),
        }
    }

    /// The inner service's error.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &**self.inner
    }

    /// The inner service's error as a `T`, if it is one.
    pub fn downcast_ref<T: Error + 'static>(&self) -> Option<&T> {
        self.inner.downcast_ref::<T>()
    }
}

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedError").field(&self.inner).finish()
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inner service failed (error shared by the cache with other callers): {}",
            self.inner
        )
    }
}

impl Error for SharedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&**self.inner)
    }
}

/// The load this caller was waiting for stopped before it produced a
/// response: the inner service panicked, or the tokio runtime shut down.
///
/// Nothing was cached; asking again starts a fresh load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadAbandoned;

impl fmt::Display for LoadAbandoned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "cache load abandoned: the inner call panicked or its runtime shut down; retry the request",
        )
    }
}

impl Error for LoadAbandoned {}
