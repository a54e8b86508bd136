//! Set-field rewrites of IP addresses, TOS/TTL and L4 ports that keep
//! every covering checksum right without recomputing it: the IPv4 header
//! checksum, and the TCP/UDP/ICMPv6 checksums through their pseudo header
//! (RFC 1624 incremental updates, see [`super::checksum`]).
//!
//! A frame whose L4 checksum is still partial ([`L4Checksum::Partial`],
//! virtio `NEEDS_CSUM`) holds only the pseudo-header sum in its checksum
//! field: an address change updates that sum, a port change leaves it
//! alone (whoever completes the checksum will cover the new port).
//! A UDP-over-IPv4 checksum of 0 means "none" and stays 0 (RFC 768); an
//! updated UDP checksum that comes out 0 is sent as 0xffff. SCTP ports are
//! covered by CRC32c, which cannot be updated incrementally: the CRC is
//! recomputed over the SCTP packet before and after the change and the
//! difference XORed into the field (CRC32c is affine), so a packet that
//! arrived with a bad checksum still has a bad one, as in Open vSwitch.

use super::checksum::{update, update_partial, update_u16};
use super::sctp::{correct_checksum, SctpChecksum, SCTP_CHECKSUM_OFS, SCTP_COMMON_LEN};
use crate::flow::Extracted;
use crate::packet::OffloadMeta;

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_SCTP: u8 = 132;

const IPV4_MIN_LEN: usize = 20;
const IPV4_CSUM_OFS: usize = 10;
const IPV4_SRC_OFS: usize = 12;
const IPV4_DST_OFS: usize = 16;
const IPV6_LEN: usize = 40;
const IPV6_SRC_OFS: usize = 8;
const IPV6_DST_OFS: usize = 24;

/// How the L4 checksum field of a frame currently reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Checksum {
    /// A finished checksum over pseudo header and L4 data.
    Complete,
    /// Only the pseudo-header sum, uncomplemented (Linux
    /// `CHECKSUM_PARTIAL`, virtio `NEEDS_CSUM`); finished at transmit.
    Partial,
}

impl L4Checksum {
    /// The state a packet's offload metadata announces.
    #[inline]
    pub fn of(offload: &OffloadMeta) -> Self {
        if offload.needs_csum() {
            L4Checksum::Partial
        } else {
            L4Checksum::Complete
        }
    }
}

/// Where a frame's headers are: what the rewrite and checksum helpers need.
///
/// Offsets count from the first byte of the frame, so they go stale when
/// bytes in front of a header are inserted or removed (VLAN push/pop,
/// encapsulation): shift them, or parse again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLayout {
    /// Offset of the IP header.
    pub l3_ofs: usize,
    /// Offset of the L4 header; 0 when there is none (later fragment, or a
    /// protocol whose fields the flow key does not carry).
    pub l4_ofs: usize,
    /// Upper-layer protocol (after IPv6 extension headers).
    pub ip_proto: u8,
    /// State of the L4 checksum field.
    pub l4_checksum: L4Checksum,
}

impl HeaderLayout {
    /// The layout [`crate::flow::extract`] found for a packet with the
    /// given offload state.
    #[inline]
    pub fn new(x: &Extracted, offload: &OffloadMeta) -> Self {
        HeaderLayout {
            l3_ofs: usize::from(x.l3_ofs),
            l4_ofs: usize::from(x.l4_ofs),
            ip_proto: x.key.nw_proto(),
            l4_checksum: L4Checksum::of(offload),
        }
    }
}

