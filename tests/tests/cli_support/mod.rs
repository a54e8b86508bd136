//! Shared by the `cli_*` system tests: a private vswitch instance (its own
//! run dir, daemons started through `vswitchctl start`) that is stopped
//! and removed on drop, also when the test panics.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static N: AtomicU32 = AtomicU32::new(0);

/// Directory holding the workspace binaries (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/cli_xxx → target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned()
}

/// True when the test can run: root, `ip`, and the daemons built.
pub fn ready(test: &str) -> bool {
    if !tests::require_root(test) {
        return false;
    }
    for b in ["vswitchctl", "vswitchd", "vswitch-controld"] {
        if !bin_dir().join(b).exists() {
            // In CI a missing daemon is a broken setup, not a reason to skip.
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {b} not built; the test command builds the binaries first"
            );
            eprintln!("SKIP {test}: {b} not built (run cargo build --workspace --bins first)");
            return false;
        }
    }
    true
}

/// A private instance.
pub struct Instance {
    pub dir: PathBuf,
}

impl Instance {
    /// A fresh run dir (short path: socket paths must stay under 108 bytes).
    pub fn new() -> Instance {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/vswt-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create run dir");
        Instance { dir }
    }

    /// Runs `vswitchctl --run-dir DIR ARGS`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("vswitchctl"))
            .arg("--run-dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run vswitchctl")
    }

    /// Runs vswitchctl and panics unless it exits 0; returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "vswitchctl {}: exit {:?}\nstdout: {}\nstderr: {}",
            args.join(" "),
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Exit code of vswitchctl ARGS.
    pub fn code(&self, args: &[&str]) -> i32 {
        self.ctl(args).status.code().unwrap_or(-1)
    }

    /// Pid of a daemon from its pid file.
    pub fn pid(&self, daemon: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `kill -9` of a daemon this instance started, and wait for it to go.
    pub fn kill9(&self, daemon: &str) {
        let pid = self.pid(daemon).expect("daemon pid");
        // SAFETY: kill has no memory-safety preconditions; the pid is one
        // of the daemons this test instance started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("{daemon} (pid {pid}) survived SIGKILL");
    }

    /// `dump-flows BR --no-stats` lines, sorted.
    pub fn rules(&self, bridge: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .ctl_ok(&["dump-flows", bridge, "--no-stats"])
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.ctl(&["stop"]);
        for d in ["vswitch-controld", "vswitchd"] {
            if let Some(pid) = self.pid(d) {
                // SAFETY: as in kill9; the pid file is this instance's.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Ping from `ns` to `ip`: true when at least one reply came back.
pub fn ping(ns: &tests::Netns, ip: &str, count: u32) -> bool {
    ns.exec(
        "ping",
        &["-c", &count.to_string(), "-i", "0.2", "-W", "1", ip],
    )
    .status
    .success()
}
