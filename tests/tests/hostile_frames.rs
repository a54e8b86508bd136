//! System test (root) of issue 8 part 2 on a live switch: a container
//! sends every hostile frame of `tests::hostile` (truncated headers at
//! every boundary, bogus lengths, empty payloads, frames above the MTU,
//! VLAN stacks, IPv6 extension chains, fragments) through the real
//! daemons to a sink container, while two other containers on the same
//! bridge keep pinging and run a byte-checked transfer.
//!
//! Afterwards every frame must be accounted for, exactly:
//! - dropped ones under their `stats drops` reason (`runt`, `mtu`), and
//!   no other drop reason moved;
//! - the rest switched on L2 to the sink (counted there with a packet
//!   socket, by the generator's source MAC) and, for a bad header above
//!   L2, counted under its parser anomaly (`stats pmd` `anomaly_*`);
//! - the valid traffic lost nothing and both daemons are still alive.

mod cli_support;

use cli_support::{bin_dir, ready, Instance};
use std::collections::BTreeMap;
use std::time::Duration;
use tests::hostile::{frames, tally, Verdict, MAX_FRAME};
use tests::Netns;

/// The generator's source MAC: one no kernel uses, so the sink counts
/// exactly the generator's frames.
const SRC: &str = "02:66:66:66:66:01";
const SRC_BYTES: [u8; 6] = [2, 0x66, 0x66, 0x66, 0x66, 1];
const ROUNDS: u64 = 4;
const ANOMALIES: [&str; 7] = [
    "truncated_l3",
    "bad_ipv4_header",
    "bad_ipv6_header",
    "bad_arp",
    "truncated_l4",
    "bad_tcp_header",
    "too_many_vlan_tags",
];

fn json(inst: &Instance, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&inst.ctl_ok(&full)).expect("json reply")
}

