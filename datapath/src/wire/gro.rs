//! Software GRO for TCP: consecutive MTU-sized segments of one connection
//! are merged into one GSO frame, so a TAP port writes one 64 KiB frame
//! with a virtio_net_hdr instead of ~45 small ones (per-segment writes into
//! a TAP are several times slower, see KERNEL-NOTES.md).
//!
//! The merge rules follow what Linux's `tcp_gro_receive`/`inet_gro_receive`
//! accept, so the receiving TCP stack sees exactly what a NIC with GRO
//! would have handed it:
//! - untagged Ethernet, IPv4 without options and not fragmented, or IPv6
//!   with TCP as the first next header;
//! - same MACs, addresses, TOS/TTL (traffic class/hop limit), DF, ports,
//!   ACK number, data offset, flags other than PSH, window and options;
//! - the new segment starts where the merged data ends (sequence numbers),
//!   every segment but the last carries exactly `mss` bytes, and PSH, a
//!   short segment or 64 KiB end the run;
//! - only segments without SYN/FIN/RST/URG/CWR and with a valid TCP
//!   checksum (and IPv4 header checksum) are merged: the merged frame
//!   leaves with a partial checksum (`NEEDS_CSUM`), which the receiver
//!   trusts, so corrupt data must never get into one.
//!
//! Everything that does not qualify passes through unchanged, with one
//! exception: [`adopt_partial_checksum`]. A sender on the same kernel
//! (a Linux vxlan device behind a veth, as in a test or a host running
//! both) hands its inner packets over with checksum offload still pending:
//! the TCP/UDP checksum field holds only the pseudo-header sum, and a
//! socket reader sees exactly that. Such a frame is marked `NEEDS_CSUM`,
//! as the kernel itself keeps it, so the egress port completes or offloads
//! the checksum instead of the container dropping the packet.

use super::checksum::{add_bytes, checksum, finish, pseudo_header_ipv4, pseudo_header_ipv6};
use super::ether_type_l3;
use super::offload::{fill_ipv4_checksum, make_partial_checksum};
use super::rewrite::{HeaderLayout, L4Checksum};
use crate::packet::{GsoType, OffloadMeta, Packet, PacketPool, SizeClass, TunnelMeta};

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_PSH: u8 = 0x08;
/// FIN, SYN, RST, URG, CWR: segments carrying these are never merged.
const TCP_NO_MERGE: u8 = 0x01 | 0x02 | 0x04 | 0x20 | 0x80;
/// Largest IP total length a merged frame may reach.
const MAX_IP_LEN: usize = 65_535;

/// Where the headers of a mergeable TCP segment are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    l4: usize,
    hdr_end: usize,
    ip_end: usize,
    v6: bool,
    seq: u32,
}

impl TcpSegment {
    /// Payload bytes of the segment.
    pub fn payload(&self) -> usize {
        self.ip_end - self.hdr_end
    }
}

/// Parses `frame` as a TCP segment that GRO may merge (see the module
/// rules), verifying its checksums. None for anything else.
pub fn tcp_segment(frame: &[u8]) -> Option<TcpSegment> {
    if frame.len() < ETH_LEN + IPV4_LEN {
        return None;
    }
    let l3 = ETH_LEN;
    let (l4, ip_end, v6) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            let ip = &frame[l3..];
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
            if ip[0] != 0x45 || ip[9] != 6 || frag != 0 || total < IPV4_LEN {
                return None;
            }
            if checksum(&ip[..IPV4_LEN]) != 0 {
                return None;
            }
            (l3 + IPV4_LEN, l3 + total, false)
        }
        0x86dd if frame.len() >= l3 + IPV6_LEN => {
            let ip = &frame[l3..];
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            if ip[0] >> 4 != 6 || ip[6] != 6 || payload == 0 {
                return None;
            }
            (l3 + IPV6_LEN, l3 + IPV6_LEN + payload, true)
        }
        _ => return None,
    };
    if ip_end > frame.len() || ip_end < l4 + 20 {
        return None;
    }
    let tcp = &frame[l4..];
    let hdr_end = l4 + usize::from(tcp[12] >> 4) * 4;
    if hdr_end < l4 + 20 || hdr_end >= ip_end || tcp[13] & TCP_NO_MERGE != 0 {
        return None;
    }
    let l4_len = (ip_end - l4) as u32;
    let pseudo = if v6 {
        pseudo_header_ipv6(&frame[l3 + 8..], &frame[l3 + 24..], 6, l4_len)
    } else {
        pseudo_header_ipv4(&frame[l3 + 12..], &frame[l3 + 16..], 6, l4_len)
    };
    if finish(add_bytes(pseudo, &frame[l4..ip_end])) != 0 {
        return None;
    }
    Some(TcpSegment {
        l4,
        hdr_end,
        ip_end,
        v6,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
    })
}

