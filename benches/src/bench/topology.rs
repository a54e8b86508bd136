//! The standard topology of BENCHMARKS.md: namespaces c1 (10.0.0.1/24) and
//! c2 (10.0.0.2/24), each with one interface attached to the switch under
//! test. Every object (namespace, veth pair, bridge, OVS instance, our
//! in-process switch and its ports) is owned by a guard that deletes it on
//! drop, so a failure, a panic or Ctrl-C leaves nothing behind. Names are
//! unique per process and topology (`vb<pid><n>…`, ≤ 15 bytes).

use super::cmd::{ip, run_in};
use super::error::{BenchError, Result};
use super::figure::SwitchKind;
use super::ovs::Ovs;
use super::ports;
use datapath::flow::PortNo;
use datapath::pipeline::VlanMode;
use datapath::pmd::IdleMode;
use datapath::port::Port;
use datapath::switch::{Switch, SwitchConfig};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The bridge our switch forwards on.
pub const BRIDGE: &str = "br0";
/// MAC and IPv4 of c1 and c2 (the anchors' values).
pub const C1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// c2's MAC.
pub const C2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// c1's address.
pub const C1_IP: [u8; 4] = [10, 0, 0, 1];
/// c2's address.
pub const C2_IP: [u8; 4] = [10, 0, 0, 2];

static TOPOLOGIES: AtomicU32 = AtomicU32::new(0);

fn base36(mut v: u32) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(D[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8_lossy(&s).into_owned()
}

/// The prefix of every name a `vswitch-bench` process with `pid` creates
/// (`vb` + pid in base 36), for tests that check nothing was left behind.
pub fn process_prefix(pid: u32) -> String {
    format!("vb{}", base36(pid))
}

/// Network namespaces and links whose names start with `prefix` (what a
/// finished run must not leave behind).
pub fn leftovers(prefix: &str) -> (Vec<String>, Vec<String>) {
    let netns = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let links = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(prefix))
        .collect();
    (netns, links)
}

/// A name prefix unique to this process and call: `vb` + pid + counter
/// (base 36), at most 10 bytes, leaving room for a 5-byte role suffix.
pub fn unique_prefix() -> String {
    let n = TOPOLOGIES.fetch_add(1, Ordering::Relaxed);
    let p = format!("{}{}", process_prefix(std::process::id()), base36(n % 1296));
    p.chars().take(10).collect()
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ip_str(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct NetnsGuard {
    name: String,
}

impl NetnsGuard {
    /// Creates it with loopback up and IPv6 off (no ND/MLD chatter).
    pub fn create(name: &str) -> Result<NetnsGuard> {
        ip(&["netns", "add", name])?;
        let g = NetnsGuard {
            name: name.to_owned(),
        };
        run_in(name, "ip", &["link", "set", "lo", "up"])?;
        run_in(
            name,
            "sysctl",
            &[
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
            ],
        )?;
        Ok(g)
    }

    /// The name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A link in the root namespace (veth pair, bridge), deleted on drop.
#[derive(Debug)]
pub struct LinkGuard {
    name: String,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.name]);
    }
}

/// One container side.
#[derive(Clone, Debug)]
pub struct Side {
    /// Namespace.
    pub netns: String,
    /// Interface inside it.
    pub ifname: String,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its IPv4 address (/24).
    pub ip: [u8; 4],
}

impl Side {
    /// The address as text.
    pub fn ip_text(&self) -> String {
        ip_str(self.ip)
    }
}

/// Our switch, in this process, with one PMD thread on `pmd_core`.
pub struct OurSwitch {
    ticker: Option<Ticker>,
    sw: Arc<Switch>,
    cfg: SwitchConfig,
    ports: Vec<String>,
    label: String,
}

/// The maintenance loop vswitchd gives its switch
/// (`Switch::run_maintenance`: timers once a second, the ports' health
/// checks in between), so the in-process switch behaves like the daemon.
/// Dropped (joined) before the switch shuts down.
struct Ticker {
    stop: Arc<std::sync::atomic::AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(sw: &Arc<Switch>) -> Ticker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (sw, flag) = (sw.clone(), stop.clone());
        let join = std::thread::Builder::new()
            .name("bench-timers".into())
            .spawn(move || sw.run_maintenance(&flag))
            .ok();
        Ticker { stop, join }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

impl OurSwitch {
    fn new(label: &str, cfg: SwitchConfig, ports: Vec<Arc<dyn Port>>) -> Result<OurSwitch> {
        let sw = Self::build(label, &cfg, ports.clone())?;
        Ok(OurSwitch {
            ticker: Some(Ticker::start(&sw)),
            sw,
            cfg,
            ports: ports.iter().map(|p| p.name().to_owned()).collect(),
            label: label.to_owned(),
        })
    }

