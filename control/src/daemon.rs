//! What both daemons share around their main loop: the run directory
//! layout, pid files, logging, the shutdown signal, and the boot id.
//!
//! Run dir layout (issue 5): `DIR/controld.sock`, `DIR/vswitchd.sock`,
//! `DIR/<daemon>.pid`, `DIR/<daemon>.log`, and `DIR/state.json` when a run
//! dir is chosen explicitly; the default instance keeps sockets, pids and
//! logs in `/run/vswitch` and its state in `/var/lib/vswitch/state.json`.
//!
//! The run dir must be private to its owner: a directory others can write
//! (world-writable, even with the sticky bit like `/tmp`) or one owned by
//! another user is refused, since whoever can create entries there could
//! plant a symlink where a root daemon writes its pid file, log or state.

use nix::sys::signal::{SigSet, Signal};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Default run directory.
pub const DEFAULT_RUN_DIR: &str = "/run/vswitch";
/// Default state file of the default instance.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/vswitch/state.json";
/// Environment variable naming the run dir.
pub const RUN_DIR_ENV: &str = "VSWITCH_RUN_DIR";
/// Daemon name of the datapath process.
pub const VSWITCHD: &str = "vswitchd";
/// Daemon name of the control process.
pub const CONTROLD: &str = "vswitch-controld";

/// Errors of daemon housekeeping.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The run dir cannot be created.
    #[error("run dir \"{path}\": cannot create")]
    RunDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The run dir is writable by others or owned by another user.
    #[error("run dir \"{path}\": refused: {reason}")]
    UnsafeRunDir {
        /// Directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another live process holds the pid file.
    #[error("{name} is already running in \"{dir}\" (pid {pid})")]
    AlreadyRunning {
        /// Daemon.
        name: String,
        /// Run dir.
        dir: PathBuf,
        /// Its pid.
        pid: i32,
    },
    /// Writing the pid file failed.
    #[error("pid file \"{path}\": cannot write")]
    PidFile {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Blocking the shutdown signals failed.
    #[error("cannot block SIGTERM/SIGINT for the signal thread")]
    Signals(#[source] nix::Error),
}

/// One instance's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunDir {
    dir: PathBuf,
    explicit: bool,
}

impl RunDir {
    /// `--run-dir` when given, else `$VSWITCH_RUN_DIR`, else the default.
    pub fn resolve(arg: Option<&Path>) -> RunDir {
        let dir = match (arg, std::env::var_os(RUN_DIR_ENV)) {
            (Some(d), _) => absolute(d),
            (None, Some(d)) if !d.is_empty() => absolute(Path::new(&d)),
            _ => PathBuf::from(DEFAULT_RUN_DIR),
        };
        // Naming the default directory explicitly (as `vswitchctl start`
        // does on the daemons' command lines) is still the default
        // instance, whose state lives under /var/lib.
        let explicit = dir != Path::new(DEFAULT_RUN_DIR);
        RunDir { dir, explicit }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True when chosen by `--run-dir` or the environment.
    pub fn is_explicit(&self) -> bool {
        self.explicit
    }

    /// vswitch-controld's socket.
    pub fn controld_socket(&self) -> PathBuf {
        self.dir.join("controld.sock")
    }

    /// vswitchd's socket.
    pub fn vswitchd_socket(&self) -> PathBuf {
        self.dir.join("vswitchd.sock")
    }

    /// Pid file of `daemon`.
    pub fn pid_file(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.pid"))
    }

    /// Log file of `daemon`.
    pub fn log_file(&self, daemon: &str) -> PathBuf {
        self.dir.join(format!("{daemon}.log"))
    }

    /// The lock file serialising `vswitchctl start`/`stop`.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("vswitchctl.lock")
    }

    /// `state.json` of this instance.
    pub fn state_file(&self) -> PathBuf {
        if self.explicit {
            self.dir.join("state.json")
        } else {
            PathBuf::from(DEFAULT_STATE_FILE)
        }
    }

    /// Creates the directory (mode 0755) and checks that only its owner
    /// (us or root) can write in it.
    pub fn create(&self) -> Result<(), DaemonError> {
        use std::os::unix::fs::DirBuilderExt;
        // An explicit mode: under umask 0 a plain create would make it
        // world-writable, which the check below refuses.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .map_err(|source| DaemonError::RunDir {
                path: self.dir.clone(),
                source,
            })?;
        check_private_dir(&self.dir)
    }

    /// Pid recorded for `daemon` if that process is alive.
    pub fn live_pid(&self, daemon: &str) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_file(daemon)).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        process_alive(pid).then_some(pid)
    }
}

