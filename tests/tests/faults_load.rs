//! System tests (root) of issue 8 part 3, faults under load: while a
//! paced, byte-checked TCP transfer crosses the switch, one fault is
//! injected — `kill -9` of either daemon, a container namespace deleted,
//! a port deleted and re-added, 10k rules replaced, the AF_XDP device
//! taken down and up. The transfer must either complete intact or fail
//! with a clear error (never deliver corrupt bytes), a second container
//! pair on other ports must keep forwarding, and the switch's state
//! (ports, rules) must be what the operator configured.
//!
//! The transfer is paced (`vsw-stream`, MB/s) so that it is provably still
//! running when the fault hits, whatever the machine's speed. Tests in
//! this binary run one at a time: each runs two daemons with PMD threads
//! and a transfer, and the machine may have only two cores.

mod cli_support;

use cli_support::{bin_dir, ping, ready, Instance};
use std::fmt::Write as _;
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tests::{ChildGuard, Netns, Veth};

/// Bytes of the transfer under fault, its pace, and the receiver's idle
/// timeout (long enough for TCP to retransmit across a daemon restart).
const BYTES: u64 = 60_000_000;
const MBPS: &str = "15";
const IDLE_SECS: &str = "25";
/// When the fault is injected after the transfer started.
const FAULT_AFTER: Duration = Duration::from_millis(1500);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn stream_bin() -> String {
    bin_dir().join("vsw-stream").to_string_lossy().into_owned()
}

/// One container: its namespace, port name and address.
struct Container {
    ns: Netns,
    port: String,
    ip: String,
}

/// An instance with bridge br0 and TAP containers c1..c4 on
/// 10.216.`subnet`.0/24: c1→c2 carries the transfer under fault, c3↔c4
/// is the unaffected pair.
fn lab(subnet: u8) -> (Instance, Vec<Container>) {
    let inst = Instance::new();
    inst.ctl_ok(&["start"]);
    inst.ctl_ok(&["add-br", "br0"]);
    let mut cs = Vec::new();
    for i in 1..=4u8 {
        let c = Container {
            ns: Netns::new("vswfl"),
            port: format!("c{i}"),
            ip: format!("10.216.{subnet}.{i}"),
        };
        add_tap(&inst, &c);
        cs.push(c);
    }
    assert!(ping(&cs[0].ns, &cs[1].ip, 3), "c1 → c2 before the fault");
    assert!(ping(&cs[2].ns, &cs[3].ip, 3), "c3 → c4 before the fault");
    (inst, cs)
}

fn add_tap(inst: &Instance, c: &Container) {
    inst.ctl_ok(&[
        "add-port",
        "br0",
        &c.port,
        "type=tap",
        &format!("netns={}", c.ns.name()),
        &format!("ip={}/24", c.ip),
    ]);
}

/// How a transfer ended.
#[derive(Debug)]
enum Outcome {
    /// Every byte arrived, in order, intact.
    Intact,
    /// The receiver stopped early and said why.
    Failed(String),
}

/// A running paced transfer.
struct Stream {
    rx: Option<ChildGuard>,
    tx: Option<ChildGuard>,
}

impl Stream {
    fn start(from: &Netns, to: &Netns, to_ip: &str, bytes: u64, idle_secs: &str) -> Stream {
        let addr = format!("{to_ip}:5201");
        let n = bytes.to_string();
        let rx = to.spawn(&stream_bin(), &["recv", &addr, &n, idle_secs]);
        // The receiver binds first; the sender retries its connect anyway.
        std::thread::sleep(Duration::from_millis(200));
        let tx = from.spawn(&stream_bin(), &["send", &addr, &n, MBPS, idle_secs]);
        Stream {
            rx: Some(rx),
            tx: Some(tx),
        }
    }

    /// True while the receiver has not finished.
    fn running(&mut self) -> bool {
        self.rx
            .as_mut()
            .is_some_and(|c| matches!(c.child_mut().try_wait(), Ok(None)))
    }

    /// Waits (bounded) for the receiver's verdict and checks it is one of
    /// the two allowed outcomes: intact, or a clear error that is not a
    /// byte mismatch.
    fn finish(mut self, limit: Duration) -> Outcome {
        let out = wait_bounded(self.rx.take().expect("receiver"), limit)
            .expect("the receiver gives a verdict within its bounds");
        let _ = self
            .tx
            .take()
            .map(|t| wait_bounded(t, Duration::from_secs(30)));
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            !text.contains("mismatch"),
            "the transfer delivered corrupt bytes: {text}"
        );
        if out.status.success() {
            assert_eq!(
                text.split_whitespace().nth(1),
                Some(BYTES.to_string().as_str()),
                "{text}"
            );
            Outcome::Intact
        } else {
            assert!(
                text.starts_with("error: ") && text.len() > "error: ".len(),
                "a failed transfer must say why: {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Outcome::Failed(text)
        }
    }
}

