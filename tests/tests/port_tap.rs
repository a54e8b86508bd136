//! System tests of TAP ports (root only; skipped with a message otherwise):
//! two namespaces, each attached through a `TapPort`, joined by the
//! test-only forwarder. Ping (IPv4, IPv6), ARP, verified 100 MiB TCP with
//! offloads on and off, UDP loss accounting, MTU 9000, multi-queue,
//! persistence and re-attach, and the faults: missing namespace, busy
//! name, namespace deleted under a live port.
//!
//! The tests take one lock so they run one at a time: the machine has two
//! cores and some tests look at every interface in the root namespace.

use datapath::packet::{Batch, PacketPool};
use datapath::pmd::IdleMode;
use datapath::port::{DownReason, LinkState, Port, TapConfig, TapError, TapIo, TapPort};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tests::forward::Forwarder;
use tests::{have_tool, require_root, unique_name, Netns};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const TRAFCHECK: &str = env!("CARGO_BIN_EXE_vsw-trafcheck");
const IP1: &str = "10.99.0.1";
const IP2: &str = "10.99.0.2";
const IP6_1: &str = "fd00:99::1";
const IP6_2: &str = "fd00:99::2";
const FORWARD_LIMIT: Duration = Duration::from_secs(180);

fn config(netns: &Netns, host: u8, offloads: bool, mtu: Option<u32>) -> TapConfig {
    let mut c = TapConfig::container(&unique_name("tp"), netns.name());
    c.ipv4 = vec![(Ipv4Addr::new(10, 99, 0, host), 24)];
    c.ipv6 = vec![(
        Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, u16::from(host)),
        64,
    )];
    c.offloads = offloads;
    c.mtu = mtu;
    c.persist = false;
    c
}

/// Two namespaces with one TAP port each. Field order = drop order:
/// ports first, then the namespaces.
struct Pair {
    p1: Arc<TapPort>,
    p2: Arc<TapPort>,
    ns1: Netns,
    ns2: Netns,
}

impl Pair {
    fn new(offloads: bool, mtu: Option<u32>, queues: usize) -> Pair {
        Pair::build(offloads, mtu, |c| c.queues = queues)
    }

    fn build(offloads: bool, mtu: Option<u32>, tweak: impl Fn(&mut TapConfig)) -> Pair {
        let ns1 = Netns::new("tapa");
        let ns2 = Netns::new("tapb");
        let mut c1 = config(&ns1, 1, offloads, mtu);
        let mut c2 = config(&ns2, 2, offloads, mtu);
        tweak(&mut c1);
        tweak(&mut c2);
        let p1 = Arc::new(TapPort::create(&c1).expect("create port 1"));
        let p2 = Arc::new(TapPort::create(&c2).expect("create port 2"));
        Pair { p1, p2, ns1, ns2 }
    }

    /// True when both ports run on io_uring (the default); says so when
    /// the kernel has none and the ports run on plain calls.
    fn uses_io_uring(&self) -> bool {
        let on = self.p1.io_mode() == TapIo::IoUring && self.p2.io_mode() == TapIo::IoUring;
        if !on {
            eprintln!("NOTE: io_uring unavailable here; ports run on plain system calls");
        }
        on
    }

    /// A port that started on io_uring must not have fallen back.
    fn assert_no_io_uring_fallback(&self, started_on_io_uring: bool) {
        if started_on_io_uring {
            assert_eq!(self.p1.io_mode(), TapIo::IoUring);
            assert_eq!(self.p2.io_mode(), TapIo::IoUring);
        }
    }

    fn forward(&self) -> Forwarder {
        Forwarder::start(self.p1.clone(), self.p2.clone(), FORWARD_LIMIT)
    }
}

