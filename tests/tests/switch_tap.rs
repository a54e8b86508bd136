//! System tests of the whole switch (PMD thread, caches, NORMAL) with TAP
//! ports attached to container namespaces (root only; skipped otherwise):
//! ping both ways over IPv4 and IPv6, verified 100 MiB TCP with offloads
//! passed through, software segmentation towards a port without offloads,
//! ports added and removed while traffic flows, and a namespace deleted
//! under a live port.

use datapath::drop::DropReason;
use datapath::pipeline::VlanMode;
use datapath::pmd::IdleMode;
use datapath::port::{LinkState, Port, TapConfig, TapPort};
use datapath::switch::{Switch, SwitchConfig};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tests::{require_root, unique_name, Netns};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const TRAFCHECK: &str = env!("CARGO_BIN_EXE_vsw-trafcheck");

fn pmd_core() -> usize {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if n > 1 {
        1
    } else {
        0
    }
}

/// A switch with one PMD thread and a container namespace per port.
/// Field order is drop order: switch (stops the PMD), ports, namespaces.
struct Topo {
    sw: Arc<Switch>,
    ports: Vec<Arc<TapPort>>,
    ns: Vec<Netns>,
}

fn tap_config(ns: &Netns, host: u8, offloads: bool) -> TapConfig {
    let mut c = TapConfig::container(&unique_name("sw"), ns.name());
    c.ipv4 = vec![(Ipv4Addr::new(10, 98, 0, host), 24)];
    c.ipv6 = vec![(
        Ipv6Addr::new(0xfd00, 0x98, 0, 0, 0, 0, 0, u16::from(host)),
        64,
    )];
    c.offloads = offloads;
    c.persist = false;
    c
}

impl Topo {
    fn new(offloads: &[bool]) -> Topo {
        let sw = Switch::new(SwitchConfig {
            pmd_cores: vec![pmd_core()],
            idle: IdleMode::Adaptive,
            ..SwitchConfig::default()
        })
        .expect("switch");
        sw.add_bridge("br0").unwrap();
        let mut topo = Topo {
            sw,
            ports: Vec::new(),
            ns: Vec::new(),
        };
        for (i, off) in offloads.iter().enumerate() {
            topo.add(i as u8 + 1, *off);
        }
        topo
    }

    fn add(&mut self, host: u8, offloads: bool) {
        let ns = Netns::new("swt");
        let port = Arc::new(TapPort::create(&tap_config(&ns, host, offloads)).expect("tap"));
        self.sw
            .add_port("br0", u32::from(host), port.clone(), VlanMode::default())
            .unwrap();
        self.ports.push(port);
        self.ns.push(ns);
    }

    fn ip(host: u8) -> String {
        format!("10.98.0.{host}")
    }
}

fn ping(ns: &Netns, dst: &str) {
    ns.exec_ok("ping", &["-c", "3", "-i", "0.2", "-W", "3", dst]);
}

/// Verified TCP transfer from namespace `a` to host `b_host` in `b`.
fn tcp_transfer(a: &Netns, b: &Netns, b_host: u8, bytes: u64) -> f64 {
    let addr = format!("{}:5301", Topo::ip(b_host));
    tests::verified_tcp_transfer(TRAFCHECK, a, b, &addr, bytes)
}

const MIB100: u64 = 100 * 1024 * 1024;

#[test]
fn ping_both_ways_and_verified_tcp_cross_the_switch_as_gso_frames() {
    if !require_root("ping_both_ways_and_verified_tcp_cross_the_switch_as_gso_frames") {
        return;
    }
    let _g = serial();
    let t = Topo::new(&[true, true]);
    ping(&t.ns[0], &Topo::ip(2));
    ping(&t.ns[1], &Topo::ip(1));
    t.ns[0].exec_ok(
        "ping",
        &["-6", "-c", "3", "-i", "0.2", "-W", "3", "fd00:98::2"],
    );
    t.ns[1].exec_ok(
        "ping",
        &["-6", "-c", "3", "-i", "0.2", "-W", "3", "fd00:98::1"],
    );
    let gbps = tcp_transfer(&t.ns[0], &t.ns[1], 2, MIB100);
    eprintln!("switch TAP->TAP, offloads on: {gbps:.2} Gbit/s (100 MiB verified)");
    assert!(
        t.ports[0].tap_stats().rx_gso_frames > 0,
        "no GSO frame received"
    );
    assert!(
        t.ports[1].tap_stats().tx_gso_frames > 0,
        "no GSO frame sent"
    );
    let fdb = t.sw.fdb_show("br0").unwrap();
    assert!(fdb.len() >= 2, "{fdb:?}");
    let pmd = &t.sw.pmd_stats()[0];
    assert!(pmd.stats.emc_hits + pmd.stats.megaflow_hits > pmd.stats.upcalls);
}

