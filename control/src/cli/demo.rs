//! `vswitchctl demo`: the embedded-default tour. In a private run dir it
//! starts both daemons, builds two namespaces attached by TAP ports to one
//! bridge, shows `show`, pings, runs a bounded TCP transfer (our own
//! sender and sink, each in its namespace through `setns(2)` on a thread),
//! prints the figures, and removes everything it made — also on Ctrl-C.

use super::{call_controld, CliError, Format, EXIT_FAILED};
use crate::api::{Reply, Request};
use crate::daemon::{RunDir, ShutdownSignals};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upper bound of the TCP transfer.
const TRANSFER_BYTES: u64 = 2 << 30;
/// Upper bound of the transfer time.
const TRANSFER_TIME: Duration = Duration::from_secs(5);
const SINK_PORT: u16 = 5201;

/// Everything the demo created, removed on drop.
struct Made {
    run: RunDir,
    netns: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        eprintln!(
            "cleaning up: daemons, namespaces, {}",
            self.run.dir().display()
        );
        let _ = super::lifecycle::stop_quiet(&self.run);
        for ns in &self.netns {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(self.run.dir());
    }
}

fn step(n: usize, total: usize, what: &str) {
    eprintln!("[{n}/{total}] {what}");
}

fn interrupted(flag: &AtomicBool) -> Result<(), CliError> {
    if flag.load(Ordering::SeqCst) {
        return Err(CliError::failed("demo interrupted"));
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<(), CliError> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::failed(format!("cannot run ip: {e} (is iproute2 installed?)")))?;
    if !o.status.success() {
        return Err(CliError::failed(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

fn change(run: &RunDir, req: Request) -> Result<(), CliError> {
    call_controld(run, &req).map(|_| ())
}

/// Runs `f` on a thread that has entered network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::thread::JoinHandle<std::io::Result<T>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path)?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        f()
    })
}

/// Ping `count` times; returns the average RTT in ms.
fn ping(ns: &str, dst: &str, count: u32) -> Result<f64, CliError> {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            dst,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::failed(format!("cannot run ping: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        return Err(CliError::failed(format!(
            "ping {dst} from {ns} failed:\n{text}"
        )));
    }
    // "rtt min/avg/max/mdev = 0.050/0.061/0.080/0.010 ms"
    text.lines()
        .find_map(|l| l.split_once(" = ").filter(|(k, _)| k.contains("min/avg")))
        .and_then(|(_, v)| v.split('/').nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| CliError::failed(format!("cannot read ping's RTT from:\n{text}")))
}

/// Bounded TCP transfer from `from` to `to_ip` in `to`: (bytes, seconds).
fn transfer(
    from: &str,
    to: &str,
    to_ip: &str,
    stop: Arc<AtomicBool>,
) -> Result<(u64, f64), CliError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sink = in_netns(to, move || {
        let l = TcpListener::bind(("0.0.0.0", SINK_PORT))?;
        let _ = ready_tx.send(());
        let (mut s, _) = l.accept()?;
        s.set_read_timeout(Some(TRANSFER_TIME + Duration::from_secs(5)))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => break,
                n => total += n as u64,
            }
        }
        Ok(total)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| CliError::failed("the TCP sink did not start"))?;
    let addr: SocketAddr = format!("{to_ip}:{SINK_PORT}")
        .parse()
        .map_err(|_| CliError::failed(format!("bad address {to_ip}")))?;
    let sender = in_netns(from, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_write_timeout(Some(Duration::from_secs(5)))?;
        let buf = vec![0x5au8; 1 << 20];
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < TRANSFER_BYTES
            && start.elapsed() < TRANSFER_TIME
            && !stop.load(Ordering::SeqCst)
        {
            s.write_all(&buf)?;
            sent += buf.len() as u64;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        Ok((sent, start))
    });
    let (sent, start) = sender
        .join()
        .map_err(|_| CliError::failed("TCP sender thread panicked"))?
        .map_err(|e| CliError::failed(format!("TCP sender: {e}")))?;
    let received = sink
        .join()
        .map_err(|_| CliError::failed("TCP sink thread panicked"))?
        .map_err(|e| CliError::failed(format!("TCP sink: {e}")))?;
    let secs = start.elapsed().as_secs_f64();
    if received != sent {
        return Err(CliError::failed(format!(
            "TCP transfer incomplete: sent {sent} bytes, received {received}"
        )));
    }
    Ok((received, secs))
}

