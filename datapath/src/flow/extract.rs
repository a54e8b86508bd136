//! Frame → [`FlowKey`] extraction (L2 only for now; L3/L4 to follow).

use super::key::{mac_to_u64, Field, FlowKey, PortNo, VLAN_PRESENT};
use crate::drop::DropReason;
use crate::packet::TunnelMeta;

/// A header the parser found inconsistent. The frame is still switched on
/// the fields parsed before the anomaly; the anomaly is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Anomaly {
    /// The L3 header is cut short.
    TruncatedL3,
    /// IPv4 IHL, version or total length inconsistent.
    BadIpv4Header,
    /// IPv6 payload length or extension header chain inconsistent.
    BadIpv6Header,
    /// ARP header cut short or not Ethernet/IPv4.
    BadArp,
    /// The L4 header is cut short.
    TruncatedL4,
}

impl Anomaly {
    /// Every anomaly, in counter order.
    pub const ALL: [Anomaly; 5] = [
        Anomaly::TruncatedL3,
        Anomaly::BadIpv4Header,
        Anomaly::BadIpv6Header,
        Anomaly::BadArp,
        Anomaly::TruncatedL4,
    ];

    /// Stable snake_case name for counters.
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::TruncatedL3 => "truncated_l3",
            Anomaly::BadIpv4Header => "bad_ipv4_header",
            Anomaly::BadIpv6Header => "bad_ipv6_header",
            Anomaly::BadArp => "bad_arp",
            Anomaly::TruncatedL4 => "truncated_l4",
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
    /// Offset of the L3 header (after Ethernet and VLAN tags).
    pub l3_ofs: u16,
    /// Offset of the L4 header, 0 when there is none.
    pub l4_ofs: u16,
    /// What was found wrong, if anything.
    pub anomaly: Option<Anomaly>,
}

/// Parses `frame` into a flow key. Errors only when not even the Ethernet
/// header (and its VLAN tags) is there; see [`Anomaly`] for the rest.
pub fn extract(
    frame: &[u8],
    in_port: PortNo,
    tunnel: &TunnelMeta,
) -> Result<Extracted, DropReason> {
    if frame.len() < 14 {
        return Err(DropReason::Runt);
    }
    let mut key = FlowKey::ZERO;
    key.set(Field::InPort, u128::from(in_port));
    if tunnel.vni != 0 || tunnel.src != 0 {
        key.set(Field::TunId, u128::from(tunnel.vni));
        key.set(Field::TunSrc, u128::from(tunnel.src));
        key.set(Field::TunDst, u128::from(tunnel.dst));
    }
    let mac = |o: usize| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&frame[o..o + 6]);
        mac_to_u64(m)
    };
    key.set(Field::EthDst, u128::from(mac(0)));
    key.set(Field::EthSrc, u128::from(mac(6)));
    let mut ofs = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let mut tags = 0;
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        if frame.len() < ofs + 6 {
            return Err(DropReason::Runt);
        }
        let tci = u16::from_be_bytes([frame[ofs + 2], frame[ofs + 3]]) | VLAN_PRESENT;
        match tags {
            0 => key.set(Field::VlanTci, u128::from(tci)),
            1 => key.set(Field::Vlan2Tci, u128::from(tci)),
            _ => {}
        }
        tags += 1;
        ofs += 4;
        ethertype = u16::from_be_bytes([frame[ofs], frame[ofs + 1]]);
    }
    key.set(Field::EthType, u128::from(ethertype));
    Ok(Extracted {
        key,
        l3_ofs: (ofs + 2) as u16,
        l4_ofs: 0,
        anomaly: None,
    })
}
