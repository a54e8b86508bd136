//! `vswitch-bench --vxlan`: the overlay figures of issue 6. Two simulated
//! hosts (namespaces joined by a veth underlay, 1500 B MTU), each with one
//! container namespace, connected through VXLAN VNI 42:
//!
//! - **kernel pair** (the anchor): on each host a Linux `vxlan` device and
//!   a Linux bridge, the container on a veth (MTU 1450);
//! - **vswitch pair**: on each host the real daemons (`vswitchctl start`
//!   inside the host namespace, release binaries next to this one), the
//!   container on a TAP port (MTU 1450) and a `type=vxlan` port.
//!
//! Figures per pair, same run: TCP Gbit/s container A → B (one stream, our
//! bounded sender/sink), and 64 B frames/s received by B's sink while A's
//! AF_PACKET generator sends as fast as it can. Ratios are vswitch/kernel.
//! Each simulated host gets its own core, as two real hosts would: host
//! A's PMD is pinned to `pmd_core`, host B's to `load_core`, where the
//! traffic threads also run. (Both PMDs on one core halves each and adds
//! scheduler time slices to every round trip: TCP falls to ~1.5 Gbit/s.)

use super::cmd::{ip, run_in};
use super::error::{BenchError, Result};
use super::frame::{Endpoints, FrameTemplate};
use super::sys;
use super::tcp;
use super::topology::{unique_prefix, NetnsGuard};
use super::traffic::{Endpoint, Generator, Sink};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// What one pair measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairFigures {
    /// TCP A → B, Gbit/s.
    pub tcp_gbps: f64,
    /// 64 B frames received per second at B.
    pub rx_pps: f64,
    /// 64 B frames sent per second by A's generator.
    pub tx_pps: f64,
}

/// Both pairs of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct OverlayFigures {
    /// Linux vxlan + bridge on both hosts.
    pub kernel: PairFigures,
    /// vswitch on both hosts.
    pub vswitch: PairFigures,
}

/// Settings.
#[derive(Clone, Debug)]
pub struct OverlayOptions {
    /// Core of both vswitch PMDs.
    pub pmd_core: usize,
    /// Core of generator, sink and TCP threads.
    pub load_core: usize,
    /// TCP window.
    pub tcp_secs: u64,
    /// pps window.
    pub pps_window: Duration,
}

const UNDERLAY_A: &str = "10.201.0.1";
const UNDERLAY_B: &str = "10.201.0.2";
const INNER_A: [u8; 4] = [192, 168, 201, 1];
const INNER_B: [u8; 4] = [192, 168, 201, 2];
const INNER_MTU: &str = "1450";

struct Hosts {
    a: NetnsGuard,
    b: NetnsGuard,
    ca: NetnsGuard,
    cb: NetnsGuard,
}

fn ip_text(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// Host and container namespaces with the underlay veth up.
fn hosts(tag: &str) -> Result<Hosts> {
    let p = unique_prefix();
    let h = Hosts {
        a: NetnsGuard::create(&format!("{p}{tag}ha"))?,
        b: NetnsGuard::create(&format!("{p}{tag}hb"))?,
        ca: NetnsGuard::create(&format!("{p}{tag}ca"))?,
        cb: NetnsGuard::create(&format!("{p}{tag}cb"))?,
    };
    let (ua, ub) = (format!("{p}{tag}ua"), format!("{p}{tag}ub"));
    ip(&["link", "add", &ua, "type", "veth", "peer", "name", &ub])?;
    ip(&["link", "set", &ua, "netns", h.a.name()])?;
    ip(&["link", "set", &ub, "netns", h.b.name()])?;
    for (ns, dev, addr) in [(&h.a, &ua, UNDERLAY_A), (&h.b, &ub, UNDERLAY_B)] {
        run_in(ns.name(), "ip", &["link", "set", dev, "name", "ul0"])?;
        run_in(
            ns.name(),
            "ip",
            &["addr", "add", &format!("{addr}/24"), "dev", "ul0"],
        )?;
        run_in(ns.name(), "ip", &["link", "set", "ul0", "up"])?;
    }
    Ok(h)
}

/// Linux vxlan + bridge on `host`, container on a veth.
fn kernel_side(
    host: &NetnsGuard,
    c: &NetnsGuard,
    local: &str,
    remote: &str,
    inner: [u8; 4],
) -> Result<()> {
    let n = host.name();
    run_in(
        n,
        "ip",
        &[
            "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789", "remote", remote,
            "local", local, "dev", "ul0",
        ],
    )?;
    run_in(n, "ip", &["link", "add", "name", "br0", "type", "bridge"])?;
    let p = unique_prefix();
    let (h, k) = (format!("{p}kh"), format!("{p}kc"));
    ip(&["link", "add", &h, "type", "veth", "peer", "name", &k])?;
    ip(&["link", "set", &h, "netns", n])?;
    ip(&["link", "set", &k, "netns", c.name()])?;
    for dev in ["vx0", h.as_str()] {
        run_in(n, "ip", &["link", "set", dev, "master", "br0"])?;
        run_in(n, "ip", &["link", "set", dev, "up"])?;
    }
    run_in(n, "ip", &["link", "set", "br0", "up"])?;
    let cn = c.name();
    run_in(cn, "ip", &["link", "set", &k, "name", "eth0"])?;
    run_in(cn, "ip", &["link", "set", "eth0", "mtu", INNER_MTU])?;
    run_in(
        cn,
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/24", ip_text(inner)),
            "dev",
            "eth0",
        ],
    )?;
    run_in(cn, "ip", &["link", "set", "eth0", "up"])?;
    Ok(())
}

