//! The match fields of the flow language, after ovs-fields(7): their
//! names and aliases, value forms, which take masks, and the protocol
//! prerequisites Open vSwitch enforces (a field is only meaningful when
//! the match pins the protocol that carries it, e.g. `tp_dst` needs
//! `tcp`, `udp` or `sctp`).
//!
//! [`MatchBuilder`] applies `name=value` tokens to a [`Match`], refusing
//! repeats and contradictions, and checks prerequisites once every token
//! is in (so their order does not matter, as in `ovs-ofctl`).

use super::error::FlowSyntaxError;
use super::lex::{suggestion, Source, Token};
use super::values::{parse_ipv4_masked, parse_ipv6_masked, parse_mac, parse_port};
use super::PortNames;
use datapath::flow::{Field, FRAG_ANY, FRAG_LATER, VLAN_PRESENT, VLAN_VID_MASK};
use datapath::pipeline::Match;

/// EtherType of IPv4 (RFC 894).
pub(crate) const ETH_IPV4: u128 = 0x0800;
/// EtherType of ARP (RFC 826).
pub(crate) const ETH_ARP: u128 = 0x0806;
/// EtherType of IPv6 (RFC 2464).
pub(crate) const ETH_IPV6: u128 = 0x86dd;
/// IP protocol numbers (IANA).
pub(crate) const PROTO_ICMP: u128 = 1;
pub(crate) const PROTO_TCP: u128 = 6;
pub(crate) const PROTO_UDP: u128 = 17;
pub(crate) const PROTO_ICMPV6: u128 = 58;
pub(crate) const PROTO_SCTP: u128 = 132;

/// Protocol shorthands: name, EtherType, IP protocol.
pub(crate) const SHORTHANDS: [(&str, u128, Option<u128>); 11] = [
    ("ip", ETH_IPV4, None),
    ("ipv6", ETH_IPV6, None),
    ("arp", ETH_ARP, None),
    ("icmp", ETH_IPV4, Some(PROTO_ICMP)),
    ("tcp", ETH_IPV4, Some(PROTO_TCP)),
    ("udp", ETH_IPV4, Some(PROTO_UDP)),
    ("sctp", ETH_IPV4, Some(PROTO_SCTP)),
    ("icmp6", ETH_IPV6, Some(PROTO_ICMPV6)),
    ("tcp6", ETH_IPV6, Some(PROTO_TCP)),
    ("udp6", ETH_IPV6, Some(PROTO_UDP)),
    ("sctp6", ETH_IPV6, Some(PROTO_SCTP)),
];

/// The 12 flag bits of the TCP header (RFC 9293 §3.1 with reserved bits).
pub(crate) const TCP_FLAGS_ALL: u128 = 0xfff;

/// TCP flag names in bit order (RFC 9293 §3.1, plus RFC 3168 ECE/CWR and
/// RFC 3540 NS), as `tcp_flags=+syn-ack` takes them.
pub(crate) const TCP_FLAG_NAMES: [&str; 9] =
    ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns"];

/// What a field needs the rest of the match to pin down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prereq {
    None,
    /// IPv4 or IPv6.
    Ip,
    Ipv6,
    /// IPv4 or ARP (`nw_src` doubles as ARP's SPA).
    IpOrArp,
    Arp,
    /// IPv4, IPv6 or ARP (`nw_proto` doubles as ARP's opcode).
    Network,
    /// TCP, UDP or SCTP over IPv4 or IPv6.
    Transport,
    Tcp,
    Icmp,
    Icmpv6,
}

