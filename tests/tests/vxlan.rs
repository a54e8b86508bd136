//! System tests (root) of the VXLAN overlay (issue 6): simulated hosts are
//! network namespaces joined by a veth (or bridged) underlay whose
//! addresses exist only inside them; each host runs its own vswitchd +
//! vswitch-controld (private `--run-dir`, started inside the host
//! namespace) with a container namespace on a TAP port.
//!
//! - two vswitch hosts: ping and a checked TCP transfer across the tunnel,
//!   per-VTEP counters, GRO at work;
//! - kernel interop: the other host is a Linux `vxlan` device bridged to
//!   its container; traffic both ways, and the wire bytes captured on the
//!   underlay are well-formed VXLAN (UDP dstport, VNI, I flag); also with
//!   the Linux/Flannel port 8472;
//! - three hosts: head-end replication of broadcasts, MAC learning with
//!   the remote VTEP so unicast goes to one host only;
//! - unknown-VNI, flagless, truncated and unknown-sender datagrams are
//!   dropped and counted while traffic keeps flowing.

mod cli_support;

use cli_support::{bin_dir, ping, ready, Instance};
use datapath::sys::netns::{in_netns, NetnsHandle};
use std::net::UdpSocket;
use tests::{unique_name, verified_tcp_transfer, Netns};

/// Inner MTU for a 1500-byte underlay: 1500 − 50.
const INNER_MTU: &str = "1450";

/// A simulated host: its namespace and (for vswitch hosts) its instance.
struct Host {
    ns: Netns,
    ip: String,
    inst: Option<Instance>,
}

/// Joins `n` host namespaces on one underlay: two hosts by a veth pair,
/// more by a Linux bridge in its own namespace. Underlay addresses are
/// 10.199.`net`.(i+1)/24.
fn underlay(n: usize, net: u8) -> (Vec<Host>, Option<Netns>) {
    let hosts: Vec<Host> = (0..n)
        .map(|i| Host {
            ns: Netns::new("vxh"),
            ip: format!("10.199.{net}.{}", i + 1),
            inst: None,
        })
        .collect();
    let hub = (n > 2).then(|| Netns::new("vxu"));
    if let Some(hub) = &hub {
        hub.exec_ok("ip", &["link", "add", "name", "hub0", "type", "bridge"]);
        hub.exec_ok("ip", &["link", "set", "hub0", "up"]);
    }
    for (i, h) in hosts.iter().enumerate() {
        let (a, b) = (unique_name("vxa"), unique_name("vxb"));
        let peer_ns = match (&hub, i) {
            (Some(hub), _) => hub.name().to_owned(),
            (None, 0) => continue,
            (None, _) => hosts[0].ns.name().to_owned(),
        };
        tests::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        tests::ip(&["link", "set", &a, "netns", h.ns.name()]);
        tests::ip(&["link", "set", &b, "netns", &peer_ns]);
        h.ns.exec_ok("ip", &["link", "set", &a, "name", "ul0"]);
        h.ns.exec_ok(
            "ip",
            &["addr", "add", &format!("{}/24", h.ip), "dev", "ul0"],
        );
        h.ns.exec_ok("ip", &["link", "set", "ul0", "up"]);
        match &hub {
            Some(hub) => {
                hub.exec_ok("ip", &["link", "set", &b, "master", "hub0"]);
                hub.exec_ok("ip", &["link", "set", &b, "up"]);
            }
            None => {
                let h0 = &hosts[0];
                h0.ns.exec_ok("ip", &["link", "set", &b, "name", "ul0"]);
                h0.ns.exec_ok(
                    "ip",
                    &["addr", "add", &format!("{}/24", h0.ip), "dev", "ul0"],
                );
                h0.ns.exec_ok("ip", &["link", "set", "ul0", "up"]);
            }
        }
    }
    (hosts, hub)
}