/// Why a rewrite was refused; the frame is left unchanged.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewriteError {
    /// The header to edit does not fit in the frame.
    #[error("frame of {len} bytes: {header} header needs {need} bytes")]
    Truncated {
        /// Header that does not fit.
        header: &'static str,
        /// Bytes the frame would need.
        need: usize,
        /// Frame length.
        len: usize,
    },
    /// The bytes at `l3_ofs` are not the expected IP version.
    #[error("frame: no IPv{version} header at offset {l3_ofs}")]
    WrongIpVersion {
        /// IP version the rewrite needs.
        version: u8,
        /// Offset looked at.
        l3_ofs: usize,
    },
    /// No L4 header (a later fragment, or none parsed).
    #[error("frame: no L4 header to rewrite")]
    NoL4Header,
    /// The protocol has no ports or ICMP type/code.
    #[error("frame: IP protocol {proto} has no ports")]
    NoPorts {
        /// The IP protocol.
        proto: u8,
    },
}

#[inline]
fn need(frame: &[u8], header: &'static str, end: usize) -> Result<(), RewriteError> {
    if frame.len() < end {
        return Err(RewriteError::Truncated {
            header,
            need: end,
            len: frame.len(),
        });
    }
    Ok(())
}

#[inline]
fn read16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

#[inline]
fn write16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// End of the IP packet at `l3` per its length field (IPv6 payload length
/// 0, a jumbogram, extends to the frame end).
fn ip_end(frame: &[u8], l3: usize) -> Result<usize, RewriteError> {
    let end = match frame.get(l3).map(|b| b >> 4) {
        Some(4) => {
            need(frame, "IPv4", l3 + IPV4_MIN_LEN)?;
            l3 + usize::from(read16(frame, l3 + 2))
        }
        Some(6) => {
            need(frame, "IPv6", l3 + IPV6_LEN)?;
            match read16(frame, l3 + 4) {
                0 => frame.len(),
                payload => l3 + IPV6_LEN + usize::from(payload),
            }
        }
        _ => {
            return Err(RewriteError::WrongIpVersion {
                version: 4,
                l3_ofs: l3,
            })
        }
    };
    need(frame, "IP payload", end)?;
    Ok(end)
}

fn ipv4_header(frame: &[u8], l3: usize) -> Result<(), RewriteError> {
    need(frame, "IPv4", l3 + IPV4_MIN_LEN)?;
    if frame[l3] >> 4 != 4 {
        return Err(RewriteError::WrongIpVersion {
            version: 4,
            l3_ofs: l3,
        });
    }
    Ok(())
}

fn ipv6_header(frame: &[u8], l3: usize) -> Result<(), RewriteError> {
    need(frame, "IPv6", l3 + IPV6_LEN)?;
    if frame[l3] >> 4 != 6 {
        return Err(RewriteError::WrongIpVersion {
            version: 6,
            l3_ofs: l3,
        });
    }
    Ok(())
}

/// The offset of the L4 checksum that covers the pseudo header, if the
/// protocol has one.
fn pseudo_covered_csum(layout: &HeaderLayout, is_ipv6: bool) -> Option<usize> {
    if layout.l4_ofs == 0 {
        return None;
    }
    match layout.ip_proto {
        IPPROTO_TCP => Some(layout.l4_ofs + 16),
        IPPROTO_UDP => Some(layout.l4_ofs + 6),
        IPPROTO_ICMPV6 if is_ipv6 => Some(layout.l4_ofs + 2),
        _ => None,
    }
}

/// Applies an address change (`old` → `new`, pseudo-header bytes) to the
/// L4 checksum at `at`.
fn update_l4_for_pseudo(
    frame: &mut [u8],
    layout: &HeaderLayout,
    at: usize,
    old: &[u8],
    new: &[u8],
) {
    let cur = read16(frame, at);
    let next = match layout.l4_checksum {
        L4Checksum::Partial => update_partial(cur, old, new),
        L4Checksum::Complete if layout.ip_proto == IPPROTO_UDP && cur == 0 => return,
        L4Checksum::Complete => {
            let v = update(cur, old, new);
            if layout.ip_proto == IPPROTO_UDP && v == 0 {
                0xffff
            } else {
                v
            }
        }
    };
    write16(frame, at, next);
}