impl Prereq {
    fn describe(self) -> &'static str {
        match self {
            Prereq::None => "nothing",
            Prereq::Ip => "ip or ipv6 (dl_type=0x0800 or dl_type=0x86dd)",
            Prereq::Ipv6 => "ipv6 (dl_type=0x86dd)",
            Prereq::IpOrArp => "ip or arp (dl_type=0x0800 or dl_type=0x0806)",
            Prereq::Arp => "arp (dl_type=0x0806)",
            Prereq::Network => "ip, ipv6 or arp (dl_type=0x0800, 0x86dd or 0x0806)",
            Prereq::Transport => "tcp, udp or sctp (ip or ipv6 with nw_proto=6, 17 or 132)",
            Prereq::Tcp => "tcp or tcp6 (ip or ipv6 with nw_proto=6)",
            Prereq::Icmp => "icmp (dl_type=0x0800,nw_proto=1)",
            Prereq::Icmpv6 => "icmp6 (dl_type=0x86dd,nw_proto=58)",
        }
    }

    fn holds(self, m: &Match) -> bool {
        let exact = |f: Field| {
            let (v, mask) = m.get(f);
            (mask == f.full()).then_some(v)
        };
        let eth = exact(Field::EthType);
        let proto = exact(Field::NwProto);
        let ip = matches!(eth, Some(ETH_IPV4 | ETH_IPV6));
        match self {
            Prereq::None => true,
            Prereq::Ip => ip,
            Prereq::Ipv6 => eth == Some(ETH_IPV6),
            Prereq::IpOrArp => matches!(eth, Some(ETH_IPV4 | ETH_ARP)),
            Prereq::Arp => eth == Some(ETH_ARP),
            Prereq::Network => ip || eth == Some(ETH_ARP),
            Prereq::Transport => ip && matches!(proto, Some(PROTO_TCP | PROTO_UDP | PROTO_SCTP)),
            Prereq::Tcp => ip && proto == Some(PROTO_TCP),
            Prereq::Icmp => eth == Some(ETH_IPV4) && proto == Some(PROTO_ICMP),
            Prereq::Icmpv6 => eth == Some(ETH_IPV6) && proto == Some(PROTO_ICMPV6),
        }
    }
}

/// How a field's value is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Port name or number.
    Port,
    /// Unsigned number up to `max`.
    Num(u128),
    Mac,
    Ipv4,
    Ipv6,
    /// `dl_vlan`: VID 0..=4095, or 0xffff for "no tag".
    VlanVid,
    /// `dl_vlan_pcp`: 0..=7.
    VlanPcp,
    /// `nw_tos`: the DSCP bits of the TOS byte (low two bits zero).
    Tos,
    /// `ip_dscp`: 0..=63.
    Dscp,
    /// `ip_ecn`: 0..=3.
    Ecn,
    /// `ip_frag`: no, yes, first, later, not_later (or numeric value/mask).
    Frag,
    /// `tcp_flags`: numeric value/mask or `+flag-flag`.
    TcpFlags,
}

/// One named match field.
#[derive(Clone, Copy, Debug)]
struct Spec {
    name: &'static str,
    aliases: &'static [&'static str],
    field: Field,
    kind: Kind,
    maskable: bool,
    prereq: Prereq,
}

const fn spec(
    name: &'static str,
    aliases: &'static [&'static str],
    field: Field,
    kind: Kind,
    maskable: bool,
    prereq: Prereq,
) -> Spec {
    Spec {
        name,
        aliases,
        field,
        kind,
        maskable,
        prereq,
    }
}

const U8: Kind = Kind::Num(0xff);
const U16: Kind = Kind::Num(0xffff);
const U32: Kind = Kind::Num(0xffff_ffff);

