//! Checksums the sender left to the NIC, finished in software.
//!
//! Two cases reach a port that cannot offload them:
//! - a frame with virtio `NEEDS_CSUM` (virtio spec 1.1 §5.1.6.2): the L4
//!   checksum field holds the pseudo-header sum and the checksum over
//!   `csum_start..` to the end of the frame must be stored at
//!   `csum_start + csum_offset` ([`complete_partial_checksum`],
//!   [`finish_packet_checksum`]);
//! - an AF_XDP frame from a namespace with tx checksum offload on: the
//!   field holds the same partial sum but no metadata says so, so the
//!   checksum is computed from scratch from the IP header
//!   ([`fill_l4_checksum`], RFC 9293 §3.1 / RFC 768 / RFC 8200 §8.1), or,
//!   when the frame leaves through a port with checksum offload, turned
//!   back into a partial one in O(headers) ([`make_partial_checksum`]).
//!
//! As Linux's `skb_checksum_help` does, a result of 0 is stored as 0xffff
//! (equivalent for TCP, required for UDP where 0 means "no checksum").

use super::checksum::{add_bytes, finish, pseudo_header_ipv4, pseudo_header_ipv6};
use super::rewrite::HeaderLayout;
use super::sctp::{correct_checksum, SCTP_CHECKSUM_OFS, SCTP_COMMON_LEN};
use crate::packet::{OffloadMeta, Packet};

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;
const IPV4_MIN_LEN: usize = 20;
const IPV6_LEN: usize = 40;

/// Why a checksum could not be finished; the frame is left unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumError {
    /// `csum_start + csum_offset` does not leave room for the field.
    #[error(
        "frame of {len} bytes: checksum field at csum_start {start} + csum_offset {offset} \
         is outside the frame"
    )]
    FieldOutsideFrame {
        /// Frame length.
        len: usize,
        /// `csum_start`.
        start: usize,
        /// `csum_offset`.
        offset: usize,
    },
    /// A header is cut short.
    #[error("frame of {len} bytes: {header} header needs {need} bytes")]
    Truncated {
        /// Header that does not fit.
        header: &'static str,
        /// Bytes needed.
        need: usize,
        /// Frame length.
        len: usize,
    },
    /// The bytes at `l3_ofs` are neither IPv4 nor IPv6.
    #[error("frame: no IPv4 or IPv6 header at offset {l3_ofs}")]
    NotIp {
        /// Offset looked at.
        l3_ofs: usize,
    },
    /// The IP length ends before the L4 header or after the frame.
    #[error("frame of {len} bytes: IP packet ends at {ip_end}, L4 header starts at {l4_ofs}")]
    BadIpLength {
        /// Frame length.
        len: usize,
        /// End of the IP packet per its length field.
        ip_end: usize,
        /// Offset of the L4 header.
        l4_ofs: usize,
    },
    /// No L4 header, or one without a checksum this module knows.
    #[error("frame: IP protocol {proto} at offset {l4_ofs} has no checksum to fill")]
    Unsupported {
        /// IP protocol.
        proto: u8,
        /// L4 offset (0: none).
        l4_ofs: usize,
    },
}

#[inline]
fn read16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

