//! Differential property tests: random rule sets and random packets give
//! the same forwarding decision and the same rule counters through the
//! cached datapath (EMC + megaflow + slow path, tuple-space tables) as
//! through the linear reference classifier — including after random rule
//! changes between packets. Also: every megaflow the slow path produces is
//! exact, i.e. any key agreeing with it under its mask translates the same.

use datapath::flow::{Field, FlowKey};
use datapath::pipeline::{reference, Action, Match, Rule};
use datapath::switch::FlowFilter;
use proptest::prelude::*;
use std::collections::HashMap;
use tests::frames::{mac, tcp4, udp4};
use tests::lab::Lab;

const PORTS: usize = 4;

#[derive(Clone, Debug)]
struct Pkt {
    in_port: u32,
    proto: u8,
    src: [u8; 4],
    sport: u16,
    dport: u16,
}

impl Pkt {
    fn frame(&self) -> Vec<u8> {
        let (s, d) = (mac(self.in_port as u8), mac(0x40));
        if self.proto == 6 {
            tcp4(s, d, self.src, [10, 9, 9, 9], self.sport, self.dport, b"x")
        } else {
            udp4(s, d, self.src, [10, 9, 9, 9], self.sport, self.dport, b"x")
        }
    }

    fn key(&self) -> FlowKey {
        let mut k = FlowKey::ZERO;
        k.set(Field::InPort, u128::from(self.in_port));
        k.set(Field::EthType, 0x0800);
        k.set(Field::NwProto, u128::from(self.proto));
        k.set(Field::NwSrc, u128::from(u32::from_be_bytes(self.src)));
        k.set(Field::NwDst, u128::from(u32::from_be_bytes([10, 9, 9, 9])));
        k.set(Field::TpSrc, u128::from(self.sport));
        k.set(Field::TpDst, u128::from(self.dport));
        k
    }
}

fn pkt() -> impl Strategy<Value = Pkt> {
    (
        1..=3u32,
        prop_oneof![Just(6u8), Just(17u8)],
        (0..4u8, 0..4u8),
        1000..1004u16,
        prop_oneof![Just(80u16), Just(443), Just(53), Just(81), Just(95)],
    )
        .prop_map(|(in_port, proto, (x, y), sport, dport)| Pkt {
            in_port,
            proto,
            src: [10, 0, x, y],
            sport,
            dport,
        })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        0..4u16,
        proptest::option::of(1..=3u32),
        proptest::option::of(prop_oneof![Just(6u8), Just(17u8)]),
        proptest::option::of((
            0..4u8,
            0..4u8,
            prop_oneof![Just(8u32), Just(16), Just(24), Just(32)],
        )),
        proptest::option::of((
            prop_oneof![Just(80u16), Just(443), Just(53)],
            prop_oneof![Just(0xffffu16), Just(0xfff0)],
        )),
        proptest::option::of(1..=PORTS as u32),
        any::<bool>(),
    )
        .prop_map(|(priority, in_port, proto, src, tp, out, ip)| {
            let mut m = Match::ANY;
            if let Some(p) = in_port {
                m.set_exact(Field::InPort, u128::from(p));
            }
            let needs_ip = ip || proto.is_some() || src.is_some() || tp.is_some();
            if needs_ip {
                m.set_exact(Field::EthType, 0x0800);
            }
            if let Some((x, y, len)) = src {
                let v = u32::from_be_bytes([10, 0, x, y]);
                let mask = if len == 32 {
                    u32::MAX
                } else {
                    !(u32::MAX >> len)
                };
                m.set(Field::NwSrc, u128::from(v), u128::from(mask));
            }
            let proto = if tp.is_some() {
                Some(proto.unwrap_or(6))
            } else {
                proto
            };
            if let Some(p) = proto {
                m.set_exact(Field::NwProto, u128::from(p));
            }
            if let Some((v, mask)) = tp {
                m.set(Field::TpDst, u128::from(v), u128::from(mask));
            }
            let actions = out.map(Action::Output).into_iter().collect();
            Rule::new(0, priority, m, actions)
        })
}

#[derive(Clone, Debug)]
enum Op {
    Add(Box<Rule>),
    DelStrict(usize),
    Send(Vec<Pkt>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => rule().prop_map(|r| Op::Add(Box::new(r))),
        1 => any::<usize>().prop_map(Op::DelStrict),
        3 => proptest::collection::vec(pkt(), 1..12).prop_map(Op::Send),
    ]
}

