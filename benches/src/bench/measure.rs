//! The figures of BENCHMARKS.md ("Figures") measured on one built
//! topology: 64 B packet rate (own generator and sink), TCP (iperf3),
//! ping latency, idle CPU, memory and flow-setup rate with the longest
//! receive gap. Every wait is bounded in time and stops on Ctrl-C.

use super::cmd::{run_in, ChildGuard};
use super::error::{BenchError, Result};
use super::frame::{Endpoints, FrameTemplate};
use super::stats::{latency, Latency};
use super::sys;
use super::topology::{Topology, BRIDGE};
use super::traffic::{Endpoint, GenTotals, Generator, Sink, SinkTotals};
use datapath::flow::Field;
use datapath::pipeline::{Action, Match, Rule};
use std::time::{Duration, Instant};

/// How long and how much to measure.
#[derive(Clone, Debug)]
pub struct Options {
    /// Generator frame size without FCS (60 = 64 B on the wire).
    pub frame_size: usize,
    /// Distinct UDP 5-tuples.
    pub flows: usize,
    /// Core of generator, sink, ping and iperf3.
    pub load_core: usize,
    /// Warm-up before the pps window.
    pub pps_warmup: Duration,
    /// pps measurement window.
    pub pps_window: Duration,
    /// iperf3 duration in seconds.
    pub tcp_secs: u64,
    /// Ping samples.
    pub ping_count: usize,
    /// Seconds between pings.
    pub ping_interval: f64,
    /// Idle CPU window.
    pub idle_window: Duration,
    /// Rules installed in the flow-setup figure.
    pub flow_rules: usize,
    /// Rules per `add_flows` call.
    pub flow_batch: usize,
    /// Rate of the background traffic during flow setup and of the
    /// delivery check.
    pub paced_pps: u64,
}

impl Options {
    /// Full measurement (BENCHMARKS.md durations).
    pub fn full() -> Options {
        Options {
            frame_size: 60,
            flows: 1,
            load_core: 0,
            pps_warmup: Duration::from_secs(2),
            pps_window: Duration::from_secs(10),
            tcp_secs: 10,
            ping_count: 1000,
            ping_interval: 0.01,
            idle_window: Duration::from_secs(5),
            flow_rules: 10_000,
            flow_batch: 100,
            paced_pps: 50_000,
        }
    }

    /// `--quick`: short windows, same ping sample count.
    pub fn quick() -> Options {
        Options {
            pps_warmup: Duration::from_millis(300),
            pps_window: Duration::from_secs(1),
            tcp_secs: 2,
            ping_interval: 0.001,
            idle_window: Duration::from_secs(1),
            flow_rules: 2_000,
            ..Options::full()
        }
    }
}

fn endpoints(t: &Topology) -> Endpoints {
    Endpoints {
        src_mac: t.c1.mac,
        dst_mac: t.c2.mac,
        src_ip: t.c1.ip,
        dst_ip: t.c2.ip,
    }
}

fn gen_ep(t: &Topology, o: &Options) -> Endpoint {
    Endpoint {
        netns: t.c1.netns.clone(),
        ifname: t.c1.ifname.clone(),
        core: o.load_core,
    }
}

fn sink_ep(t: &Topology, o: &Options) -> Endpoint {
    Endpoint {
        netns: t.c2.netns.clone(),
        ifname: t.c2.ifname.clone(),
        core: o.load_core,
    }
}

/// A fresh nonce per traffic run, so stragglers of a previous run (same
/// process, same addresses) are never counted.
fn nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().rotate_left(16)
}

/// Result of the packet-rate figure.
#[derive(Clone, Debug, PartialEq)]
pub struct PpsResult {
    /// Frames the generator got out, per second, over the window.
    pub tx_kpps: f64,
    /// Generator frames counted by the sink, per second, over the window.
    pub rx_kpps: f64,
    /// 1 − rx/tx in %.
    pub loss_pct: f64,
    /// PMD cycles per forwarded packet (our switch and OVS only).
    pub pmd_cycles: Option<f64>,
    /// Whole-run totals of the paced delivery check.
    pub paced: (GenTotals, SinkTotals),
    /// Whole-run totals of the full-rate run.
    pub full: (GenTotals, SinkTotals),
}

