//! In-memory integration tests: a learning bridge of memory ports, driven
//! deterministically, exercising NORMAL, VLANs, FDB aging and limits, flow
//! rules with priorities, resubmit, goto_table and groups, counters and
//! timeouts.

use datapath::drop::DropReason;
use datapath::flow::Field;
use datapath::pipeline::{Action, Bucket, Group, GroupType, Match, Rule, VlanMode};
use datapath::switch::{FlowFilter, SwitchConfig};
use tests::frames::{l2, mac, tagged, udp4, vid_of, BROADCAST};
use tests::lab::Lab;

#[test]
fn unknown_unicast_is_flooded_to_all_ports_but_ingress() {
    let lab = Lab::plain(4);
    let got = lab.exchange(1, &l2(mac(1), mac(2)));
    assert_eq!(Lab::receivers(&got), vec![2, 3, 4]);
    assert_eq!(got[1][0], l2(mac(1), mac(2)));
}

#[test]
fn broadcast_is_flooded_and_learned_destinations_go_to_one_port() {
    let lab = Lab::plain(4);
    let got = lab.exchange(1, &l2(mac(1), BROADCAST));
    assert_eq!(Lab::receivers(&got), vec![2, 3, 4]);
    // mac(1) is now known on port 1: the reply goes there only.
    let got = lab.exchange(3, &l2(mac(3), mac(1)));
    assert_eq!(Lab::receivers(&got), vec![1]);
    // And mac(3) on port 3.
    let got = lab.exchange(1, &l2(mac(1), mac(3)));
    assert_eq!(Lab::receivers(&got), vec![3]);
    let fdb = lab.sw.fdb_show("br0").unwrap();
    assert_eq!(fdb.len(), 2);
    assert!(fdb.iter().any(|(e, port)| e.mac == mac(3) && port == "p3"));
}

#[test]
fn mac_move_redirects_traffic_to_the_new_port() {
    let lab = Lab::plain(3);
    lab.exchange(1, &l2(mac(1), BROADCAST));
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(1)))),
        vec![1]
    );
    // mac(1) moves to port 3.
    lab.exchange(3, &l2(mac(1), BROADCAST));
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(1)))),
        vec![3]
    );
    assert_eq!(lab.sw.fdb_stats("br0").unwrap().moved, 1);
}

#[test]
fn learned_entries_age_out_and_traffic_floods_again() {
    let mut lab = Lab::with_config(
        vec![VlanMode::default(); 3],
        SwitchConfig {
            fdb_aging_secs: 10,
            ..SwitchConfig::default()
        },
    );
    lab.exchange(1, &l2(mac(1), BROADCAST));
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(1)))),
        vec![1]
    );
    // Cached hits keep mac(2) fresh; mac(1) was last seen at t=1s.
    lab.now_ms += 9_000;
    lab.sw.run_timers(lab.now_ms);
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(1)))),
        vec![1]
    );
    lab.now_ms += 2_000;
    lab.sw.run_timers(lab.now_ms);
    assert_eq!(lab.sw.fdb_stats("br0").unwrap().aged, 1);
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(1)))),
        vec![1, 3]
    );
}

#[test]
fn cache_hits_refresh_the_source_entry_so_active_macs_do_not_age() {
    let mut lab = Lab::with_config(
        vec![VlanMode::default(); 2],
        SwitchConfig {
            fdb_aging_secs: 10,
            ..SwitchConfig::default()
        },
    );
    for _ in 0..5 {
        lab.exchange(1, &l2(mac(1), mac(2)));
        lab.now_ms += 4_000;
        lab.sw.run_timers(lab.now_ms);
    }
    let fdb = lab.sw.fdb_show("br0").unwrap();
    assert!(fdb.iter().any(|(e, _)| e.mac == mac(1)), "{fdb:?}");
}