/// Every field the parser knows. `vlan2_tci` (the inner tag of an 802.1ad
/// frame) is a vswitch extension; the rest follow ovs-fields(7).
const SPECS: &[Spec] = &[
    spec(
        "in_port",
        &[],
        Field::InPort,
        Kind::Port,
        false,
        Prereq::None,
    ),
    spec(
        "tun_id",
        &["tunnel_id"],
        Field::TunId,
        U32,
        true,
        Prereq::None,
    ),
    spec(
        "tun_src",
        &[],
        Field::TunSrc,
        Kind::Ipv4,
        true,
        Prereq::None,
    ),
    spec(
        "tun_dst",
        &[],
        Field::TunDst,
        Kind::Ipv4,
        true,
        Prereq::None,
    ),
    spec(
        "dl_src",
        &["eth_src"],
        Field::EthSrc,
        Kind::Mac,
        true,
        Prereq::None,
    ),
    spec(
        "dl_dst",
        &["eth_dst"],
        Field::EthDst,
        Kind::Mac,
        true,
        Prereq::None,
    ),
    spec(
        "dl_type",
        &["eth_type"],
        Field::EthType,
        U16,
        false,
        Prereq::None,
    ),
    spec(
        "dl_vlan",
        &[],
        Field::VlanTci,
        Kind::VlanVid,
        false,
        Prereq::None,
    ),
    spec(
        "dl_vlan_pcp",
        &[],
        Field::VlanTci,
        Kind::VlanPcp,
        false,
        Prereq::None,
    ),
    spec("vlan_tci", &[], Field::VlanTci, U16, true, Prereq::None),
    spec("vlan2_tci", &[], Field::Vlan2Tci, U16, true, Prereq::None),
    spec(
        "nw_src",
        &["ip_src"],
        Field::NwSrc,
        Kind::Ipv4,
        true,
        Prereq::IpOrArp,
    ),
    spec(
        "nw_dst",
        &["ip_dst"],
        Field::NwDst,
        Kind::Ipv4,
        true,
        Prereq::IpOrArp,
    ),
    spec(
        "ipv6_src",
        &[],
        Field::NwSrc,
        Kind::Ipv6,
        true,
        Prereq::Ipv6,
    ),
    spec(
        "ipv6_dst",
        &[],
        Field::NwDst,
        Kind::Ipv6,
        true,
        Prereq::Ipv6,
    ),
    spec(
        "ipv6_label",
        &[],
        Field::Ipv6Label,
        Kind::Num(0xf_ffff),
        true,
        Prereq::Ipv6,
    ),
    spec(
        "nw_proto",
        &["ip_proto"],
        Field::NwProto,
        U8,
        false,
        Prereq::Network,
    ),
    spec("nw_tos", &[], Field::NwTos, Kind::Tos, false, Prereq::Ip),
    spec("ip_dscp", &[], Field::NwTos, Kind::Dscp, false, Prereq::Ip),
    spec(
        "ip_ecn",
        &["nw_ecn"],
        Field::NwTos,
        Kind::Ecn,
        false,
        Prereq::Ip,
    ),
    spec("nw_ttl", &[], Field::NwTtl, U8, false, Prereq::Ip),
    spec(
        "ip_frag",
        &["nw_frag"],
        Field::NwFrag,
        Kind::Frag,
        true,
        Prereq::Ip,
    ),
    spec(
        "tp_src",
        &["tcp_src", "udp_src", "sctp_src"],
        Field::TpSrc,
        U16,
        true,
        Prereq::Transport,
    ),
    spec(
        "tp_dst",
        &["tcp_dst", "udp_dst", "sctp_dst"],
        Field::TpDst,
        U16,
        true,
        Prereq::Transport,
    ),
    spec(
        "tcp_flags",
        &[],
        Field::TcpFlags,
        Kind::TcpFlags,
        true,
        Prereq::Tcp,
    ),
    spec("icmp_type", &[], Field::TpSrc, U8, false, Prereq::Icmp),
    spec("icmp_code", &[], Field::TpDst, U8, false, Prereq::Icmp),
    spec("icmpv6_type", &[], Field::TpSrc, U8, false, Prereq::Icmpv6),
    spec("icmpv6_code", &[], Field::TpDst, U8, false, Prereq::Icmpv6),
    spec("arp_op", &[], Field::NwProto, U8, false, Prereq::Arp),
    spec("arp_spa", &[], Field::NwSrc, Kind::Ipv4, true, Prereq::Arp),
    spec("arp_tpa", &[], Field::NwDst, Kind::Ipv4, true, Prereq::Arp),
    spec("arp_sha", &[], Field::ArpSha, Kind::Mac, true, Prereq::Arp),
    spec("arp_tha", &[], Field::ArpTha, Kind::Mac, true, Prereq::Arp),
];

fn find_spec(name: &str) -> Option<&'static Spec> {
    SPECS
        .iter()
        .find(|s| s.name == name || s.aliases.contains(&name))
}

/// Every name a match may contain, for suggestions.
pub(crate) fn known_names() -> impl Iterator<Item = &'static str> {
    SPECS
        .iter()
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()))
        .chain(SHORTHANDS.iter().map(|s| s.0))
}

/// Words of a rule that are not match fields, offered as suggestions too.
const RULE_WORDS: [&str; 6] = [
    "table",
    "priority",
    "cookie",
    "idle_timeout",
    "hard_timeout",
    "actions",
];

/// True when `name` is a match field or shorthand.
pub(crate) fn is_field_name(name: &str) -> bool {
    find_spec(name).is_some() || SHORTHANDS.iter().any(|s| s.0 == name)
}

/// Who set which bits of a field first, for contradiction messages.
#[derive(Clone, Debug)]
struct Owner {
    field: Field,
    name: String,
    column: usize,
}

