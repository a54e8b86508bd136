//! Ports: where packets enter and leave the switch.
//!
//! Every backend (memory, TAP, AF_XDP, AF_PACKET, VXLAN) implements [`Port`]:
//! batch in, batch out, a file descriptor to sleep on, link state, MAC, MTU
//! and counters. Ports are shared between PMD threads as `Arc<dyn Port>`;
//! each rx queue is polled by exactly one PMD, and transmit queues are
//! chosen by the caller (`txq`), so a backend needs at most one uncontended
//! lock per queue per batch, never per packet.
//!
//! Dropping a port releases every kernel object it created.

pub mod afpacket;
pub mod afxdp;
pub mod capture;
mod memory;
mod stats;
mod tap;
pub mod vxlan;

pub use afpacket::{AfPacketConfig, AfPacketPort};
pub use afxdp::{AfXdpConfig, AfXdpPort};
pub use memory::{MemoryPort, MemoryPortHandle};
pub use stats::{PortCounters, PortStats};
pub use tap::{vnet, TapConfig, TapError, TapIo, TapPort, TapStats};
pub use vxlan::{TunnelInfo, VniMode, VxlanConfig, VxlanPort, VxlanPortError};

use crate::packet::{Batch, PacketPool};
use std::os::fd::RawFd;

/// Link state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Forwarding.
    Up,
    /// Not forwarding; the reason says why.
    Down(DownReason),
}

/// Why a port is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// Administratively down.
    Admin,
    /// The underlying device or its namespace disappeared.
    DeviceGone,
    /// The kernel reported carrier off.
    NoCarrier,
    /// An unrecoverable I/O error.
    IoError,
}

/// The link state of a port attached to an existing kernel netdev
/// (AF_XDP, AF_PACKET), kept for the hot path: PMDs ask `link()` on every
/// poll and flush, while reading the kernel's state takes two ioctls. So
/// `link()` reads an atomic that `health_check` (about once a second, from
/// `Switch::run_timers`) refreshes, and the port's own I/O errors mark the
/// device gone at once.
#[derive(Debug)]
pub(crate) struct NetdevLink {
    /// The device vanished (deleted, or a new one under the old name).
    gone: std::sync::atomic::AtomicBool,
    /// Last state `refresh` found, encoded by `encode`.
    state: std::sync::atomic::AtomicU8,
}

impl NetdevLink {
    /// Probes `dev` once for the initial state.
    pub(crate) fn new(netdev: &crate::sys::ethtool::NetdevIoctl, dev: &str, ifindex: u32) -> Self {
        let l = NetdevLink {
            gone: std::sync::atomic::AtomicBool::new(false),
            state: std::sync::atomic::AtomicU8::new(0),
        };
        l.refresh(netdev, dev, ifindex);
        l
    }

    /// True once the device is known to be gone.
    #[inline]
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that the device is gone (from an I/O error or a probe).
    pub(crate) fn mark_gone(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The cached state, as cheap as an atomic load.
    #[inline]
    pub(crate) fn link(&self) -> LinkState {
        if self.is_gone() {
            return LinkState::Down(DownReason::DeviceGone);
        }
        match self.state.load(std::sync::atomic::Ordering::Relaxed) {
            0 => LinkState::Up,
            1 => LinkState::Down(DownReason::Admin),
            2 => LinkState::Down(DownReason::NoCarrier),
            _ => LinkState::Down(DownReason::DeviceGone),
        }
    }

    /// Asks the kernel (two ioctls): gone when `dev`'s index no longer is
    /// `ifindex`, else admin state and carrier. Stores and returns it.
    pub(crate) fn refresh(
        &self,
        netdev: &crate::sys::ethtool::NetdevIoctl,
        dev: &str,
        ifindex: u32,
    ) -> LinkState {
        if !self.is_gone() && !netdev_present(netdev, dev, ifindex) {
            self.mark_gone();
        }
        if self.is_gone() {
            return LinkState::Down(DownReason::DeviceGone);
        }
        let code = match netdev.flags(dev) {
            Ok(f) if f & libc::IFF_UP as u32 == 0 => 1,
            Ok(f) if f & libc::IFF_RUNNING as u32 == 0 => 2,
            Ok(_) => 0,
            Err(_) => 3,
        };
        self.state.store(code, std::sync::atomic::Ordering::Relaxed);
        self.link()
    }
}

/// True when netdev `dev` still exists with index `ifindex` (one ioctl).
pub(crate) fn netdev_present(
    netdev: &crate::sys::ethtool::NetdevIoctl,
    dev: &str,
    ifindex: u32,
) -> bool {
    netdev.index_of(dev).ok() == Some(ifindex)
}

/// Offloads an egress port can take as they are, so the switch knows
/// whether it must segment or checksum in software before transmit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadCaps {
    /// Accepts frames whose L4 checksum is only the pseudo-header sum.
    pub partial_csum: bool,
    /// Accepts TCP GSO frames (TSO4/TSO6).
    pub tso: bool,
    /// Accepts UDP GSO frames (USO).
    pub uso: bool,
}

