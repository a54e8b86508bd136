//! Port security: per-port anti-spoofing lists, a learned-MAC limit and
//! storm control.
//!
//! The policy ([`PortSecurity`]) is configured per port and evaluated in the
//! slow path (`pipeline::translate`), so its verdict is cached in the
//! megaflow together with exactly the key bits it consulted
//! ([`PortSecurity::check`] records them in the wildcard mask). Storm
//! control is the exception: a rate cannot be cached, so the slow path only
//! marks flooding flows with [`crate::pipeline::DpAction::StormCheck`] and
//! the fast path meters them with a per-PMD, per-port [`TokenBucket`].
//!
//! What counts as "owned" (the address rules, documented for operators):
//!
//! * `allowed-macs`: the Ethernet source must be one of them. ARP's sender
//!   hardware address (`arp_sha`) must be one of them too. Without
//!   `allowed-macs` but with `allowed-ips`, `arp_sha` must equal the frame's
//!   Ethernet source (an ARP packet may not speak for another station).
//! * `allowed-ips` (IPv4/IPv6 prefixes): IPv4 packets need a source inside
//!   a listed prefix; the one exception is DHCP (RFC 2131 §4.1: a client
//!   without an address sends from 0.0.0.0, UDP 68 → 67). ARP needs a sender
//!   protocol address (`arp_spa`) inside a listed prefix, or 0.0.0.0 (an ARP
//!   probe, RFC 5227 §2.1.1). IPv6 packets need a source inside a listed
//!   prefix, or the EUI-64 link-local address (RFC 4291 §2.5.6, appendix A)
//!   of one of the `allowed-macs` (without `allowed-macs`: of the frame's
//!   own source MAC), or `::` for the messages a booting host
//!   sends before it owns an address: Router Solicitation, Neighbor
//!   Solicitation (duplicate address detection, RFC 4862 §5.4.2) and MLD
//!   reports (RFC 3810 §5.2.13). Neighbor Solicitations/Advertisements are
//!   IPv6 packets, so one from a foreign source is dropped like any other.
//!   Frames of other EtherTypes carry no address and are not filtered by
//!   `allowed-ips`.
//! * `max-macs=N`: NORMAL learns at most N MACs (per VLAN entry) on the
//!   port; a frame from a further MAC is dropped (`port_mac_limit`), not
//!   flooded, so a port cannot use more stations than it was granted.
//!   The count falls when entries age out, are flushed or move away.
//! * `storm-pps=N`: frames the port's NORMAL (or FLOOD/ALL) floods —
//!   broadcast, multicast and unknown unicast — pass at most N per second
//!   per PMD (burst N), the rest are dropped as `storm`. Known unicast is
//!   never metered.

use crate::drop::DropReason;
use crate::flow::{mac_to_u64, Field, FlowKey, FlowMask};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 prefix of `allowed-ips`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpPrefix {
    /// IPv4 address (host order) and prefix length 0..=32.
    V4(u32, u8),
    /// IPv6 address and prefix length 0..=128.
    V6(u128, u8),
}

/// Why an `allowed-ips` entry could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityError {
    /// Not an address or address/prefix.
    #[error("\"{0}\" is not an IPv4/IPv6 address or prefix (like 10.0.0.2 or fd00::/64)")]
    BadPrefix(String),
}

impl IpPrefix {
    /// Parses `ADDR` (a host) or `ADDR/LEN`.
    pub fn parse(s: &str) -> Result<IpPrefix, SecurityError> {
        let bad = || SecurityError::BadPrefix(s.to_owned());
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        match addr.parse::<IpAddr>().map_err(|_| bad())? {
            IpAddr::V4(a) => {
                let len = len.unwrap_or(32);
                if len > 32 {
                    return Err(bad());
                }
                Ok(IpPrefix::V4(u32::from(a), len))
            }
            IpAddr::V6(a) => {
                let len = len.unwrap_or(128);
                if len > 128 {
                    return Err(bad());
                }
                Ok(IpPrefix::V6(u128::from(a), len))
            }
        }
    }

