//! Shared harness of the AF_XDP and AF_PACKET system tests: two test
//! namespaces, each reached through a veth pair whose root-namespace end
//! carries the port under test, and a test-only forwarder thread that moves
//! frames between the two ports (rx_burst on one, tx_burst on the other,
//! both directions) until stopped. The real switch replaces the forwarder
//! later; these tests prove the ports.

#![allow(dead_code)]

use datapath::packet::{Batch, PacketPool};
use datapath::port::{Port, PortError};
use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tests::{ip, run, ChildGuard, Netns, Veth};

/// Address of the host in the first namespace.
pub const IP1: &str = "10.77.0.1";
/// Address of the host in the second namespace.
pub const IP2: &str = "10.77.0.2";
/// IPv6 addresses.
pub const IP6_1: &str = "fd77::1";
/// IPv6 address of the second host.
pub const IP6_2: &str = "fd77::2";

/// Addresses on the VLAN subinterfaces of [`Topology::add_vlan`].
pub const VLAN_IP1: &str = "10.78.0.1";
/// Second VLAN host.
pub const VLAN_IP2: &str = "10.78.0.2";

/// Tests in one binary share the two cores with the forwarder: one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Two namespaces, each with one end of a veth pair; the other ends
/// (`port1`, `port2`) stay in the root namespace, up, without addresses.
pub struct Topology {
    pub ns1: Netns,
    pub ns2: Netns,
    pub veth1: Veth,
    pub veth2: Veth,
}

impl Topology {
    pub fn new(mtu: u32) -> Topology {
        Self::with_veths(mtu, Veth::new("vxv"), Veth::new("vxv"))
    }

    /// As [`Topology::new`] with `queues` rx/tx queues on every veth end.
    pub fn multiqueue(mtu: u32, queues: u32) -> Topology {
        let mk = || {
            let (a, b) = (tests::unique_name("vxq"), tests::unique_name("vxq"));
            let q = queues.to_string();
            ip(&[
                "link",
                "add",
                &a,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
                "type",
                "veth",
                "peer",
                "name",
                &b,
                "numtxqueues",
                &q,
                "numrxqueues",
                &q,
            ]);
            Veth { a, b }
        };
        Self::with_veths(mtu, mk(), mk())
    }

    fn with_veths(mtu: u32, veth1: Veth, veth2: Veth) -> Topology {
        let ns1 = Netns::new("vxn");
        let ns2 = Netns::new("vxn");
        let mtu = mtu.to_string();
        for (ns, v, ip4, ip6) in [(&ns1, &veth1, IP1, IP6_1), (&ns2, &veth2, IP2, IP6_2)] {
            ip(&["link", "set", &v.b, "netns", ns.name()]);
            ip(&["link", "set", &v.a, "mtu", &mtu, "up"]);
            // The root end carries only the port: no IPv6 chatter from it.
            let _ = run(
                "sysctl",
                &["-qw", &format!("net.ipv6.conf.{}.disable_ipv6=1", v.a)],
            );
            ns.exec_ok("ip", &["link", "set", &v.b, "mtu", &mtu, "up"]);
            ns.exec_ok("ip", &["addr", "add", &format!("{ip4}/24"), "dev", &v.b]);
            ns.exec_ok(
                "ip",
                &["addr", "add", &format!("{ip6}/64"), "dev", &v.b, "nodad"],
            );
        }
        Topology {
            ns1,
            ns2,
            veth1,
            veth2,
        }
    }

