//! A small hand-written rtnetlink client: just what ports need to configure
//! an interface (look up, rename, move to a namespace, MAC, MTU, up/down,
//! delete) and add addresses.
//!
//! Wire format: netlink (RFC 3549 §2.3.2; include/uapi/linux/netlink.h),
//! rtnetlink link and address messages (include/uapi/linux/rtnetlink.h,
//! if_link.h, if_addr.h). Messages are built and parsed on plain byte
//! buffers ([`Message`], [`parse_replies`]) so the encoding is unit-tested
//! without a kernel; [`RtNetlink`] is the socket around them.
//!
//! A netlink socket belongs to the network namespace of the thread that
//! created it, which is how [`crate::sys::netns::in_netns`] configures an
//! interface inside a container.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Length of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Length of `struct ifinfomsg`.
pub const IFINFOMSG_LEN: usize = 16;
/// Length of `struct ifaddrmsg`.
pub const IFADDRMSG_LEN: usize = 8;

/// Netlink control message: error or acknowledgement.
pub const NLMSG_ERROR: u16 = 2;
/// Netlink control message: end of a dump.
pub const NLMSG_DONE: u16 = 3;
/// Create or modify a link; also the reply type of `RTM_GETLINK`.
pub const RTM_NEWLINK: u16 = 16;
/// Delete a link.
pub const RTM_DELLINK: u16 = 17;
/// Get a link.
pub const RTM_GETLINK: u16 = 18;
/// Modify a link.
pub const RTM_SETLINK: u16 = 19;
/// Add an address.
pub const RTM_NEWADDR: u16 = 20;

/// Request flag: this is a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Request flag: acknowledge success too.
pub const NLM_F_ACK: u16 = 0x4;
/// Request flag (new): fail if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// Request flag (new): create the object if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;
/// Ack flag: the echoed request was cut to its header.
const NLM_F_CAPPED: u16 = 0x100;
/// Ack flag: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended ack attribute: human-readable error message.
const NLMSGERR_ATTR_MSG: u16 = 1;

/// Link attribute: hardware address.
pub const IFLA_ADDRESS: u16 = 1;
/// Link attribute: interface name.
pub const IFLA_IFNAME: u16 = 3;
/// Link attribute: MTU.
pub const IFLA_MTU: u16 = 4;
/// Link attribute: move to the network namespace of this fd.
pub const IFLA_NET_NS_FD: u16 = 28;
/// Address attribute: address (peer address on point-to-point links).
pub const IFA_ADDRESS: u16 = 1;
/// Address attribute: local address.
pub const IFA_LOCAL: u16 = 2;
/// Address attribute: 32-bit flags (the `ifa_flags` byte holds only 8).
pub const IFA_FLAGS: u16 = 8;
/// Address flag: skip duplicate address detection (IPv6).
pub const IFA_F_NODAD: u32 = 0x02;
/// Interface flag: administratively up.
pub const IFF_UP: u32 = 0x1;

const AF_UNSPEC: u8 = 0;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NLA_HDRLEN: usize = 4;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const RECV_BUF: usize = 32 * 1024;

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Creating, configuring or using the socket failed.
    #[error("rtnetlink socket: {op} failed")]
    Socket {
        /// The failing step.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the request.
    #[error("{request}: {}{}", io::Error::from_raw_os_error(*errno), ext_msg(message))]
    Kernel {
        /// What was asked, e.g. `RTM_SETLINK ifindex 7`.
        request: String,
        /// The kernel's errno (positive).
        errno: i32,
        /// The kernel's extended-ack message, when it sent one.
        message: Option<String>,
    },
    /// The reply could not be parsed.
    #[error("{request}: malformed reply: {what}")]
    Malformed {
        /// What was asked.
        request: String,
        /// What was wrong.
        what: &'static str,
    },
}

fn ext_msg(m: &Option<String>) -> String {
    match m {
        Some(m) => format!(" ({m})"),
        None => String::new(),
    }
}

impl NetlinkError {
    /// The kernel's errno when the kernel refused the request.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            NetlinkError::Socket { source, .. } => source.raw_os_error(),
            NetlinkError::Malformed { .. } => None,
        }
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink request under construction: header, fixed family header,
/// then attributes, each padded to 4 bytes.
#[derive(Debug, Clone)]
pub struct Message {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Message {
    /// A request of type `ty` with `flags` (`NLM_F_REQUEST` is added).
    pub fn new(ty: u16, flags: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in finish
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set in finish
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        Message {
            buf,
            nests: Vec::new(),
        }
    }