fn set_ipv4_addr(
    frame: &mut [u8],
    layout: &HeaderLayout,
    field: usize,
    addr: [u8; 4],
) -> Result<(), RewriteError> {
    let l3 = layout.l3_ofs;
    ipv4_header(frame, l3)?;
    let l4_csum = pseudo_covered_csum(layout, false);
    if let Some(at) = l4_csum {
        need(frame, "L4", at + 2)?;
    }
    let at = l3 + field;
    let mut old = [0u8; 4];
    old.copy_from_slice(&frame[at..at + 4]);
    frame[at..at + 4].copy_from_slice(&addr);
    let ip_csum = l3 + IPV4_CSUM_OFS;
    let v = update(read16(frame, ip_csum), &old, &addr);
    write16(frame, ip_csum, v);
    if let Some(at) = l4_csum {
        update_l4_for_pseudo(frame, layout, at, &old, &addr);
    }
    Ok(())
}

fn set_ipv6_addr(
    frame: &mut [u8],
    layout: &HeaderLayout,
    field: usize,
    addr: [u8; 16],
) -> Result<(), RewriteError> {
    let l3 = layout.l3_ofs;
    ipv6_header(frame, l3)?;
    let l4_csum = pseudo_covered_csum(layout, true);
    if let Some(at) = l4_csum {
        need(frame, "L4", at + 2)?;
    }
    let at = l3 + field;
    let mut old = [0u8; 16];
    old.copy_from_slice(&frame[at..at + 16]);
    frame[at..at + 16].copy_from_slice(&addr);
    if let Some(at) = l4_csum {
        update_l4_for_pseudo(frame, layout, at, &old, &addr);
    }
    Ok(())
}

/// Sets the IPv4 source address, updating the header and L4 checksums.
pub fn set_ipv4_src(
    frame: &mut [u8],
    layout: &HeaderLayout,
    addr: [u8; 4],
) -> Result<(), RewriteError> {
    set_ipv4_addr(frame, layout, IPV4_SRC_OFS, addr)
}

/// Sets the IPv4 destination address, updating the header and L4 checksums.
pub fn set_ipv4_dst(
    frame: &mut [u8],
    layout: &HeaderLayout,
    addr: [u8; 4],
) -> Result<(), RewriteError> {
    set_ipv4_addr(frame, layout, IPV4_DST_OFS, addr)
}

/// Sets the IPv6 source address, updating the L4 checksum. (A routing
/// header does not change which address the pseudo header uses for the
/// source.)
pub fn set_ipv6_src(
    frame: &mut [u8],
    layout: &HeaderLayout,
    addr: [u8; 16],
) -> Result<(), RewriteError> {
    set_ipv6_addr(frame, layout, IPV6_SRC_OFS, addr)
}

/// Sets the IPv6 destination address, updating the L4 checksum.
pub fn set_ipv6_dst(
    frame: &mut [u8],
    layout: &HeaderLayout,
    addr: [u8; 16],
) -> Result<(), RewriteError> {
    set_ipv6_addr(frame, layout, IPV6_DST_OFS, addr)
}

/// Replaces one byte of an IPv4 header's 16-bit word at `word` and updates
/// the header checksum.
fn set_ipv4_byte(frame: &mut [u8], l3: usize, at: usize, v: u8) -> Result<(), RewriteError> {
    ipv4_header(frame, l3)?;
    let word = l3 + (at & !1);
    let old = read16(frame, word);
    frame[l3 + at] = v;
    let new = read16(frame, word);
    let csum = l3 + IPV4_CSUM_OFS;
    let v = update_u16(read16(frame, csum), old, new);
    write16(frame, csum, v);
    Ok(())
}

/// Sets the IPv4 TOS byte (DSCP and ECN), updating the header checksum.
pub fn set_ipv4_tos(frame: &mut [u8], l3_ofs: usize, tos: u8) -> Result<(), RewriteError> {
    set_ipv4_byte(frame, l3_ofs, 1, tos)
}