/// A vswitch instance running in a host namespace; stopped on drop.
struct Daemons {
    ctl: PathBuf,
    dir: PathBuf,
}

impl Daemons {
    fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.ctl)
            .arg("--run-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .map_err(|e| BenchError::io("vswitchctl", "spawn", e))?;
        if !out.status.success() {
            return Err(BenchError::Setup(format!(
                "vswitchctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// vswitch on `host`: br0, container TAP port, VXLAN port.
fn vswitch_side(
    host: &NetnsGuard,
    c: &NetnsGuard,
    local: &str,
    remote: &str,
    inner: [u8; 4],
    pmd_core: usize,
) -> Result<Daemons> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_owned()))
        .ok_or_else(|| BenchError::Setup("cannot find the binaries' directory".into()))?;
    let ctl = bin.join("vswitchctl");
    if !ctl.exists() || !bin.join("vswitchd").exists() {
        return Err(BenchError::Setup(format!(
            "vswitchctl/vswitchd not built next to vswitch-bench in {}",
            bin.display()
        )));
    }
    let dir = PathBuf::from(format!("/tmp/vswb-{}", unique_prefix()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::io(dir.display().to_string(), "mkdir", e))?;
    let config = dir.join("bench.toml");
    let text = include_str!("../../../configs/default.toml")
        .replace("cores = [0]", &format!("cores = [{pmd_core}]"));
    std::fs::write(&config, text)
        .map_err(|e| BenchError::io(config.display().to_string(), "write", e))?;
    let d = Daemons { ctl, dir };
    let out = Command::new("ip")
        .args(["netns", "exec", host.name()])
        .arg(&d.ctl)
        .arg("--run-dir")
        .arg(&d.dir)
        .arg("start")
        .arg("--config")
        .arg(&config)
        .output()
        .map_err(|e| BenchError::io("vswitchctl start", "spawn", e))?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "vswitchctl start: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    d.ctl(&["add-br", "br0"])?;
    d.ctl(&[
        "add-port",
        "br0",
        "c",
        "type=tap",
        &format!("netns={}", c.name()),
        &format!("ip={}/24", ip_text(inner)),
        &format!("mtu={INNER_MTU}"),
    ])?;
    d.ctl(&[
        "add-port",
        "br0",
        "vx0",
        "type=vxlan",
        &format!("remote={remote}"),
        &format!("local={local}"),
        "vni=42",
    ])?;
    Ok(d)
}

fn mac_of(ns: &str) -> Result<[u8; 6]> {
    let text = run_in(ns, "cat", &["/sys/class/net/eth0/address"])?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(BenchError::Setup(format!("{ns}: bad MAC {text:?}")));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).map_err(|_| BenchError::Setup(format!("bad MAC {text}")))?;
    }
    Ok(mac)
}

fn ping_ok(from: &str, to: [u8; 4]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if run_in(from, "ping", &["-c", "1", "-W", "1", &ip_text(to)]).is_ok() {
            return true;
        }
    }
    false
}

