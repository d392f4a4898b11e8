//! Internal: the synchronisation plumbing every pattern shares.
//!
//! - [`lock`], [`read`] and [`write`] take a std lock and recover from
//!   poisoning. No user code runs under this crate's locks (callbacks and
//!   inner services are always called after the guard is dropped), so the
//!   guarded data is consistent at every step and a poisoned lock is used as
//!   is rather than turned into a panic of our own.
//! - [`Padded`] keeps a hot value on its own cache line.
//! - [`Spaced`] keeps heap values allocated one per service clone from
//!   sharing a line with each other, without over-aligning them.
//! - [`thread_stripe`] spreads threads over striped state (counters, lookup
//!   tables) without a shared atomic on the hot path.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, recovering the guard if a panic poisoned it.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `l`, recovering the guard if a panic poisoned it.
#[inline]
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `l`, recovering the guard if a panic poisoned it.
#[inline]
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Pads a value to its own cache line. 128 bytes covers adjacent-line
/// prefetching on x86 and the 128-byte lines of some ARM cores.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for Padded<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// A value followed by 128 spare bytes, for a small heap value allocated
/// per service clone (in an `Arc`, whose counts sit at its start): the
/// next allocation begins at least 128 bytes past this one's start, so two
/// clones' reference counts never share a cache line (nor an adjacent
/// pair of lines). Unlike [`Padded`] it does not raise the alignment: an
/// allocation aligned beyond 16 bytes takes the allocator's slow path
/// (glibc's `posix_memalign`, several hundred instructions with its free,
/// against a few dozen for a plain `malloc`).
#[repr(C)]
pub(crate) struct Spaced<T> {
    value: T,
    _gap: [u8; 128],
}

impl<T> Spaced<T> {
    #[inline]
    pub(crate) fn new(value: T) -> Self {
        Spaced {
            value,
            _gap: [0; 128],
        }
    }
}

impl<T> std::ops::Deref for Spaced<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// A small number fixed for the current thread, handed out round-robin, so
/// that threads spread over striped state. Callers reduce it to their own
/// stripe count (`thread_stripe() & (n - 1)` for a power of two `n`).
#[inline]
pub(crate) fn thread_stripe() -> usize {
    STRIPE
        .try_with(|c| {
            let v = c.get();
            if v != usize::MAX {
                v
            } else {
                let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed);
                c.set(v);
                v
            }
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);

        let l = Arc::new(RwLock::new(1));
        let l2 = l.clone();
        let _ = std::thread::spawn(move || {
            let _g = l2.write().unwrap();
            panic!("poison it");
        })
        .join();
        *write(&l) += 1;
        assert_eq!(*read(&l), 2);
    }

    #[test]
    fn a_thread_keeps_its_stripe_and_threads_differ() {
        let a = thread_stripe();
        assert_eq!(a, thread_stripe());
        let b = std::thread::spawn(thread_stripe).join().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn spaced_values_keep_their_alignment_and_leave_a_gap() {
        assert_eq!(std::mem::align_of::<Spaced<u64>>(), 8);
        assert_eq!(std::mem::size_of::<Spaced<u64>>(), 8 + 128);
        let a = std::sync::Arc::new(Spaced::new(1u64));
        let b = std::sync::Arc::new(Spaced::new(2u64));
        let (pa, pb) = (
            std::sync::Arc::as_ptr(&a) as usize,
            std::sync::Arc::as_ptr(&b) as usize,
        );
        assert!(pa.abs_diff(pb) >= 128, "{pa:#x} {pb:#x}");
        assert_eq!((**a, **b), (1, 2));
    }

    #[test]
    fn padded_values_sit_on_their_own_line() {
        assert_eq!(std::mem::align_of::<Padded<u8>>(), 128);
        let p = Padded(5u32);
        assert_eq!(*p, 5);
    }
}