/// Refuses a directory that others can write to or that belongs to a
/// user other than us and root (see the module doc).
pub fn check_private_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|source| DaemonError::RunDir {
        path: dir.to_owned(),
        source,
    })?;
    let unsafe_dir = |reason: String| DaemonError::UnsafeRunDir {
        path: dir.to_owned(),
        reason,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o002 != 0 {
        return Err(unsafe_dir(format!(
            "world-writable (mode {mode:04o}): anyone could plant files where the daemons write; use a directory only its owner can write"
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not by uid {me} or root",
            meta.uid()
        )));
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_owned())
    }
}

/// True when `pid` names a live process (not a zombie).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // EPERM: the process exists but belongs to another user (a reader
    // asking about root's daemons).
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A zombie still answers kill(0); its state letter says it is dead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// `DIR/<daemon>.pid`, removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes our pid; fails if a live process already holds the file.
    pub fn create(run: &RunDir, daemon: &str) -> Result<PidFile, DaemonError> {
        if let Some(pid) = run.live_pid(daemon) {
            if pid != std::process::id() as i32 {
                return Err(DaemonError::AlreadyRunning {
                    name: daemon.to_owned(),
                    dir: run.dir().to_owned(),
                    pid,
                });
            }
        }
        let path = run.pid_file(daemon);
        std::fs::write(&path, format!("{}\n", std::process::id())).map_err(|source| {
            DaemonError::PidFile {
                path: path.clone(),
                source,
            }
        })?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets up `tracing` to stderr (the starter redirects it to the log file),
/// with `RUST_LOG` overriding the default `info` level.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it
/// starts afterwards, so they can be received synchronously by
/// [`ShutdownSignals::wait`]. Call before starting any thread.
#[derive(Debug)]
pub struct ShutdownSignals {
    set: SigSet,
}

impl ShutdownSignals {
    /// Blocks the signals.
    pub fn block() -> Result<ShutdownSignals, DaemonError> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.add(Signal::SIGHUP);
        set.thread_block().map_err(DaemonError::Signals)?;
        Ok(ShutdownSignals { set })
    }

    /// Waits for one of them and returns it.
    pub fn wait(&self) -> Signal {
        loop {
            if let Ok(sig) = self.set.wait() {
                return sig;
            }
        }
    }

    /// Starts a thread that sets `flag` on the first signal.
    pub fn spawn_watcher(self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let sig = self.wait();
                tracing::info!(signal = ?sig, "shutting down");
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            })
            .expect("spawning the signal thread at start-up");
    }
}

/// A random id chosen at process start (see `HelloReply::boot_id`).
pub fn new_boot_id() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_ne_bytes(b) | 1;
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

/// How a daemon's `main` goes on after [`startup`].
pub enum Startup {
    /// A detached copy of the daemon is running and ready: exit now.
    Detached,
    /// Running in the foreground: shutdown signals blocked (to be watched
    /// by the caller), logging on, pid file held for the process' life.
    Foreground {
        /// The blocked SIGTERM/SIGINT.
        signals: ShutdownSignals,
        /// The pid file, removed on drop.
        pid: PidFile,
    },
}

/// The start-up both daemons share: create the run dir, check the socket
/// path fits, then either refuse a second instance and [`detach`] (waiting
/// up to `detach_timeout` for `socket`), or, in the foreground, block the
/// shutdown signals, start logging and take the pid file. `daemon` is the
/// program's name ([`VSWITCHD`] or [`CONTROLD`]).
pub fn startup(
    run: &RunDir,
    daemon: &str,
    socket: &Path,
    foreground: bool,
    detach_timeout: std::time::Duration,
) -> anyhow::Result<Startup> {
    run.create()?;
    crate::ipc::check_socket_path(socket)?;
    if !foreground {
        if let Some(pid) = run.live_pid(daemon) {
            anyhow::bail!(
                "{daemon} is already running in {} (pid {pid})",
                run.dir().display()
            );
        }
        detach(&run.log_file(daemon), socket, detach_timeout)?;
        return Ok(Startup::Detached);
    }
    let signals = ShutdownSignals::block()?;
    init_logging();
    let pid = PidFile::create(run, daemon)?;
    Ok(Startup::Foreground { signals, pid })
}

