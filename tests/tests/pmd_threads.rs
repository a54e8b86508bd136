//! PMD threads: forwarding by pinned threads (no caller-driven polling),
//! rx queue assignment, rebalancing by load, and stopping cleanly.

use datapath::pipeline::VlanMode;
use datapath::pmd::IdleMode;
use datapath::port::{MemoryPort, MemoryPortHandle};
use datapath::switch::{Switch, SwitchConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tests::frames::{l2, mac, BROADCAST};

fn two_cores() -> bool {
    std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

fn switch(cores: Vec<usize>, n: u32) -> (Arc<Switch>, Vec<MemoryPortHandle>) {
    let sw = Switch::new(SwitchConfig {
        pmd_cores: cores,
        idle: IdleMode::Adaptive,
        ..SwitchConfig::default()
    })
    .expect("switch with PMD threads");
    sw.add_bridge("br0").unwrap();
    let hosts = (1..=n)
        .map(|no| {
            let (p, h) = MemoryPort::new(&format!("q{no}"), mac(no as u8), 4096);
            sw.add_port("br0", no, Arc::new(p), VlanMode::default())
                .unwrap();
            h
        })
        .collect();
    (sw, hosts)
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn pmd_thread_forwards_without_the_caller_polling() {
    let (sw, hosts) = switch(vec![0], 2);
    let mut pool = datapath::packet::PacketPool::new(64, 0, 0);
    assert!(hosts[0].inject(&l2(mac(1), BROADCAST), &mut pool));
    eventually("flooded frame", || {
        hosts[1].pending_to_switch() == 0 && {
            let got = hosts[1].take_frames();
            !got.is_empty()
        }
    });
    assert_eq!(sw.pmd_stats()[0].core, Some(0));
    sw.shutdown();
}

#[test]
fn rebalance_puts_the_two_busiest_ports_on_different_pmds() {
    if !two_cores() {
        eprintln!("SKIP rebalance test: needs two cores");
        return;
    }
    let (sw, hosts) = switch(vec![0, 1], 4);
    let mut pool = datapath::packet::PacketPool::new(4096, 0, 0);
    // Ports 1 and 3 are busy, 2 and 4 nearly idle. Round-robin placed
    // 1 and 3 on the same PMD.
    let before = sw.pmd_stats();
    let pmd_of = |stats: &[datapath::switch::PmdInfo], name: &str| {
        stats
            .iter()
            .find(|p| p.rxqs.iter().any(|(n, _)| n == name))
            .map(|p| p.index)
    };
    assert_eq!(pmd_of(&before, "q1"), pmd_of(&before, "q3"));
    for (port, count) in [(0usize, 2000), (2, 2000), (1, 5), (3, 5)] {
        for _ in 0..count / 100 {
            for _ in 0..100 {
                let f = l2(mac(port as u8 + 1), mac(0x70));
                while !hosts[port].inject(&f, &mut pool) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            for h in &hosts {
                h.recycle_output();
            }
        }
    }
    eventually("all frames received", || {
        hosts.iter().all(|h| h.pending_to_switch() == 0)
    });
    let assignment = sw.pmd_rebalance();
    assert_eq!(assignment.len(), 4);
    let after = sw.pmd_stats();
    assert_ne!(pmd_of(&after, "q1"), pmd_of(&after, "q3"), "{assignment:?}");
    // Forwarding still works after the move.
    let port3 = sw.ports().into_iter().find(|p| p.name == "q3").unwrap();
    let rx_before = port3.stats.rx_packets;
    assert!(hosts[2].inject(&l2(mac(3), mac(0x71)), &mut pool));
    eventually("frame on rebalanced port", || {
        sw.ports()
            .into_iter()
            .find(|p| p.name == "q3")
            .is_some_and(|p| p.stats.rx_packets > rx_before)
    });
}
