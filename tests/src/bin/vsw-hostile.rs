//! Hostile-frame generator and counter for `tests/hostile_frames.rs`, run
//! inside test namespaces. The frames are `tests::hostile::frames`, sent
//! raw through an AF_PACKET socket (tags, bad lengths and all) so they
//! reach the switch's port exactly as built. Every wait is bounded.
//!
//! ```text
//! vsw-hostile send DEV SRC_MAC DST_MAC ROUNDS GAP_US   # "sent N failed M"
//! vsw-hostile count DEV SRC_MAC IDLE_MS LIMIT_S        # "count N"
//! vsw-hostile list                                     # one line per frame
//! ```
//!
//! `send` paces the frames (GAP_US between two) so that no kernel queue
//! on the way drops one: the test computes exact expected counters from
//! what was sent. `count` counts the frames arriving at DEV from SRC_MAC
//! until IDLE_MS pass without one (or LIMIT_S in all).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tests::hostile::{frames, MAX_FRAME};

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad MAC {s}"))?;
    parts.try_into().map_err(|_| format!("bad MAC {s}"))
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}"))?
        .parse()
        .map_err(|_| format!("bad {what}"))
}

/// A packet socket bound to `dev`; `protocol` 0 sends only, ETH_P_ALL
/// also receives everything.
fn packet_socket(dev: &str, protocol: u16) -> Result<(OwnedFd, libc::sockaddr_ll), String> {
    let name = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
    // SAFETY: NUL-terminated name, live for the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!("no device {dev}"));
    }
    let proto = i32::from(protocol.to_be());
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto) };
    if raw < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero sockaddr_ll is valid; fields are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is live and its size is passed exactly.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &sll as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(format!(
            "bind to {dev}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok((fd, sll))
}

fn send(dev: &str, src: [u8; 6], dst: [u8; 6], rounds: u32, gap: Duration) -> Result<(), String> {
    let (fd, mut sll) = packet_socket(dev, 0)?;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst);
    let set = frames(src, dst, MAX_FRAME);
    let (mut sent, mut failed) = (0u64, 0u64);
    for _ in 0..rounds.min(100) {
        for f in &set {
            // SAFETY: the frame and sll are live for the call, sizes exact.
            let rc = unsafe {
                libc::sendto(
                    fd.as_raw_fd(),
                    f.bytes.as_ptr() as *const libc::c_void,
                    f.bytes.len(),
                    0,
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc == f.bytes.len() as isize {
                sent += 1;
            } else {
                failed += 1;
                eprintln!("{}: sendto: {}", f.name, std::io::Error::last_os_error());
            }
            std::thread::sleep(gap);
        }
    }
    println!("sent {sent} failed {failed}");
    Ok(())
}

fn count(dev: &str, src: [u8; 6], idle: Duration, limit: Duration) -> Result<(), String> {
    let (fd, _) = packet_socket(dev, libc::ETH_P_ALL as u16)?;
    let size: libc::c_int = 8 << 20;
    // SAFETY: setsockopt reads one c_int from a live local. Failure only
    // means a smaller buffer, which the paced sender tolerates.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let start = Instant::now();
    let mut last = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    while start.elapsed() < limit && (n == 0 || last.elapsed() < idle) {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, 50) };
        if r <= 0 {
            continue;
        }
        // SAFETY: an all-zero sockaddr_ll is valid output space.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: buf and from are live and their lengths passed exactly.
        let len = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                libc::MSG_DONTWAIT,
                &mut from as *mut _ as *mut libc::sockaddr,
                &mut from_len,
            )
        };
        if len < 12 || from.sll_pkttype == libc::PACKET_OUTGOING {
            continue;
        }
        if buf[6..12] == src {
            n += 1;
            last = Instant::now();
        }
    }
    println!("count {n}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let res = (|| -> Result<(), String> {
        match args.get(1).map(String::as_str) {
            Some("send") => send(
                args.get(2).ok_or("missing DEV")?,
                parse_mac(args.get(3).ok_or("missing SRC_MAC")?)?,
                parse_mac(args.get(4).ok_or("missing DST_MAC")?)?,
                arg(&args, 5, "ROUNDS")?,
                Duration::from_micros(arg(&args, 6, "GAP_US")?),
            ),
            Some("count") => count(
                args.get(2).ok_or("missing DEV")?,
                parse_mac(args.get(3).ok_or("missing SRC_MAC")?)?,
                Duration::from_millis(arg(&args, 4, "IDLE_MS")?),
                Duration::from_secs(arg::<u64>(&args, 5, "LIMIT_S")?.min(300)),
            ),
            Some("list") => {
                for f in frames([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], MAX_FRAME) {
                    println!("{:5} {:?} {}", f.bytes.len(), f.verdict, f.name);
                }
                Ok(())
            }
            _ => Err("usage: see the module doc".into()),
        }
    })();
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vsw-hostile: {e}");
            ExitCode::FAILURE
        }
    }
}
