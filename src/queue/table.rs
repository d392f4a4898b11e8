//! The task table: every task the queue tracks (pending, running, and
//! finished results kept for a later lookup), split in shards that are
//! locked apart, with each shard's expiry order of kept results.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::cell::Cell;
use super::task::TaskId;
use crate::sync::{lock, Padded};
use crate::time;

/// Number of independently locked parts of the task table.
const SHARDS: usize = 8;

/// Hashes the sequential task ids (a multiply and a fold is plenty).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry<Res, E> {
    cell: Arc<Cell<Res, E>>,
    /// Finished with nobody waiting: listed in `Shard::expiry`.
    parked: bool,
}

/// One part of the task table: the tasks whose id falls in it, and the
/// expiry order of their parked results.
struct Shard<Res, E> {
    map: HashMap<u64, Entry<Res, E>, BuildHasherDefault<IdHasher>>,
    /// Parked ids in parking order (so in expiry order); ids taken since
    /// are skipped when reached and compacted away when they pile up.
    expiry: VecDeque<(u64, Instant)>,
    /// Parked entries still in `map`.
    retained: usize,
}

impl<Res, E> Default for Shard<Res, E> {
    fn default() -> Self {
        Shard {
            map: HashMap::default(),
            expiry: VecDeque::new(),
            retained: 0,
        }
    }
}

impl<Res, E> Shard<Res, E> {
    /// Forgets expired results, and the oldest beyond `limit`.
    fn sweep(&mut self, now: Instant, limit: usize) {
        while let Some(&(id, at)) = self.expiry.front() {
            if at > now && self.retained <= limit {
                break;
            }
            self.expiry.pop_front();
            if self.map.get(&id).is_some_and(|e| e.parked) {
                self.map.remove(&id);
                self.retained -= 1;
            }
        }
        if self.expiry.len() > 2 * self.retained + 64 {
            let map = &self.map;
            self.expiry
                .retain(|(id, _)| map.get(id).is_some_and(|e| e.parked));
        }
    }
}

/// A shard on its own cache line.
type ShardLock<Res, E> = Padded<Mutex<Shard<Res, E>>>;

/// Every task the queue tracks, by id, in `SHARDS` shards.
pub(crate) struct TaskTable<Res, E> {
    shards: Box<[ShardLock<Res, E>]>,
    retain: Duration,
    per_shard: usize,
    /// Wakes the janitor when it waits with nothing to expire.
    janitor: Arc<Notify>,
    janitor_idle: AtomicBool,
}

impl<Res, E> TaskTable<Res, E> {
    /// An empty table keeping finished results for `retain` (capped at
    /// [`time::NEVER`]: longer is "until taken or evicted by count"), at
    /// most `max_retained` (rounded up to a multiple of the shard count).
    pub(crate) fn new(retain: Duration, max_retained: usize) -> Self {
        TaskTable {
            shards: (0..SHARDS)
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            retain: time::capped(retain),
            per_shard: max_retained.div_ceil(SHARDS),
            janitor: Arc::new(Notify::new()),
            janitor_idle: AtomicBool::new(false),
        }
    }

    /// How long finished results are kept.
    pub(crate) fn retain(&self) -> Duration {
        self.retain
    }

    /// What wakes the janitor (see [`next_expiry`](Self::next_expiry)).
    pub(crate) fn janitor(&self) -> Arc<Notify> {
        self.janitor.clone()
    }

