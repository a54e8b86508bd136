//! A linear reference classifier: the obviously-correct definition of
//! "which rule matches", used by tests as the oracle for the tuple-space
//! tables and the caches in front of them, and of the port-security
//! verdict for the wildcarded check the slow path caches.

use super::rule::{Rule, TableId};
use crate::flow::FlowKey;

/// The index of the rule of `table` that `key` hits: highest priority,
/// then the earliest in `rules` (installation order).
pub fn lookup(rules: &[Rule], table: TableId, key: &FlowKey) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in rules.iter().enumerate() {
        if r.table != table || !r.r#match.matches(key) {
            continue;
        }
        if best.is_none_or(|b| r.priority > rules[b].priority) {
            best = Some(i);
        }
    }
    best
}

/// The port-security verdict for a frame entering a port with `key`,
/// written as the rules read (see [`crate::security`]) with no regard for
/// wildcards: the oracle for [`crate::security::PortSecurity::check`].
pub fn port_security(
    sec: &crate::security::PortSecurity,
    key: &FlowKey,
) -> Option<crate::drop::DropReason> {
    use crate::drop::DropReason::{SpoofedIp, SpoofedMac};
    use crate::flow::{mac_from_u64, Field};
    use crate::security::eui64_link_local;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    let owns_mac = |m: [u8; 6]| sec.allowed_macs.as_ref().is_none_or(|l| l.contains(&m));
    let src_mac = mac_from_u64(key.get(Field::EthSrc) as u64);
    if !owns_mac(src_mac) {
        return Some(SpoofedMac);
    }
    let ips = sec.allowed_ips.as_ref()?;
    let owns_ip = |ip: IpAddr| ips.iter().any(|p| p.contains(ip));
    let proto = key.get(Field::NwProto);
    let (tp_src, tp_dst) = (key.get(Field::TpSrc), key.get(Field::TpDst));
    match key.eth_type() {
        0x0800 => {
            let ip = Ipv4Addr::from(key.get(Field::NwSrc) as u32);
            let dhcp_client =
                ip == Ipv4Addr::UNSPECIFIED && proto == 17 && tp_src == 68 && tp_dst == 67;
            (!owns_ip(IpAddr::V4(ip)) && !dhcp_client).then_some(SpoofedIp)
        }
        0x86dd => {
            let ip = Ipv6Addr::from(key.get(Field::NwSrc));
            let link_local_of_owned_mac = match &sec.allowed_macs {
                Some(l) => l.iter().any(|m| eui64_link_local(*m) == ip),
                None => eui64_link_local(src_mac) == ip,
            };
            let boot_icmp6 = ip == Ipv6Addr::UNSPECIFIED
                && proto == 58
                && [131, 132, 133, 135, 143].contains(&tp_src);
            (!owns_ip(IpAddr::V6(ip)) && !link_local_of_owned_mac && !boot_icmp6)
                .then_some(SpoofedIp)
        }
        0x0806 => {
            let sha = mac_from_u64(key.get(Field::ArpSha) as u64);
            let sha_owned = match sec.allowed_macs {
                Some(_) => owns_mac(sha),
                None => sha == src_mac,
            };
            if !sha_owned {
                return Some(SpoofedMac);
            }
            let spa = Ipv4Addr::from(key.get(Field::NwSrc) as u32);
            (spa != Ipv4Addr::UNSPECIFIED && !owns_ip(IpAddr::V4(spa))).then_some(SpoofedIp)
        }
        _ => None,
    }
}