/// `stats drops` as a map.
fn drops(inst: &Instance) -> BTreeMap<String, u64> {
    json(inst, &["stats", "drops"])["drops"]
        .as_object()
        .expect("drops object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .collect()
}

/// `anomaly_*` counters of `stats pmd`, summed over PMDs.
fn anomalies(inst: &Instance) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for pmd in json(inst, &["stats", "pmd"])["pmds"]
        .as_array()
        .expect("pmds")
    {
        for (k, v) in pmd["counters"].as_object().expect("counters") {
            if let Some(name) = k.strip_prefix("anomaly_") {
                *m.entry(name.to_owned()).or_insert(0) += v.as_u64().unwrap_or(0);
            }
        }
    }
    m
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

fn add_tap(inst: &Instance, port: &str, ns: &Netns, ip: &str) {
    inst.ctl_ok(&[
        "add-port",
        "br0",
        port,
        "type=tap",
        &format!("netns={}", ns.name()),
        &format!("ip={ip}/24"),
    ]);
}

/// A namespace without IPv6, so its kernel sends nothing on its own
/// (router solicitations, MLD) that could blur exact counts.
fn quiet_ns(prefix: &str) -> Netns {
    let ns = Netns::new(prefix);
    for key in ["all", "default"] {
        ns.exec_ok(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{key}.disable_ipv6=1")],
        );
    }
    ns
}

#[test]
fn hostile_frames_land_in_typed_counters_while_valid_traffic_flows() {
    if !ready("hostile_frames_land_in_typed_counters_while_valid_traffic_flows") {
        return;
    }
    if !tests::have_tool("sysctl") {
        eprintln!("SKIP hostile_frames: sysctl not installed");
        return;
    }
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    let h = quiet_ns("vswhh");
    let s = quiet_ns("vswhs");
    let v1 = quiet_ns("vswhv");
    let v2 = quiet_ns("vswhv");
    add_tap(&inst, "h1", &h, "10.217.0.1");
    add_tap(&inst, "s1", &s, "10.217.0.2");
    add_tap(&inst, "v1", &v1, "10.217.0.3");
    add_tap(&inst, "v2", &v2, "10.217.0.4");
    // The sink's MAC is learned, and the generator may send big frames.
    assert!(cli_support::ping(&s, "10.217.0.1", 2), "s1 → h1");
    assert!(cli_support::ping(&v1, "10.217.0.4", 2), "v1 → v2");
    h.exec_ok("ip", &["link", "set", "eth0", "mtu", "9100"]);
    let sink_mac = s
        .exec_ok("cat", &["/sys/class/net/eth0/address"])
        .trim()
        .to_owned();
    let sink_bytes: Vec<u8> = sink_mac
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).expect("hex MAC"))
        .collect();

    let hostile = bin_dir().join("vsw-hostile");
    let hostile = hostile.to_str().expect("utf-8 path");
    let drops_before = drops(&inst);
    let anomalies_before = anomalies(&inst);
    let counter = s.spawn(hostile, &["count", "eth0", SRC, "3000", "120"]);
    std::thread::sleep(Duration::from_millis(300));
    let pinger = v1.spawn(
        "ping",
        &["-c", "60", "-i", "0.05", "-w", "60", "10.217.0.4"],
    );
    // A paced, byte-checked TCP transfer v1 → v2 alongside: paced so that
    // the valid traffic itself never overruns a queue, which would move a
    // drop counter this test expects to stay still.
    let stream = bin_dir().join("vsw-stream");
    let stream = stream.to_str().expect("utf-8 path");
    let rx = v2.spawn(stream, &["recv", "10.217.0.4:5203", "30000000", "10"]);
    std::thread::sleep(Duration::from_millis(200));
    let tx = v1.spawn(stream, &["send", "10.217.0.4:5203", "30000000", "10", "10"]);
    let sent = h.exec_ok(
        hostile,
        &["send", "eth0", SRC, &sink_mac, &ROUNDS.to_string(), "300"],
    );
    let rx_out = rx.wait();
    let _ = tx.wait();
    let rx_text = String::from_utf8_lossy(&rx_out.stdout);
    assert!(
        rx_out.status.success() && rx_text.starts_with("ok 30000000"),
        "the valid transfer completes intact: {rx_text}"
    );
    let counted = counter.wait();
    let ping_out = pinger.wait();
    let ping_text = String::from_utf8_lossy(&ping_out.stdout);

    // What was sent, and what each frame is owed.
    let set = frames(
        SRC_BYTES,
        sink_bytes.try_into().expect("6-byte MAC"),
        MAX_FRAME,
    );
    let t = tally(&set);
    let n = |v: Verdict| t.iter().find(|(x, _)| *x == v).map_or(0, |(_, n)| *n) * ROUNDS;
    let total = set.len() as u64 * ROUNDS;
    assert_eq!(
        sent.trim(),
        format!("sent {total} failed 0"),
        "the kernel took every frame"
    );
    let mut want_drops = BTreeMap::new();
    want_drops.insert("runt".to_owned(), n(Verdict::Drop("runt")));
    want_drops.insert("mtu".to_owned(), n(Verdict::Drop("mtu")));
    let want_anomalies: BTreeMap<String, u64> = ANOMALIES
        .iter()
        .map(|a| (a.to_string(), n(Verdict::Forward(Some(a)))))
        .collect();
    let forwarded: u64 = t
        .iter()
        .filter(|(v, _)| matches!(v, Verdict::Forward(_)))
        .map(|(_, c)| c * ROUNDS)
        .sum();

    let got_drops = delta(&drops(&inst), &drops_before);
    let got_anomalies = delta(&anomalies(&inst), &anomalies_before);
    let got_sink: u64 = String::from_utf8_lossy(&counted.stdout)
        .trim()
        .strip_prefix("count ")
        .and_then(|c| c.parse().ok())
        .expect("the counter reports");
    eprintln!(
        "hostile frames: {total} sent ({} kinds × {ROUNDS}); drops {got_drops:?}; \
         anomalies {got_anomalies:?}; {got_sink} of {forwarded} switched to the sink; \
         valid ping: {}",
        set.len(),
        ping_text
            .lines()
            .find(|l| l.contains("packet loss"))
            .unwrap_or("?")
    );
    assert_eq!(got_drops, want_drops, "drops by reason, exactly");
    assert_eq!(
        got_anomalies,
        want_anomalies
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .collect::<BTreeMap<_, _>>(),
        "parser anomalies, exactly"
    );
    assert_eq!(
        got_sink, forwarded,
        "every frame not dropped reached the sink"
    );
    assert!(
        ping_text.contains(" 0% packet loss"),
        "valid traffic kept flowing: {ping_text}"
    );
    // Both daemons still alive and answering.
    for d in ["vswitchd", "vswitch-controld"] {
        let pid = inst.pid(d).expect("pid file");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.is_empty() && !stat.contains(") Z"), "{d} alive");
    }
    inst.ctl_ok(&["status"]);
    assert!(cli_support::ping(&v1, "10.217.0.4", 2));
}