/// Marks a TCP/UDP frame whose checksum field holds exactly the pseudo-
/// header sum (and whose full checksum does not verify) as a partial
/// checksum (`NEEDS_CSUM`, `csum_start` at L4). Untagged or single-tagged
/// IPv4 without fragmentation, or IPv6 with TCP/UDP as first next header.
/// Returns true when it did. O(headers) unless the field matches.
pub fn adopt_partial_checksum(pkt: &mut Packet) -> bool {
    let f = pkt.data();
    if f.len() < ETH_LEN + IPV4_LEN {
        return false;
    }
    let Some((et, l3)) = ether_type_l3(f) else {
        return false;
    };
    let (l4, proto, ip_end, pseudo) = match et {
        0x0800 if f.len() >= l3 + IPV4_LEN => {
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
            let frag = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]) & 0x3fff;
            if ihl < IPV4_LEN || frag != 0 || total < ihl || l3 + total > f.len() {
                return false;
            }
            let l4 = l3 + ihl;
            let p = f[l3 + 9];
            let pseudo = pseudo_header_ipv4(&f[l3 + 12..], &f[l3 + 16..], p, (total - ihl) as u32);
            (l4, p, l3 + total, pseudo)
        }
        0x86dd if f.len() >= l3 + IPV6_LEN => {
            let payload = usize::from(u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]));
            let l4 = l3 + IPV6_LEN;
            if l4 + payload > f.len() {
                return false;
            }
            let p = f[l3 + 6];
            let pseudo = pseudo_header_ipv6(&f[l3 + 8..], &f[l3 + 24..], p, payload as u32);
            (l4, p, l4 + payload, pseudo)
        }
        _ => return false,
    };
    let csum_ofs = match proto {
        6 => 16,
        17 => 6,
        _ => return false,
    };
    if ip_end < l4 + csum_ofs + 2 {
        return false;
    }
    let field = u16::from_be_bytes([f[l4 + csum_ofs], f[l4 + csum_ofs + 1]]);
    if field != pseudo as u16 || field == 0 {
        return false;
    }
    if finish(add_bytes(pseudo, &f[l4..ip_end])) == 0 {
        // Complete and valid after all.
        return false;
    }
    let (Ok(start), Ok(offset)) = (u16::try_from(l4), u16::try_from(csum_ofs)) else {
        return false;
    };
    pkt.offload.flags |= OffloadMeta::F_NEEDS_CSUM;
    pkt.offload.csum_start = start;
    pkt.offload.csum_offset = offset;
    true
}

/// Length the inner frame's own IP header claims (Ethernet, optional VLAN
/// tag, IPv4 total length or IPv6 payload + 40), or None when not IP.
pub fn claimed_frame_len(f: &[u8]) -> Option<usize> {
    let (et, l3) = ether_type_l3(f)?;
    match et {
        0x0800 => Some(l3 + usize::from(u16::from_be_bytes([*f.get(l3 + 2)?, *f.get(l3 + 3)?]))),
        0x86dd => Some(
            l3 + IPV6_LEN + usize::from(u16::from_be_bytes([*f.get(l3 + 4)?, *f.get(l3 + 5)?])),
        ),
        _ => None,
    }
}

