//! Frame → [`FlowKey`] extraction: one bounds-checked pass over the headers
//! of an Ethernet frame.
//!
//! Formats followed: Ethernet II and IEEE 802.3 with LLC/SNAP (RFC 1042),
//! IEEE 802.1Q / 802.1ad VLAN tags, ARP and RARP for Ethernet/IPv4 (RFC 826,
//! RFC 903), IPv4 (RFC 791 §3.1), IPv6 with its extension headers
//! (RFC 8200 §4, AH from RFC 4302 §2), TCP (RFC 9293 §3.1), UDP (RFC 768),
//! SCTP common header (RFC 9260 §3.1), ICMP (RFC 792) and ICMPv6
//! (RFC 4443 §2.1). Field meanings are Open vSwitch's (`ovs-fields(7)`,
//! `miniflow_extract` in `lib/flow.c`), with the differences noted below.
//!
//! The parser is written by hand over byte offsets rather than through
//! etherparse's sliced packets: it must keep the fields it parsed before a
//! bad header (a switch still forwards such a frame on its L2 fields) and
//! it runs once per packet on the hot path, so it allocates nothing and
//! reads every header byte at most once. etherparse stays the oracle in
//! the unit and property tests (`tests/parse_props.rs`).
//!
//! Policies (chosen here, relied on by the classifier and actions):
//! - Fewer than 14 bytes, or a VLAN tag cut short: `Err(DropReason::Runt)`.
//!   Everything wrong above L2 yields `Ok` with the fields parsed so far and
//!   an [`Anomaly`] for the caller to count.
//! - TPIDs 0x8100 and 0x88a8 are tags (0x9100 is not, as in OVS). The
//!   outer tag goes to `vlan_tci`, the second to `vlan2_tci`, both with
//!   [`VLAN_PRESENT`] set (so the DEI bit reads as set, as in OVS); tags
//!   three to [`MAX_VLAN_TAGS`] are skipped, more is an anomaly.
//! - A length field (< 0x600, IEEE 802.3) gives `eth_type` 0x05ff
//!   ([`ETH_TYPE_NONE`], OVS's `FLOW_DL_TYPE_NONE`) and `l3_ofs` at the LLC
//!   header, unless an RFC 1042 SNAP header (AA AA 03 00 00 00) carries an
//!   EtherType: then that type is used and L3 starts after the SNAP header.
//! - An IPv4/IPv6 header that fails validation sets no L3 field (as OVS);
//!   IPv6 extension header trouble keeps the fixed-header fields but leaves
//!   `nw_proto` and `nw_frag` 0. L4 bytes are bounded by the IP length, so
//!   Ethernet padding is never parsed as a header.
//! - A non-first fragment has no L4 fields and `l4_ofs` 0; its `nw_proto`
//!   is the upper-layer protocol for IPv4 and IPv6 alike (OVS reports 44,
//!   the fragment header, for IPv6; uniform semantics are more useful).
//!   An IPv6 "atomic fragment" (offset 0, M clear) is not a fragment.
//! - IPv6 payload length 0 (a jumbogram, RFC 2675) extends to the frame end.
//! - `l4_ofs` is the offset of the L4 header exactly when its fields are
//!   in the key: a complete TCP, UDP, SCTP, ICMP (over IPv4) or ICMPv6
//!   (over IPv6) header in a packet that is not a later fragment. It is 0
//!   for other protocols (GRE, ESP, ...), so actions that rewrite ports
//!   can rely on `l4_ofs != 0` meaning "the ports are there".

use super::key::{mac_to_u64, Field, FlowKey, PortNo, FRAG_ANY, FRAG_LATER, VLAN_PRESENT};
use crate::drop::DropReason;
use crate::packet::TunnelMeta;

/// `eth_type` of an IEEE 802.3 frame without a SNAP EtherType.
pub const ETH_TYPE_NONE: u16 = 0x05ff;
/// Most VLAN tags walked; the first two are kept in the key.
pub const MAX_VLAN_TAGS: usize = 8;
/// Most IPv6 extension headers walked before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;

const ETH_HEADER_LEN: usize = 14;
const ETH_TYPE_OFS: usize = 12;
/// Smallest value of the type/length field that is an EtherType.
const ETH_TYPE_MIN: u16 = 0x0600;
const ETH_TYPE_IPV4: u16 = 0x0800;
const ETH_TYPE_ARP: u16 = 0x0806;
const ETH_TYPE_RARP: u16 = 0x8035;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;
/// TPID + TCI.
const VLAN_TAG_LEN: usize = 4;
/// DSAP, SSAP, control of a SNAP LLC header, then a zero OUI (RFC 1042).
const LLC_SNAP_RFC1042: [u8; 6] = [0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00];
const LLC_SNAP_LEN: usize = 8;

const ARP_LEN: usize = 28;
const ARP_HTYPE_ETHERNET: u16 = 1;

const IPV4_MIN_LEN: usize = 20;
const IPV4_MF: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;
const IPV6_HEADER_LEN: usize = 40;
const IPV6_FRAG_HEADER_LEN: usize = 8;
const IPV6_FRAG_OFFSET_MASK: u16 = 0xfff8;
const IPV6_FRAG_MF: u16 = 0x0001;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;
const IPPROTO_SCTP: u8 = 132;

const TCP_MIN_LEN: usize = 20;
const TCP_FLAGS_MASK: u16 = 0x0fff;
const UDP_LEN: usize = 8;
const SCTP_COMMON_LEN: usize = 12;
/// Type, code, checksum and the 4-byte rest of header (RFC 792, RFC 4443).
const ICMP_LEN: usize = 8;

/// A header the parser found inconsistent. The frame is still switched on
/// the fields parsed before the anomaly; the anomaly is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anomaly {
    /// The L3 header (IPv4 header with options, IPv6 header or one of its
    /// extension headers) is cut short.
    TruncatedL3,
    /// IPv4 version, IHL or total length inconsistent.
    BadIpv4Header,
    /// IPv6 version, payload length or extension header chain (longer than
    /// [`MAX_IPV6_EXT_HEADERS`]) inconsistent.
    BadIpv6Header,
    /// ARP header cut short or not Ethernet/IPv4.
    BadArp,
    /// The L4 header (TCP with options, UDP, SCTP, ICMP) is cut short.
    TruncatedL4,
    /// TCP data offset below 5 words.
    BadTcpHeader,
    /// More than [`MAX_VLAN_TAGS`] VLAN tags; the EthType is the TPID found
    /// after the last walked tag.
    TooManyVlanTags,
}

