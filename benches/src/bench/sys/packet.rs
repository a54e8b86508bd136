//! AF_PACKET mmap rings (packet(7), Documentation/networking/packet_mmap.rst):
//! a TPACKET_V2 transmit ring with PACKET_QDISC_BYPASS for the generator
//! (many frames per `send()`, no qdisc), and a TPACKET_V3 block receive ring
//! for the sink (the kernel fills whole blocks; user space only walks
//! headers, so the sink costs little of the load core).
//!
//! The generator's socket has PACKET_VNET_HDR, and every frame carries a
//! virtio_net_hdr whose `hdr_len` covers the whole frame: the kernel then
//! copies the frame into the skb's linear head. Without it `tpacket_snd`
//! attaches the ring page as a zero-copy fragment, and the first device
//! that must orphan it (veth forwarding, tun queueing) allocates a page and
//! copies it per frame: that cost the generator about half its rate.
//!
//! Layouts follow `<linux/if_packet.h>`; the constants are restated here
//! because the `libc` crate does not export all of them on every version.

use crate::bench::error::{BenchError, Result};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_TX_RING: libc::c_int = 13;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_VNET_HDR: libc::c_int = 15;
/// sizeof(struct virtio_net_hdr): flags, gso_type, hdr_len, gso_size,
/// csum_start, csum_offset.
const VNET_HDR_LEN: usize = 10;
const TPACKET_V2: libc::c_int = 1;
const TPACKET_V3: libc::c_int = 2;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_SENDING: u32 = 2;
const TP_STATUS_WRONG_FORMAT: u32 = 4;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
/// TPACKET2_HDRLEN − sizeof(sockaddr_ll): where tx frame data starts when
/// PACKET_TX_HAS_OFF is not set (kernel `tpacket_fill_skb`).
const TX_DATA_OFFSET: usize = 32;
const ETH_P_IP: u16 = 0x0800;

#[repr(C)]
struct TpacketReq {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
}

#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

/// A shared mapping of a socket's ring, unmapped on drop.
struct Ring {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; access
// to it is synchronised with the kernel through the status words (atomics)
// and the owning ring type is used by one thread at a time (&mut self).
unsafe impl Send for Ring {}

impl Ring {
    fn map(fd: &OwnedFd, len: usize, what: &str) -> Result<Ring> {
        // SAFETY: mapping a packet socket's ring: fd is live, len is the
        // ring size configured just before, and the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(BenchError::io(what, "mmap", io::Error::last_os_error()));
        }
        let ptr = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| BenchError::io(what, "mmap", io::Error::other("null mapping")))?;
        Ok(Ring { ptr, len })
    }

    /// The status word at `off` (4-byte aligned, inside the mapping).
    fn status(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off + 4 <= self.len);
        // SAFETY: `off` is a 4-aligned offset inside the live mapping (all
        // callers pass block/frame starts plus header field offsets); the
        // kernel writes this word concurrently, hence the atomic view.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    fn read_u32(&self, off: usize) -> u32 {
        if off + 4 > self.len {
            return 0;
        }
        // SAFETY: bounds checked above; unaligned read of plain memory.
        unsafe { self.ptr.as_ptr().add(off).cast::<u32>().read_unaligned() }
    }

    fn read_u16(&self, off: usize) -> u16 {
        if off + 2 > self.len {
            return 0;
        }
        // SAFETY: bounds checked above; unaligned read of plain memory.
        unsafe { self.ptr.as_ptr().add(off).cast::<u16>().read_unaligned() }
    }

    fn write_u32(&mut self, off: usize, v: u32) {
        if off + 4 > self.len {
            return;
        }
        // SAFETY: bounds checked above; the frame is owned by user space
        // (status AVAILABLE) while this is written.
        unsafe { self.ptr.as_ptr().add(off).cast::<u32>().write_unaligned(v) }
    }

    fn slice(&self, off: usize, len: usize) -> &[u8] {
        let end = off.saturating_add(len).min(self.len);
        let off = off.min(end);
        // SAFETY: [off, end) lies inside the live mapping; the block is
        // owned by user space (status USER) while the slice is alive.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(off), end - off) }
    }

    fn slice_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        let end = off.saturating_add(len).min(self.len);
        let off = off.min(end);
        // SAFETY: [off, end) lies inside the live mapping; the frame is
        // owned by user space (status AVAILABLE) and &mut self is unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(off), end - off) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region mapped in `Ring::map`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn packet_socket(what: &str) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); protocol 0 so nothing is received before
    // the socket is bound.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(BenchError::io(
            what,
            "socket(AF_PACKET)",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
    what: &str,
    op: &'static str,
) -> Result<()> {
    // SAFETY: `v` points to a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(BenchError::io(what, op, io::Error::last_os_error()));
    }
    Ok(())
}

