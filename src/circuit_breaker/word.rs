//! The state word: everything the hot paths read, packed in one `u64`.
//!
//! ```text
//! bits  0..2   state: 0 Closed, 1 Open, 2 HalfOpen
//! bit   2      held open by force_open (no timer)
//! bits  3..23  Closed: consecutive failures  | HalfOpen: free probe slots
//! bits 23..43  HalfOpen: successful probes
//! bits 43..64  epoch, bumped by every transition
//! ```
//!
//! In a healthy closed breaker the word never changes, so every thread
//! reads it from its own cache. Pure bit arithmetic: the atomic that holds
//! the word lives in [`Core`](super::core::Core).

use crate::rejection::State;

/// Largest value of the 20-bit fields (consecutive failures, probe slots).
pub(crate) const FIELD_MAX: u32 = (1 << 20) - 1;

pub(crate) const CLOSED: u64 = 0;
pub(crate) const OPEN: u64 = 1;
pub(crate) const HALF_OPEN: u64 = 2;
pub(crate) const STATE_MASK: u64 = 0b11;
pub(crate) const HELD: u64 = 0b100;
const A_SHIFT: u32 = 3;
const B_SHIFT: u32 = 23;
const FIELD_MASK: u64 = FIELD_MAX as u64;
const EPOCH_SHIFT: u32 = 43;

/// The state the word holds.
#[inline]
pub(crate) fn state_of(w: u64) -> State {
    match w & STATE_MASK {
        CLOSED => State::Closed,
        OPEN => State::Open,
        _ => State::HalfOpen,
    }
}

/// Field A: consecutive failures (closed) or free probe slots (half-open).
#[inline]
pub(crate) fn field_a(w: u64) -> u32 {
    ((w >> A_SHIFT) & FIELD_MASK) as u32
}

/// Field B: successful probes (half-open).
#[inline]
pub(crate) fn field_b(w: u64) -> u32 {
    ((w >> B_SHIFT) & FIELD_MASK) as u32
}

/// The epoch, bumped by every transition (21 bits, wrapping).
#[inline]
pub(crate) fn epoch_of(w: u64) -> u32 {
    (w >> EPOCH_SHIFT) as u32
}

/// `w` with field A set to `a`.
#[inline]
pub(crate) fn with_a(w: u64, a: u32) -> u64 {
    (w & !(FIELD_MASK << A_SHIFT)) | (u64::from(a) << A_SHIFT)
}

/// `w` with field B set to `b`.
#[inline]
pub(crate) fn with_b(w: u64, b: u32) -> u64 {
    (w & !(FIELD_MASK << B_SHIFT)) | (u64::from(b) << B_SHIFT)
}

/// A whole word. `state` is `CLOSED`, `OPEN` or `HALF_OPEN`; the epoch
/// wraps instead of spilling into other fields.
pub(crate) fn word(state: u64, held: bool, a: u32, b: u32, epoch: u32) -> u64 {
    let epoch = u64::from(epoch) & ((1 << (64 - EPOCH_SHIFT)) - 1);
    state
        | if held { HELD } else { 0 }
        | (u64::from(a) << A_SHIFT)
        | (u64::from(b) << B_SHIFT)
        | (epoch << EPOCH_SHIFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fields_round_trip() {
        let w = word(HALF_OPEN, false, 7, 9, 12345);
        assert_eq!(state_of(w), State::HalfOpen);
        assert_eq!((field_a(w), field_b(w), epoch_of(w)), (7, 9, 12345));
        let w = with_b(with_a(w, FIELD_MAX), 0);
        assert_eq!((field_a(w), field_b(w), epoch_of(w)), (FIELD_MAX, 0, 12345));
        // The epoch wraps instead of spilling into other fields.
        let w = word(OPEN, true, 0, 0, u32::MAX);
        assert_eq!(state_of(w), State::Open);
        assert_eq!(w & HELD, HELD);
        assert_eq!(epoch_of(w), (1 << 21) - 1);
    }
}
