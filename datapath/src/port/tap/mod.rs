//! TAP ports: a Linux TAP device (`/dev/net/tun`, IFF_TAP|IFF_NO_PI) whose
//! other end is a container's (or the host's) network interface.
//!
//! With offloads on, the device is opened with `IFF_VNET_HDR` and
//! `TUNSETOFFLOAD` (checksum, TSO4/6, TSO-ECN, USO4/6 where accepted), so
//! the container's TCP stack hands over whole 64 KiB GSO frames with a
//! partial checksum, and frames written to it may be GSO frames too: a TCP
//! segment crosses the switch as one buffer (Documentation/networking/
//! tuntap.rst; virtio spec 1.1 §5.1.6 for the header, see [`vnet`]).
//!
//! Attaching a container ([`TapPort::create`] with `netns`): the device is
//! created in the switch's namespace under a unique temporary name, given
//! its MAC and MTU, moved into the container's namespace and renamed there
//! in one `RTM_SETLINK`, then given its addresses (IPv6 without DAD) and
//! brought up from a helper thread inside the namespace. Container ports
//! are persistent (`TUNSETPERSIST`): if the switch dies the interface, its
//! addresses and routes stay, and [`TapPort::reattach`] picks it up again
//! by name. [`TapPort::destroy`] removes it for good.
//!
//! I/O ([`TapIo`], see `burst.rs`): by default one io_uring submission per
//! burst of reads or writes (`uring.rs`), else one non-blocking `read`/
//! `write` per frame on the queue's fd. Either way the vnet header is read
//! into and written from the packet headroom right in front of the frame,
//! so there is no copy besides the kernel's. A device that disappears
//! (EBADFD/ENODEV) takes the port down with a counted reason;
//! [`TapPort::check_device`] catches a deleted namespace on the control
//! path.

mod burst;
mod device;
mod uring;
pub mod vnet;

use self::device::{random_mac, tun_flags, TunQueue};
use self::uring::UringQueue;
use self::vnet::VNET_HDR_LEN;
use super::{
    DownReason, LinkState, OffloadCaps, Port, PortCounters, PortError, PortKind, PortStats,
};
use crate::packet::{Batch, PacketPool, SizeClass};
use crate::sys::netlink::{LinkChange, NetlinkError, RtNetlink, IFF_UP};
use crate::sys::netns::{in_named_netns, netns_identity, NetnsError, NetnsHandle};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed,
};

/// Most queues a TAP port may have (the kernel's limit is 256; a switch
/// with a few PMD threads never needs more).
pub const MAX_QUEUES: usize = 16;

/// Interface name a container port gets when none is configured.
pub const DEFAULT_CONTAINER_IFNAME: &str = "eth0";

/// Bytes a VLAN tag may add to an MTU-sized frame plus its Ethernet header.
const L2_OVERHEAD: usize = 14 + 4;

/// How a TAP port moves frames between its queues and the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
///
/// Measured through two TAP ports with a test forwarder (Linux 6.18, 2
/// vCPU, interleaved runs): io_uring moved 1.3× the TCP throughput of plain
/// calls with MTU-sized frames and the same with 64 KiB GSO frames, so it
/// is the default.
pub enum TapIo {
    /// One non-blocking `read`/`write` per frame.
    Syscalls,
    /// One io_uring submission per burst (falls back to `Syscalls` when
    /// the kernel has no io_uring or refuses `RWF_NOWAIT` on TUN).
    #[default]
    IoUring,
}

