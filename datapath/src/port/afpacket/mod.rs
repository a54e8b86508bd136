//! AF_PACKET port (`type=afpacket dev=IFACE [ring=v2|v3]`): mmap rx and tx
//! rings on one packet socket, with PACKET_VNET_HDR so GSO frames and
//! partial checksums cross as one buffer with their state
//! (Documentation/networking/packet_mmap.rst, packet(7)).
//!
//! Two rx ring layouts, chosen per port (PACKET_VERSION covers both rings
//! of the socket, so the tx ring follows the same version):
//!
//! - `ring=v3`: TPACKET_V3 blocks of [`RX_BLOCK_SIZE`] bytes with
//!   variable-size frames, so a 64 KiB GSO frame fits. The kernel hands a
//!   block to user space only when it is full or its retire timer
//!   ([`RETIRE_TIMEOUT_MS`]) fires, so under light load every frame waits
//!   up to that long: about 1 ms per hop.
//! - `ring=v2` (default): TPACKET_V2 fixed slots of [`RX_V2_FRAME_SIZE`] bytes, each
//!   with its own status word, so a frame is visible the moment the kernel
//!   wrote it. A frame larger than a slot (a GSO frame, a jumbo frame) is
//!   truncated in the ring, but with PACKET_COPY_THRESH the kernel also
//!   queues the whole skb on the socket and flags the slot
//!   `TP_STATUS_COPY`; the port then reads it with one `recv`. A truncated
//!   slot without that flag (receive buffer full) is counted as dropped.
//!   Measured on a quiet machine in the same run: v2 answers pings in
//!   27 µs where v3 takes 1490 µs, with equal 64 B rates (242 / 233 kpps)
//!   and equal or better TCP (13.4 / 12.3 Gbit/s), hence the default.
//!
//! Tx slots are [`TX_FRAME_SIZE`] bytes in both modes, enough for a whole
//! GSO frame with its vnet header. The socket bypasses the qdisc, ignores
//! its own outgoing frames, skips malformed tx frames instead of stalling
//! the ring (PACKET_LOSS) and puts the device in promiscuous mode for its
//! lifetime.

mod frame;

pub use frame::{parse_vnet, write_vnet, VNET_HDR_LEN};

use super::{
    LinkState, NetdevLink, OffloadCaps, Port, PortCounters, PortError, PortKind, PortStats,
};
use crate::packet::{Batch, Packet, PacketPool};
use crate::sys::ethtool::NetdevIoctl;
use frame::{
    RxFrame, TxLayout, BLOCK_STATUS, TP_STATUS_AVAILABLE, TP_STATUS_KERNEL, TP_STATUS_SEND_REQUEST,
    TP_STATUS_USER, TP_STATUS_VLAN_TPID_VALID, TP_STATUS_VLAN_VALID, TP_STATUS_WRONG_FORMAT,
    TX_DATA_OFFSET, TX_V2, TX_V3, V2_STATUS, V2_TX_DATA_OFFSET,
};
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes per rx block: room for a whole 64 KiB GSO frame with headers.
pub const RX_BLOCK_SIZE: u32 = 128 * 1024;
/// Rx blocks. Under light load the kernel retires a block per timeout
/// with only a few frames in it, so the ring absorbs a stalled consumer
/// for about `RX_BLOCKS * RETIRE_TIMEOUT_MS` ms, whatever the block size.
pub const RX_BLOCKS: u32 = 128;
/// Nominal V3 frame size (frames are variable; the kernel wants a value).
const RX_FRAME_NOMINAL: u32 = 2048;
/// Block retire timeout.
pub const RETIRE_TIMEOUT_MS: u32 = 1;
/// Bytes per tx slot: header, vnet header and a whole 64 KiB GSO frame.
pub const TX_FRAME_SIZE: u32 = 68 * 1024;
/// Tx slots.
pub const TX_FRAMES: u32 = 128;
/// Bytes per V2 rx slot: header, sockaddr_ll, vnet header and a whole
/// MTU-1500 frame with an in-band VLAN tag; anything larger takes the
/// COPY path.
pub const RX_V2_FRAME_SIZE: u32 = 2048;
/// Bytes per V2 rx block (the kernel allocates the ring in blocks; slots
/// never straddle one).
const RX_V2_BLOCK_SIZE: u32 = 64 * 1024;
/// V2 rx blocks: 8192 slots in all, the same 16 MiB as the V3 ring.
const RX_V2_BLOCKS: u32 = 256;
/// V2 rx slots.
pub const RX_V2_FRAMES: u32 = RX_V2_BLOCK_SIZE / RX_V2_FRAME_SIZE * RX_V2_BLOCKS;
/// Receive buffer asked for in v2 mode (the kernel doubles it): room for
/// a few hundred queued 64 KiB GSO frames between two polls. The kernel
/// only queues a COPY skb while the buffer has room.
const V2_RCVBUF: libc::c_int = 8 << 20;
/// Empty rx polls between checks for a vanished device.
const IDLE_POLLS_PER_CHECK: u32 = 1024;