/// Builds a [`Match`] from field tokens.
pub(crate) struct MatchBuilder<'s> {
    src: Source<'s>,
    m: Match,
    /// Canonical names already given, with their columns.
    seen: Vec<(&'static str, usize)>,
    owners: Vec<Owner>,
    checks: Vec<(&'static str, usize, Prereq)>,
}

impl<'s> MatchBuilder<'s> {
    pub fn new(src: Source<'s>) -> Self {
        MatchBuilder {
            src,
            m: Match::ANY,
            seen: Vec::new(),
            owners: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Applies one token: a shorthand (`tcp`) or `name=value`.
    pub fn apply(&mut self, tok: Token<'_>, ports: &dyn PortNames) -> Result<(), FlowSyntaxError> {
        let column = self.src.column(tok.start);
        let (name, value) = match tok.split('=') {
            Some((n, v)) => (n, Some(v)),
            None => (tok.text, None),
        };
        if let Some(&(short, eth, proto)) = SHORTHANDS.iter().find(|s| s.0 == name) {
            if let Some(v) = value {
                return Err(self
                    .src
                    .invalid(v, short, "a protocol shorthand takes no value"));
            }
            self.note_seen(short, column)?;
            self.set(short, column, Field::EthType, eth, 0xffff)?;
            if let Some(p) = proto {
                self.set(short, column, Field::NwProto, p, 0xff)?;
            }
            return Ok(());
        }
        let Some(spec) = find_spec(name) else {
            return Err(FlowSyntaxError::UnknownField {
                name: name.to_string(),
                column,
                suggestion: suggestion(name, known_names().chain(RULE_WORDS)),
            });
        };
        let Some(value) = value else {
            return Err(FlowSyntaxError::Syntax {
                column,
                reason: format!("field {} needs a value ({}=VALUE)", spec.name, spec.name),
            });
        };
        self.note_seen(spec.name, column)?;
        let (v, mask) = self.value(spec, value, ports)?;
        self.set(spec.name, column, spec.field, v, mask)?;
        self.checks.push((spec.name, column, spec.prereq));
        Ok(())
    }

    /// The finished match, once every prerequisite holds.
    pub fn finish(self) -> Result<Match, FlowSyntaxError> {
        for &(name, column, prereq) in &self.checks {
            if !prereq.holds(&self.m) {
                return Err(FlowSyntaxError::MissingPrerequisite {
                    field: name.to_string(),
                    column,
                    prerequisite: prereq.describe().to_string(),
                });
            }
        }
        Ok(self.m)
    }

    fn note_seen(&mut self, name: &'static str, column: usize) -> Result<(), FlowSyntaxError> {
        if let Some(&(_, first_column)) = self.seen.iter().find(|s| s.0 == name) {
            return Err(FlowSyntaxError::DuplicateField {
                field: name.to_string(),
                column,
                first_column,
            });
        }
        self.seen.push((name, column));
        Ok(())
    }

    /// ORs `value/mask` into a field; bits already set by another token
    /// must agree.
    fn set(
        &mut self,
        name: &str,
        column: usize,
        field: Field,
        value: u128,
        mask: u128,
    ) -> Result<(), FlowSyntaxError> {
        let (old_v, old_m) = self.m.get(field);
        let overlap = old_m & mask;
        if (old_v ^ value) & overlap != 0 {
            let owner = self.owners.iter().find(|o| o.field == field);
            return Err(FlowSyntaxError::ConflictingField {
                field: name.to_string(),
                column,
                other: owner.map_or_else(String::new, |o| o.name.clone()),
                other_column: owner.map_or(0, |o| o.column),
            });
        }
        if mask != 0 && !self.owners.iter().any(|o| o.field == field) {
            self.owners.push(Owner {
                field,
                name: name.to_string(),
                column,
            });
        }
        self.m.set(field, old_v | (value & mask), old_m | mask);
        Ok(())
    }

    /// Parses a field's value (and mask) into key bits.
    fn value(
        &self,
        spec: &Spec,
        v: Token<'_>,
        ports: &dyn PortNames,
    ) -> Result<(u128, u128), FlowSyntaxError> {
        let src = &self.src;
        let name = spec.name;
        if !spec.maskable {
            if let Some((_, mask)) = v.split('/') {
                return Err(FlowSyntaxError::MaskNotAllowed {
                    field: name.to_string(),
                    column: src.column(mask.start.saturating_sub(1)),
                });
            }
        }
        let full = spec.field.full();
        let numeric_with = |max: u128, exact: u128| -> Result<(u128, u128), FlowSyntaxError> {
            match v.split('/') {
                None => Ok((src.number(v, name, max)?, exact)),
                Some((value, mask)) => {
                    let value = Token {
                        start: v.start,
                        text: value,
                    };
                    Ok((src.number(value, name, max)?, src.number(mask, name, max)?))
                }
            }
        };
        let numeric = |max: u128| numeric_with(max, full);
        match spec.kind {
            Kind::Port => Ok((u128::from(parse_port(src, v, name, ports)?), full)),
            Kind::Num(max) => numeric(max),
            Kind::Mac => match v.split('/') {
                None => Ok((parse_mac(src, v, name)?, full)),
                Some((value, mask)) => {
                    let value = Token {
                        start: v.start,
                        text: value,
                    };
                    Ok((parse_mac(src, value, name)?, parse_mac(src, mask, name)?))
                }
            },
            Kind::Ipv4 => parse_ipv4_masked(src, v, name),
            Kind::Ipv6 => parse_ipv6_masked(src, v, name),
            Kind::VlanVid => {
                let vid = src.number(v, name, 0xffff)?;
                if vid == 0xffff {
                    // OVS: 0xffff matches frames without a tag.
                    Ok((0, 0xffff))
                } else if vid > u128::from(VLAN_VID_MASK) {
                    Err(src.out_of_range(v, name, u128::from(VLAN_VID_MASK)))
                } else {
                    Ok((vid | u128::from(VLAN_PRESENT), 0x1fff))
                }
            }
            Kind::VlanPcp => {
                let pcp = src.number(v, name, 7)?;
                Ok(((pcp << 13) | u128::from(VLAN_PRESENT), 0xf000))
            }
            Kind::Tos => {
                let tos = src.number(v, name, 0xff)?;
                if tos & 3 != 0 {
                    return Err(src.invalid(
                        v,
                        name,
                        "the low two bits (ECN) must be zero; match them with ip_ecn",
                    ));
                }
                Ok((tos, 0xfc))
            }
            Kind::Dscp => Ok((src.number(v, name, 63)? << 2, 0xfc)),
            Kind::Ecn => Ok((src.number(v, name, 3)?, 0x03)),
            Kind::Frag => {
                let any = u128::from(FRAG_ANY);
                let later = u128::from(FRAG_LATER);
                match v.text {
                    "no" => Ok((0, any)),
                    "yes" => Ok((any, any)),
                    "first" => Ok((any, any | later)),
                    "later" => Ok((any | later, any | later)),
                    "not_later" => Ok((0, later)),
                    t if t.starts_with(|c: char| c.is_ascii_digit()) => numeric(0xff),
                    _ => Err(src.invalid(v, name, "expected no, yes, first, later or not_later")),
                }
            }
            Kind::TcpFlags => {
                if v.text.starts_with(['+', '-']) {
                    self.tcp_flag_names(v)
                } else {
                    numeric_with(TCP_FLAGS_ALL, TCP_FLAGS_ALL)
                }
            }
        }
    }

    /// `+syn-ack`: each named flag must be set (`+`) or clear (`-`).
    fn tcp_flag_names(&self, v: Token<'_>) -> Result<(u128, u128), FlowSyntaxError> {
        let (mut value, mut mask) = (0u128, 0u128);
        let mut rest = v.text;
        while let Some(sign) = rest.chars().next() {
            if sign != '+' && sign != '-' {
                return Err(self.src.invalid(v, "tcp_flags", "expected +FLAG or -FLAG"));
            }
            let body = &rest[1..];
            let end = body.find(['+', '-']).unwrap_or(body.len());
            let flag = &body[..end];
            let Some(bit) = TCP_FLAG_NAMES.iter().position(|n| *n == flag) else {
                return Err(self.src.invalid(
                    v,
                    "tcp_flags",
                    &format!(
                        "unknown TCP flag \"{flag}\" (known: {})",
                        TCP_FLAG_NAMES.join(", ")
                    ),
                ));
            };
            let b = 1u128 << bit;
            if mask & b != 0 {
                return Err(self.src.invalid(
                    v,
                    "tcp_flags",
                    &format!("TCP flag \"{flag}\" given twice"),
                ));
            }
            mask |= b;
            if sign == '+' {
                value |= b;
            }
            rest = &body[end..];
        }
        Ok((value, mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_unique() {
        let names: Vec<&str> = known_names().collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n} listed twice");
        }
    }

    #[test]
    fn prerequisites_read_only_exact_protocol_fields() {
        let tcp = Match::ANY
            .with(Field::EthType, ETH_IPV4)
            .with(Field::NwProto, PROTO_TCP);
        assert!(Prereq::Transport.holds(&tcp));
        assert!(Prereq::Tcp.holds(&tcp));
        assert!(!Prereq::Icmp.holds(&tcp));
        assert!(!Prereq::Ipv6.holds(&tcp));
        let mut partial = Match::ANY.with(Field::EthType, ETH_IPV4);
        partial.set(Field::NwProto, PROTO_TCP, 0x0f);
        assert!(!Prereq::Transport.holds(&partial));
    }
}
