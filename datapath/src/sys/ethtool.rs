//! Netdev ioctls: the legacy ethtool offload switches (`SIOCETHTOOL` with
//! `ETHTOOL_G/STXCSUM`, `G/SSG`, `G/STSO`, `G/SUFO`, `G/SGSO`, `G/SGRO`,
//! include/uapi/linux/ethtool.h), driver info and statistics (to find a veth
//! peer's ifindex), and the `SIOCGIF*` queries for flags, MTU and MAC
//! (netdevice(7)).
//!
//! A [`NetdevIoctl`] holds a datagram socket; ioctls act on devices of the
//! network namespace the socket was created in, which is how a port changes
//! a veth peer living in a container namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

/// Errors of netdev ioctls.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    /// The interface name does not fit `IFNAMSIZ`.
    #[error("device \"{dev}\": name longer than 15 bytes")]
    NameTooLong {
        /// Device name.
        dev: String,
    },
    /// Opening the control socket failed.
    #[error("ethtool: opening control socket failed")]
    Socket(#[source] io::Error),
    /// An ioctl failed.
    #[error("device \"{dev}\": {op} failed")]
    Ioctl {
        /// Device name.
        dev: String,
        /// The request.
        op: &'static str,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

/// An offload switch reachable through the legacy ethtool commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Offload {
    /// Transmit checksum offload (`tx`); turning it off also drops TSO/USO,
    /// which depend on it.
    TxChecksum,
    /// Scatter-gather (`sg`).
    ScatterGather,
    /// TCP segmentation offload (`tso`).
    Tso,
    /// UDP fragmentation offload (`ufo`).
    Ufo,
    /// Generic segmentation offload (`gso`).
    Gso,
    /// Generic receive offload (`gro`).
    Gro,
}

impl Offload {
    /// Every switch, in the order they are usually listed.
    pub const ALL: [Offload; 6] = [
        Offload::TxChecksum,
        Offload::ScatterGather,
        Offload::Tso,
        Offload::Ufo,
        Offload::Gso,
        Offload::Gro,
    ];

    fn get_cmd(self) -> u32 {
        match self {
            Offload::TxChecksum => 0x16,
            Offload::ScatterGather => 0x18,
            Offload::Tso => 0x1e,
            Offload::Ufo => 0x21,
            Offload::Gso => 0x23,
            Offload::Gro => 0x2b,
        }
    }

    fn set_cmd(self) -> u32 {
        self.get_cmd() + 1
    }

    /// The `ethtool -K` name.
    pub fn name(self) -> &'static str {
        match self {
            Offload::TxChecksum => "tx",
            Offload::ScatterGather => "sg",
            Offload::Tso => "tso",
            Offload::Ufo => "ufo",
            Offload::Gso => "gso",
            Offload::Gro => "gro",
        }
    }
}

/// What `ETHTOOL_GDRVINFO` tells about a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name (`veth`, `tun`, ...).
    pub driver: String,
    /// Number of `ETHTOOL_GSTATS` counters.
    pub n_stats: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    /// `ifr_ifru`: a pointer, an int or a sockaddr depending on the request.
    data: [u8; 24],
}

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// A control socket for netdev ioctls in the namespace it was created in.
#[derive(Debug)]
pub struct NetdevIoctl {
    fd: OwnedFd,
}