// Ring geometry, checked at compile time: a whole GSO frame with its
// headers fits one rx block and one tx slot; blocks and slots are page
// multiples (packet_mmap.rst); rx blocks are at least 64 KiB.
const _: () = {
    let max = crate::packet::MAX_FRAME;
    assert!(TX_FRAME_SIZE as usize >= TX_DATA_OFFSET + VNET_HDR_LEN + max);
    assert!(RX_BLOCK_SIZE as usize >= 64 + 48 + VNET_HDR_LEN + max);
    assert!(RX_BLOCK_SIZE >= 64 * 1024);
    assert!(RX_BLOCK_SIZE % 4096 == 0 && TX_FRAME_SIZE % 4096 == 0);
    // V2: a slot holds the header area (TPACKET_ALIGN(52 + 18) for a
    // tagged frame), the vnet header and a 1518-byte frame; slots tile
    // page-multiple blocks.
    assert!(RX_V2_FRAME_SIZE as usize >= 80 + VNET_HDR_LEN + 1518);
    assert!(RX_V2_BLOCK_SIZE % 4096 == 0 && RX_V2_BLOCK_SIZE % RX_V2_FRAME_SIZE == 0);
    assert!(TX_FRAME_SIZE as usize >= V2_TX_DATA_OFFSET + VNET_HDR_LEN + max);
};

/// Which rx ring layout (and so TPACKET version) a port uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RingMode {
    /// TPACKET_V2: per-frame status, no retire latency; big frames by copy.
    #[default]
    V2,
    /// TPACKET_V3: block ring, frames wait for the block retire timer.
    V3,
}

impl RingMode {
    /// Parses an option value: `v2` or `v3`.
    pub fn parse(s: &str) -> Option<RingMode> {
        match s {
            "v2" => Some(RingMode::V2),
            "v3" => Some(RingMode::V3),
            _ => None,
        }
    }

    /// The option value naming this mode.
    pub fn name(self) -> &'static str {
        match self {
            RingMode::V2 => "v2",
            RingMode::V3 => "v3",
        }
    }
}

/// Settings of an AF_PACKET port.
#[derive(Clone, Debug)]
pub struct AfPacketConfig {
    /// Port name.
    pub name: String,
    /// Netdev to bind to.
    pub dev: String,
    /// Rx (and tx) ring layout.
    pub ring: RingMode,
}

impl AfPacketConfig {
    /// A port named after `dev`, with the default ring.
    pub fn new(dev: &str) -> Self {
        AfPacketConfig {
            name: dev.to_string(),
            dev: dev.to_string(),
            ring: RingMode::default(),
        }
    }

    /// The same settings with ring layout `ring`.
    pub fn with_ring(mut self, ring: RingMode) -> Self {
        self.ring = ring;
        self
    }
}

impl AfPacketConfig {
    /// Builds a config from `add-port NAME type=afpacket dev=IFACE
    /// [ring=v2|v3]`.
    pub fn from_options<'a>(
        name: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AfPacketError> {
        let mut dev = None;
        let mut ring = RingMode::default();
        for (key, value) in options {
            match key {
                "type" => {}
                "dev" => dev = Some(value.to_string()),
                "ring" => {
                    ring = RingMode::parse(value).ok_or_else(|| AfPacketError::BadOption {
                        port: name.to_string(),
                        key: key.to_string(),
                        value: value.to_string(),
                    })?
                }
                _ => {
                    return Err(AfPacketError::BadOption {
                        port: name.to_string(),
                        key: key.to_string(),
                        value: value.to_string(),
                    })
                }
            }
        }
        let dev = dev
            .filter(|d| !d.is_empty())
            .ok_or(AfPacketError::BadOption {
                port: name.to_string(),
                key: "dev".into(),
                value: String::new(),
            })?;
        Ok(AfPacketConfig {
            name: name.to_string(),
            dev,
            ring,
        })
    }
}

/// Errors of AF_PACKET port setup.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// An option was unknown or had a bad value.
    #[error("port \"{port}\": bad option {key}={value:?} (dev=IFACE, ring=v2|v3)")]
    BadOption {
        /// Port name.
        port: String,
        /// Option key.
        key: String,
        /// Its value.
        value: String,
    },
    /// The device does not exist.
    #[error("port \"{port}\": device \"{dev}\" not found")]
    NoDevice {
        /// Port name.
        port: String,
        /// Device.
        dev: String,
        /// Cause.
        #[source]
        source: crate::sys::ethtool::EthtoolError,
    },
    /// A socket setup step failed.
    #[error("port \"{port}\": packet socket on \"{dev}\": {op} failed")]
    Socket {
        /// Port name.
        port: String,
        /// Device.
        dev: String,
        /// Step.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// The mmap'd rings (rx blocks, then tx slots), unmapped on drop.
struct RingMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain shared memory; access is coordinated with the kernel by the
// status words (atomics) and, inside this process, by the port's mutexes.
unsafe impl Send for RingMap {}
// SAFETY: see Send.
unsafe impl Sync for RingMap {}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: ptr/len are the mapping made in `AfPacketPort::open`,
        // unused after this point.
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

struct RxCursor {
    /// V2: next rx slot.
    frame: u32,
    /// V3: current block.
    block: u32,
    /// Packets left in the current block (valid while `in_block`).
    left: u32,
    /// Offset of the next frame header in the current block.
    next: usize,
    in_block: bool,
    idle_polls: u32,
}

struct TxCursor {
    head: u32,
}

/// Counters of the V2 ring's big-frame path, beside the port counters.
#[derive(Debug, Default)]
struct CopyCounters {
    copied: AtomicU64,
    truncated: AtomicU64,
    missing: AtomicU64,
}

/// A snapshot of the V2 COPY-path counters (all zero in v3 mode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Frames too big for a slot, read whole from the socket queue.
    pub copied: u64,
    /// Frames truncated in the ring with no queued copy (receive buffer
    /// full); dropped and also counted in `rx_dropped`.
    pub truncated: u64,
    /// COPY slots whose queued copy was not there (or did not match the
    /// slot); dropped and also counted in `rx_errors`.
    pub missing: u64,
}

