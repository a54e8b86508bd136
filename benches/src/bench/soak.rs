//! `vswitch-bench --soak`: a bounded soak of the real daemons (issue 8
//! part 5). `vswitchctl start` runs vswitchd and vswitch-controld in a
//! private run directory; four namespaces sit on TAP ports of one bridge,
//! and for `--soak-secs` they carry mixed traffic:
//!
//! - c1 → c2: one TCP stream, as fast as it goes (the harness' own sender
//!   and sink, [`super::tcp`]);
//! - c3 → c4: 64-byte UDP frames, paced; c4 → c3: 1000-byte UDP frames,
//!   paced (the AF_PACKET generator and sink of [`super::traffic`], which
//!   count this run's frames by sequence number).
//!
//! Meanwhile the bridge's rules are churned: every `churn` interval
//! `replace-flows` swaps between two sets of 1000 rules (plus `NORMAL` at
//! priority 1, so traffic keeps flowing). vswitchd's VmRSS
//! (`/proc/PID/status`, proc(5)) is sampled at a fixed interval. The
//! report gives memory growth after the warm-up (the target is flat),
//! drops by reason (`stats drops`), throughput and UDP loss.

use super::cmd::run;
use super::error::{BenchError, Result};
use super::frame::{Endpoints, FrameTemplate};
use super::sys;
use super::topology::{unique_prefix, NetnsGuard};
use super::traffic::{Endpoint, Generator, Sink};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Rules per churned set (plus the NORMAL fallback).
const CHURN_RULES: usize = 1000;
/// Growth after warm-up still called flat: 2 MiB or 2 % of the
/// post-warm-up RSS, whichever is larger (allocator noise, lazily touched
/// pool pages).
const FLAT_KIB: u64 = 2048;
const FLAT_PCT: f64 = 2.0;

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Length of the soak.
    pub secs: u64,
    /// Directory holding `vswitchctl`, `vswitchd` and `vswitch-controld`.
    pub daemon_dir: PathBuf,
    /// Core for the traffic threads.
    pub load_core: usize,
    /// Rate of the 64-byte UDP frames (c3 → c4).
    pub small_pps: u64,
    /// Rate of the 1000-byte UDP frames (c4 → c3).
    pub large_pps: u64,
}

impl SoakConfig {
    /// Defaults for a soak of `secs` with daemons from `daemon_dir`.
    pub fn new(secs: u64, daemon_dir: PathBuf) -> SoakConfig {
        SoakConfig {
            secs,
            daemon_dir,
            load_core: 0,
            small_pps: 20_000,
            large_pps: 5_000,
        }
    }

    /// RSS sampling interval: 5 s, or a tenth of a short soak (≥ 1 s).
    pub fn sample_every(&self) -> Duration {
        Duration::from_secs((self.secs / 10).clamp(1, 5))
    }

    /// Rule churn interval: 5 s, or a fifth of a short soak (≥ 1 s).
    pub fn churn_every(&self) -> Duration {
        Duration::from_secs((self.secs / 5).clamp(1, 5))
    }

    /// Warm-up excluded from the growth figure: a fifth of the soak, at
    /// most 60 s (pools, caches and the FDB fill in this time).
    pub fn warmup(&self) -> Duration {
        Duration::from_secs((self.secs / 5).min(60))
    }
}

/// One RSS sample of vswitchd.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RssSample {
    /// Seconds since the traffic started.
    pub t_secs: f64,
    /// VmRSS in KiB.
    pub rss_kib: u64,
}

/// Traffic counts of one paced UDP stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpCounts {
    /// Frames the generator's kernel took.
    pub sent: u64,
    /// Distinct frames the sink counted.
    pub received: u64,
}

/// The soak's result.
#[derive(Clone, Debug, PartialEq)]
pub struct SoakReport {
    /// Seconds of traffic.
    pub secs: f64,
    /// Warm-up left out of the growth figure.
    pub warmup_secs: f64,
    /// vswitchd's RSS over time.
    pub samples: Vec<RssSample>,
    /// Rule sets swapped in.
    pub churns: u32,
    /// Slowest `replace-flows` of 1000 rules, ms.
    pub churn_max_ms: u64,
    /// TCP c1 → c2, Gbit/s (None when the stream failed).
    pub tcp_gbps: Option<f64>,
    /// 64-byte UDP c3 → c4.
    pub small: UdpCounts,
    /// 1000-byte UDP c4 → c3.
    pub large: UdpCounts,
    /// `stats drops` at the end, by reason.
    pub drops: BTreeMap<String, u64>,
}