    /// True when `ip` lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (IpPrefix::V4(net, len), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                (u32::from(a) ^ net) & mask == 0
            }
            (IpPrefix::V6(net, len), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                (u128::from(a) ^ net) & mask == 0
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            IpPrefix::V4(a, l) => write!(f, "{}/{l}", Ipv4Addr::from(a)),
            IpPrefix::V6(a, l) => write!(f, "{}/{l}", Ipv6Addr::from(a)),
        }
    }
}

/// The EUI-64 link-local address of a MAC (RFC 4291 appendix A).
pub fn eui64_link_local(mac: [u8; 6]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8] = mac[0] ^ 0x02;
    a[9] = mac[1];
    a[10] = mac[2];
    a[11] = 0xff;
    a[12] = 0xfe;
    a[13] = mac[3];
    a[14] = mac[4];
    a[15] = mac[5];
    Ipv6Addr::from(a)
}

/// A port's security policy. The default allows everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSecurity {
    /// Source MACs the port may use (None: any).
    pub allowed_macs: Option<Vec<[u8; 6]>>,
    /// Source addresses the port may use (None: any).
    pub allowed_ips: Option<Vec<IpPrefix>>,
    /// Most MACs NORMAL learns on the port (None: no per-port limit).
    pub max_macs: Option<usize>,
    /// Flooded frames per second per PMD (None: not metered).
    pub storm_pps: Option<u32>,
}

/// ICMPv6 types a host without an address sends from `::`.
const ICMP6_FROM_UNSPECIFIED: [u8; 5] = [
    131, // MLDv1 report
    133, // Router Solicitation
    135, // Neighbor Solicitation (DAD)
    143, // MLDv2 report
    132, // MLDv1 done
];

impl PortSecurity {
    /// True when the policy restricts or meters anything.
    pub fn is_active(&self) -> bool {
        *self != PortSecurity::default()
    }

    fn mac_allowed(&self, mac: u64) -> bool {
        self.allowed_macs
            .as_ref()
            .is_none_or(|l| l.iter().any(|m| mac_to_u64(*m) == mac))
    }

    fn ip_allowed(list: &[IpPrefix], ip: IpAddr) -> bool {
        list.iter().any(|p| p.contains(ip))
    }

    /// The anti-spoofing verdict for a frame entering the port with `key`:
    /// None to let it through, or the drop reason. Every key field the
    /// verdict depends on is set exact in `mask`, so the verdict holds for
    /// every key the resulting megaflow matches.
    pub fn check(&self, key: &FlowKey, mask: &mut FlowMask) -> Option<DropReason> {
        let src = key.get(Field::EthSrc) as u64;
        if self.allowed_macs.is_some() {
            mask.set_exact(Field::EthSrc);
            if !self.mac_allowed(src) {
                return Some(DropReason::SpoofedMac);
            }
        }
        let ips = self.allowed_ips.as_deref()?;
        mask.set_exact(Field::EthType);
        match key.eth_type() {
            0x0800 => {
                mask.set_exact(Field::NwSrc);
                let ip = Ipv4Addr::from(key.get(Field::NwSrc) as u32);
                if Self::ip_allowed(ips, IpAddr::V4(ip)) {
                    return None;
                }
                if ip.is_unspecified() {
                    for f in [Field::NwProto, Field::TpSrc, Field::TpDst] {
                        mask.set_exact(f);
                    }
                    let dhcp = key.nw_proto() == 17
                        && key.get(Field::TpSrc) == 68
                        && key.get(Field::TpDst) == 67;
                    if dhcp {
                        return None;
                    }
                }
                Some(DropReason::SpoofedIp)
            }
            0x86dd => {
                mask.set_exact(Field::NwSrc);
                let ip = Ipv6Addr::from(key.get(Field::NwSrc));
                if Self::ip_allowed(ips, IpAddr::V6(ip)) {
                    return None;
                }
                let own_link_local = match &self.allowed_macs {
                    Some(macs) => macs.iter().any(|m| eui64_link_local(*m) == ip),
                    None => {
                        mask.set_exact(Field::EthSrc);
                        eui64_link_local(crate::flow::mac_from_u64(src)) == ip
                    }
                };
                if own_link_local {
                    return None;
                }
                if ip.is_unspecified() {
                    mask.set_exact(Field::NwProto);
                    mask.set_exact(Field::TpSrc);
                    let icmp6 = key.nw_proto() == 58;
                    let ty = key.get(Field::TpSrc) as u8;
                    if icmp6 && ICMP6_FROM_UNSPECIFIED.contains(&ty) {
                        return None;
                    }
                }
                Some(DropReason::SpoofedIp)
            }
            0x0806 => {
                mask.set_exact(Field::ArpSha);
                let sha = key.get(Field::ArpSha) as u64;
                let sha_ok = match &self.allowed_macs {
                    Some(_) => self.mac_allowed(sha),
                    None => {
                        mask.set_exact(Field::EthSrc);
                        sha == src
                    }
                };
                if !sha_ok {
                    return Some(DropReason::SpoofedMac);
                }
                mask.set_exact(Field::NwSrc);
                let spa = Ipv4Addr::from(key.get(Field::NwSrc) as u32);
                if spa.is_unspecified() || Self::ip_allowed(ips, IpAddr::V4(spa)) {
                    None
                } else {
                    Some(DropReason::SpoofedIp)
                }
            }
            _ => None,
        }
    }
}