/// The PACKET_STATISTICS structs of the two ring versions.
trait PacketStats {
    fn drops(&self) -> u32;
}

impl PacketStats for libc::tpacket_stats {
    fn drops(&self) -> u32 {
        self.tp_drops
    }
}

impl PacketStats for libc::tpacket_stats_v3 {
    fn drops(&self) -> u32 {
        self.tp_drops
    }
}

/// An AF_PACKET port.
pub struct AfPacketPort {
    rx: Mutex<RxCursor>,
    tx: Mutex<TxCursor>,
    mode: RingMode,
    /// Bytes of the rx ring; the tx ring follows it in the mapping.
    rx_ring_len: usize,
    tx_layout: TxLayout,
    copies: CopyCounters,
    // Unmapped before the socket closes (field order is drop order).
    map: RingMap,
    fd: OwnedFd,
    name: String,
    dev: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u32,
    netdev: NetdevIoctl,
    /// Link state for the hot path; whether the device is gone.
    netlink: NetdevLink,
    counters: PortCounters,
}

impl std::fmt::Debug for AfPacketPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfPacketPort")
            .field("name", &self.name)
            .field("dev", &self.dev)
            .field("ring", &self.mode)
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, val: &T) -> io::Result<()> {
    setsockopt_at(fd, libc::SOL_PACKET, opt, val)
}

