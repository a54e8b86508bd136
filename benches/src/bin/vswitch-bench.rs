//! `vswitch-bench`: measures our switch against the Linux bridge and Open
//! vSwitch on the standard topology of `../shared/BENCHMARKS.md` and prints
//! an aligned table (stdout), with `--json` and `--plot` files. Needs root.
//!
//! ```text
//! sudo vswitch-bench --runs 3 --json out.json --plot out.svg
//! sudo vswitch-bench --quick --only kernel-bridge,vswitch-tap --figures pps,latency
//! ```

use anyhow::{bail, Context};
use benches::bench::figure::{Group, SwitchKind};
use benches::bench::measure::Options;
use benches::bench::runner::{execute, Plan};
use benches::bench::soak::{run_soak, SoakConfig};
use benches::bench::topology::TopologyConfig;
use benches::bench::{plot, sys};
use clap::Parser;
use datapath::port::afpacket::RingMode;
use std::path::PathBuf;

/// End-to-end benchmark of vswitch against the Linux bridge and Open vSwitch.
#[derive(Parser, Debug)]
#[command(name = "vswitch-bench", version)]
struct Args {
    /// Repetitions of every measurement (median and min–max are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Short windows (all switches in under 2 minutes; 1 run unless --runs
    /// is given).
    #[arg(long)]
    quick: bool,
    /// Switches to measure, comma separated (default all): no-switch, kernel-bridge,
    /// ovs-afxdp, ovs-tap, vswitch-tap, vswitch-afxdp, vswitch-afpacket.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Figure groups, comma separated (default all): pps, tcp, latency,
    /// idle, memory, flowsetup.
    #[arg(long, value_delimiter = ',')]
    figures: Vec<String>,
    /// Write the results as JSON (schema vswitch-bench/1).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write an SVG chart (grouped bars per figure).
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
    /// Core of the switch's PMD thread (OVS: pmd-cpu-mask).
    #[arg(long, default_value_t = 1)]
    pmd_core: usize,
    /// Core of the generator, sink, ping and iperf3.
    #[arg(long, default_value_t = 0)]
    load_core: usize,
    /// Generator frame size on the wire, FCS included (64..=1518).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Distinct UDP 5-tuples the generator cycles through (1, 1000, 100000).
    #[arg(long, default_value_t = 1)]
    flows: usize,
    /// Rules installed by the flow-setup figure (default 10000, --quick 2000).
    #[arg(long)]
    flow_rules: Option<usize>,
    /// Rules per `add_flows` call (one new datapath generation each).
    #[arg(long, default_value_t = 100)]
    flow_batch: usize,
    /// Measure the VXLAN overlay instead (issue 6): two simulated hosts,
    /// kernel vxlan + bridge vs vswitch daemons, TCP and 64 B pps.
    #[arg(long)]
    vxlan: bool,
    /// Rx ring of the vswitch-afpacket ports: v2 (frame slots, no block
    /// retire latency) or v3 (blocks); default: the port's default.
    #[arg(long, value_name = "v2|v3", value_parser = parse_ring)]
    afpacket_ring: Option<RingMode>,
    /// Directory for the private OVS instance.
    #[arg(long, default_value = "/tmp")]
    work_dir: PathBuf,
    /// Soak the real daemons instead (mixed traffic, flow churn, vswitchd
    /// RSS sampled); reports memory growth after warm-up and drops.
    #[arg(long)]
    soak: bool,
    /// Length of the soak in seconds.
    #[arg(long, default_value_t = 600, value_name = "N")]
    soak_secs: u64,
    /// Directory of vswitchctl/vswitchd/vswitch-controld for --soak
    /// (default: this binary's directory).
    #[arg(long)]
    daemon_dir: Option<PathBuf>,
}

/// `--soak`: runs the soak, prints its report (and JSON with --json).
fn soak(args: &Args) -> anyhow::Result<()> {
    let daemon_dir = match &args.daemon_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .context("locating vswitch-bench")?
            .parent()
            .context("vswitch-bench has no parent directory")?
            .to_owned(),
    };
    let mut cfg = SoakConfig::new(args.soak_secs.max(1), daemon_dir);
    cfg.load_core = args.load_core;
    eprintln!(
        "vswitch-bench: soak of {} s (warm-up {} s, RSS every {} s, replace-flows every {} s)",
        cfg.secs,
        cfg.warmup().as_secs(),
        cfg.sample_every().as_secs(),
        cfg.churn_every().as_secs()
    );
    let report = run_soak(&cfg).context("soak")?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).context("soak JSON")?;
        std::fs::write(path, text)
            .with_context(|| format!("writing JSON to {}", path.display()))?;
    }
    Ok(())
}

