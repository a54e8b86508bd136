//! Port security on an in-memory switch (issue 8, item 1): anti-spoofing
//! (`allowed-macs`, `allowed-ips` for IPv4, IPv6 and ARP), the per-port MAC
//! limit (`max-macs`), storm control (`storm-pps`) on cached flows, the
//! slow path's wildcards for security verdicts (property test against the
//! reference model), and a MAC-flood attack of 1,000,000 source MACs
//! against the bridge's FDB limit while two other ports keep talking.

use datapath::drop::DropReason;
use datapath::flow::{Field, FlowKey};
use datapath::pipeline::{
    reference, translate, Action, BridgePort, BridgeView, Fdb, InstalledRule, Match, Pipeline,
    Rule, RuleStats, VlanMode,
};
use datapath::security::{eui64_link_local, IpPrefix, PortSecurity};
use datapath::switch::SwitchConfig;
use etherparse::PacketBuilder;
use proptest::prelude::*;
use std::net::Ipv6Addr;
use std::sync::Arc;
use std::time::Instant;
use tests::frames::{l2, mac, udp4, BROADCAST};
use tests::lab::Lab;

fn ips(list: &[&str]) -> Option<Vec<IpPrefix>> {
    Some(list.iter().map(|s| IpPrefix::parse(s).unwrap()).collect())
}

fn drops(lab: &Lab, r: DropReason) -> u64 {
    lab.sw.drop_stats().get(r)
}

/// An ARP packet (RFC 826) over Ethernet.
fn arp(eth_src: [u8; 6], op: u16, sha: [u8; 6], spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&BROADCAST);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&tpa);
    f.resize(60, 0);
    f
}

/// A Neighbor Solicitation / Advertisement (RFC 4861 §4.3/4.4) for `target`.
fn nd(src_mac: [u8; 6], src: &str, icmp_type: u8, target: &str) -> Vec<u8> {
    let src: Ipv6Addr = src.parse().unwrap();
    let target: Ipv6Addr = target.parse().unwrap();
    let b = PacketBuilder::ethernet2(src_mac, [0x33, 0x33, 0xff, 0, 0, 2])
        .ipv6(
            src.octets(),
            [0xff02, 0, 0, 0, 0, 1, 0xff00, 2]
                .map(u16::to_be_bytes)
                .concat()
                .try_into()
                .unwrap(),
            255,
        )
        .icmpv6_raw(icmp_type, 0, [0; 4]);
    let mut out = Vec::new();
    b.write(&mut out, &target.octets()).unwrap();
    out
}

fn udp6(src_mac: [u8; 6], src: &str, dst: &str) -> Vec<u8> {
    let s: Ipv6Addr = src.parse().unwrap();
    let d: Ipv6Addr = dst.parse().unwrap();
    let b = PacketBuilder::ethernet2(src_mac, BROADCAST)
        .ipv6(s.octets(), d.octets(), 64)
        .udp(1000, 2000);
    let mut out = Vec::new();
    b.write(&mut out, b"six").unwrap();
    out
}

#[test]
fn allowed_macs_drops_foreign_sources_also_from_the_cache() {
    let lab = Lab::plain(3);
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                allowed_macs: Some(vec![mac(1)]),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), BROADCAST))),
        vec![2, 3]
    );
    for _ in 0..3 {
        assert!(Lab::receivers(&lab.exchange(1, &l2(mac(9), BROADCAST))).is_empty());
    }
    assert_eq!(drops(&lab, DropReason::SpoofedMac), 3);
    // The spoofed MAC was never learned, so traffic to it floods.
    assert!(lab
        .sw
        .fdb_show("br0")
        .unwrap()
        .iter()
        .all(|(e, _)| e.mac != mac(9)));
    // The verdict was cached: one translation for the three frames.
    let pmd = &lab.sw.pmd_stats()[0].stats;
    assert_eq!(pmd.upcalls, 2, "{pmd:?}");
    // Other ports are unrestricted.
    assert_eq!(
        Lab::receivers(&lab.exchange(2, &l2(mac(9), BROADCAST))),
        vec![1, 3]
    );
    // Lifting the policy lets the MAC through.
    lab.sw
        .set_port_security("p1", PortSecurity::default())
        .unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(7), BROADCAST))),
        vec![2, 3]
    );
    assert_eq!(lab.sw.ports()[0].security, PortSecurity::default());
}

