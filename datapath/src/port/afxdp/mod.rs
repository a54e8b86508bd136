//! AF_XDP port (`type=afxdp dev=IFACE`): one AF_XDP socket per rx queue of
//! an existing netdev, fed by a five-instruction XDP program that redirects
//! each frame to the socket of its queue through an XSKMAP
//! (Documentation/networking/af_xdp.rst; program and attach in
//! [`crate::sys::bpf`]).
//!
//! Attach order: switch off the offloads AF_XDP cannot carry (see
//! [`PeerOffloads`]), create and bind the sockets, fill the XSKMAP, load the
//! program, attach it through a bpf_link — native first, generic as
//! fallback (`mode=auto`). Dropping the port detaches the program (the link
//! is an fd), closes the sockets and restores the offloads.
//!
//! Frames at most [`SINGLE_BUFFER_MTU`] bytes of MTU use single-buffer XDP;
//! above that the program is loaded with `BPF_F_XDP_HAS_FRAGS` and the
//! sockets bound with `XDP_USE_SG` (multi-buffer AF_XDP, Linux 6.6+), or the
//! port refuses to attach with an error naming the limit.

mod csum;
mod offload;
mod ring;
mod xsk;

pub use offload::{OffloadChange, PeerNapi, PeerOffloads, THREADED_OFF_PPS, THREADED_ON_PPS};
pub use xsk::{BindMode, FRAME_SIZE, NUM_FRAMES};

use super::{LinkState, Port, PortCounters, PortError, PortKind, PortStats};
use super::{NetdevLink, OffloadCaps};
use crate::packet::{Batch, PacketPool};
use crate::sys::bpf::{BpfError, XdpLink, XdpMode, XdpProgram, XskMap};
use crate::sys::ethtool::NetdevIoctl;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use xsk::Xsk;

/// Largest MTU a veth accepts for native single-buffer XDP (a page minus
/// XDP headroom and `skb_shared_info`; KERNEL-NOTES.md measured 3506).
pub const SINGLE_BUFFER_MTU: u32 = 3506;

/// Requested attach mode (`mode=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native, falling back to generic.
    #[default]
    Auto,
    /// Native only (tries zero-copy, falls back to copy).
    Native,
    /// Generic (skb) only.
    Generic,
}

impl AttachMode {
    /// Parses `auto|native|generic`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(AttachMode::Auto),
            "native" => Some(AttachMode::Native),
            "generic" => Some(AttachMode::Generic),
            _ => None,
        }
    }
}

/// Settings of an AF_XDP port.
#[derive(Clone, Debug)]
pub struct AfXdpConfig {
    /// Port name (defaults to the device name).
    pub name: String,
    /// Netdev to attach to.
    pub dev: String,
    /// Attach mode.
    pub mode: AttachMode,
    /// Rx queues (one socket each), `queues=N`.
    pub queues: u32,
    /// Switch off the peer's checksum/TSO offloads (default true); false
    /// leaves every device setting alone, `peer_napi` included.
    pub fix_offloads: bool,
    /// Where the veth peer runs its receive (`peer-napi=auto|threaded|inline`,
    /// default auto; see [`PeerNapi`]).
    pub peer_napi: PeerNapi,
}

impl AfXdpConfig {
    /// Defaults for `dev`: auto mode, one queue, offloads fixed.
    pub fn new(dev: &str) -> Self {
        AfXdpConfig {
            name: dev.to_string(),
            dev: dev.to_string(),
            mode: AttachMode::Auto,
            queues: 1,
            fix_offloads: true,
            peer_napi: PeerNapi::Auto,
        }
    }
}