/// Turns `pkt` into a GSO frame of `gso_size` segments: what a sender on
/// this same kernel handed over unsegmented (a GSO skb crossing a veth
/// keeps its size; only a local sender can produce one, so its checksum
/// state is the sender's offload state, not a wire's). TCP over untagged
/// IPv4/IPv6 only; false (packet unchanged) otherwise. A `gso_size` of 0
/// (the kernel reports none for such a datagram) means: segments as large
/// as `max_frame` (an untagged frame of the inner MTU) allows.
pub fn adopt_gso(pkt: &mut Packet, gso_size: u16, max_frame: usize) -> bool {
    let f = pkt.data();
    if f.len() < ETH_LEN + IPV4_LEN {
        return false;
    }
    let (l4, v6) = match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 if f[ETH_LEN + 9] == 6 && f[ETH_LEN] >> 4 == 4 => {
            (ETH_LEN + usize::from(f[ETH_LEN] & 0x0f) * 4, false)
        }
        0x86dd if f.len() >= ETH_LEN + IPV6_LEN && f[ETH_LEN + 6] == 6 => {
            (ETH_LEN + IPV6_LEN, true)
        }
        _ => return false,
    };
    if f.len() < l4 + 20 {
        return false;
    }
    let hdr_end = l4 + usize::from(f[l4 + 12] >> 4) * 4;
    let gso_size = match gso_size {
        0 => match u16::try_from(max_frame.saturating_sub(hdr_end)) {
            Ok(n) if n > 0 => n,
            _ => return false,
        },
        n => n,
    };
    let layout = HeaderLayout {
        l3_ofs: ETH_LEN,
        l4_ofs: l4,
        ip_proto: 6,
        l4_checksum: L4Checksum::Complete,
    };
    if make_partial_checksum(pkt, &layout).is_err() {
        return false;
    }
    pkt.offload.gso_type = if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 };
    pkt.offload.gso_size = gso_size;
    pkt.offload.hdr_len = hdr_end as u16;
    true
}

/// Bytes that must be equal between segments of one run, as ranges of
/// the frame: MACs + EtherType, the IP fields other than lengths/ID/
/// checksum, and the TCP header other than sequence, flags' PSH and
/// checksum.
fn same_flow(a: &[u8], sa: &TcpSegment, b: &[u8], sb: &TcpSegment) -> bool {
    if sa.v6 != sb.v6 || sa.hdr_end != sb.hdr_end || a[..ETH_LEN] != b[..ETH_LEN] {
        return false;
    }
    let l3 = ETH_LEN;
    let ip_same = if sa.v6 {
        // version/class/flow label, next header, hop limit, addresses.
        a[l3..l3 + 4] == b[l3..l3 + 4] && a[l3 + 6..l3 + 40] == b[l3 + 6..l3 + 40]
    } else {
        // TOS; flags (DF) without the offset; TTL+protocol; addresses.
        a[l3 + 1] == b[l3 + 1]
            && a[l3 + 6] & 0xe0 == b[l3 + 6] & 0xe0
            && a[l3 + 8..l3 + 10] == b[l3 + 8..l3 + 10]
            && a[l3 + 12..l3 + 20] == b[l3 + 12..l3 + 20]
    };
    let l4 = sa.l4;
    ip_same
        && a[l4..l4 + 4] == b[l4..l4 + 4] // ports
        && a[l4 + 8..l4 + 13] == b[l4 + 8..l4 + 13] // ack, data offset
        && a[l4 + 13] & !TCP_PSH == b[l4 + 13] & !TCP_PSH
        && a[l4 + 14..l4 + 16] == b[l4 + 14..l4 + 16] // window
        && a[l4 + 20..sa.hdr_end] == b[l4 + 20..sb.hdr_end] // options
}