/// Waits for a child to exit, at most `limit`; None (and the child
/// killed by the guard) when it did not.
fn wait_bounded(mut c: ChildGuard, limit: Duration) -> Option<Output> {
    let t = Instant::now();
    while t.elapsed() < limit {
        match c.child_mut().try_wait() {
            Ok(Some(_)) => return Some(c.wait()),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => return None,
        }
    }
    None
}

/// A bounded ping in the background: `count` requests 0.05 s apart, each
/// waited for (`-w`), so only a dropped request counts as lost.
fn background_ping(from: &Netns, ip: &str, count: u32) -> ChildGuard {
    from.spawn(
        "ping",
        &["-c", &count.to_string(), "-i", "0.05", "-w", "60", ip],
    )
}

/// The loss line of a finished ping, asserting it lost nothing.
fn assert_no_loss(p: ChildGuard, what: &str) -> String {
    let out = wait_bounded(p, Duration::from_secs(90)).expect("ping finishes");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text
        .lines()
        .find(|l| l.contains("packet loss"))
        .unwrap_or("no summary")
        .to_owned();
    assert!(
        text.contains(" 0% packet loss"),
        "{what}: the unaffected pair lost pings: {text}"
    );
    summary
}

fn show(inst: &Instance) -> serde_json::Value {
    serde_json::from_str(&inst.ctl_ok(&["-o", "json", "show"])).expect("show json")
}

/// (name, ofport, state) of every port of br0.
fn ports(inst: &Instance) -> Vec<(String, u64, String)> {
    show(inst)["bridges"][0]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["ofport"].as_u64().unwrap_or_default(),
                p["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn port_state(inst: &Instance, port: &str) -> String {
    ports(inst)
        .into_iter()
        .find(|(n, _, _)| n == port)
        .map(|(_, _, s)| s)
        .unwrap_or_default()
}

/// Waits (bounded) until `port`'s state satisfies `want`.
fn wait_state(inst: &Instance, port: &str, want: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let s = port_state(inst, port);
        if want(&s) || t.elapsed() > Duration::from_secs(10) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `stats drops` as (reason, count).
fn drops(inst: &Instance) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&inst.ctl_ok(&["-o", "json", "stats", "drops"])).expect("drops json");
    v["drops"].clone()
}

/// A short verified transfer (the shared helper asserts every byte).
fn short_transfer(from: &Container, to: &Container) {
    let trafcheck = bin_dir().join("vsw-trafcheck");
    tests::verified_tcp_transfer(
        trafcheck.to_str().expect("utf-8 path"),
        &from.ns,
        &to.ns,
        &format!("{}:5202", to.ip),
        5_000_000,
    );
}

#[test]
fn kill9_vswitchd_during_transfer_never_corrupts_and_restores_everything() {
    if !ready("kill9_vswitchd_during_transfer_never_corrupts_and_restores_everything") {
        return;
    }
    let _s = serial();
    let (inst, c) = lab(1);
    inst.ctl_ok(&["add-flow", "br0", "priority=20,udp,tp_dst=9,actions=drop"]);
    let rules = inst.rules("br0");
    let before = ports(&inst);

    let mut s = Stream::start(&c[0].ns, &c[1].ns, &c[1].ip, BYTES, IDLE_SECS);
    std::thread::sleep(FAULT_AFTER);
    assert!(s.running(), "the transfer is under way when the fault hits");
    inst.kill9("vswitchd");
    let t = Instant::now();
    inst.ctl_ok(&["start"]);
    let gap = t.elapsed();
    let outcome = s.finish(Duration::from_secs(120));
    eprintln!("kill -9 vswitchd: restart took {gap:?}; transfer: {outcome:?}");

    assert_eq!(inst.rules("br0"), rules, "rules restored");
    assert_eq!(ports(&inst), before, "ports restored, same numbers, up");
    assert!(ping(&c[2].ns, &c[3].ip, 3), "c3 → c4 after the restart");
    short_transfer(&c[0], &c[1]);
}

#[test]
fn kill9_controld_during_transfer_loses_nothing() {
    if !ready("kill9_controld_during_transfer_loses_nothing") {
        return;
    }
    let _s = serial();
    let (inst, c) = lab(2);
    let rules = inst.rules("br0");

    let mut s = Stream::start(&c[0].ns, &c[1].ns, &c[1].ip, BYTES, IDLE_SECS);
    let p = background_ping(&c[2].ns, &c[3].ip, 60);
    std::thread::sleep(FAULT_AFTER);
    assert!(s.running(), "the transfer is under way when the fault hits");
    inst.kill9("vswitch-controld");
    let outcome = s.finish(Duration::from_secs(120));
    let loss = assert_no_loss(p, "kill -9 controld");
    eprintln!("kill -9 controld: transfer {outcome:?}; c3 → c4 ping: {loss}");
    assert!(
        matches!(outcome, Outcome::Intact),
        "vswitchd forwards on its own: {outcome:?}"
    );
    inst.ctl_ok(&["start"]);
    assert_eq!(inst.rules("br0"), rules, "state intact after restart");
}

