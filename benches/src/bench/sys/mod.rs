//! The harness' system layer: the only place with `unsafe`. Entering a
//! network namespace on the calling thread (setns(2) with CLONE_NEWNET
//! affects only that thread), Ctrl-C/SIGTERM handling, per-thread CPU
//! times and process memory from procfs (proc(5): `/proc/<pid>/task/<tid>/stat`
//! fields 14–15, `/proc/<pid>/status` VmRSS/VmHWM), and AF_PACKET rings
//! ([`packet`]).

pub mod packet;

use super::error::{BenchError, Result};
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag instead of killing the process, so
/// every measurement loop stops at its next check and the RAII guards
/// delete what was created. Children (ping, iperf3) in the terminal's
/// process group get the SIGINT themselves.
pub fn install_signal_handlers() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only performs an atomic store, which is
        // async-signal-safe; no other code in this process installs handlers
        // for these signals.
        unsafe { sigaction(sig, &act) }
            .map_err(|e| BenchError::io(format!("signal {sig}"), "sigaction", e.into()))?;
    }
    Ok(())
}

/// True once Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with [`BenchError::Interrupted`] once a signal arrived.
pub fn check_interrupt() -> Result<()> {
    if interrupted() {
        Err(BenchError::Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps `d` in short slices, returning early with an error on Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// True when running as uid 0.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Moves the calling thread into the named network namespace
/// (`/run/netns/NAME`, as `ip netns add` creates it).
pub fn enter_netns(name: &str) -> Result<()> {
    let object = format!("netns \"{name}\"");
    let f = File::open(format!("/run/netns/{name}"))
        .map_err(|e| BenchError::io(object.clone(), "open", e))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| BenchError::io(object, "setns", e.into()))
}

/// Pins the calling thread to one core.
pub fn pin(core: usize) -> Result<()> {
    datapath::pmd::pin_to_core(core)
        .map_err(|e| BenchError::io(format!("core {core}"), "sched_setaffinity", e))
}

/// Kernel ticks per second (for procfs CPU times).
pub fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .map(|t| t as f64)
        .unwrap_or(100.0)
}

/// utime + stime of a `stat` line, in ticks. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after the
/// last ')'.
pub fn parse_stat_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds used by a process (all threads).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat_cpu(&s)? as f64 / clock_ticks())
}

/// CPU seconds used by one thread of this process.
pub fn thread_cpu_secs(tid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    Some(parse_stat_cpu(&s)? as f64 / clock_ticks())
}

/// Thread ids of this process whose name starts with `prefix` (PMD
/// threads are named `pmd<N>` by the datapath).
pub fn threads_named(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut tids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.trim_end().starts_with(prefix).then_some(tid)
        })
        .collect();
    tids.sort_unstable();
    tids
}

/// VmRSS and VmHWM in KiB from a `/proc/<pid>/status` text.
pub fn parse_status_memory(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// VmRSS and VmHWM of a process in KiB (`self` for this process).
pub fn process_memory_kib(pid: &str) -> Option<(u64, u64)> {
    parse_status_memory(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Pids of running processes whose command name is exactly `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let c = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (c.trim_end() == comm).then_some(pid)
        })
        .collect()
}

/// Nominal CPU clock in Hz from /proc/cpuinfo (for cycles per packet).
pub fn cpu_hz() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = s
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some(mhz * 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields_are_counted_after_the_command_name() {
        let stat = "4242 (pmd 0) (x)) R 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 1 0 100 1000 10";
        assert_eq!(parse_stat_cpu(stat), Some(300));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn memory_fields_are_read_in_kib() {
        let st = "Name:\tx\nVmPeak:\t 9000 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status_memory(st), Some((1024, 2048)));
        assert_eq!(parse_status_memory("Name:\tx\n"), None);
    }

    #[test]
    fn own_process_figures_are_readable() {
        assert!(process_memory_kib("self").is_some_and(|(rss, hwm)| rss > 0 && hwm >= rss));
        assert!(process_cpu_secs(std::process::id()).is_some());
        let tid = nix::unistd::gettid().as_raw() as u32;
        assert!(thread_cpu_secs(tid).is_some());
    }
}