fn ping(ns: &Netns, args: &[&str]) {
    let mut a = vec!["-c", "3", "-i", "0.2", "-W", "3"];
    a.extend_from_slice(args);
    ns.exec_ok("ping", &a);
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends `bytes` from ns1 to ns2 over TCP, verified by the receiver;
/// returns the receiver's Gbit/s.
fn tcp_transfer(pair: &Pair, bytes: u64) -> f64 {
    let addr = format!("{IP2}:5201");
    tests::verified_tcp_transfer(TRAFCHECK, &pair.ns1, &pair.ns2, &addr, bytes)
}

#[test]
fn ping_ipv4_ipv6_and_arp_across_two_tap_ports() {
    if !require_root("ping_ipv4_ipv6_and_arp_across_two_tap_ports") || !have_tool("ping") {
        return;
    }
    let _g = serial();
    let pair = Pair::new(true, None, 1);
    let fwd = pair.forward();
    ping(&pair.ns1, &[IP2]);
    ping(&pair.ns2, &[IP1]);
    ping(&pair.ns1, &["-6", IP6_2]);
    ping(&pair.ns2, &["-6", IP6_1]);
    // ARP resolved ns2's address to port 2's MAC, and the interface in
    // ns1 carries port 1's MAC.
    let neigh = pair.ns1.exec_ok("ip", &["neigh", "show", IP2]);
    assert!(
        neigh.contains(&mac_str(pair.p2.mac())),
        "neighbour entry {neigh:?} lacks {}",
        mac_str(pair.p2.mac())
    );
    let link = pair.ns1.exec_ok("ip", &["-br", "link", "show", "eth0"]);
    assert!(link.contains(&mac_str(pair.p1.mac())), "{link}");
    let (ab, ba) = fwd.stop();
    assert!(ab.tx_packets > 0 && ba.tx_packets > 0, "{ab:?} {ba:?}");
    assert!(pair.p1.stats().rx_packets >= ab.rx_packets);
    assert_eq!(pair.p2.stats().tx_packets, ab.tx_packets);
}

#[test]
fn tcp_100mib_verified_with_offloads_on_crosses_as_gso_frames() {
    if !require_root("tcp_100mib_verified_with_offloads_on_crosses_as_gso_frames") {
        return;
    }
    let _g = serial();
    let pair = Pair::new(true, None, 1);
    assert!(pair.p1.offload_caps().tso && pair.p1.offload_caps().partial_csum);
    let fwd = pair.forward();
    let uring = pair.uses_io_uring();
    let gbps = tcp_transfer(&pair, 100 << 20);
    let (ab, ba) = fwd.stop();
    pair.assert_no_io_uring_fallback(uring);
    eprintln!(
        "TCP 100 MiB through TAP ports, offloads on: {gbps:.2} Gbit/s; a->b {ab:?}; b->a {ba:?}"
    );
    assert!(ab.tcp_gso_frames > 0, "no TCP GSO frame seen: {ab:?}");
    assert!(ab.max_frame > 9000, "largest frame only {} B", ab.max_frame);
    assert!(pair.p1.tap_stats().rx_gso_frames >= ab.gso_frames);
    assert!(pair.p2.tap_stats().tx_gso_frames > 0);
    assert_eq!(pair.p1.stats().rx_dropped, 0);
}

#[test]
fn tcp_100mib_verified_with_offloads_off_has_no_gso_frames() {
    if !require_root("tcp_100mib_verified_with_offloads_off_has_no_gso_frames") {
        return;
    }
    let _g = serial();
    let pair = Pair::new(false, None, 1);
    assert_eq!(pair.p1.offload_caps(), Default::default());
    assert!(!pair.p1.has_vnet_hdr());
    let fwd = pair.forward();
    let uring = pair.uses_io_uring();
    let gbps = tcp_transfer(&pair, 100 << 20);
    let (ab, ba) = fwd.stop();
    pair.assert_no_io_uring_fallback(uring);
    eprintln!("TCP 100 MiB through TAP ports, offloads off: {gbps:.2} Gbit/s; a->b {ab:?}");
    assert_eq!(ab.gso_frames + ba.gso_frames, 0);
    assert_eq!(ab.partial_csum_frames + ba.partial_csum_frames, 0);
    assert!(
        ab.max_frame <= 1514,
        "frame of {} B without offloads",
        ab.max_frame
    );
}

#[test]
fn tcp_100mib_verified_through_plain_syscall_ports_offloads_on_and_off() {
    if !require_root("tcp_100mib_verified_through_plain_syscall_ports_offloads_on_and_off") {
        return;
    }
    let _g = serial();
    for offloads in [true, false] {
        let pair = Pair::build(offloads, None, |c| c.io = TapIo::Syscalls);
        assert_eq!(pair.p1.io_mode(), TapIo::Syscalls);
        let fwd = pair.forward();
        let gbps = tcp_transfer(&pair, 100 << 20);
        let (ab, _) = fwd.stop();
        eprintln!(
            "TCP 100 MiB, plain syscalls, offloads {offloads}: {gbps:.2} Gbit/s; a->b {ab:?}"
        );
        assert_eq!(ab.gso_frames > 0, offloads, "{ab:?}");
        assert_eq!(pair.p1.stats().rx_errors + pair.p2.stats().tx_errors, 0);
    }
}

#[test]
fn udp_burst_loss_is_counted_and_every_frame_accounted_for() {
    if !require_root("udp_burst_loss_is_counted_and_every_frame_accounted_for") {
        return;
    }
    let _g = serial();
    let pair = Pair::new(true, None, 1);
    let fwd = pair.forward();
    // Resolve ARP first so the burst is not queued behind it.
    if have_tool("ping") {
        ping(&pair.ns1, &[IP2]);
    }
    let addr = format!("{IP2}:5301");
    let count = 20_000u64;
    let rx = pair
        .ns2
        .spawn(TRAFCHECK, &["udp-recv", &addr, &count.to_string(), "1000"]);
    std::thread::sleep(Duration::from_millis(300));
    let sent_out = pair
        .ns1
        .exec_ok(TRAFCHECK, &["udp-send", &addr, &count.to_string(), "1200"]);
    let out = rx.wait();
    let recv_out = String::from_utf8_lossy(&out.stdout).into_owned();
    let num = |s: &str, i: usize| -> u64 {
        s.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX)
    };
    let sent = num(&sent_out, 1);
    let received = num(&recv_out, 1);
    let bad = num(&recv_out, 3);
    let (ab, _) = fwd.stop();
    let s2 = pair.p2.stats();
    // Where the rest went: the sender's interface queue (before the
    // switch), the receiving interface's backlog and socket buffer (after).
    let stat = |ns: &Netns, f: &str| {
        let v = ns.exec_ok("cat", &[&format!("/sys/class/net/eth0/statistics/{f}")]);
        v.trim().parse::<u64>().unwrap_or(0)
    };
    let ns1_tx_dropped = stat(&pair.ns1, "tx_dropped");
    let ns2_rx_dropped = stat(&pair.ns2, "rx_dropped");
    let udp = udp_snmp(&pair.ns2);
    let rcvbuf = udp
        .iter()
        .find(|(k, _)| k == "RcvbufErrors")
        .map_or(0, |(_, v)| *v);
    let lost = sent - received.min(sent);
    eprintln!(
        "UDP burst: sent {sent}, received {received} ({lost} lost, {:.2} %); before the switch: \
         ns1 eth0 tx_dropped {ns1_tx_dropped}; switch: port1 rx {}, port2 tx {} dropped {} \
         errors {}; after: ns2 eth0 rx_dropped {ns2_rx_dropped}, UDP {udp:?}",
        lost as f64 * 100.0 / sent.max(1) as f64,
        pair.p1.stats().rx_packets,
        s2.tx_packets,
        s2.tx_dropped,
        s2.tx_errors,
    );
    // Every lost datagram is counted somewhere on its way.
    let accounted = ns1_tx_dropped + s2.tx_dropped + s2.tx_errors + ns2_rx_dropped + rcvbuf;
    assert!(
        accounted >= lost,
        "{lost} lost but only {accounted} counted"
    );
    assert_eq!(bad, 0, "corrupted datagrams");
    assert!(received > 0 && received <= sent, "{sent_out} / {recv_out}");
    // Every frame the forwarder took from port 1 is either sent by port 2
    // or counted as a drop or error there.
    assert_eq!(
        ab.rx_packets,
        s2.tx_packets + s2.tx_dropped + s2.tx_errors,
        "{ab:?} {s2:?}"
    );
    assert!(pair.p1.stats().rx_packets >= received);
}

