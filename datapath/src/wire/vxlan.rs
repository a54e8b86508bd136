//! VXLAN framing (RFC 7348 §5): the 8-byte VXLAN header, its validation on
//! receive, and the inner-flow hash that picks the outer UDP source port.
//!
//! The VXLAN port lets the kernel write the outer Ethernet, IPv4 and UDP
//! headers (it owns routing and ARP on the underlay), so encapsulation here
//! is a prepend of the VXLAN header into the packet's headroom — no copy —
//! and decapsulation is a check of those 8 bytes.
//!
//! Header layout (RFC 7348 §5):
//! ```text
//! |R|R|R|R|I|R|R|R|            Reserved (24)                       |
//! |                VXLAN Network Identifier (24)  |  Reserved (8)  |
//! ```
//! The I flag must be 1. Reserved bits are sent as zero and ignored on
//! receipt, as the RFC says (the Linux driver is equally lenient unless an
//! extension such as GBP is configured, which we do not speak).

use crate::packet::Packet;

/// Length of the VXLAN header.
pub const VXLAN_HLEN: usize = 8;
/// IANA-assigned VXLAN UDP port (RFC 7348 §5).
pub const IANA_PORT: u16 = 4789;
/// Outer headers over an IPv4 underlay: Ethernet 14 + IPv4 20 + UDP 8 +
/// VXLAN 8. The inner L3 MTU is the underlay MTU minus this.
pub const OVERHEAD_V4: u32 = 50;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// Smallest inner frame worth delivering: an Ethernet header.
const MIN_INNER: usize = 14;

const FLAG_I: u8 = 0x08;

/// Why a received VXLAN datagram was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    /// Shorter than the VXLAN header plus an inner Ethernet header.
    #[error("VXLAN datagram of {len} bytes is truncated (needs at least 22)")]
    Truncated {
        /// UDP payload length.
        len: usize,
    },
    /// The I flag is clear: no valid VNI.
    #[error("VXLAN header flags {flags:#04x} lack the I flag")]
    BadFlags {
        /// First header byte.
        flags: u8,
    },
}

/// Writes a VXLAN header for `vni` in front of the frame (into the
/// headroom). False when the headroom is too small or `vni` exceeds 24
/// bits; the packet is then unchanged.
#[inline]
pub fn encap(pkt: &mut Packet, vni: u32) -> bool {
    if vni > MAX_VNI {
        return false;
    }
    let Some(h) = pkt.push_front(VXLAN_HLEN) else {
        return false;
    };
    h.copy_from_slice(&header(vni));
    true
}

/// The VXLAN header bytes for `vni` (which must fit 24 bits).
#[inline]
pub fn header(vni: u32) -> [u8; VXLAN_HLEN] {
    let v = (vni << 8).to_be_bytes();
    [FLAG_I, 0, 0, 0, v[0], v[1], v[2], 0]
}

/// Validates the VXLAN header at the front of a UDP payload and returns
/// the VNI; the inner frame is `datagram[VXLAN_HLEN..]`.
#[inline]
pub fn decap(datagram: &[u8]) -> Result<u32, VxlanError> {
    if datagram.len() < VXLAN_HLEN + MIN_INNER {
        return Err(VxlanError::Truncated {
            len: datagram.len(),
        });
    }
    if datagram[0] & FLAG_I == 0 {
        return Err(VxlanError::BadFlags { flags: datagram[0] });
    }
    Ok(u32::from_be_bytes([
        0,
        datagram[4],
        datagram[5],
        datagram[6],
    ]))
}