/// Configuration of a TAP port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapConfig {
    /// Port name (at most 15 bytes).
    pub name: String,
    /// Network namespace (as `ip netns` names it) to put the interface in;
    /// None keeps it in the switch's own namespace.
    pub netns: Option<String>,
    /// Interface name; default `eth0` with a namespace, else the port name.
    pub ifname: Option<String>,
    /// MAC of the interface; random locally administered when None.
    pub mac: Option<[u8; 6]>,
    /// MTU; None keeps the kernel's default (1500).
    pub mtu: Option<u32>,
    /// IPv4 addresses with prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with prefix lengths (added without DAD).
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// Number of queues (`IFF_MULTI_QUEUE` when above 1).
    pub queues: usize,
    /// Checksum/TSO/USO offloads through the vnet header. Off: plain
    /// frames, no GSO, checksums complete.
    pub offloads: bool,
    /// Keep the interface when the port is dropped (container ports).
    pub persist: bool,
    /// Copy received frames that fit a standard buffer out of the 64 KiB
    /// receive buffer, so big buffers stay available for GSO frames.
    pub copy_small_frames: bool,
    /// Frame I/O method.
    pub io: TapIo,
}

impl TapConfig {
    /// A host-side TAP named `name`: offloads on, one queue, not persistent.
    pub fn new(name: &str) -> Self {
        TapConfig {
            name: name.to_owned(),
            netns: None,
            ifname: None,
            mac: None,
            mtu: None,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            queues: 1,
            offloads: true,
            persist: false,
            copy_small_frames: true,
            io: TapIo::default(),
        }
    }

    /// A container port: interface `eth0` in `netns`, persistent.
    pub fn container(name: &str, netns: &str) -> Self {
        TapConfig {
            netns: Some(netns.to_owned()),
            persist: true,
            ..TapConfig::new(name)
        }
    }

    /// The interface name the device gets.
    pub fn ifname(&self) -> &str {
        match (&self.ifname, &self.netns) {
            (Some(n), _) => n,
            (None, Some(_)) => DEFAULT_CONTAINER_IFNAME,
            (None, None) => &self.name,
        }
    }

    fn validate(&self) -> Result<(), TapError> {
        let bad = |reason: String| TapError::InvalidConfig {
            port: self.name.clone(),
            reason,
        };
        if !valid_ifname(&self.name) {
            return Err(bad(format!(
                "port name \"{}\" is not a valid interface name (1-15 bytes, no '/', ':' or spaces)",
                self.name
            )));
        }
        if !valid_ifname(self.ifname()) {
            return Err(bad(format!(
                "ifname \"{}\" is not a valid interface name (1-15 bytes, no '/', ':' or spaces)",
                self.ifname()
            )));
        }
        if self.queues == 0 || self.queues > MAX_QUEUES {
            return Err(bad(format!(
                "queues={} (must be 1..={MAX_QUEUES})",
                self.queues
            )));
        }
        if let Some(mtu) = self.mtu {
            if !(68..=65_521).contains(&mtu) {
                return Err(bad(format!("mtu={mtu} (must be 68..=65521)")));
            }
        }
        if let Some(mac) = self.mac {
            if mac[0] & 1 != 0 || mac == [0; 6] {
                return Err(bad(format!(
                    "mac {} is not a unicast address",
                    fmt_mac(&mac)
                )));
            }
        }
        if let Some((a, p)) = self.ipv4.iter().find(|(_, p)| *p > 32) {
            return Err(bad(format!("ipv4 {a}/{p}: prefix above 32")));
        }
        if let Some((a, p)) = self.ipv6.iter().find(|(_, p)| *p > 128) {
            return Err(bad(format!("ipv6 {a}/{p}: prefix above 128")));
        }
        Ok(())
    }

    fn netns_label(&self) -> String {
        self.netns.clone().unwrap_or_else(|| "(switch)".to_owned())
    }
}

/// Linux `dev_valid_name`: 1..15 bytes, not `.`/`..`, no `/`, `:` or
/// whitespace.
fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() < libc::IFNAMSIZ
        && n != "."
        && n != ".."
        && !n
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

fn fmt_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A temporary interface name unique to this process and call: the device
/// is born under it in the switch's namespace, so a name taken there (or
/// in the target namespace) cannot collide with the creation itself.
fn temp_ifname() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Relaxed) & 0xffff;
    // "vst" + up to 6 hex digits of pid (pid_max ≤ 2^22) + 4 hex digits.
    format!("vst{:x}{:04x}", std::process::id() & 0x3f_ffff, n)
}