/// The UDP error counters of a namespace (`/proc/net/snmp`).
fn udp_snmp(ns: &Netns) -> Vec<(String, u64)> {
    let snmp = ns.exec_ok("cat", &["/proc/net/snmp"]);
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    match (udp.next(), udp.next()) {
        (Some(h), Some(v)) => h
            .split_whitespace()
            .zip(v.split_whitespace())
            .skip(1)
            .filter(|(k, _)| k.contains("Err"))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(0)))
            .collect(),
        _ => Vec::new(),
    }
}

#[test]
fn mtu_9000_jumbo_frames_cross_with_and_without_offloads() {
    if !require_root("mtu_9000_jumbo_frames_cross_with_and_without_offloads") || !have_tool("ping")
    {
        return;
    }
    let _g = serial();
    for offloads in [false, true] {
        let pair = Pair::new(offloads, Some(9000), 1);
        assert_eq!(pair.p1.mtu(), 9000);
        let mtu = pair.ns1.exec_ok("cat", &["/sys/class/net/eth0/mtu"]);
        assert_eq!(mtu.trim(), "9000");
        let fwd = pair.forward();
        ping(&pair.ns1, &["-M", "do", "-s", "8972", IP2]);
        ping(&pair.ns2, &["-M", "do", "-s", "8972", IP1]);
        let gbps = tcp_transfer(&pair, 32 << 20);
        let (ab, _) = fwd.stop();
        eprintln!(
            "MTU 9000, offloads {offloads}: TCP {gbps:.2} Gbit/s, largest frame {}",
            ab.max_frame
        );
        if offloads {
            assert!(ab.max_frame >= 9014, "{ab:?}");
        } else {
            // Full-size jumbo frames, never more than MTU + Ethernet header.
            assert_eq!(ab.max_frame, 9014, "{ab:?}");
        }
    }
}