impl PpsResult {
    /// % of the paced check's frames that arrived.
    pub fn paced_delivery_pct(&self) -> f64 {
        let (g, s) = self.paced;
        if g.sent == 0 {
            0.0
        } else {
            100.0 * s.unique as f64 / g.sent as f64
        }
    }
}

/// Counters of our PMD threads at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PmdSample {
    /// Wall time of iterations that moved packets, ns.
    pub busy_ns: u64,
    /// Wall time of empty iterations and sleeps, ns.
    pub idle_ns: u64,
    /// Packets received.
    pub packets: u64,
    /// On-CPU time of the PMD threads (procfs), s.
    pub cpu_secs: f64,
}

fn pmd_sample(t: &Topology) -> Option<PmdSample> {
    let sw = t.ours()?.switch();
    let mut s = sw
        .pmd_stats()
        .iter()
        .fold(PmdSample::default(), |mut s, i| {
            s.busy_ns += i.stats.busy_ns;
            s.idle_ns += i.stats.idle_ns;
            s.packets += i.stats.packets;
            s
        });
    s.cpu_secs = sys::threads_named("pmd")
        .into_iter()
        .filter_map(sys::thread_cpu_secs)
        .sum();
    Some(s)
}

/// Cycles per packet on the PMD core between two samples: the PMD
/// threads' on-CPU time (so time other processes took from the core does
/// not count) times their busy share (so empty polls do not count either),
/// at the nominal clock `hz`.
pub fn pmd_cycles_per_packet(a: &PmdSample, b: &PmdSample, hz: f64) -> Option<f64> {
    let packets = b.packets.checked_sub(a.packets).filter(|p| *p > 0)?;
    let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64;
    let idle = b.idle_ns.saturating_sub(a.idle_ns) as f64;
    let share = if busy + idle > 0.0 {
        busy / (busy + idle)
    } else {
        1.0
    };
    let cpu = (b.cpu_secs - a.cpu_secs).max(0.0);
    Some(cpu * share * hz / packets as f64)
}

fn ovs_cycles_per_packet(t: &Topology) -> Option<f64> {
    let out = t.ovs()?.appctl(&["dpif-netdev/pmd-stats-show"]).ok()?;
    parse_ovs_cycles(&out)
}

