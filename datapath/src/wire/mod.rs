//! Wire-format helpers that edit frames in place: Internet checksums
//! (RFC 1071, RFC 1624) and SCTP's CRC32c (RFC 9260 Appendix A), set-field
//! rewrites that keep checksums right,
//! completion of partial (offloaded) checksums, and software segmentation
//! of GSO frames and their inverse (software GRO), and VXLAN framing.
//!
//! Everything here is sans-IO and allocation-free: functions take a frame
//! as `&mut [u8]` (or a [`crate::packet::Packet`]) plus the header offsets
//! that [`crate::flow::extract`] found, and never re-parse more than the
//! header they edit.

pub mod checksum;
pub mod gro;
mod gso;
mod offload;
mod rewrite;
mod sctp;
pub mod vxlan;

pub use gro::{tcp_segment, Gro, TcpSegment};
pub use gso::{
    segment, segment_count, segment_header_len, segment_into_batch, GsoError, SegmentPlan,
};
pub use offload::{
    complete_partial_checksum, fill_ipv4_checksum, fill_l4_checksum, finish_packet_checksum,
    make_partial_checksum, ChecksumError,
};
pub use rewrite::{
    set_ipv4_dst, set_ipv4_src, set_ipv4_tos, set_ipv4_ttl, set_ipv6_dst, set_ipv6_src, set_tp_dst,
    set_tp_src, HeaderLayout, L4Checksum, RewriteError,
};

/// EtherType and L3 offset of an Ethernet frame, after at most one
/// 802.1Q/802.1ad tag; None when the frame is too short to tell. For the
/// quick looks (VXLAN source-port hash, GRO, offload adoption) that do not
/// need a full [`crate::flow::extract`].
pub(crate) fn ether_type_l3(frame: &[u8]) -> Option<(u16, usize)> {
    let et = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if et == 0x8100 || et == 0x88a8 {
        return Some((u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]), 18));
    }
    Some((et, 14))
}

/// Checksum verification through etherparse, the tests' oracle.
#[cfg(test)]
pub(crate) mod oracle {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    /// 0 and 0xffff are the same one's-complement value.
    fn same(a: u16, b: u16) -> bool {
        a == b || (a | b == 0xffff && (a == 0 || b == 0))
    }

    /// Panics unless the IPv4 header checksum and the TCP/UDP/ICMP(v6)
    /// checksum of `frame` are what etherparse computes.
    pub(crate) fn assert_checksums_valid(frame: &[u8]) {
        let s = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
        let (v4, v6) = match &s.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 checksum");
                (Some((h.source, h.destination)), None)
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header();
                (None, Some((h.source(), h.destination())))
            }
            other => panic!("not IP: {other:?}"),
        };
        match s.transport.expect("transport header") {
            TransportSlice::Tcp(t) => {
                let want = match (v4, v6) {
                    (Some((a, b)), _) => t.calc_checksum_ipv4(a, b).unwrap(),
                    (_, Some((a, b))) => t.calc_checksum_ipv6(a, b).unwrap(),
                    _ => unreachable!(),
                };
                assert!(
                    same(t.checksum(), want),
                    "TCP {:#x} != {want:#x}",
                    t.checksum()
                );
            }
            TransportSlice::Udp(u) => {
                let h = u.to_header();
                let want = match (v4, v6) {
                    (Some((a, b)), _) => h.calc_checksum_ipv4_raw(a, b, u.payload()).unwrap(),
                    (_, Some((a, b))) => h.calc_checksum_ipv6_raw(a, b, u.payload()).unwrap(),
                    _ => unreachable!(),
                };
                assert_eq!(u.checksum(), want, "UDP");
            }
            TransportSlice::Icmpv6(i) => {
                let (a, b) = v6.expect("ICMPv6 over IPv6");
                let want = i
                    .header()
                    .icmp_type
                    .calc_checksum(a, b, i.payload())
                    .unwrap();
                assert!(same(i.checksum(), want), "ICMPv6");
            }
            TransportSlice::Icmpv4(i) => {
                let want = i.header().icmp_type.calc_checksum(i.payload());
                assert!(same(i.checksum(), want), "ICMPv4");
            }
            other => panic!("unexpected transport {other:?}"),
        }
    }
}
