//! Runs the plan: for each run, for each switch, build the topology, prove
//! connectivity, measure the selected figures and tear it down, recording
//! every value (or the reason it is missing) and showing progress on
//! stderr. A failing figure costs that figure, not the run; Ctrl-C stops at
//! the next check and every guard cleans up on the way out.

use super::error::BenchError;
use super::figure::{Figure, Group, SwitchKind};
use super::measure::{self, Options};
use super::ovs;
use super::report::{Meta, Report, Samples, Skipped};
use super::sys;
use super::topology::{Topology, TopologyConfig};
use datapath::pmd::IdleMode;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Switches, in order.
    pub switches: Vec<SwitchKind>,
    /// Figure groups.
    pub groups: Vec<Group>,
    /// Repetitions.
    pub runs: usize,
    /// Durations and sizes.
    pub opts: Options,
    /// Topology settings.
    pub topo: TopologyConfig,
    /// `--quick` (skips the second TCP figure).
    pub quick: bool,
}

/// The report and whether Ctrl-C cut it short.
#[derive(Debug)]
pub struct Outcome {
    /// Everything measured so far.
    pub report: Report,
    /// True when interrupted.
    pub interrupted: bool,
}

/// A progress bar on stderr (one line per step when not a terminal).
struct Progress {
    total: usize,
    done: usize,
    /// Steps per switch and run (a switch may skip some: the bar jumps).
    per_switch: usize,
    start: Instant,
    tty: bool,
}

