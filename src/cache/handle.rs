//! [`CacheHandle`]: statistics, invalidation and cleanup of a cache from
//! outside its services.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use tokio::time::Instant;

use super::core::Core;
use super::stats::CacheStats;
use super::store::Store;

/// A handle on a cache: statistics, invalidation and cleanup. Cheap to
/// clone; every clone sees the same cache.
pub struct CacheHandle<K, Res> {
    core: Arc<Core<K, Res>>,
}

impl<K, Res> Clone for CacheHandle<K, Res> {
    fn clone(&self) -> Self {
        CacheHandle {
            core: self.core.clone(),
        }
    }
}

impl<K, Res> fmt::Debug for CacheHandle<K, Res>
where
    K: Hash + Eq + Send + Sync,
    Res: Clone + Send + Sync,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<K, Res> CacheHandle<K, Res> {
    pub(crate) fn new(core: Arc<Core<K, Res>>) -> Self {
        CacheHandle { core }
    }
}

impl<K, Res> CacheHandle<K, Res>
where
    K: Hash + Eq + Send + Sync,
    Res: Clone + Send + Sync,
{
    /// A snapshot of the cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.core.stats()
    }

    /// Removes the entry for `key`; `true` if there was one. A load
    /// already in flight for `key` still completes and stores its result.
    pub fn invalidate(&self, key: &K) -> bool {
        self.core.store.remove(key)
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.core.store.clear();
    }

    /// Removes every expired entry now (they are otherwise removed when
    /// next looked up) and returns how many were removed. An entry counts
    /// as expired once it can no longer be served even stale.
    pub fn cleanup(&self) -> usize {
        self.core.store.cleanup(Instant::now())
    }
}