    fn shard(&self, id: u64) -> MutexGuard<'_, Shard<Res, E>> {
        lock(&self.shards[id as usize % SHARDS])
    }

    /// Tracks a newly accepted task.
    pub(crate) fn insert(&self, id: u64, cell: Arc<Cell<Res, E>>) {
        self.shard(id).map.insert(
            id,
            Entry {
                cell,
                parked: false,
            },
        );
    }

    /// The task's cell, unless it is unknown, taken or expired.
    pub(crate) fn lookup(&self, id: TaskId) -> Option<Arc<Cell<Res, E>>> {
        let now = Instant::now();
        let mut shard = self.shard(id.0);
        shard.sweep(now, self.per_shard);
        shard.map.get(&id.0).map(|e| e.cell.clone())
    }

    /// The task's result was taken: forget it.
    pub(crate) fn taken(&self, id: TaskId) {
        let mut shard = self.shard(id.0);
        if let Some(entry) = shard.map.remove(&id.0) {
            if entry.parked {
                shard.retained -= 1;
            }
        }
    }

    /// Keeps a finished result nobody waits for until it expires, is
    /// evicted by count, or is taken; wakes an idle janitor.
    pub(crate) fn park(&self, id: TaskId) {
        let now = Instant::now();
        let mut shard = self.shard(id.0);
        if let Some(entry) = shard.map.get_mut(&id.0) {
            if !entry.parked {
                entry.parked = true;
                shard
                    .expiry
                    .push_back((id.0, time::deadline(now, self.retain)));
                shard.retained += 1;
                if self.janitor_idle.load(Ordering::Relaxed)
                    && self.janitor_idle.swap(false, Ordering::SeqCst)
                {
                    self.janitor.notify_one();
                }
            }
        }
        shard.sweep(now, self.per_shard);
    }

    /// Sweeps every shard; returns the earliest expiry still ahead.
    fn sweep_all(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.sweep(now, self.per_shard);
            if let Some(&(_, at)) = shard.expiry.front() {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    /// For the janitor: sweeps, and returns when to sweep next; `None`
    /// means nothing is kept, and the next [`park`](Self::park) wakes the
    /// janitor's [`Notify`].
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        match self.sweep_all() {
            Some(at) => Some(at),
            None => {
                self.janitor_idle.store(true, Ordering::SeqCst);
                // Check again: a result parked before the flag was set
                // did not wake us.
                let again = self.sweep_all();
                if again.is_some() {
                    self.janitor_idle.store(false, Ordering::SeqCst);
                }
                again
            }
        }
    }

    /// The unfinished tasks, one shard at a time (each shard is locked only
    /// while its list is made).
    pub(crate) fn unfinished(&self) -> impl Iterator<Item = Vec<Arc<Cell<Res, E>>>> + '_ {
        self.shards.iter().map(|shard| {
            lock(shard)
                .map
                .values()
                .filter(|e| !e.parked)
                .map(|e| e.cell.clone())
                .collect()
        })
    }

    /// After a sweep: (finished results kept, tasks tracked).
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let now = Instant::now();
        let (mut retained, mut tracked) = (0, 0);
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.sweep(now, self.per_shard);
            retained += shard.retained;
            tracked += shard.map.len();
        }
        (retained, tracked)
    }
}

impl<Res, E> Drop for TaskTable<Res, E> {
    fn drop(&mut self) {
        // Let the janitor see the queue is gone and exit.
        self.janitor.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parked_shard(n: u64, now: Instant) -> Shard<(), ()> {
        let mut shard = Shard::default();
        for id in 0..n {
            shard.map.insert(
                id,
                Entry {
                    cell: Arc::new(Cell::new(TaskId(id), false)),
                    parked: true,
                },
            );
            shard.expiry.push_back((id, now + Duration::from_secs(60)));
            shard.retained += 1;
        }
        shard
    }

    #[test]
    fn sweep_evicts_the_oldest_beyond_the_limit() {
        let now = Instant::now();
        let mut shard = parked_shard(100, now);
        shard.sweep(now, 10);
        assert_eq!(shard.retained, 10);
        assert_eq!(shard.map.len(), 10);
        assert!(shard.map.contains_key(&99) && !shard.map.contains_key(&89));
        shard.sweep(now + Duration::from_secs(60), 10);
        assert_eq!(
            (shard.retained, shard.map.len(), shard.expiry.len()),
            (0, 0, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retention_of_max_expires_never() {
        let table = TaskTable::<(), ()>::new(Duration::MAX, 10);
        assert_eq!(table.retain(), time::NEVER);
        table.insert(1, Arc::new(Cell::new(TaskId(1), false)));
        let now = Instant::now();
        table.park(TaskId(1));
        assert_eq!(table.next_expiry(), Some(now + time::NEVER));
        tokio::time::advance(Duration::from_secs(365 * 86_400)).await;
        assert!(table.lookup(TaskId(1)).is_some(), "kept after a year");
    }

    #[test]
    fn expiry_list_stays_bounded_when_results_are_taken() {
        let now = Instant::now();
        let mut shard = parked_shard(10_000, now);
        // Taken results leave their ids behind in the expiry list...
        for id in 0..9_990 {
            shard.map.remove(&id);
            shard.retained -= 1;
        }
        assert_eq!(shard.expiry.len(), 10_000);
        // ...until the next sweep compacts them away.
        shard.sweep(now, 1_000);
        assert_eq!(shard.retained, 10);
        assert!(shard.expiry.len() <= 2 * 10 + 64, "{}", shard.expiry.len());
    }
}
