//! One AF_XDP socket (XSK) bound to one (ifindex, queue), with its own UMEM
//! and four rings (Documentation/networking/af_xdp.rst).
//!
//! UMEM: [`NUM_FRAMES`] chunks of [`FRAME_SIZE`] bytes. The first half is
//! lent to the kernel through the fill ring for receive, the second half is
//! a free list for transmit, returned through the completion ring. This
//! process copies each frame once per direction — UMEM to pool packet on
//! receive, pool packet to UMEM on transmit (veth is copy mode anyway, see
//! KERNEL-NOTES.md) — so rx chunks go back on the fill ring in the same
//! burst that received them, and the switch's packets never pin UMEM.
//!
//! Receive and transmit state live behind separate mutexes: one PMD polls
//! the rx side, tx may come from any PMD, and each takes its lock once per
//! burst.

use super::csum;
use super::ring::{ConsumerRing, Mmap, ProducerRing, RingLayout};
use crate::packet::{Batch, GsoType, Packet, PacketPool, SizeClass};
use crate::port::PortCounters;
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Chunks per UMEM.
pub const NUM_FRAMES: u32 = 4096;
/// Bytes per chunk (aligned mode: a page).
pub const FRAME_SIZE: u32 = 4096;
/// Entries of each of the four rings.
const RING_SIZE: u32 = 2048;
/// Chunks used for receive (the rest are for transmit).
const RX_FRAMES: u32 = NUM_FRAMES / 2;
/// Descriptors looked at per rx burst (multi-buffer frames take several).
const RX_PEEK: u32 = 64;
/// Kicks per tx burst when the kernel returns EAGAIN (copy mode sends at
/// most 32 frames per sendto).
const TX_KICKS: usize = 4;
/// Empty rx polls between checks of the socket's pending error (device
/// gone): a syscall every this many idle polls, never per packet.
pub(crate) const IDLE_POLLS_PER_CHECK: u32 = 1024;

/// Bind attempts (10 ms apart) while the queue is still held by a socket
/// that was just closed.
const BIND_BUSY_RETRIES: u32 = 200;

/// How a socket was bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// XDP_ZEROCOPY: the driver DMAs straight into UMEM.
    ZeroCopy,
    /// XDP_COPY: the kernel copies between skb/xdp_buff and UMEM.
    Copy,
}

/// Failure of one socket setup step: the step's name and the OS error.
#[derive(Debug)]
pub(crate) struct XskSetupError {
    pub op: &'static str,
    pub source: io::Error,
}

fn err(op: &'static str) -> impl FnOnce(io::Error) -> XskSetupError {
    move |source| XskSetupError { op, source }
}

fn last(op: &'static str) -> XskSetupError {
    XskSetupError {
        op,
        source: io::Error::last_os_error(),
    }
}

fn setsockopt<T>(
    fd: RawFd,
    opt: libc::c_int,
    val: &T,
    op: &'static str,
) -> Result<(), XskSetupError> {
    // SAFETY: `val` is a live value of the type the option expects, with
    // its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last(op));
    }
    Ok(())
}

fn layout(o: &libc::xdp_ring_offset) -> RingLayout {
    RingLayout {
        producer: o.producer as usize,
        consumer: o.consumer as usize,
        flags: o.flags as usize,
        desc: o.desc as usize,
    }
}

struct RxSide {
    fill: ProducerRing<u64>,
    rx: ConsumerRing<libc::xdp_desc>,
    /// Chunks taken off the rx ring, waiting to go back on the fill ring.
    recycle: Vec<u64>,
    /// A multi-buffer frame whose last fragment has not arrived yet.
    partial: Option<Packet>,
    /// The current multi-buffer frame is being dropped.
    dropping: bool,
    idle_polls: u32,
}

struct TxSide {
    tx: ProducerRing<libc::xdp_desc>,
    comp: ConsumerRing<u64>,
    /// Free transmit chunks.
    free: Vec<u64>,
}

/// What one rx burst did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RxResult {
    pub packets: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub csum_fixed: u64,
    /// The idle counter reached its period: the caller should check for a
    /// vanished device.
    pub check_device: bool,
}