/// When not `--foreground`: starts this same program again with
/// `--foreground` added, detached in its own session group with output
/// appended to `log`, waits until `ready` exists (its socket) or the child
/// dies, and returns. The caller then exits.
pub fn detach(log: &Path, ready: &Path, timeout: std::time::Duration) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--foreground".into());
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let mut child = std::process::Command::new(exe)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if ready.exists() {
            let _ = writeln!(
                std::io::stdout(),
                "started (pid {}), log: {}",
                child.id(),
                log.display()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("exited during start-up ({status}); see {}", log.display());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("not ready after {timeout:?}; see {}", log.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_run_dir_holds_everything() {
        let r = RunDir::resolve(Some(Path::new("/tmp/x")));
        assert_eq!(r.controld_socket(), Path::new("/tmp/x/controld.sock"));
        assert_eq!(r.vswitchd_socket(), Path::new("/tmp/x/vswitchd.sock"));
        assert_eq!(r.state_file(), Path::new("/tmp/x/state.json"));
        assert_eq!(r.pid_file(VSWITCHD), Path::new("/tmp/x/vswitchd.pid"));
        assert_eq!(
            r.log_file(CONTROLD),
            Path::new("/tmp/x/vswitch-controld.log")
        );
    }

    #[test]
    fn default_dir_named_explicitly_keeps_default_state_file() {
        let r = RunDir::resolve(Some(Path::new(DEFAULT_RUN_DIR)));
        assert_eq!(r.state_file(), Path::new(DEFAULT_STATE_FILE));
    }

    #[test]
    fn relative_run_dir_is_made_absolute() {
        let r = RunDir::resolve(Some(Path::new("rel")));
        assert!(r.dir().is_absolute());
    }

    #[test]
    fn pid_file_refuses_second_live_holder_and_is_removed_on_drop() {
        let dir = std::env::temp_dir().join(format!("vsw-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = RunDir::resolve(Some(&dir));
        // A live foreign pid (our parent) holds the file.
        let parent = nix::unistd::getppid().as_raw();
        std::fs::write(run.pid_file("t"), format!("{parent}\n")).unwrap();
        assert!(matches!(
            PidFile::create(&run, "t"),
            Err(DaemonError::AlreadyRunning { .. })
        ));
        // A dead pid is replaced.
        std::fs::write(run.pid_file("t"), "999999999\n").unwrap();
        let p = PidFile::create(&run, "t").unwrap();
        assert_eq!(run.live_pid("t"), Some(std::process::id() as i32));
        drop(p);
        assert!(!run.pid_file("t").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn process_of_another_user_is_alive() {
        // pid 1 belongs to root: kill(1, 0) fails with EPERM for anyone
        // else, and the process is alive all the same.
        assert!(process_alive(1));
        assert!(!process_alive(0));
        assert!(!process_alive(i32::MAX));
    }

    #[test]
    fn boot_ids_differ() {
        assert_ne!(new_boot_id(), new_boot_id());
    }

    #[test]
    fn world_writable_or_foreign_run_dir_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("vsw-rd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = RunDir::resolve(Some(&dir));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        run.create().unwrap();
        // Even with the sticky bit (the /tmp case) others may create files.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = run.create().unwrap_err().to_string();
        assert!(e.contains("world-writable") && e.contains("1777"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&dir, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let e = run.create().unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        // A plain file in the way is named as such.
        let f = std::env::temp_dir().join(format!("vsw-rdf-{}", std::process::id()));
        std::fs::write(&f, b"x").unwrap();
        assert!(check_private_dir(&f).is_err());
        let _ = std::fs::remove_file(&f);
    }
}