#[test]
fn allowed_ips_filters_ipv4_sources_but_lets_dhcp_discover_through() {
    let lab = Lab::plain(2);
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                allowed_ips: ips(&["10.0.0.1", "10.1.0.0/16"]),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    let from = |ip: [u8; 4], sport: u16, dport: u16| {
        udp4(mac(1), BROADCAST, ip, [10, 0, 0, 2], sport, dport, b"x")
    };
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &from([10, 0, 0, 1], 5, 6))),
        vec![2]
    );
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &from([10, 1, 7, 9], 5, 6))),
        vec![2]
    );
    assert!(Lab::receivers(&lab.exchange(1, &from([10, 0, 0, 99], 5, 6))).is_empty());
    assert!(Lab::receivers(&lab.exchange(1, &from([10, 2, 0, 1], 5, 6))).is_empty());
    assert_eq!(drops(&lab, DropReason::SpoofedIp), 2);
    // DHCP client → server from 0.0.0.0 passes; other 0.0.0.0 traffic not.
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &from([0, 0, 0, 0], 68, 67))),
        vec![2]
    );
    assert!(Lab::receivers(&lab.exchange(1, &from([0, 0, 0, 0], 68, 53))).is_empty());
    assert_eq!(drops(&lab, DropReason::SpoofedIp), 3);
}

#[test]
fn arp_from_addresses_the_port_does_not_own_is_dropped() {
    let lab = Lab::plain(2);
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                allowed_macs: Some(vec![mac(1)]),
                allowed_ips: ips(&["10.0.0.1"]),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    let ok = arp(mac(1), 2, mac(1), [10, 0, 0, 1], [10, 0, 0, 2]);
    assert_eq!(Lab::receivers(&lab.exchange(1, &ok)), vec![2]);
    // A reply claiming the gateway's address (ARP spoofing).
    let spa = arp(mac(1), 2, mac(1), [10, 0, 0, 254], [10, 0, 0, 2]);
    assert!(Lab::receivers(&lab.exchange(1, &spa)).is_empty());
    assert_eq!(drops(&lab, DropReason::SpoofedIp), 1);
    // A reply whose sender MAC is someone else's, from a legal frame source.
    let sha = arp(mac(1), 2, mac(5), [10, 0, 0, 1], [10, 0, 0, 2]);
    assert!(Lab::receivers(&lab.exchange(1, &sha)).is_empty());
    assert_eq!(drops(&lab, DropReason::SpoofedMac), 1);
    // An ARP probe (sender IP 0.0.0.0, RFC 5227) is how a host checks a
    // new address before using it: allowed.
    let probe = arp(mac(1), 1, mac(1), [0, 0, 0, 0], [10, 0, 0, 1]);
    assert_eq!(Lab::receivers(&lab.exchange(1, &probe)), vec![2]);
}