/// A hash of the inner flow for the outer source port (RFC 7348 §5: "a
/// hash of fields from the inner packet"): MAC addresses, and for IPv4/IPv6
/// (after at most one VLAN tag) the addresses, protocol and L4 ports, so
/// all packets of one TCP connection take one underlay path and different
/// connections spread. Fragments hash without ports (non-first fragments
/// have none). Never fails: short frames hash what they have.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut h = Fnv::new();
    let macs = frame.len().min(12);
    h.write(&frame[..macs]);
    match super::ether_type_l3(frame) {
        Some((0x0800, l3)) if frame.len() >= l3 + 20 => {
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            let proto = frame[l3 + 9];
            h.write(&frame[l3 + 12..l3 + 20]);
            h.write(&[proto]);
            let frag = be16(frame, l3 + 6).unwrap_or(0) & 0x3fff;
            if frag == 0 && ihl >= 20 && matches!(proto, 6 | 17 | 132) {
                let l4 = l3 + ihl;
                if frame.len() >= l4 + 4 {
                    h.write(&frame[l4..l4 + 4]);
                }
            }
        }
        Some((0x86dd, l3)) if frame.len() >= l3 + 40 => {
            let proto = frame[l3 + 6];
            h.write(&frame[l3 + 8..l3 + 40]);
            h.write(&[proto]);
            let l4 = l3 + 40;
            if matches!(proto, 6 | 17 | 132) && frame.len() >= l4 + 4 {
                h.write(&frame[l4..l4 + 4]);
            }
        }
        _ => {}
    }
    h.finish()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// FNV-1a: tiny, no state beyond a u32, good enough to spread flows over a
/// handful of source ports.
struct Fnv(u32);

impl Fnv {
    fn new() -> Self {
        Fnv(0x811c_9dc5)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0193);
        }
    }
    fn finish(&self) -> u32 {
        // Fold the high bits in: callers take the hash modulo small numbers.
        self.0 ^ (self.0 >> 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;

    /// The VXLAN header for VNI 42 as RFC 7348 §5 lays it out (what
    /// `ip link add vx0 type vxlan id 42` puts on the wire).
    const KERNEL_VNI42: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 0x2a, 0];

    fn inner() -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..38].copy_from_slice(&[0x30, 0x39, 0x00, 0x50]);
        f
    }

    #[test]
    fn header_matches_the_kernel_bytes() {
        assert_eq!(header(42), KERNEL_VNI42);
        assert_eq!(header(0xabcdef)[4..7], [0xab, 0xcd, 0xef]);
    }

    #[test]
    fn encap_prepends_into_headroom_and_decap_reads_it_back() {
        let mut pool = PacketPool::new(4, 0, 0);
        let mut p = pool.alloc(64).unwrap();
        assert!(p.copy_from(&inner()));
        let room = p.headroom();
        assert!(encap(&mut p, 5000));
        assert_eq!(p.headroom(), room - VXLAN_HLEN);
        assert_eq!(p.len(), 68);
        assert_eq!(decap(p.data()), Ok(5000));
        assert_eq!(&p.data()[8..], &inner()[..]);
        assert!(!encap(&mut p, MAX_VNI + 1), "25-bit VNI refused");
        assert_eq!(p.len(), 68, "refused encap leaves the packet alone");
    }

    #[test]
    fn decap_refuses_truncated_and_flagless_headers() {
        let mut d = KERNEL_VNI42.to_vec();
        assert_eq!(decap(&d), Err(VxlanError::Truncated { len: 8 }));
        d.extend_from_slice(&[0; 13]);
        assert_eq!(decap(&d), Err(VxlanError::Truncated { len: 21 }));
        d.push(0);
        assert_eq!(decap(&d), Ok(42));
        d[0] = 0x00;
        assert_eq!(decap(&d), Err(VxlanError::BadFlags { flags: 0 }));
        // Reserved bits are ignored on receipt (RFC 7348 §5).
        d[0] = 0xff;
        d[7] = 0xff;
        assert_eq!(decap(&d), Ok(42));
    }

    #[test]
    fn flow_hash_follows_the_inner_flow() {
        let a = inner();
        let mut b = inner();
        b[34] = 0x31; // another source port
        assert_ne!(flow_hash(&a), flow_hash(&b));
        let mut c = inner();
        c[50] = 0xee; // payload bytes do not matter
        assert_eq!(flow_hash(&a), flow_hash(&c));
        // Spread: 256 source ports land on most of 8 buckets.
        let mut seen = [false; 8];
        for port in 0..256u16 {
            let mut f = inner();
            f[34..36].copy_from_slice(&(1000 + port).to_be_bytes());
            seen[(flow_hash(&f) % 8) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s), "{seen:?}");
        // Short and odd frames do not panic.
        for len in 0..a.len() {
            flow_hash(&a[..len]);
        }
    }
}
