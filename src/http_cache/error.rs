//! The error an [`HttpCache`](super::HttpCache) adds to its inner
//! service's: [`UpstreamBodyError`].

use std::error::Error;
use std::fmt;

use crate::BoxError;

/// Reading the body of a response the cache meant to store failed (the
/// inner service's body returned this error before its end). The error
/// of the body is the [`source`](Error::source).
///
/// Errors of the inner service itself are returned as they are (boxed).
#[derive(Debug)]
pub struct UpstreamBodyError {
    inner: BoxError,
}

impl UpstreamBodyError {
    pub(crate) fn new(inner: BoxError) -> Self {
        UpstreamBodyError { inner }
    }
}

impl fmt::Display for UpstreamBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http cache: reading the upstream response body failed ({}); the response was not stored, retry the request",
            self.inner
        )
    }
}

impl Error for UpstreamBodyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.inner)
    }
}
