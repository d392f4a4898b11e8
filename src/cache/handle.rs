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

fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(task);
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

    /// Removes the entry for `key`; `true` if there was one (in memory).
    /// A load already in flight for `key` still completes and stores its
    /// result.
    ///
    /// With a remote tier ([`build_with_remote`](super::CacheLayerBuilder::build_with_remote))
    /// the entry is also deleted there and every replica drops its copy
    /// when the remote store's broadcast reaches it (within milliseconds).
    /// That part runs in a task of its own, on the current tokio runtime;
    /// outside a runtime only this replica's memory is touched.
    pub fn invalidate(&self, key: &K) -> bool {
        let had = self.core.store.remove(key);
        if let Some(tier) = &self.core.remote {
            let store = tier.store.clone();
            let key = tier.key(key);
            spawn(async move {
                let _ = store.delete(&key).await;
            });
        }
        had
    }

    /// Removes every entry. With a remote tier, also every entry under the
    /// remote store's namespace, on every replica (in the background, as
    /// [`invalidate`](Self::invalidate)).
    pub fn clear(&self) {
        self.core.store.clear();
        if let Some(tier) = &self.core.remote {
            let store = tier.store.clone();
            spawn(async move {
                let _ = store.clear().await;
            });
        }
    }

    /// Removes every expired entry now (they are otherwise removed when
    /// next looked up) and returns how many were removed. An entry counts
    /// as expired once it can no longer be served even stale.
    pub fn cleanup(&self) -> usize {
        self.core.store.cleanup(Instant::now())
    }
}