#[test]
fn multi_queue_tap_opens_one_fd_per_queue_and_forwards() {
    if !require_root("multi_queue_tap_opens_one_fd_per_queue_and_forwards") || !have_tool("ping") {
        return;
    }
    let _g = serial();
    let pair = Pair::new(true, None, 2);
    assert_eq!(pair.p1.rx_queues(), 2);
    assert_eq!(pair.p1.tx_queues(), 2);
    assert_ne!(pair.p1.rx_fd(0), pair.p1.rx_fd(1));
    let queues = pair.ns1.exec_ok("ls", &["/sys/class/net/eth0/queues"]);
    assert!(
        queues.contains("rx-1") && queues.contains("tx-1"),
        "{queues}"
    );
    let fwd = pair.forward();
    ping(&pair.ns1, &[IP2]);
    tcp_transfer(&pair, 16 << 20);
    fwd.stop();

    // A persistent multi-queue TAP re-attaches with all its queues.
    let ns = Netns::new("tapc");
    let mut c = config(&ns, 3, true, None);
    c.queues = 2;
    c.persist = true;
    drop(TapPort::create(&c).expect("create persistent multi-queue"));
    let p = TapPort::reattach(&c).expect("reattach multi-queue");
    assert_eq!(p.rx_queues(), 2);
    // A single-queue attach to a multi-queue device is refused.
    c.queues = 1;
    match TapPort::reattach(&c) {
        Err(TapError::NotATap { .. }) => {}
        other => panic!("expected NotATap, got {other:?}"),
    }
    p.destroy().expect("destroy");
}