    /// Appends a fixed family header (e.g. `ifinfomsg`), padded.
    pub fn push_fixed(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    /// Appends an attribute.
    pub fn attr(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        let len = (NLA_HDRLEN + payload.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Appends a u32 attribute (host order, as rtnetlink expects).
    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// Appends a NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.attr(ty, &b)
    }

    /// Opens a nested attribute; close it with [`Message::end_nest`].
    pub fn begin_nest(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(ty | 0x8000).to_ne_bytes()); // NLA_F_NESTED
        self
    }

    /// Closes the innermost nested attribute.
    pub fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Sets length and sequence number and returns the wire bytes.
    pub fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// `struct ifinfomsg`.
pub fn ifinfomsg(ifindex: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut b = [0u8; IFINFOMSG_LEN];
    b[0] = AF_UNSPEC;
    // b[1] padding, b[2..4] ifi_type: 0 on requests.
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

/// `struct ifaddrmsg`.
pub fn ifaddrmsg(family: u8, prefix: u8, flags: u8, ifindex: u32) -> [u8; IFADDRMSG_LEN] {
    let mut b = [0u8; IFADDRMSG_LEN];
    b[0] = family;
    b[1] = prefix;
    b[2] = flags;
    b[3] = 0; // RT_SCOPE_UNIVERSE
    b[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    b
}

/// Changes to apply to a link in one `RTM_SETLINK`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkChange {
    /// New name.
    pub name: Option<String>,
    /// New MAC address.
    pub mac: Option<[u8; 6]>,
    /// New MTU.
    pub mtu: Option<u32>,
    /// Move to the namespace of this fd (the name, if given, applies there).
    pub netns_fd: Option<RawFd>,
    /// Set administratively up (true) or down (false).
    pub up: Option<bool>,
}

/// `RTM_GETLINK` for the link called `name`.
pub fn get_link_request(name: &str) -> Message {
    let mut m = Message::new(RTM_GETLINK, 0);
    m.push_fixed(&ifinfomsg(0, 0, 0))
        .attr_str(IFLA_IFNAME, name);
    m
}

/// `RTM_SETLINK` applying `change` to link `ifindex`.
pub fn set_link_request(ifindex: u32, change: &LinkChange) -> Message {
    let (flags, mask) = match change.up {
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
        None => (0, 0),
    };
    let mut m = Message::new(RTM_SETLINK, NLM_F_ACK);
    m.push_fixed(&ifinfomsg(ifindex, flags, mask));
    if let Some(fd) = change.netns_fd {
        m.attr_u32(IFLA_NET_NS_FD, fd as u32);
    }
    if let Some(name) = &change.name {
        m.attr_str(IFLA_IFNAME, name);
    }
    if let Some(mac) = change.mac {
        m.attr(IFLA_ADDRESS, &mac);
    }
    if let Some(mtu) = change.mtu {
        m.attr_u32(IFLA_MTU, mtu);
    }
    m
}

/// `RTM_DELLINK` for link `ifindex`.
pub fn del_link_request(ifindex: u32) -> Message {
    let mut m = Message::new(RTM_DELLINK, NLM_F_ACK);
    m.push_fixed(&ifinfomsg(ifindex, 0, 0));
    m
}

/// `RTM_NEWADDR` adding `addr/prefix` to link `ifindex`. IPv6 addresses
/// get `IFA_F_NODAD` so they are usable at once.
pub fn new_addr_request(ifindex: u32, addr: IpAddr, prefix: u8) -> Message {
    let mut m = Message::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    match addr {
        IpAddr::V4(a) => {
            m.push_fixed(&ifaddrmsg(AF_INET, prefix, 0, ifindex));
            m.attr(IFA_LOCAL, &a.octets())
                .attr(IFA_ADDRESS, &a.octets());
        }
        IpAddr::V6(a) => {
            m.push_fixed(&ifaddrmsg(AF_INET6, prefix, IFA_F_NODAD as u8, ifindex));
            m.attr(IFA_ADDRESS, &a.octets())
                .attr_u32(IFA_FLAGS, IFA_F_NODAD);
        }
    }
    m
}

/// A link as the kernel describes it in `RTM_NEWLINK`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// `IFF_*` flags.
    pub flags: u32,
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Hardware address, when it is an Ethernet one.
    pub mac: Option<[u8; 6]>,
}

/// One parsed netlink message of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `NLMSG_ERROR` with error 0: success.
    Ack {
        /// Sequence number it answers.
        seq: u32,
    },
    /// `NLMSG_ERROR` with a negative errno.
    Error {
        /// Sequence number it answers.
        seq: u32,
        /// Positive errno.
        errno: i32,
        /// Extended-ack message.
        message: Option<String>,
    },
    /// `RTM_NEWLINK` (a link description).
    Link {
        /// Sequence number it answers.
        seq: u32,
        /// The link.
        link: LinkInfo,
    },
    /// `NLMSG_DONE` or a message type the parser does not need.
    Other {
        /// Sequence number.
        seq: u32,
        /// Message type.
        ty: u16,
    },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterates over `(type, payload)` of the attributes in `b`. Stops at the
/// first attribute whose length is inconsistent.
pub fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let len = u16_at(b, off)? as usize;
        let ty = u16_at(b, off + 2)? & 0x3fff; // strip NESTED/BYTEORDER bits
        if len < NLA_HDRLEN || off + len > b.len() {
            return None;
        }
        let payload = &b[off + NLA_HDRLEN..off + len];
        off += align4(len);
        Some((ty, payload))
    })
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses the payload of an `RTM_NEWLINK` message.
pub fn parse_link(payload: &[u8]) -> Option<LinkInfo> {
    if payload.len() < IFINFOMSG_LEN {
        return None;
    }
    let mut link = LinkInfo {
        index: u32_at(payload, 4)?,
        flags: u32_at(payload, 8)?,
        ..LinkInfo::default()
    };
    for (ty, v) in attrs(&payload[IFINFOMSG_LEN..]) {
        match ty {
            IFLA_IFNAME => link.name = c_string(v),
            IFLA_MTU => link.mtu = u32_at(v, 0)?,
            IFLA_ADDRESS if v.len() == 6 => link.mac = v.try_into().ok(),
            _ => {}
        }
    }
    Some(link)
}

fn parse_error(flags: u16, payload: &[u8]) -> Option<(i32, Option<String>)> {
    let err = i32::from_ne_bytes(payload.get(0..4)?.try_into().ok()?);
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request follows the errno: its header only when
        // capped, else the whole request.
        let echoed_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            u32_at(payload, 4)? as usize
        };
        let tlv_start = align4(4 + echoed_len);
        if let Some(tlvs) = payload.get(tlv_start..) {
            for (ty, v) in attrs(tlvs) {
                if ty == NLMSGERR_ATTR_MSG {
                    message = Some(c_string(v));
                }
            }
        }
    }
    Some((-err, message))
}