fn setsockopt_at<T>(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live value of the option's type with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            val as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl AfPacketPort {
    /// Opens a packet socket with rings on `cfg.dev`.
    pub fn open(cfg: &AfPacketConfig) -> Result<Self, AfPacketError> {
        let port = cfg.name.clone();
        let dev = cfg.dev.clone();
        let no_dev = |source| AfPacketError::NoDevice {
            port: port.clone(),
            dev: dev.clone(),
            source,
        };
        let netdev = NetdevIoctl::new().map_err(no_dev)?;
        let ifindex = netdev.index_of(&dev).map_err(no_dev)?;
        let mtu = netdev.mtu(&dev).map_err(no_dev)?;
        let mac = netdev.mac(&dev).map_err(no_dev)?;
        let sock_err = |op: &'static str| {
            let (port, dev) = (port.clone(), dev.clone());
            move |source| AfPacketError::Socket {
                port,
                dev,
                op,
                source,
            }
        };

        // Protocol 0: nothing is queued until the rings exist and bind()
        // names ETH_P_ALL.
        // SAFETY: socket(2) with constant arguments; checked below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sock_err("socket(AF_PACKET)")(io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        setsockopt(raw, libc::PACKET_VNET_HDR, &one).map_err(sock_err("PACKET_VNET_HDR"))?;
        let version = match cfg.ring {
            RingMode::V2 => libc::tpacket_versions::TPACKET_V2,
            RingMode::V3 => libc::tpacket_versions::TPACKET_V3,
        } as libc::c_int;
        setsockopt(raw, libc::PACKET_VERSION, &version).map_err(sock_err("PACKET_VERSION"))?;
        // Must precede the rings (EBUSY after): skip a malformed tx frame
        // instead of stalling the ring on it.
        setsockopt(raw, libc::PACKET_LOSS, &one).map_err(sock_err("PACKET_LOSS"))?;
        let rx_ring_len = match cfg.ring {
            RingMode::V2 => {
                // Any nonzero value turns the copy on (tpacket_rcv only
                // tests it for zero); the kernel reads it per frame, so
                // setting it before bind() covers every frame.
                setsockopt(raw, libc::PACKET_COPY_THRESH, &one)
                    .map_err(sock_err("PACKET_COPY_THRESH"))?;
                // FORCE passes rmem_max (root); otherwise settle for what
                // the sysctl allows.
                setsockopt_at(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &V2_RCVBUF)
                    .or_else(|_| setsockopt_at(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &V2_RCVBUF))
                    .map_err(sock_err("SO_RCVBUF"))?;
                let rx_req = libc::tpacket_req {
                    tp_block_size: RX_V2_BLOCK_SIZE,
                    tp_block_nr: RX_V2_BLOCKS,
                    tp_frame_size: RX_V2_FRAME_SIZE,
                    tp_frame_nr: RX_V2_FRAMES,
                };
                setsockopt(raw, libc::PACKET_RX_RING, &rx_req)
                    .map_err(sock_err("PACKET_RX_RING"))?;
                let tx_req = libc::tpacket_req {
                    tp_block_size: TX_FRAME_SIZE,
                    tp_block_nr: TX_FRAMES,
                    tp_frame_size: TX_FRAME_SIZE,
                    tp_frame_nr: TX_FRAMES,
                };
                setsockopt(raw, libc::PACKET_TX_RING, &tx_req)
                    .map_err(sock_err("PACKET_TX_RING"))?;
                (RX_V2_BLOCK_SIZE * RX_V2_BLOCKS) as usize
            }
            RingMode::V3 => {
                let rx_req = libc::tpacket_req3 {
                    tp_block_size: RX_BLOCK_SIZE,
                    tp_block_nr: RX_BLOCKS,
                    tp_frame_size: RX_FRAME_NOMINAL,
                    tp_frame_nr: RX_BLOCK_SIZE / RX_FRAME_NOMINAL * RX_BLOCKS,
                    tp_retire_blk_tov: RETIRE_TIMEOUT_MS,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                setsockopt(raw, libc::PACKET_RX_RING, &rx_req)
                    .map_err(sock_err("PACKET_RX_RING"))?;
                let tx_req = libc::tpacket_req3 {
                    tp_block_size: TX_FRAME_SIZE,
                    tp_block_nr: TX_FRAMES,
                    tp_frame_size: TX_FRAME_SIZE,
                    tp_frame_nr: TX_FRAMES,
                    tp_retire_blk_tov: 0,
                    tp_sizeof_priv: 0,
                    tp_feature_req_word: 0,
                };
                setsockopt(raw, libc::PACKET_TX_RING, &tx_req)
                    .map_err(sock_err("PACKET_TX_RING"))?;
                (RX_BLOCK_SIZE * RX_BLOCKS) as usize
            }
        };
        setsockopt(raw, libc::PACKET_QDISC_BYPASS, &one)
            .map_err(sock_err("PACKET_QDISC_BYPASS"))?;
        setsockopt(raw, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(sock_err("PACKET_IGNORE_OUTGOING"))?;

        let len = rx_ring_len + (TX_FRAME_SIZE * TX_FRAMES) as usize;
        // SAFETY: maps the socket's rings, sized as configured above; the
        // result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                raw,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sock_err("mmap rings")(io::Error::last_os_error()));
        }
        let map = RingMap {
            ptr: NonNull::new(p as *mut u8).expect("mmap never returns 0 on success"),
            len,
        };

        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                raw,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(sock_err("bind")(io::Error::last_os_error()));
        }
        // Promiscuous for the socket's lifetime: the kernel drops the
        // membership (and the promisc count) when the socket closes.
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex as i32,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(raw, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(sock_err("PACKET_MR_PROMISC"))?;
        tracing::info!(
            port,
            dev,
            ring = cfg.ring.name(),
            "AF_PACKET port attached (vnet_hdr)"
        );
        let netlink = NetdevLink::new(&netdev, &dev, ifindex);
        Ok(AfPacketPort {
            rx: Mutex::new(RxCursor {
                frame: 0,
                block: 0,
                left: 0,
                next: 0,
                in_block: false,
                idle_polls: 0,
            }),
            tx: Mutex::new(TxCursor { head: 0 }),
            mode: cfg.ring,
            rx_ring_len,
            tx_layout: match cfg.ring {
                RingMode::V2 => TX_V2,
                RingMode::V3 => TX_V3,
            },
            copies: CopyCounters::default(),
            map,
            fd,
            name: port,
            dev,
            ifindex,
            mac,
            mtu,
            netdev,
            netlink,
            counters: PortCounters::default(),
        })
    }

    /// The rx ring layout this port was opened with.
    pub fn ring(&self) -> RingMode {
        self.mode
    }

    /// Counters of the v2 ring's big-frame (COPY) path.
    pub fn copy_stats(&self) -> CopyStats {
        CopyStats {
            copied: self.copies.copied.load(Ordering::Relaxed),
            truncated: self.copies.truncated.load(Ordering::Relaxed),
            missing: self.copies.missing.load(Ordering::Relaxed),
        }
    }

    fn block(&self, i: u32) -> *mut u8 {
        debug_assert!(self.mode == RingMode::V3 && i < RX_BLOCKS);
        // SAFETY: i < RX_BLOCKS, so the block lies inside the V3 rx ring
        // at the start of the mapping.
        unsafe { self.map.ptr.as_ptr().add((i * RX_BLOCK_SIZE) as usize) }
    }

    fn rx_slot(&self, i: u32) -> *mut u8 {
        debug_assert!(self.mode == RingMode::V2 && i < RX_V2_FRAMES);
        // SAFETY: i < RX_V2_FRAMES; blocks are whole multiples of the slot
        // size and laid out back to back, so slot i starts at i * size
        // inside the V2 rx ring at the start of the mapping.
        unsafe { self.map.ptr.as_ptr().add((i * RX_V2_FRAME_SIZE) as usize) }
    }

    fn tx_slot(&self, i: u32) -> *mut u8 {
        // SAFETY: i < TX_FRAMES; tx slots follow the rx ring, and the
        // mapping spans rx_ring_len + TX_FRAMES * TX_FRAME_SIZE bytes.
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add(self.rx_ring_len + (i * TX_FRAME_SIZE) as usize)
        }
    }

    fn status_word(&self, p: *mut u8, off: usize) -> &AtomicU32 {
        // SAFETY: `p + off` is a 4-byte aligned status word inside the
        // mapping, which lives as long as `self`; the kernel updates it
        // atomically.
        unsafe { &*(p.add(off) as *const AtomicU32) }
    }

    /// Reads (and so resets) PACKET_STATISTICS into `st`, the struct of
    /// the socket's TPACKET version (`tpacket_stats` for V1/V2,
    /// `tpacket_stats_v3` for V3, af_packet.c packet_getsockopt); returns
    /// `tp_drops`, 0 on failure.
    fn packet_statistics<S: PacketStats>(&self, mut st: S) -> u32 {
        let mut len = std::mem::size_of::<S>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut S as *mut libc::c_void,
                &mut len,
            )
        };
        if rc == 0 {
            st.drops()
        } else {
            0
        }
    }

    fn take_error(&self) -> Option<i32> {
        crate::sys::take_socket_error(std::os::fd::AsFd::as_fd(&self.fd))
    }

    /// True when the device still exists under its name and ifindex.
    fn device_present(&self) -> bool {
        super::netdev_present(&self.netdev, &self.dev, self.ifindex)
    }

    fn gone_error(&self) -> PortError {
        self.netlink.mark_gone();
        PortError::DeviceGone {
            port: self.name.clone(),
        }
    }
}

