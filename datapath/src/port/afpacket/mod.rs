//! AF_PACKET port (`type=afpacket dev=IFACE`): a TPACKET_V3 mmap rx ring and
//! a frame-based V3 tx ring on one packet socket, with PACKET_VNET_HDR so
//! GSO frames and partial checksums cross as one buffer with their state
//! (Documentation/networking/packet_mmap.rst, packet(7)).
//!
//! Rx blocks are [`RX_BLOCK_SIZE`] bytes and hold variable-size frames, so a
//! 64 KiB GSO frame fits; the kernel retires a partly filled block after
//! [`RETIRE_TIMEOUT_MS`] so the ring adds at most that much latency. Tx slots
//! are [`TX_FRAME_SIZE`] bytes, enough for a whole GSO frame with its vnet
//! header. The socket bypasses the qdisc, ignores its own outgoing frames,
//! skips malformed tx frames instead of stalling the ring (PACKET_LOSS) and
//! puts the device in promiscuous mode for its lifetime.

mod frame;

pub use frame::{parse_vnet, write_vnet, VNET_HDR_LEN};

use super::{
    LinkState, NetdevLink, OffloadCaps, Port, PortCounters, PortError, PortKind, PortStats,
};
use crate::packet::{Batch, PacketPool};
use crate::sys::ethtool::NetdevIoctl;
use frame::{BLOCK_STATUS, TP_STATUS, TX_DATA_OFFSET};
use parking_lot::Mutex;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

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
};

const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const TP_STATUS_AVAILABLE: u32 = 0;
const TP_STATUS_SEND_REQUEST: u32 = 1;
const TP_STATUS_WRONG_FORMAT: u32 = 1 << 2;

/// Settings of an AF_PACKET port.
#[derive(Clone, Debug)]
pub struct AfPacketConfig {
    /// Port name.
    pub name: String,
    /// Netdev to bind to.
    pub dev: String,
}

impl AfPacketConfig {
    /// A port named after `dev`.
    pub fn new(dev: &str) -> Self {
        AfPacketConfig {
            name: dev.to_string(),
            dev: dev.to_string(),
        }
    }
}

impl AfPacketConfig {
    /// Builds a config from `add-port NAME type=afpacket dev=IFACE`.
    pub fn from_options<'a>(
        name: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AfPacketError> {
        let mut dev = None;
        for (key, value) in options {
            match key {
                "type" => {}
                "dev" => dev = Some(value.to_string()),
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
        })
    }
}

