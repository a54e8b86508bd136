//! A fast hasher for flow keys (whole 64-bit words, multiply-rotate).
//!
//! Not DoS-resistant, which is acceptable because every cache is bounded
//! and evicts; keys are hashed a word at a time, so a 96-byte key costs a
//! dozen multiplies.

use std::hash::{BuildHasher, Hasher};

/// The [`BuildHasher`] of every flow-keyed map in the datapath.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowHashBuilder;

impl BuildHasher for FlowHashBuilder {
    type Hasher = FlowHasher;

    #[inline]
    fn build_hasher(&self) -> FlowHasher {
        FlowHasher::default()
    }
}

/// The hasher built by [`FlowHashBuilder`].
#[derive(Clone, Copy, Debug)]
pub struct FlowHasher(u64);

impl Default for FlowHasher {
    #[inline]
    fn default() -> Self {
        FlowHasher(0x243f_6a88_85a3_08d3)
    }
}

impl Hasher for FlowHasher {
    #[inline]
    fn finish(&self) -> u64 {
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0 ^ w)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(31);
    }

    #[inline]
    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
}
