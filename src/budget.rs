//! Internal: a budget for extra calls (retries, hedges) as a share of recent
//! traffic, shared by [`retry`](crate::retry) and [`hedge`](crate::hedge).
//!
//! Over any recent `window` it allows
//!
//! ```text
//! extra ≤ ratio × calls + min_per_sec × window
//! ```
//!
//! A ring of [`SLOTS`] time slots (each `window / SLOTS` long) records, per
//! slot, the caller's monotonic call counter when the slot was first seen
//! and the extra calls granted in it. Calls in the window are the counter
//! now minus its value at the oldest slot still in the window. The ring
//! sits behind a short mutex taken only when an extra call is considered:
//! the path where no extra call is made never touches it.
//!
//! Slots are opened lazily (by the first withdrawal in them), so calls made
//! before the oldest open slot are not credited: after a quiet period the
//! budget errs on the strict side for at most one window. The floor keeps
//! occasional extra calls flowing meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::lock;

/// Number of time slots the window is divided into.
pub(crate) const SLOTS: usize = 10;

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Slot number since `origin`; meaningful only when `used`.
    index: u64,
    /// The call counter when this slot was opened.
    calls_at_open: u64,
    /// Extra calls granted in this slot.
    granted: u64,
    used: bool,
}

#[derive(Debug, Default)]
struct Ring {
    origin: Option<Instant>,
    head: usize,
    slots: [Slot; SLOTS],
}

/// The live state of a budget: `ratio` extra calls per call plus
/// `min_per_sec` a second, over the last `window`.
#[derive(Debug)]
pub(crate) struct Budget {
    ratio: f64,
    /// `min_per_sec × window`, in extra calls.
    floor: f64,
    slot_nanos: u128,
    ring: Mutex<Ring>,
}

impl Budget {
    pub(crate) fn new(ratio: f64, min_per_sec: u32, window: Duration) -> Self {
        Budget {
            ratio,
            floor: f64::from(min_per_sec) * window.as_secs_f64(),
            slot_nanos: (window.as_nanos() / SLOTS as u128).max(1),
            ring: Mutex::new(Ring::default()),
        }
    }

    /// Asks for one extra call at `now`; `calls` reads the monotonic count
    /// of ordinary calls. Returns whether the extra call may go ahead (and,
    /// if so, records it).
    pub(crate) fn try_withdraw(&self, now: Instant, calls: impl FnOnce() -> u64) -> bool {
        let mut ring = lock(&self.ring);
        // Read under the lock so every reader sees a value at least as new
        // as the one stored in any slot.
        let total = calls();
        let origin = *ring.origin.get_or_insert(now);
        let slot = (now.saturating_duration_since(origin).as_nanos() / self.slot_nanos)
            .min(u128::from(u64::MAX)) as u64;

        let head = ring.head;
        if !ring.slots[head].used || ring.slots[head].index != slot {
            let next = (head + 1) % SLOTS;
            ring.head = next;
            ring.slots[next] = Slot {
                index: slot,
                calls_at_open: total,
                granted: 0,
                used: true,
            };
        }

        let mut granted = 0u64;
        let mut oldest = total;
        for s in ring.slots.iter().filter(|s| s.used) {
            // In the window: the current slot and the SLOTS - 1 before it.
            if s.index.saturating_add(SLOTS as u64) > slot {
                granted += s.granted;
                oldest = oldest.min(s.calls_at_open);
            }
        }
        let deposits = total.saturating_sub(oldest) as f64;
        let allowed = self.ratio * deposits + self.floor;
        if (granted + 1) as f64 <= allowed {
            let head = ring.head;
            ring.slots[head].granted += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(start_paused = true)]
    async fn ratio_and_floor() {
        let state = Budget::new(0.5, 1, Duration::from_secs(10));
        let calls = AtomicU64::new(0);
        // Floor alone: 1/s over 10 s = 10 extra calls.
        let granted = (0..50)
            .filter(|_| state.try_withdraw(Instant::now(), || calls.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 10);
        // 40 more calls: + 20 extra.
        calls.fetch_add(40, Ordering::Relaxed);
        let granted = (0..50)
            .filter(|_| state.try_withdraw(Instant::now(), || calls.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn window_slides() {
        let state = Budget::new(0.0, 1, Duration::from_secs(10));
        let calls = AtomicU64::new(0);
        let granted = (0..20)
            .filter(|_| state.try_withdraw(Instant::now(), || calls.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 10);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!state.try_withdraw(Instant::now(), || calls.load(Ordering::Relaxed)));
        // Once the slot holding the early grants leaves the window, the
        // budget refills.
        tokio::time::advance(Duration::from_secs(6)).await;
        let granted = (0..20)
            .filter(|_| state.try_withdraw(Instant::now(), || calls.load(Ordering::Relaxed)))
            .count();
        assert_eq!(granted, 10);
    }
}