/// Starts vswitch on `host` with br0, a container TAP port `c` at
/// `inner_ip`/24 and a VXLAN port `vx0` to `remotes`.
fn vswitch_host(
    host: &mut Host,
    container: &Netns,
    inner_ip: &str,
    remotes: &[&str],
    extra: &[&str],
) {
    let inst = Instance::new();
    let o = std::process::Command::new("ip")
        .args(["netns", "exec", host.ns.name()])
        .arg(bin_dir().join("vswitchctl"))
        .arg("--run-dir")
        .arg(&inst.dir)
        .arg("start")
        .output()
        .expect("start vswitch in the host namespace");
    assert!(
        o.status.success(),
        "start: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    inst.ctl_ok(&["add-br", "br0"]);
    inst.ctl_ok(&[
        "add-port",
        "br0",
        "c",
        "type=tap",
        &format!("netns={}", container.name()),
        &format!("ip={inner_ip}/24"),
        &format!("mtu={INNER_MTU}"),
    ]);
    let mut args = vec![
        "add-port".to_owned(),
        "br0".into(),
        "vx0".into(),
        "type=vxlan".into(),
        format!("remote={}", remotes.join(",")),
        format!("local={}", host.ip),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    inst.ctl_ok(&refs);
    host.inst = Some(inst);
}

/// A container namespace with nothing in it yet.
fn container() -> Netns {
    Netns::new("vxc")
}

/// `stats ports --format json` row of `port`.
fn port_stats(inst: &Instance, port: &str) -> serde_json::Value {
    let out = inst.ctl_ok(&["-o", "json", "stats", "ports"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("stats json");
    v["ports"]
        .as_array()
        .expect("ports array")
        .iter()
        .find(|r| r["port"] == port)
        .unwrap_or_else(|| panic!("no row for {port} in {out}"))
        .clone()
}

fn vtep(row: &serde_json::Value, remote: &str, key: &str) -> u64 {
    row["vteps"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["remote"] == remote))
        .and_then(|v| v[key].as_u64())
        .unwrap_or(0)
}

fn trafcheck() -> String {
    bin_dir().join("vsw-trafcheck").display().to_string()
}

#[test]
fn two_vswitch_hosts_ping_and_move_checked_tcp() {
    if !ready("two_vswitch_hosts_ping_and_move_checked_tcp") {
        return;
    }
    let (mut hosts, _hub) = underlay(2, 1);
    let (ca, cb) = (container(), container());
    let (ip_a, ip_b) = (hosts[0].ip.clone(), hosts[1].ip.clone());
    vswitch_host(&mut hosts[0], &ca, "192.168.61.1", &[&ip_b], &["vni=42"]);
    vswitch_host(&mut hosts[1], &cb, "192.168.61.2", &[&ip_a], &["vni=42"]);
    assert!(ping(&ca, "192.168.61.2", 3), "ping A→B across the tunnel");
    assert!(ping(&cb, "192.168.61.1", 3), "ping B→A across the tunnel");

    let gbps = verified_tcp_transfer(&trafcheck(), &ca, &cb, "192.168.61.2:5201", 200 << 20);
    eprintln!("TCP across the vswitch tunnel: {gbps:.2} Gbit/s");
    let gbps = verified_tcp_transfer(&trafcheck(), &cb, &ca, "192.168.61.1:5202", 100 << 20);
    eprintln!("TCP back: {gbps:.2} Gbit/s");

    let a = hosts[0].inst.as_ref().unwrap();
    let b = hosts[1].inst.as_ref().unwrap();
    let ra = port_stats(a, "vx0");
    let rb = port_stats(b, "vx0");
    assert!(vtep(&ra, &ip_b, "tx_bytes") > 200 << 20, "{ra}");
    assert!(vtep(&rb, &ip_a, "rx_bytes") > 200 << 20, "{rb}");
    assert!(
        rb["tunnel"]["gro_merged"].as_u64().unwrap_or(0) > 0,
        "GRO merged segments on receive: {rb}"
    );
    // The learned entry points at the remote VTEP.
    let fdb = a.ctl_ok(&["fdb-show", "br0"]);
    assert!(fdb.contains(&format!("remote={ip_b}")), "{fdb}");
    // show lists the VTEP with its counters.
    let show = a.ctl_ok(&["show"]);
    assert!(
        show.contains("remote VTEPs") && show.contains(&ip_b),
        "{show}"
    );
}

/// hostB is a Linux kernel VXLAN device bridged to its container.
fn kernel_host(
    host: &Host,
    container: &Netns,
    inner_ip: &str,
    remote: &str,
    vni: &str,
    port: &str,
) {
    let ns = &host.ns;
    ns.exec_ok(
        "ip",
        &[
            "link", "add", "vx0", "type", "vxlan", "id", vni, "dstport", port, "remote", remote,
            "local", &host.ip, "dev", "ul0",
        ],
    );
    ns.exec_ok("ip", &["link", "add", "br0", "type", "bridge"]);
    let (a, b) = (unique_name("vxk"), unique_name("vxk"));
    tests::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    tests::ip(&["link", "set", &a, "netns", ns.name()]);
    tests::ip(&["link", "set", &b, "netns", container.name()]);
    for dev in ["vx0", &a] {
        ns.exec_ok("ip", &["link", "set", dev, "master", "br0"]);
        ns.exec_ok("ip", &["link", "set", dev, "up"]);
    }
    ns.exec_ok("ip", &["link", "set", "br0", "up"]);
    container.exec_ok("ip", &["link", "set", &b, "name", "eth0"]);
    container.exec_ok("ip", &["link", "set", "eth0", "mtu", INNER_MTU]);
    container.exec_ok(
        "ip",
        &["addr", "add", &format!("{inner_ip}/24"), "dev", "eth0"],
    );
    container.exec_ok("ip", &["link", "set", "eth0", "up"]);
}

/// Captures `count` UDP datagrams from `from` to `port` on hostB's
/// underlay while `traffic` runs; returns the raw frames (pcap parsed by
/// hand).
fn capture_vxlan(
    host: &Host,
    from: &str,
    port: &str,
    count: usize,
    traffic: impl FnOnce(),
) -> Vec<Vec<u8>> {
    let file = format!("/tmp/{}.pcap", unique_name("vxcap"));
    let filter = format!("udp dst port {port} and src host {from}");
    let mut dump = host.ns.spawn(
        "tcpdump",
        &[
            "-i",
            "ul0",
            "-n",
            "-U",
            "-c",
            &count.to_string(),
            "-w",
            &file,
            &filter,
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(700));
    traffic();
    for _ in 0..50 {
        if dump.child_mut().try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(dump);
    let bytes = std::fs::read(&file).unwrap_or_default();
    let _ = std::fs::remove_file(&file);
    pcap_frames(&bytes)
}

/// Frames of a classic pcap file (little- or big-endian, any link type we
/// write: Ethernet).
fn pcap_frames(b: &[u8]) -> Vec<Vec<u8>> {
    if b.len() < 24 {
        return Vec::new();
    }
    let le = b[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || b[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let rd = |at: usize| {
        let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let incl = rd(at + 8) as usize;
        let start = at + 16;
        if start + incl > b.len() {
            break;
        }
        out.push(b[start..start + incl].to_vec());
        at = start + incl;
    }
    out
}

fn kernel_interop(dstport: &str, net: u8) {
    let (mut hosts, _hub) = underlay(2, net);
    let (ca, cb) = (container(), container());
    let (ip_a, ip_b) = (hosts[0].ip.clone(), hosts[1].ip.clone());
    let (in_a, in_b) = (format!("192.168.{net}.1"), format!("192.168.{net}.2"));
    vswitch_host(
        &mut hosts[0],
        &ca,
        &in_a,
        &[&ip_b],
        &["vni=42", &format!("dstport={dstport}")],
    );
    kernel_host(&hosts[1], &cb, &in_b, &ip_a, "42", dstport);
    assert!(ping(&ca, &in_b, 3), "ping vswitch → kernel vxlan");
    assert!(ping(&cb, &in_a, 3), "ping kernel vxlan → vswitch");

    // What vswitch puts on the wire, as the kernel side's tcpdump sees it.
    let frames = capture_vxlan(&hosts[1], &ip_a, dstport, 6, || {
        assert!(ping(&ca, &in_b, 3));
    });
    assert!(!frames.is_empty(), "captured VXLAN frames from vswitch");
    let port: u16 = dstport.parse().unwrap();
    for f in &frames {
        // Ethernet(14) IPv4(20, no options) UDP(8) VXLAN(8) inner.
        assert_eq!(&f[12..14], &[0x08, 0x00], "IPv4 underlay");
        assert_eq!(f[14], 0x45);
        assert_eq!(f[23], 17, "UDP");
        let ip: std::net::Ipv4Addr = ip_a.parse().unwrap();
        assert_eq!(&f[26..30], &ip.octets(), "outer source is local=");
        assert_eq!(u16::from_be_bytes([f[36], f[37]]), port, "UDP dstport");
        assert!(
            u16::from_be_bytes([f[34], f[35]]) >= 1024,
            "source port from the hash pool"
        );
        assert_eq!(&f[42..50], &[0x08, 0, 0, 0, 0, 0, 42, 0], "I flag, VNI 42");
        let udp_len = usize::from(u16::from_be_bytes([f[38], f[39]]));
        assert_eq!(
            udp_len,
            f.len() - 34,
            "UDP length covers VXLAN + inner frame"
        );
    }
    assert!(
        frames
            .iter()
            .any(|f| f[62..64] == [0x08, 0x00] && f[64 + 9] == 1 && f[84] == 8),
        "an inner ICMP echo request among the captured frames"
    );

    let gbps = verified_tcp_transfer(&trafcheck(), &ca, &cb, &format!("{in_b}:5201"), 100 << 20);
    eprintln!("TCP vswitch → kernel vxlan (port {dstport}): {gbps:.2} Gbit/s");
    let gbps = verified_tcp_transfer(&trafcheck(), &cb, &ca, &format!("{in_a}:5202"), 100 << 20);
    eprintln!("TCP kernel vxlan → vswitch (port {dstport}): {gbps:.2} Gbit/s");
}

#[test]
fn kernel_vxlan_interop_on_4789() {
    if !ready("kernel_vxlan_interop_on_4789") || !tests::have_tool("tcpdump") {
        return;
    }
    kernel_interop("4789", 62);
}

#[test]
fn kernel_vxlan_interop_on_8472() {
    if !ready("kernel_vxlan_interop_on_8472") || !tests::have_tool("tcpdump") {
        return;
    }
    kernel_interop("8472", 63);
}

#[test]
fn three_hosts_flood_by_head_end_replication_and_learn_remotes() {
    if !ready("three_hosts_flood_by_head_end_replication_and_learn_remotes") {
        return;
    }
    let (mut hosts, _hub) = underlay(3, 4);
    let cs: Vec<Netns> = (0..3).map(|_| container()).collect();
    let ips: Vec<String> = hosts.iter().map(|h| h.ip.clone()).collect();
    for i in 0..3 {
        let remotes: Vec<&str> = (0..3)
            .filter(|j| *j != i)
            .map(|j| ips[j].as_str())
            .collect();
        vswitch_host(
            &mut hosts[i],
            &cs[i],
            &format!("192.168.64.{}", i + 1),
            &remotes,
            &["vni=7"],
        );
    }
    let inst = |i: usize| hosts[i].inst.as_ref().unwrap();
    // A → C: the ARP broadcast is replicated to B and C.
    assert!(ping(&cs[0], "192.168.64.3", 2), "ping A→C");
    assert!(ping(&cs[1], "192.168.64.3", 2), "ping B→C");
    let b_from_a = vtep(&port_stats(inst(1), "vx0"), &ips[0], "rx_packets");
    assert!(
        b_from_a >= 1,
        "B got A's flooded ARP by head-end replication"
    );
    // Learned: C's MAC behind C's VTEP on A.
    let fdb = inst(0).ctl_ok(&["fdb-show", "br0"]);
    assert!(fdb.contains(&format!("remote={}", ips[2])), "{fdb}");
    // Known unicast goes to C only: of 20 echo requests B sees none (the
    // containers' own IPv6 multicast chatter may still be flooded).
    let c_before = vtep(&port_stats(inst(2), "vx0"), &ips[0], "rx_packets");
    assert!(ping(&cs[0], "192.168.64.3", 20));
    let b_after = vtep(&port_stats(inst(1), "vx0"), &ips[0], "rx_packets");
    assert!(
        b_after - b_from_a < 10,
        "unicast to C leaked to B: {b_from_a} → {b_after}"
    );
    let c_from_a = vtep(&port_stats(inst(2), "vx0"), &ips[0], "rx_packets");
    assert!(
        c_from_a - c_before >= 20,
        "C got A's pings: {c_before} → {c_from_a}"
    );
    // Split horizon: nothing that came from a tunnel went back into one,
    // so no host received its own frames back (no loop in the full mesh).
    let a_row = port_stats(inst(0), "vx0");
    let rx_total: u64 = (1..3).map(|j| vtep(&a_row, &ips[j], "rx_packets")).sum();
    assert!(rx_total < 200, "no flood loop: {a_row}");
}

#[test]
fn bad_vxlan_datagrams_are_counted_and_dropped() {
    if !ready("bad_vxlan_datagrams_are_counted_and_dropped") {
        return;
    }
    let (mut hosts, _hub) = underlay(2, 5);
    let (ca, cb) = (container(), container());
    let (ip_a, ip_b) = (hosts[0].ip.clone(), hosts[1].ip.clone());
    vswitch_host(&mut hosts[0], &ca, "192.168.65.1", &[&ip_b], &["vni=42"]);
    vswitch_host(&mut hosts[1], &cb, "192.168.65.2", &[&ip_a], &["vni=42"]);
    assert!(ping(&ca, "192.168.65.2", 2));

    let mut inner = vec![0xffu8; 6];
    inner.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    inner.resize(60, 0);
    let vx = |flags: u8, vni: u32| {
        let v = (vni << 8).to_be_bytes();
        let mut d = vec![flags, 0, 0, 0, v[0], v[1], v[2], 0];
        d.extend_from_slice(&inner);
        d
    };
    let sends: Vec<Vec<u8>> = [
        vec![vx(0x08, 99); 5],                // unknown VNI
        vec![vx(0x00, 42); 4],                // I flag clear
        vec![vx(0x08, 42)[..15].to_vec(); 3], // truncated
        vec![Vec::new(); 2],                  // empty
    ]
    .concat();
    let target = format!("{ip_a}:4789");
    let hb = NetnsHandle::open(hosts[1].ns.name()).expect("host B netns");
    let src = ip_b.clone();
    in_netns(&hb, move || {
        let s = UdpSocket::bind(format!("{src}:0")).expect("bind on B's underlay");
        for d in &sends {
            s.send_to(d, &target).expect("send");
        }
    })
    .expect("in host B");
    // And from an address that is not a configured remote.
    hosts[1]
        .ns
        .exec_ok("ip", &["addr", "add", "10.199.5.77/24", "dev", "ul0"]);
    let target = format!("{ip_a}:4789");
    let d = vx(0x08, 42);
    in_netns(&hb, move || {
        let s = UdpSocket::bind("10.199.5.77:0").expect("bind stranger");
        for _ in 0..6 {
            s.send_to(&d, &target).expect("send");
        }
    })
    .expect("in host B");

    let a = hosts[0].inst.as_ref().unwrap();
    let mut row = port_stats(a, "vx0");
    for _ in 0..50 {
        if row["tunnel"]["unknown_vtep"].as_u64() == Some(6) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        row = port_stats(a, "vx0");
    }
    let t = &row["tunnel"];
    assert_eq!(t["unknown_vni"].as_u64(), Some(5), "{row}");
    assert_eq!(t["bad_flags"].as_u64(), Some(4), "{row}");
    assert_eq!(t["truncated"].as_u64(), Some(5), "{row}");
    assert_eq!(t["unknown_vtep"].as_u64(), Some(6), "{row}");
    assert!(row["rx_dropped"].as_u64().unwrap() >= 20, "{row}");
    // The tunnel still carries good traffic.
    assert!(
        ping(&ca, "192.168.65.2", 2),
        "valid traffic after the garbage"
    );
    // The bogus sender MAC 02:00:00:00:00:09 was never learned.
    let fdb = a.ctl_ok(&["fdb-show", "br0"]);
    assert!(!fdb.contains("02:00:00:00:00:09"), "{fdb}");
}
