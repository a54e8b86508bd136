//! Waiting for descriptors to become readable (`poll(2)`), for threads that
//! sleep on port fds when idle instead of spinning.

use std::io;
use std::os::fd::RawFd;

/// Most descriptors one call waits on (a fixed array: no allocation).
pub const MAX_POLL_FDS: usize = 64;

/// Waits up to `timeout_ms` (negative: forever) until one of `fds` is
/// readable or reports an error/hang-up. Returns how many are ready (0 on
/// timeout). At most [`MAX_POLL_FDS`] descriptors are watched; extra ones
/// are ignored.
pub fn wait_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<usize> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_POLL_FDS];
    let n = fds.len().min(MAX_POLL_FDS);
    for (p, &fd) in pfds.iter_mut().zip(&fds[..n]) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    loop {
        // SAFETY: `pfds` holds `n` initialised entries and outlives the call.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn times_out_when_nothing_is_readable_and_wakes_on_data() {
        let (mut a, b) = UnixStream::pair().unwrap();
        assert_eq!(wait_readable(&[b.as_raw_fd()], 0).unwrap(), 0);
        a.write_all(b"x").unwrap();
        assert_eq!(wait_readable(&[b.as_raw_fd()], 1000).unwrap(), 1);
    }
}