/// A per-port token bucket for storm control, owned by one PMD (no atomics,
/// no locks). Tokens are kept in thousandths of a packet so that refilling
/// by whole milliseconds is exact at any rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenBucket {
    milli_tokens: u64,
    last_ms: u64,
    started: bool,
}

impl TokenBucket {
    /// Takes one packet's token at `now_ms` for a rate of `pps` (burst: one
    /// second's worth). False when the bucket is empty: drop the packet.
    #[inline]
    pub fn take(&mut self, pps: u32, now_ms: u64) -> bool {
        let cap = u64::from(pps) * 1000;
        if !self.started {
            self.started = true;
            self.milli_tokens = cap;
            self.last_ms = now_ms;
        } else if now_ms > self.last_ms {
            let refill = (now_ms - self.last_ms).saturating_mul(u64::from(pps));
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
            self.last_ms = now_ms;
        }
        // A lowered rate takes effect at once.
        self.milli_tokens = self.milli_tokens.min(cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// One PMD's storm-control state: a bucket per port number and the batch
/// timestamp the buckets refill by.
#[derive(Debug, Default)]
pub struct StormMeter {
    buckets: Vec<TokenBucket>,
    /// Clock of the batch being processed (ms).
    pub now_ms: u64,
}

impl StormMeter {
    /// Makes room for port numbers below `ports` (on configuration changes
    /// only: the packet path never grows it).
    pub fn reserve_ports(&mut self, ports: usize) {
        if self.buckets.len() < ports {
            self.buckets.resize(ports, TokenBucket::default());
        }
    }

    /// Meters one flooded packet entering `port` at `pps`. True: pass.
    #[inline]
    pub fn admit(&mut self, port: crate::flow::PortNo, pps: u32) -> bool {
        let now = self.now_ms;
        match self.buckets.get_mut(port as usize) {
            Some(b) => b.take(pps, now),
            // A port the meter was not sized for (cannot happen after
            // reserve_ports): metering it would need an allocation.
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::mac_from_u64;

    fn key(f: &[(Field, u128)]) -> FlowKey {
        let mut k = FlowKey::ZERO;
        for (field, v) in f {
            k.set(*field, *v);
        }
        k
    }

    const M1: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const M2: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn mac(m: [u8; 6]) -> u128 {
        u128::from(mac_to_u64(m))
    }

    fn sec(macs: Option<&[[u8; 6]]>, ips: Option<&[&str]>) -> PortSecurity {
        PortSecurity {
            allowed_macs: macs.map(|m| m.to_vec()),
            allowed_ips: ips.map(|l| l.iter().map(|s| IpPrefix::parse(s).unwrap()).collect()),
            ..PortSecurity::default()
        }
    }

    fn v4(src: [u8; 4]) -> FlowKey {
        key(&[
            (Field::EthSrc, mac(M1)),
            (Field::EthType, 0x0800),
            (Field::NwSrc, u128::from(u32::from_be_bytes(src))),
            (Field::NwProto, 6),
        ])
    }

    #[test]
    fn prefixes_parse_and_contain() {
        let p = IpPrefix::parse("10.1.0.0/16").unwrap();
        assert!(p.contains("10.1.200.3".parse().unwrap()));
        assert!(!p.contains("10.2.0.1".parse().unwrap()));
        assert!(!p.contains("::1".parse().unwrap()));
        assert_eq!(
            IpPrefix::parse("10.0.0.2").unwrap(),
            IpPrefix::V4(0x0a00_0002, 32)
        );
        let all = IpPrefix::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let p6 = IpPrefix::parse("fd00:1::/64").unwrap();
        assert!(p6.contains("fd00:1::99".parse().unwrap()));
        assert!(!p6.contains("fd00:2::99".parse().unwrap()));
        for bad in ["10.0.0.1/33", "fd00::/129", "x", "10.0.0.1/", "/8", ""] {
            assert!(IpPrefix::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(p6.to_string(), "fd00:1::/64");
    }

    #[test]
    fn foreign_source_mac_is_spoofed_and_only_eth_src_is_consulted() {
        let s = sec(Some(&[M1]), None);
        let mut m = FlowKey::ZERO;
        assert_eq!(s.check(&v4([1, 2, 3, 4]), &mut m), None);
        let mut want = FlowKey::ZERO;
        want.set_exact(Field::EthSrc);
        assert_eq!(m, want);
        let mut k = v4([1, 2, 3, 4]);
        k.set(Field::EthSrc, mac(M2));
        assert_eq!(s.check(&k, &mut m), Some(DropReason::SpoofedMac));
    }

    #[test]
    fn ipv4_source_must_be_inside_a_prefix_except_dhcp_discover() {
        let s = sec(None, Some(&["10.0.0.2", "192.168.5.0/24"]));
        let mut m = FlowKey::ZERO;
        assert_eq!(s.check(&v4([10, 0, 0, 2]), &mut m), None);
        assert_eq!(s.check(&v4([192, 168, 5, 77]), &mut m), None);
        assert_eq!(
            s.check(&v4([10, 0, 0, 3]), &mut m),
            Some(DropReason::SpoofedIp)
        );
        assert!(m.get(Field::NwSrc) == u128::MAX);
        // 0.0.0.0 only for DHCP client → server.
        let mut dhcp = v4([0, 0, 0, 0]);
        dhcp.set(Field::NwProto, 17);
        dhcp.set(Field::TpSrc, 68);
        dhcp.set(Field::TpDst, 67);
        assert_eq!(s.check(&dhcp, &mut m), None);
        dhcp.set(Field::TpDst, 53);
        assert_eq!(s.check(&dhcp, &mut m), Some(DropReason::SpoofedIp));
    }

    #[test]
    fn ipv6_needs_a_listed_source_eui64_link_local_or_unspecified_nd() {
        let s = sec(Some(&[M1]), Some(&["fd00::/64"]));
        let k6 = |src: &str, proto: u8, ty: u16| {
            key(&[
                (Field::EthSrc, mac(M1)),
                (Field::EthType, 0x86dd),
                (Field::NwSrc, u128::from(src.parse::<Ipv6Addr>().unwrap())),
                (Field::NwProto, u128::from(proto)),
                (Field::TpSrc, u128::from(ty)),
            ])
        };
        let mut m = FlowKey::ZERO;
        assert_eq!(s.check(&k6("fd00::5", 6, 0), &mut m), None);
        assert_eq!(
            s.check(&k6("fd01::5", 6, 0), &mut m),
            Some(DropReason::SpoofedIp)
        );
        // A Neighbor Advertisement from a foreign address.
        assert_eq!(
            s.check(&k6("fd01::5", 58, 136), &mut m),
            Some(DropReason::SpoofedIp)
        );
        let ll = eui64_link_local(M1).to_string();
        assert_eq!(ll, "fe80::ff:fe00:1");
        assert_eq!(s.check(&k6(&ll, 58, 135), &mut m), None);
        assert_eq!(
            s.check(&k6(&eui64_link_local(M2).to_string(), 58, 135), &mut m),
            Some(DropReason::SpoofedIp)
        );
        // DAD: NS from ::, but not a TCP segment from ::.
        assert_eq!(s.check(&k6("::", 58, 135), &mut m), None);
        assert_eq!(s.check(&k6("::", 58, 143), &mut m), None);
        assert_eq!(
            s.check(&k6("::", 58, 136), &mut m),
            Some(DropReason::SpoofedIp)
        );
        assert_eq!(
            s.check(&k6("::", 6, 135), &mut m),
            Some(DropReason::SpoofedIp)
        );
    }

    #[test]
    fn arp_sender_addresses_must_be_owned() {
        let arp = |sha: [u8; 6], spa: [u8; 4]| {
            key(&[
                (Field::EthSrc, mac(M1)),
                (Field::EthType, 0x0806),
                (Field::NwProto, 2),
                (Field::ArpSha, mac(sha)),
                (Field::NwSrc, u128::from(u32::from_be_bytes(spa))),
            ])
        };
        let s = sec(None, Some(&["10.0.0.2"]));
        let mut m = FlowKey::ZERO;
        assert_eq!(s.check(&arp(M1, [10, 0, 0, 2]), &mut m), None);
        assert_eq!(s.check(&arp(M1, [0, 0, 0, 0]), &mut m), None);
        assert_eq!(
            s.check(&arp(M1, [10, 0, 0, 1]), &mut m),
            Some(DropReason::SpoofedIp)
        );
        // Without allowed-macs, arp_sha must be the frame's own source.
        assert_eq!(
            s.check(&arp(M2, [10, 0, 0, 2]), &mut m),
            Some(DropReason::SpoofedMac)
        );
        let s = sec(Some(&[M1, M2]), Some(&["10.0.0.2"]));
        let mut k = arp(M2, [10, 0, 0, 2]);
        assert_eq!(s.check(&k, &mut m), None);
        k.set(Field::ArpSha, mac([2, 9, 9, 9, 9, 9]));
        assert_eq!(s.check(&k, &mut m), Some(DropReason::SpoofedMac));
        assert_eq!(mac_from_u64(k.get(Field::EthSrc) as u64), M1);
    }

    #[test]
    fn own_link_local_without_allowed_macs_and_other_ethertypes_pass() {
        // Without allowed-macs, the link-local of the frame's own source.
        let s = sec(None, Some(&["fd00::/64"]));
        let mut k = key(&[
            (Field::EthSrc, mac(M2)),
            (Field::EthType, 0x86dd),
            (Field::NwSrc, u128::from(eui64_link_local(M2))),
        ]);
        let mut m = FlowKey::ZERO;
        assert_eq!(s.check(&k, &mut m), None);
        assert_eq!(m.get(Field::EthSrc), u128::from(u64::MAX >> 16));
        k.set(Field::NwSrc, u128::from(eui64_link_local(M1)));
        assert_eq!(s.check(&k, &mut m), Some(DropReason::SpoofedIp));
        let s = sec(None, Some(&["10.0.0.2"]));
        let k = key(&[(Field::EthSrc, mac(M1)), (Field::EthType, 0x88cc)]);
        let mut m = FlowKey::ZERO;
        assert_eq!(s.check(&k, &mut m), None);
        assert_eq!(m.get(Field::NwSrc), 0);
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::default();
        let passed = (0..150).filter(|_| b.take(100, 1_000)).count();
        assert_eq!(passed, 100);
        // 10 ms at 100 pps refill exactly one packet.
        assert!(b.take(100, 1_010));
        assert!(!b.take(100, 1_010));
        // A long pause refills only up to one second's worth.
        let passed = (0..500).filter(|_| b.take(100, 60_000)).count();
        assert_eq!(passed, 100);
    }

    #[test]
    fn storm_meter_keeps_ports_apart() {
        let mut s = StormMeter::default();
        s.reserve_ports(4);
        s.now_ms = 5;
        assert!(s.admit(1, 1));
        assert!(!s.admit(1, 1));
        assert!(s.admit(2, 1));
    }
}
