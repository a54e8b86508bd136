//! External commands (`ip`, `ping`, `iperf3`, `ovs-*`): run to completion
//! with their stderr in the error, or started in the background under a
//! guard that kills (by its own PID only) and reaps the child on drop.

use super::error::{BenchError, Result};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn line(cmd: &str, args: &[&str]) -> String {
    std::iter::once(cmd)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to completion; its stdout on success.
pub fn run(cmd: &str, args: &[&str]) -> Result<String> {
    run_env(cmd, args, &[])
}

/// Runs a command with extra environment variables.
pub fn run_env(cmd: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BenchError::Spawn {
            cmd: line(cmd, args),
            source,
        })?;
    if !out.status.success() {
        return Err(BenchError::Command {
            cmd: line(cmd, args),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command inside a named network namespace.
pub fn run_in(ns: &str, cmd: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns, cmd];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// `ip ARGS`.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

/// True when `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A background child, killed by PID and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    what: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `cmd` inside netns `ns` (None: this namespace) with stdout
    /// captured and stderr discarded.
    pub fn spawn(ns: Option<&str>, cmd: &str, args: &[&str]) -> Result<ChildGuard> {
        let mut full: Vec<&str> = Vec::new();
        let prog = match ns {
            Some(ns) => {
                full.extend(["netns", "exec", ns, cmd]);
                "ip"
            }
            None => cmd,
        };
        full.extend_from_slice(args);
        let child = Command::new(prog)
            .args(&full)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| BenchError::Spawn {
                cmd: line(prog, &full),
                source,
            })?;
        Ok(ChildGuard {
            what: line(cmd, args),
            child: Some(child),
        })
    }

    /// Waits up to `limit` for the child to exit and returns its stdout;
    /// kills it when the limit passes or Ctrl-C arrives.
    pub fn wait_output(mut self, limit: Duration) -> Result<String> {
        let end = Instant::now() + limit;
        let Some(mut child) = self.child.take() else {
            return Ok(String::new());
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() >= end || super::sys::interrupted() => {
                    let _ = child.kill();
                    let _ = child.wait();
                    super::sys::check_interrupt()?;
                    return Err(BenchError::Timeout {
                        what: self.what.clone(),
                        secs: limit.as_secs(),
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(BenchError::io(self.what.clone(), "wait", e)),
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| BenchError::io(self.what.clone(), "read output", e))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