impl AfXdpConfig {
    /// Builds a config from `add-port NAME type=afxdp key=value...` options:
    /// `dev=IFACE` (required), `mode=auto|native|generic`, `queues=N`,
    /// `fix-offloads=true|false`, `peer-napi=auto|threaded|inline`.
    pub fn from_options<'a>(
        name: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, AfXdpError> {
        let mut cfg = AfXdpConfig::new("");
        cfg.name = name.to_string();
        let bad = |key: &str, value: &str| AfXdpError::BadOption {
            port: name.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        };
        for (key, value) in options {
            match key {
                "type" => {}
                "dev" => cfg.dev = value.to_string(),
                "mode" => cfg.mode = AttachMode::parse(value).ok_or_else(|| bad(key, value))?,
                "queues" => {
                    cfg.queues = value
                        .parse()
                        .ok()
                        .filter(|q| (1..=64).contains(q))
                        .ok_or_else(|| bad(key, value))?
                }
                "fix-offloads" => cfg.fix_offloads = value.parse().map_err(|_| bad(key, value))?,
                "peer-napi" => {
                    cfg.peer_napi = PeerNapi::parse(value).ok_or_else(|| bad(key, value))?
                }
                _ => return Err(bad(key, value)),
            }
        }
        if cfg.dev.is_empty() {
            return Err(bad("dev", ""));
        }
        Ok(cfg)
    }
}

