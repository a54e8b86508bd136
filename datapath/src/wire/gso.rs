//! Software segmentation of GSO frames, for egress ports that cannot take
//! a 64 KiB frame: TCP segmentation as a TSO NIC does it (RFC 9293 §3.1
//! header rules, the behaviour of Linux `tcp_gso_segment`) and UDP L4
//! segmentation (USO, Linux `__udp_gso_segment`).
//!
//! Each segment gets a copy of the headers and up to `gso_size` payload
//! bytes in its own pool packet, then:
//! - IPv4: total length, identification (+1 per segment, wrapping) and the
//!   header checksum; IPv6: payload length;
//! - TCP: sequence number advanced by the payload already sent; FIN and PSH
//!   only on the last segment, CWR only on the first; full checksum;
//! - UDP: length and full checksum (0 sent as 0xffff).
//!
//! Header offsets are found again with [`crate::flow::extract`] rather than
//! taken from the ingress parse, because actions (VLAN push, encapsulation)
//! may have moved them; once per 64 KiB frame that costs nothing. The
//! virtio `hdr_len` is only a hint (virtio spec 1.1 §5.1.6.2) and is not
//! used; neither is `csum_start`, since every segment gets a full checksum.
//! Ethernet padding after the IP packet is not copied into any segment.

use super::checksum::{add_bytes, finish, pseudo_header_ipv4, pseudo_header_ipv6};
use super::offload::{fill_ipv4_checksum, fill_l4_checksum, ChecksumError};
use super::rewrite::{HeaderLayout, L4Checksum};
use crate::flow::{extract, Field, FlowKey};
use crate::packet::{Batch, GsoType, Packet, PacketPool, SizeClass, TunnelMeta};

const ETH_TYPE_IPV4: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a GSO frame could not be segmented.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GsoError {
    /// The packet has no pending segmentation.
    #[error("frame of {len} bytes: no GSO type set, nothing to segment")]
    NotGso {
        /// Frame length.
        len: usize,
    },
    /// `gso_size` is 0.
    #[error("{gso_type:?} frame of {len} bytes: gso_size is 0")]
    ZeroSegmentSize {
        /// The GSO type.
        gso_type: GsoType,
        /// Frame length.
        len: usize,
    },
    /// The headers do not fit the GSO type.
    #[error("{gso_type:?} frame of {len} bytes: {reason}")]
    BadHeaders {
        /// The GSO type.
        gso_type: GsoType,
        /// Frame length.
        len: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Headers plus `gso_size` exceed the largest buffer.
    #[error("{gso_type:?} frame: segments of {seg_len} bytes fit no packet buffer")]
    SegmentTooLarge {
        /// The GSO type.
        gso_type: GsoType,
        /// Headers plus `gso_size`.
        seg_len: usize,
    },
    /// The pool ran out; the first `emitted` segments were delivered.
    #[error("GSO segment {emitted} of {total}: packet pool exhausted")]
    NoBuffer {
        /// Segments already handed out.
        emitted: usize,
        /// Segments the frame needed.
        total: usize,
    },
    /// The batch cannot take every segment; nothing was emitted.
    #[error("GSO frame needs {needed} batch slots, {room} free")]
    BatchFull {
        /// Segments the frame needs.
        needed: usize,
        /// Free slots in the batch.
        room: usize,
    },
    /// A segment's checksum could not be filled (a bug: headers were
    /// validated before).
    #[error("GSO segment {index}: checksum could not be filled")]
    Checksum {
        /// Segment index.
        index: usize,
        /// The cause.
        #[source]
        source: ChecksumError,
    },
}

/// Where the headers of a GSO frame end and how it is to be cut.
struct Plan {
    l3: usize,
    l4: usize,
    /// End of all headers (start of the payload).
    hdr_end: usize,
    /// End of the IP packet (padding after it is dropped).
    ip_end: usize,
    is_ipv6: bool,
    proto: u8,
    mss: usize,
    segments: usize,
}

fn plan(pkt: &Packet) -> Result<Plan, GsoError> {
    let frame = pkt.data();
    let len = frame.len();
    let gso_type = pkt.offload.gso_type;
    let bad = |reason| GsoError::BadHeaders {
        gso_type,
        len,
        reason,
    };
    let (proto, want_ipv6) = match gso_type {
        GsoType::None => return Err(GsoError::NotGso { len }),
        GsoType::TcpV4 => (IPPROTO_TCP, Some(false)),
        GsoType::TcpV6 => (IPPROTO_TCP, Some(true)),
        GsoType::UdpL4 => (IPPROTO_UDP, None),
    };
    let mss = usize::from(pkt.offload.gso_size);
    if mss == 0 {
        return Err(GsoError::ZeroSegmentSize { gso_type, len });
    }
    let x = extract(frame, 0, &TunnelMeta::default())
        .map_err(|_| bad("shorter than its Ethernet header"))?;
    if let Some(a) = x.anomaly {
        return Err(bad(a.name()));
    }
    let key: &FlowKey = &x.key;
    let is_ipv6 = match key.eth_type() {
        ETH_TYPE_IPV4 => false,
        ETH_TYPE_IPV6 => true,
        _ => return Err(bad("not IPv4 or IPv6")),
    };
    if want_ipv6.is_some_and(|v6| v6 != is_ipv6) {
        return Err(bad("IP version does not match the GSO type"));
    }
    if key.get(Field::NwFrag) != 0 {
        return Err(bad("IP fragment"));
    }
    if key.nw_proto() != proto {
        return Err(bad("L4 protocol does not match the GSO type"));
    }
    let (l3, l4) = (usize::from(x.l3_ofs), usize::from(x.l4_ofs));
    let hdr_end = if proto == IPPROTO_TCP {
        l4 + usize::from(frame[l4 + 12] >> 4) * 4
    } else {
        l4 + UDP_LEN
    };
    // extract validated the IP length against the frame.
    let ip_end = if is_ipv6 {
        match u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]) {
            0 => len,
            payload => l3 + IPV6_LEN + usize::from(payload),
        }
    } else {
        l3 + usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]))
    };
    if SizeClass::for_len(hdr_end + mss).is_none() {
        return Err(GsoError::SegmentTooLarge {
            gso_type,
            seg_len: hdr_end + mss,
        });
    }
    let payload = ip_end - hdr_end;
    Ok(Plan {
        l3,
        l4,
        hdr_end,
        ip_end,
        is_ipv6,
        proto,
        mss,
        segments: payload.div_ceil(mss).max(1),
    })
}