fn bind(fd: &OwnedFd, ifname: &str, proto: u16, what: &str) -> Result<()> {
    let idx = nix::net::if_::if_nametoindex(ifname)
        .map_err(|e| BenchError::io(what, "if_nametoindex", e.into()))?;
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto.to_be();
    sa.sll_ifindex = idx as i32;
    // SAFETY: `sa` is a live sockaddr_ll of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(BenchError::io(what, "bind", io::Error::last_os_error()));
    }
    Ok(())
}

/// A TPACKET_V2 transmit ring on one interface of the calling thread's
/// network namespace.
pub struct TxRing {
    fd: OwnedFd,
    ring: Ring,
    frame_size: usize,
    frames: usize,
    next: usize,
    in_flight: Vec<bool>,
    /// Frames the kernel took (reclaimed slots).
    pub sent: u64,
    /// Frames the kernel refused as malformed.
    pub rejected: u64,
}

impl TxRing {
    /// Opens a ring of `frames` slots of 2 KiB (frames up to 2006 bytes) on
    /// `ifname`, bypassing the qdisc layer.
    pub fn open(ifname: &str, frames: usize) -> Result<TxRing> {
        let what = format!("generator on \"{ifname}\"");
        let fd = packet_socket(&what)?;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_VERSION,
            &TPACKET_V2,
            &what,
            "PACKET_VERSION",
        )?;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            &1i32,
            &what,
            "PACKET_QDISC_BYPASS",
        )?;
        // Before the ring (EBUSY after): see the module comment.
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_VNET_HDR,
            &1i32,
            &what,
            "PACKET_VNET_HDR",
        )?;
        // Enough socket buffer for a full ring in flight; best effort.
        let _ = setsockopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            &(8i32 << 20),
            &what,
            "SO_SNDBUFFORCE",
        );
        let frame_size = 2048usize;
        let per_block = 8usize;
        let blocks = frames.div_ceil(per_block).max(1);
        let frames = blocks * per_block;
        let req = TpacketReq {
            block_size: (frame_size * per_block) as u32,
            block_nr: blocks as u32,
            frame_size: frame_size as u32,
            frame_nr: frames as u32,
        };
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_TX_RING,
            &req,
            &what,
            "PACKET_TX_RING",
        )?;
        let ring = Ring::map(&fd, frame_size * frames, &what)?;
        bind(&fd, ifname, 0, &what)?;
        Ok(TxRing {
            fd,
            ring,
            frame_size,
            frames,
            next: 0,
            in_flight: vec![false; frames],
            sent: 0,
            rejected: 0,
        })
    }

    fn reclaim(&mut self, slot: usize) -> bool {
        let st = self
            .ring
            .status(slot * self.frame_size)
            .load(Ordering::Acquire);
        if st & (TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING) != 0 {
            return false;
        }
        if self.in_flight[slot] {
            self.in_flight[slot] = false;
            if st & TP_STATUS_WRONG_FORMAT != 0 {
                self.rejected += 1;
                self.ring
                    .status(slot * self.frame_size)
                    .store(TP_STATUS_AVAILABLE, Ordering::Release);
            } else {
                self.sent += 1;
            }
        }
        true
    }

    /// Fills the next free slot with `write` (which returns the frame
    /// length) and queues it. False when the ring is full.
    #[inline]
    pub fn push(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> bool {
        let slot = self.next;
        if !self.reclaim(slot) {
            return false;
        }
        let base = slot * self.frame_size;
        let data = base + TX_DATA_OFFSET + VNET_HDR_LEN;
        let len = write(self.ring.slice_mut(data, self.frame_size - (data - base)));
        if len == 0 || len > usize::from(u16::MAX) {
            return false;
        }
        // No offloads; hdr_len = the whole frame, copied linearly.
        let vnet = self.ring.slice_mut(base + TX_DATA_OFFSET, VNET_HDR_LEN);
        vnet.fill(0);
        vnet[2..4].copy_from_slice(&(len as u16).to_ne_bytes());
        // tp_len is the second u32 of tpacket2_hdr; it counts the vnet header.
        self.ring.write_u32(base + 4, (VNET_HDR_LEN + len) as u32);
        self.ring
            .status(base)
            .store(TP_STATUS_SEND_REQUEST, Ordering::Release);
        self.in_flight[slot] = true;
        self.next = (slot + 1) % self.frames;
        true
    }

    /// Asks the kernel to send every queued frame without waiting. Back
    /// pressure (ENOBUFS, EAGAIN) is not an error: the frames stay queued.
    pub fn kick(&mut self) -> io::Result<()> {
        // SAFETY: send(2) with no buffer on a TX-ring socket transmits the
        // frames marked SEND_REQUEST.
        let rc =
            unsafe { libc::send(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(()),
                _ => Err(e),
            };
        }
        Ok(())
    }

    /// Frames queued but not yet taken by the kernel.
    pub fn pending(&mut self) -> usize {
        for s in 0..self.frames {
            self.reclaim(s);
        }
        self.in_flight.iter().filter(|f| **f).count()
    }
}