#[test]
fn access_and_trunk_ports_tag_and_untag_by_vlan() {
    let lab = Lab::new(vec![
        VlanMode::Access(10),
        VlanMode::Access(10),
        VlanMode::Access(20),
        VlanMode::Trunk(vec![]),
    ]);
    let got = lab.exchange(1, &l2(mac(1), BROADCAST));
    assert_eq!(Lab::receivers(&got), vec![2, 4]);
    assert_eq!(vid_of(&got[1][0]), None);
    assert_eq!(vid_of(&got[3][0]), Some(10));
    // Tagged VLAN 20 from the trunk reaches only the VLAN 20 access port,
    // untagged.
    let got = lab.exchange(4, &tagged(&l2(mac(4), BROADCAST), 20));
    assert_eq!(Lab::receivers(&got), vec![3]);
    assert_eq!(got[2][0], l2(mac(4), BROADCAST));
    // A tagged frame on an access port is filtered and counted.
    let got = lab.exchange(1, &tagged(&l2(mac(1), BROADCAST), 20));
    assert!(Lab::receivers(&got).is_empty());
    assert_eq!(lab.sw.drop_stats().get(DropReason::VlanFiltered), 1);
}

#[test]
fn trunk_with_a_vlan_list_carries_only_those_vlans() {
    let lab = Lab::new(vec![
        VlanMode::Access(30),
        VlanMode::Trunk(vec![10, 20]),
        VlanMode::Trunk(vec![30]),
    ]);
    let got = lab.exchange(1, &l2(mac(1), BROADCAST));
    assert_eq!(Lab::receivers(&got), vec![3]);
    assert_eq!(vid_of(&got[2][0]), Some(30));
}

fn ip_udp_match() -> Match {
    Match::ANY
        .with(Field::EthType, 0x0800)
        .with(Field::NwProto, 17)
}

#[test]
fn higher_priority_rule_overrides_normal() {
    let lab = Lab::plain(4);
    lab.sw
        .add_flow(
            "br0",
            Rule::new(
                0,
                100,
                ip_udp_match().with(Field::InPort, 1),
                vec![Action::Output(3)],
            ),
        )
        .unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), mac(2)))),
        vec![3]
    );
    // From port 2 the NORMAL rule still applies.
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(9)))),
        vec![1, 3, 4]
    );
    let flows = lab.sw.dump_flows("br0").unwrap();
    assert_eq!(flows[0].rule.priority, 100);
    assert_eq!(flows[0].n_packets, 1);
    assert_eq!(flows[1].n_packets, 1);
}

#[test]
fn resubmit_and_goto_table_chain_tables() {
    let lab = Lab::plain(4);
    lab.sw
        .replace_flows(
            "br0",
            vec![
                Rule::new(
                    0,
                    10,
                    Match::ANY,
                    vec![Action::Resubmit(1), Action::Output(4)],
                ),
                Rule::new(
                    1,
                    10,
                    Match::ANY.with(Field::InPort, 1),
                    vec![Action::Output(2)],
                ),
                Rule::new(1, 5, Match::ANY, vec![Action::GotoTable(2)]),
                Rule::new(2, 5, Match::ANY, vec![Action::Output(3)]),
            ],
            None,
        )
        .unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), mac(2)))),
        vec![2, 4]
    );
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(2), mac(1)))),
        vec![3, 4]
    );
}

#[test]
fn table_miss_is_a_counted_drop() {
    let lab = Lab::plain(2);
    let n = lab.sw.del_flows("br0", &FlowFilter::default()).unwrap();
    assert_eq!(n, 1);
    assert!(Lab::receivers(&lab.exchange(1, &l2(mac(1), mac(2)))).is_empty());
    assert_eq!(lab.sw.drop_stats().get(DropReason::NoMatch), 1);
}

#[test]
fn non_strict_del_flows_keeps_the_wider_catch_all() {
    let lab = Lab::plain(2);
    let icmp = Match::ANY
        .with(Field::EthType, 0x0800)
        .with(Field::NwProto, 1);
    lab.sw
        .add_flow("br0", Rule::new(0, 50, icmp, vec![]))
        .unwrap();
    lab.sw
        .add_flow("br0", Rule::new(0, 60, icmp.with(Field::InPort, 1), vec![]))
        .unwrap();
    let n = lab
        .sw
        .del_flows(
            "br0",
            &FlowFilter {
                r#match: icmp,
                ..FlowFilter::default()
            },
        )
        .unwrap();
    assert_eq!(n, 2);
    let flows = lab.sw.dump_flows("br0").unwrap();
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].rule, Rule::default_normal());
}