/// Errors of AF_XDP port setup.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// An option was unknown or had a bad value.
    #[error("port \"{port}\": bad option {key}={value:?} (dev=IFACE, mode=auto|native|generic, queues=1..64, fix-offloads=true|false, peer-napi=auto|threaded|inline)")]
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
    /// `queues` was 0.
    #[error("port \"{port}\": queues must be at least 1")]
    NoQueues {
        /// Port name.
        port: String,
    },
    /// MTU above the single-buffer limit and the kernel lacks multi-buffer
    /// AF_XDP.
    #[error(
        "port \"{port}\": MTU {mtu} of \"{dev}\" exceeds the AF_XDP single-buffer limit of \
         {limit} and this kernel refused multi-buffer AF_XDP (XDP_USE_SG); lower the MTU to {limit}"
    )]
    MtuTooLarge {
        /// Port name.
        port: String,
        /// Device.
        dev: String,
        /// Its MTU.
        mtu: u32,
        /// The limit.
        limit: u32,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A socket setup step failed (EBUSY on bind: another socket already
    /// holds that queue).
    #[error("port \"{port}\": AF_XDP socket on \"{dev}\" queue {queue}: {op} failed")]
    Socket {
        /// Port name.
        port: String,
        /// Device.
        dev: String,
        /// Queue.
        queue: u32,
        /// Step.
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A bpf step failed.
    #[error("port \"{port}\": XDP program on \"{dev}\"")]
    Bpf {
        /// Port name.
        port: String,
        /// Device.
        dev: String,
        /// Cause.
        #[source]
        source: BpfError,
    },
}

/// Attach attempts (20 ms apart) while the device still carries the link of
/// a port that was just dropped or a process that was just killed: the
/// kernel releases it when that process's files are closed.
const LINK_BUSY_RETRIES: u32 = 50;

fn attach_retrying(prog: &XdpProgram, ifindex: u32, mode: XdpMode) -> Result<XdpLink, BpfError> {
    let mut tries = 0;
    loop {
        match XdpLink::attach(prog, ifindex, mode) {
            Err(BpfError::LinkCreate { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EBUSY | libc::EEXIST))
                    && tries + 1 < LINK_BUSY_RETRIES =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// An AF_XDP port.
pub struct AfXdpPort {
    // Drop order: detach the program first, so no frame is redirected to a
    // closing socket, then the map and program, the sockets, and finally
    // restore the offloads.
    link: XdpLink,
    _prog: XdpProgram,
    _map: XskMap,
    queues: Vec<Xsk>,
    offloads: PeerOffloads,
    name: String,
    dev: String,
    ifindex: u32,
    mac: [u8; 6],
    mtu: u32,
    netdev: NetdevIoctl,
    /// Link state for the hot path; whether the device is gone.
    netlink: NetdevLink,
    csum_fixed: AtomicU64,
    counters: PortCounters,
}

impl std::fmt::Debug for AfXdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AfXdpPort")
            .field("name", &self.name)
            .field("dev", &self.dev)
            .field("mode", &self.link.mode())
            .field("queues", &self.queues)
            .finish()
    }
}

impl AfXdpPort {
    /// Attaches to `cfg.dev`.
    pub fn open(cfg: &AfXdpConfig) -> Result<Self, AfXdpError> {
        let port = cfg.name.clone();
        let dev = cfg.dev.clone();
        if cfg.queues == 0 {
            return Err(AfXdpError::NoQueues { port });
        }
        let netdev = NetdevIoctl::new().map_err(|source| AfXdpError::NoDevice {
            port: port.clone(),
            dev: dev.clone(),
            source,
        })?;
        let no_dev = |source| AfXdpError::NoDevice {
            port: port.clone(),
            dev: dev.clone(),
            source,
        };
        let ifindex = netdev.index_of(&dev).map_err(no_dev)?;
        let mtu = netdev.mtu(&dev).map_err(no_dev)?;
        let mac = netdev.mac(&dev).map_err(no_dev)?;
        let multi_buffer = mtu > SINGLE_BUFFER_MTU;

        let offloads = if cfg.fix_offloads {
            PeerOffloads::disable(&port, &dev, ifindex, cfg.peer_napi)
        } else {
            PeerOffloads::default()
        };

        let bpf = |source| AfXdpError::Bpf {
            port: port.clone(),
            dev: dev.clone(),
            source,
        };
        let map = XskMap::new(cfg.queues).map_err(bpf)?;
        let mut queues = Vec::with_capacity(cfg.queues as usize);
        for q in 0..cfg.queues {
            let xsk = Xsk::new(ifindex, q, cfg.mode == AttachMode::Native, multi_buffer).map_err(
                |e| {
                    if multi_buffer && e.op.starts_with("bind") {
                        AfXdpError::MtuTooLarge {
                            port: port.clone(),
                            dev: dev.clone(),
                            mtu,
                            limit: SINGLE_BUFFER_MTU,
                            source: e.source,
                        }
                    } else {
                        AfXdpError::Socket {
                            port: port.clone(),
                            dev: dev.clone(),
                            queue: q,
                            op: e.op,
                            source: e.source,
                        }
                    }
                },
            )?;
            map.set(q, xsk.fd()).map_err(bpf)?;
            queues.push(xsk);
        }
        let prog = XdpProgram::load_redirect(&map, multi_buffer).map_err(bpf)?;
        let link = match cfg.mode {
            AttachMode::Native => attach_retrying(&prog, ifindex, XdpMode::Native),
            AttachMode::Generic => attach_retrying(&prog, ifindex, XdpMode::Generic),
            AttachMode::Auto => attach_retrying(&prog, ifindex, XdpMode::Native).or_else(|e| {
                tracing::info!(port, error = %e, "native XDP attach failed, trying generic");
                attach_retrying(&prog, ifindex, XdpMode::Generic)
            }),
        };
        let link = link.map_err(|e| match e {
            BpfError::LinkCreate { source, .. } if source.raw_os_error() == Some(libc::ERANGE) => {
                AfXdpError::MtuTooLarge {
                    port: port.clone(),
                    dev: dev.clone(),
                    mtu,
                    limit: SINGLE_BUFFER_MTU,
                    source,
                }
            }
            other => bpf(other),
        })?;
        tracing::info!(
            port,
            dev,
            mode = link.mode().name(),
            bind = ?queues[0].bind_mode(),
            multi_buffer,
            "AF_XDP port attached"
        );
        let netlink = NetdevLink::new(&netdev, &dev, ifindex);
        Ok(AfXdpPort {
            link,
            _prog: prog,
            _map: map,
            queues,
            offloads,
            name: port,
            dev,
            ifindex,
            mac,
            mtu,
            netdev,
            netlink,
            csum_fixed: AtomicU64::new(0),
            counters: PortCounters::default(),
        })
    }

    /// The mode the program was attached in.
    pub fn xdp_mode(&self) -> XdpMode {
        self.link.mode()
    }

    /// How the sockets are bound (copy or zero-copy).
    pub fn bind_mode(&self) -> BindMode {
        self.queues[0].bind_mode()
    }

    /// Offloads switched off on attach (restored on drop).
    pub fn offload_changes(&self) -> &[OffloadChange] {
        self.offloads.changes()
    }

    /// True when the device's veth peer was found and handled.
    pub fn peer_found(&self) -> bool {
        self.offloads.peer_found()
    }

    /// The peer's NAPI mode when the port manages it (`peer-napi=auto` or
    /// `threaded` and a peer found): (threaded now, mode changes so far).
    pub fn peer_napi(&self) -> Option<(bool, u64)> {
        self.offloads.peer_napi()
    }

    /// Received frames whose partial L4 checksum was completed in software.
    pub fn csum_fixed(&self) -> u64 {
        self.csum_fixed.load(Ordering::Relaxed)
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

    fn queue(&self, q: usize) -> &Xsk {
        &self.queues[q % self.queues.len()]
    }
}

impl Port for AfXdpPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PortKind {
        PortKind::AfXdp
    }

    fn rx_queues(&self) -> usize {
        self.queues.len()
    }

    fn tx_queues(&self) -> usize {
        self.queues.len()
    }

    fn rx_burst(
        &self,
        rxq: usize,
        pool: &mut PacketPool,
        out: &mut Batch,
    ) -> Result<usize, PortError> {
        if self.netlink.is_gone() {
            return Err(self.gone_error());
        }
        let r = self.queue(rxq).rx_burst(pool, out);
        self.counters.rx(r.packets, r.bytes);
        if r.dropped != 0 {
            self.counters.rx_dropped(r.dropped);
        }
        if r.csum_fixed != 0 {
            self.csum_fixed.fetch_add(r.csum_fixed, Ordering::Relaxed);
        }
        if r.check_device && self.queue(rxq).take_error().is_some() && !self.device_present() {
            return Err(self.gone_error());
        }
        Ok(r.packets as usize)
    }

    fn tx_burst(
        &self,
        txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError> {
        if self.netlink.is_gone() {
            let n = pkts.len() as u64;
            pool.free_all(pkts.drain());
            self.counters.tx_dropped(n);
            return Err(self.gone_error());
        }
        match self.queue(txq).tx_burst(pkts, pool, &self.counters) {
            Ok(n) => Ok(n as usize),
            Err(errno) => {
                self.counters.tx_error(1);
                if !self.device_present() {
                    return Err(self.gone_error());
                }
                Err(PortError::Io {
                    port: self.name.clone(),
                    op: "AF_XDP tx kick",
                    source: std::io::Error::from_raw_os_error(errno),
                })
            }
        }
    }

    fn rx_fd(&self, rxq: usize) -> Option<RawFd> {
        Some(self.queue(rxq).fd())
    }

    fn link(&self) -> LinkState {
        self.netlink.link()
    }

    fn health_check(&self) -> LinkState {
        // `peer-napi=auto` samples the port's packet rate here (every 200 ms
        // in vswitchd); see PeerNapi.
        let s = self.counters.snapshot();
        self.offloads
            .tune(&self.name, s.rx_packets.saturating_add(s.tx_packets));
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
        // Partial checksums are completed in tx_burst; GSO cannot be carried.
        OffloadCaps {
            partial_csum: true,
            tso: false,
            uso: false,
        }
    }

    fn stats(&self) -> PortStats {
        let mut s = self.counters.snapshot();
        // Frames the kernel could not hand to a socket never reach rx_burst:
        // add its own counters.
        for q in &self.queues {
            let (rx, tx) = q.kernel_drops();
            s.rx_dropped += rx;
            s.tx_errors += tx;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_build_a_config() {
        let c = AfXdpConfig::from_options(
            "p1",
            [
                ("type", "afxdp"),
                ("dev", "veth0"),
                ("mode", "generic"),
                ("queues", "4"),
            ],
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.dev.as_str()), ("p1", "veth0"));
        assert_eq!(
            (c.mode, c.queues, c.fix_offloads, c.peer_napi),
            (AttachMode::Generic, 4, true, PeerNapi::Auto)
        );
        let c = AfXdpConfig::from_options("p1", [("dev", "v0"), ("peer-napi", "inline")]).unwrap();
        assert_eq!(c.peer_napi, PeerNapi::Inline);
    }

    #[test]
    fn bad_options_name_the_port_and_the_option() {
        for opts in [
            vec![("dev", "v0"), ("mode", "turbo")],
            vec![("dev", "v0"), ("queues", "0")],
            vec![("dev", "v0"), ("colour", "red")],
            vec![("dev", "v0"), ("peer-napi", "yes")],
            vec![("mode", "auto")],
        ] {
            let e = AfXdpConfig::from_options("p9", opts).unwrap_err();
            assert!(matches!(e, AfXdpError::BadOption { .. }));
            assert!(e.to_string().contains("p9"), "{e}");
        }
    }
}