/// A TPACKET_V3 receive ring bound to IPv4 frames of one interface of the
/// calling thread's network namespace.
pub struct RxRing {
    fd: OwnedFd,
    ring: Ring,
    block_size: usize,
    blocks: usize,
    next: usize,
}

impl RxRing {
    /// Opens a ring of `blocks` blocks of `block_size` bytes; a block is
    /// handed to user space when full or after `retire_ms`.
    pub fn open(ifname: &str, block_size: usize, blocks: usize, retire_ms: u32) -> Result<RxRing> {
        let what = format!("sink on \"{ifname}\"");
        let fd = packet_socket(&what)?;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_VERSION,
            &TPACKET_V3,
            &what,
            "PACKET_VERSION",
        )?;
        let frame_size = 2048usize;
        let req = TpacketReq3 {
            block_size: block_size as u32,
            block_nr: blocks as u32,
            frame_size: frame_size as u32,
            frame_nr: (block_size / frame_size * blocks) as u32,
            retire_blk_tov: retire_ms,
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            PACKET_RX_RING,
            &req,
            &what,
            "PACKET_RX_RING",
        )?;
        let ring = Ring::map(&fd, block_size * blocks, &what)?;
        bind(&fd, ifname, ETH_P_IP, &what)?;
        Ok(RxRing {
            fd,
            ring,
            block_size,
            blocks,
            next: 0,
        })
    }

    /// Hands every frame of the next ready block to `f` (frame bytes and
    /// kernel receive time in ns) and returns the block to the kernel.
    /// Waits up to `timeout_ms` for a block; returns the frames seen.
    pub fn poll(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8], u64)) -> usize {
        let base = self.next * self.block_size;
        // tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1
        // { block_status @8, num_pkts @12, offset_to_first_pkt @16 }.
        if self.ring.status(base + 8).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one live pollfd.
            unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            return 0;
        }
        let n = self.ring.read_u32(base + 12) as usize;
        let mut pkt = base + self.ring.read_u32(base + 16) as usize;
        let end = base + self.block_size;
        let mut seen = 0;
        for _ in 0..n {
            // tpacket3_hdr: next_offset @0, sec @4, nsec @8, snaplen @12,
            // len @16, status @20, mac @24.
            if pkt + 26 > end {
                break;
            }
            let next = self.ring.read_u32(pkt) as usize;
            let ts = u64::from(self.ring.read_u32(pkt + 4)) * 1_000_000_000
                + u64::from(self.ring.read_u32(pkt + 8));
            let snap = self.ring.read_u32(pkt + 12) as usize;
            let mac = usize::from(self.ring.read_u16(pkt + 24));
            if pkt + mac + snap <= end {
                f(self.ring.slice(pkt + mac, snap), ts);
                seen += 1;
            }
            if next == 0 {
                break;
            }
            pkt += next;
        }
        self.ring
            .status(base + 8)
            .store(TP_STATUS_KERNEL, Ordering::Release);
        self.next = (self.next + 1) % self.blocks;
        seen
    }

    /// Frames the kernel dropped because the ring was full (since the last
    /// call; reading resets the kernel's counters).
    pub fn drops(&self) -> u64 {
        let mut st = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: `st` is a live tpacket_stats_v3 and `len` its size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return 0;
        }
        u64::from(st.drops)
    }
}
