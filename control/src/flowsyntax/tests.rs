//! Unit tests of the flow language on real rule strings.

use super::*;
use datapath::flow::{Field, FRAG_ANY, FRAG_LATER, VLAN_PRESENT};
use datapath::pipeline::{Bucket, GroupType};

fn ports() -> BTreeMap<String, PortNo> {
    [("tap1", 1), ("tap2", 2), ("p1", 11), ("p2", 12)]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect()
}

/// Parses a rule, checks print → parse → print is a fixed point and
/// parse(print(r)) == r, and returns the canonical text.
fn canon(text: &str) -> String {
    let p = ports();
    let rule = parse_rule(text, &p).unwrap_or_else(|e| panic!("{text}: {e}"));
    let printed = format_rule(&rule, &p);
    let again = parse_rule(&printed, &p).unwrap_or_else(|e| panic!("{printed}: {e}"));
    assert_eq!(again, rule, "{text} -> {printed}");
    assert_eq!(format_rule(&again, &p), printed);
    printed
}

/// The canonical match part of a rule with `actions=drop`.
fn canon_match(text: &str) -> String {
    let full = canon(&format!("{text},actions=drop"));
    let body = full
        .strip_prefix("table=0,priority=32768,")
        .expect("default attributes");
    body.strip_suffix(",actions=drop")
        .unwrap_or(body.strip_suffix("actions=drop").unwrap_or(body))
        .to_string()
}

fn m(text: &str) -> Match {
    parse_match(text, &ports())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .r#match
}

fn err(text: &str) -> FlowSyntaxError {
    match parse_rule(text, &ports()) {
        Ok(r) => panic!("{text} parsed as {r:?}"),
        Err(e) => e,
    }
}

fn msg(text: &str) -> String {
    err(text).to_string()
}

fn actions(text: &str) -> Vec<Action> {
    parse_rule(&format!("actions={text}"), &ports())
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .actions
}

fn canon_actions(text: &str) -> String {
    let full = canon(&format!("actions={text}"));
    full.strip_prefix("table=0,priority=32768,actions=")
        .unwrap()
        .to_string()
}

// ---- rules and attributes -------------------------------------------------

