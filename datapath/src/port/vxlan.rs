//! VXLAN tunnel port (`type=vxlan remote=IP[,IP..] [local=IP] [vni=N|flow]
//! [dstport=4789]`), RFC 7348, over the kernel's UDP sockets.
//!
//! The kernel owns the underlay: it routes, resolves ARP and writes the
//! outer Ethernet/IPv4/UDP headers; we prepend and check the 8-byte VXLAN
//! header ([`crate::wire::vxlan`]).
//!
//! - **Receive**: one UDP socket bound to `local:dstport` with `UDP_GRO`,
//!   so a burst the sender handed over as one UDP GSO datagram arrives as
//!   one buffer with its segment size, and `IP_PKTINFO` for the outer
//!   destination; `recvmmsg` fills up to [`RX_SLOTS`] buffers per call.
//!   Each datagram is validated (flags, length, VNI, known remote VTEP);
//!   refused ones are counted by reason. Inner TCP segments of one
//!   connection are merged by software GRO ([`crate::wire::Gro`]) so a TAP
//!   port gets 64 KiB frames instead of MTU-sized ones.
//! - **Transmit**: a pool of [`TX_SOCKETS`] UDP sockets, each bound to its
//!   own source port; the inner flow hash picks the socket, which is how
//!   the outer source port carries the flow's entropy (RFC 7348 §5) while
//!   the kernel still does the rest. A GSO frame is segmented to fit the
//!   inner MTU (underlay MTU − 50) and its segments leave as one UDP GSO
//!   message (`UDP_SEGMENT`): one trip through the stack per 64 KiB, not
//!   per segment. Frames without a learned remote are replicated to every
//!   configured remote (head-end replication); the same buffer is sent to
//!   each, never copied. `sendmmsg` sends a whole batch per socket.
//!
//! The port accepts partial checksums and TSO frames (it finishes and cuts
//! them itself), so the PMD never segments for it.

use super::{
    DownReason, LinkState, OffloadCaps, Port, PortCounters, PortError, PortKind, PortStats,
};
use crate::packet::{Batch, Packet, PacketPool, TunnelMeta};
use crate::wire::gro::{adopt_gso, adopt_partial_checksum, claimed_frame_len};
use crate::wire::vxlan::header;
use crate::wire::vxlan::VXLAN_HLEN;
use crate::wire::vxlan::{decap, encap, flow_hash, VxlanError, IANA_PORT, MAX_VNI, OVERHEAD_V4};
use crate::wire::{finish_packet_checksum, Gro, SegmentPlan};
use parking_lot::Mutex;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

/// Receive buffers per `recvmmsg`.
pub const RX_SLOTS: usize = 32;
/// Bytes per receive buffer: a whole UDP GRO datagram.
const RX_SLOT_LEN: usize = 65_536;
/// Transmit sockets, i.e. distinct outer source ports.
pub const TX_SOCKETS: usize = 8;
/// Largest UDP payload of one (GSO) message: IPv4 total length 65,535
/// minus the IPv4 and UDP headers.
const MAX_UDP_PAYLOAD: usize = 65_535 - 20 - 8;
/// Most segments in one UDP GSO message (`UDP_MAX_SEGMENTS` of older
/// kernels; newer ones allow more).
const MAX_GSO_SEGMENTS: usize = 64;
/// An 802.1Q tag.
const VLAN_TAG: usize = 4;
/// Ethernet header plus one VLAN tag, on top of the inner L3 MTU.
const INNER_L2: usize = 14 + VLAN_TAG;

// include/uapi/linux/udp.h
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;
const UDP_GRO: libc::c_int = 104;

/// How the port chooses the VNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VniMode {
    /// Receive only this VNI; send it unless a flow set another.
    Fixed(u32),
    /// Receive any VNI (matched with `tun_id=`); send what `set_tunnel`
    /// chose, or 0.
    Flow,
}

/// Configuration of a VXLAN port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanConfig {
    /// Port name.
    pub name: String,
    /// Local VTEP address to bind; None binds every address.
    pub local: Option<Ipv4Addr>,
    /// Remote VTEPs: flooded frames go to all of them, and only they are
    /// accepted as senders.
    pub remotes: Vec<Ipv4Addr>,
    /// VNI handling.
    pub vni: VniMode,
    /// UDP destination port (4789; 8472 for the Linux/Flannel default).
    pub dstport: u16,
}

impl VxlanConfig {
    /// A port with VNI 0 on the IANA port.
    pub fn new(name: &str, remotes: Vec<Ipv4Addr>) -> Self {
        VxlanConfig {
            name: name.to_owned(),
            local: None,
            remotes,
            vni: VniMode::Fixed(0),
            dstport: IANA_PORT,
        }
    }