#[test]
fn ipv6_sources_nd_and_dad_follow_the_allowed_list() {
    let lab = Lab::plain(2);
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                allowed_macs: Some(vec![mac(1)]),
                allowed_ips: ips(&["fd00::1"]),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &udp6(mac(1), "fd00::1", "fd00::2"))),
        vec![2]
    );
    assert!(Lab::receivers(&lab.exchange(1, &udp6(mac(1), "fd00::66", "fd00::2"))).is_empty());
    // NS and NA from a foreign source address.
    assert!(Lab::receivers(&lab.exchange(1, &nd(mac(1), "fd00::66", 135, "fd00::2"))).is_empty());
    assert!(Lab::receivers(&lab.exchange(1, &nd(mac(1), "fd00::66", 136, "fd00::66"))).is_empty());
    assert_eq!(drops(&lab, DropReason::SpoofedIp), 3);
    // DAD (NS from ::) and ND from the MAC's own link-local address pass.
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &nd(mac(1), "::", 135, "fd00::1"))),
        vec![2]
    );
    let ll = eui64_link_local(mac(1)).to_string();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &nd(mac(1), &ll, 135, "fd00::2"))),
        vec![2]
    );
    // An NA from :: is not part of address configuration.
    assert!(Lab::receivers(&lab.exchange(1, &nd(mac(1), "::", 136, "fd00::1"))).is_empty());
    assert_eq!(drops(&lab, DropReason::SpoofedIp), 4);
}

#[test]
fn max_macs_limits_learning_per_port_and_frees_on_aging_and_flush() {
    let mut lab = Lab::with_config(
        vec![VlanMode::default(); 3],
        SwitchConfig {
            fdb_aging_secs: 10,
            ..SwitchConfig::default()
        },
    );
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                max_macs: Some(2),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), BROADCAST))),
        vec![2, 3]
    );
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(2), BROADCAST))),
        vec![2, 3]
    );
    // A third MAC is refused (dropped, counted), twice: the second time
    // from the cache.
    for _ in 0..2 {
        assert!(Lab::receivers(&lab.exchange(1, &l2(mac(3), BROADCAST))).is_empty());
    }
    assert_eq!(drops(&lab, DropReason::PortMacLimit), 2);
    assert_eq!(lab.sw.fdb_stats("br0").unwrap().port_limit, 1);
    let p1 = lab.sw.ports().into_iter().find(|p| p.name == "p1").unwrap();
    assert_eq!(p1.learned_macs, 2);
    // Known MACs keep working, and other ports are not limited.
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(1), BROADCAST))),
        vec![2, 3]
    );
    for n in 10..15 {
        assert_eq!(
            Lab::receivers(&lab.exchange(2, &l2(mac(n), BROADCAST))),
            vec![1, 3]
        );
    }
    // mac(1) is refreshed at t=6s, mac(2) last seen at t=1s: at t=11.5s
    // only mac(2) ages out, which makes room for mac(3) (whose refusal was
    // cached: the port's tag invalidates it).
    lab.now_ms = 6_000;
    lab.exchange(1, &l2(mac(1), BROADCAST));
    lab.now_ms = 11_500;
    lab.sw.run_timers(lab.now_ms);
    let p1 = lab.sw.ports().into_iter().find(|p| p.name == "p1").unwrap();
    assert_eq!(p1.learned_macs, 1);
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(3), BROADCAST))),
        vec![2, 3]
    );
    assert_eq!(drops(&lab, DropReason::PortMacLimit), 2);
    assert!(Lab::receivers(&lab.exchange(1, &l2(mac(4), BROADCAST))).is_empty());
    // A flush empties the port's count.
    lab.sw.fdb_flush("br0").unwrap();
    assert_eq!(
        Lab::receivers(&lab.exchange(1, &l2(mac(4), BROADCAST))),
        vec![2, 3]
    );
}

