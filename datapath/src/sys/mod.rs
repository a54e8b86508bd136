//! Thin, safe wrappers over the Linux interfaces the ports need: rtnetlink
//! (links and addresses), network namespaces, fd readiness, the bpf(2)
//! syscall (XSKMAP, XDP program, bpf_link) and the ethtool ioctl.
//!
//! This is the only place besides the port backends where `unsafe` lives;
//! everything above it works with owned, RAII types.

pub mod bpf;
pub mod ethtool;
pub mod netlink;
pub mod netns;
pub mod poll;

/// The pending error of socket `fd` (`SO_ERROR`), cleared by reading it;
/// None when there is none or the call fails.
pub fn take_socket_error(fd: std::os::fd::BorrowedFd<'_>) -> Option<i32> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a writable c_int of `len` bytes and `fd` is open for
    // the duration of the call (it is borrowed).
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut v as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0 && v != 0).then_some(v)
}
