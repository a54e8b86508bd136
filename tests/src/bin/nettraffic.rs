//! Traffic endpoints for the port system tests, run inside test namespaces:
//!
//! - `tcp-send ADDR:PORT BYTES` / `tcp-recv ADDR:PORT BYTES`: a TCP stream
//!   of a deterministic, non-repeating byte pattern; the receiver checks
//!   every byte at its stream offset and prints `OK <bytes>` (exit 0) or
//!   where it first differed (exit 1).
//! - `udp-send ADDR:PORT COUNT SIZE` / `udp-recv ADDR:PORT COUNT IDLE_MS`:
//!   numbered datagrams; the receiver prints `RECEIVED <n> CORRUPT <m>
//!   SECS <first-to-last>` after COUNT datagrams or IDLE_MS without one.
//!
//! - `raw-send DEV HEX`: one raw Ethernet frame (hex bytes) out of DEV
//!   through a packet socket, tags and all.
//!
//! Receivers print `READY` once bound so the test can start the sender.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The pattern byte at stream offset `k` (splitmix64 of the 8-byte word).
fn pattern_word(word: u64) -> u64 {
    let mut z = word.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill_pattern(buf: &mut [u8], offset: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        let k = offset + i as u64;
        *b = (pattern_word(k >> 3) >> ((k & 7) * 8)) as u8;
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

fn tcp_send(addr: SocketAddr, total: u64) -> Result<(), String> {
    let start = Instant::now();
    let mut s = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    };
    s.set_write_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < total {
        let n = (total - off).min(buf.len() as u64) as usize;
        fill_pattern(&mut buf[..n], off);
        s.write_all(&buf[..n])
            .map_err(|e| format!("write at {off}: {e}"))?;
        off += n as u64;
    }
    s.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    // Wait for the receiver to close so every byte was taken.
    let _ = s.read(&mut buf);
    println!("SENT {off}");
    Ok(())
}

fn tcp_recv(addr: SocketAddr, total: u64) -> Result<(), String> {
    let l = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    println!("READY");
    std::io::stdout().flush().ok();
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut want = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    loop {
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read at {off}: {e}"))?;
        if n == 0 {
            break;
        }
        fill_pattern(&mut want[..n], off);
        if let Some(i) = (0..n).find(|i| buf[*i] != want[*i]) {
            return Err(format!("MISMATCH at {}", off + i as u64));
        }
        off += n as u64;
    }
    if off != total {
        return Err(format!("SHORT {off} of {total}"));
    }
    println!("OK {off}");
    Ok(())
}

fn udp_send(addr: SocketAddr, count: u32, size: usize) -> Result<(), String> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; size.max(8)];
    let mut sent = 0;
    for seq in 0..count {
        fill_pattern(&mut buf, u64::from(seq) * 4096);
        buf[..4].copy_from_slice(&seq.to_be_bytes());
        if s.send_to(&buf, addr).is_ok() {
            sent += 1;
        }
    }
    println!("SENT {sent}");
    Ok(())
}

fn udp_recv(addr: SocketAddr, count: u32, idle_ms: u64) -> Result<(), String> {
    let s = UdpSocket::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    // A deep socket buffer, so a burst's losses are the switch's, not this
    // reader's (root may exceed rmem_max with SO_RCVBUFFORCE).
    let size: libc::c_int = 32 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: `size` is a live c_int of the given length.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            break;
        }
    }
    s.set_read_timeout(Some(Duration::from_millis(idle_ms)))
        .map_err(|e| e.to_string())?;
    println!("READY");
    std::io::stdout().flush().ok();
    let mut buf = vec![0u8; 65536];
    let mut want = vec![0u8; 65536];
    let (mut got, mut corrupt) = (0u32, 0u32);
    let (mut first, mut last) = (None, Instant::now());
    while got < count {
        let Ok(n) = s.recv(&mut buf) else { break };
        last = Instant::now();
        first.get_or_insert(last);
        let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        fill_pattern(&mut want[..n], u64::from(seq) * 4096);
        if n < 8 || buf[4..n] != want[4..n] {
            corrupt += 1;
        }
        got += 1;
    }
    let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
    println!("RECEIVED {got} CORRUPT {corrupt} SECS {secs:.6}");
    Ok(())
}

fn raw_send(dev: &str, hex: &str) -> Result<(), String> {
    let frame: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad hex: {e}"))?;
    let name = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no device {dev}"));
    }
    // SAFETY: socket(2) with constant arguments; closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: all-zero sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: frame and sll are live for the call, sizes exact.
    let rc = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr() as *const libc::c_void,
            frame.len(),
            0,
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(format!("sendto: {err}"));
    }
    println!("SENT 1");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let r = (|| -> Result<(), String> {
        let mode = args.get(1).ok_or("usage: nettraffic MODE ...")?.as_str();
        if mode == "raw-send" {
            let dev = args.get(2).ok_or("missing DEV")?;
            return raw_send(dev, args.get(3).ok_or("missing HEX")?);
        }
        let addr: SocketAddr = arg(&args, 2, "ADDR:PORT")?;
        match mode {
            "tcp-send" => tcp_send(addr, arg(&args, 3, "BYTES")?),
            "tcp-recv" => tcp_recv(addr, arg(&args, 3, "BYTES")?),
            "udp-send" => udp_send(addr, arg(&args, 3, "COUNT")?, arg(&args, 4, "SIZE")?),
            "udp-recv" => udp_recv(addr, arg(&args, 3, "COUNT")?, arg(&args, 4, "IDLE_MS")?),
            other => Err(format!("unknown mode {other}")),
        }
    })();
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