    fn build(label: &str, cfg: &SwitchConfig, ports: Vec<Arc<dyn Port>>) -> Result<Arc<Switch>> {
        let err = |op| {
            let label = label.to_owned();
            move |source| BenchError::Switch {
                switch: label,
                op,
                source,
            }
        };
        let sw = Switch::new(cfg.clone()).map_err(err("start"))?;
        sw.add_bridge(BRIDGE).map_err(err("add bridge"))?;
        for (i, p) in ports.into_iter().enumerate() {
            sw.add_port(BRIDGE, (i + 1) as PortNo, p, VlanMode::default())
                .map_err(err("add port"))?;
        }
        Ok(sw)
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<Switch> {
        &self.sw
    }

    /// The idle mode its PMD runs with.
    pub fn idle(&self) -> IdleMode {
        self.cfg.idle
    }

    /// Restarts the switch with another idle mode, moving the same ports
    /// (the rules go back to the default NORMAL one; MACs are relearned).
    pub fn set_idle(&mut self, idle: IdleMode) -> Result<()> {
        if self.cfg.idle == idle {
            return Ok(());
        }
        self.ticker = None;
        self.sw.shutdown();
        let mut moved = Vec::new();
        for name in &self.ports {
            let p = self
                .sw
                .del_port(Some(BRIDGE), name)
                .map_err(|source| BenchError::Switch {
                    switch: self.label.clone(),
                    op: "move port",
                    source,
                })?;
            moved.push(p);
        }
        self.cfg.idle = idle;
        self.sw = Self::build(&self.label, &self.cfg, moved)?;
        self.ticker = Some(Ticker::start(&self.sw));
        Ok(())
    }
}

impl Drop for OurSwitch {
    fn drop(&mut self) {
        self.ticker = None;
        self.sw.shutdown();
    }
}

/// Settings shared by every topology.
#[derive(Clone, Debug)]
pub struct TopologyConfig {
    /// Core of the switch's PMD thread.
    pub pmd_core: usize,
    /// Directory for OVS's private instance.
    pub work_dir: PathBuf,
    /// Rx ring layout of the `vswitch-afpacket` ports.
    pub afpacket_ring: datapath::port::afpacket::RingMode,
}

/// A built topology. Fields drop in order: switch first (its ports close),
/// then OVS, links, and the namespaces last.
pub struct Topology {
    /// The switch under test.
    pub kind: SwitchKind,
    ours: Option<OurSwitch>,
    ovs: Option<Ovs>,
    links: Vec<LinkGuard>,
    netns: Vec<NetnsGuard>,
    /// The sending side.
    pub c1: Side,
    /// The receiving side.
    pub c2: Side,
    /// Facts worth reporting (XDP mode, ...).
    pub notes: Vec<String>,
}

impl Topology {
    /// Builds the topology of `kind`.
    pub fn build(kind: SwitchKind, cfg: &TopologyConfig) -> Result<Topology> {
        let p = unique_prefix();
        let mut t = Topology {
            kind,
            ours: None,
            ovs: None,
            links: Vec::new(),
            netns: Vec::new(),
            c1: Side {
                netns: format!("{p}c1"),
                ifname: format!("{p}e1"),
                mac: C1_MAC,
                ip: C1_IP,
            },
            c2: Side {
                netns: format!("{p}c2"),
                ifname: format!("{p}e2"),
                mac: C2_MAC,
                ip: C2_IP,
            },
            notes: Vec::new(),
        };
        t.netns.push(NetnsGuard::create(&t.c1.netns)?);
        t.netns.push(NetnsGuard::create(&t.c2.netns)?);
        let hosts = [format!("{p}h1"), format!("{p}h2")];
        if kind == SwitchKind::NoSwitch {
            ip(&[
                "link",
                "add",
                &t.c1.ifname,
                "type",
                "veth",
                "peer",
                "name",
                &t.c2.ifname,
            ])?;
            t.links.push(LinkGuard {
                name: t.c1.ifname.clone(),
            });
            for side in [t.c1.clone(), t.c2.clone()] {
                ip(&["link", "set", &side.ifname, "netns", &side.netns])?;
                t.configure_inside(&side.ifname, &side)?;
            }
        } else if kind.uses_veth() {
            for (side, host) in [t.c1.clone(), t.c2.clone()].iter().zip(&hosts) {
                t.add_veth(host, side)?;
            }
        }
        match kind {
            SwitchKind::NoSwitch => {}
            SwitchKind::KernelBridge => {
                let br = format!("{p}br");
                ip(&["link", "add", &br, "type", "bridge"])?;
                t.links.push(LinkGuard { name: br.clone() });
                let _ = super::cmd::run(
                    "sysctl",
                    &["-qw", &format!("net.ipv6.conf.{br}.disable_ipv6=1")],
                );
                ip(&["link", "set", &br, "up"])?;
                for h in &hosts {
                    ip(&["link", "set", h, "master", &br])?;
                }
            }
            SwitchKind::OvsAfxdp | SwitchKind::OvsTap => {
                let dir = cfg.work_dir.join(format!("{p}ovs"));
                let ovs = Ovs::start(&dir, &format!("{p}ob"), cfg.pmd_core)?;
                if kind == SwitchKind::OvsAfxdp {
                    for h in &hosts {
                        let mode = ovs.add_afxdp_port(h)?;
                        t.notes.push(format!("OVS AF_XDP port {h}: {mode} mode"));
                    }
                } else {
                    for (side, tap) in [t.c1.clone(), t.c2.clone()].iter().zip(&hosts) {
                        ovs.add_internal_port(tap)?;
                        ip(&["link", "set", tap, "netns", &side.netns])?;
                        t.configure_inside(tap, side)?;
                    }
                    t.c1.ifname = hosts[0].clone();
                    t.c2.ifname = hosts[1].clone();
                }
                t.ovs = Some(ovs);
            }
            SwitchKind::VswitchTap | SwitchKind::VswitchAfxdp | SwitchKind::VswitchAfpacket => {
                let swcfg = SwitchConfig {
                    pmd_cores: vec![cfg.pmd_core],
                    idle: IdleMode::Adaptive,
                    ..SwitchConfig::default()
                };
                let (ports, ifnames, notes) =
                    ports::open(kind, &hosts, &[&t.c1, &t.c2], cfg.afpacket_ring)?;
                if let Some(names) = ifnames {
                    t.c1.ifname = names[0].clone();
                    t.c2.ifname = names[1].clone();
                }
                t.notes.extend(notes);
                t.ours = Some(OurSwitch::new(kind.id(), swcfg, ports)?);
            }
        }
        Ok(t)
    }