    /// Parses `add-port` options (`type` is ignored; VLAN membership is
    /// the switch's and must be filtered out by the caller).
    pub fn from_options<'a>(
        name: &str,
        options: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, VxlanPortError> {
        let mut cfg = VxlanConfig::new(name, Vec::new());
        let bad = |key: &str, value: &str, reason: &'static str| VxlanPortError::BadOption {
            port: name.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        };
        for (key, value) in options {
            match key {
                "type" => {}
                "remote" => {
                    for ip in value.split(',') {
                        let ip: Ipv4Addr = ip
                            .trim()
                            .parse()
                            .map_err(|_| bad(key, value, "expected IPv4 addresses"))?;
                        if !cfg.remotes.contains(&ip) {
                            cfg.remotes.push(ip);
                        }
                    }
                }
                "local" => {
                    cfg.local = Some(
                        value
                            .parse()
                            .map_err(|_| bad(key, value, "expected an IPv4 address"))?,
                    )
                }
                "vni" if value == "flow" => cfg.vni = VniMode::Flow,
                "vni" => {
                    let v: u32 = value
                        .parse()
                        .ok()
                        .filter(|v| *v <= MAX_VNI)
                        .ok_or_else(|| bad(key, value, "expected 0..=16777215 or flow"))?;
                    cfg.vni = VniMode::Fixed(v);
                }
                "dstport" => {
                    cfg.dstport = value
                        .parse()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad(key, value, "expected 1..=65535"))?
                }
                _ => return Err(bad(key, value, "unknown option for type vxlan")),
            }
        }
        if cfg.remotes.is_empty() {
            return Err(bad("remote", "", "at least one remote VTEP is needed"));
        }
        Ok(cfg)
    }
}

/// Errors of VXLAN port setup.
#[derive(Debug, thiserror::Error)]
pub enum VxlanPortError {
    /// Bad option.
    #[error("port \"{port}\": {key}=\"{value}\": {reason}")]
    BadOption {
        /// Port.
        port: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The UDP port is taken (a kernel vxlan device or another switch).
    #[error("port \"{port}\": UDP {addr}:{dstport} is already in use (a kernel vxlan device or another VTEP on this host?)")]
    AddrInUse {
        /// Port.
        port: String,
        /// Bound address.
        addr: Ipv4Addr,
        /// UDP port.
        dstport: u16,
    },
    /// A socket call failed.
    #[error("port \"{port}\": {op} failed")]
    Socket {
        /// Port.
        port: String,
        /// What was done.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Counters of one remote VTEP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtepStats {
    /// Remote address.
    pub remote: Ipv4Addr,
    /// Inner frames received from it.
    pub rx_packets: u64,
    /// Inner bytes received from it.
    pub rx_bytes: u64,
    /// Inner frames (segments) sent to it.
    pub tx_packets: u64,
    /// Inner bytes sent to it.
    pub tx_bytes: u64,
}

/// Why the port refused a datagram or frame, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VxlanDrops {
    /// Datagram shorter than VXLAN + Ethernet headers.
    pub truncated: u64,
    /// I flag clear.
    pub bad_flags: u64,
    /// VNI not the port's.
    pub unknown_vni: u64,
    /// Sender is not a configured remote.
    pub unknown_vtep: u64,
    /// Inner frame larger than the inner MTU.
    pub mtu: u64,
    /// Frame could not be segmented or checksummed.
    pub malformed: u64,
    /// The kernel refused to send.
    pub send_failed: u64,
    /// No packet buffer was free.
    pub no_buffer: u64,
}

/// Tunnel-specific view of a VXLAN port, for `show`/`stats`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TunnelInfo {
    /// Local address (None: any).
    pub local: Option<Ipv4Addr>,
    /// UDP destination port.
    pub dstport: u16,
    /// VNI handling.
    pub vni: VniMode,
    /// Underlay MTU seen last.
    pub underlay_mtu: u32,
    /// Per remote VTEP.
    pub vteps: Vec<VtepStats>,
    /// Refusals.
    pub drops: VxlanDrops,
    /// Segments merged by GRO on receive.
    pub gro_merged: u64,
}

#[derive(Default)]
struct VtepCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
}

#[derive(Default)]
struct DropCounters {
    truncated: AtomicU64,
    bad_flags: AtomicU64,
    unknown_vni: AtomicU64,
    unknown_vtep: AtomicU64,
    mtu: AtomicU64,
    malformed: AtomicU64,
    send_failed: AtomicU64,
    no_buffer: AtomicU64,
    gro_merged: AtomicU64,
}

/// Per-call tallies, added to the atomics once per burst.
struct Tally {
    vtep_packets: Vec<u64>,
    vtep_bytes: Vec<u64>,
    drops: VxlanDrops,
}

impl Tally {
    fn new(remotes: usize) -> Self {
        Tally {
            vtep_packets: vec![0; remotes],
            vtep_bytes: vec![0; remotes],
            drops: VxlanDrops::default(),
        }
    }
    /// Counts one frame of `bytes` delivered from (or to) remote `vtep`.
    fn delivered(&mut self, vtep: usize, bytes: u64) {
        self.vtep_packets[vtep] += 1;
        self.vtep_bytes[vtep] += bytes;
    }

    fn clear(&mut self) {
        self.vtep_packets.fill(0);
        self.vtep_bytes.fill(0);
        self.drops = VxlanDrops::default();
    }
}

/// One received message: where it is and where it came from.
#[derive(Clone, Copy, Default)]
struct RxMsg {
    len: usize,
    /// UDP GRO segment size of a train of equal datagrams (the kernel
    /// reports it only for UDP GSO trains); 0 when the message is one
    /// datagram.
    gso: usize,
    src: u32,
    dst: u32,
}

