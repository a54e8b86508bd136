//! Helpers shared by the integration and system tests: root detection,
//! unique names, and RAII guards for namespaces, veth pairs and child
//! processes that clean up also when a test panics.
//!
//! System tests call [`require_root`] first: without root (or without the
//! `ip` tool) they print why and return, so `cargo test` stays green for a
//! non-root developer; CI runs as root and runs them.

pub mod forward;
pub mod frames;
pub mod hostile;
pub mod lab;
pub mod pattern;

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when running as uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when the test may touch the kernel: root and `ip` available.
/// Prints the reason when not, so a skipped test is visible in the output.
pub fn require_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: needs root");
        return false;
    }
    if !have_tool("ip") {
        eprintln!("SKIP {test}: iproute2 `ip` not installed");
        return false;
    }
    true
}

/// True when `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A name unique to this process and call, at most 15 bytes: `prefix`
/// (truncated to 6 bytes) + pid (base 36) + counter.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let p: String = prefix.chars().take(6).collect();
    let name = format!("{p}{}{}", base36(pid), base36(n));
    assert!(name.len() <= 15, "name {name} too long");
    name
}

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
    String::from_utf8(s).expect("ascii")
}

/// Runs a command, returning its output (never panics on failure).
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command and panics with its stderr when it fails.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`, panicking on failure.
pub fn ip(args: &[&str]) -> String {
    run_ok("ip", args)
}

/// A network namespace deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace named `unique_name(prefix)` with loopback up.
    pub fn new(prefix: &str) -> Netns {
        let name = unique_name(prefix);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec_ok("ip", &["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name (as `ip netns` knows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn exec_ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.exec(cmd, args);
        assert!(
            out.status.success(),
            "in netns {}: {cmd} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a background command inside the namespace; killed on drop of
    /// the returned guard.
    pub fn spawn(&self, cmd: &str, args: &[&str]) -> ChildGuard {
        let mut full = vec!["netns", "exec", &self.name, cmd];
        full.extend_from_slice(args);
        let child = Command::new("ip")
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {cmd}: {e}"));
        ChildGuard { child: Some(child) }
    }

    /// Deletes the namespace now (e.g. to test a namespace vanishing).
    pub fn delete(mut self) {
        self.remove();
        std::mem::forget(self);
    }

    fn remove(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Sends `bytes` over TCP from namespace `from` to `addr` (host:port in
/// namespace `to`) with the `vsw-trafcheck` binary at `trafcheck`; the
/// receiver checks every byte. Returns the receiver's Gbit/s.
pub fn verified_tcp_transfer(
    trafcheck: &str,
    from: &Netns,
    to: &Netns,
    addr: &str,
    bytes: u64,
) -> f64 {
    let rx = to.spawn(trafcheck, &["tcp-recv", addr, &bytes.to_string()]);
    from.exec_ok(trafcheck, &["tcp-send", addr, &bytes.to_string()]);
    let out = rx.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "receiver failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut f = stdout.split_whitespace();
    assert_eq!(f.next(), Some("ok"), "{stdout}");
    assert_eq!(f.next(), Some(bytes.to_string().as_str()), "{stdout}");
    let secs: f64 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0.0);
    bytes as f64 * 8.0 / secs.max(1e-9) / 1e9
}

/// A veth pair in the root namespace, deleted on drop (deleting one end
/// deletes both, wherever the other end was moved).
#[derive(Debug)]
pub struct Veth {
    /// First end.
    pub a: String,
    /// Second end.
    pub b: String,
}

impl Veth {
    /// Creates a pair with unique names derived from `prefix`.
    pub fn new(prefix: &str) -> Veth {
        let a = unique_name(prefix);
        let b = unique_name(prefix);
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        Veth { a, b }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.a]);
    }
}

/// A child process killed (by its PID) and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Wraps an already started child.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Waits for the child to exit and returns its output.
    pub fn wait(mut self) -> Output {
        let child = self.child.take().expect("child present");
        child.wait_with_output().expect("wait for child")
    }

    /// Access to the child (e.g. to check `try_wait`).
    pub fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("child present")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_fit_interface_limit_and_differ() {
        let a = unique_name("vswtest");
        let b = unique_name("vswtest");
        assert_ne!(a, b);
        assert!(a.len() <= 15 && b.len() <= 15);
    }
}