impl SoakReport {
    /// Samples taken after the warm-up.
    fn steady(&self) -> &[RssSample] {
        let i = self
            .samples
            .iter()
            .position(|s| s.t_secs >= self.warmup_secs)
            .unwrap_or(self.samples.len());
        &self.samples[i..]
    }

    /// RSS at the first sample after the warm-up, KiB.
    pub fn rss_after_warmup_kib(&self) -> Option<u64> {
        self.steady().first().map(|s| s.rss_kib)
    }

    /// RSS at the last sample, KiB.
    pub fn rss_end_kib(&self) -> Option<u64> {
        self.samples.last().map(|s| s.rss_kib)
    }

    /// Largest RSS seen after the warm-up minus the first one, KiB
    /// (negative: it shrank).
    pub fn growth_kib(&self) -> Option<i64> {
        let s = self.steady();
        let first = s.first()?.rss_kib as i64;
        let max = s.iter().map(|x| x.rss_kib).max()? as i64;
        let last = s.last()?.rss_kib as i64;
        // A shrinking process has no growth; report the larger change.
        Some(if max > first {
            max - first
        } else {
            last - first
        })
    }

    /// True when growth after the warm-up stays within the flat bound.
    pub fn flat(&self) -> Option<bool> {
        let base = self.rss_after_warmup_kib()?;
        let bound = FLAT_KIB.max((base as f64 * FLAT_PCT / 100.0) as u64) as i64;
        Some(self.growth_kib()? <= bound)
    }

    fn loss_pct(c: UdpCounts) -> f64 {
        if c.sent == 0 {
            0.0
        } else {
            100.0 * c.sent.saturating_sub(c.received) as f64 / c.sent as f64
        }
    }

    /// Human-readable report.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let kib = |v: Option<u64>| v.map_or("-".into(), |v| format!("{v} KiB"));
        let _ = writeln!(
            s,
            "soak: {:.0} s of traffic, warm-up {:.0} s",
            self.secs, self.warmup_secs
        );
        let _ = writeln!(
            s,
            "vswitchd VmRSS: after warm-up {}, end {}, growth after warm-up {} ({})",
            kib(self.rss_after_warmup_kib()),
            kib(self.rss_end_kib()),
            self.growth_kib().map_or("-".into(), |g| format!("{g} KiB")),
            match self.flat() {
                Some(true) => "flat",
                Some(false) => "GROWING",
                None => "not enough samples",
            }
        );
        let _ = writeln!(
            s,
            "samples (s:KiB): {}",
            self.samples
                .iter()
                .map(|x| format!("{:.0}:{}", x.t_secs, x.rss_kib))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            s,
            "flow churn: {} replace-flows of {} rules, slowest {} ms",
            self.churns,
            CHURN_RULES + 1,
            self.churn_max_ms
        );
        let _ = writeln!(
            s,
            "TCP c1→c2: {}",
            self.tcp_gbps
                .map_or("failed".into(), |g| format!("{g:.2} Gbit/s"))
        );
        for (what, c) in [
            ("UDP 64 B c3→c4", self.small),
            ("UDP 1000 B c4→c3", self.large),
        ] {
            let _ = writeln!(
                s,
                "{what}: {} sent, {} received, loss {:.3} %, {:.1} kpps",
                c.sent,
                c.received,
                Self::loss_pct(c),
                c.received as f64 / self.secs.max(1e-9) / 1000.0
            );
        }
        let drops = if self.drops.is_empty() {
            "none".to_owned()
        } else {
            self.drops
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(s, "drops by reason: {drops}");
        s
    }