fn cstr_field(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

impl NetdevIoctl {
    /// Opens a control socket in the calling thread's network namespace.
    pub fn new() -> Result<Self, EthtoolError> {
        // SAFETY: plain socket(2) call with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(EthtoolError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(NetdevIoctl { fd })
    }

    fn ifreq(dev: &str) -> Result<IfReq, EthtoolError> {
        let b = dev.as_bytes();
        if b.len() >= libc::IFNAMSIZ || b.is_empty() {
            return Err(EthtoolError::NameTooLong {
                dev: dev.to_string(),
            });
        }
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..b.len()].copy_from_slice(b);
        Ok(r)
    }

    fn ioctl(
        &self,
        dev: &str,
        req: libc::c_ulong,
        ifr: &mut IfReq,
        op: &'static str,
    ) -> Result<(), EthtoolError> {
        // SAFETY: `ifr` is a valid `struct ifreq`-sized buffer; for
        // SIOCETHTOOL its data field points at a live command struct owned
        // by the caller for the duration of the call.
        let ret = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, ifr as *mut IfReq) };
        if ret < 0 {
            return Err(EthtoolError::Ioctl {
                dev: dev.to_string(),
                op,
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    fn ethtool<T>(&self, dev: &str, cmd: &mut T, op: &'static str) -> Result<(), EthtoolError> {
        let mut ifr = Self::ifreq(dev)?;
        let ptr = cmd as *mut T as usize;
        ifr.data[..std::mem::size_of::<usize>()].copy_from_slice(&ptr.to_ne_bytes());
        self.ioctl(dev, libc::SIOCETHTOOL as libc::c_ulong, &mut ifr, op)
    }

    /// Reads one offload switch.
    pub fn offload(&self, dev: &str, which: Offload) -> Result<bool, EthtoolError> {
        let mut v = EthtoolValue {
            cmd: which.get_cmd(),
            data: 0,
        };
        self.ethtool(dev, &mut v, "ETHTOOL get offload")?;
        Ok(v.data != 0)
    }

    /// Sets one offload switch.
    pub fn set_offload(&self, dev: &str, which: Offload, on: bool) -> Result<(), EthtoolError> {
        let mut v = EthtoolValue {
            cmd: which.set_cmd(),
            data: u32::from(on),
        };
        self.ethtool(dev, &mut v, "ETHTOOL set offload")
    }

    /// Driver name and statistics count.
    pub fn driver_info(&self, dev: &str) -> Result<DriverInfo, EthtoolError> {
        // SAFETY: EthtoolDrvinfo is plain integers and byte arrays; all-zero
        // is a valid value.
        let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
        info.cmd = ETHTOOL_GDRVINFO;
        self.ethtool(dev, &mut info, "ETHTOOL_GDRVINFO")?;
        Ok(DriverInfo {
            driver: cstr_field(&info.driver),
            n_stats: info.n_stats,
        })
    }

    /// The ifindex of a veth device's peer (in the peer's own namespace), or
    /// None when `dev` is not a veth or has no peer. Read from the veth
    /// driver's `peer_ifindex` statistic.
    pub fn veth_peer_ifindex(&self, dev: &str) -> Result<Option<u32>, EthtoolError> {
        let info = self.driver_info(dev)?;
        if info.driver != "veth" || info.n_stats == 0 {
            return Ok(None);
        }
        let n = info.n_stats as usize;
        // struct ethtool_gstrings { cmd, string_set, len, data[] } as u32 words.
        let mut strings = vec![0u32; 3 + n * ETH_GSTRING_LEN / 4];
        strings[0] = ETHTOOL_GSTRINGS;
        strings[1] = ETH_SS_STATS;
        strings[2] = n as u32;
        self.ethtool(dev, &mut strings[0], "ETHTOOL_GSTRINGS")?;
        // struct ethtool_stats { cmd, n_stats, data[] as u64 }.
        let mut stats = vec![0u64; 1 + n];
        stats[0] = u64::from(ETHTOOL_GSTATS) | ((n as u64) << 32);
        self.ethtool(dev, &mut stats[0], "ETHTOOL_GSTATS")?;
        let names: Vec<u8> = strings[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        for i in 0..n {
            let name = cstr_field(&names[i * ETH_GSTRING_LEN..(i + 1) * ETH_GSTRING_LEN]);
            if name == "peer_ifindex" {
                let idx = stats[1 + i] as u32;
                return Ok((idx != 0).then_some(idx));
            }
        }
        Ok(None)
    }

    /// Interface flags (`IFF_UP`, `IFF_RUNNING`, ...).
    pub fn flags(&self, dev: &str) -> Result<u32, EthtoolError> {
        let mut ifr = Self::ifreq(dev)?;
        self.ioctl(
            dev,
            libc::SIOCGIFFLAGS as libc::c_ulong,
            &mut ifr,
            "SIOCGIFFLAGS",
        )?;
        Ok(u32::from(u16::from_ne_bytes([ifr.data[0], ifr.data[1]])))
    }

    /// MTU.
    pub fn mtu(&self, dev: &str) -> Result<u32, EthtoolError> {
        let mut ifr = Self::ifreq(dev)?;
        self.ioctl(
            dev,
            libc::SIOCGIFMTU as libc::c_ulong,
            &mut ifr,
            "SIOCGIFMTU",
        )?;
        Ok(i32::from_ne_bytes([ifr.data[0], ifr.data[1], ifr.data[2], ifr.data[3]]) as u32)
    }

    /// Hardware (MAC) address.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6], EthtoolError> {
        let mut ifr = Self::ifreq(dev)?;
        self.ioctl(
            dev,
            libc::SIOCGIFHWADDR as libc::c_ulong,
            &mut ifr,
            "SIOCGIFHWADDR",
        )?;
        // struct sockaddr: sa_family (2 bytes) then sa_data.
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&ifr.data[2..8]);
        Ok(mac)
    }

    /// Name of the device with `ifindex` in this socket's namespace.
    pub fn name_of(&self, ifindex: u32) -> Option<String> {
        let mut ifr = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        ifr.data[..4].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        self.ioctl(
            "",
            libc::SIOCGIFNAME as libc::c_ulong,
            &mut ifr,
            "SIOCGIFNAME",
        )
        .ok()?;
        Some(cstr_field(&ifr.name))
    }

    /// Ifindex of `dev` in this socket's namespace.
    pub fn index_of(&self, dev: &str) -> Result<u32, EthtoolError> {
        let mut ifr = Self::ifreq(dev)?;
        self.ioctl(
            dev,
            libc::SIOCGIFINDEX as libc::c_ulong,
            &mut ifr,
            "SIOCGIFINDEX",
        )?;
        Ok(i32::from_ne_bytes([ifr.data[0], ifr.data[1], ifr.data[2], ifr.data[3]]) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_commands_follow_get_commands() {
        // ethtool.h pairs every legacy G* command with S* = G* + 1.
        assert_eq!(Offload::TxChecksum.set_cmd(), 0x17);
        assert_eq!(Offload::Tso.set_cmd(), 0x1f);
        assert_eq!(Offload::Gso.set_cmd(), 0x24);
        assert_eq!(Offload::Gro.set_cmd(), 0x2c);
    }

    #[test]
    fn ioctl_structs_have_uapi_sizes() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
    }

    #[test]
    fn overlong_device_name_is_an_error_not_a_panic() {
        let e = NetdevIoctl::ifreq("a_sixteen_bytes_").err().unwrap();
        assert!(e.to_string().contains("a_sixteen_bytes_"));
    }

    #[test]
    fn loopback_is_queried_in_own_namespace() {
        let nd = NetdevIoctl::new().unwrap();
        let idx = nd.index_of("lo").unwrap();
        assert_eq!(nd.name_of(idx).as_deref(), Some("lo"));
        assert!(nd.mtu("lo").unwrap() >= 1500);
        assert_ne!(nd.flags("lo").unwrap() & libc::IFF_UP as u32, 0);
        // Loopback has no driver info: an error or "not a veth", never a peer.
        assert!(!matches!(nd.veth_peer_ifindex("lo"), Ok(Some(_))));
    }
}