/// Errors of creating, re-attaching and destroying TAP ports.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The configuration cannot work.
    #[error("port \"{port}\": invalid configuration: {reason}")]
    InvalidConfig {
        /// Port name.
        port: String,
        /// What is wrong.
        reason: String,
    },
    /// The namespace does not exist.
    #[error("port \"{port}\": netns \"{netns}\" does not exist")]
    NetnsMissing {
        /// Port name.
        port: String,
        /// Namespace name.
        netns: String,
    },
    /// The namespace could not be used.
    #[error("port \"{port}\": cannot use netns \"{netns}\"")]
    Netns {
        /// Port name.
        port: String,
        /// Namespace name.
        netns: String,
        /// Cause.
        #[source]
        source: NetnsError,
    },
    /// The interface name is taken in the target namespace.
    #[error("port \"{port}\": interface name \"{ifname}\" is already in use in netns \"{netns}\"")]
    NameBusy {
        /// Port name.
        port: String,
        /// Interface name.
        ifname: String,
        /// Namespace name.
        netns: String,
    },
    /// Re-attach: no interface of that name.
    #[error("port \"{port}\": no interface \"{ifname}\" in netns \"{netns}\" to re-attach to")]
    NotFound {
        /// Port name.
        port: String,
        /// Interface name.
        ifname: String,
        /// Namespace name.
        netns: String,
    },
    /// Re-attach: the interface exists but is not a TAP with these flags.
    #[error("port \"{port}\": interface \"{ifname}\" in netns \"{netns}\" is not a TAP device with matching flags (queues/offloads)")]
    NotATap {
        /// Port name.
        port: String,
        /// Interface name.
        ifname: String,
        /// Namespace name.
        netns: String,
    },
    /// Re-attach: another process (or port) holds the device's queue.
    #[error("port \"{port}\": TAP \"{ifname}\" in netns \"{netns}\" is attached elsewhere")]
    Busy {
        /// Port name.
        port: String,
        /// Interface name.
        ifname: String,
        /// Namespace name.
        netns: String,
    },
    /// Missing privilege.
    #[error("port \"{port}\": {op}: permission denied (needs CAP_NET_ADMIN)")]
    Permission {
        /// Port name.
        port: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A TUN/TAP system call failed.
    #[error("port \"{port}\": {op} failed")]
    Tun {
        /// Port name.
        port: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An rtnetlink request failed.
    #[error("port \"{port}\": {op} failed")]
    Netlink {
        /// Port name.
        port: String,
        /// What was being done.
        op: &'static str,
        /// Cause.
        #[source]
        source: NetlinkError,
    },
}

/// TAP-specific counters (snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames received with a pending segmentation (GSO type set).
    pub rx_gso_frames: u64,
    /// Frames received with only a partial checksum (NEEDS_CSUM).
    pub rx_partial_csum: u64,
    /// Small frames moved out of a big receive buffer.
    pub rx_small_copied: u64,
    /// Frames dropped on receive: unparseable vnet header or too short.
    pub rx_bad_header: u64,
    /// Frames dropped on receive: did not fit the receive buffer.
    pub rx_truncated: u64,
    /// Receive bursts cut short because the pool had no buffer.
    pub rx_no_buffer: u64,
    /// GSO frames sent.
    pub tx_gso_frames: u64,
    /// Frames dropped on transmit: GSO or partial checksum on a port
    /// without offloads (the switch must segment/checksum first).
    pub tx_offload_unsupported: u64,
    /// Frames dropped on transmit: the container set its interface down.
    pub tx_link_down: u64,
    /// Times the port went down because its device disappeared.
    pub device_gone: u64,
}