/// Port backend kind, as named in `add-port ... type=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortKind {
    /// In-process ring pair (tests, benches).
    Memory,
    /// /dev/net/tun TAP device.
    Tap,
    /// AF_XDP socket on a netdev.
    AfXdp,
    /// AF_PACKET TPACKET_V3 rings on a netdev.
    AfPacket,
    /// VXLAN tunnel endpoint.
    Vxlan,
}

impl PortKind {
    /// Name used in the CLI and API.
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Memory => "memory",
            PortKind::Tap => "tap",
            PortKind::AfXdp => "afxdp",
            PortKind::AfPacket => "afpacket",
            PortKind::Vxlan => "vxlan",
        }
    }
}

/// Errors of port I/O.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The device is gone (e.g. its namespace was deleted).
    #[error("port \"{port}\": device gone")]
    DeviceGone {
        /// Port name.
        port: String,
    },
    /// A system call failed.
    #[error("port \"{port}\": {op} failed")]
    Io {
        /// Port name.
        port: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A switch port backend.
pub trait Port: Send + Sync {
    /// Port name (at most 15 bytes, as a Linux interface name).
    fn name(&self) -> &str;

    /// Backend kind.
    fn kind(&self) -> PortKind;

    /// Number of receive queues (each polled by one PMD).
    fn rx_queues(&self) -> usize {
        1
    }

    /// Number of transmit queues.
    fn tx_queues(&self) -> usize {
        1
    }

    /// Receives up to `out.room()` packets from queue `rxq` into `out`,
    /// taking buffers from `pool`. Returns how many were added. Never blocks.
    fn rx_burst(
        &self,
        rxq: usize,
        pool: &mut PacketPool,
        out: &mut Batch,
    ) -> Result<usize, PortError>;

    /// Sends every packet of `pkts` on queue `txq % tx_queues()`, leaving
    /// `pkts` empty: packets not sent are counted as drops in the port's
    /// stats. All buffers go back to `pool`. Returns how many were sent.
    fn tx_burst(
        &self,
        txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError>;

    /// A descriptor that becomes readable when queue `rxq` has packets, for
    /// PMD threads that sleep when idle. None: the port must be polled.
    fn rx_fd(&self, rxq: usize) -> Option<RawFd>;

    /// Current link state, as cheap as an atomic load: PMDs ask on every
    /// poll. Ports whose state takes system calls to read return what
    /// [`Port::health_check`] last found (plus their own I/O errors).
    fn link(&self) -> LinkState;

    /// A slower check of the underlying device (e.g. whether a container
    /// namespace still exists), run by the switch's maintenance about once
    /// a second, never by a PMD. Returns the link state afterwards.
    fn health_check(&self) -> LinkState {
        self.link()
    }

    /// MAC address of the interface the port represents.
    fn mac(&self) -> [u8; 6];

    /// MTU in bytes (L3, as `ip link` shows it).
    fn mtu(&self) -> u32;

    /// What the port accepts without software segmentation/checksum.
    fn offload_caps(&self) -> OffloadCaps {
        OffloadCaps::default()
    }

    /// Counters.
    fn stats(&self) -> PortStats;

    /// Tunnel settings and per-VTEP counters, for tunnel ports.
    fn tunnel_info(&self) -> Option<TunnelInfo> {
        None
    }
}
