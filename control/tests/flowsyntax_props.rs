//! Property tests of the flow language: random valid rules and groups
//! survive print → parse unchanged and print canonically, and no input —
//! random text or a mutated valid rule — makes the parser panic.

use control::flowsyntax::{
    format_group, format_match, format_rule, parse_flows_file, parse_group, parse_match,
    parse_rule, PortNames, OFPP_LOCAL, OFPP_MAX,
};
use datapath::flow::{Field, PortNo};
use datapath::pipeline::{Action, Bucket, Group, GroupType, Match, Rule};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn names() -> BTreeMap<String, PortNo> {
    [("tap1", 1), ("tap2", 2), ("veth-a", 3), ("vxlan0", 10)]
        .into_iter()
        .map(|(n, p)| (n.to_string(), p))
        .collect()
}

fn port() -> impl Strategy<Value = PortNo> {
    prop_oneof![0u32..12, Just(OFPP_LOCAL), Just(OFPP_MAX), 0u32..=OFPP_MAX,]
}

/// (value, mask) of `bits` width with a random mask: exact, prefix, zero
/// or arbitrary.
fn masked(bits: u32) -> impl Strategy<Value = (u128, u128)> {
    let full = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let mask = prop_oneof![
        Just(full),
        (0..=bits).prop_map(move |len| if len == 0 {
            0
        } else {
            full & !((1u128 << (bits - len)) - 1)
        }),
        any::<u128>().prop_map(move |m| m & full),
    ];
    (any::<u128>(), mask).prop_map(move |(v, m)| (v & m, m))
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    proptest::option::weighted(0.35, s)
}

/// Which protocol the match pins down, which decides the fields allowed.
#[derive(Clone, Debug)]
enum Proto {
    None,
    Other(u16),
    Ipv4(Option<u8>),
    Ipv6(Option<u8>),
    Arp,
}

fn proto() -> impl Strategy<Value = Proto> {
    let nw = prop_oneof![
        Just(None),
        Just(Some(6u8)),
        Just(Some(17)),
        Just(Some(132)),
        Just(Some(1)),
        Just(Some(58)),
        any::<u8>().prop_map(Some),
    ];
    prop_oneof![
        Just(Proto::None),
        any::<u16>()
            .prop_filter("not ip/arp", |t| ![0x0800, 0x86dd, 0x0806].contains(t))
            .prop_map(Proto::Other),
        nw.clone().prop_map(Proto::Ipv4),
        nw.prop_map(Proto::Ipv6),
        Just(Proto::Arp),
    ]
}

type Set = Vec<(Field, u128, u128)>;

/// L2 and tunnel fields: no prerequisites.
fn l2_fields() -> impl Strategy<Value = Set> {
    (
        opt(port()),
        opt(masked(32)),
        opt(masked(32)),
        opt(masked(32)),
        opt(masked(48)),
        opt(masked(48)),
        opt(masked(16)),
        opt(masked(16)),
    )
        .prop_map(|(inp, tun_id, tsrc, tdst, src, dst, vlan, vlan2)| {
            let mut s = Set::new();
            if let Some(p) = inp {
                s.push((Field::InPort, u128::from(p), Field::InPort.full()));
            }
            for (f, x) in [
                (Field::TunId, tun_id),
                (Field::TunSrc, tsrc),
                (Field::TunDst, tdst),
                (Field::EthSrc, src),
                (Field::EthDst, dst),
                (Field::VlanTci, vlan),
                (Field::Vlan2Tci, vlan2),
            ] {
                if let Some((v, m)) = x {
                    s.push((f, v, m));
                }
            }
            s
        })
}

/// IP fields common to v4 and v6, and the transport fields of `proto`.
fn ip_fields(v6: bool, proto: Option<u8>) -> impl Strategy<Value = Set> {
    let addr_bits = if v6 { 128 } else { 32 };
    let tos = prop_oneof![Just(0u128), Just(0xfc), Just(0x03), Just(0xff)];
    let icmp = proto == Some(if v6 { 58 } else { 1 });
    let transport = matches!(proto, Some(6 | 17 | 132));
    let tp = move || -> BoxedStrategy<Option<(u128, u128)>> {
        if icmp {
            opt((0u128..256).prop_map(|v| (v, 0xffff))).boxed()
        } else if transport {
            opt(masked(16)).boxed()
        } else {
            Just(None).boxed()
        }
    };
    let flags = if proto == Some(6) {
        opt(masked(12)).boxed()
    } else {
        Just(None).boxed()
    };
    (
        opt(masked(addr_bits)),
        opt(masked(addr_bits)),
        if v6 {
            opt(masked(20)).boxed()
        } else {
            Just(None).boxed()
        },
        (tos, any::<u8>()),
        opt(any::<u8>()),
        opt(masked(8)),
        tp(),
        tp(),
        flags,
    )
        .prop_map(
            move |(src, dst, label, (tos_mask, tos), ttl, frag, tps, tpd, flags)| {
                let mut s = Set::new();
                for (f, x) in [
                    (Field::NwSrc, src),
                    (Field::NwDst, dst),
                    (Field::Ipv6Label, label),
                    (Field::NwFrag, frag),
                    (Field::TpSrc, tps),
                    (Field::TpDst, tpd),
                    (Field::TcpFlags, flags),
                ] {
                    if let Some((v, m)) = x {
                        s.push((f, v, m));
                    }
                }
                s.push((Field::NwTos, u128::from(tos) & tos_mask, tos_mask));
                if let Some(t) = ttl {
                    s.push((Field::NwTtl, u128::from(t), 0xff));
                }
                s
            },
        )
}