/// Parses every netlink message in one datagram. None when a header is
/// inconsistent with the buffer.
pub fn parse_replies(buf: &[u8]) -> Option<Vec<Reply>> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, off)? as usize;
        let ty = u16_at(buf, off + 4)?;
        let flags = u16_at(buf, off + 6)?;
        let seq = u32_at(buf, off + 8)?;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return None;
        }
        let payload = &buf[off + NLMSG_HDRLEN..off + len];
        out.push(match ty {
            NLMSG_ERROR => {
                let (errno, message) = parse_error(flags, payload)?;
                if errno == 0 {
                    Reply::Ack { seq }
                } else {
                    Reply::Error {
                        seq,
                        errno,
                        message,
                    }
                }
            }
            RTM_NEWLINK => Reply::Link {
                seq,
                link: parse_link(payload)?,
            },
            _ => Reply::Other { seq, ty },
        });
        off += align4(len);
    }
    Some(out)
}

/// An rtnetlink socket in the network namespace of the thread that opened
/// it. Closed on drop.
#[derive(Debug)]
pub struct RtNetlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

fn sock_err(op: &'static str) -> NetlinkError {
    NetlinkError::Socket {
        op,
        source: io::Error::last_os_error(),
    }
}

impl RtNetlink {
    /// Opens a `NETLINK_ROUTE` socket with extended acks and a 5 s receive
    /// timeout (a control-path call must never hang the caller).
    pub fn open() -> Result<Self, NetlinkError> {
        // SAFETY: plain socket(2) call with constant arguments.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(sock_err("socket(AF_NETLINK)"));
        }
        // SAFETY: `raw` is a freshly created descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            // SAFETY: `one` outlives the call and the length matches its type.
            // Failure is harmless (older kernels): errors just lose detail.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        let tv = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: `tv` outlives the call and the length matches its type.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(sock_err("setsockopt(SO_RCVTIMEO)"));
        }
        Ok(RtNetlink {
            fd,
            seq: 0,
            buf: vec![0u8; RECV_BUF],
        })
    }

    fn send(&mut self, msg: &mut Message) -> Result<u32, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = the kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `bytes` and `sa` are valid for the given lengths for the
        // duration of the call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(sock_err("sendto"));
        }
        Ok(seq)
    }

    /// Receives until the answer to `seq` arrives; returns the reply.
    fn recv_answer(&mut self, seq: u32, request: &str) -> Result<Reply, NetlinkError> {
        loop {
            // SAFETY: `self.buf` is valid for writes of its full length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Socket {
                    op: "recv",
                    source: e,
                });
            }
            let replies =
                parse_replies(&self.buf[..n as usize]).ok_or_else(|| NetlinkError::Malformed {
                    request: request.to_owned(),
                    what: "inconsistent message length",
                })?;
            for r in replies {
                let rseq = match &r {
                    Reply::Ack { seq }
                    | Reply::Error { seq, .. }
                    | Reply::Link { seq, .. }
                    | Reply::Other { seq, .. } => *seq,
                };
                if rseq == seq {
                    return Ok(r);
                }
            }
        }
    }

    /// Sends a request that expects only an acknowledgement.
    pub fn execute(&mut self, msg: &mut Message, request: &str) -> Result<(), NetlinkError> {
        let seq = self.send(msg)?;
        match self.recv_answer(seq, request)? {
            Reply::Ack { .. } => Ok(()),
            Reply::Error { errno, message, .. } => Err(NetlinkError::Kernel {
                request: request.to_owned(),
                errno,
                message,
            }),
            _ => Err(NetlinkError::Malformed {
                request: request.to_owned(),
                what: "expected an acknowledgement",
            }),
        }
    }

    /// The link called `name`, or None when there is none in this
    /// namespace.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let request = format!("RTM_GETLINK \"{name}\"");
        let seq = self.send(&mut get_link_request(name))?;
        match self.recv_answer(seq, &request)? {
            Reply::Link { link, .. } => Ok(Some(link)),
            Reply::Error { errno, .. } if errno == libc::ENODEV => Ok(None),
            Reply::Error { errno, message, .. } => Err(NetlinkError::Kernel {
                request,
                errno,
                message,
            }),
            _ => Err(NetlinkError::Malformed {
                request,
                what: "expected RTM_NEWLINK",
            }),
        }
    }

    /// Applies `change` to link `ifindex`.
    pub fn set_link(&mut self, ifindex: u32, change: &LinkChange) -> Result<(), NetlinkError> {
        self.execute(
            &mut set_link_request(ifindex, change),
            &format!("RTM_SETLINK ifindex {ifindex}"),
        )
    }

    /// Deletes link `ifindex`.
    pub fn del_link(&mut self, ifindex: u32) -> Result<(), NetlinkError> {
        self.execute(
            &mut del_link_request(ifindex),
            &format!("RTM_DELLINK ifindex {ifindex}"),
        )
    }

    /// Adds `addr/prefix` to link `ifindex` (IPv6 without DAD).
    pub fn add_address(
        &mut self,
        ifindex: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        self.execute(
            &mut new_addr_request(ifindex, addr, prefix),
            &format!("RTM_NEWADDR {addr}/{prefix} on ifindex {ifindex}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn set_link_request_encodes_header_ifinfomsg_and_padded_attributes() {
        let change = LinkChange {
            name: Some("eth0".into()),
            mtu: Some(9000),
            up: Some(true),
            ..LinkChange::default()
        };
        let mut m = set_link_request(7, &change);
        let b = m.finish(42).to_vec();
        // nlmsghdr
        assert_eq!(u32_at(&b, 0).unwrap() as usize, b.len());
        assert_eq!(u16_at(&b, 4), Some(RTM_SETLINK));
        assert_eq!(u16_at(&b, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&b, 8), Some(42));
        // ifinfomsg: index 7, flags IFF_UP, change IFF_UP
        assert_eq!(u32_at(&b, 20), Some(7));
        assert_eq!(u32_at(&b, 24), Some(IFF_UP));
        assert_eq!(u32_at(&b, 28), Some(IFF_UP));
        // IFLA_IFNAME "eth0\0": len 9, padded to 12
        assert_eq!(u16_at(&b, 32), Some(9));
        assert_eq!(u16_at(&b, 34), Some(IFLA_IFNAME));
        assert_eq!(&b[36..41], b"eth0\0");
        assert_eq!(&b[41..44], &[0, 0, 0]);
        // IFLA_MTU 9000
        assert_eq!(u16_at(&b, 44), Some(8));
        assert_eq!(u16_at(&b, 46), Some(IFLA_MTU));
        assert_eq!(u32_at(&b, 48), Some(9000));
        assert_eq!(b.len(), 52);
    }

    #[test]
    fn move_to_netns_carries_the_fd_before_the_new_name() {
        let change = LinkChange {
            name: Some("eth0".into()),
            netns_fd: Some(5),
            ..LinkChange::default()
        };
        let mut m = set_link_request(3, &change);
        let b = m.finish(1).to_vec();
        let a: Vec<(u16, Vec<u8>)> = attrs(&b[NLMSG_HDRLEN + IFINFOMSG_LEN..])
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        assert_eq!(a[0], (IFLA_NET_NS_FD, 5u32.to_ne_bytes().to_vec()));
        assert_eq!(a[1], (IFLA_IFNAME, b"eth0\0".to_vec()));
        // Neither up nor down requested: change mask is zero.
        assert_eq!(u32_at(&b, 28), Some(0));
    }

    #[test]
    fn del_and_get_link_requests_name_their_target() {
        let mut m = del_link_request(12);
        let b = m.finish(5).to_vec();
        assert_eq!(b.len(), NLMSG_HDRLEN + IFINFOMSG_LEN);
        assert_eq!(u16_at(&b, 4), Some(RTM_DELLINK));
        assert_eq!(u16_at(&b, 6), Some(NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(u32_at(&b, 20), Some(12));
        let mut m = get_link_request("eth0");
        let b = m.finish(6).to_vec();
        assert_eq!(u16_at(&b, 4), Some(RTM_GETLINK));
        // No ACK flag: the reply itself (or an error) answers.
        assert_eq!(u16_at(&b, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&b, 20), Some(0));
        let a: Vec<_> = attrs(&b[NLMSG_HDRLEN + IFINFOMSG_LEN..]).collect();
        assert_eq!(a, vec![(IFLA_IFNAME, &b"eth0\0"[..])]);
    }

    #[test]
    fn ipv6_address_request_asks_for_no_dad() {
        let addr: Ipv6Addr = "fd00::1".parse().unwrap();
        let mut m = new_addr_request(9, IpAddr::V6(addr), 64);
        let b = m.finish(3).to_vec();
        assert_eq!(u16_at(&b, 4), Some(RTM_NEWADDR));
        assert_eq!(
            u16_at(&b, 6),
            Some(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
        );
        assert_eq!(&b[16..20], &[AF_INET6, 64, IFA_F_NODAD as u8, 0]);
        assert_eq!(u32_at(&b, 20), Some(9));
        let a: Vec<(u16, Vec<u8>)> = attrs(&b[NLMSG_HDRLEN + IFADDRMSG_LEN..])
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        assert_eq!(a[0], (IFA_ADDRESS, addr.octets().to_vec()));
        assert_eq!(a[1], (IFA_FLAGS, IFA_F_NODAD.to_ne_bytes().to_vec()));
    }

    #[test]
    fn ipv4_address_request_sets_local_and_address() {
        let addr = Ipv4Addr::new(10, 1, 2, 3);
        let mut m = new_addr_request(4, IpAddr::V4(addr), 24);
        let b = m.finish(3).to_vec();
        assert_eq!(&b[16..20], &[AF_INET, 24, 0, 0]);
        let a: Vec<(u16, Vec<u8>)> = attrs(&b[NLMSG_HDRLEN + IFADDRMSG_LEN..])
            .map(|(t, v)| (t, v.to_vec()))
            .collect();
        assert_eq!(a[0], (IFA_LOCAL, vec![10, 1, 2, 3]));
        assert_eq!(a[1], (IFA_ADDRESS, vec![10, 1, 2, 3]));
    }

    #[test]
    fn nested_attribute_length_covers_its_children() {
        let mut m = Message::new(RTM_NEWLINK, 0);
        m.push_fixed(&ifinfomsg(0, 0, 0))
            .begin_nest(18)
            .attr_str(1, "tun")
            .end_nest();
        let b = m.finish(1).to_vec();
        let start = NLMSG_HDRLEN + IFINFOMSG_LEN;
        assert_eq!(u16_at(&b, start), Some(12)); // 4 + (4 + "tun\0")
        assert_eq!(u16_at(&b, start + 2), Some(18 | 0x8000));
        let (ty, inner) = attrs(&b[start..]).next().unwrap();
        assert_eq!(ty, 18);
        assert_eq!(attrs(inner).next(), Some((1, &b"tun\0"[..])));
    }

    /// An error reply exactly as Linux 6.x sends it with NETLINK_CAP_ACK and
    /// NETLINK_EXT_ACK: errno -EEXIST, the request's header, then a
    /// NLMSGERR_ATTR_MSG string.
    fn eexist_reply() -> Vec<u8> {
        let msg = b"Interface name is in use\0"; // hypothetical text
        let mut b = Vec::new();
        let total = NLMSG_HDRLEN + 4 + NLMSG_HDRLEN + align4(NLA_HDRLEN + msg.len());
        b.extend_from_slice(&(total as u32).to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&(NLM_F_CAPPED | NLM_F_ACK_TLVS).to_ne_bytes());
        b.extend_from_slice(&77u32.to_ne_bytes());
        b.extend_from_slice(&1234u32.to_ne_bytes());
        b.extend_from_slice(&(-libc::EEXIST).to_ne_bytes());
        // echoed request header
        b.extend_from_slice(&52u32.to_ne_bytes());
        b.extend_from_slice(&RTM_SETLINK.to_ne_bytes());
        b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(&77u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&((NLA_HDRLEN + msg.len()) as u16).to_ne_bytes());
        b.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        b.extend_from_slice(msg);
        b.resize(align4(b.len()), 0);
        assert_eq!(b.len(), total);
        b
    }

    #[test]
    fn error_reply_yields_errno_and_extended_ack_message() {
        let r = parse_replies(&eexist_reply()).unwrap();
        assert_eq!(
            r,
            vec![Reply::Error {
                seq: 77,
                errno: libc::EEXIST,
                message: Some("Interface name is in use".into()),
            }]
        );
    }

    #[test]
    fn kernel_error_message_names_request_and_reason() {
        let e = NetlinkError::Kernel {
            request: "RTM_SETLINK ifindex 7".into(),
            errno: libc::EEXIST,
            message: Some("name in use".into()),
        };
        let s = e.to_string();
        assert!(s.starts_with("RTM_SETLINK ifindex 7: File exists"), "{s}");
        assert!(s.ends_with("(name in use)"), "{s}");
        assert_eq!(e.errno(), Some(libc::EEXIST));
    }

    #[test]
    fn ack_and_link_replies_in_one_datagram_are_both_parsed() {
        let mut b = Vec::new();
        // RTM_NEWLINK for index 5 "eth0", MTU 1500, MAC 02:..:01
        let mut link = Message::new(RTM_NEWLINK, 0);
        link.push_fixed(&ifinfomsg(5, IFF_UP, 0))
            .attr_str(IFLA_IFNAME, "eth0")
            .attr_u32(IFLA_MTU, 1500)
            .attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 1]);
        b.extend_from_slice(link.finish(9));
        // ACK
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&10u32.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0i32.to_ne_bytes());
        b.extend_from_slice(&[0u8; 16]);
        let r = parse_replies(&b).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            Reply::Link {
                seq: 9,
                link: LinkInfo {
                    index: 5,
                    flags: IFF_UP,
                    name: "eth0".into(),
                    mtu: 1500,
                    mac: Some([2, 0, 0, 0, 0, 1]),
                }
            }
        );
        assert_eq!(r[1], Reply::Ack { seq: 10 });
    }

    #[test]
    fn truncated_reply_is_rejected_not_panicked_on() {
        let b = eexist_reply();
        for cut in [5, 17, 20, 40] {
            // Either parsed partially or refused; never a panic.
            let _ = parse_replies(&b[..cut]);
        }
        let mut bad = b.clone();
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert_eq!(parse_replies(&bad), None);
        let mut tiny = b;
        tiny[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert_eq!(parse_replies(&tiny), None);
    }

    #[test]
    fn attribute_with_bad_length_stops_iteration() {
        let b = [8u8, 0, 1, 0, 1, 2, 3, 4, 200, 0, 2, 0, 0, 0];
        let v: Vec<_> = attrs(&b).collect();
        assert_eq!(v, vec![(1, &[1u8, 2, 3, 4][..])]);
    }
}
