//! The canonical printer: one spelling per match, so that printing,
//! parsing and printing again gives the same text.
//!
//! Order: protocol (a shorthand such as `tcp` where one applies, else
//! `dl_type=`), then ingress and tunnel fields, VLAN, Ethernet, network,
//! transport, ARP. Masks are printed only when partial; a field whose bits
//! no syntax can express (only possible for a [`Match`] built by hand) is
//! printed raw as `name=0xVALUE/0xMASK` so nothing is silently hidden.

use super::fields::{
    ETH_ARP, ETH_IPV4, ETH_IPV6, PROTO_ICMP, PROTO_ICMPV6, SHORTHANDS, TCP_FLAGS_ALL,
    TCP_FLAG_NAMES,
};
use super::values::{format_ipv4_masked, format_ipv6_masked, format_mac, format_port};
use super::PortNames;
use datapath::flow::{Field, FRAG_ANY, FRAG_LATER, VLAN_PRESENT};
use datapath::pipeline::Match;

/// `name=0xV` when the mask is full, `name=0xV/0xM` otherwise.
fn raw(name: &str, f: Field, v: u128, m: u128) -> String {
    if m == f.full() {
        format!("{name}=0x{v:x}")
    } else {
        format!("{name}=0x{v:x}/0x{m:x}")
    }
}

/// The match's fields in canonical order, one `name=value` each.
pub(crate) fn match_parts(m: &Match, ports: &dyn PortNames) -> Vec<String> {
    let mut out = Vec::new();
    let get = |f: Field| m.get(f);
    let exact = |f: Field| {
        let (v, mask) = m.get(f);
        (mask == f.full()).then_some(v)
    };
    let eth = exact(Field::EthType);
    let proto = exact(Field::NwProto);

    // Protocol.
    let mut proto_printed = false;
    match eth {
        Some(e) => {
            let short = SHORTHANDS
                .iter()
                .find(|s| s.1 == e && proto.is_some() && s.2 == proto)
                .or_else(|| SHORTHANDS.iter().find(|s| s.1 == e && s.2.is_none()));
            match short {
                Some(s) => {
                    proto_printed = s.2.is_some();
                    out.push(s.0.to_string());
                }
                None => out.push(format!("dl_type=0x{e:04x}")),
            }
        }
        None => {
            let (v, mask) = get(Field::EthType);
            if mask != 0 {
                out.push(raw("dl_type", Field::EthType, v, mask));
            }
        }
    }

    if let Some(p) = exact(Field::InPort) {
        out.push(format!("in_port={}", format_port(p as u32, ports)));
    } else {
        let (v, mask) = get(Field::InPort);
        if mask != 0 {
            out.push(raw("in_port", Field::InPort, v, mask));
        }
    }
    let (v, mask) = get(Field::TunId);
    if mask != 0 {
        out.push(raw("tun_id", Field::TunId, v, mask));
    }
    for (name, f) in [("tun_src", Field::TunSrc), ("tun_dst", Field::TunDst)] {
        let (v, mask) = get(f);
        if mask != 0 {
            out.push(format!("{name}={}", format_ipv4_masked(v, mask)));
        }
    }
    vlan(&mut out, get(Field::VlanTci));
    let (v, mask) = get(Field::Vlan2Tci);
    if mask != 0 {
        out.push(raw("vlan2_tci", Field::Vlan2Tci, v, mask));
    }
    for (name, f) in [("dl_src", Field::EthSrc), ("dl_dst", Field::EthDst)] {
        let (v, mask) = get(f);
        if mask != 0 {
            out.push(mac_field(name, f, v, mask));
        }
    }

    // Network layer: the same key bits are IPv4, IPv6 or ARP addresses.
    let (src_name, dst_name, v6) = match eth {
        Some(ETH_IPV6) => ("ipv6_src", "ipv6_dst", true),
        Some(ETH_ARP) => ("arp_spa", "arp_tpa", false),
        Some(ETH_IPV4) => ("nw_src", "nw_dst", false),
        _ => {
            let wide = (get(Field::NwSrc).1 | get(Field::NwDst).1) >> 32 != 0;
            if wide {
                ("ipv6_src", "ipv6_dst", true)
            } else {
                ("nw_src", "nw_dst", false)
            }
        }
    };
    for (name, f) in [(src_name, Field::NwSrc), (dst_name, Field::NwDst)] {
        let (v, mask) = get(f);
        if mask == 0 {
            continue;
        }
        if v6 {
            out.push(format!("{name}={}", format_ipv6_masked(v, mask)));
        } else if mask >> 32 == 0 {
            out.push(format!("{name}={}", format_ipv4_masked(v, mask)));
        } else {
            out.push(raw(name, f, v, mask));
        }
    }
    let (v, mask) = get(Field::Ipv6Label);
    if mask != 0 {
        out.push(raw("ipv6_label", Field::Ipv6Label, v, mask));
    }
    if !proto_printed {
        let name = if eth == Some(ETH_ARP) {
            "arp_op"
        } else {
            "nw_proto"
        };
        match proto {
            Some(p) => out.push(format!("{name}={p}")),
            None => {
                let (v, mask) = get(Field::NwProto);
                if mask != 0 {
                    out.push(raw(name, Field::NwProto, v, mask));
                }
            }
        }
    }
    tos(&mut out, get(Field::NwTos));
    match exact(Field::NwTtl) {
        Some(t) => out.push(format!("nw_ttl={t}")),
        None => {
            let (v, mask) = get(Field::NwTtl);
            if mask != 0 {
                out.push(raw("nw_ttl", Field::NwTtl, v, mask));
            }
        }
    }
    frag(&mut out, get(Field::NwFrag));

    // Transport layer: ICMP keeps type and code in the port fields.
    let icmp = match (eth, proto) {
        (Some(ETH_IPV4), Some(PROTO_ICMP)) => Some(("icmp_type", "icmp_code")),
        (Some(ETH_IPV6), Some(PROTO_ICMPV6)) => Some(("icmpv6_type", "icmpv6_code")),
        _ => None,
    };
    for (i, f) in [Field::TpSrc, Field::TpDst].into_iter().enumerate() {
        let (v, mask) = get(f);
        if mask == 0 {
            continue;
        }
        let tp = if i == 0 { "tp_src" } else { "tp_dst" };
        match icmp {
            Some(names) if mask == f.full() && v <= 0xff => {
                let name = if i == 0 { names.0 } else { names.1 };
                out.push(format!("{name}={v}"));
            }
            _ if mask == f.full() => out.push(format!("{tp}={v}")),
            _ => out.push(raw(tp, f, v, mask)),
        }
    }
    let (v, mask) = get(Field::TcpFlags);
    if mask != 0 {
        out.push(tcp_flags(v, mask));
    }
    for (name, f) in [("arp_sha", Field::ArpSha), ("arp_tha", Field::ArpTha)] {
        let (v, mask) = get(f);
        if mask != 0 {
            out.push(mac_field(name, f, v, mask));
        }
    }
    out
}

