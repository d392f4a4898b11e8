//! [`CacheStats`]: a snapshot of a cache's counters.

/// Counters of a cache, from [`CacheHandle::stats`](super::CacheHandle::stats),
/// [`CacheLayer::stats`](super::CacheLayer::stats) or
/// [`Cache::stats`](super::Cache::stats).
///
/// Every cacheable request counts once in `hits`, `misses` or
/// `coalesced`; requests whose key function gave no key pass through and
/// are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Requests answered from the cache without waiting, fresh or (with
    /// stale-while-revalidate) stale.
    pub hits: u64,
    /// Requests that started a call to the inner service.
    pub misses: u64,
    /// Requests that joined a call already in flight for their key.
    pub coalesced: u64,
    /// Responses served from stale entries, by stale-while-revalidate or
    /// stale-if-error (also counted in one of the fields above).
    pub stale_served: u64,
    /// Entries evicted to stay within `max_entries`.
    pub evictions: u64,
    /// Entries held now.
    pub entries: usize,
}
