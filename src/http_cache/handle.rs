//! [`HttpCacheHandle`]: statistics and invalidation from outside the
//! services.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Uri};

use super::key::key_of;
use super::shared::Shared;
use super::stats::HttpCacheStats;

/// A handle on an HTTP cache: statistics, invalidation, clearing. Cheap to
/// clone; every clone sees the same cache.
#[derive(Clone)]
pub struct HttpCacheHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for HttpCacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpCacheHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl HttpCacheHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        HttpCacheHandle { shared }
    }

    /// A snapshot of the cache's counters.
    pub fn stats(&self) -> HttpCacheStats {
        self.shared.stats()
    }

    /// Removes every stored response (each variant) for `uri`; `true` if
    /// there was one.
    ///
    /// Responses are stored under the request's authority and path with
    /// query: for requests in origin form (`/path`, as a server sees
    /// them), pass the URI with the `Host` the requests carried
    /// (`http://host/path`).
    pub fn invalidate(&self, uri: &Uri) -> bool {
        self.shared.invalidate(&key_of(uri, &HeaderMap::new()))
    }

    /// Removes every stored response (with a remote tier, there too, in
    /// a background task).
    pub fn clear(&self) {
        self.shared.clear();
    }
}
