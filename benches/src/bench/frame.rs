//! The generator's frames: Ethernet II + IPv4 (RFC 791) + UDP (RFC 768,
//! checksum 0 = "not computed", allowed over IPv4) whose payload starts with
//! a magic word, a per-run nonce and a sequence number, so the sink counts
//! only this run's frames and each frame once, whatever else crosses the
//! link (ARP, ICMP, a previous run's stragglers).
//!
//! Payload layout (big endian): `magic u32 | nonce u32 | seq u64 | zeros`.
//! A 60-byte frame (64 B on the wire with FCS) has room for exactly that.

use etherparse::PacketBuilder;

/// "VSWB".
pub const MAGIC: u32 = 0x5653_5742;
/// Ethernet + IPv4 + UDP headers.
pub const HEADERS: usize = 14 + 20 + 8;
/// Smallest frame: headers + magic + nonce + seq, padded to Ethernet's 60.
pub const MIN_FRAME: usize = 60;
/// Largest frame (1500 B MTU).
pub const MAX_FRAME: usize = 1514;
const PAYLOAD_MAGIC: usize = HEADERS;
const PAYLOAD_NONCE: usize = HEADERS + 4;
const PAYLOAD_SEQ: usize = HEADERS + 8;
const UDP_SPORT: usize = 34;
const UDP_CSUM: usize = 40;
/// Distinct source ports before the destination port moves on.
const SPORTS: usize = 50_000;

/// Addresses of the generator's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// c1's MAC.
    pub src_mac: [u8; 6],
    /// c2's MAC.
    pub dst_mac: [u8; 6],
    /// c1's IPv4 address.
    pub src_ip: [u8; 4],
    /// c2's IPv4 address.
    pub dst_ip: [u8; 4],
}

/// Builds frames of one size cycling over `flows` distinct UDP 5-tuples.
#[derive(Clone, Debug)]
pub struct FrameTemplate {
    template: Vec<u8>,
    flows: usize,
    nonce: u32,
}

impl FrameTemplate {
    /// A template of `size` bytes (clamped to [`MIN_FRAME`]..=[`MAX_FRAME`])
    /// over `flows` (≥ 1) 5-tuples, tagged with `nonce`.
    pub fn new(ep: Endpoints, size: usize, flows: usize, nonce: u32) -> FrameTemplate {
        let size = size.clamp(MIN_FRAME, MAX_FRAME);
        let payload = vec![0u8; size - HEADERS];
        let builder = PacketBuilder::ethernet2(ep.src_mac, ep.dst_mac)
            .ipv4(ep.src_ip, ep.dst_ip, 64)
            .udp(1024, 9);
        let mut template = Vec::with_capacity(size);
        // Writing into a Vec cannot fail; an error here would be a bug in
        // the sizes above, and the frame would then be short (caught by
        // the tests on real bytes).
        let _ = builder.write(&mut template, &payload);
        template.resize(size, 0);
        template[UDP_CSUM..UDP_CSUM + 2].copy_from_slice(&[0, 0]);
        template[PAYLOAD_MAGIC..PAYLOAD_MAGIC + 4].copy_from_slice(&MAGIC.to_be_bytes());
        template[PAYLOAD_NONCE..PAYLOAD_NONCE + 4].copy_from_slice(&nonce.to_be_bytes());
        FrameTemplate {
            template,
            flows: flows.max(1),
            nonce,
        }
    }

    /// Frame length in bytes.
    pub fn len(&self) -> usize {
        self.template.len()
    }

    /// Never true (frames are at least [`MIN_FRAME`]).
    pub fn is_empty(&self) -> bool {
        self.template.is_empty()
    }

    /// The run's nonce.
    pub fn nonce(&self) -> u32 {
        self.nonce
    }