#[test]
fn storm_control_meters_floods_on_the_fast_path_but_never_known_unicast() {
    let mut lab = Lab::plain(3);
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                storm_pps: Some(10),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    // Port 2's MAC becomes known.
    lab.exchange(2, &l2(mac(2), BROADCAST));
    let send = |lab: &Lab, frame: &[u8], n: usize| -> Vec<usize> {
        for _ in 0..n {
            lab.send(1, frame);
        }
        lab.run();
        lab.take().iter().map(Vec::len).collect()
    };
    // 50 broadcasts in one instant: a burst of 10 passes.
    assert_eq!(send(&lab, &l2(mac(1), BROADCAST), 50), vec![0, 10, 10]);
    assert_eq!(drops(&lab, DropReason::Storm), 40);
    // Unknown unicast is metered too (the bucket is empty).
    assert_eq!(send(&lab, &l2(mac(1), mac(77)), 5), vec![0, 0, 0]);
    // Known unicast is never limited.
    assert_eq!(send(&lab, &l2(mac(1), mac(2)), 50), vec![0, 50, 0]);
    assert_eq!(drops(&lab, DropReason::Storm), 45);
    // Half a second refills 5 tokens.
    lab.now_ms += 500;
    assert_eq!(send(&lab, &l2(mac(1), BROADCAST), 20), vec![0, 5, 5]);
    // All of it on cached flows: four translations in total (port 2's
    // broadcast, and port 1's broadcast, unknown and known unicast).
    assert_eq!(lab.sw.pmd_stats()[0].stats.upcalls, 4);
    // Another port is not metered by port 1's bucket.
    assert_eq!(
        send_from(&lab, 3, &l2(mac(3), BROADCAST), 30),
        vec![30, 30, 0]
    );
}

fn send_from(lab: &Lab, port: usize, frame: &[u8], n: usize) -> Vec<usize> {
    for _ in 0..n {
        lab.send(port, frame);
    }
    lab.run();
    lab.take().iter().map(Vec::len).collect()
}

#[test]
fn storm_control_applies_to_flood_actions_of_rules() {
    let lab = Lab::plain(3);
    lab.sw
        .add_flow(
            "br0",
            Rule::new(
                0,
                100,
                Match::default(),
                vec![Action::Output(3), Action::Flood],
            ),
        )
        .unwrap();
    lab.sw
        .set_port_security(
            "p1",
            PortSecurity {
                storm_pps: Some(2),
                ..PortSecurity::default()
            },
        )
        .unwrap();
    // output:3 is not a flood and is not metered; FLOOD's copies are.
    assert_eq!(
        send_from(&lab, 1, &l2(mac(1), mac(2)), 5),
        vec![0, 2, 5 + 2]
    );
    assert_eq!(drops(&lab, DropReason::Storm), 3);
}

/// Unique, random-looking unicast MACs: the low 40 bits are `i` times an
/// odd constant (a bijection modulo 2^40), the first byte is 0x02.
fn flood_mac(i: u64) -> [u8; 6] {
    let v = i.wrapping_mul(0x9e37_79b9_7f4b) & ((1 << 40) - 1);
    let b = v.to_be_bytes();
    [0x02, b[3], b[4], b[5], b[6], b[7]]
}