struct RxState {
    slots: Box<[u8]>,
    names: [libc::sockaddr_in; RX_SLOTS],
    ctrl: [[u64; 8]; RX_SLOTS],
    msgs: [RxMsg; RX_SLOTS],
    /// Messages in `msgs` from the last `recvmmsg`.
    count: usize,
    /// Next message and offset inside it still to process.
    next: usize,
    offset: usize,
    gro: Gro,
    tally: Tally,
}

/// A message to send: datagrams `first..first + count` as one datagram (or
/// a UDP GSO train of `count` equal ones), to `dst` from socket `sock`.
#[derive(Clone, Copy)]
struct TxEntry {
    sock: usize,
    first: usize,
    count: usize,
    gso: u16,
    dst: u32,
}

/// One VXLAN datagram: `iov_count` iovecs from `iov_first`, `len` bytes.
#[derive(Clone, Copy)]
struct Datagram {
    iov_first: usize,
    iov_count: usize,
    len: usize,
}

/// Bytes per header slot: VXLAN header + inner headers of one segment.
const HDR_SLOT: usize = 256;
/// Header slots per burst (32 frames of up to 64 segments).
const HDR_SLOTS: usize = 2048;

struct TxState {
    /// Packets whose bytes the iovecs point into, freed after sending.
    held: Vec<Packet>,
    entries: Vec<TxEntry>,
    segs: Vec<Packet>,
    /// Per-segment headers written for scatter-gather segmentation.
    hdr_area: Box<[u8]>,
    hdr_used: usize,
    datagrams: Vec<Datagram>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_in>,
    ctrl: Vec<[u64; 4]>,
    hdrs: Vec<libc::mmsghdr>,
    tally: Tally,
}

// SAFETY: the raw pointers inside `iovs`/`hdrs` are rebuilt by every
// `tx_burst` from buffers owned by the same state (held packets, the
// header area, the name/control vectors) and are never read after the
// call returns; the state moves between threads only as a whole
// under its mutex.
unsafe impl Send for TxState {}

/// A VXLAN tunnel endpoint.
pub struct VxlanPort {
    cfg: VxlanConfig,
    rx_sock: OwnedFd,
    tx_socks: Vec<OwnedFd>,
    rx: Mutex<RxState>,
    tx: Mutex<TxState>,
    counters: PortCounters,
    vteps: Vec<VtepCounters>,
    drops: DropCounters,
    underlay_mtu: AtomicU32,
    link_down: std::sync::atomic::AtomicBool,
    udp_gso: std::sync::atomic::AtomicBool,
    mac: [u8; 6],
}

fn socket_err<'a>(
    port: &'a str,
    op: &'static str,
) -> impl FnOnce(io::Error) -> VxlanPortError + 'a {
    move |source| VxlanPortError::Socket {
        port: port.to_owned(),
        op,
        source,
    }
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(ip).to_be();
    sa
}