/// What one rx burst did, folded into the port counters once per burst.
#[derive(Default)]
struct RxTally {
    packets: u64,
    bytes: u64,
    dropped: u64,
    errors: u64,
}

impl RxTally {
    fn deliver(&mut self, p: Packet, out: &mut Batch, pool: &mut PacketPool) {
        self.bytes += p.len() as u64;
        self.packets += 1;
        if let Err(p) = out.push(p) {
            pool.free(p);
        }
    }
}

/// Why the queued copy of a COPY slot was not delivered.
enum CopyFail {
    /// No pool buffer, or an offload state we cannot carry: a drop.
    Dropped,
    /// The queue had no copy for the slot, or not this slot's: an error.
    Missing,
}

/// Re-inserts the 802.1Q/802.1ad tag the kernel moved into the ring
/// header (`TP_STATUS_VLAN_VALID`), so the switch sees the frame as sent.
fn insert_tag(p: &mut Packet, f: &RxFrame) -> bool {
    if f.status & TP_STATUS_VLAN_VALID == 0 {
        return true;
    }
    let tpid = if f.status & TP_STATUS_VLAN_TPID_VALID != 0 {
        f.vlan_tpid
    } else {
        0x8100
    };
    match p.insert_gap(12, 4) {
        Some(tag) => {
            tag[..2].copy_from_slice(&tpid.to_be_bytes());
            tag[2..].copy_from_slice(&f.vlan_tci.to_be_bytes());
            true
        }
        None => false,
    }
}

/// Copies a frame held whole in the ring (`ring` is its block or slot)
/// into a pool buffer with its offload state and VLAN tag.
fn ring_packet(ring: &[u8], f: &RxFrame, pool: &mut PacketPool) -> Option<Packet> {
    let data = &ring[f.data..f.data + f.snaplen as usize];
    let meta = frame::parse_vnet(&ring[f.data - VNET_HDR_LEN..f.data])?;
    let vlan = f.status & TP_STATUS_VLAN_VALID != 0;
    let mut p = pool.alloc(data.len() + if vlan { 4 } else { 0 })?;
    p.offload = meta;
    if !p.copy_from(data) || !insert_tag(&mut p, f) {
        pool.free(p);
        return None;
    }
    Some(p)
}

