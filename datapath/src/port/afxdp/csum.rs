//! Internet checksum (RFC 1071) completion for frames that cross AF_XDP.
//!
//! AF_XDP descriptors carry no `CHECKSUM_PARTIAL` state, yet a sender with
//! tx checksum offload leaves only the pseudo-header sum (RFC 793 §3.1,
//! RFC 768, RFC 8200 §8.1) in the TCP/UDP checksum field and expects the
//! device to finish it. Such a field is recognised by comparing it with the
//! folded pseudo-header sum, which costs only header work for frames that
//! are already complete. Completing a field that merely looks partial is
//! harmless: summing the segment with the pseudo-header value in the field
//! yields exactly the full checksum, so a complete checksum that happens to
//! equal the pseudo-header sum is rewritten to itself.
//!
//! Private to the AF_XDP port until the shared `wire` checksum code lands;
//! the lead can then replace it.

const ETH_HLEN: usize = 14;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// One's-complement sum of `data` as big-endian 16-bit words, unfolded.
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u64::from(u16::from_be_bytes([p[0], p[1]]));
    }
    if let [last] = pairs.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits with end-around carry (not complemented).
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Where a frame's L4 checksum lives and what its pseudo-header sums to.
struct L4 {
    start: usize,
    end: usize,
    field: usize,
    udp: bool,
    pseudo: u64,
}

fn locate_l4(frame: &[u8]) -> Option<L4> {
    let mut off = 12;
    let mut ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    // Up to two 802.1Q / 802.1ad tags.
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            off += 4;
            ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        }
    }
    let l3 = off + 2;
    let (proto, start, end, pseudo) = match ethertype {
        0x0800 => {
            let ip = frame.get(l3..l3 + 20)?;
            if ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            // A fragment's checksum covers the whole datagram: not ours.
            if ihl < 20 || total < ihl || frag & 0x3fff != 0 {
                return None;
            }
            let start = l3 + ihl;
            let end = l3 + total;
            if end > frame.len() {
                return None;
            }
            let l4_len = (total - ihl) as u64;
            let pseudo = sum_words(&ip[12..20], 0) + u64::from(ip[9]) + l4_len;
            (ip[9], start, end, pseudo)
        }
        0x86dd => {
            let ip = frame.get(l3..l3 + 40)?;
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let start = l3 + 40;
            let end = start + payload;
            if end > frame.len() {
                return None;
            }
            // Extension headers are left alone: the stack does not offload
            // checksums behind them in practice.
            let pseudo = sum_words(&ip[8..40], 0) + u64::from(ip[6]) + payload as u64;
            (ip[6], start, end, pseudo)
        }
        _ => return None,
    };
    let (field, udp) = match proto {
        PROTO_TCP if end >= start + 20 => (start + 16, false),
        PROTO_UDP if end >= start + 8 => (start + 6, true),
        _ => return None,
    };
    Some(L4 {
        start,
        end,
        field,
        udp,
        pseudo,
    })
}

fn complete(frame: &mut [u8], start: usize, end: usize, field: usize, udp: bool) {
    let sum = !fold(sum_words(&frame[start..end], 0));
    // RFC 768: a computed zero is sent as all ones (zero means "none").
    let sum = if udp && sum == 0 { 0xffff } else { sum };
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
}

/// Finishes the TCP/UDP checksum of an Ethernet frame whose checksum field
/// holds only the pseudo-header sum. Returns true when it was rewritten.
/// Frames of other protocols, fragments and malformed frames are untouched.
pub(crate) fn finish_partial_l4(frame: &mut [u8]) -> bool {
    if frame.len() < ETH_HLEN {
        return false;
    }
    let Some(l4) = locate_l4(frame) else {
        return false;
    };
    let field = u16::from_be_bytes([frame[l4.field], frame[l4.field + 1]]);
    // IPv4 UDP without checksum.
    if l4.udp && field == 0 {
        return false;
    }
    if field != fold(l4.pseudo) {
        return false;
    }
    complete(frame, l4.start, l4.end, l4.field, l4.udp);
    true
}

/// Completes a checksum described by virtio_net_hdr-style offload state:
/// sum from `csum_start` (from the Ethernet header) to the end, stored at
/// `csum_start + csum_offset`. False when the offsets lie outside the frame.
pub(crate) fn finish_at(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> bool {
    let field = csum_start + csum_offset;
    if field + 2 > frame.len() {
        return false;
    }
    // A UDP checksum sits 6 bytes in; TCP at 16.
    let udp = csum_offset == 6;
    let end = frame.len();
    complete(frame, csum_start, end, field, udp);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp4_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, 12345, 65535);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn udp6_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
            .udp(5000, 6000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    /// Replaces the L4 checksum with the folded pseudo-header sum, as the
    /// Linux stack leaves it for CHECKSUM_PARTIAL.
    fn make_partial(frame: &mut [u8]) {
        let l4 = locate_l4(frame).unwrap();
        let p = fold(l4.pseudo).to_be_bytes();
        frame[l4.field..l4.field + 2].copy_from_slice(&p);
    }

    #[test]
    fn partial_tcp_v4_checksum_is_completed_to_the_real_one() {
        let good = tcp4_frame(b"hello, checksum offload, odd length!");
        let mut f = good.clone();
        make_partial(&mut f);
        assert_ne!(f, good);
        assert!(finish_partial_l4(&mut f));
        assert_eq!(f, good);
    }

    #[test]
    fn partial_udp_v6_checksum_is_completed_to_the_real_one() {
        let good = udp6_frame(&[0x5a; 1001]);
        let mut f = good.clone();
        make_partial(&mut f);
        assert!(finish_partial_l4(&mut f));
        assert_eq!(f, good);
    }

    #[test]
    fn complete_checksums_are_left_alone() {
        let mut f = tcp4_frame(&[1, 2, 3, 4, 5]);
        let before = f.clone();
        assert!(!finish_partial_l4(&mut f));
        assert_eq!(f, before);
    }

    #[test]
    fn vlan_tagged_frame_is_completed() {
        let good = tcp4_frame(&[9; 100]);
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        tagged.extend_from_slice(&good[12..]);
        let expected = tagged.clone();
        make_partial(&mut tagged);
        assert!(finish_partial_l4(&mut tagged));
        assert_eq!(tagged, expected);
    }

    #[test]
    fn truncated_and_garbage_frames_do_not_panic() {
        let good = tcp4_frame(&[7; 64]);
        for cut in 0..good.len() {
            let mut f = good[..cut].to_vec();
            let _ = finish_partial_l4(&mut f);
        }
        let mut junk = vec![0xffu8; 80];
        assert!(!finish_partial_l4(&mut junk));
        assert!(!finish_at(&mut junk[..10], 8, 6));
    }

    #[test]
    fn finish_at_uses_offload_offsets() {
        let good = tcp4_frame(&[3; 333]);
        let mut f = good.clone();
        make_partial(&mut f);
        assert!(finish_at(&mut f, 34, 16));
        assert_eq!(f, good);
    }
}