/// "avg processing cycles per packet: 6200.12 (...)" of pmd-stats-show.
pub fn parse_ovs_cycles(out: &str) -> Option<f64> {
    let l = out
        .lines()
        .find(|l| l.contains("avg processing cycles per packet"))?;
    l.split(':').nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Sends a paced burst (delivery check), then frames at the generator's
/// highest rate, counting what the sink in c2 gets.
pub fn pps(t: &Topology, o: &Options) -> Result<PpsResult> {
    let ep = endpoints(t);
    // Delivery check: a rate every switch sustains, so loss here is a
    // forwarding fault, not overload.
    let n = nonce();
    let sink = Sink::start(&sink_ep(t, o), n)?;
    let gen = Generator::start(
        &gen_ep(t, o),
        FrameTemplate::new(ep, o.frame_size, o.flows, n),
        Some(o.paced_pps),
    )?;
    sys::sleep(Duration::from_millis(300))?;
    let g = gen.stop();
    sys::sleep(Duration::from_millis(200))?;
    let paced = (g, sink.stop());

    let n = nonce().wrapping_add(1);
    let sink = Sink::start(&sink_ep(t, o), n)?;
    let gen = Generator::start(
        &gen_ep(t, o),
        FrameTemplate::new(ep, o.frame_size, o.flows, n),
        None,
    )?;
    if let Some(ovs) = t.ovs() {
        let _ = ovs.appctl(&["dpif-netdev/pmd-stats-clear"]);
    }
    sys::sleep(o.pps_warmup)?;
    let (tx0, rx0, pmd0, t0) = (gen.sent(), sink.unique(), pmd_sample(t), Instant::now());
    sys::sleep(o.pps_window)?;
    let (tx1, rx1, pmd1, dt) = (gen.sent(), sink.unique(), pmd_sample(t), t0.elapsed());
    let g = gen.stop();
    sys::sleep(Duration::from_millis(300))?;
    let s = sink.stop();
    if g.failed {
        return Err(BenchError::io(
            format!("generator on \"{}\"", t.c1.ifname),
            "send",
            std::io::Error::other("send() on the TX ring failed"),
        ));
    }
    let secs = dt.as_secs_f64();
    let tx = tx1.saturating_sub(tx0) as f64;
    let rx = rx1.saturating_sub(rx0) as f64;
    let pmd_cycles = match (pmd0, pmd1, sys::cpu_hz()) {
        (Some(a), Some(b), Some(hz)) => pmd_cycles_per_packet(&a, &b, hz),
        _ => ovs_cycles_per_packet(t),
    };
    Ok(PpsResult {
        tx_kpps: tx / secs / 1e3,
        rx_kpps: rx / secs / 1e3,
        loss_pct: if tx > 0.0 {
            (100.0 * (1.0 - rx / tx)).max(0.0)
        } else {
            100.0
        },
        pmd_cycles,
        paced,
        full: (g, s),
    })
}

/// `ethtool -K DEV tx on|off` on both sides.
pub fn set_tx_csum(t: &Topology, on: bool) -> Result<()> {
    let v = if on { "on" } else { "off" };
    for s in [&t.c1, &t.c2] {
        run_in(&s.netns, "ethtool", &["-K", &s.ifname, "tx", v])?;
    }
    Ok(())
}

/// iperf3 bits/s received from its `-J` output.
pub fn parse_iperf3(json: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| BenchError::Parse {
        what: "iperf3 -J".into(),
        reason: e.to_string(),
    })?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(BenchError::Command {
            cmd: "iperf3 -c".into(),
            stderr: err.to_owned(),
        });
    }
    v.pointer("/end/sum_received/bits_per_second")
        .and_then(|b| b.as_f64())
        .ok_or_else(|| BenchError::Parse {
            what: "iperf3 -J".into(),
            reason: "no end.sum_received.bits_per_second".into(),
        })
}

/// One TCP stream c1 → c2 for `tcp_secs`; Gbit/s. iperf3 when installed,
/// else the harness' own bounded sender and sink.
pub fn tcp(t: &Topology, o: &Options) -> Result<f64> {
    if !super::cmd::have_tool("iperf3") || std::env::var_os("VSWITCH_BENCH_NO_IPERF3").is_some() {
        return super::tcp::throughput(&t.c1.netns, &t.c2.netns, t.c2.ip, o.load_core, o.tcp_secs);
    }
    let core = o.load_core.to_string();
    let server = ChildGuard::spawn(
        Some(&t.c2.netns),
        "iperf3",
        &["-s", "-1", "-B", &t.c2.ip_text(), "-p", "5201", "-A", &core],
    )?;
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let out = run_in(&t.c2.netns, "ss", &["-Hltn", "sport = :5201"]).unwrap_or_default();
        if !out.trim().is_empty() {
            break;
        }
        if Instant::now() >= end {
            return Err(BenchError::Timeout {
                what: "iperf3 server start".into(),
                secs: 5,
            });
        }
        sys::sleep(Duration::from_millis(50))?;
    }
    let secs = o.tcp_secs.to_string();
    let client = ChildGuard::spawn(
        Some(&t.c1.netns),
        "iperf3",
        &[
            "-c",
            &t.c2.ip_text(),
            "-p",
            "5201",
            "-t",
            &secs,
            "-J",
            "-A",
            &core,
        ],
    )?;
    let out = client.wait_output(Duration::from_secs(o.tcp_secs + 15))?;
    drop(server);
    Ok(parse_iperf3(&out)? / 1e9)
}

/// RTTs in µs from ping's per-reply lines (`time=0.055 ms`).
pub fn parse_ping(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| {
            let v = l.split("time=").nth(1)?.split_whitespace().next()?;
            v.parse::<f64>().ok().map(|ms| ms * 1000.0)
        })
        .collect()
}