impl Anomaly {
    /// Every anomaly, in counter order.
    pub const ALL: [Anomaly; 7] = [
        Anomaly::TruncatedL3,
        Anomaly::BadIpv4Header,
        Anomaly::BadIpv6Header,
        Anomaly::BadArp,
        Anomaly::TruncatedL4,
        Anomaly::BadTcpHeader,
        Anomaly::TooManyVlanTags,
    ];

    /// Stable snake_case name for counters.
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::TruncatedL3 => "truncated_l3",
            Anomaly::BadIpv4Header => "bad_ipv4_header",
            Anomaly::BadIpv6Header => "bad_ipv6_header",
            Anomaly::BadArp => "bad_arp",
            Anomaly::TruncatedL4 => "truncated_l4",
            Anomaly::BadTcpHeader => "bad_tcp_header",
            Anomaly::TooManyVlanTags => "too_many_vlan_tags",
        }
    }

    /// Index into counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The result of parsing one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extracted {
    /// The flow key.
    pub key: FlowKey,
    /// Offset of the L3 header (after Ethernet, VLAN tags and LLC/SNAP).
    pub l3_ofs: u16,
    /// Offset of the L4 header, 0 when there is none (see the module doc).
    pub l4_ofs: u16,
    /// What was found wrong, if anything.
    pub anomaly: Option<Anomaly>,
}

/// The upper-layer header an IP header chain leads to.
struct Upper<'a> {
    /// Offset from the start of the L3 header.
    ofs: usize,
    proto: u8,
    /// From the upper-layer header to the end of the IP packet.
    bytes: &'a [u8],
}

#[inline(always)]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline(always)]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
fn mac_at(b: &[u8], at: usize) -> u128 {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[at..at + 6]);
    u128::from(mac_to_u64(m))
}

#[inline(always)]
fn ipv6_at(b: &[u8], at: usize) -> u128 {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    u128::from_be_bytes(a)
}

/// Parses `frame` into a flow key. Errors only when not even the Ethernet
/// header (and its VLAN tags) is there; see [`Anomaly`] for the rest.
pub fn extract(
    frame: &[u8],
    in_port: PortNo,
    tunnel: &TunnelMeta,
) -> Result<Extracted, DropReason> {
    if frame.len() < ETH_HEADER_LEN {
        return Err(DropReason::Runt);
    }
    let mut key = FlowKey::ZERO;
    key.set(Field::InPort, u128::from(in_port));
    if tunnel.vni != 0 || tunnel.src != 0 {
        key.set(Field::TunId, u128::from(tunnel.vni));
        key.set(Field::TunSrc, u128::from(tunnel.src));
        key.set(Field::TunDst, u128::from(tunnel.dst));
    }
    key.set(Field::EthDst, mac_at(frame, 0));
    key.set(Field::EthSrc, mac_at(frame, 6));

    let mut anomaly = None;
    // `type_ofs` always points at a type/length field inside the frame.
    let mut type_ofs = ETH_TYPE_OFS;
    let mut eth_type = be16(frame, type_ofs);
    let mut tags = 0;
    while eth_type == TPID_8021Q || eth_type == TPID_8021AD {
        if tags == MAX_VLAN_TAGS {
            anomaly = Some(Anomaly::TooManyVlanTags);
            break;
        }
        if frame.len() < type_ofs + VLAN_TAG_LEN + 2 {
            return Err(DropReason::Runt);
        }
        let tci = be16(frame, type_ofs + 2) | VLAN_PRESENT;
        match tags {
            0 => key.set(Field::VlanTci, u128::from(tci)),
            1 => key.set(Field::Vlan2Tci, u128::from(tci)),
            _ => {}
        }
        tags += 1;
        type_ofs += VLAN_TAG_LEN;
        eth_type = be16(frame, type_ofs);
    }
    let mut l3_ofs = type_ofs + 2;
    if eth_type < ETH_TYPE_MIN {
        let llc = &frame[l3_ofs..];
        if llc.len() >= LLC_SNAP_LEN && llc[..6] == LLC_SNAP_RFC1042 {
            eth_type = be16(llc, 6);
            l3_ofs += LLC_SNAP_LEN;
        } else {
            eth_type = ETH_TYPE_NONE;
        }
    }
    key.set(Field::EthType, u128::from(eth_type));

    let mut l4_ofs = 0;
    if anomaly.is_none() {
        let l3 = &frame[l3_ofs..];
        let upper = match eth_type {
            ETH_TYPE_IPV4 => ipv4(l3, &mut key),
            ETH_TYPE_IPV6 => ipv6(l3, &mut key),
            ETH_TYPE_ARP | ETH_TYPE_RARP => arp(l3, &mut key).map(|()| None),
            _ => Ok(None),
        };
        match upper {
            Ok(None) => {}
            Ok(Some(up)) => match transport(&up, eth_type == ETH_TYPE_IPV6, &mut key) {
                Ok(true) => l4_ofs = l3_ofs + up.ofs,
                Ok(false) => {}
                Err(a) => anomaly = Some(a),
            },
            Err(a) => anomaly = Some(a),
        }
    }
    // Offsets fit u16: at most 14 + 8 tags + SNAP before L3, and 40 plus
    // 8 extension headers of at most 2 KiB each after it.
    Ok(Extracted {
        key,
        l3_ofs: l3_ofs as u16,
        l4_ofs: l4_ofs as u16,
        anomaly,
    })
}

/// ARP/RARP for Ethernet hardware and IPv4 protocol addresses.
fn arp(l3: &[u8], key: &mut FlowKey) -> Result<(), Anomaly> {
    if l3.len() < ARP_LEN
        || be16(l3, 0) != ARP_HTYPE_ETHERNET
        || be16(l3, 2) != ETH_TYPE_IPV4
        || l3[4] != 6
        || l3[5] != 4
    {
        return Err(Anomaly::BadArp);
    }
    key.set(Field::NwProto, u128::from(be16(l3, 6) & 0xff));
    key.set(Field::ArpSha, mac_at(l3, 8));
    key.set(Field::NwSrc, u128::from(be32(l3, 14)));
    key.set(Field::ArpTha, mac_at(l3, 18));
    key.set(Field::NwDst, u128::from(be32(l3, 24)));
    Ok(())
}