#[derive(Debug, Default)]
struct TapCounters {
    rx_gso_frames: AtomicU64,
    rx_partial_csum: AtomicU64,
    rx_small_copied: AtomicU64,
    rx_bad_header: AtomicU64,
    rx_truncated: AtomicU64,
    rx_no_buffer: AtomicU64,
    tx_gso_frames: AtomicU64,
    tx_offload_unsupported: AtomicU64,
    tx_link_down: AtomicU64,
    device_gone: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.fetch_add(n, Relaxed);
    }
}

const LINK_UP: u8 = 0;
const LINK_GONE: u8 = 1;

/// A TAP port.
#[derive(Debug)]
pub struct TapPort {
    name: String,
    ifname: String,
    netns: Option<String>,
    /// Identity of the namespace when the port was set up.
    netns_id: Option<(u64, u64)>,
    queues: Vec<TunQueue>,
    vnet_hdr: bool,
    caps: OffloadCaps,
    mac: [u8; 6],
    mtu: u32,
    persist: bool,
    rx_class: SizeClass,
    copy_small_frames: bool,
    io: TapIo,
    /// One ring per queue when `io` is `IoUring` and the ring could be made.
    urings: Vec<Option<UringQueue>>,
    /// Set when the kernel refused io_uring TUN I/O: plain calls from then.
    uring_off: AtomicBool,
    /// Reads to submit in the next io_uring burst, per queue (only the
    /// queue's PMD touches it).
    uring_window: Vec<AtomicUsize>,
    link: AtomicU8,
    counters: PortCounters,
    tap: TapCounters,
}

/// Errnos meaning the device behind the fd is gone (unregistered, e.g.
/// its namespace was deleted): `tun_get` finds no device → EBADFD.
fn is_device_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBADFD) | Some(libc::ENODEV))
}

impl TapPort {
    /// Creates the device (see the module doc for the steps). On any
    /// error nothing is left behind: the device is not yet persistent, so
    /// closing its queues deletes it wherever it is.
    pub fn create(cfg: &TapConfig) -> Result<TapPort, TapError> {
        cfg.validate()?;
        let port = cfg.name.as_str();
        let ns = cfg
            .netns
            .as_deref()
            .map(|n| NetnsHandle::open(n).map_err(|e| netns_error(cfg, e)))
            .transpose()?;
        let tmp = temp_ifname();
        let queues = open_queues(cfg, &tmp)?;
        let caps = configure_offloads(cfg, &queues[0])?;
        let mac = cfg.mac.unwrap_or_else(random_mac);

        let nl_err = |op: &'static str| {
            move |source: NetlinkError| TapError::Netlink {
                port: port.to_owned(),
                op,
                source,
            }
        };
        let mut rtnl = RtNetlink::open().map_err(nl_err("open rtnetlink"))?;
        let link = rtnl
            .link_by_name(&tmp)
            .map_err(nl_err("look up new TAP"))?
            .ok_or_else(|| TapError::Tun {
                port: port.to_owned(),
                op: "find the new TAP",
                source: io::Error::from_raw_os_error(libc::ENODEV),
            })?;
        rtnl.set_link(
            link.index,
            &LinkChange {
                mac: Some(mac),
                mtu: cfg.mtu,
                ..LinkChange::default()
            },
        )
        .map_err(nl_err("set MAC/MTU"))?;
        // Move and rename in one request: if the name is taken in the
        // target namespace the kernel refuses (EEXIST) and the device
        // stays here, to be deleted when the queues close.
        let change = LinkChange {
            name: Some(cfg.ifname().to_owned()),
            netns_fd: ns.as_ref().map(|n| n.fd().as_raw_fd()),
            ..LinkChange::default()
        };
        rtnl.set_link(link.index, &change).map_err(|e| {
            if e.errno() == Some(libc::EEXIST) || e.errno() == Some(libc::ENOTUNIQ) {
                TapError::NameBusy {
                    port: port.to_owned(),
                    ifname: cfg.ifname().to_owned(),
                    netns: cfg.netns_label(),
                }
            } else {
                nl_err(if ns.is_some() {
                    "move into netns and rename"
                } else {
                    "rename"
                })(e)
            }
        })?;
        drop(rtnl);