/// One bound AF_XDP socket with its UMEM.
pub(crate) struct Xsk {
    // Field order is drop order: rings and their mappings before the UMEM
    // and the socket.
    rx: Mutex<RxSide>,
    tx: Mutex<TxSide>,
    umem: Mmap,
    fd: OwnedFd,
    bind_mode: BindMode,
    multi_buffer: bool,
    queue: u32,
}

impl std::fmt::Debug for Xsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xsk")
            .field("fd", &self.fd.as_raw_fd())
            .field("queue", &self.queue)
            .field("bind_mode", &self.bind_mode)
            .finish()
    }
}

impl Xsk {
    /// Creates a socket with UMEM and rings and binds it to
    /// (`ifindex`, `queue`). `try_zero_copy` attempts XDP_ZEROCOPY first and
    /// falls back to XDP_COPY on EOPNOTSUPP; `multi_buffer` sets XDP_USE_SG.
    pub(crate) fn new(
        ifindex: u32,
        queue: u32,
        try_zero_copy: bool,
        multi_buffer: bool,
    ) -> Result<Xsk, XskSetupError> {
        // SAFETY: socket(2) with constant arguments; checked below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last("socket(AF_XDP)"));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mmap::anonymous((NUM_FRAMES * FRAME_SIZE) as usize).map_err(err("mmap UMEM"))?;
        let reg = libc::xdp_umem_reg {
            addr: umem.as_ptr() as u64,
            len: umem.len() as u64,
            chunk_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(raw, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG")?;
        for (opt, name) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            setsockopt(raw, opt, &RING_SIZE, name)?;
        }
        // SAFETY: all-zero is a valid xdp_mmap_offsets (plain integers).
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` is writable for `optlen` bytes.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                &mut off as *mut _ as *mut libc::c_void,
                &mut optlen,
            )
        };
        if rc != 0 {
            return Err(last("getsockopt(XDP_MMAP_OFFSETS)"));
        }
        let desc_sz = std::mem::size_of::<libc::xdp_desc>();
        let map = |o: &libc::xdp_ring_offset, entry: usize, pgoff: u64, op: &'static str| {
            Mmap::map_fd(raw, o.desc as usize + RING_SIZE as usize * entry, pgoff).map_err(err(op))
        };
        let fill_map = map(&off.fr, 8, libc::XDP_UMEM_PGOFF_FILL_RING, "mmap fill ring")?;
        let comp_map = map(
            &off.cr,
            8,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            "mmap completion ring",
        )?;
        let rx_map = map(
            &off.rx,
            desc_sz,
            libc::XDP_PGOFF_RX_RING as u64,
            "mmap rx ring",
        )?;
        let tx_map = map(
            &off.tx,
            desc_sz,
            libc::XDP_PGOFF_TX_RING as u64,
            "mmap tx ring",
        )?;
        // SAFETY: each mapping was sized from the kernel's offsets for
        // RING_SIZE (a power of two) entries of the ring's entry type.
        let (mut fill, comp, rx, tx) = unsafe {
            (
                ProducerRing::<u64>::new(fill_map, layout(&off.fr), RING_SIZE),
                ConsumerRing::<u64>::new(comp_map, layout(&off.cr), RING_SIZE),
                ConsumerRing::<libc::xdp_desc>::new(rx_map, layout(&off.rx), RING_SIZE),
                ProducerRing::<libc::xdp_desc>::new(tx_map, layout(&off.tx), RING_SIZE),
            )
        };
        // Lend every rx chunk to the kernel before binding.
        let n = fill.reserve(RX_FRAMES);
        for i in 0..n {
            fill.write(i, u64::from(i * FRAME_SIZE));
        }
        fill.submit(n);
        let free = (RX_FRAMES..NUM_FRAMES)
            .map(|i| u64::from(i * FRAME_SIZE))
            .collect();

        let sg = if multi_buffer { libc::XDP_USE_SG } else { 0 };
        let bind = |flags: u16| -> io::Result<()> {
            let sa = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags | libc::XDP_USE_NEED_WAKEUP | sg,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            // A socket closed just before (a port dropped and re-added)
            // releases its queue from a kernel work item: EBUSY until that
            // has run, so retry for a bounded while.
            for _ in 0..BIND_BUSY_RETRIES {
                // SAFETY: `sa` is a valid sockaddr_xdp of the given size.
                let rc = unsafe {
                    libc::bind(
                        raw,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                    )
                };
                if rc == 0 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EBUSY) {
                    return Err(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(io::Error::from_raw_os_error(libc::EBUSY))
        };
        let bind_mode = if try_zero_copy {
            match bind(libc::XDP_ZEROCOPY) {
                Ok(()) => BindMode::ZeroCopy,
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    bind(libc::XDP_COPY).map_err(err("bind(XDP_COPY)"))?;
                    BindMode::Copy
                }
                Err(e) => return Err(err("bind(XDP_ZEROCOPY)")(e)),
            }
        } else {
            bind(libc::XDP_COPY).map_err(err("bind(XDP_COPY)"))?;
            BindMode::Copy
        };
        Ok(Xsk {
            rx: Mutex::new(RxSide {
                fill,
                rx,
                recycle: Vec::with_capacity(RX_FRAMES as usize),
                partial: None,
                dropping: false,
                idle_polls: 0,
            }),
            tx: Mutex::new(TxSide { tx, comp, free }),
            umem,
            fd,
            bind_mode,
            multi_buffer,
            queue,
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn bind_mode(&self) -> BindMode {
        self.bind_mode
    }

    /// The pending socket error (SO_ERROR), cleared by reading it.
    pub(crate) fn take_error(&self) -> Option<i32> {
        crate::sys::take_socket_error(std::os::fd::AsFd::as_fd(&self.fd))
    }

    /// The kernel's drop counters of this socket (`XDP_STATISTICS`,
    /// cumulative): (rx dropped: no fill chunk, rx ring full or invalid
    /// descriptor; tx invalid descriptors).
    pub(crate) fn kernel_drops(&self) -> (u64, u64) {
        // SAFETY: all-zero is a valid xdp_statistics (plain integers).
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc != 0 {
            return (0, 0);
        }
        (
            st.rx_dropped + st.rx_ring_full + st.rx_invalid_descs,
            st.tx_invalid_descs,
        )
    }

    fn chunk(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.umem.len() as u64 {
            return None;
        }
        // SAFETY: the range is inside the UMEM mapping; the chunk belongs to
        // this process between the rx-ring read and the fill-ring write.
        Some(unsafe {
            std::slice::from_raw_parts(self.umem.as_ptr().add(addr as usize), len as usize)
        })
    }

    fn write_chunk(&self, addr: u64, data: &[u8]) {
        assert!(
            addr as usize + data.len() <= self.umem.len(),
            "tx chunk outside UMEM"
        );
        // SAFETY: `addr` is a tx chunk start taken from the free list, so no
        // one else (kernel included) uses it until it is queued on the tx
        // ring; the range was checked against the UMEM size.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.umem.as_ptr().add(addr as usize),
                data.len(),
            )
        };
    }

    /// Receives up to `out.room()` frames, copying each out of UMEM into a
    /// pool packet and recycling its chunks in the same burst.
    pub(crate) fn rx_burst(&self, pool: &mut PacketPool, out: &mut Batch) -> RxResult {
        let mut r = RxResult::default();
        let mut side = self.rx.lock();
        let s = &mut *side;
        let room = out.room();
        let avail = s.rx.peek(RX_PEEK);
        let mut used = 0;
        while used < avail && (r.packets as usize) < room {
            let d = s.rx.read(used);
            used += 1;
            s.recycle.push(d.addr & !u64::from(FRAME_SIZE - 1));
            let more = self.multi_buffer && d.options & libc::XDP_PKT_CONTD != 0;
            if s.dropping {
                s.dropping = more;
                continue;
            }
            let Some(bytes) = self.chunk(d.addr, d.len) else {
                r.dropped += 1;
                s.dropping = more;
                continue;
            };
            let mut pkt = match s.partial.take() {
                Some(p) => p,
                None => {
                    let p = if more {
                        pool.alloc_class(SizeClass::Jumbo)
                    } else {
                        pool.alloc(bytes.len())
                    };
                    match p {
                        Some(p) => p,
                        None => {
                            r.dropped += 1;
                            s.dropping = more;
                            continue;
                        }
                    }
                }
            };
            let at = pkt.len();
            let spare = pkt.spare_mut();
            if at + bytes.len() > spare.len() {
                pool.free(pkt);
                r.dropped += 1;
                s.dropping = more;
                continue;
            }
            spare[at..at + bytes.len()].copy_from_slice(bytes);
            pkt.set_len(at + bytes.len());
            if more {
                s.partial = Some(pkt);
                continue;
            }
            if csum::finish_partial_l4(pkt.data_mut()) {
                r.csum_fixed += 1;
            }
            r.packets += 1;
            r.bytes += pkt.len() as u64;
            if let Err(p) = out.push(pkt) {
                pool.free(p);
                r.dropped += 1;
            }
        }
        s.rx.release(used);
        // Give chunks back; the fill ring has room for all rx chunks, so
        // anything left over is only deferred, never lost.
        let n = s.fill.reserve(s.recycle.len() as u32);
        for i in 0..n {
            let addr = s.recycle[s.recycle.len() - 1 - i as usize];
            s.fill.write(i, addr);
        }
        let keep = s.recycle.len() - n as usize;
        s.recycle.truncate(keep);
        s.fill.submit(n);
        if used == 0 {
            if s.fill.needs_wakeup() {
                self.wake_rx();
            }
            s.idle_polls += 1;
            if s.idle_polls >= IDLE_POLLS_PER_CHECK {
                s.idle_polls = 0;
                r.check_device = true;
            }
        } else {
            s.idle_polls = 0;
        }
        r
    }

    fn wake_rx(&self) {
        // SAFETY: zero-length recvfrom on our socket only wakes the driver;
        // no buffer is touched.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
        }
    }

    /// Sends `pkts`, copying each into free UMEM chunks; frames that do not
    /// fit (no chunk, ring full, too large, GSO) are counted as dropped.
    /// Returns Err with the errno when the kernel refused the kick in a way
    /// that means the device is gone.
    pub(crate) fn tx_burst(
        &self,
        pkts: &mut Batch,
        pool: &mut PacketPool,
        counters: &PortCounters,
    ) -> Result<u64, i32> {
        let mut side = self.tx.lock();
        let s = &mut *side;
        // Reclaim chunks the kernel has finished sending.
        let done = s.comp.peek(RING_SIZE);
        for i in 0..done {
            s.free.push(s.comp.read(i));
        }
        s.comp.release(done);

        let mut queued = 0u32;
        let (mut sent, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        let max_single = FRAME_SIZE as usize;
        for mut pkt in pkts.drain() {
            let len = pkt.len();
            let frags = len.div_ceil(max_single).max(1);
            let fits = (frags == 1 || self.multi_buffer)
                && !(pkt.offload.gso_type != GsoType::None && len > max_single);
            if !fits
                || s.free.len() < frags
                || s.tx.reserve(queued + frags as u32) < queued + frags as u32
            {
                dropped += 1;
                pool.free(pkt);
                continue;
            }
            // The descriptor cannot say "checksum pending": finish it here.
            if crate::wire::finish_packet_checksum(&mut pkt).is_err() {
                dropped += 1;
                pool.free(pkt);
                continue;
            }
            let data = pkt.data();
            for (k, piece) in data.chunks(max_single).enumerate() {
                let Some(addr) = s.free.pop() else { break };
                self.write_chunk(addr, piece);
                let last = k + 1 == frags;
                s.tx.write(
                    queued,
                    libc::xdp_desc {
                        addr,
                        len: piece.len() as u32,
                        options: if last { 0 } else { libc::XDP_PKT_CONTD },
                    },
                );
                queued += 1;
            }
            sent += 1;
            bytes += len as u64;
            pool.free(pkt);
        }
        s.tx.submit(queued);
        counters.tx(sent, bytes);
        if dropped != 0 {
            counters.tx_dropped(dropped);
        }
        if queued != 0 || s.tx.in_flight() != 0 {
            self.kick_tx(s)?;
        }
        Ok(sent)
    }

    fn kick_tx(&self, s: &mut TxSide) -> Result<(), i32> {
        for _ in 0..TX_KICKS {
            if !s.tx.needs_wakeup() {
                return Ok(());
            }
            // SAFETY: a zero-length sendto with no buffer and no address
            // only asks the kernel to process the tx ring.
            let rc = unsafe {
                libc::sendto(
                    self.fd.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if rc >= 0 {
                if s.tx.in_flight() == 0 {
                    return Ok(());
                }
                continue;
            }
            match io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                // Busy or out of buffers: the rest goes out on the next kick.
                libc::EAGAIN | libc::EBUSY | libc::ENOBUFS => continue,
                e => return Err(e),
            }
        }
        Ok(())
    }
}