#[test]
fn brief_example_round_trips_to_the_shorthand_form() {
    let text = "table=0,priority=100,in_port=tap1,dl_type=0x0800,nw_src=10.0.0.0/24,nw_proto=6,tp_dst=80,actions=mod_vlan_vid:10,output:tap2";
    assert_eq!(
        canon(text),
        "table=0,priority=100,tcp,in_port=tap1,nw_src=10.0.0.0/24,tp_dst=80,actions=mod_vlan_vid:10,output:tap2"
    );
    let r = parse_rule(text, &ports()).unwrap();
    assert_eq!(r.table, 0);
    assert_eq!(r.priority, 100);
    assert_eq!(r.r#match.get(Field::InPort), (1, 0xffff_ffff));
    assert_eq!(r.r#match.get(Field::NwSrc), (0x0a00_0000, 0xffff_ff00));
    assert_eq!(r.r#match.get(Field::TpDst), (80, 0xffff));
    assert_eq!(r.actions, vec![Action::SetVlanVid(10), Action::Output(2)]);
}

#[test]
fn priority_defaults_to_32768_and_attributes_print_when_set() {
    let r = parse_rule("actions=NORMAL", &ports()).unwrap();
    assert_eq!(r.priority, 32768);
    assert_eq!(r.table, 0);
    assert_eq!(r.r#match, Match::ANY);
    assert_eq!(
        canon("hard_timeout=30,idle_timeout=10,cookie=0x1f,priority=7,table=3,actions=drop"),
        "table=3,priority=7,cookie=0x1f,idle_timeout=10,hard_timeout=30,actions=drop"
    );
    let r = parse_rule("cookie=31,actions=drop", &ports()).unwrap();
    assert_eq!(r.cookie, 31);
    let r = parse_rule("cookie=0xffffffffffffffff,actions=drop", &ports()).unwrap();
    assert_eq!(r.cookie, u64::MAX);
    assert_eq!(
        format_rule(&Rule::default_normal(), &NumericPorts),
        "table=0,priority=0,actions=NORMAL"
    );
}

#[test]
fn white_space_separates_like_commas() {
    let r = parse_rule(" priority=5  in_port=1, ip actions=output:2 ", &ports()).unwrap();
    assert_eq!(r.priority, 5);
    assert_eq!(r.actions, vec![Action::Output(2)]);
    assert_eq!(r.r#match.get(Field::EthType), (0x0800, 0xffff));
}

#[test]
fn attribute_ranges_are_enforced() {
    assert_eq!(
        msg("priority=65536,actions=drop"),
        "value \"65536\" for priority at column 10 is out of range (maximum 65535)"
    );
    assert_eq!(
        msg("table=255,actions=drop"),
        "value \"255\" for table at column 7 is out of range (maximum 254)"
    );
    assert!(matches!(
        err("idle_timeout=70000,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("cookie=0x1ffffffffffffffff,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("cookie=1/1,actions=drop"),
        FlowSyntaxError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("priority=abc,actions=drop"),
        FlowSyntaxError::InvalidValue { .. }
    ));
}

#[test]
fn a_rule_needs_actions() {
    assert_eq!(
        msg("priority=1,ip"),
        "rule has no \"actions=\" (expected at column 14)"
    );
    assert_eq!(err("").column(), 1);
}

#[test]
fn duplicate_attributes_and_fields_are_refused_with_both_columns() {
    assert_eq!(
        msg("priority=1,priority=2,actions=drop"),
        "duplicate field priority at column 12 (first given at column 1)"
    );
    assert_eq!(
        msg("tcp,tp_dst=1,tp_dst=2,actions=drop"),
        "duplicate field tp_dst at column 14 (first given at column 5)"
    );
    // Aliases count as the same field.
    assert!(matches!(
        err("dl_src=00:00:00:00:00:01,eth_src=00:00:00:00:00:01,actions=drop"),
        FlowSyntaxError::DuplicateField { .. }
    ));
    assert!(matches!(
        err("tcp,tcp,actions=drop"),
        FlowSyntaxError::DuplicateField { .. }
    ));
}

#[test]
fn contradicting_fields_are_refused_but_consistent_ones_are_merged() {
    assert_eq!(
        msg("tcp,nw_proto=17,actions=drop"),
        "nw_proto at column 5 contradicts tcp at column 1"
    );
    assert!(matches!(
        err("ip,ipv6,actions=drop"),
        FlowSyntaxError::ConflictingField { .. }
    ));
    assert!(matches!(
        err("dl_vlan=0xffff,dl_vlan_pcp=1,actions=drop"),
        FlowSyntaxError::ConflictingField { .. }
    ));
    assert_eq!(canon_match("ip,tcp,dl_type=0x0800"), "tcp");
    assert_eq!(canon_match("dl_vlan=5,vlan_tci=0x1005/0x1fff"), "dl_vlan=5");
}

#[test]
fn unknown_fields_name_the_token_and_column_and_suggest() {
    assert_eq!(
        msg("table=0,priority=100,in_port=1,nw_dstt=10.0.0.1,actions=drop"),
        "unknown field \"nw_dstt\" at column 32; did you mean nw_dst?"
    );
    assert_eq!(
        msg("prority=5,actions=drop"),
        "unknown field \"prority\" at column 1; did you mean priority?"
    );
    assert_eq!(
        msg("tpc,actions=drop"),
        "unknown field \"tpc\" at column 1; did you mean tcp?"
    );
    assert_eq!(
        msg("xyzzy_frobnicate=1,actions=drop"),
        "unknown field \"xyzzy_frobnicate\" at column 1"
    );
    // Columns count characters, not bytes.
    assert_eq!(err("ip,é=1,actions=drop").column(), 4);
}

#[test]
fn fields_without_values_and_shorthands_with_values_are_refused() {
    assert!(matches!(
        err("tp_dst,actions=drop"),
        FlowSyntaxError::Syntax { .. }
    ));
    assert_eq!(
        msg("tcp=1,actions=drop"),
        "invalid value \"1\" for tcp at column 5: a protocol shorthand takes no value"
    );
}

// ---- fields --------------------------------------------------------------

#[test]
fn in_port_takes_names_numbers_and_local() {
    assert_eq!(canon_match("in_port=tap2"), "in_port=tap2");
    assert_eq!(canon_match("in_port=2"), "in_port=tap2");
    assert_eq!(canon_match("in_port=77"), "in_port=77");
    assert_eq!(canon_match("in_port=LOCAL"), "in_port=LOCAL");
    assert_eq!(
        m("in_port=LOCAL").get(Field::InPort).0,
        u128::from(OFPP_LOCAL)
    );
    assert_eq!(
        msg("in_port=tap9,actions=drop"),
        "unknown port \"tap9\" at column 9"
    );
    assert_eq!(
        msg("in_port=4294967295,actions=drop"),
        "value \"4294967295\" for in_port at column 9 is out of range (maximum 4294967040)"
    );
    assert_eq!(
        msg("in_port=1/1,actions=drop"),
        "field in_port at column 10 does not take a mask"
    );
}

#[test]
fn ethernet_addresses_take_masks() {
    let x = m("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00");
    assert_eq!(x.get(Field::EthDst), (0x0100_0000_0000, 0x0100_0000_0000));
    assert_eq!(
        canon_match("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"),
        "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"
    );
    // Value bits outside the mask are dropped, as in OVS.
    assert_eq!(
        canon_match("dl_dst=ff:ff:ff:ff:ff:ff/01:00:00:00:00:00"),
        "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"
    );
    assert_eq!(
        canon_match("eth_src=02:AA:bb:cc:dd:EE,dl_dst=00:00:00:00:00:01/ff:ff:ff:ff:ff:ff"),
        "dl_src=02:aa:bb:cc:dd:ee,dl_dst=00:00:00:00:00:01"
    );
    assert_eq!(
        canon_match("dl_src=00:00:00:00:00:01/00:00:00:00:00:00"),
        ""
    );
    assert_eq!(
        msg("dl_src=00:11:22:33:44,actions=drop"),
        "invalid value \"00:11:22:33:44\" for dl_src at column 8: not an Ethernet address (xx:xx:xx:xx:xx:xx)"
    );
}

#[test]
fn dl_type_prints_a_shorthand_when_one_exists() {
    assert_eq!(canon_match("dl_type=0x88cc"), "dl_type=0x88cc");
    assert_eq!(canon_match("dl_type=2048"), "ip");
    assert_eq!(canon_match("eth_type=0x0806"), "arp");
    assert_eq!(canon_match("dl_type=0x86dd"), "ipv6");
    assert!(matches!(
        err("dl_type=0x10000,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("dl_type=0x800/0xff00,actions=drop"),
        FlowSyntaxError::MaskNotAllowed { .. }
    ));
}

#[test]
fn vlan_fields_follow_ovs_tci_semantics() {
    let present = u128::from(VLAN_PRESENT);
    assert_eq!(m("dl_vlan=10").get(Field::VlanTci), (present | 10, 0x1fff));
    assert_eq!(m("dl_vlan=0xffff").get(Field::VlanTci), (0, 0xffff));
    assert_eq!(
        m("dl_vlan_pcp=5").get(Field::VlanTci),
        (present | (5 << 13), 0xf000)
    );
    assert_eq!(
        m("dl_vlan=10,dl_vlan_pcp=5").get(Field::VlanTci),
        (present | (5 << 13) | 10, 0xffff)
    );
    assert_eq!(
        m("vlan_tci=0x1000/0x1000").get(Field::VlanTci),
        (present, present)
    );
    assert_eq!(canon_match("dl_vlan=10"), "dl_vlan=10");
    assert_eq!(canon_match("dl_vlan=0xffff"), "dl_vlan=0xffff");
    assert_eq!(canon_match("dl_vlan_pcp=5"), "dl_vlan_pcp=5");
    assert_eq!(
        canon_match("dl_vlan_pcp=5,dl_vlan=10"),
        "dl_vlan=10,dl_vlan_pcp=5"
    );
    assert_eq!(
        canon_match("vlan_tci=0x1000/0x1000"),
        "vlan_tci=0x1000/0x1000"
    );
    assert_eq!(canon_match("vlan_tci=0"), "dl_vlan=0xffff");
    assert_eq!(
        canon_match("vlan_tci=0x0005/0x0fff"),
        "vlan_tci=0x0005/0x0fff"
    );
    assert_eq!(canon_match("vlan_tci=0x1064"), "dl_vlan=100,dl_vlan_pcp=0");
    assert_eq!(
        canon_match("vlan2_tci=0x1001/0x1fff"),
        "vlan2_tci=0x1001/0x1fff"
    );
    assert_eq!(
        msg("dl_vlan=4096,actions=drop"),
        "value \"4096\" for dl_vlan at column 9 is out of range (maximum 4095)"
    );
    assert!(matches!(
        err("dl_vlan_pcp=8,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn vlan_matches_select_real_tagged_and_untagged_frames() {
    use datapath::flow::extract;
    use datapath::packet::TunnelMeta;
    let mut tagged = vec![0xff; 6];
    tagged.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    // 802.1Q TPID, TCI = PCP 5, VID 10; then IPv4 EtherType.
    tagged.extend_from_slice(&[0x81, 0x00, 0xa0, 0x0a, 0x08, 0x00]);
    tagged.extend_from_slice(&[0u8; 46]);
    let mut untagged = vec![0xff; 6];
    untagged.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
    untagged.extend_from_slice(&[0u8; 46]);
    let meta = TunnelMeta::default();
    let tagged = extract(&tagged, 1, &meta).unwrap().key;
    let untagged = extract(&untagged, 1, &meta).unwrap().key;
    for (text, on_tagged, on_untagged) in [
        ("dl_vlan=10", true, false),
        ("dl_vlan=11", false, false),
        ("dl_vlan_pcp=5", true, false),
        ("dl_vlan=10,dl_vlan_pcp=5", true, false),
        ("dl_vlan=0xffff", false, true),
        ("vlan_tci=0x1000/0x1000", true, false),
        ("vlan_tci=0/0x1000", false, true),
        ("dl_dst=01:00:00:00:00:00/01:00:00:00:00:00", true, true),
        ("dl_src=02:00:00:00:00:01,in_port=1", true, true),
    ] {
        let x = m(text);
        assert_eq!(x.matches(&tagged), on_tagged, "{text} on tagged");
        assert_eq!(x.matches(&untagged), on_untagged, "{text} on untagged");
    }
}

#[test]
fn ipv4_addresses_take_prefixes_and_dotted_masks() {
    assert_eq!(
        m("ip,nw_src=10.0.0.0/24").get(Field::NwSrc),
        (0x0a00_0000, 0xffff_ff00)
    );
    assert_eq!(
        m("ip,nw_dst=10.1.0.0/16").get(Field::NwDst),
        (0x0a01_0000, 0xffff_0000)
    );
    assert_eq!(
        canon_match("ip,nw_dst=10.1.0.0/16"),
        "ip,nw_dst=10.1.0.0/16"
    );
    assert_eq!(canon_match("ip,nw_dst=10.1.2.3/32"), "ip,nw_dst=10.1.2.3");
    assert_eq!(canon_match("ip,nw_dst=10.1.2.3/0"), "ip");
    assert_eq!(
        canon_match("ip,ip_src=10.1.2.3/255.0.255.0"),
        "ip,nw_src=10.0.2.0/255.0.255.0"
    );
    assert_eq!(
        canon_match("ip,nw_src=10.0.0.1/255.255.255.0"),
        "ip,nw_src=10.0.0.0/24"
    );
    assert_eq!(
        msg("ip,nw_src=10.0.0.300,actions=drop"),
        "invalid value \"10.0.0.300\" for nw_src at column 11: not an IPv4 address"
    );
    assert!(matches!(
        err("ip,nw_src=10.0.0.0/33,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("ip,nw_src=10.0.0.0/x,actions=drop"),
        FlowSyntaxError::InvalidValue { .. }
    ));
}

#[test]
fn ipv6_addresses_and_label() {
    let x = m("ipv6,ipv6_src=2001:db8::/32,ipv6_dst=fe80::1,ipv6_label=0x12345");
    assert_eq!(
        x.get(Field::NwSrc),
        (0x2001_0db8u128 << 96, 0xffff_ffffu128 << 96)
    );
    assert_eq!(x.get(Field::NwDst), (0xfe80u128 << 112 | 1, u128::MAX));
    assert_eq!(x.get(Field::Ipv6Label), (0x12345, 0xf_ffff));
    assert_eq!(
        canon_match("ipv6,ipv6_src=2001:db8::/32,ipv6_dst=fe80::1,ipv6_label=0x12345"),
        "ipv6,ipv6_src=2001:db8::/32,ipv6_dst=fe80::1,ipv6_label=0x12345"
    );
    assert_eq!(
        canon_match("ipv6,ipv6_src=::1/::ffff,ipv6_label=0x1/0xf"),
        "ipv6,ipv6_src=::1/::ffff,ipv6_label=0x1/0xf"
    );
    assert!(matches!(
        err("ipv6,ipv6_label=0x100000,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert_eq!(
        msg("ipv6,ipv6_src=2001:db8:::1,actions=drop"),
        "invalid value \"2001:db8:::1\" for ipv6_src at column 15: not an IPv6 address"
    );
}

#[test]
fn nw_proto_tos_dscp_ecn_ttl() {
    assert_eq!(canon_match("ip,nw_proto=47"), "ip,nw_proto=47");
    assert_eq!(canon_match("ipv6,ip_proto=6"), "tcp6");
    assert_eq!(canon_match("ip,nw_tos=40"), "ip,nw_tos=40");
    assert_eq!(canon_match("ip,ip_dscp=10"), "ip,nw_tos=40");
    assert_eq!(m("ip,ip_dscp=10").get(Field::NwTos), (40, 0xfc));
    assert_eq!(m("ip,ip_ecn=3").get(Field::NwTos), (3, 0x03));
    assert_eq!(
        canon_match("ip,ip_ecn=2,ip_dscp=46"),
        "ip,nw_tos=184,ip_ecn=2"
    );
    assert_eq!(canon_match("ipv6,nw_ttl=64"), "ipv6,nw_ttl=64");
    assert!(matches!(
        err("ip,ip_dscp=64,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("ip,ip_ecn=4,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("ip,nw_ttl=256,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert_eq!(
        msg("ip,nw_tos=3,actions=drop"),
        "invalid value \"3\" for nw_tos at column 11: the low two bits (ECN) must be zero; match them with ip_ecn"
    );
    assert!(matches!(
        err("ip,nw_proto=6/0xff,actions=drop"),
        FlowSyntaxError::MaskNotAllowed { .. }
    ));
}

#[test]
fn ip_frag_names_map_to_fragment_bits() {
    let any = u128::from(FRAG_ANY);
    let later = u128::from(FRAG_LATER);
    for (name, bits) in [
        ("no", (0, any)),
        ("yes", (any, any)),
        ("first", (any, any | later)),
        ("later", (any | later, any | later)),
        ("not_later", (0, later)),
    ] {
        let text = format!("ip,ip_frag={name}");
        assert_eq!(m(&text).get(Field::NwFrag), bits, "{name}");
        assert_eq!(canon_match(&text), text);
    }
    assert_eq!(canon_match("ipv6,ip_frag=0x1/0x3"), "ipv6,ip_frag=first");
    assert_eq!(
        msg("ip,ip_frag=maybe,actions=drop"),
        "invalid value \"maybe\" for ip_frag at column 12: expected no, yes, first, later or not_later"
    );
}

#[test]
fn transport_ports_take_exact_values_and_masks() {
    assert_eq!(canon_match("udp,tp_src=53"), "udp,tp_src=53");
    assert_eq!(
        canon_match("tcp,tp_dst=0x50/0xfff0"),
        "tcp,tp_dst=0x50/0xfff0"
    );
    assert_eq!(
        m("tcp,tp_dst=0x50/0xfff0").get(Field::TpDst),
        (0x50, 0xfff0)
    );
    assert_eq!(canon_match("sctp,tcp_dst=80/0xffff"), "sctp,tp_dst=80");
    assert_eq!(canon_match("udp6,udp_src=1/0"), "udp6");
    assert!(matches!(
        err("tcp,tp_dst=65536,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn tcp_flags_numeric_and_named_forms() {
    assert_eq!(
        m("tcp,tcp_flags=+syn-ack").get(Field::TcpFlags),
        (0x002, 0x012)
    );
    assert_eq!(
        canon_match("tcp,tcp_flags=0x002/0x012"),
        "tcp,tcp_flags=+syn-ack"
    );
    assert_eq!(
        canon_match("tcp,tcp_flags=-ack+syn"),
        "tcp,tcp_flags=+syn-ack"
    );
    assert_eq!(
        canon_match("tcp6,tcp_flags=+ns+cwr+ece+urg+psh+rst+fin"),
        "tcp6,tcp_flags=+fin+rst+psh+urg+ece+cwr+ns"
    );
    assert_eq!(canon_match("tcp,tcp_flags=0x012"), "tcp,tcp_flags=0x012");
    assert_eq!(
        canon_match("tcp,tcp_flags=0x800/0x800"),
        "tcp,tcp_flags=0x800/0x800"
    );
    assert!(matches!(
        err("tcp,tcp_flags=0x1000,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert_eq!(
        msg("tcp,tcp_flags=+syn+sny,actions=drop"),
        "invalid value \"+syn+sny\" for tcp_flags at column 15: unknown TCP flag \"sny\" (known: fin, syn, rst, psh, ack, urg, ece, cwr, ns)"
    );
    assert!(matches!(
        err("tcp,tcp_flags=+syn-syn,actions=drop"),
        FlowSyntaxError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("tcp,tcp_flags=+,actions=drop"),
        FlowSyntaxError::InvalidValue { .. }
    ));
}

#[test]
fn icmp_type_and_code_live_in_the_port_fields() {
    let x = m("icmp,icmp_type=8,icmp_code=0");
    assert_eq!(x.get(Field::TpSrc), (8, 0xffff));
    assert_eq!(x.get(Field::TpDst), (0, 0xffff));
    assert_eq!(
        canon_match("icmp,icmp_code=0,icmp_type=8"),
        "icmp,icmp_type=8,icmp_code=0"
    );
    assert_eq!(
        canon_match("icmp6,icmpv6_type=135,icmpv6_code=0"),
        "icmp6,icmpv6_type=135,icmpv6_code=0"
    );
    assert!(matches!(
        err("icmp,icmp_type=256,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn arp_fields() {
    let x = m("arp,arp_op=1,arp_spa=10.0.0.1,arp_tpa=10.0.0.0/8,arp_sha=02:00:00:00:00:01,arp_tha=00:00:00:00:00:00");
    assert_eq!(x.get(Field::NwProto), (1, 0xff));
    assert_eq!(x.get(Field::NwSrc), (0x0a00_0001, 0xffff_ffff));
    assert_eq!(x.get(Field::NwDst), (0x0a00_0000, 0xff00_0000));
    assert_eq!(x.get(Field::ArpSha), (0x0200_0000_0001, 0xffff_ffff_ffff));
    assert_eq!(x.get(Field::ArpTha), (0, 0xffff_ffff_ffff));
    assert_eq!(
        canon_match("arp,arp_op=1,arp_spa=10.0.0.1,arp_tpa=10.0.0.0/8,arp_sha=02:00:00:00:00:01,arp_tha=00:00:00:00:00:00"),
        "arp,arp_spa=10.0.0.1,arp_tpa=10.0.0.0/8,arp_op=1,arp_sha=02:00:00:00:00:01,arp_tha=00:00:00:00:00:00"
    );
    // nw_src and nw_proto mean SPA and opcode on ARP, as in OVS.
    assert_eq!(
        canon_match("arp,nw_src=10.0.0.1,nw_proto=2"),
        "arp,arp_spa=10.0.0.1,arp_op=2"
    );
    assert_eq!(
        canon_match("arp,arp_sha=02:00:00:00:00:00/ff:00:00:00:00:00"),
        "arp,arp_sha=02:00:00:00:00:00/ff:00:00:00:00:00"
    );
    assert!(matches!(
        err("arp,arp_op=256,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn tunnel_fields() {
    let x = m("tun_id=0x5/0xff,tun_src=192.0.2.1,tun_dst=192.0.2.0/24");
    assert_eq!(x.get(Field::TunId), (5, 0xff));
    assert_eq!(x.get(Field::TunSrc), (0xc000_0201, 0xffff_ffff));
    assert_eq!(x.get(Field::TunDst), (0xc000_0200, 0xffff_ff00));
    assert_eq!(
        canon_match("tun_dst=192.0.2.0/24,tun_src=192.0.2.1,tun_id=0x5/0xff"),
        "tun_id=0x5/0xff,tun_src=192.0.2.1,tun_dst=192.0.2.0/24"
    );
    assert_eq!(canon_match("tunnel_id=5000"), "tun_id=0x1388");
    assert!(matches!(
        err("tun_id=0x100000000,actions=drop"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn every_shorthand_sets_dl_type_and_nw_proto() {
    for (name, eth, proto) in [
        ("ip", 0x0800, None),
        ("ipv6", 0x86dd, None),
        ("arp", 0x0806, None),
        ("icmp", 0x0800, Some(1)),
        ("tcp", 0x0800, Some(6)),
        ("udp", 0x0800, Some(17)),
        ("sctp", 0x0800, Some(132)),
        ("icmp6", 0x86dd, Some(58)),
        ("tcp6", 0x86dd, Some(6)),
        ("udp6", 0x86dd, Some(17)),
        ("sctp6", 0x86dd, Some(132)),
    ] {
        let x = m(name);
        assert_eq!(x.get(Field::EthType), (eth, 0xffff), "{name}");
        assert_eq!(
            x.get(Field::NwProto),
            proto.map_or((0, 0), |p| (p, 0xff)),
            "{name}"
        );
        assert_eq!(canon_match(name), name);
    }
}

#[test]
fn prerequisites_are_enforced_and_named() {
    assert_eq!(
        msg("tp_dst=80,actions=drop"),
        "field tp_dst at column 1 requires tcp, udp or sctp (ip or ipv6 with nw_proto=6, 17 or 132)"
    );
    assert_eq!(
        msg("ipv6,nw_src=10.0.0.1,actions=drop"),
        "field nw_src at column 6 requires ip or arp (dl_type=0x0800 or dl_type=0x0806)"
    );
    assert_eq!(
        msg("tcp,icmp_type=8,actions=drop"),
        "field icmp_type at column 5 requires icmp (dl_type=0x0800,nw_proto=1)"
    );
    for (text, field) in [
        ("icmp,icmpv6_type=1", "icmpv6_type"),
        ("udp,tcp_flags=+syn", "tcp_flags"),
        ("ip,arp_sha=00:00:00:00:00:01", "arp_sha"),
        ("ip,ipv6_src=::1", "ipv6_src"),
        ("ip,ipv6_label=1", "ipv6_label"),
        ("nw_proto=6", "nw_proto"),
        ("arp,nw_ttl=1", "nw_ttl"),
        ("nw_tos=4", "nw_tos"),
        ("ip_frag=no", "ip_frag"),
        ("ip,arp_op=1", "arp_op"),
        ("icmp,tp_src=1", "tp_src"),
        ("dl_type=0x0800,nw_proto=1,tp_dst=1", "tp_dst"),
    ] {
        match err(&format!("{text},actions=drop")) {
            FlowSyntaxError::MissingPrerequisite { field: f, .. } => assert_eq!(f, field, "{text}"),
            e => panic!("{text}: {e}"),
        }
    }
    // Order does not matter: the protocol may come after the field.
    assert_eq!(
        canon_match("tp_dst=80,nw_src=10.0.0.1,tcp"),
        "tcp,nw_src=10.0.0.1,tp_dst=80"
    );
}

// ---- actions -------------------------------------------------------------

#[test]
fn output_takes_names_numbers_and_reserved_ports() {
    assert_eq!(actions("output:tap2"), vec![Action::Output(2)]);
    assert_eq!(actions("output:7"), vec![Action::Output(7)]);
    assert_eq!(
        actions("tap1,3"),
        vec![Action::Output(1), Action::Output(3)]
    );
    assert_eq!(
        actions("output:NORMAL,FLOOD,all,IN_PORT,output:LOCAL,normal"),
        vec![
            Action::Normal,
            Action::Flood,
            Action::All,
            Action::InPort,
            Action::Output(OFPP_LOCAL),
            Action::Normal
        ]
    );
    assert_eq!(canon_actions("tap1,3"), "output:tap1,output:3");
    assert_eq!(
        canon_actions("output:NORMAL,flood,ALL,in_port,LOCAL"),
        "NORMAL,FLOOD,ALL,IN_PORT,LOCAL"
    );
    assert_eq!(
        msg("actions=output:tap9"),
        "unknown port \"tap9\" at column 16"
    );
    assert!(matches!(
        err("actions=output:0x1ffffffff"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn drop_is_the_empty_list_and_must_stand_alone() {
    assert_eq!(actions("drop"), Vec::<Action>::new());
    assert_eq!(actions(""), Vec::<Action>::new());
    assert_eq!(canon_actions("drop"), "drop");
    assert_eq!(
        msg("actions=output:1,drop"),
        "action drop at column 18: drop must be the only action"
    );
}

#[test]
fn vlan_actions() {
    assert_eq!(
        actions(
            "mod_vlan_vid:10,mod_vlan_pcp:3,strip_vlan,pop_vlan,push_vlan:0x8100,push_vlan:0x88a8"
        ),
        vec![
            Action::SetVlanVid(10),
            Action::SetVlanPcp(3),
            Action::StripVlan,
            Action::StripVlan,
            Action::PushVlan(0x8100),
            Action::PushVlan(0x88a8)
        ]
    );
    assert_eq!(
        canon_actions("set_vlan_vid:10,set_vlan_pcp:3,pop_vlan,push_vlan:33024"),
        "mod_vlan_vid:10,mod_vlan_pcp:3,strip_vlan,push_vlan:0x8100"
    );
    assert_eq!(
        msg("actions=mod_vlan_vid:4096"),
        "value \"4096\" for mod_vlan_vid at column 22 is out of range (maximum 4095)"
    );
    assert!(matches!(
        err("actions=mod_vlan_pcp:8"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert_eq!(
        msg("actions=push_vlan:0x1234"),
        "invalid value \"0x1234\" for push_vlan at column 19: TPID must be 0x8100 or 0x88a8"
    );
}

#[test]
fn rewrite_actions() {
    assert_eq!(
        actions("mod_dl_src:02:00:00:00:00:01,mod_dl_dst:02:00:00:00:00:02,mod_nw_src:10.0.0.1,mod_nw_dst:10.0.0.2,mod_tp_src:1000,mod_tp_dst:80,dec_ttl"),
        vec![
            Action::SetEthSrc([2, 0, 0, 0, 0, 1]),
            Action::SetEthDst([2, 0, 0, 0, 0, 2]),
            Action::SetIpv4Src(0x0a00_0001),
            Action::SetIpv4Dst(0x0a00_0002),
            Action::SetTpSrc(1000),
            Action::SetTpDst(80),
            Action::DecTtl
        ]
    );
    assert_eq!(
        canon_actions("mod_dl_src:02:00:00:00:00:01,mod_nw_dst:10.0.0.2,mod_tp_dst:80,dec_ttl"),
        "mod_dl_src:02:00:00:00:00:01,mod_nw_dst:10.0.0.2,mod_tp_dst:80,dec_ttl"
    );
    assert!(matches!(
        err("actions=mod_nw_src:10.0.0.256"),
        FlowSyntaxError::InvalidValue { .. }
    ));
    assert!(matches!(
        err("actions=mod_tp_src:65536"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("actions=mod_dl_dst:zz:00:00:00:00:00"),
        FlowSyntaxError::InvalidValue { .. }
    ));
}

#[test]
fn tunnel_and_set_field_actions() {
    assert_eq!(actions("set_tunnel:5000"), vec![Action::SetTunnel(5000)]);
    assert_eq!(actions("set_tunnel:0x1388"), vec![Action::SetTunnel(5000)]);
    assert_eq!(
        actions("set_field:5000->tun_id,set_field:02:00:00:00:00:09->eth_src,set_field:02:00:00:00:00:0a->eth_dst,set_field:10.0.0.9->ip_src,set_field:10.0.0.10->ip_dst,set_field:99->tcp_src,set_field:100->udp_dst,set_field:4196->vlan_vid,set_field:2->vlan_pcp"),
        vec![
            Action::SetTunnel(5000),
            Action::SetEthSrc([2, 0, 0, 0, 0, 9]),
            Action::SetEthDst([2, 0, 0, 0, 0, 10]),
            Action::SetIpv4Src(0x0a00_0009),
            Action::SetIpv4Dst(0x0a00_000a),
            Action::SetTpSrc(99),
            Action::SetTpDst(100),
            Action::SetVlanVid(100),
            Action::SetVlanPcp(2)
        ]
    );
    assert_eq!(canon_actions("set_field:5000->tun_id"), "set_tunnel:5000");
    assert!(matches!(
        err("actions=set_tunnel:0x100000000"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("actions=set_field:1->metadata"),
        FlowSyntaxError::Unsupported { .. }
    ));
    assert!(matches!(
        err("actions=set_field:1/1->tun_id"),
        FlowSyntaxError::Unsupported { .. }
    ));
    assert!(matches!(
        err("actions=set_field:1"),
        FlowSyntaxError::InvalidValue { .. }
    ));
}

#[test]
fn resubmit_goto_and_group() {
    assert_eq!(
        parse_rule(
            "table=1,actions=resubmit(,3),group:7,goto_table:2",
            &ports()
        )
        .unwrap()
        .actions,
        vec![Action::Resubmit(3), Action::Group(7), Action::GotoTable(2)]
    );
    assert_eq!(
        canon("table=1,actions=resubmit(,3),group:7,goto_table:2"),
        "table=1,priority=32768,actions=resubmit(,3),group:7,goto_table:2"
    );
    assert_eq!(
        msg("actions=resubmit(1,2)"),
        "resubmit(1,2) at column 9 is not supported: resubmit with a port is not implemented; leave the port empty: resubmit(,TABLE)"
    );
    assert!(matches!(
        err("actions=resubmit:1"),
        FlowSyntaxError::Unsupported { .. }
    ));
    assert!(matches!(
        err("actions=resubmit(1)"),
        FlowSyntaxError::Unsupported { .. }
    ));
    assert!(matches!(
        err("actions=resubmit(,1,ct)"),
        FlowSyntaxError::Unsupported { .. }
    ));
    assert!(matches!(
        err("actions=resubmit(,255)"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert_eq!(
        msg("table=2,actions=goto_table:2"),
        "action goto_table:2 at column 17: must go to a table after this rule's table 2"
    );
    assert_eq!(
        msg("actions=goto_table:1,output:1"),
        "action goto_table:1 at column 9: goto_table must be the last action"
    );
    assert!(matches!(
        err("actions=goto_table:255"),
        FlowSyntaxError::OutOfRange { .. }
    ));
    assert!(matches!(
        err("actions=group:0x100000000"),
        FlowSyntaxError::OutOfRange { .. }
    ));
}

#[test]
fn unknown_and_misplaced_actions_are_explained() {
    assert_eq!(
        msg("actions=outptu:1"),
        "unknown action \"outptu\" at column 9; did you mean output?"
    );
    assert_eq!(
        msg("actions=strp_vlan"),
        "unknown action \"strp_vlan\" at column 9; did you mean strip_vlan?"
    );
    assert_eq!(
        msg("actions=output:1,tp_dst=80"),
        "action tp_dst=80 at column 18: match fields and rule attributes must come before actions="
    );
    assert_eq!(
        msg("actions=output"),
        "action output at column 9: needs an argument"
    );
    assert_eq!(
        msg("actions=output:1,actions=output:2"),
        "action actions=output:2 at column 18: actions= may be given only once"
    );
    assert!(msg("actions=NORMAL,priority=3").contains("must come before actions="));
    assert!(matches!(
        err("actions=resubmit(,1"),
        FlowSyntaxError::Syntax { .. }
    ));
    assert!(matches!(
        err("actions=output(1)"),
        FlowSyntaxError::Syntax { .. }
    ));
}

#[test]
fn format_actions_is_the_canonical_list() {
    let p = ports();
    assert_eq!(format_actions(&[], &p), "drop");
    assert_eq!(
        format_actions(
            &[Action::Output(11), Action::Output(99), Action::Normal],
            &p
        ),
        "output:p1,output:99,NORMAL"
    );
    assert_eq!(
        parse_actions("output:p1,mod_vlan_vid:3", &p).unwrap(),
        vec![Action::Output(11), Action::SetVlanVid(3)]
    );
}

// ---- groups --------------------------------------------------------------

#[test]
fn select_and_all_groups_parse_and_print() {
    let p = ports();
    let g = parse_group(
        "group_id=1,type=select,bucket=output:p1,bucket=output:p2",
        &p,
    )
    .unwrap();
    assert_eq!(
        g,
        Group {
            id: 1,
            kind: GroupType::Select,
            buckets: vec![
                Bucket {
                    weight: 1,
                    actions: vec![Action::Output(11)]
                },
                Bucket {
                    weight: 1,
                    actions: vec![Action::Output(12)]
                },
            ],
        }
    );
    assert_eq!(
        format_group(&g, &p),
        "group_id=1,type=select,bucket=output:p1,bucket=output:p2"
    );
    let g = parse_group(
        "type=all group_id=2 bucket=weight:5,actions=mod_vlan_vid:3,output:1 bucket=actions=output:2 bucket=weight=2,mod_dl_src:02:00:00:00:00:01,output:3 bucket=actions=drop",
        &p,
    )
    .unwrap();
    assert_eq!(g.kind, GroupType::All);
    assert_eq!(g.id, 2);
    assert_eq!(
        g.buckets,
        vec![
            Bucket {
                weight: 5,
                actions: vec![Action::SetVlanVid(3), Action::Output(1)]
            },
            Bucket {
                weight: 1,
                actions: vec![Action::Output(2)]
            },
            Bucket {
                weight: 2,
                actions: vec![Action::SetEthSrc([2, 0, 0, 0, 0, 1]), Action::Output(3)]
            },
            Bucket {
                weight: 1,
                actions: vec![]
            },
        ]
    );
    let printed = format_group(&g, &p);
    assert_eq!(
        printed,
        "group_id=2,type=all,bucket=weight:5,actions=mod_vlan_vid:3,output:tap1,bucket=output:tap2,bucket=weight:2,actions=mod_dl_src:02:00:00:00:00:01,output:3,bucket=drop"
    );
    assert_eq!(parse_group(&printed, &p).unwrap(), g);
    let empty = parse_group("group_id=9,type=select", &p).unwrap();
    assert!(empty.buckets.is_empty());
    assert_eq!(format_group(&empty, &p), "group_id=9,type=select");
}

#[test]
fn bad_groups_are_explained() {
    let p = ports();
    let e = |t: &str| parse_group(t, &p).unwrap_err().to_string();
    assert_eq!(
        e("type=select,bucket=output:1"),
        "group has no \"group_id=\" (expected before column 28)"
    );
    assert_eq!(
        e("group_id=1"),
        "group has no \"type=\" (expected before column 11)"
    );
    assert_eq!(
        e("group_id=1,type=random"),
        "invalid value \"random\" for type at column 17: expected select or all"
    );
    assert!(e("group_id=1,type=indirect").contains("not supported"));
    assert_eq!(
        e("group_id=1,type=all,bucket=goto_table:1"),
        "action goto_table:1 at column 28: not allowed in a group bucket"
    );
    assert_eq!(
        e("group_id=1,typ=all"),
        "unknown field \"typ\" at column 12; did you mean type?"
    );
    assert!(e("group_id=1,group_id=2,type=all").starts_with("duplicate field group_id"));
    assert!(e("group_id=1,type=all,bucket=weight:1,weight:2,output:1")
        .starts_with("duplicate field weight"));
    assert!(e("group_id=1,type=all,bucket=weight:70000").contains("out of range"));
    assert!(e("group_id=1,type=all,bucket=output:nope").contains("unknown port"));
}

// ---- match-only strings and trace ------------------------------------------

#[test]
fn match_strings_take_table_and_priority_but_not_actions() {
    let p = ports();
    let s = parse_match("table=2,priority=7,in_port=tap1,ip,nw_src=10.0.0.1", &p).unwrap();
    assert_eq!(s.table, Some(2));
    assert_eq!(s.priority, Some(7));
    assert_eq!(
        format_match(&s.r#match, &p),
        "ip,in_port=tap1,nw_src=10.0.0.1"
    );
    let any = parse_match("", &p).unwrap();
    assert_eq!(
        any,
        MatchSpec {
            table: None,
            priority: None,
            r#match: Match::ANY
        }
    );
    assert_eq!(format_match(&Match::ANY, &p), "");
    assert_eq!(
        parse_match("ip,actions=drop", &p).unwrap_err().to_string(),
        "\"actions\" at column 4 is not allowed in a match"
    );
    assert!(matches!(
        parse_match("cookie=1", &p),
        Err(FlowSyntaxError::NotAllowedInMatch { .. })
    ));
    assert!(matches!(
        parse_match("tp_dst=1", &p),
        Err(FlowSyntaxError::MissingPrerequisite { .. })
    ));
}

#[test]
fn match_to_key_gives_each_given_field_its_value() {
    let x = m("in_port=tap1,dl_src=02:00:00:00:00:01,dl_vlan=10,tcp,nw_src=10.0.0.0/24,nw_dst=10.0.1.5,tp_dst=80");
    let key = match_to_key(&x);
    assert_eq!(key.in_port(), 1);
    assert_eq!(key.eth_src(), [2, 0, 0, 0, 0, 1]);
    assert_eq!(key.vlan_tci(), VLAN_PRESENT | 10);
    assert_eq!(key.eth_type(), 0x0800);
    assert_eq!(key.nw_proto(), 6);
    assert_eq!(key.get(Field::NwSrc), 0x0a00_0000);
    assert_eq!(key.get(Field::NwDst), 0x0a00_0105);
    assert_eq!(key.get(Field::TpDst), 80);
    assert_eq!(key.get(Field::TpSrc), 0);
    assert!(x.matches(&key));
}

// ---- flows files ---------------------------------------------------------

#[test]
fn flows_files_skip_comments_and_report_line_numbers() {
    let p = ports();
    let text = "# bridge br0\n\n  table=0,priority=10,in_port=tap1,actions=output:tap2\n   # indented comment\npriority=0,actions=NORMAL\n";
    let rules = parse_flows_file(text, &p).unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].actions, vec![Action::Output(2)]);
    assert_eq!(rules[1], Rule::default_normal());
    let bad = "priority=1,actions=drop\n# ok\nip,nw_dstt=1.2.3.4,actions=drop\n";
    let e = parse_flows_file(bad, &p).unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.error.column(), 4);
    assert_eq!(e.to_string(), "flows file: invalid rule on line 3");
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert_eq!(
        source.as_deref(),
        Some("unknown field \"nw_dstt\" at column 4; did you mean nw_dst?")
    );
    assert_eq!(parse_flows_file("", &p).unwrap(), Vec::<Rule>::new());
}

// ---- port resolvers ------------------------------------------------------

#[test]
fn resolvers_map_names_both_ways() {
    let mut h: HashMap<String, PortNo> = HashMap::new();
    h.insert("eth0".to_string(), 4);
    h.insert("alias".to_string(), 4);
    let r = parse_rule("in_port=eth0,actions=output:alias", &h).unwrap();
    assert_eq!(r.r#match.get(Field::InPort).0, 4);
    assert_eq!(r.actions, vec![Action::Output(4)]);
    assert_eq!(
        format_rule(&r, &h),
        "table=0,priority=32768,in_port=alias,actions=output:alias"
    );
    assert_eq!(
        format_rule(&r, &NumericPorts),
        "table=0,priority=32768,in_port=4,actions=output:4"
    );
    assert_eq!(
        parse_rule("in_port=eth0,actions=drop", &NumericPorts)
            .unwrap_err()
            .to_string(),
        "unknown port \"eth0\" at column 9"
    );
}

#[test]
fn closures_resolve_ports_too() {
    let fns = PortFns(
        |name: &str| name.strip_prefix("veth").and_then(|n| n.parse().ok()),
        |no: PortNo| Some(format!("veth{no}")),
    );
    let r = parse_rule("in_port=veth7,actions=output:veth8", &fns).unwrap();
    assert_eq!(r.r#match.get(Field::InPort).0, 7);
    assert_eq!(r.actions, vec![Action::Output(8)]);
    assert_eq!(
        format_rule(&r, &fns),
        "table=0,priority=32768,in_port=veth7,actions=output:veth8"
    );
}

#[test]
fn odd_inputs_are_errors_not_panics() {
    let p = ports();
    for text in [
        "=",
        ",,,",
        "actions=(",
        "actions=)",
        "a=b=c",
        "tcp_flags=+",
        "ip,nw_src=/",
        "ip,nw_src=1.2.3.4/",
        "actions=set_field:->",
        "actions=resubmit()",
        "é",
        "in_port=",
        "dl_src=::::::",
        "ipv6,ipv6_src=/",
        "actions=output:",
        "actions=:",
        "actions=(,)",
        "tcp,tcp_flags=+syn+",
        "priority=",
        "actions=resubmit(,)",
        "\u{0}",
        "table=0x",
        "dl_vlan=-1",
        "ip,ip_frag=0x100",
        "actions=group:",
        "actions=ééé:1",
    ] {
        let _ = parse_rule(text, &p);
        let _ = parse_match(text, &p);
        let _ = parse_group(text, &p);
        let _ = parse_flows_file(text, &p);
    }
}

#[test]
fn hand_built_matches_still_print_every_bit() {
    // A match the parser cannot produce (masked nw_tos) prints raw rather
    // than hiding the bits.
    let mut x = Match::ANY.with(Field::EthType, 0x0800);
    x.set(Field::NwTos, 0x10, 0xf0);
    assert_eq!(format_match(&x, &NumericPorts), "ip,nw_tos=0x10/0xf0");
}

#[test]
fn long_action_lists_parse_in_one_pass() {
    let p = ports();
    let text = format!(
        "priority=1,actions={}",
        vec!["output:tap2"; 20_000].join(",")
    );
    let r = parse_rule(&text, &p).unwrap();
    assert_eq!(r.actions.len(), 20_000);
    assert!(r.actions.iter().all(|a| *a == Action::Output(2)));
    let bad = format!("{text},bogus");
    assert_eq!(err(&bad).column(), text.len() + 2);
}

/// Parsed matches select the frames they mean: keys come from the
/// datapath's extractor run on frames built byte for byte.
#[test]
fn parsed_matches_select_real_frames() {
    use datapath::flow::extract;
    use datapath::packet::TunnelMeta;
    use etherparse::PacketBuilder;

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    let v6_src = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let v6_dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut tcp = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv4([10, 0, 0, 5], [10, 0, 1, 7], 64)
        .tcp(40000, 80, 1, 1024)
        .syn()
        .write(&mut tcp, b"hello")
        .unwrap();
    let mut udp6 = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv6(v6_src, v6_dst, 32)
        .udp(5353, 53)
        .write(&mut udp6, b"q")
        .unwrap();
    let mut icmp = Vec::new();
    PacketBuilder::ethernet2(A, B)
        .ipv4([10, 0, 0, 5], [10, 0, 0, 1], 64)
        .icmpv4_echo_request(7, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    // ARP request 10.0.0.5 (A) asks for 10.0.0.1 (RFC 826 layout).
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&A);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    arp.extend_from_slice(&A);
    arp.extend_from_slice(&[10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]);
    arp.resize(60, 0);

    let meta = TunnelMeta::default();
    let key = |f: &[u8]| extract(f, 1, &meta).unwrap().key;
    let (tcp, udp6, icmp, arp) = (key(&tcp), key(&udp6), key(&icmp), key(&arp));
    // (match, on tcp, on udp6, on icmp, on arp)
    for (text, want) in [
        ("in_port=tap1", [true; 4]),
        ("dl_src=02:00:00:00:00:0a", [true; 4]),
        (
            "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
            [false, false, false, true],
        ),
        ("ip", [true, false, true, false]),
        ("tcp", [true, false, false, false]),
        ("tcp,tp_dst=80", [true, false, false, false]),
        ("tcp,tp_dst=0x50/0xfff0", [true, false, false, false]),
        ("tcp,tp_dst=443", [false; 4]),
        (
            "tcp,tp_src=40000,tcp_flags=+syn-ack",
            [true, false, false, false],
        ),
        ("tcp,tcp_flags=+ack", [false; 4]),
        ("ip,nw_src=10.0.0.0/24", [true, false, true, false]),
        (
            "ip,nw_dst=10.0.1.0/255.255.255.0",
            [true, false, false, false],
        ),
        (
            "ip,nw_ttl=64,nw_tos=0,ip_frag=no",
            [true, false, true, false],
        ),
        ("ip,ip_frag=yes", [false; 4]),
        ("udp6,tp_dst=53", [false, true, false, false]),
        (
            "ipv6,ipv6_src=fe80::/10,ipv6_dst=2001:db8::2,nw_ttl=32",
            [false, true, false, false],
        ),
        ("icmp,icmp_type=8,icmp_code=0", [false, false, true, false]),
        ("icmp,icmp_type=0", [false; 4]),
        (
            "arp,arp_op=1,arp_spa=10.0.0.5,arp_tpa=10.0.0.1",
            [false, false, false, true],
        ),
        (
            "arp,arp_sha=02:00:00:00:00:0a,arp_tha=00:00:00:00:00:00",
            [false, false, false, true],
        ),
        ("arp,nw_src=10.0.0.5", [false, false, false, true]),
        ("dl_vlan=0xffff", [true; 4]),
        ("dl_vlan=1", [false; 4]),
    ] {
        let x = m(text);
        for (k, (key, expected)) in [tcp, udp6, icmp, arp].iter().zip(want).enumerate() {
            assert_eq!(x.matches(key), expected, "{text} on frame {k}");
        }
    }
}