fn mac_field(name: &str, f: Field, v: u128, mask: u128) -> String {
    if mask == f.full() {
        format!("{name}={}", format_mac(v))
    } else {
        format!("{name}={}/{}", format_mac(v), format_mac(mask))
    }
}

/// `dl_vlan`/`dl_vlan_pcp` where the TCI bits are exactly what they set,
/// `vlan_tci=V/M` otherwise.
fn vlan(out: &mut Vec<String>, (v, mask): (u128, u128)) {
    let present = u128::from(VLAN_PRESENT);
    let tagged = v & present != 0;
    match mask {
        0 => {}
        0xffff if v == 0 => out.push("dl_vlan=0xffff".to_string()),
        0x1fff if tagged => out.push(format!("dl_vlan={}", v & 0x0fff)),
        0xf000 if tagged => out.push(format!("dl_vlan_pcp={}", v >> 13)),
        0xffff if tagged => {
            out.push(format!("dl_vlan={}", v & 0x0fff));
            out.push(format!("dl_vlan_pcp={}", v >> 13));
        }
        0xffff => out.push(format!("vlan_tci=0x{v:04x}")),
        _ => out.push(format!("vlan_tci=0x{v:04x}/0x{mask:04x}")),
    }
}

/// `nw_tos` covers the DSCP bits, `ip_ecn` the low two.
fn tos(out: &mut Vec<String>, (v, mask): (u128, u128)) {
    if mask & !0xfc & !0x03 != 0 || !matches!(mask & 0xfc, 0 | 0xfc) || !matches!(mask & 3, 0 | 3) {
        out.push(raw("nw_tos", Field::NwTos, v, mask));
        return;
    }
    if mask & 0xfc != 0 {
        out.push(format!("nw_tos={}", v & 0xfc));
    }
    if mask & 0x03 != 0 {
        out.push(format!("ip_ecn={}", v & 3));
    }
}

fn frag(out: &mut Vec<String>, (v, mask): (u128, u128)) {
    let any = u128::from(FRAG_ANY);
    let later = u128::from(FRAG_LATER);
    let name = match (v, mask) {
        (_, 0) => return,
        (0, m) if m == any => "no",
        (x, m) if x == any && m == any => "yes",
        (x, m) if x == any && m == any | later => "first",
        (x, m) if x == any | later && m == any | later => "later",
        (0, m) if m == later => "not_later",
        _ => {
            out.push(raw("ip_frag", Field::NwFrag, v, mask));
            return;
        }
    };
    out.push(format!("ip_frag={name}"));
}

/// `+syn-ack` when only named flags are matched, hex otherwise.
fn tcp_flags(v: u128, mask: u128) -> String {
    if mask == TCP_FLAGS_ALL {
        return format!("tcp_flags=0x{v:03x}");
    }
    if mask & !0x1ff != 0 {
        return format!("tcp_flags=0x{v:03x}/0x{mask:03x}");
    }
    let mut s = String::from("tcp_flags=");
    for (bit, name) in TCP_FLAG_NAMES.iter().enumerate() {
        let b = 1u128 << bit;
        if mask & b != 0 {
            s.push(if v & b != 0 { '+' } else { '-' });
            s.push_str(name);
        }
    }
    s
}