#[test]
fn container_namespace_deleted_takes_its_port_down_and_others_keep_forwarding() {
    if !ready("container_namespace_deleted_takes_its_port_down_and_others_keep_forwarding") {
        return;
    }
    let _s = serial();
    let (inst, mut c) = lab(3);
    // Short idle timeout: the stream cannot resume once its sender's
    // namespace is gone, and the receiver should say so quickly.
    let mut s = Stream::start(&c[0].ns, &c[1].ns, &c[1].ip, BYTES, "5");
    let p = background_ping(&c[2].ns, &c[3].ip, 80);
    std::thread::sleep(FAULT_AFTER);
    assert!(s.running(), "the transfer is under way when the fault hits");
    let victim = c.remove(0);
    victim.ns.delete();

    let state = wait_state(&inst, "c1", |s| s.starts_with("down"));
    assert_eq!(state, "down (device gone)", "c1 goes down with its reason");
    // Frames towards the dead container are counted, not lost silently.
    let before = drops(&inst)["port_down"].as_u64().unwrap_or(0);
    assert!(!ping(&c[0].ns, &victim.ip, 2), "c1 is unreachable");
    let after = drops(&inst)["port_down"].as_u64().unwrap_or(0);
    let outcome = s.finish(Duration::from_secs(60));
    let loss = assert_no_loss(p, "namespace deleted");
    short_transfer(&c[1], &c[2]);
    eprintln!(
        "namespace deleted: c1 {state}; port_down drops {before} → {after}; \
         transfer {outcome:?}; c3 → c4 ping: {loss}"
    );
    assert!(after > before, "port_down counts the frames for c1");
    match outcome {
        Outcome::Failed(why) => assert!(
            why.contains("read at byte") || why.contains("ended at byte"),
            "the receiver names where the stream stopped: {why}"
        ),
        Outcome::Intact => panic!("the sender's namespace is gone: the stream cannot finish"),
    }
    // The other ports stay up and numbered as before.
    let rest = ports(&inst);
    for name in ["c2", "c3", "c4"] {
        assert!(
            rest.iter().any(|(n, _, st)| n == name && st == "up"),
            "{name} stays up: {rest:?}"
        );
    }
}

#[test]
fn port_deleted_and_readded_during_transfer_fails_cleanly_or_resumes() {
    if !ready("port_deleted_and_readded_during_transfer_fails_cleanly_or_resumes") {
        return;
    }
    let _s = serial();
    let (inst, c) = lab(4);
    let mut s = Stream::start(&c[0].ns, &c[1].ns, &c[1].ip, BYTES, "10");
    let p = background_ping(&c[2].ns, &c[3].ip, 80);
    std::thread::sleep(FAULT_AFTER);
    assert!(s.running(), "the transfer is under way when the fault hits");
    inst.ctl_ok(&["del-port", "br0", "c1"]);
    std::thread::sleep(Duration::from_millis(300));
    add_tap(&inst, &c[0]);
    let outcome = s.finish(Duration::from_secs(90));
    let loss = assert_no_loss(p, "port deleted and re-added");
    eprintln!("del-port + add-port c1: transfer {outcome:?}; c3 → c4 ping: {loss}");
    assert_eq!(wait_state(&inst, "c1", |s| s == "up"), "up");
    assert!(ping(&c[0].ns, &c[1].ip, 5), "c1 forwards again");
    short_transfer(&c[0], &c[1]);
}