    /// The report as JSON (`vswitch-bench-soak/1`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "schema": "vswitch-bench-soak/1",
            "secs": self.secs,
            "warmup_secs": self.warmup_secs,
            "rss_samples": self.samples.iter()
                .map(|s| serde_json::json!({"t": s.t_secs, "rss_kib": s.rss_kib}))
                .collect::<Vec<_>>(),
            "rss_after_warmup_kib": self.rss_after_warmup_kib(),
            "rss_end_kib": self.rss_end_kib(),
            "growth_kib": self.growth_kib(),
            "flat": self.flat(),
            "churns": self.churns,
            "churn_max_ms": self.churn_max_ms,
            "tcp_gbps": self.tcp_gbps,
            "udp_small": {"sent": self.small.sent, "received": self.small.received},
            "udp_large": {"sent": self.large.sent, "received": self.large.received},
            "drops": self.drops,
        })
    }
}

/// The daemons of one private run directory, stopped (and killed by
/// their own pids if `stop` fails) and the directory removed on drop.
struct Daemons {
    ctl: PathBuf,
    dir: PathBuf,
}

impl Daemons {
    fn start(daemon_dir: &Path) -> Result<Daemons> {
        let ctl = daemon_dir.join("vswitchctl");
        for b in ["vswitchctl", "vswitchd", "vswitch-controld"] {
            if !daemon_dir.join(b).is_file() {
                return Err(BenchError::Parse {
                    what: format!("daemon dir {}", daemon_dir.display()),
                    reason: format!("{b} not found (cargo build --workspace --bins)"),
                });
            }
        }
        let dir = PathBuf::from(format!("/tmp/vsb-soak-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::io(dir.display().to_string(), "create run dir", e))?;
        let d = Daemons { ctl, dir };
        d.ctl(&["start"])?;
        Ok(d)
    }

    fn ctl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["--run-dir", self.dir.to_str().unwrap_or("/nonexistent")];
        full.extend_from_slice(args);
        run(self.ctl.to_str().unwrap_or("vswitchctl"), &full)
    }

    fn pid(&self, daemon: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        for d in ["vswitch-controld", "vswitchd"] {
            if let Some(pid) = self.pid(d) {
                // Only the pid this run's own pid file names.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A churn rule set: NORMAL at priority 1, and rules dropping UDP or TCP
/// to port 9 of addresses nobody uses, so every swap recompiles the table
/// without changing where the soak's traffic goes.
fn rule_set(proto: &str) -> String {
    let mut s = String::from("priority=1,actions=NORMAL\n");
    for i in 0..CHURN_RULES {
        let _ = writeln!(
            s,
            "priority=100,{proto},nw_dst=10.{}.{}.{},tp_dst=9,actions=drop",
            200 + i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    s
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect();
    v.try_into().map_err(|_| BenchError::Parse {
        what: "interface address".into(),
        reason: format!("\"{}\" is not a MAC", s.trim()),
    })
}

/// `stats drops` (JSON) as a map.
pub fn parse_drops(json: &str) -> Result<BTreeMap<String, u64>> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| BenchError::Parse {
        what: "vswitchctl stats drops".into(),
        reason: e.to_string(),
    })?;
    Ok(v["drops"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default())
}

/// Runs the soak and returns its report. Everything it creates is removed
/// when it returns, also on error or Ctrl-C.
pub fn run_soak(cfg: &SoakConfig) -> Result<SoakReport> {
    let daemons = Daemons::start(&cfg.daemon_dir)?;
    daemons.ctl(&["add-br", "br0"])?;
    let prefix = unique_prefix();
    let mut nss = Vec::new();
    let mut macs = Vec::new();
    for i in 1..=4u8 {
        let ns = NetnsGuard::create(&format!("{prefix}s{i}"))?;
        daemons.ctl(&[
            "add-port",
            "br0",
            &format!("c{i}"),
            "type=tap",
            &format!("netns={}", ns.name()),
            &format!("ip=10.231.0.{i}/24"),
        ])?;
        let mac = run(
            "ip",
            &[
                "netns",
                "exec",
                ns.name(),
                "cat",
                "/sys/class/net/eth0/address",
            ],
        )?;
        macs.push(parse_mac(&mac)?);
        nss.push(ns);
    }
    for (from, to) in [(0usize, 1u8), (2, 4), (3, 3)] {
        let target = format!("10.231.0.{to}");
        let ok = (0..10).any(|_| {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    nss[from].name(),
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "1",
                    &target,
                ],
            )
            .is_ok()
        });
        if !ok {
            return Err(BenchError::NoConnectivity(format!(
                "vswitchd soak: {} → {target}",
                nss[from].name()
            )));
        }
    }
    let vswitchd = daemons.pid("vswitchd").ok_or_else(|| BenchError::Parse {
        what: "vswitchd.pid".into(),
        reason: "missing or not a number".into(),
    })?;
    let flows = [daemons.dir.join("a.flows"), daemons.dir.join("b.flows")];
    for (f, proto) in flows.iter().zip(["udp", "tcp"]) {
        std::fs::write(f, rule_set(proto))
            .map_err(|e| BenchError::io(f.display().to_string(), "write", e))?;
    }

    let ep = |i: usize| Endpoint {
        netns: nss[i].name().to_owned(),
        ifname: "eth0".into(),
        core: cfg.load_core,
    };
    let addrs = |from: usize, to: usize| Endpoints {
        src_mac: macs[from],
        dst_mac: macs[to],
        src_ip: [10, 231, 0, from as u8 + 1],
        dst_ip: [10, 231, 0, to as u8 + 1],
    };
    let nonce = std::process::id().wrapping_mul(2_654_435_761);
    let small_sink = Sink::start(&ep(3), nonce)?;
    let large_sink = Sink::start(&ep(2), nonce.wrapping_add(1))?;
    let small_gen = Generator::start(
        &ep(2),
        FrameTemplate::new(addrs(2, 3), 60, 16, nonce),
        Some(cfg.small_pps),
    )?;
    let large_gen = Generator::start(
        &ep(3),
        FrameTemplate::new(addrs(3, 2), 996, 16, nonce.wrapping_add(1)),
        Some(cfg.large_pps),
    )?;
    let (c1, c2, core, secs) = (
        nss[0].name().to_owned(),
        nss[1].name().to_owned(),
        cfg.load_core,
        cfg.secs,
    );
    let tcp = std::thread::Builder::new()
        .name("soak-tcp".into())
        .spawn(move || super::tcp::throughput(&c1, &c2, [10, 231, 0, 2], core, secs))
        .map_err(|e| BenchError::io("thread soak-tcp", "spawn", e))?;

    let start = Instant::now();
    let end = start + Duration::from_secs(cfg.secs);
    let mut samples = Vec::new();
    let (mut next_sample, mut next_churn) = (start, start + cfg.churn_every());
    let (mut churns, mut churn_max_ms, mut which) = (0u32, 0u64, 0usize);
    let mut failure = None;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            match sys::process_memory_kib(&vswitchd.to_string()) {
                Some((rss, _)) => samples.push(RssSample {
                    t_secs: now.duration_since(start).as_secs_f64(),
                    rss_kib: rss,
                }),
                None => {
                    failure = Some(BenchError::Parse {
                        what: format!("/proc/{vswitchd}/status"),
                        reason: "vswitchd is gone".into(),
                    });
                    break;
                }
            }
            next_sample += cfg.sample_every();
        }
        if now >= next_churn {
            which ^= 1;
            let t = Instant::now();
            if let Err(e) = daemons.ctl(&[
                "replace-flows",
                "br0",
                flows[which].to_str().unwrap_or_default(),
            ]) {
                failure = Some(e);
                break;
            }
            churns += 1;
            churn_max_ms = churn_max_ms.max(t.elapsed().as_millis() as u64);
            next_churn += cfg.churn_every();
        }
        let wake = next_sample.min(next_churn).min(end);
        if let Err(e) = sys::sleep(wake.saturating_duration_since(Instant::now())) {
            failure = Some(e);
            break;
        }
    }
    // Last sample at the end of the traffic window.
    if let Some((rss, _)) = sys::process_memory_kib(&vswitchd.to_string()) {
        samples.push(RssSample {
            t_secs: start.elapsed().as_secs_f64(),
            rss_kib: rss,
        });
    }
    let secs = start.elapsed().as_secs_f64();
    let sg = small_gen.stop();
    let lg = large_gen.stop();
    sys::sleep(Duration::from_millis(300)).ok();
    let ss = small_sink.stop();
    let ls = large_sink.stop();
    let tcp_gbps = tcp.join().ok().and_then(|r| r.ok());
    if let Some(e) = failure {
        return Err(e);
    }
    let drops = parse_drops(&daemons.ctl(&["-o", "json", "stats", "drops"])?)?;
    Ok(SoakReport {
        secs,
        warmup_secs: cfg.warmup().as_secs_f64(),
        samples,
        churns,
        churn_max_ms,
        tcp_gbps,
        small: UdpCounts {
            sent: sg.sent,
            received: ss.unique,
        },
        large: UdpCounts {
            sent: lg.sent,
            received: ls.unique,
        },
        drops,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rss: &[(f64, u64)]) -> SoakReport {
        SoakReport {
            secs: 100.0,
            warmup_secs: 20.0,
            samples: rss
                .iter()
                .map(|&(t_secs, rss_kib)| RssSample { t_secs, rss_kib })
                .collect(),
            churns: 3,
            churn_max_ms: 40,
            tcp_gbps: Some(1.5),
            small: UdpCounts {
                sent: 1000,
                received: 990,
            },
            large: UdpCounts::default(),
            drops: BTreeMap::from([("no_match".to_owned(), 4)]),
        }
    }

    #[test]
    fn growth_ignores_the_warmup_and_judges_flatness() {
        let flat = report(&[
            (0.0, 10_000),
            (10.0, 50_000),
            (20.0, 60_000),
            (60.0, 60_500),
            (100.0, 60_200),
        ]);
        assert_eq!(flat.rss_after_warmup_kib(), Some(60_000));
        assert_eq!(flat.growth_kib(), Some(500));
        assert_eq!(flat.flat(), Some(true));
        let leak = report(&[
            (0.0, 10_000),
            (20.0, 60_000),
            (60.0, 70_000),
            (100.0, 80_000),
        ]);
        assert_eq!(leak.growth_kib(), Some(20_000));
        assert_eq!(leak.flat(), Some(false));
        let shrink = report(&[(20.0, 60_000), (100.0, 59_000)]);
        assert_eq!(shrink.growth_kib(), Some(-1000));
        assert_eq!(report(&[(1.0, 5)]).flat(), None);
    }

    #[test]
    fn table_and_json_carry_the_figures() {
        let r = report(&[(20.0, 60_000), (100.0, 60_100)]);
        let t = r.table();
        assert!(t.contains("growth after warm-up 100 KiB (flat)"), "{t}");
        assert!(t.contains("loss 1.000 %"), "{t}");
        assert!(t.contains("no_match=4"), "{t}");
        let j = r.to_json();
        assert_eq!(j["schema"], "vswitch-bench-soak/1");
        assert_eq!(j["rss_samples"].as_array().map(Vec::len), Some(2));
        assert_eq!(j["growth_kib"], 100);
        assert_eq!(j["drops"]["no_match"], 4);
    }

    #[test]
    fn rule_sets_keep_normal_and_differ() {
        let a = rule_set("udp");
        let b = rule_set("tcp");
        assert_eq!(a.lines().count(), CHURN_RULES + 1);
        assert!(a.starts_with("priority=1,actions=NORMAL\n"));
        assert_ne!(a, b);
    }

    #[test]
    fn intervals_scale_down_for_short_soaks() {
        let c = SoakConfig::new(10, PathBuf::from("/x"));
        assert_eq!(c.sample_every(), Duration::from_secs(1));
        assert_eq!(c.churn_every(), Duration::from_secs(2));
        assert_eq!(c.warmup(), Duration::from_secs(2));
        let c = SoakConfig::new(600, PathBuf::from("/x"));
        assert_eq!(c.sample_every(), Duration::from_secs(5));
        assert_eq!(c.churn_every(), Duration::from_secs(5));
        assert_eq!(c.warmup(), Duration::from_secs(60));
    }

    #[test]
    fn drops_parse_from_the_cli_json() {
        let d = parse_drops(r#"{"drops":{"runt":3,"mtu":1}}"#).unwrap();
        assert_eq!(d.get("runt"), Some(&3));
        assert!(parse_drops("nope").is_err());
    }
}