#[test]
fn select_group_spreads_flows_and_keeps_each_flow_on_one_bucket() {
    let lab = Lab::plain(4);
    lab.sw
        .add_group(
            "br0",
            Group {
                id: 1,
                kind: GroupType::Select,
                buckets: vec![
                    Bucket {
                        weight: 1,
                        actions: vec![Action::Output(2)],
                    },
                    Bucket {
                        weight: 1,
                        actions: vec![Action::Output(3)],
                    },
                ],
            },
        )
        .unwrap();
    lab.sw
        .add_flow(
            "br0",
            Rule::new(
                0,
                10,
                Match::ANY.with(Field::InPort, 1),
                vec![Action::Group(1)],
            ),
        )
        .unwrap();
    let mut per_port = [0usize; 4];
    for sport in 0..64u16 {
        let f = udp4(
            mac(1),
            mac(9),
            [10, 0, 0, 1],
            [10, 0, 0, 9],
            1000 + sport,
            80,
            b"x",
        );
        let first = Lab::receivers(&lab.exchange(1, &f));
        assert_eq!(first.len(), 1);
        assert_eq!(Lab::receivers(&lab.exchange(1, &f)), first, "flow moved");
        per_port[first[0] - 1] += 1;
    }
    assert!(per_port[1] > 10 && per_port[2] > 10, "{per_port:?}");
}

#[test]
fn all_group_sends_a_copy_per_bucket_with_its_own_edits() {
    let lab = Lab::plain(3);
    lab.sw
        .add_group(
            "br0",
            Group {
                id: 7,
                kind: GroupType::All,
                buckets: vec![
                    Bucket {
                        weight: 1,
                        actions: vec![Action::SetVlanVid(5), Action::Output(2)],
                    },
                    Bucket {
                        weight: 1,
                        actions: vec![Action::Output(3)],
                    },
                ],
            },
        )
        .unwrap();
    lab.sw
        .add_flow("br0", Rule::new(0, 10, Match::ANY, vec![Action::Group(7)]))
        .unwrap();
    let got = lab.exchange(1, &l2(mac(1), mac(2)));
    assert_eq!(vid_of(&got[1][0]), Some(5));
    assert_eq!(got[2][0], l2(mac(1), mac(2)));
}

#[test]
fn idle_and_hard_timeouts_expire_rules() {
    let mut lab = Lab::plain(2);
    let mut idle = Rule::new(
        0,
        10,
        Match::ANY.with(Field::InPort, 1),
        vec![Action::Output(2)],
    );
    idle.idle_timeout = 10;
    let mut hard = Rule::new(
        0,
        10,
        Match::ANY.with(Field::InPort, 2),
        vec![Action::Output(1)],
    );
    hard.hard_timeout = 5;
    lab.sw
        .add_flows("br0", vec![idle.clone(), hard.clone()])
        .unwrap();
    let t0 = lab.sw.now_ms();
    lab.now_ms = t0 + 4_000;
    lab.exchange(1, &l2(mac(1), mac(2)));
    lab.sw.run_timers(t0 + 6_000);
    assert_eq!(lab.sw.take_expired(), vec![("br0".to_string(), hard)]);
    lab.sw.run_timers(t0 + 13_000);
    assert!(lab.sw.take_expired().is_empty(), "idle rule was hit at 4 s");
    lab.sw.run_timers(t0 + 14_500);
    assert_eq!(lab.sw.take_expired(), vec![("br0".to_string(), idle)]);
}

#[test]
fn learning_a_new_mac_does_not_invalidate_unrelated_cached_flows() {
    let lab = Lab::plain(4);
    lab.exchange(1, &l2(mac(1), BROADCAST));
    lab.exchange(2, &l2(mac(2), BROADCAST));
    // Warm the flow mac(1) -> mac(2).
    lab.exchange(1, &l2(mac(1), mac(2)));
    let before = lab.sw.pmd_stats()[0].stats.upcalls;
    // Many new MACs appear on port 3.
    for n in 10..60 {
        lab.exchange(3, &l2(mac(n), BROADCAST));
    }
    let mid = lab.sw.pmd_stats()[0].stats.upcalls;
    assert_eq!(mid - before, 50);
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), mac(2)))),
        vec![2]
    );
    assert_eq!(
        lab.sw.pmd_stats()[0].stats.upcalls,
        mid,
        "unrelated flow re-translated"
    );
}