/// Sets the IPv4 TTL, updating the header checksum.
pub fn set_ipv4_ttl(frame: &mut [u8], l3_ofs: usize, ttl: u8) -> Result<(), RewriteError> {
    set_ipv4_byte(frame, l3_ofs, 8, ttl)
}

/// Where a port (or ICMP type/code) lives and which checksum covers it.
struct PortField {
    /// Offset of the 16-bit word holding the value.
    word: usize,
    /// The L4 checksum to update, when it is complete and covers the word.
    csum: Option<usize>,
    /// ICMP keeps type/code as bytes: (byte offset in the word).
    byte: Option<usize>,
    /// UDP's "no checksum" zero must stay zero.
    udp: bool,
    /// SCTP's CRC32c must be recomputed over `l4..sctp_end`.
    sctp_end: Option<usize>,
}

fn port_field(frame: &[u8], layout: &HeaderLayout, dst: bool) -> Result<PortField, RewriteError> {
    if layout.l4_ofs == 0 {
        return Err(RewriteError::NoL4Header);
    }
    let l4 = layout.l4_ofs;
    let complete = layout.l4_checksum == L4Checksum::Complete;
    let is_ipv6 = frame.get(layout.l3_ofs).is_some_and(|b| b >> 4 == 6);
    let field = match layout.ip_proto {
        IPPROTO_TCP | IPPROTO_UDP => {
            let udp = layout.ip_proto == IPPROTO_UDP;
            let csum_ofs = if udp { 6 } else { 16 };
            PortField {
                word: l4 + usize::from(dst) * 2,
                csum: complete.then_some(l4 + csum_ofs),
                byte: None,
                udp,
                sctp_end: None,
            }
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if (layout.ip_proto == IPPROTO_ICMPV6) == is_ipv6 => {
            // ICMPv4 is never offloaded; ICMPv6 may be (its pseudo header
            // does not cover type/code, so a partial sum stays as it is).
            let covered = complete || layout.ip_proto == IPPROTO_ICMP;
            PortField {
                word: l4,
                csum: covered.then_some(l4 + 2),
                byte: Some(usize::from(dst)),
                udp: false,
                sctp_end: None,
            }
        }
        IPPROTO_SCTP => {
            let end = ip_end(frame, layout.l3_ofs)?;
            need(&frame[..end], "SCTP", l4 + SCTP_COMMON_LEN)?;
            PortField {
                word: l4 + usize::from(dst) * 2,
                csum: None,
                byte: None,
                udp: false,
                // A pending CRC offload computes the CRC later.
                sctp_end: complete.then_some(end),
            }
        }
        proto => return Err(RewriteError::NoPorts { proto }),
    };
    let end = field
        .csum
        .map_or(field.word + 2, |c| c + 2)
        .max(field.word + 2);
    need(frame, "L4", end)?;
    Ok(field)
}

fn set_port(
    frame: &mut [u8],
    layout: &HeaderLayout,
    dst: bool,
    value: u16,
) -> Result<(), RewriteError> {
    let f = port_field(frame, layout, dst)?;
    if let Some(end) = f.sctp_end {
        let sctp = &mut frame[layout.l4_ofs..end];
        let before = correct_checksum(sctp);
        write16(sctp, f.word - layout.l4_ofs, value);
        let after = correct_checksum(sctp);
        let field = SCTP_CHECKSUM_OFS..SCTP_CHECKSUM_OFS + 4;
        let mut held = [0u8; 4];
        held.copy_from_slice(&sctp[field.clone()]);
        let kept = SctpChecksum::from_field(held).0 ^ before.0 ^ after.0;
        sctp[field].copy_from_slice(&SctpChecksum(kept).to_field());
        return Ok(());
    }
    let old = read16(frame, f.word);
    match f.byte {
        Some(b) => frame[f.word + b] = value as u8,
        None => write16(frame, f.word, value),
    }
    let new = read16(frame, f.word);
    if let Some(at) = f.csum {
        let cur = read16(frame, at);
        if !(f.udp && cur == 0) {
            let mut v = update_u16(cur, old, new);
            if f.udp && v == 0 {
                v = 0xffff;
            }
            write16(frame, at, v);
        }
    }
    Ok(())
}

/// Sets the TCP/UDP/SCTP source port (or the ICMP/ICMPv6 type, low 8 bits
/// of `value`), updating the L4 checksum.
pub fn set_tp_src(frame: &mut [u8], layout: &HeaderLayout, value: u16) -> Result<(), RewriteError> {
    set_port(frame, layout, false, value)
}

/// Sets the TCP/UDP/SCTP destination port (or the ICMP/ICMPv6 code, low 8
/// bits of `value`), updating the L4 checksum.
pub fn set_tp_dst(frame: &mut [u8], layout: &HeaderLayout, value: u16) -> Result<(), RewriteError> {
    set_port(frame, layout, true, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::extract;
    use crate::packet::TunnelMeta;
    use crate::wire::checksum::{fold, pseudo_header_ipv4};
    use crate::wire::offload::complete_partial_checksum;
    use crate::wire::oracle::assert_checksums_valid;
    use etherparse::PacketBuilder;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const V6_SRC: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6_DST: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn layout(frame: &[u8], partial: bool) -> HeaderLayout {
        let x = extract(frame, 1, &TunnelMeta::default()).unwrap();
        assert_eq!(x.anomaly, None);
        let mut meta = OffloadMeta::default();
        if partial {
            meta.flags = OffloadMeta::F_NEEDS_CSUM;
        }
        HeaderLayout::new(&x, &meta)
    }

    fn tcp4() -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 0x1234_5678, 512)
            .ack(99)
            .write(&mut f, b"hello, world")
            .unwrap();
        f
    }

    fn udp4() -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([192, 168, 0, 1], [192, 168, 0, 2], 64)
            .udp(5000, 53)
            .write(&mut f, b"query")
            .unwrap();
        f
    }

    fn tcp6() -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6(V6_SRC, V6_DST, 64)
            .tcp(40000, 443, 7, 512)
            .syn()
            .write(&mut f, &[])
            .unwrap();
        f
    }

    fn udp6() -> Vec<u8> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6(V6_SRC, V6_DST, 64)
            .udp(546, 547)
            .write(&mut f, b"dhcp")
            .unwrap();
        f
    }

    #[test]
    fn ipv4_address_rewrite_keeps_ip_and_l4_checksums_valid() {
        for mut f in [tcp4(), udp4()] {
            let l = layout(&f, false);
            set_ipv4_src(&mut f, &l, [172, 16, 0, 9]).unwrap();
            set_ipv4_dst(&mut f, &l, [8, 8, 4, 4]).unwrap();
            assert_eq!(&f[26..34], &[172, 16, 0, 9, 8, 8, 4, 4]);
            assert_checksums_valid(&f);
        }
    }

    #[test]
    fn udp_over_ipv4_without_checksum_keeps_zero() {
        let mut f = udp4();
        f[40..42].fill(0);
        let l = layout(&f, false);
        set_ipv4_dst(&mut f, &l, [1, 2, 3, 4]).unwrap();
        set_tp_src(&mut f, &l, 9999).unwrap();
        assert_eq!(&f[40..42], &[0, 0]);
        assert_eq!(&f[34..36], &9999u16.to_be_bytes());
        assert_eq!(crate::wire::checksum::checksum(&f[14..34]), 0);
    }

    #[test]
    fn udp_checksum_that_updates_to_zero_is_sent_as_ffff() {
        let mut f = udp4();
        let l = layout(&f, false);
        let check = u16::from_be_bytes([f[40], f[41]]);
        let old_port = u16::from_be_bytes([f[34], f[35]]);
        // The one port value for which RFC 1624 yields 0x0000.
        let port = fold(u64::from(check) + u64::from(old_port)) as u16;
        set_tp_src(&mut f, &l, port).unwrap();
        assert_eq!(&f[40..42], &[0xff, 0xff]);
        assert_checksums_valid(&f);
    }

    #[test]
    fn port_rewrites_keep_tcp_and_udp_checksums_valid() {
        for mut f in [tcp4(), udp4(), tcp6(), udp6()] {
            let l = layout(&f, false);
            set_tp_src(&mut f, &l, 1).unwrap();
            set_tp_dst(&mut f, &l, 65535).unwrap();
            let l4 = l.l4_ofs;
            assert_eq!(&f[l4..l4 + 4], &[0, 1, 0xff, 0xff]);
            assert_checksums_valid(&f);
        }
    }

    #[test]
    fn ipv6_address_rewrite_keeps_l4_checksums_valid() {
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6(V6_SRC, V6_DST, 64)
            .icmpv6_echo_request(1, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
        for mut f in [tcp6(), udp6(), icmp] {
            let l = layout(&f, false);
            let mut new = V6_DST;
            new[15] = 0x99;
            new[3] = 0x77;
            set_ipv6_src(&mut f, &l, new).unwrap();
            set_ipv6_dst(&mut f, &l, V6_SRC).unwrap();
            assert_eq!(&f[22..38], &new);
            assert_checksums_valid(&f);
        }
    }

    #[test]
    fn icmp_type_and_code_rewrite_keeps_checksum_valid() {
        let mut v4 = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(7, 8)
            .write(&mut v4, b"abc")
            .unwrap();
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2(A, B)
            .ipv6(V6_SRC, V6_DST, 64)
            .icmpv6_echo_request(7, 8)
            .write(&mut v6, b"abc")
            .unwrap();
        for (mut f, ty) in [(v4, 0u16), (v6, 129)] {
            let l = layout(&f, false);
            set_tp_src(&mut f, &l, ty).unwrap();
            set_tp_dst(&mut f, &l, 0).unwrap();
            assert_eq!(f[l.l4_ofs], ty as u8);
            assert_checksums_valid(&f);
        }
    }

    #[test]
    fn tos_and_ttl_rewrite_keeps_ipv4_checksum_valid() {
        let mut f = tcp4();
        set_ipv4_tos(&mut f, 14, 0xb8).unwrap();
        set_ipv4_ttl(&mut f, 14, 1).unwrap();
        assert_eq!((f[15], f[22]), (0xb8, 1));
        assert_checksums_valid(&f);
    }

    #[test]
    fn partial_checksum_follows_addresses_but_not_ports() {
        let mut f = tcp4();
        let l4_len = (f.len() - 34) as u32;
        let partial = pseudo_header_ipv4(&f[26..30], &f[30..34], 6, l4_len) as u16;
        f[50..52].copy_from_slice(&partial.to_be_bytes());
        let l = layout(&f, true);
        set_ipv4_src(&mut f, &l, [100, 64, 0, 1]).unwrap();
        let after_addr = pseudo_header_ipv4(&f[26..30], &f[30..34], 6, l4_len) as u16;
        assert_eq!(&f[50..52], &after_addr.to_be_bytes());
        set_tp_dst(&mut f, &l, 8080).unwrap();
        assert_eq!(&f[50..52], &after_addr.to_be_bytes());
        complete_partial_checksum(&mut f, 34, 16).unwrap();
        assert_checksums_valid(&f);
    }

    #[test]
    fn later_fragment_address_rewrite_touches_only_the_ip_header() {
        let mut f = udp4();
        f[20] = 0x00;
        f[21] = 0x10; // fragment offset 16 (128 bytes)
        crate::wire::offload::fill_ipv4_checksum(&mut f, 14).unwrap();
        let l = layout(&f, false);
        assert_eq!(l.l4_ofs, 0);
        let before_l4 = f[34..].to_vec();
        set_ipv4_src(&mut f, &l, [9, 9, 9, 9]).unwrap();
        assert_eq!(&f[34..], &before_l4[..]);
        assert_eq!(crate::wire::checksum::checksum(&f[14..34]), 0);
        assert_eq!(set_tp_src(&mut f, &l, 1), Err(RewriteError::NoL4Header));
    }

    #[test]
    fn refused_rewrites_leave_the_frame_unchanged() {
        let mut f = tcp6();
        let l = layout(&f, false);
        let orig = f.clone();
        assert_eq!(
            set_ipv4_src(&mut f, &l, [1, 1, 1, 1]),
            Err(RewriteError::WrongIpVersion {
                version: 4,
                l3_ofs: 14
            })
        );
        let mut short = f[..60].to_vec();
        assert!(matches!(
            set_tp_dst(&mut short, &l, 1),
            Err(RewriteError::Truncated { .. })
        ));
        let mut gre = l;
        gre.ip_proto = 47;
        assert_eq!(
            set_tp_src(&mut f, &gre, 1),
            Err(RewriteError::NoPorts { proto: 47 })
        );
        let mut sctp = l;
        sctp.ip_proto = 132;
        sctp.l4_ofs = f.len() - 8;
        assert!(matches!(
            set_tp_src(&mut f, &sctp, 1),
            Err(RewriteError::Truncated { header: "SCTP", .. })
        ));
        assert_eq!(f, orig);
        assert_eq!(&short[..], &orig[..60]);
        let msg = RewriteError::NoPorts { proto: 47 }.to_string();
        assert!(msg.contains("47"), "{msg}");
    }
}

