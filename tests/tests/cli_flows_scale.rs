//! System test (root): 10,000 rules installed by `add-flows` and swapped by
//! `replace-flows` while traffic flows. The two rule sets forward the
//! test traffic differently, and any mix of them (the new set's drop-all
//! fallback without its forwarding rules, or the reverse) drops it, so a
//! lost reply would reveal a non-atomic swap. Install rate and the worst
//! RTT seen during the swaps are printed (figures, not assertions).

mod cli_support;

use cli_support::{ping, ready, Instance};
use std::fmt::Write as _;
use std::time::Instant;
use tests::Netns;

const RULES: usize = 10_000;

/// Set A: explicit in_port forwarding, drop-all fallback, filler on TCP.
fn set_a() -> String {
    let mut s = String::from(
        "priority=200,in_port=c1,actions=output:c2\npriority=200,in_port=c2,actions=output:c1\npriority=1,actions=drop\n",
    );
    for i in 0..RULES - 3 {
        let _ = writeln!(
            s,
            "priority=100,tcp,nw_dst=10.{}.{}.{},tp_dst=9,actions=drop",
            100 + i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    s
}

/// Set B: NORMAL at priority 150, filler on UDP. Between A and B any
/// intermediate table (empty, or A's drop-all without its forwarding
/// rules) drops the ping.
fn set_b() -> String {
    let mut s = String::from("priority=150,actions=NORMAL\n");
    for i in 0..RULES - 1 {
        let _ = writeln!(
            s,
            "priority=100,udp,nw_dst=10.{}.{}.{},tp_dst=9,actions=drop",
            100 + i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    s
}

#[test]
fn ten_thousand_rules_install_and_swap_atomically_under_traffic() {
    if !ready("ten_thousand_rules_install_and_swap_atomically_under_traffic") {
        return;
    }
    let inst = Instance::new();
    let a = Netns::new("vswfa");
    let b = Netns::new("vswfb");
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    for (name, ns, ip) in [("c1", &a, "10.215.0.1/24"), ("c2", &b, "10.215.0.2/24")] {
        inst.ctl_ok(&[
            "add-port",
            "br0",
            name,
            "type=tap",
            &format!("netns={}", ns.name()),
            &format!("ip={ip}"),
        ]);
    }
    assert!(ping(&a, "10.215.0.2", 2));

    let fa = inst.dir.join("a.flows");
    let fb = inst.dir.join("b.flows");
    std::fs::write(&fa, set_a()).unwrap();
    std::fs::write(&fb, set_b()).unwrap();

    let t = Instant::now();
    inst.ctl_ok(&["add-flows", "br0", fa.to_str().unwrap()]);
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "add-flows: {RULES} rules in {secs:.3} s = {:.0} rules/s (CLI → controld → vswitchd → state.json)",
        RULES as f64 / secs
    );
    assert_eq!(
        inst.rules("br0").len(),
        RULES + 1,
        "10k rules plus the default"
    );
    assert!(ping(&a, "10.215.0.2", 2), "set A forwards");

    // Traffic during the swaps: 0.01 s apart, bounded count. `-w` makes
    // ping wait for every reply (up to 30 s), so only a dropped packet —
    // not a slow one — counts as lost.
    let pinger = a.spawn(
        "ping",
        &["-c", "400", "-i", "0.01", "-w", "30", "10.215.0.2"],
    );
    let mut swap_secs = Vec::new();
    for round in 0..6 {
        let f = if round % 2 == 0 { &fb } else { &fa };
        let t = Instant::now();
        inst.ctl_ok(&["replace-flows", "br0", f.to_str().unwrap()]);
        swap_secs.push(t.elapsed().as_secs_f64());
    }
    let out = pinger.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("packet loss") || l.contains("rtt"))
        .collect();
    eprintln!(
        "replace-flows of {RULES} rules: {:?} s each; ping during swaps: {summary:?}",
        swap_secs
            .iter()
            .map(|s| (s * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>()
    );
    assert!(
        text.contains(" 0% packet loss"),
        "a packet saw a mix of the two rule sets (or none): {text}"
    );
    // The last swap installed set A again, exactly.
    let rules = inst.rules("br0");
    assert_eq!(rules.len(), RULES);
    assert!(rules
        .iter()
        .any(|r| r.contains("in_port=c1") && r.contains("output:c2")));
}