#[test]
fn persistent_tap_survives_drop_and_reattaches_with_its_addresses() {
    if !require_root("persistent_tap_survives_drop_and_reattaches_with_its_addresses")
        || !have_tool("ping")
    {
        return;
    }
    let _g = serial();
    let ns1 = Netns::new("tapa");
    let ns2 = Netns::new("tapb");
    let mut c1 = config(&ns1, 1, true, None);
    let mut c2 = config(&ns2, 2, true, None);
    c1.persist = true;
    c2.persist = true;
    let p1 = Arc::new(TapPort::create(&c1).expect("create 1"));
    let p2 = Arc::new(TapPort::create(&c2).expect("create 2"));
    let (mac1, mac2) = (p1.mac(), p2.mac());
    let fwd = Forwarder::start(p1.clone(), p2.clone(), FORWARD_LIMIT);
    ping(&ns1, &[IP2]);
    fwd.stop();
    // A second attach while the port holds the queue is refused.
    match TapPort::reattach(&c1) {
        Err(TapError::Busy { .. }) => {}
        other => panic!("expected Busy, got {other:?}"),
    }
    // "Crash": the port objects go away without destroy.
    drop(p1);
    drop(p2);
    // A restart finds the interface and re-attaches rather than creating.
    let (again, reattached) = TapPort::create_or_reattach(&c1).expect("create_or_reattach");
    assert!(reattached);
    drop(again);
    let addr = ns1.exec_ok("ip", &["-br", "addr", "show", "eth0"]);
    assert!(
        addr.contains("10.99.0.1/24"),
        "address gone after drop: {addr}"
    );
    assert!(addr.contains("fd00:99::1/64"), "{addr}");

    let p1 = TapPort::reattach(&c1).expect("reattach 1");
    let p2 = Arc::new(TapPort::reattach(&c2).expect("reattach 2"));
    assert_eq!(p1.mac(), mac1);
    assert_eq!(p2.mac(), mac2);
    assert_eq!(p1.mtu(), 1500);
    assert!(p1.offload_caps().tso);
    let p1 = Arc::new(p1);
    let fwd = Forwarder::start(p1.clone(), p2.clone(), FORWARD_LIMIT);
    ping(&ns1, &[IP2]);
    ping(&ns2, &["-6", IP6_1]);
    fwd.stop();

    // del-port: destroy removes the interface for good.
    let p1 = Arc::try_unwrap(p1).expect("sole owner");
    p1.destroy().expect("destroy");
    let out = ns1.exec("ip", &["link", "show", "eth0"]);
    assert!(!out.status.success(), "eth0 still exists after destroy");
    match TapPort::reattach(&c1) {
        Err(TapError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // With nothing to re-attach to, the same call creates it afresh.
    let (p1, reattached) = TapPort::create_or_reattach(&c1).expect("create");
    assert!(!reattached);
    let addr = ns1.exec_ok("ip", &["-br", "addr", "show", "eth0"]);
    assert!(addr.contains("10.99.0.1/24"), "{addr}");
    p1.destroy().expect("destroy");
}

#[test]
fn new_tap_is_ready_at_once_and_non_persistent_one_disappears_on_drop() {
    if !require_root("new_tap_is_ready_at_once_and_non_persistent_one_disappears_on_drop") {
        return;
    }
    let _g = serial();
    let ns = Netns::new("tapa");
    ns.exec_ok("ip", &["link", "set", "lo", "down"]);
    let p = TapPort::create(&config(&ns, 1, true, None)).expect("create");
    ns.exec_ok("ip", &["link", "show", "eth0"]);
    // The container gets a ready interface: loopback up too, and the IPv6
    // address usable at once (no DAD, so never "tentative").
    let lo = ns.exec_ok("ip", &["-o", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let v6 = ns.exec_ok(
        "ip",
        &["-6", "-o", "addr", "show", "dev", "eth0", "scope", "global"],
    );
    assert!(
        v6.contains("fd00:99::1/64") && !v6.contains("tentative"),
        "{v6}"
    );
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(5);
    while ns.exec("ip", &["link", "show", "eth0"]).status.success() {
        assert!(Instant::now() < deadline, "eth0 outlived its port");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn host_side_tap_without_namespace_is_named_after_the_port() {
    if !require_root("host_side_tap_without_namespace_is_named_after_the_port") {
        return;
    }
    let _g = serial();
    let mut c = TapConfig::new(&unique_name("tph"));
    c.mac = Some([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    c.mtu = Some(4000);
    let p = TapPort::create(&c).expect("create");
    assert_eq!(p.ifname(), c.name);
    let link = tests::ip(&["-o", "link", "show", &c.name]);
    assert!(link.contains("02:11:22:33:44:55"), "{link}");
    assert!(link.contains("mtu 4000") && link.contains(",UP"), "{link}");
    drop(p);
    // The kernel tears an io_uring down asynchronously, and the ring holds
    // the tun file until then: the device goes away shortly after drop.
    let deadline = Instant::now() + Duration::from_secs(3);
    while tests::run("ip", &["link", "show", &c.name])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "{} still exists", c.name);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two TAP ports as ports of the real switch (one bridge, the default
/// NORMAL rule, PMD threads) instead of the test forwarder, for the
/// throughput report (the switch's own system tests are in switch_tap.rs).
struct SwitchPair {
    switch: Arc<datapath::switch::Switch>,
    pair: Pair,
}

impl SwitchPair {
    fn new(offloads: bool, idle: IdleMode, cores: Vec<usize>) -> SwitchPair {
        let pair = Pair::new(offloads, None, 1);
        let cfg = datapath::switch::SwitchConfig {
            pmd_cores: cores,
            idle,
            ..Default::default()
        };
        let switch = datapath::switch::Switch::new(cfg).expect("switch");
        switch.add_bridge("br0").expect("bridge");
        for (no, p) in [(1, &pair.p1), (2, &pair.p2)] {
            let port: Arc<dyn Port> = p.clone();
            switch
                .add_port("br0", no, port, Default::default())
                .expect("add port");
        }
        SwitchPair { switch, pair }
    }
}

impl Drop for SwitchPair {
    fn drop(&mut self) {
        self.switch.shutdown();
    }
}

/// Links in the root namespace that carry this process's temporary TAP
/// names (`vst` + pid in hex, see `temp_ifname`). Only these: other
/// programs on the machine create and delete links there too.
fn own_temporary_links() -> Vec<String> {
    let prefix = format!("vst{:x}", std::process::id() & 0x3f_ffff);
    tests::ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn busy_name_and_missing_namespace_are_clear_errors_leaving_nothing_behind() {
    if !require_root("busy_name_and_missing_namespace_are_clear_errors_leaving_nothing_behind") {
        return;
    }
    let _g = serial();
    let ns = Netns::new("tapa");
    let _first = TapPort::create(&config(&ns, 1, true, None)).expect("create");
    let second = config(&ns, 2, true, None);
    let e = TapPort::create(&second).expect_err("second eth0 in the same netns");
    assert!(matches!(e, TapError::NameBusy { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "port \"{}\": interface name \"eth0\" is already in use in netns \"{}\"",
            second.name,
            ns.name()
        )
    );
    assert_eq!(
        own_temporary_links(),
        Vec::<String>::new(),
        "temporary TAP left in the root namespace"
    );
    let links = ns.exec_ok("ip", &["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 2, "{links}"); // lo and eth0

    // Re-attaching to an interface that is not a TAP is refused by name.
    let other = Netns::new("tapb");
    other.exec_ok(
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
    );
    let c = config(&other, 1, true, None);
    match TapPort::reattach(&c) {
        Err(e @ TapError::NotATap { .. }) => assert!(e.to_string().contains("not a TAP")),
        other => panic!("expected NotATap, got {other:?}"),
    }

    let missing = format!("{}x", ns.name());
    let mut c = config(&ns, 3, true, None);
    c.netns = Some(missing.clone());
    let e = TapPort::create(&c).expect_err("missing netns");
    assert_eq!(
        e.to_string(),
        format!("port \"{}\": netns \"{missing}\" does not exist", c.name)
    );
}

#[test]
fn namespace_deleted_under_a_live_tap_takes_only_that_port_down() {
    if !require_root("namespace_deleted_under_a_live_tap_takes_only_that_port_down") {
        return;
    }
    let _g = serial();
    let Pair { p1, p2, ns1, ns2 } = Pair::new(true, None, 1);
    let fwd = Forwarder::start(p1.clone(), p2.clone(), FORWARD_LIMIT);
    if have_tool("ping") {
        ping(&ns1, &[IP2]);
    }
    ns1.delete();
    let deadline = Instant::now() + Duration::from_secs(10);
    while p1.link() == LinkState::Up {
        assert!(
            Instant::now() < deadline,
            "port 1 never noticed its namespace went away"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ab, _ba) = fwd.stop();
    assert_eq!(p1.link(), LinkState::Down(DownReason::DeviceGone));
    assert_eq!(p1.tap_stats().device_gone, 1);
    assert!(p1.stats().rx_errors >= 1);
    assert!(ab.rx_errors >= 1);

    // The dead port refuses traffic with a typed error and counts the drop.
    let mut pool = PacketPool::new(8, 0, 0);
    let mut batch = Batch::new();
    let mut pkt = pool.alloc(60).expect("buffer");
    pkt.copy_from(&[0xff; 60]);
    batch.push(pkt).expect("room");
    let dropped = p1.stats().tx_dropped;
    assert!(p1.tx_burst(0, &mut batch, &mut pool).is_err());
    assert!(batch.is_empty());
    assert_eq!(p1.stats().tx_dropped, dropped + 1);
    assert!(p1.rx_burst(0, &mut pool, &mut batch).is_err());

    // The other port still works: a broadcast frame goes out.
    assert_eq!(p2.link(), LinkState::Up);
    let mut pkt = pool.alloc(60).expect("buffer");
    pkt.copy_from(&[0xff; 60]);
    batch.push(pkt).expect("room");
    assert_eq!(
        p2.tx_burst(0, &mut batch, &mut pool).expect("tx on port 2"),
        1
    );
    drop(ns2);
}

/// One iperf3 run ns1 → ns2 (`IP2`), both ends on core 0; Gbit/s received.
fn iperf3_gbps(ns1: &Netns, ns2: &Netns, secs: u32) -> f64 {
    let server = ns2.spawn("iperf3", &["-s", "-1", "-A", "0", "-B", IP2]);
    std::thread::sleep(Duration::from_millis(300));
    let out = ns1.exec_ok(
        "iperf3",
        &["-c", IP2, "-t", &secs.to_string(), "-A", "0", "-J"],
    );
    drop(server);
    let at = out
        .find("\"sum_received\"")
        .expect("iperf3 JSON has sum_received");
    let rest = &out[at..];
    let key = "\"bits_per_second\":";
    let v = &rest[rest.find(key).expect("bits_per_second") + key.len()..];
    let end = v.find([',', '\n', '}']).unwrap_or(v.len());
    v[..end].trim().parse::<f64>().expect("number") / 1e9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Kernel bridge anchor: ns1 and ns2 on a Linux bridge in a third
/// namespace; one iperf3 run.
fn kernel_bridge_gbps(secs: u32) -> f64 {
    let br = Netns::new("tapbr");
    let ns1 = Netns::new("tapa");
    let ns2 = Netns::new("tapb");
    br.exec_ok("ip", &["link", "add", "br0", "type", "bridge"]);
    br.exec_ok("ip", &["link", "set", "br0", "up"]);
    for (i, ns) in [(1, &ns1), (2, &ns2)] {
        let v = format!("vb{i}");
        tests::ip(&[
            "link",
            "add",
            &v,
            "netns",
            br.name(),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns.name(),
        ]);
        br.exec_ok("ip", &["link", "set", &v, "master", "br0", "up"]);
        ns.exec_ok(
            "ip",
            &["addr", "add", &format!("10.99.0.{i}/24"), "dev", "eth0"],
        );
        ns.exec_ok("ip", &["link", "set", "eth0", "up"]);
    }
    let _ = iperf3_gbps(&ns1, &ns2, 1); // warm-up, ARP
    iperf3_gbps(&ns1, &ns2, secs)
}

/// One iperf3 run through two TAP ports and the test forwarder.
fn tap_gbps(offloads: bool, copy_small_frames: bool, io: TapIo, secs: u32) -> f64 {
    let pair = Pair::build(offloads, None, |c| {
        c.copy_small_frames = copy_small_frames;
        c.io = io;
    });
    let fwd = pair.forward();
    let _ = iperf3_gbps(&pair.ns1, &pair.ns2, 1); // warm-up, ARP
    let g = iperf3_gbps(&pair.ns1, &pair.ns2, secs);
    let (ab, ba) = fwd.stop();
    eprintln!(
        "  tap offloads={offloads} copy_small_frames={copy_small_frames} io={io:?}: {g:.2} Gbit/s, \
         a->b {} frames ({} GSO), b->a {} frames, port2 {:?}",
        ab.rx_packets,
        ab.gso_frames,
        ba.rx_packets,
        pair.p2.tap_stats()
    );
    g
}

/// One iperf3 run through two TAP ports on the real switch (PMD threads
/// on `cores`).
fn switch_gbps(secs: u32, idle: IdleMode, cores: Vec<usize>) -> f64 {
    let sp = SwitchPair::new(true, idle, cores);
    let _ = iperf3_gbps(&sp.pair.ns1, &sp.pair.ns2, 1); // warm-up, ARP, FDB
    let g = iperf3_gbps(&sp.pair.ns1, &sp.pair.ns2, secs);
    let pmds: Vec<String> = sp
        .switch
        .pmd_stats()
        .iter()
        .map(|p| {
            format!(
                "core {:?}: {} pkts in {} batches, busy {} ms idle {} ms",
                p.core,
                p.stats.packets,
                p.stats.batches,
                p.stats.busy_ns / 1_000_000,
                p.stats.idle_ns / 1_000_000
            )
        })
        .collect();
    eprintln!("  switch {idle:?}: {g:.2} Gbit/s; {pmds:?}");
    g
}

/// Throughput report (not a test of a figure): TCP through two TAP ports
/// and the test forwarder, offloads on (with and without the small-frame
/// copy) and off, against the kernel bridge, interleaved round by round so
/// a busy machine hurts all alike. `cargo test --release -p tests --test
/// port_tap -- --ignored --nocapture tcp_throughput`.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
fn tcp_throughput_report_tap_vs_kernel_bridge() {
    if !require_root("tcp_throughput_report_tap_vs_kernel_bridge") || !have_tool("iperf3") {
        return;
    }
    let _g = serial();
    let rounds: usize = std::env::var("VSW_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let secs = 5;
    let names = [
        "bridge",
        "tap on",
        "tap on, no small copy",
        "tap on, io_uring",
        "tap off",
        "tap off, io_uring",
        "switch, 1 PMD, adaptive",
        "switch, 1 PMD, poll",
        "switch, 2 PMDs, adaptive",
    ];
    let mut v: [Vec<f64>; 9] = Default::default();
    for _ in 0..rounds {
        v[0].push(kernel_bridge_gbps(secs));
        v[1].push(tap_gbps(true, true, TapIo::Syscalls, secs));
        v[2].push(tap_gbps(true, false, TapIo::Syscalls, secs));
        v[3].push(tap_gbps(true, true, TapIo::IoUring, secs));
        v[4].push(tap_gbps(false, true, TapIo::Syscalls, secs));
        v[5].push(tap_gbps(false, true, TapIo::IoUring, secs));
        v[6].push(switch_gbps(secs, IdleMode::Adaptive, vec![1]));
        v[7].push(switch_gbps(secs, IdleMode::Poll, vec![1]));
        v[8].push(switch_gbps(secs, IdleMode::Adaptive, vec![0, 1]));
    }
    let b = median(v[0].clone());
    for (name, runs) in names.iter().zip(&v) {
        assert!(runs.iter().all(|g| *g > 0.0));
        let m = median(runs.clone());
        eprintln!(
            "{name:>22}: median {m:6.2} Gbit/s ({:.2}x bridge), runs {runs:.2?}",
            m / b
        );
    }
}

/// Small-frame rate report (not a test of a figure): 60-byte UDP frames
/// from ns1 through two TAP ports to ns2, plain system calls against
/// io_uring, interleaved. The generator is one `send()` per datagram, so
/// the offered rate is printed too.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
fn small_frame_rate_report_syscalls_vs_io_uring() {
    if !require_root("small_frame_rate_report_syscalls_vs_io_uring") || !have_tool("ping") {
        return;
    }
    let _g = serial();
    let count = 400_000u64;
    for round in 0..3 {
        for io in [TapIo::Syscalls, TapIo::IoUring] {
            let pair = Pair::build(true, None, |c| c.io = io);
            let fwd = pair.forward();
            ping(&pair.ns1, &[IP2]);
            let addr = format!("{IP2}:5401");
            let rx = pair
                .ns2
                .spawn(TRAFCHECK, &["udp-recv", &addr, &count.to_string(), "500"]);
            std::thread::sleep(Duration::from_millis(200));
            let out = pair
                .ns1
                .exec_ok(TRAFCHECK, &["udp-send", &addr, &count.to_string(), "18"]);
            let secs: f64 = out
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::MAX);
            let received = String::from_utf8_lossy(&rx.wait().stdout).into_owned();
            let (ab, _) = fwd.stop();
            eprintln!(
                "round {round} io={io:?}: offered {:.0} kpps, forwarded {:.0} kpps ({} frames), \
                 ns2 app {received:?}, ns1 eth0 tx_dropped {}",
                count as f64 / secs / 1e3,
                ab.tx_packets as f64 / secs / 1e3,
                ab.tx_packets,
                pair.ns1
                    .exec_ok("cat", &["/sys/class/net/eth0/statistics/tx_dropped"])
                    .trim()
            );
        }
    }
}

#[test]
fn namespace_deleted_under_a_reattached_tap_is_caught_by_the_health_check() {
    if !require_root("namespace_deleted_under_a_reattached_tap_is_caught_by_the_health_check") {
        return;
    }
    let _g = serial();
    let ns = Netns::new("tapa");
    let mut c = config(&ns, 1, true, None);
    c.persist = true;
    drop(TapPort::create(&c).expect("create"));
    let p = TapPort::reattach(&c).expect("reattach");
    assert_eq!(p.check_device(), LinkState::Up);
    ns.delete();
    // The queue opened inside the namespace keeps it (and the device)
    // alive, so the data path sees nothing wrong; only the health check
    // can tell.
    std::thread::sleep(Duration::from_millis(300));
    let mut pool = PacketPool::new(8, 0, 128);
    let mut batch = Batch::new();
    assert!(p.rx_burst(0, &mut pool, &mut batch).is_ok());
    assert_eq!(p.link(), LinkState::Up);
    assert_eq!(p.check_device(), LinkState::Down(DownReason::DeviceGone));
    assert_eq!(p.link(), LinkState::Down(DownReason::DeviceGone));
    assert_eq!(p.tap_stats().device_gone, 1);
    assert!(p.rx_burst(0, &mut pool, &mut batch).is_err());
    // del-port still works and frees the orphaned namespace with it.
    p.destroy().expect("destroy");
}

#[test]
fn container_setting_its_interface_down_drops_tx_but_keeps_the_port_up() {
    if !require_root("container_setting_its_interface_down_drops_tx_but_keeps_the_port_up") {
        return;
    }
    let _g = serial();
    let ns = Netns::new("tapa");
    let p = TapPort::create(&config(&ns, 1, true, None)).expect("create");
    ns.exec_ok("ip", &["link", "set", "eth0", "down"]);
    let mut pool = PacketPool::new(8, 0, 0);
    let mut batch = Batch::new();
    let mut pkt = pool.alloc(60).expect("buffer");
    pkt.copy_from(&[0xff; 60]);
    batch.push(pkt).expect("room");
    assert_eq!(
        p.tx_burst(0, &mut batch, &mut pool).expect("not an error"),
        0
    );
    assert_eq!(p.stats().tx_dropped, 1);
    assert_eq!(p.tap_stats().tx_link_down, 1);
    assert_eq!(p.link(), LinkState::Up);
    ns.exec_ok("ip", &["link", "set", "eth0", "up"]);
    let mut pkt = pool.alloc(60).expect("buffer");
    pkt.copy_from(&[0xff; 60]);
    batch.push(pkt).expect("room");
    assert_eq!(p.tx_burst(0, &mut batch, &mut pool).expect("sent"), 1);
}
