//! A private Open vSwitch instance for the `ovs-*` anchors: its own
//! database, run and log directories under the harness' work directory
//! (OVS_RUNDIR / OVS_LOGDIR / OVS_SYSCONFDIR, honoured by `ovs-ctl`,
//! `ovs-vsctl`, `ovs-appctl` and `ovs-ofctl`), one netdev (userspace
//! datapath) bridge and one PMD pinned with `pmd-cpu-mask`. Started and
//! stopped by the harness; it never touches an OVS it did not start, and
//! refuses to run next to one.

use super::cmd::{have_tool, run_env};
use super::error::{BenchError, Result};
use super::sys;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const OVS_CTL: &str = "/usr/share/openvswitch/scripts/ovs-ctl";

/// Why OVS cannot be measured on this host, or None when it can.
pub fn unavailable() -> Option<String> {
    for tool in [
        "ovs-vsctl",
        "ovs-ofctl",
        "ovs-appctl",
        "ovs-vswitchd",
        "ovsdb-server",
    ] {
        if !have_tool(tool) && !Path::new("/usr/sbin").join(tool).is_file() {
            return Some("Open vSwitch not installed".into());
        }
    }
    if !Path::new(OVS_CTL).is_file() {
        return Some(format!("Open vSwitch not installed ({OVS_CTL} missing)"));
    }
    for d in ["ovs-vswitchd", "ovsdb-server"] {
        if !sys::pids_named(d).is_empty() {
            return Some(format!(
                "an {d} not started by vswitch-bench is running; stop it first"
            ));
        }
    }
    None
}

/// A running private OVS; stopped and its directory removed on drop.
pub struct Ovs {
    dir: PathBuf,
    env: Vec<(String, String)>,
    /// The netdev bridge.
    pub bridge: String,
}

impl Ovs {
    /// Starts OVS in `dir` with one bridge `bridge` (datapath netdev, one
    /// NORMAL rule) and the PMD on `pmd_core`.
    pub fn start(dir: &Path, bridge: &str, pmd_core: usize) -> Result<Ovs> {
        let env: Vec<(String, String)> = [
            ("OVS_RUNDIR", "run"),
            ("OVS_LOGDIR", "log"),
            ("OVS_SYSCONFDIR", "etc"),
            ("OVS_DBDIR", "etc/openvswitch"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), dir.join(v).to_string_lossy().into_owned()))
        .collect();
        for (_, d) in &env {
            std::fs::create_dir_all(d)
                .map_err(|e| BenchError::io(format!("directory {d}"), "create", e))?;
        }
        // Constructed before starting: a half-started instance is stopped too.
        let ovs = Ovs {
            dir: dir.to_owned(),
            env,
            bridge: bridge.to_owned(),
        };
        ovs.run(
            OVS_CTL,
            &["start", "--system-id=random", "--delete-bridges"],
        )?;
        let mask = format!("other_config:pmd-cpu-mask=0x{:x}", 1u64 << pmd_core);
        ovs.vsctl(&["set", "Open_vSwitch", ".", &mask])?;
        ovs.vsctl(&[
            "add-br",
            bridge,
            "--",
            "set",
            "bridge",
            bridge,
            "datapath_type=netdev",
        ])?;
        ovs.run("ovs-ofctl", &["del-flows", bridge])?;
        ovs.run("ovs-ofctl", &["add-flow", bridge, "actions=NORMAL"])?;
        Ok(ovs)
    }

    fn run(&self, cmd: &str, args: &[&str]) -> Result<String> {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_env(cmd, args, &env)
    }

    /// `ovs-vsctl --timeout=10 ARGS`.
    pub fn vsctl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["--timeout=10"];
        full.extend_from_slice(args);
        self.run("ovs-vsctl", &full)
    }

    /// `ovs-appctl --timeout=10 ARGS`.
    pub fn appctl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["--timeout=10"];
        full.extend_from_slice(args);
        self.run("ovs-appctl", &full)
    }

    /// Waits (≤ 10 s) until OVS gave the interface an ofport without error.
    fn port_ready(&self, name: &str) -> Result<()> {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let of = self
                .vsctl(&["get", "interface", name, "ofport"])
                .unwrap_or_default();
            let err = self
                .vsctl(&["get", "interface", name, "error"])
                .unwrap_or_default();
            if of.trim().parse::<i64>().is_ok_and(|n| n > 0) && err.trim() == "[]" {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(BenchError::Command {
                    cmd: format!("ovs-vsctl add-port {} {name}", self.bridge),
                    stderr: format!(
                        "port not ready (ofport {}, error {})",
                        of.trim(),
                        err.trim()
                    ),
                });
            }
            sys::sleep(Duration::from_millis(200))?;
        }
    }

    /// Adds an AF_XDP port on `dev`, native mode first, then generic.
    /// Returns the mode that worked.
    pub fn add_afxdp_port(&self, dev: &str) -> Result<&'static str> {
        let mut last = None;
        for mode in ["native", "generic"] {
            let opt = format!("options:xdp-mode={mode}");
            let r = self
                .vsctl(&[
                    "add-port",
                    &self.bridge,
                    dev,
                    "--",
                    "set",
                    "interface",
                    dev,
                    "type=afxdp",
                    &opt,
                ])
                .and_then(|_| self.port_ready(dev));
            match r {
                Ok(()) => return Ok(mode),
                Err(e) => {
                    let _ = self.vsctl(&["--if-exists", "del-port", &self.bridge, dev]);
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(BenchError::Command {
            cmd: format!("ovs-vsctl add-port {} {dev}", self.bridge),
            stderr: "no XDP mode worked".into(),
        }))
    }

    /// Adds an internal (TAP) port `name` in the root namespace.
    pub fn add_internal_port(&self, name: &str) -> Result<()> {
        self.vsctl(&[
            "add-port",
            &self.bridge,
            name,
            "--",
            "set",
            "interface",
            name,
            "type=internal",
        ])?;
        self.port_ready(name)
    }

    /// Installs `rules` (ovs-ofctl syntax, one per line) in one
    /// `add-flows` call; returns how long it took.
    pub fn add_flows(&self, rules: &str) -> Result<Duration> {
        let file = self.dir.join("flows.txt");
        std::fs::write(&file, rules)
            .map_err(|e| BenchError::io(file.display().to_string(), "write", e))?;
        let t = Instant::now();
        self.run(
            "ovs-ofctl",
            &["add-flows", &self.bridge, &file.to_string_lossy()],
        )?;
        Ok(t.elapsed())
    }

    /// Pids of ovs-vswitchd and ovsdb-server of this instance.
    pub fn pids(&self) -> Vec<u32> {
        ["ovs-vswitchd.pid", "ovsdb-server.pid"]
            .iter()
            .filter_map(|f| {
                std::fs::read_to_string(self.dir.join("run").join(f))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// Pid of ovs-vswitchd.
    pub fn vswitchd_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("run").join("ovs-vswitchd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = self.vsctl(&["--if-exists", "del-br", &self.bridge]);
        let _ = self.run("timeout", &["60", OVS_CTL, "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