/// IPv4 header (RFC 791 §3.1). Returns the upper layer unless this is a
/// non-first fragment.
fn ipv4<'a>(l3: &'a [u8], key: &mut FlowKey) -> Result<Option<Upper<'a>>, Anomaly> {
    if l3.len() < IPV4_MIN_LEN {
        return Err(Anomaly::TruncatedL3);
    }
    if l3[0] >> 4 != 4 {
        return Err(Anomaly::BadIpv4Header);
    }
    let header_len = usize::from(l3[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_LEN {
        return Err(Anomaly::BadIpv4Header);
    }
    if l3.len() < header_len {
        return Err(Anomaly::TruncatedL3);
    }
    let total_len = usize::from(be16(l3, 2));
    if total_len < header_len || total_len > l3.len() {
        return Err(Anomaly::BadIpv4Header);
    }
    let proto = l3[9];
    key.set(Field::NwTos, u128::from(l3[1]));
    key.set(Field::NwTtl, u128::from(l3[8]));
    key.set(Field::NwProto, u128::from(proto));
    key.set(Field::NwSrc, u128::from(be32(l3, 12)));
    key.set(Field::NwDst, u128::from(be32(l3, 16)));
    let frag = be16(l3, 6);
    if frag & IPV4_OFFSET_MASK != 0 {
        key.set(Field::NwFrag, u128::from(FRAG_ANY | FRAG_LATER));
        return Ok(None);
    }
    if frag & IPV4_MF != 0 {
        key.set(Field::NwFrag, u128::from(FRAG_ANY));
    }
    Ok(Some(Upper {
        ofs: header_len,
        proto,
        bytes: &l3[header_len..total_len],
    }))
}

/// IPv6 fixed header and extension header chain (RFC 8200 §3, §4).
fn ipv6<'a>(l3: &'a [u8], key: &mut FlowKey) -> Result<Option<Upper<'a>>, Anomaly> {
    if l3.len() < IPV6_HEADER_LEN {
        return Err(Anomaly::TruncatedL3);
    }
    if l3[0] >> 4 != 6 {
        return Err(Anomaly::BadIpv6Header);
    }
    let payload_len = usize::from(be16(l3, 4));
    let end = if payload_len == 0 {
        l3.len()
    } else {
        IPV6_HEADER_LEN + payload_len
    };
    if end > l3.len() {
        return Err(Anomaly::BadIpv6Header);
    }
    let flow = be32(l3, 0);
    key.set(Field::NwTos, u128::from((flow >> 20) & 0xff));
    key.set(Field::Ipv6Label, u128::from(flow & 0x000f_ffff));
    key.set(Field::NwTtl, u128::from(l3[7]));
    key.set(Field::NwSrc, ipv6_at(l3, 8));
    key.set(Field::NwDst, ipv6_at(l3, 24));

    let packet = &l3[..end];
    let mut proto = l3[6];
    let mut ofs = IPV6_HEADER_LEN;
    let mut frag = 0u8;
    let mut walked = 0;
    loop {
        let ext_len = match proto {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                if packet.len() < ofs + 2 {
                    return Err(Anomaly::TruncatedL3);
                }
                (usize::from(packet[ofs + 1]) + 1) * 8
            }
            IPPROTO_AH => {
                if packet.len() < ofs + 2 {
                    return Err(Anomaly::TruncatedL3);
                }
                (usize::from(packet[ofs + 1]) + 2) * 4
            }
            IPPROTO_FRAGMENT => IPV6_FRAG_HEADER_LEN,
            _ => {
                key.set(Field::NwProto, u128::from(proto));
                key.set(Field::NwFrag, u128::from(frag));
                return Ok(Some(Upper {
                    ofs,
                    proto,
                    bytes: &packet[ofs..],
                }));
            }
        };
        if walked == MAX_IPV6_EXT_HEADERS {
            return Err(Anomaly::BadIpv6Header);
        }
        walked += 1;
        if packet.len() < ofs + ext_len {
            return Err(Anomaly::TruncatedL3);
        }
        if proto == IPPROTO_FRAGMENT {
            let off_flags = be16(packet, ofs + 2);
            if off_flags & (IPV6_FRAG_OFFSET_MASK | IPV6_FRAG_MF) != 0 {
                frag = FRAG_ANY;
            }
            if off_flags & IPV6_FRAG_OFFSET_MASK != 0 {
                key.set(Field::NwProto, u128::from(packet[ofs]));
                key.set(Field::NwFrag, u128::from(FRAG_ANY | FRAG_LATER));
                return Ok(None);
            }
        }
        proto = packet[ofs];
        ofs += ext_len;
    }
}

