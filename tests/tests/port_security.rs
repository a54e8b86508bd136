//! System test (root; skipped with a message otherwise) of port security
//! through the real daemons: three containers on TAP ports of one bridge.
//! c1 has `allowed-ips=` its own address. When c1 takes another address,
//! or sends gratuitous ARP replies claiming c2's address (ARP spoofing),
//! its frames are dropped and counted in `vswitchctl stats drops` while
//! c3 (also restricted, behaving) keeps talking to c2 and keeps c2's real
//! MAC in its neighbour table. `set-port` then changes c1's list on the
//! live port.

mod cli_support;

use cli_support::{ping, ready, Instance};
use tests::Netns;

fn drops(inst: &Instance, reason: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&inst.ctl_ok(&["-o", "json", "stats", "drops"])).unwrap();
    v["drops"][reason].as_u64().unwrap_or(0)
}

fn mac_of(ns: &Netns) -> String {
    // `eth0@if5  UP  02:..:..  <...>`
    let out = ns.exec_ok("ip", &["-br", "link", "show", "eth0"]);
    out.split_whitespace()
        .find(|w| w.len() == 17 && w.matches(':').count() == 5)
        .unwrap_or_else(|| panic!("no MAC in {out}"))
        .to_owned()
}

fn mac_bytes(mac: &str) -> Vec<u8> {
    mac.split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A gratuitous ARP reply (RFC 5227 §3 "ARP announcement", as reply)
/// claiming `ip` for `mac`, as hex for `nettraffic raw-send`.
fn gratuitous_arp_hex(mac: &str, ip: [u8; 4]) -> String {
    let m = mac_bytes(mac);
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&m);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    f.extend_from_slice(&m);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&ip);
    f.resize(60, 0);
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// A ping that succeeds within three tries of three echo requests: the
/// positive checks must not fail on a loaded machine (the negative ones
/// stay single tries: a drop is a drop).
fn ping_ok(ns: &Netns, ip: &str) -> bool {
    (0..3).any(|_| ping(ns, ip, 3))
}

fn neigh_mac(ns: &Netns, ip: &str) -> String {
    ns.exec_ok("ip", &["neigh", "show", ip, "dev", "eth0"])
}

#[test]
fn spoofing_container_is_dropped_and_counted_while_others_keep_working() {
    if !ready("spoofing_container_is_dropped_and_counted_while_others_keep_working") {
        return;
    }
    let inst = Instance::new();
    let (a, b, c) = (
        Netns::new("vswsa"),
        Netns::new("vswsb"),
        Netns::new("vswsc"),
    );
    let net = "10.215.7";
    let ip = |n: u8| format!("{net}.{n}");
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    for (port, ns, n, sec) in [
        ("c1", &a, 1, Some(ip(1))),
        ("c2", &b, 2, None),
        ("c3", &c, 3, Some(format!("{},{}", ip(3), "fd00:215::3"))),
    ] {
        let mut args = vec![
            "add-port".to_owned(),
            "br0".into(),
            port.into(),
            "type=tap".into(),
            format!("netns={}", ns.name()),
            format!("ip={}/24", ip(n)),
        ];
        if let Some(s) = sec {
            args.push(format!("allowed-ips={s}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        inst.ctl_ok(&args);
    }
    let show = inst.ctl_ok(&["show"]);
    assert!(show.contains(&format!("allowed-ips={}", ip(1))), "{show}");

    // Everyone behaves: all traffic flows.
    assert!(ping_ok(&a, &ip(2)), "c1 → c2 with its own address");
    assert!(ping_ok(&c, &ip(2)), "c3 → c2");
    let c2_mac = mac_of(&b);
    assert!(neigh_mac(&c, &ip(2)).contains(&c2_mac));
    let spoofed_before = drops(&inst, "spoofed_ip");

    // 1. c1 changes its address: its ARP requests (and IP packets, were
    // the neighbour known) now carry a source it does not own. How many
    // ARP requests the kernel sends in the time of three pings varies.
    a.exec_ok("ip", &["addr", "flush", "dev", "eth0"]);
    a.exec_ok(
        "ip",
        &["addr", "add", &format!("{}/24", ip(9)), "dev", "eth0"],
    );
    assert!(
        !ping(&a, &ip(2), 3),
        "c1 with a foreign address must not reach c2"
    );
    let after_ip_change = drops(&inst, "spoofed_ip");
    assert!(
        after_ip_change > spoofed_before,
        "spoofed_ip {spoofed_before} → {after_ip_change}"
    );

    // 2. c1 announces c2's address as its own (ARP spoofing).
    let c1_mac = mac_of(&a);
    let hex = gratuitous_arp_hex(&c1_mac, [10, 215, 7, 2]);
    for _ in 0..5 {
        let o = a.exec(
            env!("CARGO_BIN_EXE_nettraffic"),
            &["raw-send", "eth0", &hex],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    }
    let after_arp = drops(&inst, "spoofed_ip");
    assert!(
        after_arp >= after_ip_change + 5,
        "spoofed_ip {after_ip_change} → {after_arp}"
    );
    // The legitimate container keeps working and was not poisoned.
    assert!(ping_ok(&c, &ip(2)), "c3 → c2 during the attack");
    let n = neigh_mac(&c, &ip(2));
    assert!(n.contains(&c2_mac) && !n.contains(&c1_mac), "{n}");

    // 3. The operator grants c1 its new address on the live port.
    inst.ctl_ok(&[
        "set-port",
        "br0",
        "c1",
        &format!("allowed-ips={},{}", ip(1), ip(9)),
    ]);
    assert!(ping_ok(&a, &ip(2)), "c1 → c2 once its address is allowed");
    let show = inst.ctl_ok(&["show"]);
    assert!(
        show.contains(&format!("allowed-ips={},{}", ip(1), ip(9))),
        "{show}"
    );
    // FDB counters are reported with the entries.
    let fdb: serde_json::Value =
        serde_json::from_str(&inst.ctl_ok(&["-o", "json", "fdb-show", "br0"])).unwrap();
    assert!(fdb["counters"]["entries"].as_u64().unwrap() >= 3, "{fdb}");
    assert_eq!(fdb["counters"]["overflow"].as_u64(), Some(0), "{fdb}");
    assert!(inst.ctl_ok(&["fdb-show", "br0"]).contains("fdb counters: "));
    println!(
        "port security: spoofed_ip drops {spoofed_before} → {after_ip_change} (address change) → {after_arp} (5 spoofed ARP replies)"
    );
}