/// The model: rules in installation order with their expected counters.
#[derive(Default)]
struct Model {
    rules: Vec<Rule>,
    hits: Vec<u64>,
}

impl Model {
    fn add(&mut self, r: Rule) {
        if let Some(i) = self
            .rules
            .iter()
            .position(|o| o.table == r.table && o.priority == r.priority && o.r#match == r.r#match)
        {
            self.rules.remove(i);
            self.hits.remove(i);
        }
        self.rules.push(r);
        self.hits.push(0);
    }

    /// Expected receiving port (None: dropped), crediting the rule hit.
    fn forward(&mut self, p: &Pkt) -> Option<usize> {
        let i = reference::lookup(&self.rules, 0, &p.key())?;
        self.hits[i] += 1;
        match self.rules[i].actions.first() {
            Some(Action::Output(o)) if *o != p.in_port => Some(*o as usize),
            _ => None,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn cached_datapath_agrees_with_linear_reference(ops in proptest::collection::vec(op(), 1..30)) {
        let lab = Lab::plain(PORTS);
        lab.sw.del_flows("br0", &FlowFilter::default()).unwrap();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Add(r) => {
                    lab.sw.add_flow("br0", (*r).clone()).unwrap();
                    model.add(*r);
                }
                Op::DelStrict(i) => {
                    if model.rules.is_empty() {
                        continue;
                    }
                    let i = i % model.rules.len();
                    let r = model.rules.remove(i);
                    model.hits.remove(i);
                    let n = lab.sw.del_flows("br0", &FlowFilter {
                        table: Some(0),
                        r#match: r.r#match,
                        strict_priority: Some(r.priority),
                    }).unwrap();
                    prop_assert_eq!(n, 1);
                }
                Op::Send(pkts) => {
                    for p in pkts {
                        let want = model.forward(&p);
                        let got = Lab::receivers(&lab.exchange(p.in_port as usize, &p.frame()));
                        prop_assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "{:?}", p);
                    }
                }
            }
        }
        let counts: HashMap<(u16, Match), u64> = lab.sw.dump_flows("br0").unwrap()
            .into_iter()
            .map(|f| ((f.rule.priority, f.rule.r#match), f.n_packets))
            .collect();
        prop_assert_eq!(counts.len(), model.rules.len());
        for (r, hits) in model.rules.iter().zip(&model.hits) {
            prop_assert_eq!(counts[&(r.priority, r.r#match)], *hits, "{:?}", r);
        }
    }

    #[test]
    fn megaflow_masks_are_exact(rules in proptest::collection::vec(rule(), 1..20), a in pkt(), b in pkt()) {
        use datapath::pipeline::{translate, BridgePort, BridgeView, Fdb, InstalledRule, Pipeline, RuleStats, VlanMode};
        use std::sync::Arc;
        let installed: Vec<Arc<InstalledRule>> = rules.iter().enumerate().map(|(i, r)| Arc::new(InstalledRule {
            rule: r.clone(), seq: i as u64, stats: RuleStats::new(0),
        })).collect();
        let pipeline = Pipeline::build(installed, []);
        let fdb = Fdb::new(64, 300);
        let ports: Vec<BridgePort> = (1..=PORTS as u32).map(|no| BridgePort { no, vlan: VlanMode::default(), is_tunnel: false, security: None }).collect();
        let view = BridgeView { pipeline: &pipeline, fdb: &fdb, ports: &ports };
        let ta = translate(view, &a.key(), 0, false);
        // b, forced to agree with a on every bit of a's megaflow mask.
        let kb = b.key();
        let mut merged = FlowKey::ZERO;
        for w in 0..datapath::flow::KEY_WORDS {
            merged.words[w] = (a.key().words[w] & ta.mask.words[w]) | (kb.words[w] & !ta.mask.words[w]);
        }
        let tb = translate(view, &merged, 0, false);
        prop_assert_eq!(ta.actions, tb.actions);
        prop_assert_eq!(
            ta.rules.iter().map(|r| r.seq).collect::<Vec<_>>(),
            tb.rules.iter().map(|r| r.seq).collect::<Vec<_>>()
        );
    }
}