        match &ns {
            Some(h) => crate::sys::netns::in_netns(h, || configure_inside(cfg))
                .map_err(|e| netns_error(cfg, e))??,
            None => configure_inside(cfg)?,
        };
        drop(ns);

        if cfg.persist {
            queues[0]
                .set_persist(true)
                .map_err(|e| tun_error(cfg, "TUNSETPERSIST", e))?;
        }
        Ok(Self::from_parts(
            cfg,
            queues,
            caps,
            mac,
            cfg.mtu.unwrap_or(1500),
        ))
    }

    /// Re-opens an existing (persistent) TAP by its interface name inside
    /// its namespace, e.g. after a switch restart. Addresses, routes and
    /// link state are left as they are; MAC and MTU are read back.
    pub fn reattach(cfg: &TapConfig) -> Result<TapPort, TapError> {
        cfg.validate()?;
        let ifname = cfg.ifname();
        let (queues, link) = in_named_netns(cfg.netns.as_deref(), || {
            let mut rtnl = RtNetlink::open().map_err(|source| TapError::Netlink {
                port: cfg.name.clone(),
                op: "open rtnetlink",
                source,
            })?;
            let link = rtnl
                .link_by_name(ifname)
                .map_err(|source| TapError::Netlink {
                    port: cfg.name.clone(),
                    op: "look up interface",
                    source,
                })?
                .ok_or_else(|| TapError::NotFound {
                    port: cfg.name.clone(),
                    ifname: ifname.to_owned(),
                    netns: cfg.netns_label(),
                })?;
            // The tun file belongs to the namespace it is opened in, and
            // TUNSETIFF looks the name up there: open from inside.
            let queues = open_queues(cfg, ifname)?;
            Ok::<_, TapError>((queues, link))
        })
        .map_err(|e| netns_error(cfg, e))??;
        let caps = configure_offloads(cfg, &queues[0])?;
        queues[0]
            .set_persist(cfg.persist)
            .map_err(|e| tun_error(cfg, "TUNSETPERSIST", e))?;
        let mac = link.mac.unwrap_or([0; 6]);
        Ok(Self::from_parts(cfg, queues, caps, mac, link.mtu))
    }

    /// What `vswitchd` does for each configured TAP on start: re-attach
    /// the persistent interface left by a previous run, or create it when
    /// there is none. Returns the port and whether it was re-attached.
    pub fn create_or_reattach(cfg: &TapConfig) -> Result<(TapPort, bool), TapError> {
        match TapPort::reattach(cfg) {
            Ok(p) => Ok((p, true)),
            Err(TapError::NotFound { .. }) => TapPort::create(cfg).map(|p| (p, false)),
            Err(e) => Err(e),
        }
    }

    fn from_parts(
        cfg: &TapConfig,
        queues: Vec<TunQueue>,
        caps: OffloadCaps,
        mac: [u8; 6],
        mtu: u32,
    ) -> TapPort {
        let rx_class = if cfg.offloads {
            SizeClass::Gso
        } else {
            // Without offloads frames are at most MTU-sized; the container
            // may still raise its MTU, so never go below a jumbo buffer
            // for an MTU above standard.
            SizeClass::for_len(mtu as usize + L2_OVERHEAD).unwrap_or(SizeClass::Gso)
        };
        let urings = match cfg.io {
            // A ring that cannot be made (no io_uring, or disabled by
            // sysctl) leaves that queue on plain system calls.
            TapIo::IoUring => queues.iter().map(|_| UringQueue::new().ok()).collect(),
            TapIo::Syscalls => Vec::new(),
        };
        TapPort {
            name: cfg.name.clone(),
            ifname: cfg.ifname().to_owned(),
            netns: cfg.netns.clone(),
            netns_id: cfg.netns.as_deref().and_then(|n| netns_identity(n).ok()),
            queues,
            vnet_hdr: cfg.offloads,
            caps,
            mac,
            mtu,
            persist: cfg.persist,
            rx_class,
            copy_small_frames: cfg.copy_small_frames,
            io: cfg.io,
            urings,
            uring_off: AtomicBool::new(false),
            uring_window: (0..cfg.queues).map(|_| AtomicUsize::new(1)).collect(),
            link: AtomicU8::new(LINK_UP),
            counters: PortCounters::default(),
            tap: TapCounters::default(),
        }
    }

    /// Removes the interface for good (`del-port`): persistence off, then
    /// closing the queues deletes the device. A device already gone is
    /// not an error.
    pub fn destroy(self) -> Result<(), TapError> {
        match self.queues[0].set_persist(false) {
            Ok(()) => Ok(()),
            Err(e) if is_device_gone(&e) => Ok(()),
            Err(e) => Err(TapError::Tun {
                port: self.name.clone(),
                op: "TUNSETPERSIST off",
                source: e,
            }),
        }
        // `self` drops here: the queues close and the kernel unregisters
        // the now non-persistent device.
    }

    /// Control-path health check (a few system calls; call it from the
    /// main thread, e.g. once a second, never per packet). Takes the port
    /// down with a counted reason when its namespace is gone or was
    /// replaced by another of the same name.
    ///
    /// Needed because the data path only notices a deleted namespace when
    /// the kernel unregisters the device, and a queue re-attached from
    /// inside a namespace ([`TapPort::reattach`]) keeps that namespace
    /// alive: the tun file holds the namespace it was opened in.
    pub fn check_device(&self) -> LinkState {
        if let (Some(name), Some(id)) = (self.netns.as_deref(), self.netns_id) {
            match netns_identity(name) {
                Ok(now) if now == id => {}
                Ok(_) | Err(NetnsError::Missing { .. }) => self.mark_gone(),
                // Unreadable for another reason: not proof it is gone.
                Err(_) => {}
            }
        }
        self.link()
    }

    /// The interface name (inside its namespace).
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The namespace the interface lives in (None: the switch's).
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// True when the device survives the port being dropped.
    pub fn is_persistent(&self) -> bool {
        self.persist
    }

    /// True when frames carry a vnet header (offloads on).
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The I/O method actually in use (io_uring may have fallen back).
    pub fn io_mode(&self) -> TapIo {
        if self.io == TapIo::IoUring
            && !self.uring_off.load(Relaxed)
            && self.urings.iter().any(Option::is_some)
        {
            TapIo::IoUring
        } else {
            TapIo::Syscalls
        }
    }

    /// TAP-specific counters.
    pub fn tap_stats(&self) -> TapStats {
        let t = &self.tap;
        TapStats {
            rx_gso_frames: t.rx_gso_frames.load(Relaxed),
            rx_partial_csum: t.rx_partial_csum.load(Relaxed),
            rx_small_copied: t.rx_small_copied.load(Relaxed),
            rx_bad_header: t.rx_bad_header.load(Relaxed),
            rx_truncated: t.rx_truncated.load(Relaxed),
            rx_no_buffer: t.rx_no_buffer.load(Relaxed),
            tx_gso_frames: t.tx_gso_frames.load(Relaxed),
            tx_offload_unsupported: t.tx_offload_unsupported.load(Relaxed),
            tx_link_down: t.tx_link_down.load(Relaxed),
            device_gone: t.device_gone.load(Relaxed),
        }
    }

    fn is_gone(&self) -> bool {
        self.link.load(Relaxed) == LINK_GONE
    }

    /// Marks the port down because its device disappeared; counted once.
    fn mark_gone(&self) {
        if self.link.swap(LINK_GONE, Relaxed) != LINK_GONE {
            self.tap.device_gone.fetch_add(1, Relaxed);
        }
    }

    fn gone_error(&self) -> PortError {
        PortError::DeviceGone {
            port: self.name.clone(),
        }
    }
}

