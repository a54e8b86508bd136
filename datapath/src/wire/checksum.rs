//! The Internet checksum: computation (RFC 1071), incremental update
//! (RFC 1624 §3, equation 3) and the TCP/UDP pseudo headers (RFC 9293
//! §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
//!
//! Sums are carried as `u32` values already folded to 16 bits, in network
//! byte order (the first byte of the data is the high byte of the first
//! word). [`finish`] turns a sum into the value stored in a header. Only
//! the folded form crosses function boundaries, so sums can be chained
//! over any number of pieces without overflow.

/// Folds a 64-bit one's-complement accumulator to 16 bits (end-around
/// carry, RFC 1071 §2 (C)).
#[inline]
pub fn fold(mut sum: u64) -> u32 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u32
}

/// Adds `data` to the folded sum `initial`. An odd trailing byte is padded
/// with a zero byte, so only the last piece of a chain may be odd-sized.
#[inline]
pub fn add_bytes(initial: u32, data: &[u8]) -> u32 {
    // One's-complement addition is associative over any word width, so the
    // data is summed 8 bytes at a time with an end-around carry and folded
    // once (RFC 1071 §2 (B), "parallel summation").
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let (s, carry) = acc.overflowing_add(w);
        acc = s + u64::from(carry);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let w = u64::from_be_bytes(tail);
    let (s, carry) = acc.overflowing_add(w);
    acc = s + u64::from(carry);
    fold(acc)
}

/// Adds a 16-bit word to a folded sum.
#[inline]
pub fn add_u16(initial: u32, word: u16) -> u32 {
    fold(u64::from(initial) + u64::from(word))
}

/// The value to store in a checksum field for a folded sum.
#[inline]
pub fn finish(sum: u32) -> u16 {
    !(sum as u16)
}

/// RFC 1071 checksum of `data`, ready to store.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    finish(add_bytes(0, data))
}

/// RFC 1624 equation 3: the checksum `check` after the bytes `old` of the
/// covered data were replaced by `new` (same length, even offset).
#[inline]
pub fn update(check: u16, old: &[u8], new: &[u8]) -> u16 {
    // HC' = ~(~HC + ~m + m'); the sum of ~m over words is ~(sum of m).
    let removed = u64::from(!(add_bytes(0, old) as u16));
    let sum = u64::from(!check) + removed + u64::from(add_bytes(0, new));
    !(fold(sum) as u16)
}

/// [`update`] for one 16-bit word.
#[inline]
pub fn update_u16(check: u16, old: u16, new: u16) -> u16 {
    update(check, &old.to_be_bytes(), &new.to_be_bytes())
}

/// Updates a field that holds a folded, *uncomplemented* partial sum (the
/// pseudo-header sum Linux leaves in a `CHECKSUM_PARTIAL` L4 header) after
/// summed data changed from `old` to `new`.
#[inline]
pub fn update_partial(partial: u16, old: &[u8], new: &[u8]) -> u16 {
    !update(!partial, old, new)
}

/// Folded sum of the IPv4 pseudo header (source, destination, zero,
/// protocol, upper-layer length).
#[inline]
pub fn pseudo_header_ipv4(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u32 {
    let mut sum = add_bytes(0, &src[..4]);
    sum = add_bytes(sum, &dst[..4]);
    sum = add_u16(sum, u16::from(proto));
    fold(u64::from(sum) + u64::from(l4_len))
}

/// Folded sum of the IPv6 pseudo header (source, destination, 32-bit
/// upper-layer length, 24 zero bits, next header).
#[inline]
pub fn pseudo_header_ipv6(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u32 {
    let mut sum = add_bytes(0, &src[..16]);
    sum = add_bytes(sum, &dst[..16]);
    sum = add_u16(sum, u16::from(proto));
    fold(u64::from(sum) + u64::from(l4_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward RFC 1071 reference: 16-bit words, carries folded at
    /// the end.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |b| u64::from(*b));
            sum += hi | lo;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 §3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(add_bytes(0, &data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_checksum_of_captured_header() {
        // A captured header whose checksum field is b861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0);
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn wide_summation_matches_the_reference_for_every_length_and_split() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 167 + 13) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(checksum(&data[..len]), reference(&data[..len]), "{len}");
        }
        for split in (0..200).step_by(2) {
            let sum = add_bytes(add_bytes(0, &data[..split]), &data[split..201]);
            assert_eq!(finish(sum), reference(&data[..201]), "{split}");
        }
        assert_eq!(checksum(&[0xff; 65_536]), reference(&[0xff; 65_536]));
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        let check = checksum(&data);
        let old = data[12..16].to_vec();
        let new = [0xc0, 0xa8, 0xff, 0x00];
        data[12..16].copy_from_slice(&new);
        assert_eq!(update(check, &old, &new), checksum(&data));
        let old_word = u16::from_be_bytes([data[6], data[7]]);
        let updated = update_u16(checksum(&data), old_word, 0xfff0);
        data[6] = 0xff;
        data[7] = 0xf0;
        assert_eq!(updated, checksum(&data));
    }

    #[test]
    fn partial_sum_update_tracks_the_pseudo_header() {
        let src = [10, 0, 0, 1];
        let dst = [10, 0, 0, 2];
        let partial = pseudo_header_ipv4(&src, &dst, 6, 40) as u16;
        let new_src = [172, 16, 5, 9];
        let want = pseudo_header_ipv4(&new_src, &dst, 6, 40) as u16;
        assert_eq!(update_partial(partial, &src, &new_src), want);
    }

    #[test]
    fn pseudo_header_ipv6_matches_its_definition() {
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut ph = Vec::new();
        ph.extend_from_slice(&src);
        ph.extend_from_slice(&dst);
        ph.extend_from_slice(&70_000u32.to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            finish(pseudo_header_ipv6(&src, &dst, 17, 70_000)),
            reference(&ph)
        );
    }
}
