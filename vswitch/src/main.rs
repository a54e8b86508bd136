//! vswitchd: the datapath process. Runs the [`datapath::switch::Switch`]
//! (PMD threads, ports) and serves the datapath API (`DIR/vswitchd.sock`)
//! that vswitch-controld programs it through and `vswitchctl` reads from.
//!
//! It keeps forwarding with its last state when the control process dies;
//! on SIGTERM/SIGINT it stops cleanly (ports dropped, which removes what is
//! not persistent; persistent TAPs stay for the next start to reattach).

mod ports;
mod server;

use anyhow::Context;
use clap::Parser;
use control::config::Config;
use control::daemon::{self, RunDir, Startup, VSWITCHD};
use control::ipc::ServerSocket;
use datapath::pmd::IdleMode;
use datapath::switch::{Switch, SwitchConfig};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "vswitchd", version, about = "vswitch datapath process")]
struct Args {
    /// Instance directory (sockets, pids, logs).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Configuration file (default: the embedded configs/default.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Stay in the foreground (systemd, containers, debugging).
    #[arg(long)]
    foreground: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = RunDir::resolve(args.run_dir.as_deref());
    let cfg = Config::load(args.config.as_deref())?;
    let (signals, _pid) = match daemon::startup(
        &run,
        VSWITCHD,
        &run.vswitchd_socket(),
        args.foreground,
        Duration::from_secs(30),
    )? {
        Startup::Detached => return Ok(()),
        Startup::Foreground { signals, pid } => (signals, pid),
    };

    let sw_cfg = SwitchConfig {
        pmd_cores: cfg.pmd.cores.clone(),
        idle: if cfg.pmd.idle == "poll" {
            IdleMode::Poll
        } else {
            IdleMode::Adaptive
        },
        fdb_max: cfg.fdb.max_entries,
        fdb_aging_secs: cfg.fdb.aging_secs,
        ..SwitchConfig::default()
    };
    let switch = Switch::new(sw_cfg).context("starting the switch")?;
    let handler = Arc::new(server::Datapath::new(switch.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    signals.spawn_watcher(stop.clone());

    // Timers: rule timeouts and FDB aging about once a second, the ports'
    // health checks (link state, rate-driven tuning) in between.
    let timers = {
        let switch = switch.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("timers".into())
            .spawn(move || switch.run_maintenance(&stop))?
    };

    let socket = ServerSocket::bind(&run.vswitchd_socket())?;
    tracing::info!(
        run_dir = %run.dir().display(),
        pid = std::process::id(),
        cores = ?cfg.pmd.cores,
        "vswitchd serving on {}",
        socket.path().display()
    );
    socket.serve(handler.clone(), stop.clone())?;
    drop(socket);
    let _ = timers.join();
    handler.shutdown();
    switch.shutdown();
    tracing::info!("vswitchd stopped");
    Ok(())
}
