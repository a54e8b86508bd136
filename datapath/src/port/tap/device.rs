//! One queue of a Linux TAP device: an fd on `/dev/net/tun` bound to an
//! interface with `TUNSETIFF`, and the device ioctls of
//! include/uapi/linux/if_tun.h (Documentation/networking/tuntap.rst).
//!
//! Device-wide settings (vnet header size, offloads, persistence) are set
//! through any queue's fd; the kernel applies them to the device.

use crate::port::OffloadCaps;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const TUN_PATH: &CStr = c"/dev/net/tun";

/// `TUNSETOFFLOAD` sets to try, best first; the kernel refuses unknown
/// bits (and TSO/USO without CSUM) with EINVAL, so older kernels fall
/// through to a smaller set.
const OFFLOAD_PROBES: [(libc::c_uint, OffloadCaps); 3] = [
    (
        libc::TUN_F_CSUM
            | libc::TUN_F_TSO4
            | libc::TUN_F_TSO6
            | libc::TUN_F_TSO_ECN
            | libc::TUN_F_USO4
            | libc::TUN_F_USO6,
        OffloadCaps {
            partial_csum: true,
            tso: true,
            uso: true,
        },
    ),
    (
        libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN,
        OffloadCaps {
            partial_csum: true,
            tso: true,
            uso: false,
        },
    ),
    (
        libc::TUN_F_CSUM,
        OffloadCaps {
            partial_csum: true,
            tso: false,
            uso: false,
        },
    ),
];

/// The `TUNSETIFF` flags for a TAP queue.
pub fn tun_flags(vnet_hdr: bool, multi_queue: bool) -> libc::c_short {
    let mut f = libc::IFF_TAP | libc::IFF_NO_PI;
    if vnet_hdr {
        f |= libc::IFF_VNET_HDR;
    }
    if multi_queue {
        f |= libc::IFF_MULTI_QUEUE;
    }
    f as libc::c_short
}

/// One open queue; closing it detaches the queue (and deletes the device
/// when it was the last one and the device is not persistent).
#[derive(Debug)]
pub struct TunQueue {
    fd: OwnedFd,
}

fn name_to_ifr(name: &str, ifr: &mut libc::ifreq) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(())
}

impl TunQueue {
    /// Wraps a descriptor with TAP read/write semantics (one frame per
    /// call), e.g. one end of a `SOCK_SEQPACKET` pair in unit tests.
    #[cfg(test)]
    pub fn from_fd(fd: OwnedFd) -> TunQueue {
        TunQueue { fd }
    }

    /// Opens `/dev/net/tun` (non-blocking) and attaches it to interface
    /// `name` with `flags`, creating the device when none has that name
    /// in the calling thread's namespace.
    pub fn open(name: &str, flags: libc::c_short) -> Result<TunQueue, (&'static str, io::Error)> {
        // SAFETY: zeroed ifreq is a valid (empty) request.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        name_to_ifr(name, &mut ifr).map_err(|e| ("interface name", e))?;
        ifr.ifr_ifru.ifru_flags = flags;
        // SAFETY: the path is a valid NUL-terminated string.
        let raw = unsafe {
            libc::open(
                TUN_PATH.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(("open /dev/net/tun", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a freshly opened descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which lives for
        // the duration of the call.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
        if rc < 0 {
            return Err(("TUNSETIFF", io::Error::last_os_error()));
        }
        Ok(TunQueue { fd })
    }

    fn ioctl_int(&self, req: libc::Ioctl, v: &libc::c_int) -> io::Result<()> {
        // SAFETY: the TUNSET* requests used here read one int through the
        // pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), req, v as *const libc::c_int) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `TUNSETVNETHDRSZ`.
    pub fn set_vnet_hdr_len(&self, len: usize) -> io::Result<()> {
        self.ioctl_int(libc::TUNSETVNETHDRSZ, &(len as libc::c_int))
    }

    /// `TUNSETPERSIST`.
    pub fn set_persist(&self, on: bool) -> io::Result<()> {
        // TUNSETPERSIST takes its argument by value, not by pointer.
        // SAFETY: no memory is passed; the fd is a TAP queue.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETPERSIST,
                libc::c_ulong::from(on),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn set_offload(&self, bits: libc::c_uint) -> io::Result<()> {
        // TUNSETOFFLOAD also takes its argument by value.
        // SAFETY: no memory is passed; the fd is a TAP queue.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(bits),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Turns on the best offload set the kernel accepts and says which.
    /// Errors other than EINVAL (unknown bits) end the probe.
    pub fn probe_offloads(&self) -> io::Result<OffloadCaps> {
        for (bits, caps) in OFFLOAD_PROBES {
            match self.set_offload(bits) {
                Ok(()) => return Ok(caps),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue,
                Err(e) => return Err(e),
            }
        }
        self.set_offload(0)?;
        Ok(OffloadCaps::default())
    }

    /// One frame (with its vnet header when enabled) into `buf`.
    #[inline]
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// One frame (with its vnet header when enabled) from `buf`.
    #[inline]
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// One frame from a header and a body (when the header does not fit
    /// in front of the frame).
    pub fn write2(&self, hdr: &[u8], body: &[u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_ptr() as *mut libc::c_void,
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: body.as_ptr() as *mut libc::c_void,
                iov_len: body.len(),
            },
        ];
        // SAFETY: both iovecs point at live slices; writev only reads them.
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The raw descriptor (for poll/epoll).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Fills `out` with random bytes from the kernel; falls back to a hash of
/// time, pid and a counter if `getrandom` is unavailable.
pub fn random_bytes(out: &mut [u8]) {
    // SAFETY: `out` is valid for writes of its length.
    let n = unsafe { libc::getrandom(out.as_mut_ptr().cast(), out.len(), 0) };
    if n == out.len() as isize {
        return;
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    let v = h.finish().to_ne_bytes();
    for (o, b) in out.iter_mut().zip(v.iter().cycle()) {
        *o = *b;
    }
}

/// A random unicast, locally administered MAC (IEEE 802 §8.2: I/G bit
/// clear, U/L bit set), as `ip link` would give a new TAP.
pub fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    random_bytes(&mut m);
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_mac_is_unicast_and_locally_administered() {
        for _ in 0..64 {
            let m = random_mac();
            assert_eq!(m[0] & 0x01, 0, "{m:x?}");
            assert_eq!(m[0] & 0x02, 0x02, "{m:x?}");
        }
        assert_ne!(random_mac(), random_mac());
    }

    #[test]
    fn tap_flags_match_if_tun_h() {
        assert_eq!(tun_flags(false, false) as i32, 0x1002);
        assert_eq!(tun_flags(true, false) as i32, 0x5002);
        assert_eq!(tun_flags(true, true) as i32, 0x5102);
    }

    #[test]
    fn offload_probe_starts_with_the_full_set_and_always_keeps_csum() {
        assert_eq!(OFFLOAD_PROBES[0].0, 0x6f);
        assert!(OFFLOAD_PROBES
            .iter()
            .all(|(b, _)| b & libc::TUN_F_CSUM != 0));
    }

    #[test]
    fn interface_names_must_fit_ifnamsiz() {
        // SAFETY: zeroed ifreq is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        assert!(name_to_ifr("0123456789abcde", &mut ifr).is_ok());
        assert!(name_to_ifr("0123456789abcdef", &mut ifr).is_err());
        assert!(name_to_ifr("", &mut ifr).is_err());
    }
}