/// A run of segments being merged into one packet.
struct Run {
    pkt: Packet,
    seg: TcpSegment,
    mss: usize,
    next_seq: u32,
    segments: usize,
    /// A short segment or PSH ended the run: nothing may follow.
    closed: bool,
}

/// Merges TCP segments fed in arrival order; hands out finished frames.
///
/// Frames that cannot be merged are copied into a pool packet as they
/// are; a merged run is built in a GSO-class buffer. Only one run is open
/// at a time (segments of one connection arrive back to back from a GSO
/// sender; interleaved connections simply merge less).
pub struct Gro {
    run: Option<Run>,
    /// Segments merged into a previous one (not emitted on their own).
    pub merged: u64,
}

impl Default for Gro {
    fn default() -> Self {
        Self::new()
    }
}

impl Gro {
    /// An empty merger.
    pub fn new() -> Self {
        Gro {
            run: None,
            merged: 0,
        }
    }

    /// True when a run is open (it will need one output slot on flush).
    pub fn is_open(&self) -> bool {
        self.run.is_some()
    }

    /// Whether `frame` would be appended to the open run by [`Gro::push`]
    /// (so it needs no new output slot).
    pub fn would_merge(&self, frame: &[u8], tunnel: &TunnelMeta) -> bool {
        let Some(run) = &self.run else { return false };
        tcp_segment(frame).is_some_and(|s| run.accepts(frame, &s, tunnel))
    }

    /// Feeds one inner frame. A frame that ends the open run makes that run
    /// come out through `emit` first. Returns false when the pool had no
    /// buffer (the frame is dropped; the caller counts it).
    pub fn push(
        &mut self,
        frame: &[u8],
        tunnel: TunnelMeta,
        pool: &mut PacketPool,
        mut emit: impl FnMut(Packet),
    ) -> bool {
        let seg = tcp_segment(frame);
        if let (Some(run), Some(s)) = (&mut self.run, &seg) {
            if run.accepts(frame, s, &tunnel) && run.append(frame, s, pool) {
                self.merged += 1;
                return true;
            }
        }
        if let Some(done) = self.run.take() {
            emit(done.finish());
        }
        let Some(mut pkt) = pool.alloc(frame.len()) else {
            return false;
        };
        pkt.copy_from(frame);
        pkt.tunnel = tunnel;
        match seg {
            Some(s) => {
                let psh = frame[s.l4 + 13] & TCP_PSH != 0;
                self.run = Some(Run {
                    pkt,
                    seg: s,
                    mss: s.payload(),
                    next_seq: s.seq.wrapping_add(s.payload() as u32),
                    segments: 1,
                    closed: psh,
                });
            }
            None => {
                adopt_partial_checksum(&mut pkt);
                emit(pkt)
            }
        }
        true
    }

    /// Emits the open run, if any.
    pub fn flush(&mut self, mut emit: impl FnMut(Packet)) {
        if let Some(done) = self.run.take() {
            emit(done.finish());
        }
    }

    /// Returns the open run's buffer to the pool without emitting it.
    pub fn discard(&mut self, pool: &mut PacketPool) {
        if let Some(run) = self.run.take() {
            pool.free(run.pkt);
        }
    }
}

impl Run {
    fn accepts(&self, frame: &[u8], s: &TcpSegment, tunnel: &TunnelMeta) -> bool {
        !self.closed
            && self.pkt.tunnel == *tunnel
            && s.seq == self.next_seq
            && s.payload() <= self.mss
            && (self.pkt.len() - ETH_LEN) + s.payload() <= MAX_IP_LEN
            && same_flow(self.pkt.data(), &self.seg, frame, s)
    }

