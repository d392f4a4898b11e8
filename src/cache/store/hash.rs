//! The hash every [`MemoryStore`](super::MemoryStore) uses: a keyed
//! folded-multiply hash. Fast on short keys, with a random per-store seed so
//! that an adversary cannot precompute colliding keys.

use std::hash::{BuildHasher, Hasher};

const MUL1: u64 = 0x243f_6a88_85a3_08d3;
const MUL2: u64 = 0x1319_8a2e_0370_7344;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128).wrapping_mul(b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FoldState {
    seed: u64,
    seed2: u64,
}

impl FoldState {
    pub(crate) fn random() -> Self {
        FoldState {
            seed: fastrand::u64(..),
            seed2: fastrand::u64(..) | 1,
        }
    }
}

pub(crate) struct FoldHasher {
    acc: u64,
    seed: u64,
    seed2: u64,
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(b));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64 | 0x100);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64 | 0x1_0000_0000);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.acc = fold_mul(self.acc ^ i ^ self.seed, MUL1);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        fold_mul(self.acc ^ self.seed2, MUL2)
    }
}

impl BuildHasher for FoldState {
    type Hasher = FoldHasher;

    #[inline]
    fn build_hasher(&self) -> FoldHasher {
        FoldHasher {
            acc: 0,
            seed: self.seed,
            seed2: self.seed2,
        }
    }
}