#[cfg(test)]
mod sctp_tests {
    use super::*;
    use crate::flow::extract;
    use crate::packet::TunnelMeta;
    use crate::wire::sctp::crc32c;

    /// An SCTP DATA chunk over IPv4, with a correct (or corrupted) CRC.
    fn sctp4(corrupt: bool) -> Vec<u8> {
        let mut sctp = vec![
            0x0b, 0x59, 0x0b, 0x5a, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, // common header
            0x00, 0x03, 0x00, 0x14, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0x2f, // DATA
            b'h', b'i', b'!', b'!',
        ];
        let mut crc = crc32c(&sctp);
        if corrupt {
            crc ^= 0x0100_0000;
        }
        sctp[8..12].copy_from_slice(&SctpChecksum(crc).to_field());
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 132, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let total = (ip.len() + sctp.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend(ip);
        f.extend(sctp);
        f.extend_from_slice(&[0; 6]); // Ethernet padding is not part of SCTP
        f
    }

    fn layout(f: &[u8]) -> HeaderLayout {
        let x = extract(f, 1, &TunnelMeta::default()).unwrap();
        HeaderLayout::new(&x, &OffloadMeta::default())
    }

    fn crc_ok(f: &[u8]) -> bool {
        let mut sctp = f[34..f.len() - 6].to_vec();
        let held = SctpChecksum::from_field([sctp[8], sctp[9], sctp[10], sctp[11]]);
        sctp[8..12].fill(0);
        held == SctpChecksum(crc32c(&sctp))
    }

    #[test]
    fn sctp_port_rewrite_recomputes_crc32c() {
        let mut f = sctp4(false);
        assert!(crc_ok(&f));
        let l = layout(&f);
        set_tp_src(&mut f, &l, 36412).unwrap();
        set_tp_dst(&mut f, &l, 38412).unwrap();
        assert_eq!(&f[34..38], &[0x8e, 0x3c, 0x96, 0x0c]);
        assert!(crc_ok(&f));
        assert_eq!(&f[f.len() - 6..], &[0; 6]);
    }

    #[test]
    fn sctp_port_rewrite_keeps_a_bad_crc_bad() {
        let mut f = sctp4(true);
        assert!(!crc_ok(&f));
        let l = layout(&f);
        set_tp_dst(&mut f, &l, 1).unwrap();
        assert!(!crc_ok(&f));
        set_tp_dst(&mut f, &l, 2906).unwrap();
        assert_eq!(f, sctp4(true));
    }
}
