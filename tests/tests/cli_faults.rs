//! System tests (root) of the faults issue 5 says the switch survives:
//! `kill -9` of either daemon, with two namespaces on TAP ports.

mod cli_support;

use cli_support::{ping, ready, Instance};
use tests::Netns;

/// An instance with br0 and two container ports c1/c2 at 10.x.y.1/2.
fn two_containers(inst: &Instance, subnet: u8) -> (Netns, Netns, String, String) {
    let a = Netns::new("vswca");
    let b = Netns::new("vswcb");
    let ip_a = format!("10.213.{subnet}.1");
    let ip_b = format!("10.213.{subnet}.2");
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    inst.ctl_ok(&[
        "add-port",
        "br0",
        "c1",
        "type=tap",
        &format!("netns={}", a.name()),
        &format!("ip={ip_a}/24"),
    ]);
    inst.ctl_ok(&[
        "add-port",
        "br0",
        "c2",
        "type=tap",
        &format!("netns={}", b.name()),
        &format!("ip={ip_b}/24"),
    ]);
    (a, b, ip_a, ip_b)
}

#[test]
fn kill9_controld_keeps_traffic_and_state() {
    if !ready("kill9_controld_keeps_traffic_and_state") {
        return;
    }
    let inst = Instance::new();
    let (a, _b, _ip_a, ip_b) = two_containers(&inst, 1);
    inst.ctl_ok(&["add-flow", "br0", "priority=20,tcp,tp_dst=9,actions=drop"]);
    inst.ctl_ok(&["add-flow", "br0", "priority=30,udp,tp_dst=9,actions=drop"]);
    assert!(ping(&a, &ip_b, 2), "ping before the fault");
    let rules = inst.rules("br0");

    // Traffic in flight while the control process dies.
    let flood = a.spawn("ping", &["-c", "20", "-i", "0.1", "-W", "1", &ip_b]);
    inst.kill9("vswitch-controld");
    let out = flood.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "traffic must keep flowing without the control process: {text}"
    );
    // Reads still answer, from vswitchd, with a warning.
    let o = inst.ctl(&["dump-flows", "br0", "--no-stats"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning"));
    // Changes need the control process.
    assert_eq!(inst.code(&["add-br", "br1"]), 3);

    inst.ctl_ok(&["start"]);
    assert_eq!(inst.rules("br0"), rules, "exactly the rules added before");
    inst.ctl_ok(&["add-flow", "br0", "priority=40,in_port=c1,actions=drop"]);
    assert!(!ping(&a, &ip_b, 2), "the new drop rule applies");
    inst.ctl_ok(&["del-flows", "br0", "in_port=c1"]);
    assert!(ping(&a, &ip_b, 3));
}

#[test]
fn kill9_vswitchd_keeps_interfaces_and_start_restores_everything() {
    if !ready("kill9_vswitchd_keeps_interfaces_and_start_restores_everything") {
        return;
    }
    let inst = Instance::new();
    let (a, b, ip_a, ip_b) = two_containers(&inst, 2);
    inst.ctl_ok(&["add-flow", "br0", "priority=20,tcp,tp_dst=9,actions=drop"]);
    assert!(ping(&a, &ip_b, 2));
    let rules = inst.rules("br0");
    let ports_before: serde_json::Value =
        serde_json::from_str(&inst.ctl_ok(&["-o", "json", "show"])).unwrap();

    inst.kill9("vswitchd");
    // The containers keep their interfaces and addresses (persistent TAPs).
    let addr_a = a.exec_ok("ip", &["-br", "addr", "show", "eth0"]);
    assert!(addr_a.contains(&ip_a), "{addr_a}");
    let addr_b = b.exec_ok("ip", &["-br", "addr", "show", "eth0"]);
    assert!(addr_b.contains(&ip_b), "{addr_b}");

    inst.ctl_ok(&["start"]);
    assert_eq!(inst.rules("br0"), rules);
    let ports_after: serde_json::Value =
        serde_json::from_str(&inst.ctl_ok(&["-o", "json", "show"])).unwrap();
    let names = |v: &serde_json::Value| -> Vec<(String, u64, String)> {
        v["bridges"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["ofport"].as_u64().unwrap(),
                    p["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(names(&ports_after), names(&ports_before));
    assert!(names(&ports_after).iter().all(|(_, _, s)| s == "up"));
    assert!(ping(&a, &ip_b, 3), "ping works again");
}

#[test]
fn del_port_removes_the_container_interface() {
    if !ready("del_port_removes_the_container_interface") {
        return;
    }
    let inst = Instance::new();
    let (a, _b, _ip_a, _ip_b) = two_containers(&inst, 3);
    inst.ctl_ok(&["del-port", "br0", "c1"]);
    let o = a.exec("ip", &["link", "show", "eth0"]);
    assert!(!o.status.success(), "eth0 must be gone from the namespace");
    let j: serde_json::Value = serde_json::from_str(&inst.ctl_ok(&["-o", "json", "show"])).unwrap();
    let ports = j["bridges"][0]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "c2");
    assert_eq!(ports[0]["ofport"], 2, "c2 keeps its number");
}
