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
    /// Requests that started a load: a call to the inner service, or with
    /// a remote tier, a read of it first ([`remote_hits`](Self::remote_hits)
    /// counts those the remote tier answered).
    pub misses: u64,
    /// Requests that joined a call already in flight for their key.
    pub coalesced: u64,
    /// Responses served from stale entries, by stale-while-revalidate or
    /// stale-if-error (also counted in one of the fields above).
    pub stale_served: u64,
    /// Entries evicted to stay within `max_entries`.
    pub evictions: u64,
    /// Entries held now (in memory: tier 1).
    pub entries: usize,
    /// Misses of tier 1 answered by the remote tier
    /// ([`build_with_remote`](super::CacheLayerBuilder::build_with_remote)),
    /// without a call to the inner service: read at once, or left there by
    /// the replica that held the key's lease.
    pub remote_hits: u64,
    /// Misses that went on without the remote tier because it failed
    /// (error, timeout, or its circuit breaker open): the inner service
    /// answered them.
    pub remote_fallbacks: u64,
    /// Remote entries whose bytes did not decode (treated as misses).
    pub remote_bad_entries: u64,
    /// Responses not written to the remote tier because they were larger
    /// than [`max_entry_bytes`](super::CacheLayerBuilder::max_entry_bytes).
    pub remote_too_large: u64,
}