fn netns_error(cfg: &TapConfig, e: NetnsError) -> TapError {
    match e {
        NetnsError::Missing { name } => TapError::NetnsMissing {
            port: cfg.name.clone(),
            netns: name,
        },
        other => TapError::Netns {
            port: cfg.name.clone(),
            netns: cfg.netns_label(),
            source: other,
        },
    }
}

fn tun_error(cfg: &TapConfig, op: &'static str, e: io::Error) -> TapError {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => TapError::Permission {
            port: cfg.name.clone(),
            op,
            source: e,
        },
        _ => TapError::Tun {
            port: cfg.name.clone(),
            op,
            source: e,
        },
    }
}

/// Opens `cfg.queues` queues on interface `ifname` (created by the first
/// when it does not exist in the calling thread's namespace).
fn open_queues(cfg: &TapConfig, ifname: &str) -> Result<Vec<TunQueue>, TapError> {
    let flags = tun_flags(cfg.offloads, cfg.queues > 1);
    let mut queues = Vec::with_capacity(cfg.queues);
    for _ in 0..cfg.queues {
        let q = TunQueue::open(ifname, flags).map_err(|(op, e)| match e.raw_os_error() {
            Some(libc::EBUSY) => TapError::Busy {
                port: cfg.name.clone(),
                ifname: ifname.to_owned(),
                netns: cfg.netns_label(),
            },
            Some(libc::EINVAL) if op == "TUNSETIFF" => TapError::NotATap {
                port: cfg.name.clone(),
                ifname: ifname.to_owned(),
                netns: cfg.netns_label(),
            },
            _ => tun_error(cfg, op, e),
        })?;
        queues.push(q);
    }
    Ok(queues)
}