/// TCP and 64 B pps from ca to cb.
fn measure(h: &Hosts, o: &OverlayOptions) -> Result<PairFigures> {
    if !ping_ok(h.ca.name(), INNER_B) || !ping_ok(h.cb.name(), INNER_A) {
        return Err(BenchError::Setup(
            "no connectivity across the tunnel".into(),
        ));
    }
    let tcp_gbps = tcp::throughput(h.ca.name(), h.cb.name(), INNER_B, o.load_core, o.tcp_secs)?;
    let ep = Endpoints {
        src_mac: mac_of(h.ca.name())?,
        dst_mac: mac_of(h.cb.name())?,
        src_ip: INNER_A,
        dst_ip: INNER_B,
    };
    let nonce = std::process::id() ^ 0x5a5a;
    let sink = Sink::start(
        &Endpoint {
            netns: h.cb.name().into(),
            ifname: "eth0".into(),
            core: o.load_core,
        },
        nonce,
    )?;
    let gen = Generator::start(
        &Endpoint {
            netns: h.ca.name().into(),
            ifname: "eth0".into(),
            core: o.load_core,
        },
        FrameTemplate::new(ep, 60, 1, nonce),
        None,
    )?;
    sys::sleep(Duration::from_millis(500))?;
    let (tx0, rx0, t0) = (gen.sent(), sink.unique(), Instant::now());
    sys::sleep(o.pps_window)?;
    let (tx1, rx1, dt) = (gen.sent(), sink.unique(), t0.elapsed().as_secs_f64());
    gen.stop();
    sys::sleep(Duration::from_millis(200))?;
    sink.stop();
    Ok(PairFigures {
        tcp_gbps,
        rx_pps: (rx1 - rx0) as f64 / dt,
        tx_pps: (tx1 - tx0) as f64 / dt,
    })
}

/// Builds, measures and tears down both pairs.
pub fn run(o: &OverlayOptions) -> Result<OverlayFigures> {
    let kernel = {
        let h = hosts("k")?;
        kernel_side(&h.a, &h.ca, UNDERLAY_A, UNDERLAY_B, INNER_A)?;
        kernel_side(&h.b, &h.cb, UNDERLAY_B, UNDERLAY_A, INNER_B)?;
        measure(&h, o)?
    };
    let vswitch = {
        let h = hosts("v")?;
        let _a = vswitch_side(&h.a, &h.ca, UNDERLAY_A, UNDERLAY_B, INNER_A, o.pmd_core)?;
        let _b = vswitch_side(&h.b, &h.cb, UNDERLAY_B, UNDERLAY_A, INNER_B, o.load_core)?;
        measure(&h, o)?
    };
    Ok(OverlayFigures { kernel, vswitch })
}

/// The table printed by `vswitch-bench --vxlan`.
pub fn table(runs: &[OverlayFigures]) -> String {
    let med = |f: &dyn Fn(&OverlayFigures) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let rows = [
        (
            "TCP A→B (Gbit/s)",
            med(&|r| r.kernel.tcp_gbps),
            med(&|r| r.vswitch.tcp_gbps),
        ),
        (
            "64B rx (kpps)",
            med(&|r| r.kernel.rx_pps) / 1e3,
            med(&|r| r.vswitch.rx_pps) / 1e3,
        ),
        (
            "64B offered (kpps)",
            med(&|r| r.kernel.tx_pps) / 1e3,
            med(&|r| r.vswitch.tx_pps) / 1e3,
        ),
    ];
    let mut out = format!(
        "VXLAN overlay, two simulated hosts, median of {} run(s)\n{:<20} {:>12} {:>12} {:>8}\n",
        runs.len(),
        "FIGURE",
        "KERNEL",
        "VSWITCH",
        "RATIO"
    );
    for (name, k, v) in rows {
        let ratio = if k > 0.0 { v / k } else { 0.0 };
        out.push_str(&format!("{name:<20} {k:>12.2} {v:>12.2} {ratio:>7.2}x\n"));
    }
    out.push_str("target: TCP ratio >= 0.60 (moonshot 1.0)\n");
    out
}
