//! `vswitchctl start|stop|status`: running the two daemons of one run dir.
//!
//! `start` is idempotent: under an exclusive `flock(2)` on
//! `DIR/vswitchctl.lock` it starts only a daemon that is not running
//! (binaries next to `vswitchctl`, `--run-dir DIR --foreground`, output
//! appended to `DIR/<daemon>.log`) and returns once vswitch-controld
//! reports the datapath in sync with the persisted state.

use super::{call_controld, CliError, Format, EXIT_FAILED, EXIT_UNREACHABLE};
use crate::api::{DaemonStatus, Reply, Request, StatusReply};
use crate::daemon::{process_alive, RunDir, CONTROLD, VSWITCHD};
use crate::ipc::Client;
use nix::fcntl::{Flock, FlockArg};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long `start` waits for each step.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn lock(run: &RunDir) -> Result<Flock<std::fs::File>, CliError> {
    run.create()
        .map_err(|e| CliError::failed(crate::controld::error_chain(&e)))?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run.lock_file())
        .map_err(|e| CliError::failed(format!("{}: {e}", run.lock_file().display())))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| CliError::failed(format!("{}: flock: {e}", run.lock_file().display())))
}

/// The binary `name` next to the running `vswitchctl`.
fn sibling(name: &str) -> Result<PathBuf, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failed(format!("cannot find vswitchctl's own path: {e}")))?;
    let p = exe.with_file_name(name);
    if !p.exists() {
        return Err(CliError::failed(format!(
            "{} not found next to vswitchctl; build the whole workspace (cargo build --workspace)",
            p.display()
        )));
    }
    Ok(p)
}

