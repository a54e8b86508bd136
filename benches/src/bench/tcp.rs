//! A bounded TCP sender and sink (one stream c1 → c2), used for the TCP
//! figure when iperf3 is not installed. Each side runs on its own thread
//! inside its namespace, pinned to the load core; the sink counts bytes
//! from the first one to end of stream.

use super::error::{BenchError, Result};
use super::sys;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

const PORT: u16 = 5202;
const CHUNK: usize = 128 * 1024;

/// Sends for `secs` seconds from `c1` to `dst` in `c2`; Gbit/s received.
pub fn throughput(c1: &str, c2: &str, dst: [u8; 4], core: usize, secs: u64) -> Result<f64> {
    let addr = SocketAddr::from((Ipv4Addr::from(dst), PORT));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let c2 = c2.to_owned();
    let limit = Duration::from_secs(secs + 10);
    let server = std::thread::Builder::new()
        .name("bench-tcp-sink".into())
        .spawn(move || -> Result<(u64, Duration)> {
            let setup = sys::enter_netns(&c2)
                .and_then(|()| sys::pin(core))
                .and_then(|()| {
                    let l = TcpListener::bind(addr)
                        .map_err(|e| BenchError::io(format!("TCP sink {addr}"), "bind", e))?;
                    l.set_nonblocking(true).map_err(|e| {
                        BenchError::io(format!("TCP sink {addr}"), "set nonblocking", e)
                    })?;
                    Ok(l)
                });
            let listener = match setup {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(BenchError::Timeout {
                        what: "TCP sink setup".into(),
                        secs: 0,
                    }));
                    return Err(e);
                }
            };
            let end = Instant::now() + limit;
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() >= end {
                            return Err(BenchError::Timeout {
                                what: "TCP sink accept".into(),
                                secs: limit.as_secs(),
                            });
                        }
                        sys::sleep(Duration::from_millis(10))?;
                    }
                    Err(e) => return Err(BenchError::io(format!("TCP sink {addr}"), "accept", e)),
                }
            };
            conn.set_nonblocking(false)
                .and_then(|()| conn.set_read_timeout(Some(Duration::from_millis(200))))
                .map_err(|e| BenchError::io(format!("TCP sink {addr}"), "configure", e))?;
            let mut buf = vec![0u8; CHUNK];
            let mut bytes = 0u64;
            let mut first: Option<Instant> = None;
            loop {
                match conn.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        first.get_or_insert_with(Instant::now);
                        bytes += n as u64;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(BenchError::io(format!("TCP sink {addr}"), "read", e)),
                }
                if Instant::now() >= end {
                    break;
                }
                sys::check_interrupt()?;
            }
            Ok((bytes, first.map(|f| f.elapsed()).unwrap_or_default()))
        })
        .map_err(|e| BenchError::io("thread bench-tcp-sink", "spawn", e))?;
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or(Err(BenchError::Timeout {
            what: "TCP sink start".into(),
            secs: 10,
        }));
    if ready.is_err() {
        // The sink's own error says why; the channel only signals it.
        return match server.join() {
            Ok(Err(e)) => Err(e),
            _ => ready.map(|()| 0.0),
        };
    }
    let sent = send(c1, addr, core, secs);
    let received = server.join().map_err(|_| {
        BenchError::io(
            "thread bench-tcp-sink",
            "join",
            std::io::Error::other("panicked"),
        )
    })?;
    sent?;
    let (bytes, dur) = received?;
    if dur.is_zero() {
        return Err(BenchError::Parse {
            what: "TCP sink".into(),
            reason: "no bytes received".into(),
        });
    }
    Ok(bytes as f64 * 8.0 / dur.as_secs_f64() / 1e9)
}

fn send(c1: &str, addr: SocketAddr, core: usize, secs: u64) -> Result<()> {
    let c1 = c1.to_owned();
    std::thread::Builder::new()
        .name("bench-tcp-send".into())
        .spawn(move || -> Result<()> {
            sys::enter_netns(&c1)?;
            sys::pin(core)?;
            let what = format!("TCP sender to {addr}");
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                .map_err(|e| BenchError::io(what.clone(), "connect", e))?;
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .map_err(|e| BenchError::io(what.clone(), "configure", e))?;
            let buf = vec![0x5au8; CHUNK];
            let end = Instant::now() + Duration::from_secs(secs);
            while Instant::now() < end && !sys::interrupted() {
                match s.write(&buf) {
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(BenchError::io(what, "write", e)),
                }
            }
            let _ = s.shutdown(std::net::Shutdown::Write);
            Ok(())
        })
        .map_err(|e| BenchError::io("thread bench-tcp-send", "spawn", e))?
        .join()
        .map_err(|_| {
            BenchError::io(
                "thread bench-tcp-send",
                "join",
                std::io::Error::other("panicked"),
            )
        })?
}