#[test]
fn mac_flood_of_a_million_sources_does_not_evict_or_stop_other_ports() {
    const FRAMES: u64 = 1_000_000;
    const BURST: usize = 256;
    let fdb_max = datapath::pipeline::DEFAULT_FDB_MAX;
    let lab = Lab::plain(3);
    // The legitimate hosts introduce themselves.
    lab.exchange(1, &l2(mac(1), BROADCAST));
    lab.exchange(2, &l2(mac(2), BROADCAST));
    let (a_to_b, b_to_a) = (l2(mac(1), mac(2)), l2(mac(2), mac(1)));
    let mut burst: Vec<Vec<u8>> = (0..BURST).map(|_| l2(mac(3), mac(0x77))).collect();
    let start = Instant::now();
    let (mut sent, mut legit_sent, mut legit_ok, mut legit_wrong) = (0u64, 0u64, 0u64, 0u64);
    let mut received = 0u64;
    while sent < FRAMES {
        let n = BURST.min((FRAMES - sent) as usize);
        for (j, f) in burst[..n].iter_mut().enumerate() {
            f[6..12].copy_from_slice(&flood_mac(sent + j as u64));
        }
        let queued = lab
            .sw
            .with_pool(|pool| lab.hosts[2].inject_burst(&burst[..n], pool));
        assert!(queued > 0, "the attacker's ring took nothing");
        sent += queued as u64;
        // Every fourth burst the legitimate pair talks, mid-flood.
        if (sent / BURST as u64) % 4 == 0 {
            lab.send(1, &a_to_b);
            lab.send(2, &b_to_a);
            legit_sent += 2;
        }
        lab.run();
        let got = take_or_release(&lab);
        received += got.released;
        legit_ok += (got.p1_from_mac2 + got.p2_from_mac1) as u64;
        legit_wrong += got.p3_frames as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    let fdb = lab.sw.fdb_stats("br0").unwrap();
    let d = lab.sw.drop_stats();
    println!(
        "MAC flood: {FRAMES} frames with distinct random source MACs in {secs:.2} s \
         ({:.0} frames/s); FDB {} / {fdb_max} entries, learned {}, overflow {}; \
         legitimate unicast {legit_ok}/{legit_sent} delivered, {legit_wrong} leaked to the attacker; \
         {received} frames received by p1+p2; drops {:?}",
        FRAMES as f64 / secs,
        fdb.entries,
        fdb.learned,
        fdb.overflow,
        d.nonzero().collect::<Vec<_>>()
    );
    assert_eq!(fdb.entries, fdb_max);
    // Two legitimate MACs plus what fitted; everything else was refused,
    // each refused frame counted once.
    assert_eq!(fdb.learned, fdb_max as u64);
    assert_eq!(fdb.overflow, FRAMES - (fdb_max as u64 - 2));
    assert_eq!(legit_ok, legit_sent);
    assert_eq!(legit_wrong, 0);
    // Every attacker frame was flooded to both other ports, none was lost
    // (what the hosts received is those copies plus the legitimate frames).
    assert_eq!(received, 2 * FRAMES + legit_ok);
    assert_eq!(d.total(), 0, "{:?}", d.nonzero().collect::<Vec<_>>());
    let entries = lab.sw.fdb_show("br0").unwrap();
    for (m, port) in [(mac(1), "p1"), (mac(2), "p2")] {
        assert!(
            entries.iter().any(|(e, p)| e.mac == m && p == port),
            "{m:?} lost its entry"
        );
    }
}

/// What the hosts received in one round of the flood test.
struct Round {
    released: u64,
    p1_from_mac2: usize,
    p2_from_mac1: usize,
    p3_frames: usize,
}

/// Counts the legitimate frames (source mac(1)/mac(2)) and gives every
/// received buffer back to the switch's pool without copying it out.
fn take_or_release(lab: &Lab) -> Round {
    let mut r = Round {
        released: 0,
        p1_from_mac2: 0,
        p2_from_mac1: 0,
        // After the hosts introduced themselves, nothing should reach the
        // attacker's port: the legitimate pair's unicast is known.
        p3_frames: lab.hosts[2].take_frames().len(),
    };
    let (mut to1, mut to2) = (0, 0);
    r.released += lab.sw.with_pool(|pool| {
        lab.hosts[0].release_output(pool, |f| to1 += usize::from(f[6..12] == mac(2)))
    }) as u64;
    r.released += lab.sw.with_pool(|pool| {
        lab.hosts[1].release_output(pool, |f| to2 += usize::from(f[6..12] == mac(1)))
    }) as u64;
    r.p1_from_mac2 = to1;
    r.p2_from_mac1 = to2;
    r
}

/// Property: the slow path's security verdict equals the reference model,
/// and holds for every key that agrees with the translated key on the
/// megaflow mask (the cache can never let a spoofed frame through or drop
/// a legal one because of a too-wide wildcard).
fn policy() -> impl Strategy<Value = PortSecurity> {
    let macs = prop_oneof![
        Just(None),
        Just(Some(vec![mac(1)])),
        Just(Some(vec![mac(1), mac(2)]))
    ];
    let ip_lists = prop_oneof![
        Just(None),
        Just(ips(&["10.0.0.1"])),
        Just(ips(&["10.0.0.0/30", "fd00::/126"])),
        Just(ips(&["fd00::1"])),
    ];
    (macs, ip_lists).prop_map(|(allowed_macs, allowed_ips)| PortSecurity {
        allowed_macs,
        allowed_ips,
        ..PortSecurity::default()
    })
}

fn key_strategy() -> impl Strategy<Value = FlowKey> {
    let ll1 = u128::from(eui64_link_local(mac(1)));
    (
        1..=3u8,
        prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x0806), Just(0x88cc)],
        prop_oneof![
            Just(0u128),
            Just(0x0a00_0001),
            Just(0x0a00_0003),
            Just(0x0a00_0009),
            Just(0xfd00_u128 << 112 | 1),
            Just(0xfd00_u128 << 112 | 7),
            Just(ll1),
            Just(u128::from(eui64_link_local(mac(2)))),
        ],
        prop_oneof![Just(6u8), Just(17), Just(58), Just(2)],
        prop_oneof![Just(68u16), Just(135), Just(136), Just(1000)],
        prop_oneof![Just(67u16), Just(0), Just(80)],
        1..=3u8,
        0..4u8,
    )
        .prop_map(|(src, ty, nw_src, proto, tp_src, tp_dst, sha, dst)| {
            let mut k = FlowKey::ZERO;
            k.set(Field::InPort, 1);
            k.set(
                Field::EthSrc,
                u128::from(datapath::flow::mac_to_u64(mac(src))),
            );
            k.set(
                Field::EthDst,
                u128::from(datapath::flow::mac_to_u64(mac(0x40 + dst))),
            );
            k.set(Field::EthType, u128::from(ty));
            k.set(Field::NwSrc, nw_src);
            k.set(Field::NwProto, u128::from(proto));
            k.set(Field::TpSrc, u128::from(tp_src));
            k.set(Field::TpDst, u128::from(tp_dst));
            k.set(
                Field::ArpSha,
                u128::from(datapath::flow::mac_to_u64(mac(sha))),
            );
            k
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn security_verdicts_match_the_reference_and_their_megaflows_are_exact(
        sec in policy(),
        a in key_strategy(),
        b in key_strategy(),
    ) {
        let sec = Arc::new(sec);
        let installed = vec![Arc::new(InstalledRule {
            rule: Rule::new(0, 1, Match::default(), vec![Action::Output(2)]),
            seq: 1,
            stats: RuleStats::new(0),
        })];
        let pipeline = Pipeline::build(installed, []);
        let fdb = Fdb::new(64, 300);
        let ports: Vec<BridgePort> = (1..=3u32)
            .map(|no| BridgePort {
                no,
                vlan: VlanMode::default(),
                is_tunnel: false,
                security: (no == 1).then(|| sec.clone()),
            })
            .collect();
        let view = BridgeView { pipeline: &pipeline, fdb: &fdb, ports: &ports };
        let ta = translate(view, &a, 0, false);
        let want = reference::port_security(&sec, &a);
        prop_assert_eq!(ta.drop.filter(|r| matches!(r, DropReason::SpoofedMac | DropReason::SpoofedIp)), want);
        prop_assert_eq!(ta.actions.is_empty(), want.is_some());
        let mut merged = FlowKey::ZERO;
        for w in 0..datapath::flow::KEY_WORDS {
            merged.words[w] = (a.words[w] & ta.mask.words[w]) | (b.words[w] & !ta.mask.words[w]);
        }
        let tb = translate(view, &merged, 0, false);
        prop_assert_eq!(&ta.actions, &tb.actions);
        prop_assert_eq!(ta.drop, tb.drop);
        prop_assert_eq!(reference::port_security(&sec, &merged), want);
    }
}