/// L4 ports/flags or ICMP type/code; true when the protocol has such
/// fields. `up.bytes` ends where the IP packet ends, so padding is never
/// read as a header.
fn transport(up: &Upper<'_>, is_ipv6: bool, key: &mut FlowKey) -> Result<bool, Anomaly> {
    let b = up.bytes;
    match up.proto {
        IPPROTO_TCP => {
            if b.len() < TCP_MIN_LEN {
                return Err(Anomaly::TruncatedL4);
            }
            let header_len = usize::from(b[12] >> 4) * 4;
            if header_len < TCP_MIN_LEN {
                return Err(Anomaly::BadTcpHeader);
            }
            if b.len() < header_len {
                return Err(Anomaly::TruncatedL4);
            }
            key.set(Field::TpSrc, u128::from(be16(b, 0)));
            key.set(Field::TpDst, u128::from(be16(b, 2)));
            key.set(Field::TcpFlags, u128::from(be16(b, 12) & TCP_FLAGS_MASK));
        }
        IPPROTO_UDP | IPPROTO_SCTP => {
            let min = if up.proto == IPPROTO_UDP {
                UDP_LEN
            } else {
                SCTP_COMMON_LEN
            };
            if b.len() < min {
                return Err(Anomaly::TruncatedL4);
            }
            key.set(Field::TpSrc, u128::from(be16(b, 0)));
            key.set(Field::TpDst, u128::from(be16(b, 2)));
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 if (up.proto == IPPROTO_ICMPV6) == is_ipv6 => {
            if b.len() < ICMP_LEN {
                return Err(Anomaly::TruncatedL4);
            }
            key.set(Field::TpSrc, u128::from(b[0]));
            key.set(Field::TpDst, u128::from(b[1]));
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{
        IpAuthHeader, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6FragmentHeader, Ipv6Header,
        Ipv6RawExtHeader, PacketBuilder, TcpHeader, UdpHeader,
    };

    const PORT: PortNo = 7;
    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn parse(frame: &[u8]) -> Extracted {
        extract(frame, PORT, &TunnelMeta::default()).expect("not a runt")
    }

    /// The key the parser must produce: in_port plus `fields`, nothing else.
    fn key_of(fields: &[(Field, u128)]) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.set(Field::InPort, u128::from(PORT));
        for (f, v) in fields {
            k.set(*f, *v);
        }
        k
    }

    fn l2(eth_type: u16) -> Vec<(Field, u128)> {
        vec![
            (Field::EthDst, u128::from(mac_to_u64(MAC_B))),
            (Field::EthSrc, u128::from(mac_to_u64(MAC_A))),
            (Field::EthType, u128::from(eth_type)),
        ]
    }

    fn with(mut base: Vec<(Field, u128)>, more: &[(Field, u128)]) -> Vec<(Field, u128)> {
        base.extend_from_slice(more);
        base
    }

    /// Ethernet header from MAC_A to MAC_B followed by `payload`.
    fn eth(eth_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&MAC_B);
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&eth_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Inserts a VLAN tag in front of the frame's type field.
    fn tag(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
        let mut f = frame[..12].to_vec();
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
        f.extend_from_slice(&frame[12..]);
        f
    }

    fn ipv4_header(proto: u8, payload_len: usize) -> Ipv4Header {
        let mut h = Ipv4Header::new(
            payload_len as u16,
            64,
            IpNumber(proto),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap();
        h.header_checksum = h.calc_header_checksum();
        h
    }

    fn ipv4_frame(h: &Ipv4Header, l4: &[u8]) -> Vec<u8> {
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(l4);
        eth(0x0800, &p)
    }

    fn tcp_bytes(options: &[u8]) -> Vec<u8> {
        let mut t = TcpHeader::new(40000, 443, 1, 1000);
        t.syn = true;
        t.ack = true;
        t.set_options_raw(options).unwrap();
        t.to_bytes().to_vec()
    }

    fn udp_bytes(payload: &[u8]) -> Vec<u8> {
        let mut u = UdpHeader {
            source_port: 5353,
            destination_port: 53,
            length: 0,
            checksum: 0,
        };
        u.length = (8 + payload.len()) as u16;
        let mut b = u.to_bytes().to_vec();
        b.extend_from_slice(payload);
        b
    }

    /// Truncates the frame to `len` bytes and makes the IP length field
    /// agree, so that the cut shows up in the header after it.
    fn cut_ip(frame: &[u8], l3: usize, len: usize) -> Vec<u8> {
        let mut f = frame[..len].to_vec();
        if f[l3] >> 4 == 4 {
            let total = (len - l3) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        } else {
            let payload = (len - l3 - 40) as u16;
            f[l3 + 4..l3 + 6].copy_from_slice(&payload.to_be_bytes());
        }
        f
    }

    fn ipv6_frame(next: u8, exts_and_l4: &[u8]) -> Vec<u8> {
        let h = Ipv6Header {
            traffic_class: 0xb8,
            flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
            payload_length: exts_and_l4.len() as u16,
            next_header: IpNumber(next),
            hop_limit: 255,
            source: [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        };
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(exts_and_l4);
        eth(0x86dd, &p)
    }

    fn ipv6_l3_fields() -> Vec<(Field, u128)> {
        with(
            l2(0x86dd),
            &[
                (Field::NwTos, 0xb8),
                (Field::Ipv6Label, 0x12345),
                (Field::NwTtl, 255),
                (Field::NwSrc, 0xfe80_0000_0000_0000_0000_0000_0000_0001),
                (Field::NwDst, 0x2001_0db8_0000_0000_0000_0000_0000_0002),
            ],
        )
    }

    fn raw_ext(next: u8, payload_len: usize) -> Vec<u8> {
        Ipv6RawExtHeader::new_raw(IpNumber(next), &vec![0u8; payload_len])
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[test]
    fn tcp_syn_over_ipv4_fills_every_field_from_captured_bytes() {
        let frame = hex("020000000002 020000000001 0800
             4510 003c 1c46 4000 4006 0000 0a000001 0a000002
             c350 0050 00000001 00000000 a002 faf0 0000 0000
             020405b4 0402080a 00000000 00000000 01030307");
        let x = parse(&frame);
        let want = key_of(&with(
            l2(0x0800),
            &[
                (Field::NwSrc, 0x0a00_0001),
                (Field::NwDst, 0x0a00_0002),
                (Field::NwProto, 6),
                (Field::NwTos, 0x10),
                (Field::NwTtl, 64),
                (Field::TpSrc, 50000),
                (Field::TpDst, 80),
                (Field::TcpFlags, 0x002),
            ],
        ));
        assert_eq!(x.key, want);
        assert_eq!((x.l3_ofs, x.l4_ofs, x.anomaly), (14, 34, None));
    }

    #[test]
    fn tcp_flags_keep_all_twelve_bits() {
        let mut l4 = tcp_bytes(&[]);
        l4[12] |= 0x0f; // NS plus the three reserved bits
        l4[13] = 0xff;
        let frame = ipv4_frame(&ipv4_header(6, l4.len()), &l4);
        assert_eq!(parse(&frame).key.get(Field::TcpFlags), 0xfff);
    }

    #[test]
    fn ipv4_options_move_the_l4_header() {
        let l4 = tcp_bytes(&[1, 1, 1, 0]);
        let mut h = ipv4_header(6, l4.len());
        h.options = (&[0x94, 0x04, 0, 0, 1, 1, 1, 0][..]).try_into().unwrap();
        h.set_payload_len(l4.len()).unwrap();
        let frame = ipv4_frame(&h, &l4);
        let x = parse(&frame);
        assert_eq!((x.l4_ofs, x.anomaly), (14 + 28, None));
        assert_eq!(x.key.get(Field::TpSrc), 40000);
        assert_eq!(x.key.get(Field::TpDst), 443);
        assert_eq!(x.key.get(Field::TcpFlags), 0x012);
    }

    #[test]
    fn udp_over_ipv4_with_ethernet_padding() {
        let l4 = udp_bytes(&[1, 2]);
        let mut frame = ipv4_frame(&ipv4_header(17, l4.len()), &l4);
        frame.resize(60, 0);
        let x = parse(&frame);
        let want = key_of(&with(
            l2(0x0800),
            &[
                (Field::NwSrc, 0x0a00_0001),
                (Field::NwDst, 0x0a00_0002),
                (Field::NwProto, 17),
                (Field::NwTtl, 64),
                (Field::TpSrc, 5353),
                (Field::TpDst, 53),
            ],
        ));
        assert_eq!(x.key, want);
        assert_eq!((x.l4_ofs, x.anomaly), (34, None));
    }

    #[test]
    fn padding_is_not_parsed_as_an_l4_header() {
        // IPv4 says 20 bytes, no payload: the UDP header lives in padding.
        let mut frame = ipv4_frame(&ipv4_header(17, 0), &udp_bytes(&[]));
        frame.resize(60, 0);
        let x = parse(&frame);
        assert_eq!(x.anomaly, Some(Anomaly::TruncatedL4));
        assert_eq!((x.key.get(Field::TpSrc), x.l4_ofs), (0, 0));
        assert_eq!(x.key.get(Field::NwProto), 17);
    }

    #[test]
    fn icmpv4_echo_puts_type_and_code_in_ports() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([192, 168, 1, 1], [192, 168, 1, 2], 3)
            .icmpv4_echo_request(0x1234, 1)
            .write(&mut frame, b"ping")
            .unwrap();
        let x = parse(&frame);
        let want = key_of(&with(
            l2(0x0800),
            &[
                (Field::NwSrc, 0xc0a8_0101),
                (Field::NwDst, 0xc0a8_0102),
                (Field::NwProto, 1),
                (Field::NwTtl, 3),
                (Field::TpSrc, 8),
                (Field::TpDst, 0),
            ],
        ));
        assert_eq!(x.key, want);
        assert_eq!(x.l4_ofs, 34);
    }

    #[test]
    fn icmpv4_code_is_tp_dst() {
        let icmp = hex("0303 0000 00000000"); // port unreachable
        let frame = ipv4_frame(&ipv4_header(1, icmp.len()), &icmp);
        let x = parse(&frame);
        assert_eq!((x.key.get(Field::TpSrc), x.key.get(Field::TpDst)), (3, 3));
    }

    #[test]
    fn sctp_ports_are_extracted() {
        let sctp = hex("0b59 0b5a 00000001 00000000");
        let frame = ipv4_frame(&ipv4_header(132, sctp.len()), &sctp);
        let x = parse(&frame);
        assert_eq!(x.key.get(Field::TpSrc), 2905);
        assert_eq!(x.key.get(Field::TpDst), 2906);
        assert_eq!(x.anomaly, None);
        let short = cut_ip(&frame, 14, frame.len() - 1);
        assert_eq!(parse(&short).anomaly, Some(Anomaly::TruncatedL4));
    }

    #[test]
    fn unknown_l4_protocol_has_neither_ports_nor_l4_offset() {
        let gre = hex("0000 6558");
        let frame = ipv4_frame(&ipv4_header(47, gre.len()), &gre);
        let x = parse(&frame);
        assert_eq!(
            (x.key.get(Field::NwProto), x.l4_ofs, x.anomaly),
            (47, 0, None)
        );
        assert_eq!(x.key.get(Field::TpSrc), 0);
    }

    #[test]
    fn icmpv6_number_inside_ipv4_is_not_icmp() {
        let icmp = hex("8000 0000 00000000");
        let frame = ipv4_frame(&ipv4_header(58, icmp.len()), &icmp);
        let x = parse(&frame);
        assert_eq!((x.key.get(Field::TpSrc), x.l4_ofs, x.anomaly), (0, 0, None));
    }

    #[test]
    fn arp_request_from_captured_bytes() {
        let frame = hex("ffffffffffff 020000000001 0806
             0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000002
             000000000000000000000000000000000000");
        let x = parse(&frame);
        let want = key_of(&[
            (Field::EthDst, 0xffff_ffff_ffff),
            (Field::EthSrc, u128::from(mac_to_u64(MAC_A))),
            (Field::EthType, 0x0806),
            (Field::NwProto, 1),
            (Field::ArpSha, u128::from(mac_to_u64(MAC_A))),
            (Field::NwSrc, 0x0a00_0001),
            (Field::ArpTha, 0),
            (Field::NwDst, 0x0a00_0002),
        ]);
        assert_eq!(x.key, want);
        assert_eq!((x.l3_ofs, x.l4_ofs, x.anomaly), (14, 0, None));
    }

    #[test]
    fn rarp_reply_uses_the_arp_fields_and_low_opcode_bits() {
        let body = hex("0001 0800 06 04 0104 020000000001 0a000001 020000000002 0a000002");
        let x = parse(&eth(0x8035, &body));
        assert_eq!(x.key.get(Field::NwProto), 0x04);
        assert_eq!(x.key.get(Field::ArpTha), u128::from(mac_to_u64(MAC_B)));
        assert_eq!(x.key.get(Field::NwDst), 0x0a00_0002);
    }

    #[test]
    fn arp_truncated_or_not_ethernet_ipv4_is_bad_arp() {
        let body = hex("0001 0800 06 04 0002 020000000001 0a000001 020000000002 0a000002");
        for cut in 0..body.len() {
            let x = parse(&eth(0x0806, &body[..cut]));
            assert_eq!(x.anomaly, Some(Anomaly::BadArp), "cut {cut}");
            assert_eq!(x.key, key_of(&l2(0x0806)), "cut {cut}");
        }
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = body.clone();
            b[at] = v;
            assert_eq!(parse(&eth(0x0806, &b)).anomaly, Some(Anomaly::BadArp));
        }
    }

    #[test]
    fn ipv6_udp_from_captured_bytes() {
        let frame = hex("333300000001 020000000001 86dd
             6b812345 000c 11 40
             fe800000000000000000000000000001 ff020000000000000000000000000001
             0222 0223 000c 0000 deadbeef");
        let x = parse(&frame);
        let want = key_of(&[
            (Field::EthDst, 0x3333_0000_0001),
            (Field::EthSrc, u128::from(mac_to_u64(MAC_A))),
            (Field::EthType, 0x86dd),
            (Field::NwTos, 0xb8),
            (Field::Ipv6Label, 0x12345),
            (Field::NwTtl, 64),
            (Field::NwProto, 17),
            (Field::NwSrc, 0xfe80_0000_0000_0000_0000_0000_0000_0001),
            (Field::NwDst, 0xff02_0000_0000_0000_0000_0000_0000_0001),
            (Field::TpSrc, 546),
            (Field::TpDst, 547),
        ]);
        assert_eq!(x.key, want);
        assert_eq!((x.l3_ofs, x.l4_ofs, x.anomaly), (14, 54, None));
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_tcp() {
        let tcp = tcp_bytes(&[]);
        let mut chain = raw_ext(43, 6); // hop-by-hop → routing
        chain.extend(raw_ext(60, 14)); // routing → destination options
        chain.extend(raw_ext(51, 6)); // destination options → AH
        chain.extend(
            IpAuthHeader::new(IpNumber(6), 1, 2, &[0; 12])
                .unwrap()
                .to_bytes(),
        );
        let ext_len = chain.len();
        chain.extend_from_slice(&tcp);
        let frame = ipv6_frame(0, &chain);
        let x = parse(&frame);
        let want = key_of(&with(
            ipv6_l3_fields(),
            &[
                (Field::NwProto, 6),
                (Field::TpSrc, 40000),
                (Field::TpDst, 443),
                (Field::TcpFlags, 0x012),
            ],
        ));
        assert_eq!(x.key, want);
        assert_eq!(usize::from(x.l4_ofs), 14 + 40 + ext_len);
        assert_eq!(x.anomaly, None);
    }

    #[test]
    fn icmpv6_type_and_code() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6([1; 16], [2; 16], 9)
            .icmpv6_echo_reply(1, 2)
            .write(&mut frame, &[])
            .unwrap();
        let x = parse(&frame);
        assert_eq!(x.key.get(Field::NwProto), 58);
        assert_eq!((x.key.get(Field::TpSrc), x.key.get(Field::TpDst)), (129, 0));
        assert_eq!((x.l4_ofs, x.anomaly), (54, None));
    }

    #[test]
    fn ipv6_first_fragment_has_l4_and_later_fragment_has_not() {
        let frag = |offset: u16, more: bool| {
            let mut b = Ipv6FragmentHeader::new(
                IpNumber(17),
                etherparse::IpFragOffset::try_new(offset).unwrap(),
                more,
                0xabcd,
            )
            .to_bytes()
            .to_vec();
            b.extend(udp_bytes(&[0; 8]));
            ipv6_frame(44, &b)
        };
        let first = parse(&frag(0, true));
        assert_eq!(first.key.get(Field::NwFrag), u128::from(FRAG_ANY));
        assert_eq!(first.key.get(Field::NwProto), 17);
        assert_eq!(first.key.get(Field::TpDst), 53);
        assert_eq!(first.l4_ofs, 14 + 40 + 8);

        let later = parse(&frag(100, false));
        let want = key_of(&with(
            ipv6_l3_fields(),
            &[
                (Field::NwProto, 17),
                (Field::NwFrag, u128::from(FRAG_ANY | FRAG_LATER)),
            ],
        ));
        assert_eq!(later.key, want);
        assert_eq!((later.l4_ofs, later.anomaly), (0, None));

        let atomic = parse(&frag(0, false));
        assert_eq!(atomic.key.get(Field::NwFrag), 0);
        assert_eq!(atomic.key.get(Field::TpDst), 53);
    }

    #[test]
    fn ipv4_first_fragment_has_l4_and_later_fragment_has_not() {
        let l4 = udp_bytes(&[0; 8]);
        let mut h = ipv4_header(17, l4.len());
        h.more_fragments = true;
        let first = parse(&ipv4_frame(&h, &l4));
        assert_eq!(first.key.get(Field::NwFrag), u128::from(FRAG_ANY));
        assert_eq!((first.key.get(Field::TpSrc), first.l4_ofs), (5353, 34));

        h.more_fragments = false;
        h.fragment_offset = etherparse::IpFragOffset::try_new(185).unwrap();
        let later = parse(&ipv4_frame(&h, &l4));
        let want = key_of(&with(
            l2(0x0800),
            &[
                (Field::NwSrc, 0x0a00_0001),
                (Field::NwDst, 0x0a00_0002),
                (Field::NwProto, 17),
                (Field::NwTtl, 64),
                (Field::NwFrag, u128::from(FRAG_ANY | FRAG_LATER)),
            ],
        ));
        assert_eq!(later.key, want);
        assert_eq!((later.l4_ofs, later.anomaly), (0, None));
    }

    #[test]
    fn vlan_tags_fill_tci_fields_and_eth_type_is_inner() {
        let l4 = udp_bytes(&[]);
        let untagged = ipv4_frame(&ipv4_header(17, l4.len()), &l4);

        let one = parse(&tag(&untagged, 0x8100, 0xa00a));
        assert_eq!(
            one.key.get(Field::VlanTci),
            u128::from(0xa00a | VLAN_PRESENT)
        );
        assert_eq!(one.key.get(Field::Vlan2Tci), 0);
        assert_eq!(one.key.eth_type(), 0x0800);
        assert_eq!((one.l3_ofs, one.l4_ofs), (18, 38));

        let two = parse(&tag(&tag(&untagged, 0x8100, 20), 0x88a8, 0x2064));
        assert_eq!(
            two.key.get(Field::VlanTci),
            u128::from(0x2064 | VLAN_PRESENT)
        );
        assert_eq!(two.key.get(Field::Vlan2Tci), u128::from(20 | VLAN_PRESENT));
        assert_eq!(two.key.get(Field::TpDst), 53);
        assert_eq!((two.l3_ofs, two.anomaly), (22, None));

        let three = parse(&tag(&tag(&tag(&untagged, 0x8100, 3), 0x8100, 2), 0x88a8, 1));
        assert_eq!(three.key.get(Field::VlanTci), u128::from(1 | VLAN_PRESENT));
        assert_eq!(three.key.get(Field::Vlan2Tci), u128::from(2 | VLAN_PRESENT));
        assert_eq!(three.key.eth_type(), 0x0800);
        assert_eq!((three.l3_ofs, three.l4_ofs, three.anomaly), (26, 46, None));
    }

    #[test]
    fn tpid_9100_is_an_eth_type_not_a_tag() {
        let x = parse(&eth(0x9100, &hex("0064 0800")));
        assert_eq!((x.key.eth_type(), x.key.vlan_tci()), (0x9100, 0));
        assert_eq!(x.l3_ofs, 14);
    }

    #[test]
    fn more_than_max_vlan_tags_is_an_anomaly() {
        let mut frame = eth(0x0800, &[0; 40]);
        for i in 0..=MAX_VLAN_TAGS {
            frame = tag(&frame, 0x8100, i as u16);
        }
        let x = parse(&frame);
        assert_eq!(x.anomaly, Some(Anomaly::TooManyVlanTags));
        assert_eq!(x.key.eth_type(), 0x8100);
        assert_eq!(x.key.get(Field::VlanTci), u128::from(8 | VLAN_PRESENT));
        assert_eq!(x.key.get(Field::NwProto), 0);
    }

    #[test]
    fn runts_and_cut_vlan_tags_are_dropped() {
        let none = TunnelMeta::default();
        let frame = tag(&tag(&eth(0x0800, &[]), 0x8100, 5), 0x88a8, 6);
        for len in 0..14 {
            assert_eq!(extract(&frame[..len], 1, &none), Err(DropReason::Runt));
        }
        // Each tag needs its TCI and the following type field.
        for len in 14..22 {
            assert_eq!(
                extract(&frame[..len], 1, &none),
                Err(DropReason::Runt),
                "{len}"
            );
        }
        // Both tags complete, no payload: switched on L2.
        let x = extract(&frame, 1, &none).unwrap();
        assert_eq!((x.l3_ofs, x.anomaly), (22, Some(Anomaly::TruncatedL3)));
        let y = parse(&tag(&eth(0x88cc, &[]), 0x8100, 5));
        assert_eq!((y.l3_ofs, y.anomaly, y.key.eth_type()), (18, None, 0x88cc));
    }

    #[test]
    fn ieee_802_3_frames_get_eth_type_none_or_their_snap_type() {
        let llc = parse(&eth(0x0026, &hex("4242 03 0000 00")));
        assert_eq!((llc.key.eth_type(), llc.l3_ofs), (ETH_TYPE_NONE, 14));

        let l4 = udp_bytes(&[]);
        let ip = ipv4_header(17, l4.len());
        let mut snap = hex("aaaa03 000000 0800");
        snap.extend(ip.to_bytes());
        snap.extend(&l4);
        let x = parse(&eth(snap.len() as u16, &snap));
        assert_eq!(x.key.eth_type(), 0x0800);
        assert_eq!((x.l3_ofs, x.l4_ofs), (22, 42));
        assert_eq!(x.key.get(Field::TpSrc), 5353);

        // A SNAP header with a non-zero OUI is not RFC 1042.
        let other = parse(&eth(8, &hex("aaaa03 00000c 2000")));
        assert_eq!(other.key.eth_type(), ETH_TYPE_NONE);
    }

    #[test]
    fn tunnel_metadata_is_set_only_for_tunnelled_frames() {
        let frame = eth(0x88cc, &[]);
        let t = TunnelMeta {
            vni: 42,
            src: 0xc0a8_0001,
            dst: 0xc0a8_0002,
        };
        let x = extract(&frame, 3, &t).unwrap();
        assert_eq!(x.key.get(Field::TunId), 42);
        assert_eq!(x.key.get(Field::TunSrc), 0xc0a8_0001);
        assert_eq!(x.key.get(Field::TunDst), 0xc0a8_0002);
        assert_eq!(x.key.in_port(), 3);
        let no_tunnel = TunnelMeta {
            vni: 0,
            src: 0,
            dst: 9,
        };
        let y = extract(&frame, 3, &no_tunnel).unwrap();
        assert_eq!(y.key.get(Field::TunDst), 0);
    }

    #[test]
    fn ipv4_cut_inside_header_or_options_is_truncated_l3() {
        let l4 = tcp_bytes(&[]);
        let mut h = ipv4_header(6, l4.len());
        h.options = (&[1, 1, 1, 0][..]).try_into().unwrap();
        h.set_payload_len(l4.len()).unwrap();
        let frame = ipv4_frame(&h, &l4);
        for len in 14..14 + 24 {
            let x = parse(&frame[..len]);
            assert_eq!(x.anomaly, Some(Anomaly::TruncatedL3), "{len}");
            assert_eq!(x.key, key_of(&l2(0x0800)), "{len}");
            assert_eq!((x.l3_ofs, x.l4_ofs), (14, 0));
        }
        // Header complete but total length promises more than is there.
        for len in 14 + 24..frame.len() {
            let x = parse(&frame[..len]);
            assert_eq!(x.anomaly, Some(Anomaly::BadIpv4Header), "{len}");
            assert_eq!(x.key, key_of(&l2(0x0800)), "{len}");
        }
    }

    #[test]
    fn tcp_udp_icmp_cut_short_are_truncated_l4_with_l3_fields() {
        let tcp = tcp_bytes(&[2, 4, 5, 0xb4]);
        let udp = udp_bytes(&[]);
        let icmp = hex("0800 0000 0001 0001");
        for (proto, l4) in [(6u8, tcp), (17, udp), (1, icmp)] {
            let frame = ipv4_frame(&ipv4_header(proto, l4.len()), &l4);
            assert_eq!(parse(&frame).anomaly, None);
            for len in 34..frame.len() {
                let x = parse(&cut_ip(&frame, 14, len));
                assert_eq!(x.anomaly, Some(Anomaly::TruncatedL4), "{proto} {len}");
                assert_eq!(x.key.get(Field::NwProto), u128::from(proto));
                assert_eq!(x.key.get(Field::NwDst), 0x0a00_0002);
                assert_eq!((x.key.get(Field::TpSrc), x.key.get(Field::TpDst)), (0, 0));
                assert_eq!((x.key.get(Field::TcpFlags), x.l4_ofs), (0, 0));
            }
        }
    }

    #[test]
    fn tcp_data_offset_below_five_is_bad_tcp_header() {
        let mut l4 = tcp_bytes(&[]);
        l4[12] = 0x40 | (l4[12] & 0x0f);
        let x = parse(&ipv4_frame(&ipv4_header(6, l4.len()), &l4));
        assert_eq!((x.anomaly, x.l4_ofs), (Some(Anomaly::BadTcpHeader), 0));
        assert_eq!(x.key.get(Field::NwProto), 6);
    }

    #[test]
    fn bad_version_ihl_and_total_length_are_bad_ipv4_header() {
        let l4 = udp_bytes(&[]);
        let frame = ipv4_frame(&ipv4_header(17, l4.len()), &l4);
        let mut cases = Vec::new();
        for first in [0x44u8, 0x40, 0x65, 0x35] {
            let mut f = frame.clone();
            f[14] = first;
            cases.push(f);
        }
        for total in [0u16, 19, 29, 500] {
            let mut f = frame.clone();
            f[16..18].copy_from_slice(&total.to_be_bytes());
            cases.push(f);
        }
        for f in cases {
            let x = parse(&f);
            assert_eq!(
                x.anomaly,
                Some(Anomaly::BadIpv4Header),
                "{:02x?}",
                &f[14..18]
            );
            assert_eq!(x.key, key_of(&l2(0x0800)));
        }
        // IHL 15 on a frame that does not hold 60 header bytes.
        let mut f = frame.clone();
        f[14] = 0x4f;
        assert_eq!(parse(&f).anomaly, Some(Anomaly::TruncatedL3));
    }

    #[test]
    fn ipv6_cut_inside_fixed_header_is_truncated_l3() {
        let frame = ipv6_frame(17, &udp_bytes(&[]));
        for len in 14..54 {
            let x = parse(&frame[..len]);
            assert_eq!(x.anomaly, Some(Anomaly::TruncatedL3), "{len}");
            assert_eq!(x.key, key_of(&l2(0x86dd)));
        }
        for len in 54..frame.len() {
            let x = parse(&frame[..len]);
            assert_eq!(x.anomaly, Some(Anomaly::BadIpv6Header), "{len}");
            assert_eq!(x.key, key_of(&l2(0x86dd)));
        }
        let mut bad_version = frame.clone();
        bad_version[14] = 0x4b;
        let x = parse(&bad_version);
        assert_eq!(x.anomaly, Some(Anomaly::BadIpv6Header));
        assert_eq!(x.key, key_of(&l2(0x86dd)));
    }

    #[test]
    fn ipv6_cut_inside_each_extension_header_is_truncated_l3() {
        let mut chain = raw_ext(44, 14); // hop-by-hop, 16 bytes
        chain.extend(Ipv6FragmentHeader::new(IpNumber(51), Default::default(), true, 7).to_bytes());
        chain.extend(
            IpAuthHeader::new(IpNumber(60), 1, 2, &[0; 4])
                .unwrap()
                .to_bytes(),
        );
        chain.extend(raw_ext(58, 6)); // destination options, 8 bytes
        let ext_len = chain.len();
        chain.extend(hex("8000 0000 0001 0001"));
        let frame = ipv6_frame(0, &chain);
        let x = parse(&frame);
        assert_eq!(x.anomaly, None);
        assert_eq!(
            (x.key.get(Field::NwProto), x.key.get(Field::TpSrc)),
            (58, 128)
        );
        assert_eq!(x.key.get(Field::NwFrag), u128::from(FRAG_ANY));
        let l4 = 54 + ext_len;
        for len in 54..l4 {
            let x = parse(&cut_ip(&frame, 14, len));
            assert_eq!(x.anomaly, Some(Anomaly::TruncatedL3), "{len}");
            assert_eq!(x.key, key_of(&ipv6_l3_fields()), "{len}");
            assert_eq!(x.l4_ofs, 0);
        }
        for len in l4..frame.len() {
            let x = parse(&cut_ip(&frame, 14, len));
            assert_eq!(x.anomaly, Some(Anomaly::TruncatedL4), "{len}");
            assert_eq!(x.key.get(Field::NwProto), 58);
        }
    }

    #[test]
    fn ipv6_extension_chain_longer_than_the_limit_is_bad() {
        let build = |n: usize| {
            let mut chain = Vec::new();
            for i in 0..n {
                chain.extend(raw_ext(if i + 1 == n { 17 } else { 60 }, 6));
            }
            chain.extend(udp_bytes(&[]));
            ipv6_frame(60, &chain)
        };
        let ok = parse(&build(MAX_IPV6_EXT_HEADERS));
        assert_eq!((ok.anomaly, ok.key.get(Field::TpSrc)), (None, 5353));
        let bad = parse(&build(MAX_IPV6_EXT_HEADERS + 1));
        assert_eq!(bad.anomaly, Some(Anomaly::BadIpv6Header));
        assert_eq!(bad.key, key_of(&ipv6_l3_fields()));
    }

    #[test]
    fn ipv6_payload_length_zero_extends_to_frame_end() {
        let mut frame = ipv6_frame(17, &udp_bytes(&[]));
        frame[18..20].copy_from_slice(&[0, 0]);
        let x = parse(&frame);
        assert_eq!((x.anomaly, x.key.get(Field::TpSrc)), (None, 5353));
    }

    #[test]
    fn vlan_with_no_payload_keeps_l2_fields() {
        let frame = tag(&eth(0x86dd, &[]), 0x8100, 0x0fff);
        let x = parse(&frame);
        assert_eq!(x.anomaly, Some(Anomaly::TruncatedL3));
        let want = key_of(&with(
            l2(0x86dd),
            &[(Field::VlanTci, u128::from(0x0fff | VLAN_PRESENT))],
        ));
        assert_eq!(x.key, want);
    }

    #[test]
    fn anomaly_index_matches_position_in_all() {
        for (i, a) in Anomaly::ALL.iter().enumerate() {
            assert_eq!(a.index(), i);
            assert!(!a.name().is_empty());
        }
    }
}