/// Errors of AF_PACKET port setup.
#[derive(Debug, thiserror::Error)]
pub enum AfPacketError {
    /// An option was unknown or had a bad value.
    #[error("port \"{port}\": bad option {key}={value:?} (dev=IFACE)")]
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

/// An AF_PACKET port.
pub struct AfPacketPort {
    rx: Mutex<RxCursor>,
    tx: Mutex<TxCursor>,
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
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

fn setsockopt<T>(fd: RawFd, opt: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live value of the option's type with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
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
        let v3 = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(raw, libc::PACKET_VERSION, &v3).map_err(sock_err("PACKET_VERSION"))?;
        // Must precede the rings (EBUSY after): skip a malformed tx frame
        // instead of stalling the ring on it.
        setsockopt(raw, libc::PACKET_LOSS, &one).map_err(sock_err("PACKET_LOSS"))?;
        let rx_req = libc::tpacket_req3 {
            tp_block_size: RX_BLOCK_SIZE,
            tp_block_nr: RX_BLOCKS,
            tp_frame_size: RX_FRAME_NOMINAL,
            tp_frame_nr: RX_BLOCK_SIZE / RX_FRAME_NOMINAL * RX_BLOCKS,
            tp_retire_blk_tov: RETIRE_TIMEOUT_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(raw, libc::PACKET_RX_RING, &rx_req).map_err(sock_err("PACKET_RX_RING"))?;
        let tx_req = libc::tpacket_req3 {
            tp_block_size: TX_FRAME_SIZE,
            tp_block_nr: TX_FRAMES,
            tp_frame_size: TX_FRAME_SIZE,
            tp_frame_nr: TX_FRAMES,
            tp_retire_blk_tov: 0,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(raw, libc::PACKET_TX_RING, &tx_req).map_err(sock_err("PACKET_TX_RING"))?;
        setsockopt(raw, libc::PACKET_QDISC_BYPASS, &one)
            .map_err(sock_err("PACKET_QDISC_BYPASS"))?;
        setsockopt(raw, libc::PACKET_IGNORE_OUTGOING, &one)
            .map_err(sock_err("PACKET_IGNORE_OUTGOING"))?;

        let len = (RX_BLOCK_SIZE * RX_BLOCKS + TX_FRAME_SIZE * TX_FRAMES) as usize;
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
        tracing::info!(port, dev, "AF_PACKET port attached (TPACKET_V3, vnet_hdr)");
        let netlink = NetdevLink::new(&netdev, &dev, ifindex);
        Ok(AfPacketPort {
            rx: Mutex::new(RxCursor {
                block: 0,
                left: 0,
                next: 0,
                in_block: false,
                idle_polls: 0,
            }),
            tx: Mutex::new(TxCursor { head: 0 }),
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

    fn block(&self, i: u32) -> *mut u8 {
        // SAFETY: i < RX_BLOCKS, so the block lies inside the rx part of
        // the mapping.
        unsafe { self.map.ptr.as_ptr().add((i * RX_BLOCK_SIZE) as usize) }
    }

    fn tx_slot(&self, i: u32) -> *mut u8 {
        // SAFETY: i < TX_FRAMES; tx slots follow the rx blocks.
        unsafe {
            self.map
                .ptr
                .as_ptr()
                .add((RX_BLOCK_SIZE * RX_BLOCKS + i * TX_FRAME_SIZE) as usize)
        }
    }

    fn status_word(&self, p: *mut u8, off: usize) -> &AtomicU32 {
        // SAFETY: `p + off` is a 4-byte aligned status word inside the
        // mapping, which lives as long as `self`; the kernel updates it
        // atomically.
        unsafe { &*(p.add(off) as *const AtomicU32) }
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
        let (mut n, mut bytes, mut dropped) = (0u64, 0u64, 0u64);
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
                        let data = &blk[f.data..f.data + f.snaplen as usize];
                        let meta = frame::parse_vnet(&blk[f.data - VNET_HDR_LEN..f.data]);
                        let vlan = f.status & TP_STATUS_VLAN_VALID != 0;
                        let pkt = if f.snaplen < f.len {
                            None
                        } else {
                            meta.and_then(|m| {
                                let mut p = pool.alloc(data.len() + if vlan { 4 } else { 0 })?;
                                p.copy_from(data).then_some(())?;
                                p.offload = m;
                                if vlan {
                                    let tpid = if f.status & TP_STATUS_VLAN_TPID_VALID != 0 {
                                        f.vlan_tpid
                                    } else {
                                        0x8100
                                    };
                                    let tag = p.insert_gap(12, 4)?;
                                    tag[..2].copy_from_slice(&tpid.to_be_bytes());
                                    tag[2..].copy_from_slice(&f.vlan_tci.to_be_bytes());
                                }
                                Some(p)
                            })
                        };
                        match pkt {
                            Some(p) => {
                                bytes += p.len() as u64;
                                n += 1;
                                if let Err(p) = out.push(p) {
                                    pool.free(p);
                                }
                            }
                            None => dropped += 1,
                        }
                    }
                    None => {
                        // Corrupt header: count the rest of the block lost.
                        dropped += u64::from(c.left);
                        self.counters.rx_error(1);
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
        self.counters.rx(n, bytes);
        if dropped != 0 {
            self.counters.rx_dropped(dropped);
        }
        if n == 0 {
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
        Ok(n as usize)
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
        let room = TX_FRAME_SIZE as usize - TX_DATA_OFFSET - VNET_HDR_LEN;
        for pkt in pkts.drain() {
            let slot = self.tx_slot(c.head);
            let status = self.status_word(slot, TP_STATUS);
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
            if len > room {
                dropped += 1;
                pool.free(pkt);
                continue;
            }
            // SAFETY: the slot is AVAILABLE, so the kernel does not touch it
            // until we set SEND_REQUEST; it spans TX_FRAME_SIZE bytes.
            let s = unsafe { std::slice::from_raw_parts_mut(slot, TX_FRAME_SIZE as usize) };
            let tp_len = (len + VNET_HDR_LEN) as u32;
            s[0..4].fill(0); // tp_next_offset: fixed-size slots
            s[16..20].copy_from_slice(&tp_len.to_le_bytes());
            frame::write_vnet(&pkt.offload, &mut s[TX_DATA_OFFSET..]);
            let d = TX_DATA_OFFSET + VNET_HDR_LEN;
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
        // SAFETY: all-zero is a valid tpacket_stats_v3.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` is writable for `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                &mut st as *mut _ as *mut libc::c_void,
                &mut len,
            )
        };
        if rc == 0 && st.tp_drops != 0 {
            self.counters.rx_dropped(u64::from(st.tp_drops));
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
}
