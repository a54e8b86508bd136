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
//! The arithmetic is [`crate::wire::checksum`]'s; this module only adds the
//! O(headers) detection of a partial field in a frame without metadata.

use crate::wire::checksum::{pseudo_header_ipv4, pseudo_header_ipv6};
use crate::wire::complete_partial_checksum;

const ETH_HLEN: usize = 14;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Where a frame's L4 checksum lives and what its pseudo-header sums to.
struct L4 {
    start: usize,
    end: usize,
    field: usize,
    udp: bool,
    /// Folded pseudo-header sum.
    pseudo: u16,
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
            let l4_len = (total - ihl) as u32;
            let pseudo = pseudo_header_ipv4(&ip[12..16], &ip[16..20], ip[9], l4_len);
            (ip[9], start, end, pseudo as u16)
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
            let pseudo = pseudo_header_ipv6(&ip[8..24], &ip[24..40], ip[6], payload as u32);
            (ip[6], start, end, pseudo as u16)
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
    if field != l4.pseudo {
        return false;
    }
    // Sum only up to the IP end: Ethernet padding is not part of it.
    complete_partial_checksum(&mut frame[..l4.end], l4.start, l4.field - l4.start).is_ok()
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
        let p = l4.pseudo.to_be_bytes();
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
    }
}