    fn add_veth(&mut self, host: &str, side: &Side) -> Result<()> {
        ip(&[
            "link",
            "add",
            host,
            "type",
            "veth",
            "peer",
            "name",
            &side.ifname,
        ])?;
        self.links.push(LinkGuard {
            name: host.to_owned(),
        });
        let _ = super::cmd::run(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{host}.disable_ipv6=1")],
        );
        ip(&["link", "set", &side.ifname, "netns", &side.netns])?;
        self.configure_inside(&side.ifname, side)?;
        ip(&["link", "set", host, "up"])?;
        Ok(())
    }

    fn configure_inside(&self, ifname: &str, side: &Side) -> Result<()> {
        let ns = side.netns.as_str();
        run_in(
            ns,
            "ip",
            &["link", "set", ifname, "address", &mac_str(side.mac)],
        )?;
        run_in(
            ns,
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", side.ip_text()),
                "dev",
                ifname,
            ],
        )?;
        run_in(ns, "ip", &["link", "set", ifname, "up"])?;
        Ok(())
    }

    /// Our in-process switch, when it is the one under test.
    pub fn ours(&self) -> Option<&OurSwitch> {
        self.ours.as_ref()
    }

    /// Mutable access to our switch (idle mode changes).
    pub fn ours_mut(&mut self) -> Option<&mut OurSwitch> {
        self.ours.as_mut()
    }

    /// The OVS instance, when OVS is under test.
    pub fn ovs(&self) -> Option<&Ovs> {
        self.ovs.as_ref()
    }

    /// Pings c2 from c1 until it answers (≤ `tries` × 0.5 s): proves the
    /// path, and makes the switch learn both MACs before the measurements.
    pub fn wait_connectivity(&self, tries: usize) -> Result<()> {
        let target = self.c2.ip_text();
        for _ in 0..tries {
            super::sys::check_interrupt()?;
            if run_in(
                &self.c1.netns,
                "ping",
                &["-n", "-q", "-c", "1", "-W", "0.5", &target],
            )
            .is_ok()
            {
                // One more in the other direction so c1's MAC is learned.
                let _ = run_in(
                    &self.c2.netns,
                    "ping",
                    &["-n", "-q", "-c", "1", "-W", "0.5", &self.c1.ip_text()],
                );
                return Ok(());
            }
        }
        Err(BenchError::NoConnectivity(self.kind.id().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_interface_limit_with_a_role_suffix() {
        let a = unique_prefix();
        let b = unique_prefix();
        assert_ne!(a, b);
        assert!(format!("{a}br").len() <= 15);
        assert!(a.len() <= 10);
        assert_eq!(mac_str(C2_MAC), "02:00:00:00:00:02");
        assert_eq!(ip_str(C1_IP), "10.0.0.1");
    }
}