/// Bytes of headers (Ethernet through L4) every segment of `pkt` repeats.
pub fn segment_header_len(pkt: &Packet) -> Result<usize, GsoError> {
    Ok(plan(pkt)?.hdr_end)
}

/// Number of segments [`segment`] would make of `pkt`.
pub fn segment_count(pkt: &Packet) -> Result<usize, GsoError> {
    plan(pkt).map(|p| p.segments)
}

#[inline]
fn write16(f: &mut [u8], at: usize, v: u16) {
    f[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn read16(f: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([f[at], f[at + 1]])
}

/// Fixes the headers of segment `index` whose payload starts `sent` bytes
/// into the original payload.
fn fix_headers(f: &mut [u8], p: &Plan, index: usize, sent: usize) -> Result<(), ChecksumError> {
    let seg_len = f.len();
    fix_fields(f, p, index, sent, seg_len)?;
    let layout = HeaderLayout {
        l3_ofs: p.l3,
        l4_ofs: p.l4,
        ip_proto: p.proto,
        l4_checksum: L4Checksum::Complete,
    };
    fill_l4_checksum(f, &layout)
}

/// The length, ID, sequence and flag fields of segment `index` (of
/// `seg_len` bytes) in the headers `f`; everything but the L4 checksum.
fn fix_fields(
    f: &mut [u8],
    p: &Plan,
    index: usize,
    sent: usize,
    seg_len: usize,
) -> Result<(), ChecksumError> {
    let last = index + 1 == p.segments;
    if p.is_ipv6 {
        write16(f, p.l3 + 4, (seg_len - p.l3 - IPV6_LEN) as u16);
    } else {
        write16(f, p.l3 + 2, (seg_len - p.l3) as u16);
        let id = read16(f, p.l3 + 4).wrapping_add(index as u16);
        write16(f, p.l3 + 4, id);
        fill_ipv4_checksum(f, p.l3)?;
    }
    if p.proto == IPPROTO_TCP {
        let seq_at = p.l4 + 4;
        let seq = u32::from_be_bytes([f[seq_at], f[seq_at + 1], f[seq_at + 2], f[seq_at + 3]]);
        let seq = seq.wrapping_add(sent as u32);
        f[seq_at..seq_at + 4].copy_from_slice(&seq.to_be_bytes());
        if !last {
            f[p.l4 + 13] &= !(TCP_FIN | TCP_PSH);
        }
        if index != 0 {
            f[p.l4 + 13] &= !TCP_CWR;
        }
    } else {
        write16(f, p.l4 + 4, (seg_len - p.l4) as u16);
    }
    Ok(())
}

/// Segmentation of a GSO frame for a sender with scatter-gather (a UDP
/// GSO train of VXLAN datagrams): each segment's headers are written into
/// a small caller buffer and its payload stays where it is in the
/// original frame, so the payload is read once (for the checksum) and
/// never copied. Segments are exactly those of [`segment`].
pub struct SegmentPlan(Plan);

impl SegmentPlan {
    /// Plans `pkt` with its current `gso_size`.
    pub fn new(pkt: &Packet) -> Result<Self, GsoError> {
        plan(pkt).map(SegmentPlan)
    }

    /// Number of segments.
    pub fn segments(&self) -> usize {
        self.0.segments
    }

    /// Header bytes every segment starts with.
    pub fn header_len(&self) -> usize {
        self.0.hdr_end
    }

    /// Writes the headers of segment `index` into `out[..header_len]`
    /// (complete, with the L4 checksum over those headers and the payload)
    /// and returns the range of `frame` that is the segment's payload.
    pub fn write_headers(
        &self,
        frame: &[u8],
        index: usize,
        out: &mut [u8],
    ) -> Result<std::ops::Range<usize>, GsoError> {
        let p = &self.0;
        let sent = index * p.mss;
        let start = p.hdr_end + sent;
        let end = (start + p.mss).min(p.ip_end);
        let seg_len = p.hdr_end + (end - start);
        let h = &mut out[..p.hdr_end];
        h.copy_from_slice(&frame[..p.hdr_end]);
        fix_fields(h, p, index, sent, seg_len)
            .map_err(|source| GsoError::Checksum { index, source })?;
        let csum_at = p.l4 + if p.proto == IPPROTO_TCP { 16 } else { 6 };
        h[csum_at..csum_at + 2].fill(0);
        let l4_len = (seg_len - p.l4) as u32;
        let pseudo = if p.is_ipv6 {
            pseudo_header_ipv6(&h[p.l3 + 8..], &h[p.l3 + 24..], p.proto, l4_len)
        } else {
            pseudo_header_ipv4(&h[p.l3 + 12..], &h[p.l3 + 16..], p.proto, l4_len)
        };
        // The L4 header has an even length (TCP: 4-byte words, UDP: 8), so
        // its sum and the payload's concatenate.
        let sum = add_bytes(add_bytes(pseudo, &h[p.l4..]), &frame[start..end]);
        let v = match finish(sum) {
            0 if p.proto == IPPROTO_UDP => 0xffff,
            v => v,
        };
        write16(h, csum_at, v);
        Ok(start..end)
    }
}

/// Cuts the GSO frame `pkt` into segments of at most `gso_size` payload
/// bytes, each in a packet from `pool` with complete checksums and no
/// offload flags, handed to `emit` in order. Returns the segment count.
/// `pkt` itself is not changed; the caller frees it.
pub fn segment(
    pkt: &Packet,
    pool: &mut PacketPool,
    mut emit: impl FnMut(Packet),
) -> Result<usize, GsoError> {
    let p = plan(pkt)?;
    let frame = pkt.data();
    for index in 0..p.segments {
        let sent = index * p.mss;
        let start = p.hdr_end + sent;
        let end = (start + p.mss).min(p.ip_end);
        let seg_len = p.hdr_end + (end - start);
        let Some(mut out) = pool.alloc(seg_len) else {
            return Err(GsoError::NoBuffer {
                emitted: index,
                total: p.segments,
            });
        };
        let buf = out.spare_mut();
        buf[..p.hdr_end].copy_from_slice(&frame[..p.hdr_end]);
        buf[p.hdr_end..seg_len].copy_from_slice(&frame[start..end]);
        out.set_len(seg_len);
        out.in_port = pkt.in_port;
        out.tunnel = pkt.tunnel;
        out.out_tunnel_id = pkt.out_tunnel_id;
        if let Err(source) = fix_headers(out.data_mut(), &p, index, sent) {
            pool.free(out);
            return Err(GsoError::Checksum { index, source });
        }
        emit(out);
    }
    Ok(p.segments)
}

/// [`segment`] into a batch; refuses (emitting nothing) when the batch has
/// fewer free slots than segments.
pub fn segment_into_batch(
    pkt: &Packet,
    pool: &mut PacketPool,
    batch: &mut Batch,
) -> Result<usize, GsoError> {
    let needed = segment_count(pkt)?;
    if batch.room() < needed {
        return Err(GsoError::BatchFull {
            needed,
            room: batch.room(),
        });
    }
    segment(pkt, pool, |seg| {
        // Room was checked above, so the batch takes every segment.
        let pushed = batch.push(seg);
        debug_assert!(pushed.is_ok());
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::OffloadMeta;
    use crate::wire::checksum::{pseudo_header_ipv4, pseudo_header_ipv6};
    use crate::wire::oracle::assert_checksums_valid;
    use etherparse::{
        IpNumber, Ipv4Header, Ipv6Header, Ipv6RawExtHeader, NetSlice, SlicedPacket, TcpHeader,
        TransportSlice, UdpHeader,
    };

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// Scatter-gather segmentation gives byte-identical segments.
    #[test]
    fn segment_plan_headers_plus_payload_equal_segment() {
        let mut pool = PacketPool::new(128, 4, 4);
        for (v6, gso_type) in [
            (false, GsoType::TcpV4),
            (true, GsoType::TcpV6),
            (false, GsoType::UdpL4),
        ] {
            let mut out = Vec::new();
            let pl = payload(5001);
            if gso_type == GsoType::UdpL4 {
                etherparse::PacketBuilder::ethernet2(A, B)
                    .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                    .udp(1000, 2000)
                    .write(&mut out, &pl)
                    .unwrap();
            } else if v6 {
                etherparse::PacketBuilder::ethernet2(A, B)
                    .ipv6([1; 16], [2; 16], 64)
                    .tcp(1000, 2000, 7, 100)
                    .psh()
                    .write(&mut out, &pl)
                    .unwrap();
            } else {
                etherparse::PacketBuilder::ethernet2(A, B)
                    .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                    .tcp(1000, 2000, 7, 100)
                    .psh()
                    .write(&mut out, &pl)
                    .unwrap();
            }
            let mut pkt = pool.alloc(out.len()).unwrap();
            pkt.copy_from(&out);
            pkt.offload.gso_type = gso_type;
            pkt.offload.gso_size = 1400;
            let mut whole = Vec::new();
            segment(&pkt, &mut pool, |s| whole.push(s)).unwrap();
            let plan = SegmentPlan::new(&pkt).unwrap();
            assert_eq!(plan.segments(), whole.len());
            let mut hdr = vec![0u8; plan.header_len()];
            for (i, w) in whole.iter().enumerate() {
                let r = plan.write_headers(pkt.data(), i, &mut hdr).unwrap();
                let mut joined = hdr.clone();
                joined.extend_from_slice(&pkt.data()[r]);
                assert_eq!(joined, w.data(), "{gso_type:?} segment {i}");
            }
            pool.free_all(whole);
            pool.free(pkt);
        }
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn eth(eth_type: u16, vlan: Option<u16>) -> Vec<u8> {
        let mut f = B.to_vec();
        f.extend_from_slice(&A);
        if let Some(tci) = vlan {
            f.extend_from_slice(&[0x81, 0x00]);
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&eth_type.to_be_bytes());
        f
    }

    fn tcp_header(seq: u32) -> TcpHeader {
        let mut t = TcpHeader::new(45678, 5201, seq, 501);
        t.acknowledgment_number = 77;
        t.ack = true;
        t.psh = true;
        t.fin = true;
        t.cwr = true;
        t.ece = true;
        // NOP, NOP, timestamps: a typical bulk-transfer header (32 bytes).
        t.set_options_raw(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
            .unwrap();
        t
    }

    /// A Linux-style TSO frame: lengths filled, TCP checksum partial.
    fn tso_v4(data: &[u8], seq: u32, ip_id: u16) -> Vec<u8> {
        let t = tcp_header(seq);
        let l4_len = t.header_len() + data.len();
        let mut ip = Ipv4Header::new(
            l4_len as u16,
            64,
            IpNumber::TCP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap();
        ip.identification = ip_id;
        ip.dont_fragment = true;
        ip.header_checksum = ip.calc_header_checksum();
        let mut f = eth(0x0800, None);
        f.extend(ip.to_bytes());
        let l4 = f.len();
        f.extend(t.to_bytes());
        f.extend_from_slice(data);
        let sum = pseudo_header_ipv4(&ip.source, &ip.destination, 6, l4_len as u32);
        f[l4 + 16..l4 + 18].copy_from_slice(&(sum as u16).to_be_bytes());
        f
    }

    fn tso_v6(data: &[u8], seq: u32) -> Vec<u8> {
        let t = tcp_header(seq);
        let hbh = Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0; 6]).unwrap();
        let payload_len = hbh.header_len() + t.header_len() + data.len();
        let ip = Ipv6Header {
            traffic_class: 0,
            flow_label: Default::default(),
            payload_length: payload_len as u16,
            next_header: IpNumber::IPV6_HEADER_HOP_BY_HOP,
            hop_limit: 64,
            source: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        };
        let mut f = eth(0x86dd, Some(0x2005));
        f.extend(ip.to_bytes());
        f.extend(hbh.to_bytes());
        let l4 = f.len();
        f.extend(t.to_bytes());
        f.extend_from_slice(data);
        let l4_len = (t.header_len() + data.len()) as u32;
        let sum = pseudo_header_ipv6(&ip.source, &ip.destination, 6, l4_len);
        f[l4 + 16..l4 + 18].copy_from_slice(&(sum as u16).to_be_bytes());
        f
    }

    /// The GSO frame in a buffer of its own (segments come from the pool
    /// under test).
    fn gso_packet(frame: &[u8], gso_type: GsoType, mss: u16) -> Packet {
        let mut pkt = PacketPool::new(0, 0, 1)
            .alloc_class(SizeClass::Gso)
            .unwrap();
        assert!(pkt.copy_from(frame));
        pkt.in_port = 4;
        pkt.out_tunnel_id = Some(42);
        pkt.offload = OffloadMeta {
            flags: OffloadMeta::F_NEEDS_CSUM,
            gso_type,
            gso_ecn: false,
            hdr_len: 0,
            gso_size: mss,
            csum_start: 0,
            csum_offset: 16,
        };
        pkt
    }

    /// Checks every segment with etherparse and returns the reassembled
    /// TCP payload.
    fn check_tcp_segments(segs: &[Packet], seq0: u32, mss: usize, ip_id0: Option<u16>) -> Vec<u8> {
        let mut data = Vec::new();
        let n = segs.len();
        for (i, seg) in segs.iter().enumerate() {
            assert_checksums_valid(seg.data());
            assert_eq!(seg.offload, OffloadMeta::default());
            assert_eq!((seg.in_port, seg.out_tunnel_id), (4, Some(42)));
            let s = SlicedPacket::from_ethernet(seg.data()).unwrap();
            match (&s.net, ip_id0) {
                (Some(NetSlice::Ipv4(ip)), Some(id0)) => {
                    let h = ip.header();
                    assert_eq!(usize::from(h.total_len()), seg.len() - 14);
                    assert_eq!(h.identification(), id0.wrapping_add(i as u16));
                    assert!(h.dont_fragment());
                }
                (Some(NetSlice::Ipv6(ip)), None) => {
                    assert_eq!(
                        usize::from(ip.header().payload_length()),
                        seg.len() - 18 - 40
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
            let Some(TransportSlice::Tcp(t)) = s.transport else {
                panic!("segment {i} is not TCP");
            };
            assert_eq!(
                t.sequence_number(),
                seq0.wrapping_add(data.len() as u32),
                "{i}"
            );
            assert_eq!(t.acknowledgment_number(), 77);
            assert_eq!(t.options(), &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
            let last = i + 1 == n;
            assert_eq!((t.fin(), t.psh()), (last, last), "segment {i}");
            assert_eq!(t.cwr(), i == 0, "segment {i}");
            assert!(t.ack() && t.ece());
            if last {
                assert!(!t.payload().is_empty() && t.payload().len() <= mss);
            } else {
                assert_eq!(t.payload().len(), mss, "segment {i}");
            }
            data.extend_from_slice(t.payload());
        }
        data
    }

    #[test]
    fn tcp_v4_64k_frame_is_cut_into_valid_contiguous_segments() {
        let data = payload(65_535 - 20 - 32);
        let seq0 = 0xffff_f000; // wraps inside the frame
        let frame = tso_v4(&data, seq0, 0xfffe);
        assert_eq!(frame.len(), 14 + 65_535);
        let mut pool = PacketPool::new(64, 0, 1);
        let mut pkt = gso_packet(&frame, GsoType::TcpV4, 1448);
        pkt.offload.csum_start = 34;
        let mut segs = Vec::new();
        let n = segment(&pkt, &mut pool, |s| segs.push(s)).unwrap();
        assert_eq!(n, data.len().div_ceil(1448));
        assert_eq!((n, segs.len(), segment_count(&pkt)), (46, 46, Ok(46)));
        assert!(segs.iter().all(|s| s.len() <= 14 + 20 + 32 + 1448));
        let reassembled = check_tcp_segments(&segs, seq0, 1448, Some(0xfffe));
        assert_eq!(reassembled, data);
        assert_eq!(pkt.data(), &frame[..], "the GSO frame is left as it was");
    }

    #[test]
    fn tcp_v6_frame_with_vlan_and_extension_header_is_segmented() {
        let data = payload(30_001);
        let frame = tso_v6(&data, 1);
        let mut pool = PacketPool::new(64, 0, 1);
        let pkt = gso_packet(&frame, GsoType::TcpV6, 1400);
        let mut segs = Vec::new();
        assert_eq!(segment(&pkt, &mut pool, |s| segs.push(s)), Ok(22));
        assert!(segs
            .iter()
            .all(|s| s.data()[12..16] == [0x81, 0, 0x20, 0x05]));
        assert_eq!(check_tcp_segments(&segs, 1, 1400, None), data);
    }

    #[test]
    fn frame_within_one_mss_becomes_one_segment_keeping_all_flags() {
        let data = payload(1000);
        let frame = tso_v4(&data, 5, 9);
        let mut pool = PacketPool::new(4, 0, 0);
        let pkt = gso_packet(&frame, GsoType::TcpV4, 1448);
        let mut segs = Vec::new();
        assert_eq!(segment(&pkt, &mut pool, |s| segs.push(s)), Ok(1));
        assert_eq!(check_tcp_segments(&segs, 5, 1448, Some(9)), data);
    }

    #[test]
    fn padding_after_the_ip_packet_is_not_sent() {
        let data = payload(3000);
        let mut frame = tso_v4(&data, 0, 0);
        frame.extend_from_slice(&[0xee; 6]);
        let mut pool = PacketPool::new(8, 0, 0);
        let pkt = gso_packet(&frame, GsoType::TcpV4, 1448);
        let mut segs = Vec::new();
        segment(&pkt, &mut pool, |s| segs.push(s)).unwrap();
        assert_eq!(check_tcp_segments(&segs, 0, 1448, Some(0)), data);
    }

    #[test]
    fn udp_l4_frame_is_cut_into_datagrams() {
        let data = payload(5000);
        for v6 in [false, true] {
            let mut f = Vec::new();
            let builder = etherparse::PacketBuilder::ethernet2(A, B);
            let udp = if v6 {
                builder.ipv6([1; 16], [2; 16], 64).udp(4000, 4001)
            } else {
                builder.ipv4([1; 4], [2; 4], 64).udp(4000, 4001)
            };
            udp.write(&mut f, &data).unwrap();
            let mut pool = PacketPool::new(8, 0, 0);
            let pkt = gso_packet(&f, GsoType::UdpL4, 1472);
            let mut segs = Vec::new();
            assert_eq!(segment(&pkt, &mut pool, |s| segs.push(s)), Ok(4));
            let mut got = Vec::new();
            for seg in &segs {
                assert_checksums_valid(seg.data());
                let s = SlicedPacket::from_ethernet(seg.data()).unwrap();
                let Some(TransportSlice::Udp(u)) = s.transport else {
                    panic!("not UDP")
                };
                let h: UdpHeader = u.to_header();
                assert_eq!(usize::from(h.length), 8 + u.payload().len());
                assert_eq!((h.source_port, h.destination_port), (4000, 4001));
                got.extend_from_slice(u.payload());
            }
            assert_eq!(got, data, "v6 {v6}");
        }
    }

    #[test]
    fn frames_that_are_not_gso_or_do_not_match_their_type_are_refused() {
        let frame = tso_v4(&payload(3000), 0, 0);
        let mut pool = PacketPool::new(8, 0, 0);
        let mut pkt = gso_packet(&frame, GsoType::TcpV6, 1448);
        let mut emitted = 0;
        assert!(matches!(
            segment(&pkt, &mut pool, |_| emitted += 1),
            Err(GsoError::BadHeaders {
                reason: "IP version does not match the GSO type",
                ..
            })
        ));
        pkt.offload.gso_type = GsoType::UdpL4;
        assert!(matches!(
            segment_count(&pkt),
            Err(GsoError::BadHeaders { .. })
        ));
        pkt.offload.gso_type = GsoType::TcpV4;
        pkt.offload.gso_size = 0;
        assert!(matches!(
            segment_count(&pkt),
            Err(GsoError::ZeroSegmentSize { .. })
        ));
        pkt.offload.gso_type = GsoType::None;
        assert_eq!(
            segment_count(&pkt),
            Err(GsoError::NotGso { len: frame.len() })
        );
        let mut cut = gso_packet(&frame[..40], GsoType::TcpV4, 1448);
        cut.offload.gso_type = GsoType::TcpV4;
        assert!(matches!(
            segment_count(&cut),
            Err(GsoError::BadHeaders {
                reason: "bad_ipv4_header",
                ..
            })
        ));
        assert_eq!(emitted, 0);
    }

    #[test]
    fn pool_exhaustion_reports_how_many_segments_went_out() {
        let frame = tso_v4(&payload(10_000), 0, 0);
        let pkt = gso_packet(&frame, GsoType::TcpV4, 1448);
        let mut small = PacketPool::new(3, 0, 0);
        let mut segs = Vec::new();
        assert_eq!(
            segment(&pkt, &mut small, |s| segs.push(s)),
            Err(GsoError::NoBuffer {
                emitted: 3,
                total: 7
            })
        );
        assert_eq!(segs.len(), 3);
        assert_eq!(small.stats().exhausted, 1);
    }

    #[test]
    fn segment_into_batch_refuses_when_the_batch_is_too_small() {
        let frame = tso_v4(&payload(10_000), 0, 0);
        let mut pool = PacketPool::new(40, 0, 1);
        let pkt = gso_packet(&frame, GsoType::TcpV4, 1448);
        let mut batch = Batch::new();
        for _ in 0..28 {
            batch.push(pool.alloc(64).unwrap()).unwrap();
        }
        assert_eq!(
            segment_into_batch(&pkt, &mut pool, &mut batch),
            Err(GsoError::BatchFull { needed: 7, room: 4 })
        );
        assert_eq!(batch.len(), 28);
        pool.free_all(batch.drain());
        assert_eq!(segment_into_batch(&pkt, &mut pool, &mut batch), Ok(7));
        assert_eq!(batch.len(), 7);
        let segs: Vec<Packet> = batch.drain().collect();
        assert_eq!(check_tcp_segments_v4_plain(&segs).len(), 10_000);
    }

    fn check_tcp_segments_v4_plain(segs: &[Packet]) -> Vec<u8> {
        check_tcp_segments(segs, 0, 1448, Some(0))
    }
}
