//! Test traffic tool run inside test namespaces: a TCP sender/receiver of a
//! deterministic byte stream that the receiver verifies byte for byte, and
//! a UDP burst sender/counter. Every wait is bounded.
//!
//! ```text
//! vsw-trafcheck tcp-recv ADDR:PORT BYTES     # prints "ok BYTES SECONDS"
//! vsw-trafcheck tcp-send ADDR:PORT BYTES
//! vsw-trafcheck udp-recv ADDR:PORT COUNT IDLE_MS   # prints "received N bad M"
//! vsw-trafcheck udp-send ADDR:PORT COUNT SIZE      # prints "sent N SECONDS"
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tests::pattern::fill;

const CHUNK: usize = 256 * 1024;
const LIMIT: Duration = Duration::from_secs(120);

fn parse<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn tcp_recv(addr: SocketAddr, total: u64) -> Result<(), String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if start.elapsed() > LIMIT {
                    return Err("no connection".into());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    s.set_nonblocking(false).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read at {off}: {e}"))?;
        if n == 0 {
            break;
        }
        fill(off, &mut want[..n]);
        if buf[..n] != want[..n] {
            let i = (0..n).find(|&i| buf[i] != want[i]).unwrap_or(0);
            return Err(format!("mismatch at byte {}", off + i as u64));
        }
        off += n as u64;
        if t0.elapsed() > LIMIT {
            return Err("too slow".into());
        }
    }
    if off != total {
        return Err(format!("received {off} bytes, expected {total}"));
    }
    println!("ok {off} {:.6}", t0.elapsed().as_secs_f64());
    Ok(())
}

fn tcp_send(addr: SocketAddr, total: u64) -> Result<(), String> {
    let start = Instant::now();
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(CHUNK as u64) as usize;
        fill(off, &mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("write at {off}: {e}"))?;
        off += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    // Wait for the receiver to close, so every byte was taken.
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.read(&mut buf[..1]);
    Ok(())
}

fn udp_recv(addr: SocketAddr, count: u64, idle_ms: u64) -> Result<(), String> {
    let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(idle_ms)))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (mut got, mut bad, mut first) = (0u64, 0u64, true);
    let mut buf = vec![0u8; 65536];
    let mut want = vec![0u8; 65536];
    while got + bad < count && start.elapsed() < LIMIT {
        // Before the first datagram wait as long as the overall limit.
        let n = match s.recv(&mut buf) {
            Ok(n) => n,
            Err(_) if first && start.elapsed() < Duration::from_secs(20) => continue,
            Err(_) => break,
        };
        first = false;
        if n < 8 {
            bad += 1;
            continue;
        }
        let seq = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8]));
        fill(seq * 65536, &mut want[8..n]);
        if buf[8..n] == want[8..n] {
            got += 1;
        } else {
            bad += 1;
        }
    }
    println!("received {got} bad {bad}");
    Ok(())
}

fn udp_send(addr: SocketAddr, count: u64, size: usize) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| "addr")?
    } else {
        "[::]:0".parse().map_err(|_| "addr")?
    };
    let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    s.connect(addr)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let size = size.clamp(8, 65000);
    let mut buf = vec![0u8; size];
    let mut sent = 0u64;
    let t0 = Instant::now();
    for seq in 0..count {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        fill(seq * 65536, &mut buf[8..]);
        // ENOBUFS/ECONNREFUSED on a burst are part of the loss being
        // measured, not a failure of the tool.
        if s.send(&buf).is_ok() {
            sent += 1;
        }
    }
    println!("sent {sent} {:.6}", t0.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let res = (|| -> Result<(), String> {
        let mode = args.get(1).ok_or("usage: see module doc")?;
        let addr: SocketAddr = parse(&args, 2, "ADDR:PORT")?;
        match mode.as_str() {
            "tcp-recv" => tcp_recv(addr, parse(&args, 3, "BYTES")?),
            "tcp-send" => tcp_send(addr, parse(&args, 3, "BYTES")?),
            "udp-recv" => udp_recv(addr, parse(&args, 3, "COUNT")?, parse(&args, 4, "IDLE_MS")?),
            "udp-send" => udp_send(addr, parse(&args, 3, "COUNT")?, parse(&args, 4, "SIZE")?),
            m => Err(format!("unknown mode {m}")),
        }
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vsw-trafcheck: {e}");
            ExitCode::FAILURE
        }
    }
}