impl AfPacketPort {
    fn rx_v3(&self, c: &mut RxCursor, pool: &mut PacketPool, out: &mut Batch, t: &mut RxTally) {
        while !out.is_full() {
            let base = self.block(c.block);
            let status = self.status_word(base, BLOCK_STATUS);
            if !c.in_block {
                if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                    break;
                }
                // SAFETY: the kernel handed this block to user space
                // (TP_STATUS_USER, Acquire above) and does not write it
                // until we give it back.
                let blk = unsafe { std::slice::from_raw_parts(base, RX_BLOCK_SIZE as usize) };
                let Some(h) = frame::block_header(blk) else {
                    break;
                };
                c.left = h.num_pkts;
                c.next = h.first as usize;
                c.in_block = true;
            }
            if c.left > 0 {
                // SAFETY: as above: the block is ours until released.
                let blk = unsafe { std::slice::from_raw_parts(base, RX_BLOCK_SIZE as usize) };
                match frame::rx_frame(blk, c.next) {
                    Some(f) => {
                        c.left -= 1;
                        c.next += f.next_offset as usize;
                        if f.next_offset == 0 {
                            c.left = 0;
                        }
                        let pkt = if f.truncated() {
                            None
                        } else {
                            ring_packet(blk, &f, pool)
                        };
                        match pkt {
                            Some(p) => t.deliver(p, out, pool),
                            None => t.dropped += 1,
                        }
                    }
                    None => {
                        // Corrupt header: count the rest of the block lost.
                        t.dropped += u64::from(c.left);
                        t.errors += 1;
                        c.left = 0;
                    }
                }
            }
            if c.left == 0 {
                status.store(TP_STATUS_KERNEL, Ordering::Release);
                c.in_block = false;
                c.block = (c.block + 1) % RX_BLOCKS;
            }
        }
    }

    fn rx_v2(&self, c: &mut RxCursor, pool: &mut PacketPool, out: &mut Batch, t: &mut RxTally) {
        while !out.is_full() {
            let slot = self.rx_slot(c.frame);
            let status = self.status_word(slot, V2_STATUS);
            let st = status.load(Ordering::Acquire);
            if st & TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the kernel handed this slot to user space
            // (TP_STATUS_USER, Acquire above) and does not write it until
            // we store TP_STATUS_KERNEL; it spans RX_V2_FRAME_SIZE bytes.
            let s = unsafe { std::slice::from_raw_parts(slot, RX_V2_FRAME_SIZE as usize) };
            let pkt = match frame::v2_rx_slot(s) {
                Some(f) if !f.truncated() => {
                    let p = ring_packet(s, &f, pool);
                    if p.is_none() {
                        t.dropped += 1;
                    }
                    p
                }
                Some(f) if f.copied() => match self.recv_copy(&f, pool) {
                    Ok(p) => {
                        self.copies.copied.fetch_add(1, Ordering::Relaxed);
                        Some(p)
                    }
                    Err(CopyFail::Dropped) => {
                        t.dropped += 1;
                        None
                    }
                    Err(CopyFail::Missing) => {
                        self.copies.missing.fetch_add(1, Ordering::Relaxed);
                        t.errors += 1;
                        None
                    }
                },
                Some(_) => {
                    // Too big for the slot and the receive buffer was
                    // full, so there is no copy: never deliver the part.
                    self.copies.truncated.fetch_add(1, Ordering::Relaxed);
                    t.dropped += 1;
                    None
                }
                None => {
                    // Corrupt header. Its copy, if any, must still leave
                    // the queue or every later COPY slot would get the
                    // wrong frame.
                    if st & frame::TP_STATUS_COPY != 0 {
                        self.discard_copy();
                    }
                    t.errors += 1;
                    None
                }
            };
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            c.frame = (c.frame + 1) % RX_V2_FRAMES;
            if let Some(p) = pkt {
                t.deliver(p, out, pool);
            }
        }
    }

    /// Reads the whole frame of a COPY slot `f` from the socket's receive
    /// queue, vnet header first, into a buffer big enough for it.
    ///
    /// Pairing: tpacket_rcv (net/packet/af_packet.c) takes the ring slot
    /// (packet_current_rx_frame, packet_increment_rx_head) and appends the
    /// copy to `sk_receive_queue` inside one critical section under
    /// `sk_receive_queue.lock`, and a frame dropped after taking its slot
    /// (vnet header failure, ring full) has its copy freed, never queued.
    /// So queue order is slot order among COPY slots. Slots are consumed
    /// strictly in ring order here and nothing else reads the socket, so
    /// the head of the queue is this slot's frame. A slot may be published
    /// after its copy is queued, never before, so the copy is there when
    /// the slot is seen; if it is not (EAGAIN) or its length is not the
    /// slot's `tp_len`, the frame is counted missing, never mis-delivered.
    fn recv_copy(&self, f: &RxFrame, pool: &mut PacketPool) -> Result<Packet, CopyFail> {
        let want = f.len as usize;
        let vlan = f.status & TP_STATUS_VLAN_VALID != 0;
        let Some(mut p) = pool.alloc(want + if vlan { 4 } else { 0 }) else {
            // Consume the copy anyway to keep the pairing.
            self.discard_copy();
            return Err(CopyFail::Dropped);
        };
        let (buf, head) = p.raw_buffer_mut();
        if head < VNET_HDR_LEN {
            pool.free(p);
            self.discard_copy();
            return Err(CopyFail::Dropped);
        }
        let dst = &mut buf[head - VNET_HDR_LEN..];
        // SAFETY: `dst` is writable for its length; MSG_TRUNC makes the
        // kernel report the frame's full length without writing past it.
        let rc = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                dst.as_mut_ptr() as *mut libc::c_void,
                dst.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            )
        };
        let room = dst.len() - VNET_HDR_LEN;
        let got = rc as isize - VNET_HDR_LEN as isize;
        if rc < 0 || got != want as isize || want > room {
            pool.free(p);
            return Err(CopyFail::Missing);
        }
        let Some(meta) = frame::parse_vnet(&buf[head - VNET_HDR_LEN..head]) else {
            pool.free(p);
            return Err(CopyFail::Dropped);
        };
        p.set_len(want);
        p.offload = meta;
        if !insert_tag(&mut p, f) {
            pool.free(p);
            return Err(CopyFail::Dropped);
        }
        Ok(p)
    }

    /// Takes the next queued copy off the socket without keeping it (the
    /// kernel frees a datagram that did not fit the buffer).
    fn discard_copy(&self) {
        let mut hdr = [0u8; VNET_HDR_LEN];
        // SAFETY: `hdr` is writable for its length.
        unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                hdr.as_mut_ptr() as *mut libc::c_void,
                hdr.len(),
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            );
        }
    }
}

