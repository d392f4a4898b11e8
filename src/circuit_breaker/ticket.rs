//! The ticket an admitted call carries until its outcome is recorded.

/// Proof of admission: the epoch the call was admitted in, and whether it
/// is a half-open probe (holding one of the probe slots).
///
/// One `u64` (epoch in the low 32 bits, then the probe bit), so that
/// moving it around the hot path is a single 8-byte copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

const TICKET_PROBE: u64 = 1 << 32;

impl Ticket {
    #[inline]
    pub(crate) fn new(epoch: u32, probe: bool) -> Self {
        Ticket(u64::from(epoch) | if probe { TICKET_PROBE } else { 0 })
    }

    /// The epoch of the state word the call was admitted in.
    #[inline]
    pub(crate) fn epoch(self) -> u32 {
        self.0 as u32
    }

    /// Whether the call holds a half-open probe slot.
    #[inline]
    pub(crate) fn is_probe(self) -> bool {
        self.0 & TICKET_PROBE != 0
    }

    /// The ticket as bits (below bit 33), for callers that pack it.
    #[inline]
    pub(crate) fn bits(self) -> u64 {
        self.0
    }

    /// A ticket from [`bits`](Self::bits) (higher bits ignored).
    #[inline]
    pub(crate) fn from_bits(bits: u64) -> Self {
        Ticket(bits & (TICKET_PROBE | u64::from(u32::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_bits_round_trip_and_ignore_higher_bits() {
        let t = Ticket::new(u32::MAX, true);
        assert_eq!((t.epoch(), t.is_probe()), (u32::MAX, true));
        assert_eq!(Ticket::from_bits(t.bits() | 1 << 62 | 1 << 63), t);
        assert!(!Ticket::new(7, false).is_probe());
    }
}