fn arp_fields() -> impl Strategy<Value = Set> {
    (
        opt(any::<u8>()),
        opt(masked(32)),
        opt(masked(32)),
        opt(masked(48)),
        opt(masked(48)),
    )
        .prop_map(|(op, spa, tpa, sha, tha)| {
            let mut s = Set::new();
            if let Some(op) = op {
                s.push((Field::NwProto, u128::from(op), 0xff));
            }
            for (f, x) in [
                (Field::NwSrc, spa),
                (Field::NwDst, tpa),
                (Field::ArpSha, sha),
                (Field::ArpTha, tha),
            ] {
                if let Some((v, m)) = x {
                    s.push((f, v, m));
                }
            }
            s
        })
}

/// A random match that respects every prerequisite.
fn valid_match() -> impl Strategy<Value = Match> {
    (proto(), l2_fields())
        .prop_flat_map(|(proto, l2)| {
            let (eth, upper): (Option<u16>, BoxedStrategy<Set>) = match proto {
                Proto::None => (None, Just(Set::new()).boxed()),
                Proto::Other(t) => (Some(t), Just(Set::new()).boxed()),
                Proto::Arp => (Some(0x0806), arp_fields().boxed()),
                Proto::Ipv4(p) | Proto::Ipv6(p) => {
                    let v6 = matches!(proto, Proto::Ipv6(_));
                    let mut base = Set::new();
                    if let Some(p) = p {
                        base.push((Field::NwProto, u128::from(p), 0xff));
                    }
                    (
                        Some(if v6 { 0x86dd } else { 0x0800 }),
                        ip_fields(v6, p)
                            .prop_map(move |mut s| {
                                s.extend(base.iter().copied());
                                s
                            })
                            .boxed(),
                    )
                }
            };
            (Just(eth), Just(l2), upper)
        })
        .prop_map(|(eth, l2, upper)| {
            let mut m = Match::ANY;
            if let Some(t) = eth {
                m.set_exact(Field::EthType, u128::from(t));
            }
            for (f, v, mask) in l2.into_iter().chain(upper) {
                m.set(f, v, mask);
            }
            m
        })
}

fn mac() -> impl Strategy<Value = [u8; 6]> {
    any::<[u8; 6]>()
}

/// One action other than `goto_table` (which only ends a rule's list).
fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        port().prop_map(Action::Output),
        Just(Action::Normal),
        Just(Action::Flood),
        Just(Action::All),
        Just(Action::InPort),
        (0u16..4096).prop_map(Action::SetVlanVid),
        (0u8..8).prop_map(Action::SetVlanPcp),
        Just(Action::StripVlan),
        prop_oneof![Just(0x8100u16), Just(0x88a8)].prop_map(Action::PushVlan),
        mac().prop_map(Action::SetEthSrc),
        mac().prop_map(Action::SetEthDst),
        any::<u32>().prop_map(Action::SetIpv4Src),
        any::<u32>().prop_map(Action::SetIpv4Dst),
        any::<u16>().prop_map(Action::SetTpSrc),
        any::<u16>().prop_map(Action::SetTpDst),
        Just(Action::DecTtl),
        any::<u32>().prop_map(Action::SetTunnel),
        (0u8..255).prop_map(Action::Resubmit),
        any::<u32>().prop_map(Action::Group),
    ]
}

fn valid_rule() -> impl Strategy<Value = Rule> {
    (
        0u8..255,
        any::<u16>(),
        valid_match(),
        prop::collection::vec(action(), 0..6),
        any::<bool>(),
        any::<u64>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
    )
        .prop_map(
            |(table, priority, m, mut actions, goto, cookie, idle, hard, later)| {
                if goto && table < 254 {
                    let span = 254 - table;
                    actions.push(Action::GotoTable(table + 1 + later % span));
                }
                Rule {
                    table,
                    priority,
                    r#match: m,
                    actions,
                    cookie,
                    idle_timeout: idle,
                    hard_timeout: hard,
                }
            },
        )
}

fn valid_group() -> impl Strategy<Value = Group> {
    (
        any::<u32>(),
        prop_oneof![Just(GroupType::Select), Just(GroupType::All)],
        prop::collection::vec(
            (
                prop_oneof![Just(1u16), any::<u16>()],
                prop::collection::vec(action(), 0..4),
            )
                .prop_map(|(weight, actions)| Bucket { weight, actions }),
            0..4,
        ),
    )
        .prop_map(|(id, kind, buckets)| Group { id, kind, buckets })
}