fn udp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_UDP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: the option value points at a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn bind(fd: RawFd, sa: &libc::sockaddr_in) -> io::Result<()> {
    // SAFETY: sa is a valid sockaddr_in for the duration of the call.
    let r = unsafe {
        libc::bind(
            fd,
            (sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Path MTU towards `remote` as the kernel's routing sees it (a connected
/// UDP socket's `IP_MTU`); 1500 when it cannot tell.
fn probe_mtu(local: Option<Ipv4Addr>, remote: Ipv4Addr, dstport: u16) -> u32 {
    let Ok(fd) = udp_socket() else { return 1500 };
    if let Some(l) = local {
        let _ = bind(fd.as_raw_fd(), &sockaddr(l, 0));
    }
    let sa = sockaddr(remote, dstport);
    // SAFETY: sa is a valid sockaddr_in for the duration of the call.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return 1500;
    }
    let mut mtu: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: mtu/len point at live locals of the advertised size.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 || mtu < 576 {
        1500
    } else {
        mtu as u32
    }
}

impl VxlanPort {
    /// Opens the sockets. Fails clearly when the UDP port is taken.
    pub fn open(cfg: &VxlanConfig) -> Result<Self, VxlanPortError> {
        let name = cfg.name.as_str();
        if cfg.remotes.is_empty() {
            return Err(VxlanPortError::BadOption {
                port: name.to_owned(),
                key: "remote".into(),
                value: String::new(),
                reason: "at least one remote VTEP is needed",
            });
        }
        let any = cfg.local.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let rx_sock = udp_socket().map_err(socket_err(name, "socket"))?;
        let fd = rx_sock.as_raw_fd();
        set_int(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .map_err(socket_err(name, "setsockopt IP_PKTINFO"))?;
        // Without UDP_GRO a GSO train is cut into datagrams by the kernel:
        // slower, still correct.
        if let Err(e) = set_int(fd, SOL_UDP, UDP_GRO, 1) {
            tracing::info!(
                port = name,
                "UDP_GRO unavailable ({e}); receiving datagram by datagram"
            );
        }
        let _ = set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 8 << 20);
        match bind(fd, &sockaddr(any, cfg.dstport)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
                return Err(VxlanPortError::AddrInUse {
                    port: name.to_owned(),
                    addr: any,
                    dstport: cfg.dstport,
                })
            }
            Err(e) => return Err(socket_err(name, "bind")(e)),
        }
        let mut tx_socks = Vec::with_capacity(TX_SOCKETS);
        for _ in 0..TX_SOCKETS {
            let s = udp_socket().map_err(socket_err(name, "socket"))?;
            let _ = set_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
            // Nobody should send to these ports; keep stray input small.
            let _ = set_int(s.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, 4096);
            // Segments must not be fragmented: the inner MTU check keeps
            // them under the path MTU, and an oversize send fails loudly.
            let _ = set_int(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
            );
            bind(s.as_raw_fd(), &sockaddr(any, 0)).map_err(socket_err(name, "bind tx socket"))?;
            tx_socks.push(s);
        }
        let n = cfg.remotes.len();
        let mut mac = [0u8; 6];
        getrandom_mac(&mut mac);
        let rx = RxState {
            slots: vec![0u8; RX_SLOTS * RX_SLOT_LEN].into_boxed_slice(),
            // SAFETY: sockaddr_in is plain old data; zero is valid.
            names: unsafe { zeroed() },
            ctrl: [[0; 8]; RX_SLOTS],
            msgs: [RxMsg::default(); RX_SLOTS],
            count: 0,
            next: 0,
            offset: 0,
            gro: Gro::new(),
            tally: Tally::new(n),
        };
        let tx = TxState {
            held: Vec::with_capacity(256),
            entries: Vec::with_capacity(256),
            segs: Vec::with_capacity(64),
            hdr_area: vec![0u8; HDR_SLOT * HDR_SLOTS].into_boxed_slice(),
            hdr_used: 0,
            datagrams: Vec::with_capacity(HDR_SLOTS),
            iovs: Vec::with_capacity(256),
            names: Vec::with_capacity(256),
            ctrl: Vec::with_capacity(256),
            hdrs: Vec::with_capacity(256),
            tally: Tally::new(n),
        };
        Ok(VxlanPort {
            underlay_mtu: AtomicU32::new(probe_mtu(cfg.local, cfg.remotes[0], cfg.dstport)),
            cfg: cfg.clone(),
            rx_sock,
            tx_socks,
            rx: Mutex::new(rx),
            tx: Mutex::new(tx),
            counters: PortCounters::default(),
            vteps: (0..n).map(|_| VtepCounters::default()).collect(),
            drops: DropCounters::default(),
            link_down: std::sync::atomic::AtomicBool::new(false),
            udp_gso: std::sync::atomic::AtomicBool::new(true),
            mac,
        })
    }

    /// The configuration the port was opened with.
    pub fn config(&self) -> &VxlanConfig {
        &self.cfg
    }

    /// Tunnel counters and settings.
    pub fn tunnel_info(&self) -> TunnelInfo {
        let d = &self.drops;
        TunnelInfo {
            local: self.cfg.local,
            dstport: self.cfg.dstport,
            vni: self.cfg.vni,
            underlay_mtu: self.underlay_mtu.load(Relaxed),
            vteps: self
                .cfg
                .remotes
                .iter()
                .zip(&self.vteps)
                .map(|(ip, c)| VtepStats {
                    remote: *ip,
                    rx_packets: c.rx_packets.load(Relaxed),
                    rx_bytes: c.rx_bytes.load(Relaxed),
                    tx_packets: c.tx_packets.load(Relaxed),
                    tx_bytes: c.tx_bytes.load(Relaxed),
                })
                .collect(),
            drops: VxlanDrops {
                truncated: d.truncated.load(Relaxed),
                bad_flags: d.bad_flags.load(Relaxed),
                unknown_vni: d.unknown_vni.load(Relaxed),
                unknown_vtep: d.unknown_vtep.load(Relaxed),
                mtu: d.mtu.load(Relaxed),
                malformed: d.malformed.load(Relaxed),
                send_failed: d.send_failed.load(Relaxed),
                no_buffer: d.no_buffer.load(Relaxed),
            },
            gro_merged: d.gro_merged.load(Relaxed),
        }
    }

    /// Largest inner frame (with one VLAN tag) that fits the underlay.
    fn max_inner_frame(&self) -> usize {
        (self.underlay_mtu.load(Relaxed).saturating_sub(OVERHEAD_V4)) as usize + INNER_L2
    }

    fn vtep_index(&self, ip: u32) -> Option<usize> {
        self.cfg.remotes.iter().position(|r| u32::from(*r) == ip)
    }

    fn accepts_vni(&self, vni: u32) -> bool {
        match self.cfg.vni {
            VniMode::Fixed(v) => v == vni,
            VniMode::Flow => true,
        }
    }

    fn add_tally(&self, t: &mut Tally, rx: bool) {
        for (i, c) in self.vteps.iter().enumerate() {
            let (p, b) = (t.vtep_packets[i], t.vtep_bytes[i]);
            if p != 0 {
                if rx {
                    c.rx_packets.fetch_add(p, Relaxed);
                    c.rx_bytes.fetch_add(b, Relaxed);
                } else {
                    c.tx_packets.fetch_add(p, Relaxed);
                    c.tx_bytes.fetch_add(b, Relaxed);
                }
            }
        }
        let d = &t.drops;
        let pairs = [
            (&self.drops.truncated, d.truncated),
            (&self.drops.bad_flags, d.bad_flags),
            (&self.drops.unknown_vni, d.unknown_vni),
            (&self.drops.unknown_vtep, d.unknown_vtep),
            (&self.drops.mtu, d.mtu),
            (&self.drops.malformed, d.malformed),
            (&self.drops.send_failed, d.send_failed),
            (&self.drops.no_buffer, d.no_buffer),
        ];
        let mut total = 0;
        for (c, v) in pairs {
            if v != 0 {
                c.fetch_add(v, Relaxed);
                total += v;
            }
        }
        if total != 0 {
            if rx {
                self.counters.rx_dropped(total);
            } else {
                self.counters.tx_dropped(total);
            }
        }
        t.clear();
    }
}

/// A random locally administered unicast MAC (the port has no wire of its
/// own; the MAC only names it).
fn getrandom_mac(mac: &mut [u8; 6]) {
    // SAFETY: getrandom writes at most mac.len() bytes into mac.
    let r = unsafe { libc::getrandom(mac.as_mut_ptr().cast(), mac.len(), 0) };
    if r != 6 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        mac.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    mac[0] = (mac[0] & 0xfe) | 0x02;
}

/// Reads `UDP_GRO` segment size and `IP_PKTINFO` destination from a
/// received message's control data.
fn parse_cmsgs(hdr: &libc::msghdr) -> (usize, u32) {
    let (mut gso, mut dst) = (0usize, 0u32);
    // SAFETY: hdr was filled by recvmmsg; the CMSG_* macros walk the
    // control buffer within msg_controllen as cmsg(3) describes.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            let data = libc::CMSG_DATA(c);
            match ((*c).cmsg_level, (*c).cmsg_type) {
                (SOL_UDP, UDP_GRO) => {
                    gso = std::ptr::read_unaligned(data.cast::<libc::c_int>()).max(0) as usize;
                }
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let pi = std::ptr::read_unaligned(data.cast::<libc::in_pktinfo>());
                    dst = u32::from_be(pi.ipi_addr.s_addr);
                }
                _ => {}
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    (gso, dst)
}

impl RxState {
    /// One `recvmmsg`; returns how many messages arrived (0 on EAGAIN).
    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: iovec/mmsghdr are plain old data; zero is valid.
        let mut iovs: [libc::iovec; RX_SLOTS] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; RX_SLOTS] = unsafe { zeroed() };
        let base = self.slots.as_mut_ptr();
        for i in 0..RX_SLOTS {
            // SAFETY: slot i lies inside `slots` (RX_SLOTS * RX_SLOT_LEN).
            iovs[i].iov_base = unsafe { base.add(i * RX_SLOT_LEN) }.cast();
            iovs[i].iov_len = RX_SLOT_LEN;
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = size_of::<[u64; 8]>();
        }
        // SAFETY: every header points at live buffers of the stated sizes
        // owned by self (slots, names, ctrl) or by this frame (iovs).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                RX_SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            let (gso, dst) = parse_cmsgs(&h.msg_hdr);
            self.msgs[i] = RxMsg {
                len: h.msg_len as usize,
                gso,
                src: u32::from_be(self.names[i].sin_addr.s_addr),
                dst,
            };
        }
        self.count = n;
        self.next = 0;
        self.offset = 0;
        Ok(n)
    }
}