fn parse_list<T>(
    items: &[String],
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
    all: &[T],
) -> anyhow::Result<Vec<T>>
where
    T: Copy + PartialEq,
{
    if items.is_empty() {
        return Ok(all.to_vec());
    }
    let mut out = Vec::new();
    for s in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match parse(s) {
            Some(v) if !out.contains(&v) => out.push(v),
            Some(_) => {}
            None => bail!("unknown {what} \"{s}\""),
        }
    }
    // Keep the canonical order (anchors first, so ratios have a reference).
    Ok(all.iter().copied().filter(|v| out.contains(v)).collect())
}

/// `--afpacket-ring`: the port's own option values.
fn parse_ring(s: &str) -> Result<RingMode, String> {
    RingMode::parse(s).ok_or_else(|| format!("{s:?} is not a ring mode (v2 or v3)"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.soak {
        if !sys::is_root() {
            bail!("vswitch-bench --soak needs root (it creates network namespaces and interfaces)");
        }
        sys::install_signal_handlers().context("installing the Ctrl-C handler")?;
        return soak(&args);
    }
    let switches = parse_list(&args.only, "switch", SwitchKind::parse, &SwitchKind::ALL)?;
    let groups = parse_list(&args.figures, "figure group", Group::parse, &Group::ALL)?;
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if !(64..=1518).contains(&args.size) {
        bail!("--size {} is outside 64..=1518", args.size);
    }
    if args.pmd_core == args.load_core {
        eprintln!("warning: PMD and load share core {}", args.pmd_core);
    }
    if !sys::is_root() {
        bail!("vswitch-bench needs root (it creates network namespaces and interfaces)");
    }
    sys::install_signal_handlers().context("installing the Ctrl-C handler")?;
    if args.vxlan {
        let o = benches::bench::overlay::OverlayOptions {
            pmd_core: args.pmd_core,
            load_core: args.load_core,
            tcp_secs: if args.quick { 3 } else { 8 },
            pps_window: std::time::Duration::from_secs(if args.quick { 2 } else { 4 }),
        };
        let runs = if args.quick { 1 } else { args.runs };
        let mut all = Vec::new();
        for i in 0..runs {
            eprintln!("vswitch-bench --vxlan: run {}/{runs}", i + 1);
            all.push(benches::bench::overlay::run(&o).context("VXLAN overlay run")?);
        }
        print!("{}", benches::bench::overlay::table(&all));
        return Ok(());
    }
    let runs_given = std::env::args().any(|a| a == "--runs" || a.starts_with("--runs="));
    let mut opts = if args.quick {
        Options::quick()
    } else {
        Options::full()
    };
    opts.frame_size = args.size - 4;
    opts.flows = args.flows.max(1);
    if let Some(n) = args.flow_rules {
        opts.flow_rules = n;
    }
    opts.flow_batch = args.flow_batch.max(1);
    opts.load_core = args.load_core;
    let plan = Plan {
        switches,
        groups,
        runs: if args.quick && !runs_given {
            1
        } else {
            args.runs
        },
        opts,
        topo: TopologyConfig {
            pmd_core: args.pmd_core,
            work_dir: args.work_dir.clone(),
            afpacket_ring: args.afpacket_ring.unwrap_or_default(),
        },
        quick: args.quick,
    };
    eprintln!(
        "vswitch-bench: {} run(s) of {} on PMD core {}, load core {}; vswitch-* run in-process",
        plan.runs,
        plan.switches
            .iter()
            .map(|s| s.id())
            .collect::<Vec<_>>()
            .join(", "),
        plan.topo.pmd_core,
        plan.opts.load_core
    );
    let outcome = execute(&plan);
    let report = outcome.report;
    print!("{}", report.table());
    for n in &report.meta.notes {
        println!("note: {n}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing JSON to {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "vswitch-bench: medians of {} run(s), {} B frames, {} flow(s)",
            plan.runs, args.size, plan.opts.flows
        );
        std::fs::write(path, plot::svg(&report, &title))
            .with_context(|| format!("writing SVG to {}", path.display()))?;
    }
    if outcome.interrupted {
        eprintln!("vswitch-bench: interrupted; everything it created was removed");
        std::process::exit(130);
    }
    Ok(())
}