/// `demo`.
pub fn demo(fmt: Format) -> Result<(), CliError> {
    // Ctrl-C is received by a thread that sets `stop`; every step checks
    // it, and the `Made` guard removes what exists so far.
    let stop = Arc::new(AtomicBool::new(false));
    ShutdownSignals::block()
        .map_err(|e| CliError::failed(e.to_string()))?
        .spawn_watcher(stop.clone());
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("vswitch-demo-{pid}"));
    let run = RunDir::resolve(Some(&dir));
    let (ns_a, ns_b) = (format!("vswdemo-a-{pid}"), format!("vswdemo-b-{pid}"));
    let (ip_a, ip_b) = ("10.250.0.1", "10.250.0.2");
    let mut made = Made {
        run: run.clone(),
        netns: Vec::new(),
    };
    let total = 6;

    step(
        1,
        total,
        &format!(
            "starting vswitchd and vswitch-controld in {}",
            dir.display()
        ),
    );
    super::lifecycle::start_quiet(&run, None)?;
    interrupted(&stop)?;

    step(2, total, &format!("creating namespaces {ns_a} and {ns_b}"));
    for ns in [&ns_a, &ns_b] {
        ip(&["netns", "add", ns])?;
        made.netns.push(ns.clone());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
    }
    interrupted(&stop)?;

    step(
        3,
        total,
        "bridge br0 with TAP ports a (10.250.0.1/24) and b (10.250.0.2/24)",
    );
    change(
        &run,
        Request::AddBridge {
            bridge: "br0".into(),
        },
    )?;
    for (name, ns, addr) in [("a", &ns_a, ip_a), ("b", &ns_b, ip_b)] {
        change(
            &run,
            Request::AddPort {
                bridge: "br0".into(),
                name: name.into(),
                options: BTreeMap::from([
                    ("type".to_owned(), "tap".to_owned()),
                    ("netns".to_owned(), ns.clone()),
                    ("ip".to_owned(), format!("{addr}/24")),
                ]),
            },
        )?;
    }
    if fmt == Format::Table {
        if let Reply::Show(s) = call_controld(&run, &Request::Show)? {
            println!("$ vswitchctl show");
            print!("{}", super::output::render_read(&Reply::Show(s), false));
        }
    }
    interrupted(&stop)?;

    step(4, total, &format!("ping {ip_b} from {ns_a}"));
    let rtt = ping(&ns_a, ip_b, 5)?;
    interrupted(&stop)?;

    step(
        5,
        total,
        &format!(
            "TCP transfer {ns_a} → {ns_b} (at most {} GiB or {} s)",
            TRANSFER_BYTES >> 30,
            TRANSFER_TIME.as_secs()
        ),
    );
    let (bytes, secs) = transfer(&ns_a, &ns_b, ip_b, stop.clone())?;
    interrupted(&stop)?;
    let gbits = bytes as f64 * 8.0 / secs / 1e9;

    let flows = match call_controld(
        &run,
        &Request::DumpFlows {
            bridge: "br0".into(),
            table: None,
        },
    )? {
        Reply::Flows(f) => f,
        _ => {
            return Err(CliError {
                code: EXIT_FAILED,
                message: "unexpected dump-flows answer".into(),
                json_done: false,
            })
        }
    };
    step(6, total, "results");
    match fmt {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "ping_rtt_avg_ms": rtt,
                "tcp_bytes": bytes,
                "tcp_seconds": secs,
                "tcp_gbit_s": gbits,
            })
        ),
        Format::Table => {
            println!("$ vswitchctl dump-flows br0");
            print!(
                "{}",
                super::output::render_read(&Reply::Flows(flows), false)
            );
            println!("ping RTT avg: {rtt:.3} ms");
            println!(
                "TCP: {:.1} MiB in {secs:.2} s = {gbits:.2} Gbit/s",
                bytes as f64 / (1 << 20) as f64
            );
        }
    }
    drop(made);
    Ok(())
}