impl Port for VxlanPort {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn kind(&self) -> PortKind {
        PortKind::Vxlan
    }

    fn rx_burst(
        &self,
        _rxq: usize,
        pool: &mut PacketPool,
        out: &mut Batch,
    ) -> Result<usize, PortError> {
        let mut guard = self.rx.lock();
        let st = &mut *guard;
        let before = out.len();
        let max_frame = self.max_inner_frame();
        let mut polled = false;
        loop {
            if st.next >= st.count {
                if polled {
                    break;
                }
                polled = true;
                match st.recv(self.rx_sock.as_raw_fd()) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(source) => {
                        self.counters.rx_error(1);
                        return Err(PortError::Io {
                            port: self.cfg.name.clone(),
                            op: "recvmmsg",
                            source,
                        });
                    }
                }
            }
            let m = st.msgs[st.next];
            let seg = if m.gso > 0 { m.gso } else { m.len };
            let start = st.next * RX_SLOT_LEN + st.offset;
            let len = seg.min(m.len - st.offset);
            let datagram = &st.slots[start..start + len];
            let advance = |st: &mut RxState| {
                st.offset += len;
                if st.offset >= m.len || len == 0 {
                    st.next += 1;
                    st.offset = 0;
                }
            };
            let vni = match decap(datagram) {
                Ok(v) => v,
                Err(e) => {
                    match e {
                        VxlanError::Truncated { .. } => st.tally.drops.truncated += 1,
                        VxlanError::BadFlags { .. } => st.tally.drops.bad_flags += 1,
                    }
                    advance(st);
                    continue;
                }
            };
            if !self.accepts_vni(vni) {
                st.tally.drops.unknown_vni += 1;
                advance(st);
                continue;
            }
            let Some(vtep) = self.vtep_index(m.src) else {
                st.tally.drops.unknown_vtep += 1;
                advance(st);
                continue;
            };
            let inner = &datagram[VXLAN_HLEN..];
            let tunnel = TunnelMeta {
                vni,
                src: m.src,
                dst: m.dst,
            };
            let open = usize::from(st.gro.is_open());
            // Larger than the inner MTU yet whole: an unsegmented GSO frame
            // from a sender on this kernel (a Linux vxlan device behind a
            // veth hands its TSO frames over as one UDP-tunnel GSO skb,
            // which a UDP socket receives whole, without a segment size).
            let oversize = inner.len() > max_frame && claimed_frame_len(inner) == Some(inner.len());
            if oversize {
                if out.room() <= open {
                    break;
                }
                st.gro.flush(|p| push_out(out, p));
                let inner_len = inner.len() as u64;
                match pool.alloc(inner.len()) {
                    Some(mut p) => {
                        p.copy_from(inner);
                        p.tunnel = tunnel;
                        // Segments are untagged: no room for a VLAN tag.
                        if !adopt_gso(&mut p, 0, max_frame - VLAN_TAG) {
                            adopt_partial_checksum(&mut p);
                        }
                        push_out(out, p);
                        st.tally.delivered(vtep, inner_len);
                    }
                    None => st.tally.drops.no_buffer += 1,
                }
                advance(st);
                continue;
            }
            if out.room() <= open && !st.gro.would_merge(inner, &tunnel) {
                // No slot for another frame: keep the rest for next time.
                break;
            }
            let inner_len = inner.len() as u64;
            let ok = st.gro.push(inner, tunnel, pool, |p| push_out(out, p));
            if ok {
                st.tally.delivered(vtep, inner_len);
            } else {
                st.tally.drops.no_buffer += 1;
            }
            advance(st);
        }
        st.gro.flush(|p| push_out(out, p));
        self.drops
            .gro_merged
            .fetch_add(std::mem::take(&mut st.gro.merged), Relaxed);
        // Every delivered frame came from a configured remote.
        self.counters.rx(
            st.tally.vtep_packets.iter().sum(),
            st.tally.vtep_bytes.iter().sum(),
        );
        self.add_tally(&mut st.tally, true);
        Ok(out.len() - before)
    }

    fn tx_burst(
        &self,
        _txq: usize,
        pkts: &mut Batch,
        pool: &mut PacketPool,
    ) -> Result<usize, PortError> {
        let mut guard = self.tx.lock();
        let st = &mut *guard;
        let max_frame = self.max_inner_frame();
        let default_vni = match self.cfg.vni {
            VniMode::Fixed(v) => v,
            VniMode::Flow => 0,
        };
        for mut pkt in pkts.drain() {
            let vni = pkt.out_tunnel_id.unwrap_or(default_vni);
            let dst = pkt.out_tunnel_dst;
            let sock = flow_hash(pkt.data()) as usize % self.tx_socks.len();
            let first = st.datagrams.len();
            if pkt.offload.is_gso() {
                let Some(plan) = plan_for_tunnel(&mut pkt, max_frame) else {
                    st.tally.drops.malformed += 1;
                    pool.free(pkt);
                    continue;
                };
                if st.hdr_used + plan.segments() <= HDR_SLOTS
                    && VXLAN_HLEN + plan.header_len() <= HDR_SLOT
                {
                    if !st.push_segments(&pkt, &plan, vni) {
                        st.tally.drops.malformed += 1;
                        pool.free(pkt);
                        continue;
                    }
                    st.held.push(pkt);
                    self.queue_messages(st, first, sock, dst);
                    continue;
                }
                // Headers too large for a slot, or no slots left: cut into
                // copies (the same segments, one buffer each).
                let mut segs = std::mem::take(&mut st.segs);
                let cut = crate::wire::segment(&pkt, pool, |s| segs.push(s)).is_ok();
                pool.free(pkt);
                if cut {
                    for s in segs.drain(..) {
                        st.push_whole(s, vni, max_frame, pool);
                    }
                } else {
                    st.tally.drops.malformed += 1;
                    pool.free_all(segs.drain(..));
                }
                st.segs = segs;
            } else {
                if pkt.offload.needs_csum() && finish_packet_checksum(&mut pkt).is_err() {
                    st.tally.drops.malformed += 1;
                    pool.free(pkt);
                    continue;
                }
                st.push_whole(pkt, vni, max_frame, pool);
            }
            self.queue_messages(st, first, sock, dst);
        }
        let sent = self.send_entries(st);
        pool.free_all(st.held.drain(..));
        st.entries.clear();
        st.datagrams.clear();
        st.iovs.clear();
        st.hdr_used = 0;
        self.add_tally(&mut st.tally, false);
        Ok(sent)
    }

    fn rx_fd(&self, _rxq: usize) -> Option<RawFd> {
        Some(self.rx_sock.as_raw_fd())
    }

    fn link(&self) -> LinkState {
        if self.link_down.load(Relaxed) {
            LinkState::Down(DownReason::IoError)
        } else {
            LinkState::Up
        }
    }

    fn health_check(&self) -> LinkState {
        self.underlay_mtu.store(
            probe_mtu(self.cfg.local, self.cfg.remotes[0], self.cfg.dstport),
            Relaxed,
        );
        self.link()
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn mtu(&self) -> u32 {
        self.underlay_mtu.load(Relaxed).saturating_sub(OVERHEAD_V4)
    }

    fn offload_caps(&self) -> OffloadCaps {
        OffloadCaps {
            partial_csum: true,
            tso: true,
            uso: true,
        }
    }

    fn stats(&self) -> PortStats {
        self.counters.snapshot()
    }

    fn tunnel_info(&self) -> Option<TunnelInfo> {
        Some(VxlanPort::tunnel_info(self))
    }
}