#[test]
fn gso_frames_are_segmented_in_software_for_a_port_without_offloads() {
    if !require_root("gso_frames_are_segmented_in_software_for_a_port_without_offloads") {
        return;
    }
    let _g = serial();
    let t = Topo::new(&[true, false]);
    ping(&t.ns[0], &Topo::ip(2));
    let gbps = tcp_transfer(&t.ns[0], &t.ns[1], 2, MIB100);
    eprintln!("switch TAP(offloads) -> TAP(no offloads): {gbps:.2} Gbit/s (100 MiB verified)");
    assert!(t.ports[0].tap_stats().rx_gso_frames > 0);
    assert_eq!(t.ports[1].tap_stats().tx_gso_frames, 0);
    assert_eq!(t.ports[1].tap_stats().tx_offload_unsupported, 0);
    // And back: the reverse direction works too.
    let gbps = tcp_transfer(&t.ns[1], &t.ns[0], 1, MIB100 / 4);
    eprintln!("switch TAP(no offloads) -> TAP(offloads): {gbps:.2} Gbit/s (25 MiB verified)");
}

#[test]
fn ports_added_and_removed_while_traffic_flows() {
    if !require_root("ports_added_and_removed_while_traffic_flows") {
        return;
    }
    let _g = serial();
    let mut t = Topo::new(&[true, true]);
    ping(&t.ns[0], &Topo::ip(2));
    // A long transfer runs while a third port comes and goes.
    let addr = format!("{}:5302", Topo::ip(2));
    let bytes = (MIB100 * 3).to_string();
    let rx = t.ns[1].spawn(TRAFCHECK, &["tcp-recv", &addr, &bytes]);
    let tx = t.ns[0].spawn(TRAFCHECK, &["tcp-send", &addr, &bytes]);
    std::thread::sleep(Duration::from_millis(200));
    for round in 0..3 {
        t.add(3, round % 2 == 0);
        ping(&t.ns[2], &Topo::ip(1));
        let p = t.sw.del_port(Some("br0"), t.ports[2].name()).unwrap();
        drop(p);
        t.ports.pop();
        t.ns.pop();
    }
    let out = tx.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rx.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("ok "), "{stdout}");
}

#[test]
fn namespace_deleted_under_a_live_port_takes_only_that_port_down() {
    if !require_root("namespace_deleted_under_a_live_port_takes_only_that_port_down") {
        return;
    }
    let _g = serial();
    let mut t = Topo::new(&[true, true, true]);
    ping(&t.ns[0], &Topo::ip(3));
    let ns3 = t.ns.pop().expect("third namespace");
    ns3.delete();
    // Traffic towards the vanished container is sent and fails there.
    let _ = t.ns[0].exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", &Topo::ip(3)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.ports[2].link() == LinkState::Up && Instant::now() < deadline {
        let _ = t.ns[0].exec("ping", &["-c", "1", "-W", "1", &Topo::ip(3)]);
    }
    assert_ne!(t.ports[2].link(), LinkState::Up, "port stayed up");
    ping(&t.ns[0], &Topo::ip(2));
    ping(&t.ns[1], &Topo::ip(1));
    // Frames still addressed to the dead port are counted, not lost silently.
    let _ = t.ns[0].exec("ping", &["-c", "2", "-i", "0.2", "-W", "1", &Topo::ip(3)]);
    let drops = t.sw.drop_stats();
    eprintln!("drops: {:?}", drops.nonzero().collect::<Vec<_>>());
    assert!(drops.get(DropReason::PortDown) > 0);
}