#[test]
fn learning_the_destination_replaces_its_cached_flood() {
    let lab = Lab::plain(3);
    // mac(2) unknown: flooded, and cached as a flood.
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), mac(2)))),
        vec![2, 3]
    );
    lab.exchange(2, &l2(mac(2), BROADCAST));
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), mac(2)))),
        vec![2]
    );
}

#[test]
fn full_fdb_learns_nothing_new_floods_and_keeps_existing_entries() {
    let lab = Lab::with_config(
        vec![VlanMode::default(); 3],
        SwitchConfig {
            fdb_max: 8,
            ..SwitchConfig::default()
        },
    );
    lab.exchange(2, &l2(mac(2), BROADCAST));
    for n in 100..200 {
        lab.exchange(1, &l2(mac(n), BROADCAST));
    }
    let stats = lab.sw.fdb_stats("br0").unwrap();
    assert_eq!(stats.entries, 8);
    assert!(stats.overflow >= 92, "{stats:?}");
    // mac(2) survived the flood and still gets unicast.
    assert_eq!(
        Lab::receivers(&lab.exchange(3, &l2(mac(3), mac(2)))),
        vec![2]
    );
    // A MAC that was not learned is flooded to.
    assert_eq!(
        Lab::receivers(&lab.exchange(3, &l2(mac(3), mac(150)))),
        vec![1, 2]
    );
}

#[test]
fn runt_frames_are_counted_and_valid_traffic_continues() {
    let lab = Lab::plain(2);
    lab.send(1, &[0u8; 10]);
    lab.send(1, &[0u8; 0]);
    let got = lab.exchange(1, &l2(mac(1), mac(2)));
    assert_eq!(Lab::receivers(&got), vec![2]);
    assert_eq!(lab.sw.drop_stats().get(DropReason::Runt), 2);
}

#[test]
fn replace_flows_keeps_counters_of_unchanged_rules() {
    let lab = Lab::plain(2);
    lab.exchange(1, &l2(mac(1), mac(2)));
    let extra = Rule::new(0, 5, Match::ANY.with(Field::InPort, 9), vec![]);
    lab.sw
        .replace_flows("br0", vec![Rule::default_normal(), extra], None)
        .unwrap();
    let flows = lab.sw.dump_flows("br0").unwrap();
    let normal = flows.iter().find(|f| f.rule.priority == 0).unwrap();
    assert_eq!(normal.n_packets, 1);
}

#[test]
fn trace_explains_without_learning() {
    let lab = Lab::plain(2);
    let mut key = datapath::flow::FlowKey::ZERO;
    key.set(Field::InPort, 1);
    key.set(Field::EthSrc, 0x0200_0000_0001);
    key.set(Field::EthDst, 0x0200_0000_0002);
    let t = lab.sw.trace("br0", &key).unwrap();
    assert!(matches!(
        &t.trace[0],
        datapath::pipeline::TraceEvent::Table { table: 0, rule: Some(r) } if **r == Rule::default_normal()
    ));
    assert_eq!(t.actions, vec![datapath::pipeline::DpAction::Output(2)]);
    assert!(lab.sw.fdb_show("br0").unwrap().is_empty());
}

#[test]
fn capture_copies_both_directions_up_to_the_count_and_writes_pcap() {
    use datapath::port::capture::{write_pcap_header, write_pcap_record, Direction};
    let lab = Lab::plain(2);
    let sink = lab.sw.start_capture("p1", 100, 3).unwrap();
    lab.exchange(1, &l2(mac(1), mac(2)));
    lab.exchange(2, &l2(mac(2), mac(1)));
    lab.exchange(1, &l2(mac(1), mac(2)));
    let frames = sink.drain();
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[0].dir, Direction::Rx);
    assert_eq!(frames[1].dir, Direction::Tx);
    assert_eq!(frames[1].data, l2(mac(2), mac(1)));
    assert!(sink.is_done());
    let mut pcap = Vec::new();
    write_pcap_header(&mut pcap).unwrap();
    for f in &frames {
        write_pcap_record(&mut pcap, f).unwrap();
    }
    assert_eq!(
        pcap.len(),
        24 + frames.iter().map(|f| 16 + f.data.len()).sum::<usize>()
    );
    lab.sw.stop_capture("p1").unwrap();
    lab.exchange(1, &l2(mac(1), mac(2)));
    assert!(sink.drain().is_empty());
    assert!(lab.sw.start_capture("nope", 1, 1).is_err());
}