impl TxState {
    /// Queues a whole frame as one datagram (VXLAN header prepended).
    fn push_whole(&mut self, mut pkt: Packet, vni: u32, max_frame: usize, pool: &mut PacketPool) {
        if pkt.len() > max_frame {
            self.tally.drops.mtu += 1;
            pool.free(pkt);
            return;
        }
        if !encap(&mut pkt, vni) {
            self.tally.drops.malformed += 1;
            pool.free(pkt);
            return;
        }
        let d = pkt.data();
        self.datagrams.push(Datagram {
            iov_first: self.iovs.len(),
            iov_count: 1,
            len: d.len(),
        });
        self.iovs.push(libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        });
        self.held.push(pkt);
    }

    /// Queues the segments of GSO frame `pkt` as datagrams of two parts:
    /// VXLAN + segment headers from a header slot, payload straight from
    /// `pkt` (which the caller holds until sent).
    fn push_segments(&mut self, pkt: &Packet, plan: &SegmentPlan, vni: u32) -> bool {
        let frame = pkt.data();
        let hl = VXLAN_HLEN + plan.header_len();
        let first_dgram = self.datagrams.len();
        let first_iov = self.iovs.len();
        for i in 0..plan.segments() {
            let at = (self.hdr_used + i) * HDR_SLOT;
            let slot = &mut self.hdr_area[at..at + hl];
            slot[..VXLAN_HLEN].copy_from_slice(&header(vni));
            let Ok(range) = plan.write_headers(frame, i, &mut slot[VXLAN_HLEN..]) else {
                self.datagrams.truncate(first_dgram);
                self.iovs.truncate(first_iov);
                return false;
            };
            self.datagrams.push(Datagram {
                iov_first: self.iovs.len(),
                iov_count: 2,
                len: hl + range.len(),
            });
            self.iovs.push(libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: hl,
            });
            let payload = &frame[range];
            self.iovs.push(libc::iovec {
                iov_base: payload.as_ptr() as *mut libc::c_void,
                iov_len: payload.len(),
            });
        }
        self.hdr_used += plan.segments();
        true
    }
}