    /// Appends the payload of `frame`; moves the run into a GSO-class
    /// buffer on its first merge. False when no such buffer is left.
    fn append(&mut self, frame: &[u8], s: &TcpSegment, pool: &mut PacketPool) -> bool {
        let add = s.payload();
        if self.pkt.tailroom() < add {
            if self.pkt.size_class() == SizeClass::Gso {
                return false;
            }
            let Some(mut big) = pool.alloc_class(SizeClass::Gso) else {
                return false;
            };
            big.copy_from(self.pkt.data());
            big.tunnel = self.pkt.tunnel;
            let small = std::mem::replace(&mut self.pkt, big);
            pool.free(small);
            if self.pkt.tailroom() < add {
                return false;
            }
        }
        let at = self.pkt.len();
        self.pkt.set_len(at + add);
        self.pkt.data_mut()[at..].copy_from_slice(&frame[s.hdr_end..s.ip_end]);
        // PSH of the newest segment is what the merged frame carries.
        let flags = frame[s.l4 + 13];
        self.pkt.data_mut()[self.seg.l4 + 13] = flags;
        self.next_seq = self.next_seq.wrapping_add(add as u32);
        self.segments += 1;
        self.closed = add < self.mss || flags & TCP_PSH != 0;
        true
    }

    /// The merged frame: lengths and IPv4 checksum fixed, TCP checksum made
    /// partial and GSO metadata set. A run of one segment leaves as it came.
    fn finish(self) -> Packet {
        let Run {
            mut pkt,
            seg,
            mss,
            segments,
            ..
        } = self;
        if segments == 1 {
            return pkt;
        }
        let l3 = ETH_LEN;
        let len = pkt.len();
        let f = pkt.data_mut();
        if seg.v6 {
            let payload = (len - l3 - IPV6_LEN) as u16;
            f[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
        } else {
            f[l3 + 2..l3 + 4].copy_from_slice(&((len - l3) as u16).to_be_bytes());
            // The header was valid, so the fill cannot fail.
            let _ = fill_ipv4_checksum(f, l3);
        }
        let layout = HeaderLayout {
            l3_ofs: l3,
            l4_ofs: seg.l4,
            ip_proto: 6,
            l4_checksum: L4Checksum::Complete,
        };
        // Every segment was verified, so the merged data is valid and the
        // partial checksum is honest; the layout was checked by tcp_segment.
        let _ = make_partial_checksum(&mut pkt, &layout);
        pkt.offload = OffloadMeta {
            flags: pkt.offload.flags,
            gso_type: if seg.v6 {
                GsoType::TcpV6
            } else {
                GsoType::TcpV4
            },
            gso_ecn: false,
            hdr_len: seg.hdr_end as u16,
            gso_size: mss as u16,
            csum_start: pkt.offload.csum_start,
            csum_offset: pkt.offload.csum_offset,
        };
        pkt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::oracle::assert_checksums_valid;
    use crate::wire::segment;

    /// A TCP/IPv4 segment with valid checksums, built with etherparse.
    fn seg(seq: u32, payload: &[u8], psh: bool) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 5201, seq, 501)
            .ack(77);
        let b = if psh { b.psh() } else { b };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    fn seg6(seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 5201, seq, 501)
            .ack(77)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn data(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(7) ^ salt).collect()
    }

    fn run(frames: &[Vec<u8>], pool: &mut PacketPool) -> Vec<Packet> {
        let mut gro = Gro::new();
        let mut out = Vec::new();
        for f in frames {
            assert!(gro.push(f, TunnelMeta::default(), pool, |p| out.push(p)));
        }
        gro.flush(|p| out.push(p));
        out
    }