    /// Adds an 802.1Q subinterface with VLAN `id` on both container ends,
    /// addressed 10.78.0.1/24 (ns1) and 10.78.0.2/24 (ns2). False (with a
    /// printed reason) when the kernel has no VLAN support.
    pub fn add_vlan(&self, id: u16) -> bool {
        let id_s = id.to_string();
        for (ns, dev, addr) in [
            (&self.ns1, &self.veth1.b, VLAN_IP1),
            (&self.ns2, &self.veth2.b, VLAN_IP2),
        ] {
            let name = format!("vl{id}");
            let out = ns.exec(
                "ip",
                &[
                    "link", "add", "link", dev, "name", &name, "type", "vlan", "id", &id_s,
                ],
            );
            if !out.status.success() {
                eprintln!(
                    "SKIP: cannot create a VLAN device: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                return false;
            }
            ns.exec_ok("ip", &["addr", "add", &format!("{addr}/24"), "dev", &name]);
            ns.exec_ok("ip", &["link", "set", &name, "up"]);
        }
        true
    }

    /// Root-namespace end towards ns1.
    pub fn port1(&self) -> &str {
        &self.veth1.a
    }

    /// Root-namespace end towards ns2.
    pub fn port2(&self) -> &str {
        &self.veth2.a
    }

    /// The container-side device in ns2.
    pub fn dev2(&self) -> &str {
        &self.veth2.b
    }

    /// `ethtool -k` of a device inside a namespace.
    pub fn offloads(&self, ns: &Netns, dev: &str) -> String {
        String::from_utf8_lossy(&ns.exec("ethtool", &["-k", dev]).stdout).into_owned()
    }
}

/// Runs the two ports through the real [`datapath::switch::Switch`]: one
/// bridge with its default NORMAL rule, one adaptive PMD thread, and proves
/// ping both ways and a checked TCP transfer. The switch stops on return.
pub fn check_through_switch(t: &Topology, p1: Arc<dyn Port>, p2: Arc<dyn Port>, tcp_bytes: u64) {
    use datapath::pipeline::VlanMode;
    use datapath::pmd::IdleMode;
    use datapath::switch::{Switch, SwitchConfig};
    let cfg = SwitchConfig {
        pmd_cores: vec![1 % num_cpus()],
        idle: IdleMode::Adaptive,
        ..SwitchConfig::default()
    };
    let sw = Switch::new(cfg).expect("switch starts");
    sw.add_bridge("br0").expect("bridge");
    sw.add_port("br0", 1, p1, VlanMode::default())
        .expect("port 1");
    sw.add_port("br0", 2, p2, VlanMode::default())
        .expect("port 2");
    assert!(ping(&t.ns1, IP2, None), "IPv4 through the switch");
    assert!(ping(&t.ns2, IP6_1, None), "IPv6 through the switch");
    let gbps = tcp_transfer(t, IP2, tcp_bytes);
    eprintln!(
        "through the switch: {} MiB TCP checked, {gbps:.2} Gbit/s; drops {:?}",
        tcp_bytes >> 20,
        sw.drop_stats().nonzero().collect::<Vec<_>>()
    );
    if let Some(g) = iperf3(t, 3) {
        eprintln!("through the switch: iperf3 TCP {g:.2} Gbit/s");
    }
    sw.shutdown();
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Counters of the test forwarder.
#[derive(Default)]
pub struct FwdStats {
    pub packets: AtomicU64,
    pub errors: AtomicU64,
    pub device_gone: AtomicBool,
}

/// A thread forwarding between two ports until dropped (or a deadline).
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    pub stats: Arc<FwdStats>,
    thread: Option<JoinHandle<()>>,
}

fn wait_readable(fds: &[RawFd], timeout_ms: i32) {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: *fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a live array of pollfd of the given length.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
}

impl Forwarder {
    /// Starts forwarding a <-> b; stops itself after `limit` at the latest.
    pub fn start(a: Arc<dyn Port>, b: Arc<dyn Port>, limit: Duration) -> Forwarder {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FwdStats::default());
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || {
            let mut pool = PacketPool::for_pmd();
            let mut batch = Batch::new();
            let deadline = Instant::now() + limit;
            let fds: Vec<RawFd> = [&a, &b]
                .iter()
                .flat_map(|p| (0..p.rx_queues()).filter_map(|q| p.rx_fd(q)))
                .collect();
            let mut idle = 0u32;
            let mut rounds = 0u32;
            while !stop2.load(Ordering::Relaxed) {
                rounds = rounds.wrapping_add(1);
                if rounds % 1024 == 0 && Instant::now() >= deadline {
                    break;
                }
                let mut moved = 0;
                for (src, dst) in [(&a, &b), (&b, &a)] {
                    for q in 0..src.rx_queues() {
                        match src.rx_burst(q, &mut pool, &mut batch) {
                            Ok(n) => moved += n,
                            Err(e) => note(&stats2, &e),
                        }
                        if !batch.is_empty() {
                            if let Err(e) = dst.tx_burst(q, &mut batch, &mut pool) {
                                note(&stats2, &e);
                            }
                            pool.free_all(batch.drain());
                        }
                    }
                }
                stats2.packets.fetch_add(moved as u64, Ordering::Relaxed);
                if moved == 0 {
                    idle += 1;
                    // Sleep on the ports' fds after a short idle stretch so
                    // the test does not burn a shared core.
                    if idle > 256 {
                        wait_readable(&fds, 1);
                    }
                } else {
                    idle = 0;
                }
            }
        });
        Forwarder {
            stop,
            stats,
            thread: Some(thread),
        }
    }
}