/// The segmentation plan of a GSO frame for the tunnel: the MSS lowered
/// when the sender's is too large for the inner MTU.
fn plan_for_tunnel(pkt: &mut Packet, max_frame: usize) -> Option<SegmentPlan> {
    let hdr = crate::wire::segment_header_len(pkt).ok()?;
    let room = max_frame.checked_sub(hdr).filter(|r| *r > 0)?;
    let mss = usize::from(pkt.offload.gso_size).min(room).max(1);
    pkt.offload.gso_size = mss as u16;
    SegmentPlan::new(pkt).ok()
}

fn push_out(out: &mut Batch, p: Packet) {
    // The caller checked the room first; a full batch here is a bug, and
    // the packet's buffer is simply released.
    let pushed = out.push(p);
    debug_assert!(pushed.is_ok(), "rx batch overflow");
}

impl VxlanPort {
    /// Cuts the datagrams queued since `first` into messages: equal-sized
    /// segments travel as one UDP GSO train when the kernel can; one entry
    /// per destination (the learned remote, else every remote).
    fn queue_messages(&self, st: &mut TxState, first: usize, sock: usize, dst: Option<u32>) {
        let gso_ok = self.udp_gso.load(Relaxed);
        let end = st.datagrams.len();
        let mut i = first;
        while i < end {
            let size = st.datagrams[i].len;
            let mut j = i + 1;
            let mut total = size;
            if gso_ok {
                while j < end
                    && j - i < MAX_GSO_SEGMENTS
                    && total + st.datagrams[j].len <= MAX_UDP_PAYLOAD
                    && st.datagrams[j].len <= size
                    && st.datagrams[j - 1].len == size
                {
                    total += st.datagrams[j].len;
                    j += 1;
                }
            }
            let gso = if j - i > 1 { size as u16 } else { 0 };
            let mut push = |ip: u32| {
                st.entries.push(TxEntry {
                    sock,
                    first: i,
                    count: j - i,
                    gso,
                    dst: ip,
                })
            };
            match dst {
                Some(ip) => push(ip),
                None => self.cfg.remotes.iter().for_each(|r| push(u32::from(*r))),
            }
            i = j;
        }
    }

    /// Sends every entry, grouped per socket, with `sendmmsg`. Returns the
    /// inner frames sent (a frame replicated to three VTEPs counts once per
    /// VTEP).
    fn send_entries(&self, st: &mut TxState) -> usize {
        st.entries.sort_by_key(|e| e.sock);
        let mut sent_frames = 0;
        let mut i = 0;
        while i < st.entries.len() {
            let sock = st.entries[i].sock;
            let mut j = i;
            while j < st.entries.len() && st.entries[j].sock == sock {
                j += 1;
            }
            sent_frames += self.send_group(st, i, j);
            i = j;
        }
        sent_frames
    }

