//! [`HttpCacheStats`]: a snapshot of an HTTP cache's counters.

/// Counters of an HTTP cache, from [`HttpCacheHandle::stats`](super::HttpCacheHandle::stats)
/// or [`HttpCacheLayer::stats`](super::HttpCacheLayer::stats).
///
/// Every GET or HEAD counts once in `hits`, `misses` or `revalidations`;
/// other methods count in `passes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpCacheStats {
    /// Requests answered from a stored response without asking the inner
    /// service (fresh, allowed stale, or a 504 for `only-if-cached`).
    pub hits: u64,
    /// Requests with no stored response that matched: sent on as they came.
    pub misses: u64,
    /// Requests whose stored response was stale (or that asked for
    /// validation): sent on as conditional requests.
    pub revalidations: u64,
    /// Misses that waited for a miss of the same URI already in flight
    /// and were answered by the response it stored (also counted in
    /// `misses`); see [`coalesce`](super::HttpCacheLayerBuilder::coalesce).
    pub coalesced: u64,
    /// Revalidations the inner service answered `304 Not Modified`, so the
    /// stored body was reused and its fields refreshed.
    pub not_modified: u64,
    /// Stale responses served, by `stale-while-revalidate`,
    /// `stale-if-error` or a request's `max-stale` (also counted above).
    pub stale_served: u64,
    /// Responses stored (new, or replacing a stored one).
    pub stored: u64,
    /// Requests passed through: methods other than GET and HEAD.
    pub passes: u64,
    /// Stored URIs removed by an unsafe method's success or by
    /// [`HttpCacheHandle::invalidate`](super::HttpCacheHandle::invalidate).
    pub invalidations: u64,
    /// Storable responses not stored because their body was larger than
    /// [`max_body_bytes`](super::HttpCacheLayerBuilder::max_body_bytes)
    /// (they streamed through).
    pub too_large: u64,
    /// Misses answered by the remote tier
    /// ([`build_with_remote`](super::HttpCacheLayerBuilder::build_with_remote))
    /// without asking the inner service.
    pub remote_hits: u64,
    /// Remote reads that failed or held bytes this cache did not write
    /// (treated as misses).
    pub remote_errors: u64,
    /// URIs held now (each with one or more variants).
    pub entries: usize,
    /// URIs evicted to stay within `max_entries`.
    pub evictions: u64,
}
