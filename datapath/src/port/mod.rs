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

/// A link state kept for the hot path: PMDs ask a port's `link()` on every
/// poll and flush, so ports whose state costs system calls to read keep
/// it here, refreshed by `health_check` (about once a second) and by their
/// own I/O errors.
#[derive(Debug)]
pub struct LinkCache(std::sync::atomic::AtomicU8);

impl LinkCache {
    /// A cache holding `state`.
    pub fn new(state: LinkState) -> Self {
        LinkCache(std::sync::atomic::AtomicU8::new(Self::encode(state)))
    }

    /// The cached state.
    #[inline]
    pub fn get(&self) -> LinkState {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => LinkState::Up,
            1 => LinkState::Down(DownReason::Admin),
            2 => LinkState::Down(DownReason::DeviceGone),
            3 => LinkState::Down(DownReason::NoCarrier),
            _ => LinkState::Down(DownReason::IoError),
        }
    }

    /// Stores `state` and returns it.
    pub fn set(&self, state: LinkState) -> LinkState {
        self.0
            .store(Self::encode(state), std::sync::atomic::Ordering::Relaxed);
        state
    }

    fn encode(state: LinkState) -> u8 {
        match state {
            LinkState::Up => 0,
            LinkState::Down(DownReason::Admin) => 1,
            LinkState::Down(DownReason::DeviceGone) => 2,
            LinkState::Down(DownReason::NoCarrier) => 3,
            LinkState::Down(DownReason::IoError) => 4,
        }
    }
}

/// The state of netdev `dev` as the kernel reports it (two ioctls): gone
/// when its index no longer matches `ifindex` (deleted, or a new device
/// under the old name), else admin state and carrier. For ports attached
/// to an existing netdev (AF_XDP, AF_PACKET); their `health_check` runs it.
pub(crate) fn probe_netdev_link(
    netdev: &crate::sys::ethtool::NetdevIoctl,
    dev: &str,
    ifindex: u32,
) -> LinkState {
    if netdev.index_of(dev).ok() != Some(ifindex) {
        return LinkState::Down(DownReason::DeviceGone);
    }
    match netdev.flags(dev) {
        Ok(f) if f & libc::IFF_UP as u32 == 0 => LinkState::Down(DownReason::Admin),
        Ok(f) if f & libc::IFF_RUNNING as u32 == 0 => LinkState::Down(DownReason::NoCarrier),
        Ok(_) => LinkState::Up,
        Err(_) => LinkState::Down(DownReason::DeviceGone),
    }
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