fn answers(sock: &Path) -> Option<u32> {
    Client::connect(sock, "vswitchctl", Duration::from_secs(5))
        .ok()
        .map(|c| c.server().pid)
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

fn spawn(run: &RunDir, name: &str, sock: &Path, config: Option<&Path>) -> Result<u32, CliError> {
    if let Some(pid) = answers(sock) {
        return Ok(pid);
    }
    if let Some(pid) = run.live_pid(name) {
        // Alive but not answering (still starting, or stuck): wait for it
        // rather than starting a second one.
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline && process_alive(pid) {
            if let Some(p) = answers(sock) {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if process_alive(pid) {
            return Err(CliError::failed(format!(
                "{name} (pid {pid}) runs but does not answer on {}",
                sock.display()
            )));
        }
    }
    let bin = sibling(name)?;
    let log_path = run.log_file(name);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| CliError::failed(format!("{}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| CliError::failed(format!("{}: {e}", log_path.display())))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--run-dir").arg(run.dir()).arg("--foreground");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| CliError::failed(format!("cannot start {}: {e}", bin.display())))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(pid) = answers(sock) {
            return Ok(pid);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::failed(format!(
                "{name} exited during start-up ({status}); {}:\n{}",
                log_path.display(),
                log_tail(&log_path)
            )));
        }
        if Instant::now() > deadline {
            return Err(CliError::failed(format!(
                "{name} did not answer within {START_TIMEOUT:?}; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts what is not running and waits for the datapath to be in sync.
/// Returns a warning vswitch-controld reported (e.g. a corrupt state file
/// that was kept aside).
pub fn start_quiet(run: &RunDir, config: Option<&Path>) -> Result<Option<String>, CliError> {
    let config = config.map(|c| {
        if c.is_absolute() {
            c.to_owned()
        } else {
            std::env::current_dir()
                .map(|d| d.join(c))
                .unwrap_or(c.to_owned())
        }
    });
    if let Some(c) = &config {
        crate::config::Config::load(Some(c))
            .map_err(|e| CliError::failed(crate::controld::error_chain(&e)))?;
    }
    crate::ipc::check_socket_path(&run.controld_socket())
        .map_err(|e| CliError::failed(e.to_string()))?;
    let _lock = lock(run)?;
    spawn(run, VSWITCHD, &run.vswitchd_socket(), config.as_deref())?;
    spawn(run, CONTROLD, &run.controld_socket(), config.as_deref())?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let st = match call_controld(run, &Request::Status)? {
            Reply::Status(s) => s,
            _ => return Err(CliError::failed("vswitch-controld answered status oddly")),
        };
        let details = st
            .daemons
            .first()
            .map(|d| d.details.clone())
            .unwrap_or_default();
        let sync = details.get("datapath").cloned().unwrap_or_default();
        if sync == "in sync" {
            return Ok(details.get("warning").cloned());
        }
        if Instant::now() > deadline {
            return Err(CliError {
                code: EXIT_FAILED,
                message: format!("daemons started but the datapath is not in sync: {sync}"),
                json_done: false,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `start`.
pub fn start(run: &RunDir, fmt: Format, config: Option<&Path>) -> Result<(), CliError> {
    let result = start_quiet(run, config);
    let full = collect_status(run);
    match fmt {
        Format::Json => super::output::print_read(fmt, &Reply::Status(full), false),
        Format::Table => {
            print!(
                "{}",
                super::output::render_read(&Reply::Status(full), false)
            );
            println!(
                "logs: {} {}",
                run.log_file(VSWITCHD).display(),
                run.log_file(CONTROLD).display()
            );
        }
    }
    if let Some(w) = result? {
        eprintln!("vswitchctl: error in the persisted state: {w}");
    }
    Ok(())
}

fn stop_one(run: &RunDir, name: &str) -> Result<bool, CliError> {
    let Some(pid) = run.live_pid(name) else {
        return Ok(false);
    };
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while process_alive(pid) {
        if Instant::now() > deadline {
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            std::thread::sleep(Duration::from_millis(100));
            if process_alive(pid) {
                return Err(CliError::failed(format!("{name} (pid {pid}) did not stop")));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

/// Stops both daemons: the control process first, so it does not see the
/// datapath vanish and log errors, then vswitchd. Returns which were
/// running.
pub fn stop_quiet(run: &RunDir) -> Result<(bool, bool), CliError> {
    let _lock = lock(run)?;
    let c = stop_one(run, CONTROLD)?;
    let d = stop_one(run, VSWITCHD)?;
    Ok((c, d))
}

/// `stop`.
pub fn stop(run: &RunDir, fmt: Format) -> Result<(), CliError> {
    let (c, d) = stop_quiet(run)?;
    match fmt {
        Format::Json => println!(
            "{}",
            serde_json::json!({"stopped": {CONTROLD: c, VSWITCHD: d}})
        ),
        Format::Table => {
            for (n, s) in [(CONTROLD, c), (VSWITCHD, d)] {
                println!("{n}: {}", if s { "stopped" } else { "was not running" });
            }
        }
    }
    Ok(())
}

fn daemon_status(run: &RunDir, name: &str, sock: &Path) -> DaemonStatus {
    let down = DaemonStatus {
        name: name.into(),
        state: "stopped".into(),
        pid: run.live_pid(name).map(|p| p as u32),
        ..Default::default()
    };
    let Ok(mut c) = Client::connect(sock, "vswitchctl", Duration::from_secs(10)) else {
        return down;
    };
    match c.call(&Request::Status) {
        Ok(Reply::Status(s)) => s.daemons.into_iter().next().unwrap_or(down),
        _ => DaemonStatus {
            state: "not answering".into(),
            ..down
        },
    }
}

fn collect_status(run: &RunDir) -> StatusReply {
    StatusReply {
        daemons: vec![
            daemon_status(run, VSWITCHD, &run.vswitchd_socket()),
            daemon_status(run, CONTROLD, &run.controld_socket()),
        ],
    }
}

/// `status`: exit 0 when both daemons answer, 3 otherwise.
pub fn status(run: &RunDir, fmt: Format) -> Result<(), CliError> {
    let st = collect_status(run);
    super::output::print_read(fmt, &Reply::Status(st.clone()), false);
    let down: Vec<&str> = st
        .daemons
        .iter()
        .filter(|d| d.state != "running")
        .map(|d| d.name.as_str())
        .collect();
    if down.is_empty() {
        Ok(())
    } else {
        Err(CliError {
            code: EXIT_UNREACHABLE,
            message: format!("not running: {}", down.join(", ")),
            json_done: true,
        })
    }
}