    /// Writes frame number `seq` into `out` (at least [`Self::len`] bytes)
    /// and returns its length; its flow is `seq % flows`.
    #[inline]
    pub fn write(&self, seq: u64, out: &mut [u8]) -> usize {
        let n = self.template.len();
        let Some(out) = out.get_mut(..n) else {
            return 0;
        };
        out.copy_from_slice(&self.template);
        let flow = (seq % self.flows as u64) as usize;
        let sport = 1024 + (flow % SPORTS) as u16;
        let dport = 9 + (flow / SPORTS) as u16;
        out[UDP_SPORT..UDP_SPORT + 2].copy_from_slice(&sport.to_be_bytes());
        out[UDP_SPORT + 2..UDP_SPORT + 4].copy_from_slice(&dport.to_be_bytes());
        out[PAYLOAD_SEQ..PAYLOAD_SEQ + 8].copy_from_slice(&seq.to_be_bytes());
        n
    }
}

/// The sequence number of a generator frame of run `nonce`, or None for
/// anything else.
#[inline]
pub fn parse_seq(frame: &[u8], nonce: u32) -> Option<u64> {
    if frame.len() < PAYLOAD_SEQ + 8
        || frame[12..14] != [0x08, 0x00]
        || frame[14] != 0x45
        || frame[23] != 17
    {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    if word(PAYLOAD_MAGIC) != MAGIC || word(PAYLOAD_NONCE) != nonce {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&frame[PAYLOAD_SEQ..PAYLOAD_SEQ + 8]);
    Some(u64::from_be_bytes(seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    const EP: Endpoints = Endpoints {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        src_ip: [10, 0, 0, 1],
        dst_ip: [10, 0, 0, 2],
    };

    #[test]
    fn a_64_byte_frame_is_valid_ipv4_udp_with_seq_in_the_payload() {
        let t = FrameTemplate::new(EP, 64 - 4, 1, 0xabcd);
        let mut buf = [0u8; 2048];
        let n = t.write(7, &mut buf);
        assert_eq!(n, 60);
        let p = SlicedPacket::from_ethernet(&buf[..n]).expect("parses");
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().source(), [10, 0, 0, 1]);
        assert_eq!(ip.header().destination(), [10, 0, 0, 2]);
        assert_eq!(ip.header().total_len(), 46);
        // The header checksum etherparse wrote is right.
        assert_eq!(
            ip.header().header_checksum(),
            ip.header().to_header().calc_header_checksum()
        );
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("not udp")
        };
        assert_eq!(udp.length(), 26);
        assert_eq!(udp.checksum(), 0);
        assert_eq!(parse_seq(&buf[..n], 0xabcd), Some(7));
        assert_eq!(parse_seq(&buf[..n], 0xabce), None, "other run's nonce");
    }

    #[test]
    fn flows_cycle_over_distinct_port_pairs() {
        let t = FrameTemplate::new(EP, 60, 100_000, 1);
        let mut seen = std::collections::HashSet::new();
        let mut buf = [0u8; 64];
        for seq in 0..100_000u64 {
            t.write(seq, &mut buf);
            seen.insert((buf[34..36].to_vec(), buf[36..38].to_vec()));
        }
        assert_eq!(seen.len(), 100_000);
        t.write(100_000, &mut buf);
        assert!(seen.contains(&(buf[34..36].to_vec(), buf[36..38].to_vec())));
    }

    #[test]
    fn sizes_are_clamped_and_short_buffers_refused() {
        assert_eq!(FrameTemplate::new(EP, 10, 1, 1).len(), MIN_FRAME);
        assert_eq!(FrameTemplate::new(EP, 9000, 1, 1).len(), MAX_FRAME);
        let t = FrameTemplate::new(EP, 1000, 1, 1);
        assert_eq!(t.write(0, &mut [0u8; 100]), 0);
    }

    #[test]
    fn stray_traffic_is_not_counted() {
        let arp = [0xffu8; 60];
        assert_eq!(parse_seq(&arp, 1), None);
        assert_eq!(parse_seq(&[], 1), None);
        let t = FrameTemplate::new(EP, 60, 1, 1);
        let mut buf = [0u8; 60];
        t.write(3, &mut buf);
        buf[PAYLOAD_MAGIC] ^= 1;
        assert_eq!(parse_seq(&buf, 1), None);
    }
}