/// Edits of a valid rule's text: deletions, insertions, replacements.
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, char),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        Just(",".to_string()),
        Just("=".to_string()),
        Just("/".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(":".to_string()),
        Just("->".to_string()),
        Just("actions=".to_string()),
        Just("0x".to_string()),
        Just("tcp".to_string()),
        Just("é".to_string()),
        "[ -~]{1,4}",
    ];
    prop_oneof![
        (any::<usize>(), 1usize..6).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), piece).prop_map(|(a, s)| Edit::Insert(a, s)),
        (any::<usize>(), any::<char>()).prop_map(|(a, c)| Edit::Replace(a, c)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let len = chars.len().max(1);
        match e {
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                for (i, c) in s.chars().enumerate() {
                    chars.insert(at + i, c);
                }
            }
            Edit::Replace(at, c) => {
                if !chars.is_empty() {
                    let at = at % chars.len();
                    chars[at] = *c;
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// Whatever parses must print canonically: parse(print(r)) == r.
fn check_canonical(text: &str, ports: &dyn PortNames) -> Result<(), TestCaseError> {
    if let Ok(rule) = parse_rule(text, ports) {
        let printed = format_rule(&rule, ports);
        let again = parse_rule(&printed, ports)
            .map_err(|e| TestCaseError::fail(format!("{text} -> {printed}: {e}")))?;
        prop_assert_eq!(&again, &rule);
        prop_assert_eq!(format_rule(&again, ports), printed);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_rules_parse_back_to_the_same_rule(rule in valid_rule()) {
        let ports = names();
        let printed = format_rule(&rule, &ports);
        let parsed = parse_rule(&printed, &ports)
            .map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&parsed, &rule, "{}", printed);
        prop_assert_eq!(format_rule(&parsed, &ports), printed);
    }

    #[test]
    fn printed_matches_parse_back(m in valid_match(), table in opt(0u8..255), priority in opt(any::<u16>())) {
        let ports = names();
        let mut text = format_match(&m, &ports);
        if let Some(p) = priority {
            text = format!("priority={p},{text}");
        }
        if let Some(t) = table {
            text = format!("table={t},{text}");
        }
        let spec = parse_match(&text, &ports)
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(spec.r#match, m);
        prop_assert_eq!(spec.table, table);
        prop_assert_eq!(spec.priority, priority);
    }

    #[test]
    fn printed_groups_parse_back(g in valid_group()) {
        let ports = names();
        let printed = format_group(&g, &ports);
        let parsed = parse_group(&printed, &ports)
            .map_err(|e| TestCaseError::fail(format!("{printed}: {e}")))?;
        prop_assert_eq!(&parsed, &g);
        prop_assert_eq!(format_group(&parsed, &ports), printed);
    }

    #[test]
    fn mutated_rules_never_panic_and_what_parses_is_canonical(
        rule in valid_rule(),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let ports = names();
        let text = apply(&format_rule(&rule, &ports), &edits);
        check_canonical(&text, &ports)?;
        let _ = parse_match(&text, &ports);
        let _ = parse_group(&text, &ports);
    }

    #[test]
    fn mutated_groups_never_panic(g in valid_group(), edits in prop::collection::vec(edit(), 1..4)) {
        let ports = names();
        let text = apply(&format_group(&g, &ports), &edits);
        if let Ok(parsed) = parse_group(&text, &ports) {
            let printed = format_group(&parsed, &ports);
            prop_assert_eq!(parse_group(&printed, &ports).ok(), Some(parsed));
        }
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,80}") {
        let ports = names();
        check_canonical(&text, &ports)?;
        let _ = parse_match(&text, &ports);
        let _ = parse_group(&text, &ports);
        let _ = parse_flows_file(&text, &ports);
    }

    #[test]
    fn random_syntax_soup_never_panics(
        text in "([a-z_]{1,10}|[0-9]{1,6}|0x[0-9a-f]{1,5}|[=,:/()+ .-]|->){0,40}"
    ) {
        let ports = names();
        check_canonical(&text, &ports)?;
        let _ = parse_match(&text, &ports);
        let _ = parse_group(&text, &ports);
    }
}

#[test]
fn hand_picked_rules_round_trip() {
    let ports = names();
    for text in [
        "table=0,priority=100,in_port=tap1,dl_type=0x0800,nw_src=10.0.0.0/24,nw_proto=6,tp_dst=80,actions=mod_vlan_vid:10,output:tap2",
        "priority=10,arp,arp_tpa=10.0.0.1,actions=FLOOD",
        "table=1,ipv6,ipv6_dst=fe80::/10,actions=resubmit(,2),goto_table:3",
        "dl_vlan=0xffff,actions=push_vlan:0x8100,mod_vlan_vid:5,output:veth-a",
    ] {
        check_canonical(text, &ports).unwrap();
        let r = parse_rule(text, &ports).unwrap();
        assert_eq!(parse_rule(&format_rule(&r, &ports), &ports).unwrap(), r);
        assert_eq!(r.r#match.get(Field::EthType).1 != 0, !text.starts_with("dl_vlan"));
    }
}