fn configure_offloads(cfg: &TapConfig, q: &TunQueue) -> Result<OffloadCaps, TapError> {
    if !cfg.offloads {
        return Ok(OffloadCaps::default());
    }
    q.set_vnet_hdr_len(VNET_HDR_LEN)
        .map_err(|e| tun_error(cfg, "TUNSETVNETHDRSZ", e))?;
    q.probe_offloads()
        .map_err(|e| tun_error(cfg, "TUNSETOFFLOAD", e))
}

/// Addresses and link up, run in the interface's namespace.
fn configure_inside(cfg: &TapConfig) -> Result<(), TapError> {
    let nl = |op: &'static str| {
        move |source: NetlinkError| TapError::Netlink {
            port: cfg.name.clone(),
            op,
            source,
        }
    };
    let mut rtnl = RtNetlink::open().map_err(nl("open rtnetlink in netns"))?;
    let link = rtnl
        .link_by_name(cfg.ifname())
        .map_err(nl("look up moved interface"))?
        .ok_or_else(|| TapError::NotFound {
            port: cfg.name.clone(),
            ifname: cfg.ifname().to_owned(),
            netns: cfg.netns_label(),
        })?;
    let addrs = cfg
        .ipv4
        .iter()
        .map(|(a, p)| (IpAddr::V4(*a), *p))
        .chain(cfg.ipv6.iter().map(|(a, p)| (IpAddr::V6(*a), *p)));
    for (addr, prefix) in addrs {
        rtnl.add_address(link.index, addr, prefix)
            .map_err(nl("add address"))?;
    }
    let up = LinkChange {
        up: Some(true),
        ..LinkChange::default()
    };
    rtnl.set_link(link.index, &up).map_err(nl("set link up"))?;
    if cfg.netns.is_some() {
        if let Some(lo) = rtnl.link_by_name("lo").map_err(nl("look up lo"))? {
            if lo.flags & IFF_UP == 0 {
                rtnl.set_link(lo.index, &up).map_err(nl("set lo up"))?;
            }
        }
    }
    Ok(())
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> PortKind {
        PortKind::Tap
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
        self.receive(rxq, pool, out)
    }

    fn tx_burst(
        &self,
        txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError> {
        self.transmit(txq, pkts, pool)
    }

    fn rx_fd(&self, rxq: usize) -> Option<RawFd> {
        // Once the device is gone the fd polls as EPOLLERR for ever: a
        // sleeping PMD must stop watching it when `link()` turns Down.
        Some(self.queues[rxq % self.queues.len()].raw_fd())
    }

    fn health_check(&self) -> LinkState {
        self.check_device()
    }

    fn link(&self) -> LinkState {
        if self.is_gone() {
            LinkState::Down(DownReason::DeviceGone)
        } else {
            LinkState::Up
        }
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.mtu
    }

    fn offload_caps(&self) -> OffloadCaps {
        self.caps
    }

    fn stats(&self) -> PortStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_config_defaults_to_eth0_and_persistence() {
        let c = TapConfig::container("c1p", "c1");
        assert_eq!(c.ifname(), "eth0");
        assert!(c.persist && c.offloads);
        let h = TapConfig::new("tap7");
        assert_eq!(h.ifname(), "tap7");
        assert!(!h.persist);
    }

    #[test]
    fn invalid_configs_are_refused_with_the_reason() {
        let mut c = TapConfig::new("this-name-is-too-long");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("not a valid interface name"), "{e}");
        c.name = "ok0".into();
        c.queues = 0;
        assert!(c.validate().unwrap_err().to_string().contains("queues=0"));
        c.queues = 2;
        c.mtu = Some(10);
        assert!(c.validate().unwrap_err().to_string().contains("mtu=10"));
        c.mtu = Some(9000);
        c.mac = Some([1, 0, 0, 0, 0, 1]);
        assert!(c.validate().unwrap_err().to_string().contains("unicast"));
        c.mac = None;
        c.ipv4.push((Ipv4Addr::new(10, 0, 0, 1), 33));
        assert!(c.validate().unwrap_err().to_string().contains("/33"));
        c.ipv4.clear();
        c.ifname = Some("a/b".into());
        assert!(c.validate().is_err());
        c.ifname = Some("eth1".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn temporary_names_are_unique_and_fit_ifnamsiz() {
        let a = temp_ifname();
        let b = temp_ifname();
        assert_ne!(a, b);
        assert!(valid_ifname(&a) && valid_ifname(&b), "{a} {b}");
    }

    #[test]
    fn missing_netns_is_reported_before_anything_is_created() {
        let c = TapConfig::container("p0", "vsw-surely-missing-ns");
        let e = TapPort::create(&c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port \"p0\": netns \"vsw-surely-missing-ns\" does not exist"
        );
    }

    #[test]
    fn permission_errors_say_what_is_missing() {
        let c = TapConfig::new("tap9");
        let e = tun_error(&c, "TUNSETIFF", io::Error::from_raw_os_error(libc::EPERM));
        assert!(matches!(e, TapError::Permission { .. }));
        assert_eq!(
            e.to_string(),
            "port \"tap9\": TUNSETIFF: permission denied (needs CAP_NET_ADMIN)"
        );
        let e = tun_error(
            &c,
            "TUNSETOFFLOAD",
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(e.to_string(), "port \"tap9\": TUNSETOFFLOAD failed");
        let src = std::error::Error::source(&e).map(|s| s.to_string());
        assert_eq!(src.as_deref(), Some("Invalid argument (os error 22)"));
    }

    #[test]
    fn device_gone_errnos_are_recognised() {
        assert!(is_device_gone(&io::Error::from_raw_os_error(libc::EBADFD)));
        assert!(is_device_gone(&io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(!is_device_gone(&io::Error::from_raw_os_error(libc::EAGAIN)));
        assert!(!is_device_gone(&io::Error::from_raw_os_error(libc::EIO)));
    }
}