#[inline]
fn store_nonzero(frame: &mut [u8], at: usize, v: u16) {
    let v = if v == 0 { 0xffff } else { v };
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Finishes a partial checksum: sums `frame[csum_start..]` (whose checksum
/// field holds the pseudo-header sum) and stores the result at
/// `csum_start + csum_offset`.
pub fn complete_partial_checksum(
    frame: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), ChecksumError> {
    let field = csum_start + csum_offset;
    if field + 2 > frame.len() {
        return Err(ChecksumError::FieldOutsideFrame {
            len: frame.len(),
            start: csum_start,
            offset: csum_offset,
        });
    }
    let v = finish(add_bytes(0, &frame[csum_start..]));
    store_nonzero(frame, field, v);
    Ok(())
}

/// [`complete_partial_checksum`] driven by a packet's offload metadata;
/// clears `F_NEEDS_CSUM` afterwards. Returns false when the packet did not
/// need it.
pub fn finish_packet_checksum(pkt: &mut Packet) -> Result<bool, ChecksumError> {
    if !pkt.offload.needs_csum() {
        return Ok(false);
    }
    let start = usize::from(pkt.offload.csum_start);
    let offset = usize::from(pkt.offload.csum_offset);
    complete_partial_checksum(pkt.data_mut(), start, offset)?;
    pkt.offload.flags &= !OffloadMeta::F_NEEDS_CSUM;
    Ok(true)
}

/// Where an L4 checksum lives and what covers it.
struct L4Span {
    /// End of the IP packet per its length field.
    ip_end: usize,
    /// Checksum field offset from the L4 header.
    csum_ofs: usize,
    /// Folded pseudo-header sum (0 for SCTP, which has none).
    pseudo: u32,
}

/// Validates the IP and L4 headers of `layout` and finds the span its L4
/// checksum covers.
fn l4_span(frame: &[u8], layout: &HeaderLayout) -> Result<L4Span, ChecksumError> {
    let (l3, l4, proto) = (layout.l3_ofs, layout.l4_ofs, layout.ip_proto);
    let len = frame.len();
    let truncated = |header, need| ChecksumError::Truncated { header, need, len };
    let version = *frame.get(l3).ok_or(truncated("IP", l3 + 1))? >> 4;
    let ip_end = match version {
        4 if len >= l3 + IPV4_MIN_LEN => l3 + usize::from(read16(frame, l3 + 2)),
        6 if len >= l3 + IPV6_LEN => match read16(frame, l3 + 4) {
            0 => len,
            payload => l3 + IPV6_LEN + usize::from(payload),
        },
        4 => return Err(truncated("IPv4", l3 + IPV4_MIN_LEN)),
        6 => return Err(truncated("IPv6", l3 + IPV6_LEN)),
        _ => return Err(ChecksumError::NotIp { l3_ofs: l3 }),
    };
    let csum_ofs = match proto {
        IPPROTO_TCP => 16,
        IPPROTO_UDP => 6,
        IPPROTO_ICMPV6 if version == 6 => 2,
        IPPROTO_SCTP => SCTP_CHECKSUM_OFS,
        _ => 0,
    };
    if l4 == 0 || csum_ofs == 0 {
        return Err(ChecksumError::Unsupported { proto, l4_ofs: l4 });
    }
    let field_len = if proto == IPPROTO_SCTP {
        SCTP_COMMON_LEN - csum_ofs
    } else {
        2
    };
    if ip_end > len || ip_end < l4 + csum_ofs + field_len {
        return Err(ChecksumError::BadIpLength {
            len,
            ip_end,
            l4_ofs: l4,
        });
    }
    let l4_len = (ip_end - l4) as u32;
    let pseudo = match (proto, version) {
        (IPPROTO_SCTP, _) => 0,
        (_, 4) => pseudo_header_ipv4(&frame[l3 + 12..], &frame[l3 + 16..], proto, l4_len),
        _ => pseudo_header_ipv6(&frame[l3 + 8..], &frame[l3 + 24..], proto, l4_len),
    };
    Ok(L4Span {
        ip_end,
        csum_ofs,
        pseudo,
    })
}

/// Computes the TCP, UDP, ICMPv6 or SCTP (CRC32c) checksum of an
/// IPv4/IPv6 frame from scratch, ignoring whatever the field held. The L4
/// length comes from the IP header, so Ethernet padding is not summed.
pub fn fill_l4_checksum(frame: &mut [u8], layout: &HeaderLayout) -> Result<(), ChecksumError> {
    let span = l4_span(frame, layout)?;
    let l4 = layout.l4_ofs;
    if layout.ip_proto == IPPROTO_SCTP {
        let sctp = &mut frame[l4..span.ip_end];
        let crc = correct_checksum(sctp);
        sctp[span.csum_ofs..span.csum_ofs + 4].copy_from_slice(&crc.to_field());
        return Ok(());
    }
    let field = l4 + span.csum_ofs;
    frame[field..field + 2].fill(0);
    let v = finish(add_bytes(span.pseudo, &frame[l4..span.ip_end]));
    store_nonzero(frame, field, v);
    Ok(())
}

/// Turns the TCP or UDP checksum of a packet, whatever it held, into a
/// partial one: the field gets the pseudo-header sum and the offload
/// metadata says `NEEDS_CSUM` with `csum_start`/`csum_offset` set, as a
/// Linux sender leaves it. A port with checksum offload (a TAP with
/// vnet_hdr) then hands the frame on without anyone summing the payload;
/// this is how an AF_XDP frame of unknown checksum state reaches a TAP
/// cheaply. Costs O(headers), not O(payload).
pub fn make_partial_checksum(pkt: &mut Packet, layout: &HeaderLayout) -> Result<(), ChecksumError> {
    if !matches!(layout.ip_proto, IPPROTO_TCP | IPPROTO_UDP) {
        return Err(ChecksumError::Unsupported {
            proto: layout.ip_proto,
            l4_ofs: layout.l4_ofs,
        });
    }
    let span = l4_span(pkt.data(), layout)?;
    let field = layout.l4_ofs + span.csum_ofs;
    // csum_start/csum_offset are u16 in virtio_net_hdr; a frame from a
    // pool buffer is shorter than 64 KiB + headers, and L4 starts early.
    let (Ok(start), Ok(offset)) = (u16::try_from(layout.l4_ofs), u16::try_from(span.csum_ofs))
    else {
        return Err(ChecksumError::BadIpLength {
            len: pkt.len(),
            ip_end: span.ip_end,
            l4_ofs: layout.l4_ofs,
        });
    };
    let frame = pkt.data_mut();
    frame[field..field + 2].copy_from_slice(&(span.pseudo as u16).to_be_bytes());
    pkt.offload.flags |= OffloadMeta::F_NEEDS_CSUM;
    pkt.offload.csum_start = start;
    pkt.offload.csum_offset = offset;
    Ok(())
}

/// Recomputes an IPv4 header checksum (RFC 791 §3.1) in place.
pub fn fill_ipv4_checksum(frame: &mut [u8], l3_ofs: usize) -> Result<(), ChecksumError> {
    let len = frame.len();
    if len < l3_ofs + IPV4_MIN_LEN {
        return Err(ChecksumError::Truncated {
            header: "IPv4",
            need: l3_ofs + IPV4_MIN_LEN,
            len,
        });
    }
    let ihl = usize::from(frame[l3_ofs] & 0x0f) * 4;
    if frame[l3_ofs] >> 4 != 4 || ihl < IPV4_MIN_LEN {
        return Err(ChecksumError::NotIp { l3_ofs });
    }
    if len < l3_ofs + ihl {
        return Err(ChecksumError::Truncated {
            header: "IPv4",
            need: l3_ofs + ihl,
            len,
        });
    }
    frame[l3_ofs + 10..l3_ofs + 12].fill(0);
    let v = finish(add_bytes(0, &frame[l3_ofs..l3_ofs + ihl]));
    frame[l3_ofs + 10..l3_ofs + 12].copy_from_slice(&v.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::extract;
    use crate::packet::{PacketPool, TunnelMeta};
    use crate::wire::oracle::assert_checksums_valid;
    use crate::wire::rewrite::L4Checksum;
    use etherparse::PacketBuilder;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn layout(frame: &[u8]) -> HeaderLayout {
        let x = extract(frame, 1, &TunnelMeta::default()).unwrap();
        HeaderLayout::new(&x, &OffloadMeta::default())
    }

    /// What Linux hands over with CHECKSUM_PARTIAL: the field holds the
    /// folded pseudo-header sum.
    fn make_partial(frame: &mut [u8], l: &HeaderLayout, csum_offset: usize) {
        let l4_len = (frame.len() - l.l4_ofs) as u32;
        let l3 = l.l3_ofs;
        let sum = if frame[l3] >> 4 == 4 {
            pseudo_header_ipv4(&frame[l3 + 12..], &frame[l3 + 16..], l.ip_proto, l4_len)
        } else {
            pseudo_header_ipv6(&frame[l3 + 8..], &frame[l3 + 24..], l.ip_proto, l4_len)
        };
        let at = l.l4_ofs + csum_offset;
        frame[at..at + 2].copy_from_slice(&(sum as u16).to_be_bytes());
    }

    fn tcp4(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .single_vlan(etherparse::VlanId::try_new(10).unwrap())
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1, 2, 3, 4)
            .ack(1)
            .write(&mut f, payload)
            .unwrap();
        f
    }

    fn udp6(payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6([0xfe; 16], [0xfd; 16], 1)
            .udp(1000, 2000)
            .write(&mut f, payload)
            .unwrap();
        f
    }

    #[test]
    fn partial_checksums_are_completed_to_the_real_ones() {
        for (mut f, csum_offset) in [(tcp4(b"odd-sized data"), 16), (udp6(b"0123456789"), 6)] {
            let l = layout(&f);
            let want = f.clone();
            make_partial(&mut f, &l, csum_offset);
            assert_ne!(f, want);
            complete_partial_checksum(&mut f, l.l4_ofs, csum_offset).unwrap();
            assert_eq!(f, want);
            assert_checksums_valid(&f);
        }
    }

    #[test]
    fn packet_with_needs_csum_is_finished_and_flag_cleared() {
        let mut pool = PacketPool::new(2, 0, 0);
        let mut pkt = pool.alloc(128).unwrap();
        let mut f = tcp4(&[0x55; 33]);
        let l = layout(&f);
        make_partial(&mut f, &l, 16);
        pkt.copy_from(&f);
        pkt.offload.flags = OffloadMeta::F_NEEDS_CSUM | OffloadMeta::F_DATA_VALID;
        pkt.offload.csum_start = l.l4_ofs as u16;
        pkt.offload.csum_offset = 16;
        assert_eq!(finish_packet_checksum(&mut pkt), Ok(true));
        assert!(!pkt.offload.needs_csum());
        assert_eq!(pkt.offload.flags, OffloadMeta::F_DATA_VALID);
        assert_checksums_valid(pkt.data());
        let done = pkt.data().to_vec();
        assert_eq!(finish_packet_checksum(&mut pkt), Ok(false));
        assert_eq!(pkt.data(), &done[..]);
    }

    #[test]
    fn checksum_field_outside_the_frame_is_refused() {
        let mut f = udp6(b"x");
        let orig = f.clone();
        let len = f.len();
        assert_eq!(
            complete_partial_checksum(&mut f, len - 4, 3),
            Err(ChecksumError::FieldOutsideFrame {
                len,
                start: len - 4,
                offset: 3
            })
        );
        assert_eq!(f, orig);
    }

    #[test]
    fn make_partial_checksum_then_completion_gives_the_real_checksum() {
        let mut pool = PacketPool::new(4, 0, 0);
        for (frame, csum_ofs) in [(tcp4(b"partial payload"), 16u16), (udp6(b"datagram"), 6)] {
            let mut pkt = pool.alloc(frame.len()).unwrap();
            pkt.copy_from(&frame);
            let l = layout(&frame);
            // Whatever the field held before (here: garbage) is replaced.
            let at = l.l4_ofs + usize::from(csum_ofs);
            pkt.data_mut()[at] ^= 0x77;
            make_partial_checksum(&mut pkt, &l).unwrap();
            assert!(pkt.offload.needs_csum());
            assert_eq!(pkt.offload.csum_start as usize, l.l4_ofs);
            assert_eq!(pkt.offload.csum_offset, csum_ofs);
            assert_eq!(finish_packet_checksum(&mut pkt), Ok(true));
            assert_eq!(pkt.data(), &frame[..]);
            pool.free(pkt);
        }
        let mut pkt = pool.alloc(64).unwrap();
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6([1; 16], [2; 16], 64)
            .icmpv6_echo_reply(3, 4)
            .write(&mut icmp, b"")
            .unwrap();
        pkt.copy_from(&icmp);
        let l = layout(&icmp);
        assert!(matches!(
            make_partial_checksum(&mut pkt, &l),
            Err(ChecksumError::Unsupported { proto: 58, .. })
        ));
        assert!(!pkt.offload.needs_csum());
    }

    #[test]
    fn fill_l4_checksum_ignores_garbage_and_ethernet_padding() {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(7, 7)
            .write(&mut f, b"hi")
            .unwrap();
        let want = f.clone();
        f[40] = 0xde;
        f[41] = 0xad;
        f.resize(60, 0xee); // padding that must not be summed
        let mut l = layout(&f);
        l.l4_checksum = L4Checksum::Partial; // the state does not matter
        fill_l4_checksum(&mut f, &l).unwrap();
        assert_eq!(&f[..want.len()], &want[..]);
    }

    #[test]
    fn fill_l4_checksum_handles_tcp_udp_and_icmpv6() {
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6([1; 16], [2; 16], 64)
            .icmpv6_echo_reply(3, 4)
            .write(&mut icmp, b"pong")
            .unwrap();
        for (mut f, at) in [(tcp4(b"abc"), 16usize), (udp6(b"abcd"), 6), (icmp, 2)] {
            let l = layout(&f);
            f[l.l4_ofs + at] ^= 0x5a;
            fill_l4_checksum(&mut f, &l).unwrap();
            assert_checksums_valid(&f);
        }
    }

    #[test]
    fn fill_l4_checksum_computes_sctp_crc32c() {
        // INIT chunk over IPv6; the checksum field starts as garbage.
        let mut sctp = vec![0x0b, 0x59, 0x0b, 0x5a, 0, 0, 0, 0, 9, 9, 9, 9];
        sctp.extend_from_slice(&[
            1, 0, 0, 20, 0, 0, 0, 7, 0, 1, 0, 0, 0, 10, 0, 10, 0, 0, 0, 1,
        ]);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6([1; 16], [2; 16], 64)
            .udp(0, 0)
            .write(&mut f, &[])
            .unwrap();
        f.truncate(54);
        f[18..20].copy_from_slice(&(sctp.len() as u16).to_be_bytes());
        f[20] = 132;
        f.extend_from_slice(&sctp);
        let l = layout(&f);
        assert_eq!((l.ip_proto, l.l4_ofs), (132, 54));
        fill_l4_checksum(&mut f, &l).unwrap();
        sctp[8..12].fill(0);
        let want = crate::wire::sctp::crc32c(&sctp).to_le_bytes();
        assert_eq!(&f[62..66], &want);
    }

    #[test]
    fn fill_l4_checksum_refuses_what_it_cannot_fill() {
        let mut f = tcp4(b"abc");
        let l = layout(&f);
        let mut no_l4 = l;
        no_l4.l4_ofs = 0;
        assert_eq!(
            fill_l4_checksum(&mut f, &no_l4),
            Err(ChecksumError::Unsupported {
                proto: 6,
                l4_ofs: 0
            })
        );
        let mut icmp_in_v4 = l;
        icmp_in_v4.ip_proto = 58;
        assert!(matches!(
            fill_l4_checksum(&mut f, &icmp_in_v4),
            Err(ChecksumError::Unsupported { proto: 58, .. })
        ));
        let mut not_ip = l;
        not_ip.l3_ofs = 0;
        assert_eq!(
            fill_l4_checksum(&mut f, &not_ip),
            Err(ChecksumError::NotIp { l3_ofs: 0 })
        );
        let mut short = f[..f.len() - 1].to_vec();
        assert!(matches!(
            fill_l4_checksum(&mut short, &l),
            Err(ChecksumError::BadIpLength { .. })
        ));
        let mut cut = f[..30].to_vec();
        assert!(matches!(
            fill_l4_checksum(&mut cut, &l),
            Err(ChecksumError::Truncated { header: "IPv4", .. })
        ));
    }

    #[test]
    fn ipv4_header_checksum_is_recomputed() {
        let mut f = tcp4(b"");
        let want = f.clone();
        f[18 + 10] = 0;
        f[18 + 11] = 0;
        fill_ipv4_checksum(&mut f, 18).unwrap();
        assert_eq!(f, want);
        assert_eq!(
            fill_ipv4_checksum(&mut f, 0),
            Err(ChecksumError::NotIp { l3_ofs: 0 })
        );
    }
}
