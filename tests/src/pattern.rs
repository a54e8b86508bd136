//! The byte pattern of the checked transfers (`vsw-trafcheck`,
//! `vsw-stream`): byte `pos` of a stream is byte `pos % 8` of splitmix64 of
//! the word index `pos / 8`, so every 8-byte word differs and a duplicated,
//! lost or reordered segment shows up as a mismatch at a known offset.

/// splitmix64 of word index `i`.
pub fn word(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream's bytes at `[off, off + out.len())`.
pub fn fill(off: u64, out: &mut [u8]) {
    let mut i = 0;
    while i < out.len() {
        let pos = off + i as u64;
        let b = (pos % 8) as usize;
        let bytes = word(pos / 8).to_le_bytes();
        let take = (8 - b).min(out.len() - i);
        out[i..i + take].copy_from_slice(&bytes[b..b + take]);
        i += take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_does_not_change_the_pattern() {
        let mut whole = vec![0u8; 1000];
        fill(3, &mut whole);
        let mut parts = vec![0u8; 1000];
        let (a, b) = parts.split_at_mut(13);
        fill(3, a);
        fill(16, b);
        assert_eq!(whole, parts);
        assert_ne!(whole[..8], whole[8..16]);
    }
}