/// `ping_count` pings c1 → c2 at `ping_interval`.
pub fn ping(t: &Topology, o: &Options) -> Result<Latency> {
    let count = o.ping_count.to_string();
    let interval = format!("{}", o.ping_interval);
    let core = o.load_core.to_string();
    let limit = Duration::from_secs_f64(o.ping_count as f64 * o.ping_interval + 15.0);
    let out = ChildGuard::spawn(
        Some(&t.c1.netns),
        "taskset",
        &[
            "-c",
            &core,
            "ping",
            "-n",
            "-c",
            &count,
            "-i",
            &interval,
            "-W",
            "1",
            &t.c2.ip_text(),
        ],
    )?
    .wait_output(limit)?;
    latency(&parse_ping(&out)).ok_or_else(|| BenchError::Parse {
        what: "ping".into(),
        reason: "no replies".into(),
    })
}

/// CPU seconds of the switch's processes: our whole process, or OVS's
/// daemons. None for the kernel bridge.
fn switch_cpu_secs(t: &Topology) -> Option<f64> {
    if t.ours().is_some() {
        return sys::process_cpu_secs(std::process::id());
    }
    let ovs = t.ovs()?;
    let pids = ovs.pids();
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| sys::process_cpu_secs(*p)).sum()
}

/// Switch CPU over the idle window, % of one core.
pub fn idle_cpu(t: &Topology, o: &Options) -> Result<Option<f64>> {
    let Some(c0) = switch_cpu_secs(t) else {
        return Ok(None);
    };
    let t0 = Instant::now();
    sys::sleep(o.idle_window)?;
    let c1 = switch_cpu_secs(t).unwrap_or(c0);
    Ok(Some(100.0 * (c1 - c0) / t0.elapsed().as_secs_f64()))
}

/// VmRSS and VmHWM of the switch's processes in MiB.
pub fn memory(t: &Topology) -> Option<(f64, f64)> {
    let kib = if t.ours().is_some() {
        sys::process_memory_kib("self")?
    } else {
        let ovs = t.ovs()?;
        let mut sum = (0, 0);
        for p in ovs.pids() {
            let (r, h) = sys::process_memory_kib(&p.to_string())?;
            sum = (sum.0 + r, sum.1 + h);
        }
        sum
    };
    Some((kib.0 as f64 / 1024.0, kib.1 as f64 / 1024.0))
}

/// Resets this process' VmHWM (proc(5) `clear_refs` value 5), so the
/// peak of one topology is not inherited from the previous one.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Result of the flow-setup figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowSetup {
    /// Rules per second.
    pub rules_per_sec: f64,
    /// Longest rx gap while installing, µs.
    pub stall_us: f64,
    /// Longest rx gap over a window without changes, µs.
    pub baseline_us: f64,
}

/// The i-th flow-setup rule: UDP to port 20000+i (no generator frame
/// matches it), priority 100, NORMAL.
pub fn setup_rule(i: usize) -> Rule {
    let m = Match::ANY
        .with(Field::EthType, 0x0800)
        .with(Field::NwProto, 17)
        .with(Field::TpDst, 20_000 + (i % 40_000) as u128);
    Rule::new(0, 100, m, vec![Action::Normal])
}

/// The same rule in ovs-ofctl syntax.
pub fn setup_rule_ofctl(i: usize) -> String {
    format!(
        "priority=100,udp,tp_dst={},actions=NORMAL",
        20_000 + (i % 40_000)
    )
}

