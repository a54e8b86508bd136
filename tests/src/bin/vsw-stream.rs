//! A paced, verified TCP stream for the fault-under-load system tests: the
//! sender writes a deterministic byte pattern at a fixed rate, so the test
//! knows the transfer is still running when it injects a fault; the
//! receiver checks every byte at its stream offset. Every wait is bounded.
//!
//! ```text
//! vsw-stream recv ADDR:PORT BYTES IDLE_SECS        # "ok BYTES SECONDS" or "error: ..."
//! vsw-stream send ADDR:PORT BYTES MBYTES_PER_SEC IDLE_SECS
//! ```
//!
//! The receiver's verdicts are exclusive: `ok` (every byte, in order,
//! intact), `error: mismatch at byte N` (corruption: the one outcome a
//! fault must never produce) or another `error:` naming why the stream
//! ended early (timeout, reset, short). Exit status 0 only for `ok`.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tests::pattern::fill;

const CHUNK: usize = 64 * 1024;
/// Hard bound on a whole run, whatever the arguments.
const LIMIT: Duration = Duration::from_secs(180);

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}: {:?}", args.get(i)))
}

fn recv(addr: SocketAddr, total: u64, idle: Duration) -> Result<(), String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if start.elapsed() > Duration::from_secs(30) {
                    return Err("no connection within 30 s".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(idle)).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read at byte {off}: {e}")),
        };
        if n == 0 {
            break;
        }
        fill(off, &mut want[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != want[i]) {
            return Err(format!("mismatch at byte {}", off + i as u64));
        }
        off += n as u64;
        if t0.elapsed() > LIMIT {
            return Err(format!("run limit hit at byte {off}"));
        }
    }
    if off != total {
        return Err(format!("stream ended at byte {off} of {total}"));
    }
    println!("ok {off} {:.6}", t0.elapsed().as_secs_f64());
    Ok(())
}

fn send(addr: SocketAddr, total: u64, mbytes_per_sec: f64, idle: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    s.set_write_timeout(Some(idle)).map_err(|e| e.to_string())?;
    let rate = mbytes_per_sec.max(0.1) * 1e6;
    let t0 = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < total {
        // Pace: never ahead of `rate` bytes per second since the start.
        let due = Duration::from_secs_f64(off as f64 / rate);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        if t0.elapsed() > LIMIT {
            return Err(format!("run limit hit at byte {off}"));
        }
        let n = (total - off).min(CHUNK as u64) as usize;
        fill(off, &mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("write at byte {off}: {e}"))?;
        off += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    // Wait for the receiver to close, so every byte was taken.
    let _ = s.set_read_timeout(Some(idle));
    let _ = s.read(&mut buf[..1]);
    println!("sent {off} {:.6}", t0.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let res = (|| -> Result<(), String> {
        let mode = args.get(1).ok_or("usage: see the module doc")?;
        let addr: SocketAddr = arg(&args, 2, "ADDR:PORT")?;
        let total: u64 = arg(&args, 3, "BYTES")?;
        match mode.as_str() {
            "recv" => recv(
                addr,
                total,
                Duration::from_secs(arg::<u64>(&args, 4, "IDLE_SECS")?.max(1)),
            ),
            "send" => send(
                addr,
                total,
                arg(&args, 4, "MBYTES_PER_SEC")?,
                Duration::from_secs(arg::<u64>(&args, 5, "IDLE_SECS")?.max(1)),
            ),
            m => Err(format!("unknown mode {m}")),
        }
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