/// 10,000 rules: `NORMAL` at priority 1 keeps every container talking; the
/// rest drop traffic nobody sends (UDP or TCP to port 9 of other nets),
/// so a half-applied swap would show up as loss, not as a pass.
fn rule_set(proto: &str) -> String {
    let mut s = String::from("priority=1,actions=NORMAL\n");
    for i in 0..9_999u32 {
        let _ = writeln!(
            s,
            "priority=100,{proto},nw_dst=10.{}.{}.{},tp_dst=9,actions=drop",
            120 + i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    s
}

#[test]
fn ten_thousand_rules_replaced_during_transfer_lose_nothing() {
    if !ready("ten_thousand_rules_replaced_during_transfer_lose_nothing") {
        return;
    }
    let _s = serial();
    let (inst, c) = lab(5);
    let fa = inst.dir.join("a.flows");
    let fb = inst.dir.join("b.flows");
    std::fs::write(&fa, rule_set("udp")).expect("write flows");
    std::fs::write(&fb, rule_set("tcp")).expect("write flows");
    inst.ctl_ok(&["replace-flows", "br0", fa.to_str().expect("utf-8")]);

    let mut s = Stream::start(&c[0].ns, &c[1].ns, &c[1].ip, BYTES, IDLE_SECS);
    let p = background_ping(&c[2].ns, &c[3].ip, 100);
    std::thread::sleep(FAULT_AFTER);
    assert!(
        s.running(),
        "the transfer is under way when the swaps start"
    );
    let mut took = Vec::new();
    for round in 0..4 {
        let f = if round % 2 == 0 { &fb } else { &fa };
        let t = Instant::now();
        inst.ctl_ok(&["replace-flows", "br0", f.to_str().expect("utf-8")]);
        took.push(t.elapsed().as_millis());
    }
    let outcome = s.finish(Duration::from_secs(120));
    let loss = assert_no_loss(p, "10k rules replaced");
    eprintln!("replace-flows ×4 of 10k rules ({took:?} ms): transfer {outcome:?}; ping {loss}");
    assert!(
        matches!(outcome, Outcome::Intact),
        "rule swaps must not break the transfer: {outcome:?}"
    );
    assert_eq!(inst.rules("br0").len(), 10_000, "set A in place, exactly");
}

/// Root, and a kernel that can make an XSKMAP and an AF_XDP socket.
fn afxdp_available(test: &str) -> bool {
    if let Err(e) = datapath::sys::bpf::XskMap::new(1) {
        eprintln!("SKIP {test}: no bpf(2) here: {e}");
        return false;
    }
    // SAFETY: plain socket(2) probe; the fd is closed right away.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW, 0) };
    if fd < 0 {
        eprintln!("SKIP {test}: no AF_XDP sockets here");
        return false;
    }
    // SAFETY: fd was just opened above and is closed once.
    unsafe { libc::close(fd) };
    true
}

#[test]
fn afxdp_device_down_and_up_during_transfer_resumes() {
    let name = "afxdp_device_down_and_up_during_transfer_resumes";
    if !ready(name) || !afxdp_available(name) {
        return;
    }
    let _s = serial();
    let (inst, c) = lab(6);
    // x1: a namespace behind a veth whose root end is an AF_XDP port.
    let x = Netns::new("vswfx");
    let veth = Veth::new("vswfv");
    tests::ip(&["link", "set", &veth.b, "netns", x.name()]);
    x.exec_ok("ip", &["link", "set", &veth.b, "name", "eth0"]);
    x.exec_ok("ip", &["addr", "add", "10.216.6.9/24", "dev", "eth0"]);
    x.exec_ok("ip", &["link", "set", "eth0", "up"]);
    tests::ip(&["link", "set", &veth.a, "up"]);
    inst.ctl_ok(&[
        "add-port",
        "br0",
        "x1",
        "type=afxdp",
        &format!("dev={}", veth.a),
    ]);
    assert!(
        (0..5).any(|_| ping(&c[0].ns, "10.216.6.9", 2)),
        "c1 → x1 before the fault"
    );

    let mut s = Stream::start(&c[0].ns, &x, "10.216.6.9", BYTES, IDLE_SECS);
    let p = background_ping(&c[2].ns, &c[3].ip, 80);
    std::thread::sleep(FAULT_AFTER);
    assert!(s.running(), "the transfer is under way when the fault hits");
    tests::ip(&["link", "set", "dev", &veth.a, "down"]);
    let down = wait_state(&inst, "x1", |s| s.starts_with("down"));
    std::thread::sleep(Duration::from_millis(1000));
    tests::ip(&["link", "set", "dev", &veth.a, "up"]);
    let up = wait_state(&inst, "x1", |s| s == "up");
    let t = Instant::now();
    let back = (0..20).any(|_| ping(&c[0].ns, "10.216.6.9", 1));
    let resumed_after = t.elapsed();
    let outcome = s.finish(Duration::from_secs(120));
    let loss = assert_no_loss(p, "AF_XDP device down/up");
    eprintln!(
        "AF_XDP dev down/up: states {down:?} → {up:?}; ping back after {resumed_after:?}; \
         transfer {outcome:?}; c3 → c4 ping: {loss}"
    );
    assert_eq!(down, "down (admin)", "the port goes down with its reason");
    assert_eq!(up, "up", "the port comes back");
    assert!(back, "traffic resumes after the device is up again");
    assert!(
        matches!(outcome, Outcome::Intact),
        "TCP retransmits across a short link flap: {outcome:?}"
    );
    assert!(inst
        .pid("vswitchd")
        .is_some_and(|p| { std::fs::metadata(format!("/proc/{p}")).is_ok() }));
}