/// Installs `flow_rules` rules while paced traffic flows c1 → c2.
pub fn flow_setup(t: &Topology, o: &Options) -> Result<Option<FlowSetup>> {
    if t.ours().is_none() && t.ovs().is_none() {
        return Ok(None);
    }
    let n = nonce().wrapping_add(2);
    let sink = Sink::start(&sink_ep(t, o), n)?;
    let gen = Generator::start(
        &gen_ep(t, o),
        FrameTemplate::new(endpoints(t), o.frame_size, o.flows, n),
        Some(o.paced_pps),
    )?;
    sys::sleep(Duration::from_millis(500))?;
    sink.reset_gap();
    let tb = Instant::now();
    sys::sleep(Duration::from_secs(1))?;
    let baseline = sink.max_gap();
    let baseline_window = tb.elapsed();
    sink.reset_gap();
    // Let the reset reach the sink before the clock starts.
    sys::sleep(Duration::from_millis(30))?;
    let elapsed = if let Some(ours) = t.ours() {
        let sw = ours.switch();
        let t0 = Instant::now();
        let mut i = 0;
        while i < o.flow_rules {
            sys::check_interrupt()?;
            let end = (i + o.flow_batch.max(1)).min(o.flow_rules);
            let rules: Vec<Rule> = (i..end).map(setup_rule).collect();
            sw.add_flows(BRIDGE, rules)
                .map_err(|source| BenchError::Switch {
                    switch: t.kind.id().into(),
                    op: "add flows",
                    source,
                })?;
            i = end;
        }
        t0.elapsed()
    } else if let Some(ovs) = t.ovs() {
        let text: String = (0..o.flow_rules)
            .map(|i| setup_rule_ofctl(i) + "\n")
            .collect();
        ovs.add_flows(&text)?
    } else {
        return Ok(None);
    };
    // Read the gap over at least the baseline's window length, so both
    // figures cover comparable time.
    if let Some(rest) = baseline_window.checked_sub(elapsed) {
        sys::sleep(rest)?;
    }
    let stall = sink.max_gap();
    drop(gen);
    drop(sink);
    if let Some(ours) = t.ours() {
        let _ = ours.switch().replace_flows(
            BRIDGE,
            vec![Rule::new(0, 0, Match::ANY, vec![Action::Normal])],
            None,
        );
    }
    Ok(Some(FlowSetup {
        rules_per_sec: o.flow_rules as f64 / elapsed.as_secs_f64().max(1e-9),
        stall_us: stall.as_secs_f64() * 1e6,
        baseline_us: baseline.as_secs_f64() * 1e6,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_lines_become_microseconds() {
        let out = "PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.\n\
                   64 bytes from 10.0.0.2: icmp_seq=1 ttl=64 time=0.055 ms\n\
                   64 bytes from 10.0.0.2: icmp_seq=2 ttl=64 time=1.20 ms\n\
                   --- 10.0.0.2 ping statistics ---\n\
                   rtt min/avg/max/mdev = 0.055/0.627/1.200/0.572 ms\n";
        let v = parse_ping(out);
        assert_eq!(v.len(), 2);
        assert!((v[0] - 55.0).abs() < 1e-9 && (v[1] - 1200.0).abs() < 1e-9);
    }

    #[test]
    fn iperf3_json_gives_received_rate_or_its_error() {
        let ok = r#"{"end":{"sum_received":{"bits_per_second":18.2e9}}}"#;
        assert_eq!(parse_iperf3(ok).unwrap(), 18.2e9);
        let err = r#"{"error":"unable to connect to server"}"#;
        assert!(parse_iperf3(err)
            .unwrap_err()
            .to_string()
            .contains("unable to connect"));
        assert!(parse_iperf3("not json").is_err());
    }

    #[test]
    fn pmd_cycles_count_only_on_cpu_busy_time() {
        let a = PmdSample::default();
        let b = PmdSample {
            busy_ns: 750,
            idle_ns: 250,
            packets: 1000,
            cpu_secs: 0.5,
        };
        // 0.5 s on CPU, 75 % busy, 1 GHz, 1000 packets.
        let c = pmd_cycles_per_packet(&a, &b, 1e9).unwrap();
        assert!((c - 375_000.0).abs() < 1e-6, "{c}");
        assert_eq!(pmd_cycles_per_packet(&b, &b, 1e9), None, "no packets");
    }

    #[test]
    fn ovs_pmd_stats_cycles_are_parsed() {
        let out = "pmd thread numa_id 0 core_id 1:\n  packets received: 100\n  \
                   avg processing cycles per packet: 6200.12 (620012/100)\n";
        assert_eq!(parse_ovs_cycles(out), Some(6200.12));
        assert_eq!(parse_ovs_cycles("nothing"), None);
    }

    #[test]
    fn flow_setup_rules_are_distinct_and_match_no_generator_frame() {
        let a = setup_rule(0);
        let b = setup_rule(1);
        assert_ne!(a.r#match, b.r#match);
        assert_eq!(a.r#match.get(Field::TpDst).0, 20_000);
        assert_eq!(
            setup_rule_ofctl(1),
            "priority=100,udp,tp_dst=20001,actions=NORMAL"
        );
    }
}