impl Progress {
    fn step(&mut self, what: &str) {
        self.done = (self.done + 1).min(self.total);
        let width = 24;
        let filled = width * self.done / self.total.max(1);
        let bar = format!("{}{}", "#".repeat(filled), ".".repeat(width - filled));
        let line = format!(
            "[{bar}] {:>3}% {:>5.0}s {what}",
            100 * self.done / self.total.max(1),
            self.start.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    /// Moves the bar to the end of the switch that started at `start`.
    fn end_switch(&mut self, start: usize) {
        self.done = (start + self.per_switch).min(self.total);
    }

    fn note(&self, msg: &str) {
        if self.tty {
            eprint!("\r\x1b[K");
        }
        eprintln!("{msg}");
    }

    fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

struct Ctx<'a> {
    plan: &'a Plan,
    samples: Samples,
    problems: BTreeMap<SwitchKind, Vec<String>>,
    progress: Progress,
}

impl Ctx<'_> {
    fn wants(&self, g: Group) -> bool {
        self.plan.groups.contains(&g)
    }

    fn set(&mut self, k: SwitchKind, f: Figure, run: usize, v: Option<f64>) {
        self.samples.set(k, f, run, v);
    }

    /// Records a figure's failure; Ctrl-C propagates.
    fn failed(
        &mut self,
        k: SwitchKind,
        run: usize,
        what: &str,
        e: BenchError,
    ) -> Result<(), BenchError> {
        if matches!(e, BenchError::Interrupted) {
            return Err(e);
        }
        let mut msg = format!("run {}: {what}: {e}", run + 1);
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        self.progress.note(&format!("{k}: {msg}"));
        self.problems.entry(k).or_default().push(msg);
        Ok(())
    }
}

fn switch_unavailable(k: SwitchKind) -> Option<String> {
    if k.is_ovs() {
        return ovs::unavailable();
    }
    None
}

fn measure_switch(ctx: &mut Ctx, k: SwitchKind, run: usize) -> Result<(), BenchError> {
    let plan = ctx.plan;
    let o = &plan.opts;
    let tag = format!("run {}/{} {k}", run + 1, plan.runs);
    ctx.progress.step(&format!("{tag}: building topology"));
    measure::reset_peak_rss();
    let mut topo = match Topology::build(k, &plan.topo) {
        Ok(t) => t,
        Err(e) => return ctx.failed(k, run, "topology setup", e),
    };
    if let Err(e) = topo.wait_connectivity(20) {
        return ctx.failed(k, run, "connectivity", e);
    }
    for n in std::mem::take(&mut topo.notes) {
        if run == 0 {
            ctx.progress.note(&format!("{k}: {n}"));
        }
    }
    if ctx.wants(Group::Idle) {
        ctx.progress.step(&format!("{tag}: idle CPU"));
        sys::sleep(Duration::from_secs(1))?;
        match measure::idle_cpu(&topo, o) {
            Ok(Some(v)) => ctx.set(k, Figure::IdleCpu, run, Some(v)),
            Ok(None) => {}
            Err(e) => ctx.failed(k, run, "idle CPU", e)?,
        }
    }
    if ctx.wants(Group::Memory) {
        if let Some((rss, hwm)) = measure::memory(&topo) {
            ctx.set(k, Figure::RssIdle, run, Some(rss));
            ctx.set(k, Figure::HwmIdle, run, Some(hwm));
        }
    }
    if ctx.wants(Group::Latency) {
        ctx.progress.step(&format!("{tag}: latency"));
        let modes: &[Option<IdleMode>] = if topo.ours().is_some() {
            &[Some(IdleMode::Poll), Some(IdleMode::Adaptive)]
        } else {
            &[None]
        };
        for mode in modes {
            if let (Some(m), Some(ours)) = (mode, topo.ours_mut()) {
                if let Err(e) = ours.set_idle(*m) {
                    ctx.failed(k, run, "switch idle mode", e)?;
                    continue;
                }
                if let Err(e) = topo.wait_connectivity(20) {
                    ctx.failed(k, run, "connectivity after idle mode change", e)?;
                    continue;
                }
            }
            let figs = if *mode == Some(IdleMode::Adaptive) {
                [
                    Figure::LatencyAdaptiveP50,
                    Figure::LatencyAdaptiveP99,
                    Figure::LatencyAdaptiveMax,
                ]
            } else {
                [Figure::LatencyP50, Figure::LatencyP99, Figure::LatencyMax]
            };
            match measure::ping(&topo, o) {
                Ok(l) => {
                    ctx.set(k, figs[0], run, Some(l.p50));
                    ctx.set(k, figs[1], run, Some(l.p99));
                    ctx.set(k, figs[2], run, Some(l.max));
                    if l.samples < o.ping_count {
                        let lost = o.ping_count - l.samples;
                        ctx.problems.entry(k).or_default().push(format!(
                            "run {}: ping: {lost} of {} lost",
                            run + 1,
                            o.ping_count
                        ));
                    }
                }
                Err(e) => ctx.failed(k, run, "ping", e)?,
            }
        }
    }
    if ctx.wants(Group::Pps) {
        ctx.progress.step(&format!("{tag}: packet rate"));
        match measure::pps(&topo, o) {
            Ok(r) => {
                ctx.set(k, Figure::PpsRx, run, Some(r.rx_kpps));
                ctx.set(k, Figure::PpsTx, run, Some(r.tx_kpps));
                ctx.set(k, Figure::PpsLoss, run, Some(r.loss_pct));
                ctx.set(
                    k,
                    Figure::PpsPacedDelivery,
                    run,
                    Some(r.paced_delivery_pct()),
                );
                if r.pmd_cycles.is_some() {
                    ctx.set(k, Figure::PmdCyclesPerPacket, run, r.pmd_cycles);
                }
                if r.full.1.ring_drops > 0 {
                    ctx.problems.entry(k).or_default().push(format!(
                        "run {}: sink ring dropped {} frames (sink-bound)",
                        run + 1,
                        r.full.1.ring_drops
                    ));
                }
            }
            Err(e) => ctx.failed(k, run, "packet rate", e)?,
        }
    }
    if ctx.wants(Group::FlowSetup) && (topo.ours().is_some() || topo.ovs().is_some()) {
        ctx.progress.step(&format!("{tag}: flow setup"));
        match measure::flow_setup(&topo, o) {
            Ok(Some(f)) => {
                ctx.set(k, Figure::FlowSetupRate, run, Some(f.rules_per_sec));
                ctx.set(k, Figure::FlowSetupStall, run, Some(f.stall_us));
                ctx.set(k, Figure::FlowSetupBaselineGap, run, Some(f.baseline_us));
            }
            Ok(None) => {}
            Err(e) => ctx.failed(k, run, "flow setup", e)?,
        }
    }
    if ctx.wants(Group::Tcp) {
        ctx.progress.step(&format!("{tag}: TCP"));
        match measure::tcp(&topo, o) {
            Ok(g) => ctx.set(k, Figure::TcpGbps, run, Some(g)),
            Err(e) => {
                ctx.set(k, Figure::TcpGbps, run, None);
                ctx.failed(k, run, "TCP", e)?
            }
        }
        if !plan.quick {
            let r = measure::set_tx_csum(&topo, false).and_then(|()| measure::tcp(&topo, o));
            match r {
                Ok(g) => ctx.set(k, Figure::TcpTxOffGbps, run, Some(g)),
                Err(e) => {
                    ctx.set(k, Figure::TcpTxOffGbps, run, None);
                    ctx.failed(k, run, "TCP, tx csum off", e)?
                }
            }
            let _ = measure::set_tx_csum(&topo, true);
        }
    }
    if ctx.wants(Group::Memory) {
        if let Some((rss, hwm)) = measure::memory(&topo) {
            ctx.set(k, Figure::RssLoaded, run, Some(rss));
            ctx.set(k, Figure::HwmLoaded, run, Some(hwm));
        }
    }
    ctx.progress.step(&format!("{tag}: teardown"));
    drop(topo);
    Ok(())
}

/// Facts recorded in every report.
fn meta(plan: &Plan) -> Meta {
    Meta {
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        runs: plan.runs,
        quick: plan.quick,
        pmd_core: plan.topo.pmd_core,
        load_core: plan.opts.load_core,
        frame_bytes: plan.opts.frame_size,
        flows: plan.opts.flows,
        notes: vec![
            "vswitch-* run in-process: the switch is this harness process with one PMD \
             thread pinned to pmd_core; its idle CPU is the whole process' CPU time (the \
             harness only sleeps meanwhile), its memory the process' VmRSS/VmHWM (VmHWM \
             after load includes the harness' own generator/sink rings, about 10 MiB)"
                .into(),
            "generator: AF_PACKET TPACKET_V2 TX ring with PACKET_QDISC_BYPASS in c1; sink: \
             TPACKET_V3 RX ring in c2 counting only this run's frames by sequence number; \
             both pinned to load_core; iperf3 (or, when not installed, the harness' own TCP \
             sender/sink) and ping pinned there too"
                .into(),
            "pps_paced_delivery: frames delivered of a short run at the paced rate every \
             switch sustains; pps_rx/pps_tx: generator at its highest rate"
                .into(),
            format!(
                "flow setup: {} rules, {} per add_flows call (one datapath generation \
                 each; OVS: one ovs-ofctl add-flows), background traffic at {} pps",
                plan.opts.flow_rules, plan.opts.flow_batch, plan.opts.paced_pps
            ),
            "flow_setup_stall is the longest gap between frames at the sink while rules are \
             installed, an upper bound of the PMD stall; read it against \
             flow_setup_baseline_gap"
                .into(),
        ],
    }
}

/// Runs the plan and returns what was measured.
pub fn execute(plan: &Plan) -> Outcome {
    let mut skipped = Vec::new();
    let mut switches = Vec::new();
    for &k in &plan.switches {
        match switch_unavailable(k) {
            Some(reason) => skipped.push(Skipped {
                switch: k.id().into(),
                reason,
            }),
            None => switches.push(k),
        }
    }
    let steps_per = 2 + plan.groups.iter().filter(|g| **g != Group::Memory).count();
    let mut ctx = Ctx {
        plan,
        samples: Samples::new(plan.runs),
        problems: BTreeMap::new(),
        progress: Progress {
            total: plan.runs * switches.len() * steps_per,
            done: 0,
            per_switch: steps_per,
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
        },
    };
    let mut interrupted = false;
    'runs: for run in 0..plan.runs {
        for &k in &switches {
            let start = ctx.progress.done;
            let r = measure_switch(&mut ctx, k, run);
            ctx.progress.end_switch(start);
            if let Err(e) = r {
                if matches!(e, BenchError::Interrupted) {
                    interrupted = true;
                    break 'runs;
                }
                let _ = ctx.failed(k, run, "measurement", e);
            }
        }
    }
    ctx.progress.finish();
    let mut meta = meta(plan);
    if let Some(cpu) = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .map(str::to_owned)
    }) {
        meta.notes.push(format!(
            "cpu: {}",
            cpu.split(':').nth(1).unwrap_or("").trim()
        ));
    }
    if switches.iter().any(|k| k.is_ovs()) {
        if let Ok(v) = super::cmd::run("ovs-vswitchd", &["--version"]) {
            meta.notes
                .push(v.lines().next().unwrap_or("").trim().to_owned());
        }
    }
    for (k, probs) in &ctx.problems {
        let measured = Figure::ALL.iter().any(|f| {
            ctx.samples
                .get(*k, *f)
                .is_some_and(|v| v.iter().any(Option::is_some))
        });
        if !measured {
            skipped.push(Skipped {
                switch: k.id().into(),
                reason: probs.first().cloned().unwrap_or_default(),
            });
        }
        for p in probs {
            meta.notes.push(format!("{k}: {p}"));
        }
    }
    Outcome {
        report: Report::new(meta, skipped, &ctx.samples),
        interrupted,
    }
}
