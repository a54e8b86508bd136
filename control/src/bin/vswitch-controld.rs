//! vswitch-controld: the control process. Owns the desired state
//! (`state.json`), validates and applies every change to vswitchd, and
//! keeps the datapath reconciled across restarts of either process.

use clap::Parser;
use control::config::Config;
use control::controld::Controld;
use control::daemon::{self, RunDir, Startup, CONTROLD};
use control::ipc::ServerSocket;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "vswitch-controld", version, about = "vswitch control process")]
struct Args {
    /// Instance directory (sockets, pids, logs, state.json).
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
        CONTROLD,
        &run.controld_socket(),
        args.foreground,
        Duration::from_secs(60),
    )? {
        Startup::Detached => return Ok(()),
        Startup::Foreground { signals, pid } => (signals, pid),
    };
    let stop = Arc::new(AtomicBool::new(false));
    signals.spawn_watcher(stop.clone());

    let ctl = Arc::new(Controld::new(run.clone(), &cfg).map_err(|e| anyhow::anyhow!("{e}"))?);
    let ticker = {
        let ctl = ctl.clone();
        let stop = stop.clone();
        let period = Duration::from_millis(cfg.control.reconcile_interval_ms);
        std::thread::Builder::new()
            .name("reconcile".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    ctl.tick();
                }
            })?
    };
    let socket = ServerSocket::bind(&run.controld_socket())?;
    tracing::info!(
        run_dir = %run.dir().display(),
        pid = std::process::id(),
        state = %run.state_file().display(),
        "vswitch-controld serving on {}",
        socket.path().display()
    );
    socket.serve(ctl, stop)?;
    drop(socket);
    let _ = ticker.join();
    tracing::info!("vswitch-controld stopped");
    Ok(())
}