    fn send_group(&self, st: &mut TxState, from: usize, to: usize) -> usize {
        let fd = self.tx_socks[st.entries[from].sock].as_raw_fd();
        st.names.clear();
        st.ctrl.clear();
        st.hdrs.clear();
        for e in &st.entries[from..to] {
            st.names
                .push(sockaddr(Ipv4Addr::from(e.dst), self.cfg.dstport));
            let mut c = [0u64; 4];
            if e.gso != 0 {
                write_gso_cmsg(&mut c, e.gso);
            }
            st.ctrl.push(c);
        }
        // Vectors are complete: now take stable pointers into them.
        for (k, e) in st.entries[from..to].iter().enumerate() {
            let d0 = st.datagrams[e.first];
            let dl = st.datagrams[e.first + e.count - 1];
            let iov_count = dl.iov_first + dl.iov_count - d0.iov_first;
            // SAFETY: mmsghdr is plain old data; zero is valid.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = st.iovs[d0.iov_first..].as_mut_ptr();
            h.msg_hdr.msg_iovlen = iov_count;
            h.msg_hdr.msg_name = (&mut st.names[k] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            if e.gso != 0 {
                h.msg_hdr.msg_control = st.ctrl[k].as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is a pure size computation.
                h.msg_hdr.msg_controllen =
                    unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            }
            st.hdrs.push(h);
        }
        let mut done = 0;
        let total = to - from;
        let mut sent_frames = 0;
        while done < total {
            // SAFETY: every header points into st.iovs/names/ctrl, which
            // are not resized until the next call, and the iovecs point at
            // held packets and the header area, which stay alive and
            // unchanged until after this loop.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    st.hdrs[done..].as_mut_ptr(),
                    (total - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                for k in from + done..from + done + n as usize {
                    let e = st.entries[k];
                    self.count_sent(st, &e);
                    sent_frames += e.count;
                }
                done += n as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            let e = st.entries[from + done];
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if e.gso != 0 && matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::EIO)) {
                // The kernel cannot take UDP GSO here: from now on send
                // datagram by datagram. This train is counted lost (TCP
                // retransmits it).
                if self.udp_gso.swap(false, Relaxed) {
                    tracing::warn!(port = %self.cfg.name, "UDP GSO refused ({err}); sending per datagram");
                }
            }
            if err.kind() == io::ErrorKind::WouldBlock {
                // Socket buffer full: drop the rest of this group.
                let lost: usize = st.entries[from + done..to].iter().map(|e| e.count).sum();
                st.tally.drops.send_failed += lost as u64;
                break;
            }
            self.counters.tx_error(1);
            st.tally.drops.send_failed += e.count as u64;
            done += 1;
        }
        sent_frames
    }

    fn count_sent(&self, st: &mut TxState, e: &TxEntry) {
        let bytes: usize = st.datagrams[e.first..e.first + e.count]
            .iter()
            .map(|d| d.len - VXLAN_HLEN)
            .sum();
        self.counters.tx(e.count as u64, bytes as u64);
        if let Some(v) = self.vtep_index(e.dst) {
            st.tally.vtep_packets[v] += e.count as u64;
            st.tally.vtep_bytes[v] += bytes as u64;
        }
    }
}

fn write_gso_cmsg(buf: &mut [u64; 4], gso: u16) {
    // SAFETY: a msghdr pointing at `buf` (32 bytes, aligned for cmsghdr)
    // lets the CMSG_* macros place one cmsghdr carrying a u16, which fits:
    // CMSG_SPACE(2) is 24 bytes on 64-bit Linux.
    unsafe {
        let mut h: libc::msghdr = zeroed();
        h.msg_control = buf.as_mut_ptr().cast();
        h.msg_controllen = size_of::<[u64; 4]>();
        let c = libc::CMSG_FIRSTHDR(&h);
        (*c).cmsg_level = SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), gso);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        kv.to_vec()
    }

    #[test]
    fn options_parse_and_refuse_clearly() {
        let c = VxlanConfig::from_options(
            "vx0",
            opts(&[
                ("type", "vxlan"),
                ("remote", "192.0.2.1,192.0.2.2,192.0.2.1"),
                ("vni", "42"),
                ("dstport", "8472"),
                ("local", "192.0.2.9"),
            ]),
        )
        .unwrap();
        assert_eq!(c.remotes.len(), 2, "duplicates folded");
        assert_eq!(c.vni, VniMode::Fixed(42));
        assert_eq!(c.dstport, 8472);
        assert_eq!(c.local, Some(Ipv4Addr::new(192, 0, 2, 9)));
        let flow =
            VxlanConfig::from_options("vx0", opts(&[("remote", "192.0.2.1"), ("vni", "flow")]));
        assert_eq!(flow.unwrap().vni, VniMode::Flow);
        for (kv, needle) in [
            (opts(&[("vni", "1")]), "remote"),
            (opts(&[("remote", "x")]), "IPv4"),
            (
                opts(&[("remote", "192.0.2.1"), ("vni", "16777216")]),
                "16777215",
            ),
            (opts(&[("remote", "192.0.2.1"), ("dstport", "0")]), "65535"),
            (opts(&[("remote", "192.0.2.1"), ("bogus", "1")]), "unknown"),
        ] {
            let e = VxlanConfig::from_options("vx0", kv)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("vx0"), "{e}");
        }
    }

    #[test]
    fn gso_cmsg_is_well_formed() {
        let mut buf = [0u64; 4];
        write_gso_cmsg(&mut buf, 1458);
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let len = usize::from_ne_bytes(bytes[..8].try_into().unwrap());
        let level = i32::from_ne_bytes(bytes[8..12].try_into().unwrap());
        let ty = i32::from_ne_bytes(bytes[12..16].try_into().unwrap());
        assert_eq!((len, level, ty), (18, SOL_UDP, UDP_SEGMENT));
        assert_eq!(u16::from_ne_bytes([bytes[16], bytes[17]]), 1458);
    }
}