    #[test]
    fn consecutive_segments_merge_and_resegment_to_the_originals() {
        let mut pool = PacketPool::new(64, 4, 4);
        let mss = 1448;
        let mut frames = Vec::new();
        let mut seq = 1000u32;
        for i in 0..10 {
            let n = if i == 9 { 300 } else { mss };
            frames.push(seg(seq, &data(n, i as u8), i == 9));
            seq += n as u32;
        }
        let out = run(&frames, &mut pool);
        assert_eq!(out.len(), 1, "one merged frame");
        let m = &out[0];
        assert_eq!(m.offload.gso_type, GsoType::TcpV4);
        assert_eq!(m.offload.gso_size as usize, mss);
        assert!(m.offload.needs_csum());
        assert_eq!(m.len(), 54 + 9 * mss + 300);
        // Segmenting the merged frame again gives back the same bytes.
        let mut again = Vec::new();
        segment(m, &mut pool, |p| again.push(p)).unwrap();
        assert_eq!(again.len(), 10);
        for (a, f) in again.iter().zip(&frames) {
            assert_checksums_valid(a.data());
            // IP IDs differ (segmentation numbers them); all else equal.
            assert_eq!(a.data()[..18], f[..18]);
            assert_eq!(a.data()[20..24], f[20..24]);
            assert_eq!(a.data()[26..], f[26..], "TCP header and payload");
        }
    }