impl Port for AfPacketPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PortKind {
        PortKind::AfPacket
    }

    fn rx_burst(
        &self,
        _rxq: usize,
        pool: &mut PacketPool,
        out: &mut Batch,
    ) -> Result<usize, PortError> {
        if self.netlink.is_gone() {
            return Err(self.gone_error());
        }
        let mut c = self.rx.lock();
        let mut t = RxTally::default();
        match self.mode {
            RingMode::V2 => self.rx_v2(&mut c, pool, out, &mut t),
            RingMode::V3 => self.rx_v3(&mut c, pool, out, &mut t),
        }
        self.counters.rx(t.packets, t.bytes);
        if t.dropped != 0 {
            self.counters.rx_dropped(t.dropped);
        }
        if t.errors != 0 {
            self.counters.rx_error(t.errors);
        }
        if t.packets == 0 {
            c.idle_polls += 1;
            if c.idle_polls >= IDLE_POLLS_PER_CHECK {
                c.idle_polls = 0;
                if self.take_error().is_some() && !self.device_present() {
                    return Err(self.gone_error());
                }
            }
        } else {
            c.idle_polls = 0;
        }
        Ok(t.packets as usize)
    }

    fn tx_burst(
        &self,
        _txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError> {
        if self.netlink.is_gone() {
            let n = pkts.len() as u64;
            pool.free_all(pkts.drain());
            self.counters.tx_dropped(n);
            return Err(self.gone_error());
        }
        let mut c = self.tx.lock();
        let (mut queued, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
        let layout = self.tx_layout;
        for pkt in pkts.drain() {
            let slot = self.tx_slot(c.head);
            let status = self.status_word(slot, layout.status);
            let st = status.load(Ordering::Acquire);
            if st & TP_STATUS_WRONG_FORMAT != 0 {
                self.counters.tx_error(1);
            } else if st != TP_STATUS_AVAILABLE {
                // Ring full: the kernel has not sent this slot yet.
                dropped += 1;
                pool.free(pkt);
                continue;
            }
            let len = pkt.len();
            // SAFETY: the slot is AVAILABLE, so the kernel does not touch it
            // until we set SEND_REQUEST; it spans TX_FRAME_SIZE bytes.
            let s = unsafe { std::slice::from_raw_parts_mut(slot, TX_FRAME_SIZE as usize) };
            if !frame::write_tx_header(&layout, s, len) {
                dropped += 1;
                pool.free(pkt);
                continue;
            }
            frame::write_vnet(&pkt.offload, &mut s[layout.data..]);
            let d = layout.data + VNET_HDR_LEN;
            s[d..d + len].copy_from_slice(pkt.data());
            status.store(TP_STATUS_SEND_REQUEST, Ordering::Release);
            c.head = (c.head + 1) % TX_FRAMES;
            queued += 1;
            bytes += len as u64;
            pool.free(pkt);
        }
        if dropped != 0 {
            self.counters.tx_dropped(dropped);
        }
        if queued == 0 {
            return Ok(0);
        }
        // SAFETY: zero-length sendto: asks the kernel to send every slot
        // marked SEND_REQUEST; no buffer is passed.
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
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error().unwrap_or(0) {
                libc::EAGAIN | libc::ENOBUFS => {}
                _ => {
                    self.counters.tx_error(1);
                    if !self.device_present() {
                        return Err(self.gone_error());
                    }
                    return Err(PortError::Io {
                        port: self.name.clone(),
                        op: "AF_PACKET tx ring flush",
                        source: e,
                    });
                }
            }
        }
        self.counters.tx(queued, bytes);
        Ok(queued as usize)
    }

    fn rx_fd(&self, _rxq: usize) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn link(&self) -> LinkState {
        self.netlink.link()
    }

    fn health_check(&self) -> LinkState {
        // A vanished device marks the port gone at once, so the next rx/tx
        // burst reports it without waiting for a socket error.
        self.netlink.refresh(&self.netdev, &self.dev, self.ifindex)
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn offload_caps(&self) -> OffloadCaps {
        // PACKET_VNET_HDR hands checksum and GSO state to the kernel, which
        // finishes them in software if the device cannot.
        OffloadCaps {
            partial_csum: true,
            tso: true,
            uso: true,
        }
    }

    fn stats(&self) -> PortStats {
        // Frames dropped because the ring was full never reach rx_burst.
        // PACKET_STATISTICS resets on read, so fold it into our counter.
        let drops = match self.mode {
            RingMode::V2 => {
                // SAFETY: all-zero is a valid tpacket_stats.
                let st = unsafe { std::mem::zeroed::<libc::tpacket_stats>() };
                self.packet_statistics(st)
            }
            RingMode::V3 => {
                // SAFETY: all-zero is a valid tpacket_stats_v3.
                let st = unsafe { std::mem::zeroed::<libc::tpacket_stats_v3>() };
                self.packet_statistics(st)
            }
        };
        if drops != 0 {
            self.counters.rx_dropped(u64::from(drops));
        }
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_need_a_device_and_nothing_unknown() {
        let c =
            AfPacketConfig::from_options("p1", [("type", "afpacket"), ("dev", "eth1")]).unwrap();
        assert_eq!((c.name.as_str(), c.dev.as_str()), ("p1", "eth1"));
        let e = AfPacketConfig::from_options("p2", [("type", "afpacket")]).unwrap_err();
        assert!(e.to_string().contains("p2") && e.to_string().contains("dev"));
        assert!(AfPacketConfig::from_options("p3", [("dev", "x"), ("mtu", "9000")]).is_err());
    }

    #[test]
    fn ring_option_selects_v2_or_v3_and_rejects_anything_else() {
        assert_eq!(AfPacketConfig::new("eth1").ring, RingMode::V2);
        let c = AfPacketConfig::from_options("p1", [("dev", "eth1")]).unwrap();
        assert_eq!(c.ring, RingMode::V2);
        let c = AfPacketConfig::from_options("p1", [("dev", "eth1"), ("ring", "v2")]).unwrap();
        assert_eq!(c.ring, RingMode::V2);
        let c = AfPacketConfig::from_options("p1", [("ring", "v3"), ("dev", "eth1")]).unwrap();
        assert_eq!(c.ring, RingMode::V3);
        let e = AfPacketConfig::from_options("p4", [("dev", "eth1"), ("ring", "v1")]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("p4") && msg.contains("ring") && msg.contains("v1"),
            "{msg}"
        );
        assert!(AfPacketConfig::from_options("p5", [("dev", "eth1"), ("ring", "")]).is_err());
        assert_eq!(RingMode::parse(RingMode::V2.name()), Some(RingMode::V2));
    }

    fn frame_with(status: u32, tci: u16, tpid: u16) -> RxFrame {
        RxFrame {
            next_offset: 0,
            data: 0,
            snaplen: 0,
            len: 0,
            status,
            vlan_tci: tci,
            vlan_tpid: tpid,
        }
    }

    #[test]
    fn a_v2_slot_becomes_a_packet_with_its_tag_and_offload_state() {
        use crate::packet::GsoType;
        // V2 slot: header, vnet header (NEEDS_CSUM, csum_start 34) at 66,
        // a 60-byte untagged frame at tp_mac 76, tag 0x88a8/10 in the header.
        let mut s = vec![0u8; RX_V2_FRAME_SIZE as usize];
        let st = TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID;
        s[0..4].copy_from_slice(&st.to_le_bytes());
        s[4..8].copy_from_slice(&60u32.to_le_bytes());
        s[8..12].copy_from_slice(&60u32.to_le_bytes());
        s[12..14].copy_from_slice(&76u16.to_le_bytes());
        s[24..26].copy_from_slice(&10u16.to_le_bytes());
        s[26..28].copy_from_slice(&0x88a8u16.to_le_bytes());
        s[66..76].copy_from_slice(&[1, 0, 0, 0, 0, 0, 34, 0, 16, 0]);
        for (i, b) in s[76..136].iter_mut().enumerate() {
            *b = i as u8;
        }
        let f = frame::v2_rx_slot(&s).unwrap();
        let mut pool = PacketPool::new(4, 1, 1);
        let p = ring_packet(&s, &f, &mut pool).unwrap();
        assert_eq!(p.len(), 64);
        assert_eq!(&p.data()[..12], &s[76..88]);
        assert_eq!(&p.data()[12..16], &[0x88, 0xa8, 0, 10]);
        assert_eq!(&p.data()[16..], &s[88..136]);
        assert!(p.offload.needs_csum());
        assert_eq!(p.offload.gso_type, GsoType::None);
        assert_eq!(p.offload.csum_start, 38, "moved with the tag");
    }

    #[test]
    fn a_tag_defaults_to_802_1q_without_a_valid_tpid() {
        let mut pool = PacketPool::new(4, 1, 1);
        let mut p = pool.alloc(60).unwrap();
        assert!(p.copy_from(&[0xab; 60]));
        assert!(insert_tag(
            &mut p,
            &frame_with(TP_STATUS_VLAN_VALID, 0x0005, 0)
        ));
        assert_eq!(&p.data()[12..16], &[0x81, 0, 0, 5]);
        let mut q = pool.alloc(60).unwrap();
        assert!(q.copy_from(&[0xab; 60]));
        assert!(insert_tag(&mut q, &frame_with(0, 7, 0x8100)));
        assert_eq!(q.len(), 60, "no tag without TP_STATUS_VLAN_VALID");
    }
}