fn note(stats: &FwdStats, e: &PortError) {
    stats.errors.fetch_add(1, Ordering::Relaxed);
    if matches!(e, PortError::DeviceGone { .. }) {
        stats.device_gone.store(true, Ordering::Relaxed);
    }
}

impl Forwarder {
    /// Stops the thread; true when it ended without panicking.
    pub fn stop(mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(|t| t.join().is_ok()).unwrap_or(true)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Pings `to` from `ns` (IPv4 or IPv6 by the address); true on success.
pub fn ping(ns: &Netns, to: &str, size: Option<u32>) -> bool {
    let size = size.map(|s| s.to_string());
    let mut args = vec!["-c", "3", "-i", "0.2", "-W", "2"];
    if to.contains(':') {
        args.insert(0, "-6");
    }
    if let Some(s) = &size {
        args.extend_from_slice(&["-s", s, "-M", "do"]);
    }
    args.push(to);
    let out = ns.exec("ping", &args);
    if !out.status.success() {
        eprintln!(
            "ping {to} from {} failed: {}",
            ns.name(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    out.status.success()
}

/// The MAC of `dev` in `ns`.
pub fn mac_of(ns: &Netns, dev: &str) -> String {
    let out = ns.exec_ok("cat", &[&format!("/sys/class/net/{dev}/address")]);
    out.trim().to_string()
}

/// Sends one raw frame out of `dev` in `ns` (tags and all).
pub fn raw_send(ns: &Netns, dev: &str, frame: &[u8]) {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    ns.exec_ok(nettraffic(), &["raw-send", dev, &hex]);
}

/// Receives from queue 0 of `p` until a frame satisfying `want` arrives
/// (bounded); returns it.
pub fn receive_matching(p: &dyn Port, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let mut pool = PacketPool::new(64, 4, 1);
    let mut batch = Batch::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let _ = p.rx_burst(0, &mut pool, &mut batch);
        for pkt in batch.drain() {
            if want(pkt.data()) {
                return Some(pkt.data().to_vec());
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Where a burst's losses happened: drops on the sender's veth, the
/// receiver's UDP socket buffer overflows.
pub fn loss_report(t: &Topology) -> String {
    let tx_drops = t.ns1.exec(
        "cat",
        &[&format!(
            "/sys/class/net/{}/statistics/tx_dropped",
            t.veth1.b
        )],
    );
    let rx_drops = t.ns2.exec(
        "cat",
        &[&format!(
            "/sys/class/net/{}/statistics/rx_dropped",
            t.veth2.b
        )],
    );
    let snmp = t.ns2.exec("cat", &["/proc/net/snmp"]);
    let snmp = String::from_utf8_lossy(&snmp.stdout);
    let udp: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Udp:")).collect();
    let rcvbuf = if udp.len() == 2 {
        let names: Vec<&str> = udp[0].split_whitespace().collect();
        let vals: Vec<&str> = udp[1].split_whitespace().collect();
        names
            .iter()
            .position(|n| *n == "RcvbufErrors")
            .and_then(|i| vals.get(i).copied())
            .unwrap_or("?")
            .to_string()
    } else {
        "?".into()
    };
    format!(
        "sender veth tx_dropped {}, receiver veth rx_dropped {}, receiver UDP RcvbufErrors {rcvbuf}",
        String::from_utf8_lossy(&tx_drops.stdout).trim(),
        String::from_utf8_lossy(&rx_drops.stdout).trim()
    )
}

fn nettraffic() -> &'static str {
    env!("CARGO_BIN_EXE_nettraffic")
}

fn wait_ready(child: &mut ChildGuard) -> BufReader<std::process::ChildStdout> {
    let out = child.child_mut().stdout.take().expect("piped stdout");
    let mut r = BufReader::new(out);
    let mut line = String::new();
    let _ = r.read_line(&mut line);
    assert_eq!(line.trim(), "READY", "receiver did not start");
    r
}

/// Sends `bytes` of the pattern over TCP from ns1 to ns2 and checks every
/// byte at the receiver. Returns the throughput in Gbit/s.
pub fn tcp_transfer(t: &Topology, dst: &str, bytes: u64) -> f64 {
    let port = 5000 + (std::process::id() % 1000) as u16;
    let bind = if dst.contains(':') {
        format!("[{dst}]:{port}")
    } else {
        format!("{dst}:{port}")
    };
    let n = bytes.to_string();
    let mut rx = t.ns2.spawn(nettraffic(), &["tcp-recv", &bind, &n]);
    let mut reader = wait_ready(&mut rx);
    let start = Instant::now();
    let tx = t.ns1.exec(nettraffic(), &["tcp-send", &bind, &n]);
    let secs = start.elapsed().as_secs_f64();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    let status = rx.child_mut().wait().expect("receiver exit");
    assert!(
        tx.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&tx.stdout)
    );
    assert!(status.success(), "receiver failed: {rest}");
    assert_eq!(rest.trim(), format!("OK {bytes}"));
    bytes as f64 * 8.0 / secs / 1e9
}

/// Sends `count` UDP datagrams of `size` bytes from ns1 to ns2; returns
/// (received, corrupt).
pub fn udp_burst(t: &Topology, count: u32, size: u32) -> (u32, u32) {
    let r = udp_burst_timed(t, count, size);
    (r.0, r.1)
}

/// As [`udp_burst`], plus the seconds between the first and the last
/// datagram received (for a packet rate).
pub fn udp_burst_timed(t: &Topology, count: u32, size: u32) -> (u32, u32, f64) {
    let port = 6000 + (std::process::id() % 1000) as u16;
    let bind = format!("{IP2}:{port}");
    let mut rx = t.ns2.spawn(
        nettraffic(),
        &["udp-recv", &bind, &count.to_string(), "1500"],
    );
    let mut reader = wait_ready(&mut rx);
    let tx = t.ns1.exec(
        nettraffic(),
        &["udp-send", &bind, &count.to_string(), &size.to_string()],
    );
    assert!(tx.status.success());
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let w: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(w.first(), Some(&"RECEIVED"), "udp receiver said {line}");
    (
        w[1].parse().unwrap(),
        w[3].parse().unwrap(),
        w[5].parse().unwrap(),
    )
}

/// iperf3 TCP for `secs` seconds from ns1 to ns2, in Gbit/s; None when
/// iperf3 is missing or failed.
pub fn iperf3(t: &Topology, secs: u32) -> Option<f64> {
    if !tests::have_tool("iperf3") {
        eprintln!("iperf3 not installed: no throughput figure");
        return None;
    }
    let port = (7000 + std::process::id() % 1000).to_string();
    let _server = t.ns2.spawn("iperf3", &["-s", "-1", "-p", &port]);
    std::thread::sleep(Duration::from_millis(300));
    let out = t.ns1.exec(
        "iperf3",
        &["-c", IP2, "-p", &port, "-t", &secs.to_string(), "-J"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The receiver's summary: "sum_received": { ... "bits_per_second": X
    let at = text.find("\"sum_received\"")?;
    let rest = &text[at..];
    let b = rest.find("\"bits_per_second\"")?;
    let num: String = rest[b + 17..]
        .trim_start_matches(|c: char| c == ':' || c.is_whitespace())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '+')
        .collect();
    num.parse::<f64>().ok().map(|v| v / 1e9)
}

/// The fault case: `p1`'s device goes admin-down and up (forwarding
/// resumes), then is deleted while the forwarder runs. The port must go
/// down with `DeviceGone`, the other port stay up, and nothing panic.
pub fn check_device_disappearing(t: &Topology, p1: Arc<dyn Port>, p2: Arc<dyn Port>) {
    use datapath::port::{DownReason, LinkState};
    assert_eq!(p1.link(), LinkState::Up);
    ip(&["link", "set", t.port1(), "down"]);
    // link() is the cached state the PMDs read; health_check refreshes it
    // (the switch runs it about once a second).
    assert_eq!(p1.health_check(), LinkState::Down(DownReason::Admin));
    assert_eq!(p1.link(), LinkState::Down(DownReason::Admin));
    ip(&["link", "set", t.port1(), "up"]);
    // Carrier may take a moment to come back on the veth.
    let deadline = Instant::now() + Duration::from_secs(5);
    while p1.health_check() != LinkState::Up && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p1.link(), LinkState::Up);
    let fwd = Forwarder::start(p1.clone(), p2.clone(), Duration::from_secs(60));
    assert!(ping(&t.ns1, IP2, None), "forwarding after admin down/up");
    ip(&["link", "del", t.port1()]);
    assert_eq!(p1.health_check(), LinkState::Down(DownReason::DeviceGone));
    assert_eq!(p1.link(), LinkState::Down(DownReason::DeviceGone));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fwd.stats.device_gone.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        fwd.stats.device_gone.load(Ordering::Relaxed),
        "the forwarder saw DeviceGone from the port"
    );
    assert_eq!(p2.link(), LinkState::Up, "the other port is unaffected");
    assert!(fwd.stop(), "forwarder thread did not panic");
    assert_eq!(p1.health_check(), LinkState::Down(DownReason::DeviceGone));
    assert!(
        poll_until_gone(p1.as_ref(), 10),
        "rx keeps reporting the device gone"
    );
    let mut pool = PacketPool::new(4, 1, 1);
    let mut b = Batch::new();
    let mut pkt = pool.alloc(60).expect("buffer");
    pkt.copy_from(&[0u8; 60]);
    b.push(pkt).expect("room");
    assert!(p1.tx_burst(0, &mut b, &mut pool).is_err());
    assert!(b.is_empty(), "tx consumed the batch");
}

/// The anchor for throughput figures: the same topology joined by a Linux
/// bridge instead of a port pair, iperf3 for `secs` seconds, in Gbit/s.
pub fn kernel_bridge_anchor(secs: u32) -> Option<f64> {
    let t = Topology::new(1500);
    let br = tests::unique_name("vxbr");
    ip(&["link", "add", &br, "type", "bridge"]);
    let gbps = (|| {
        ip(&["link", "set", t.port1(), "master", &br]);
        ip(&["link", "set", t.port2(), "master", &br]);
        ip(&["link", "set", &br, "up"]);
        if !ping(&t.ns1, IP2, None) {
            return None;
        }
        iperf3(&t, secs)
    })();
    let _ = run("ip", &["link", "del", &br]);
    gbps
}

/// After its device is deleted, the switch's health check takes the port
/// down, and the very next rx burst says so (no idle-poll period needed).
pub fn check_health_check_marks_gone(t: &Topology, p: Arc<dyn Port>) {
    use datapath::port::{DownReason, LinkState};
    assert_eq!(p.health_check(), LinkState::Up);
    ip(&["link", "del", t.port1()]);
    assert_eq!(p.health_check(), LinkState::Down(DownReason::DeviceGone));
    assert!(poll_until_gone(p.as_ref(), 1), "first rx burst reports it");
}

/// Runs rx_burst until the port reports its device gone (or `max` polls).
pub fn poll_until_gone(p: &dyn Port, max: usize) -> bool {
    let mut pool = PacketPool::new(64, 1, 1);
    let mut batch = Batch::new();
    for _ in 0..max {
        match p.rx_burst(0, &mut pool, &mut batch) {
            Err(PortError::DeviceGone { .. }) => return true,
            _ => pool.free_all(batch.drain()),
        }
    }
    false
}