    #[test]
    fn ipv6_segments_merge() {
        let mut pool = PacketPool::new(64, 4, 4);
        let frames = [seg6(1, &data(1000, 1)), seg6(1001, &data(1000, 2))];
        let out = run(&frames, &mut pool);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offload.gso_type, GsoType::TcpV6);
        assert_eq!(out[0].len(), 74 + 2000);
    }

    #[test]
    fn gaps_flags_bad_checksums_and_other_flows_are_not_merged() {
        let mut pool = PacketPool::new(64, 4, 4);
        let a = seg(1, &data(500, 0), false);
        // Out of order: sequence gap.
        assert_eq!(
            run(&[a.clone(), seg(2000, &data(500, 0), false)], &mut pool).len(),
            2
        );
        // PSH ends the run: nothing after it merges.
        assert_eq!(
            run(
                &[seg(1, &data(500, 0), true), seg(501, &data(500, 0), false)],
                &mut pool
            )
            .len(),
            2
        );
        // A short segment ends the run.
        let short = [seg(1, &data(100, 0), false), seg(101, &data(500, 0), false)];
        assert_eq!(run(&short, &mut pool).len(), 2);
        // Corrupt payload: checksum fails, passes through untouched.
        let mut bad = seg(501, &data(500, 0), false);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let out = run(&[a.clone(), bad.clone()], &mut pool);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].data(), &bad[..]);
        assert!(!out[1].offload.is_gso());
        // Another port.
        let mut other = seg(501, &data(500, 0), false);
        other[34] ^= 1;
        assert_eq!(run(&[a.clone(), other], &mut pool).len(), 2);
        // Non-TCP passes through unchanged.
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .udp(1, 2)
            .write(&mut udp, &[1, 2, 3])
            .unwrap();
        let out = run(&[a.clone(), udp.clone(), a.clone()], &mut pool);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].data(), &udp[..]);
    }

    #[test]
    fn pending_offload_checksums_are_adopted_and_complete_ones_left_alone() {
        let mut pool = PacketPool::new(8, 0, 0);
        let good = seg(5, &data(100, 3), true);
        let mut p = pool.alloc(good.len()).unwrap();
        p.copy_from(&good);
        assert!(!adopt_partial_checksum(&mut p), "valid checksum untouched");
        assert!(!p.offload.needs_csum());
        // What a Linux sender with offload leaves: the pseudo-header sum.
        let l4 = 34;
        let pseudo = pseudo_header_ipv4(&good[26..], &good[30..], 6, (good.len() - l4) as u32);
        let mut partial = good.clone();
        partial[l4 + 16..l4 + 18].copy_from_slice(&(pseudo as u16).to_be_bytes());
        p.copy_from(&partial);
        assert!(adopt_partial_checksum(&mut p));
        assert_eq!((p.offload.csum_start, p.offload.csum_offset), (34, 16));
        crate::wire::finish_packet_checksum(&mut p).unwrap();
        assert_eq!(p.data(), &good[..], "completing it gives the real checksum");
        // A corrupt checksum that is not the pseudo sum stays corrupt.
        let mut bad = good.clone();
        bad[l4 + 16] ^= 0x55;
        p.copy_from(&bad);
        p.offload = OffloadMeta::default();
        assert!(!adopt_partial_checksum(&mut p));
        // Through GRO: a partial single frame leaves marked.
        let out = run(&[partial], &mut pool);
        assert!(out[0].offload.needs_csum());
        pool.free_all(out);
        pool.free(p);
    }

    #[test]
    fn whole_gso_frames_from_a_local_sender_are_adopted() {
        let mut pool = PacketPool::new(64, 4, 4);
        let big = seg(9, &data(5000, 1), false);
        let mut p = pool.alloc(big.len()).unwrap();
        p.copy_from(&big);
        // No segment size known: as large as a 1450-byte inner MTU allows.
        assert!(adopt_gso(&mut p, 0, 1450 + 14));
        assert_eq!(p.offload.gso_type, GsoType::TcpV4);
        assert_eq!(p.offload.gso_size, 1450 - 40);
        assert!(p.offload.needs_csum());
        let mut segs = Vec::new();
        segment(&p, &mut pool, |s| segs.push(s)).unwrap();
        assert_eq!(segs.len(), 4);
        for s in &segs {
            assert_checksums_valid(s.data());
            assert!(s.len() <= 1450 + 14);
        }
        pool.free_all(segs);
        // Not TCP: refused, unchanged.
        let mut udp = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .udp(1, 2)
            .write(&mut udp, &[1, 2, 3])
            .unwrap();
        p.copy_from(&udp);
        p.offload = OffloadMeta::default();
        assert!(!adopt_gso(&mut p, 0, 1464));
        assert_eq!(p.offload, OffloadMeta::default());
        assert_eq!(claimed_frame_len(&udp), Some(udp.len()));
        assert_eq!(claimed_frame_len(&udp[..10]), None);
        pool.free(p);
    }

    #[test]
    fn different_tunnels_do_not_merge() {
        let mut pool = PacketPool::new(64, 4, 4);
        let mut gro = Gro::new();
        let mut out = Vec::new();
        let t1 = TunnelMeta {
            vni: 1,
            src: 1,
            dst: 2,
        };
        let t2 = TunnelMeta {
            vni: 2,
            src: 1,
            dst: 2,
        };
        let a = seg(1, &data(500, 0), false);
        let b = seg(501, &data(500, 0), false);
        assert!(gro.push(&a, t1, &mut pool, |p| out.push(p)));
        assert!(!gro.would_merge(&b, &t2));
        assert!(gro.would_merge(&b, &t1));
        assert!(gro.push(&b, t2, &mut pool, |p| out.push(p)));
        gro.flush(|p| out.push(p));
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].tunnel, t2);
    }

    #[test]
    fn runs_stop_at_64k() {
        let mut pool = PacketPool::new(64, 4, 8);
        let mss = 1448;
        let frames: Vec<_> = (0..60u32)
            .map(|i| seg(i * mss as u32, &data(mss, i as u8), false))
            .collect();
        let out = run(&frames, &mut pool);
        assert!(out.len() >= 2);
        for p in &out {
            assert!(p.len() - 14 <= MAX_IP_LEN);
        }
        let total: usize = out.iter().map(|p| p.len() - 54).sum();
        assert_eq!(total, 60 * mss);
    }

    #[test]
    fn truncated_and_garbage_frames_never_panic() {
        let mut pool = PacketPool::new(64, 4, 4);
        let a = seg(1, &data(200, 0), false);
        for cut in 0..a.len() {
            let _ = tcp_segment(&a[..cut]);
            let out = run(&[a[..cut].to_vec()], &mut pool);
            pool.free_all(out);
        }
        let mut lying = a.clone();
        lying[16] = 0xff; // IPv4 total length beyond the frame
        assert!(tcp_segment(&lying).is_none());
    }
}
