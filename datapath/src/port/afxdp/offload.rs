//! Turning off the offloads AF_XDP cannot carry, moving the container's
//! receive work off the PMD, and putting everything back.
//!
//! An AF_XDP descriptor is a bare (addr, len): no `CHECKSUM_PARTIAL`, no GSO
//! size. So on attach the port switches off, on the veth *peer* (the
//! container's end, found through the veth driver's `peer_ifindex` statistic
//! in this namespace or in any namespace under /run/netns), transmit checksum
//! offload (which drops TSO/USO with it) and TSO; on the device itself GRO,
//! whose aggregated frames would not fit a UMEM chunk in generic mode.
//!
//! Peer NAPI (`peer-napi=threaded`, the default): a copy-mode AF_XDP
//! transmit ends in `veth_xmit`, which without NAPI on the receiving end
//! hands the frame to `netif_rx` and runs the *container's* whole receive
//! path (IP, TCP, the ACKs it sends back) in the softirq of the PMD's
//! `sendto`. Measured here that was over half of the PMD's cycles. The port
//! therefore turns on GRO on the peer (veth then queues to the peer's NAPI
//! instead), runs that NAPI in its own kernel thread (`threaded`), and
//! switches off TSO on its own device, because veth only takes the NAPI
//! path from a sender without TSO (`veth_skb_is_eligible_for_gro`); AF_XDP
//! transmits no GSO frames anyway.
//!
//! Every change is logged and recorded; dropping the guard restores what was
//! changed, best effort (the peer may be gone by then).

use crate::sys::ethtool::{NetdevIoctl, Offload};
use crate::sys::netns::netdev_sysfs_attr;
use std::fs::File;
use std::os::fd::AsRawFd;

/// Where namespaces created with `ip netns add` are bound.
const NETNS_RUN_DIR: &str = "/run/netns";

/// One offload switch the port changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadChange {
    /// Namespace of the device (`ip netns` name), None for the port's own.
    pub netns: Option<String>,
    /// Device name inside that namespace.
    pub dev: String,
    /// What changed.
    pub what: Tunable,
    /// Value before the change; the change set the opposite.
    pub was_on: bool,
}

/// A device setting the port may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunable {
    /// An ethtool offload switch.
    Offload(Offload),
    /// NAPI in a kernel thread (`/sys/class/net/DEV/threaded`).
    ThreadedNapi,
}

impl Tunable {
    /// The name ethtool or sysfs uses.
    pub fn name(&self) -> &'static str {
        match self {
            Tunable::Offload(o) => o.name(),
            Tunable::ThreadedNapi => "threaded-napi",
        }
    }
}

impl std::fmt::Display for OffloadChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = if self.was_on { "off" } else { "on" };
        match &self.netns {
            Some(ns) => write!(f, "{}@{}: {} {to}", self.dev, ns, self.what.name()),
            None => write!(f, "{}: {} {to}", self.dev, self.what.name()),
        }
    }
}

/// Runs `f` with a netdev control socket in namespace `netns` (None: the
/// caller's). Namespaces are per thread, so a named one is entered by a
/// short-lived thread and the caller's thread never moves.
fn in_netns<R: Send>(
    netns: Option<&str>,
    f: impl FnOnce(&NetdevIoctl) -> Option<R> + Send,
) -> Option<R> {
    match netns {
        None => f(&NetdevIoctl::new().ok()?),
        Some(name) => {
            let path = format!("{NETNS_RUN_DIR}/{name}");
            std::thread::scope(|s| {
                s.spawn(move || {
                    let file = File::open(&path).ok()?;
                    // SAFETY: setns on a namespace fd we opened; it affects
                    // only this scoped helper thread, which ends right after.
                    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                    if rc != 0 {
                        return None;
                    }
                    f(&NetdevIoctl::new().ok()?)
                })
                .join()
                .ok()
                .flatten()
            })
        }
    }
}

/// Finds the veth peer of `dev` (ifindex `ifindex`): (namespace, name).
fn find_peer(dev: &str, ifindex: u32) -> Option<(Option<String>, String)> {
    let nd = NetdevIoctl::new().ok()?;
    let peer_idx = nd.veth_peer_ifindex(dev).ok()??;
    // The peer's ifindex is in the peer's namespace; a candidate is
    // accepted when it is a veth whose own peer is our ifindex.
    let check = move |nd: &NetdevIoctl| -> Option<String> {
        let name = nd.name_of(peer_idx)?;
        (nd.veth_peer_ifindex(&name).ok()?? == ifindex).then_some(name)
    };
    if let Some(name) = in_netns(None, check) {
        if name != dev {
            return Some((None, name));
        }
    }
    let entries = std::fs::read_dir(NETNS_RUN_DIR).ok()?;
    for e in entries.flatten() {
        let ns = e.file_name().to_string_lossy().into_owned();
        if let Some(name) = in_netns(Some(&ns), check) {
            return Some((Some(ns), name));
        }
    }
    None
}

/// Sets the offloads `which` of `dev` to `on` where they differ; returns
/// what it changed.
fn switch(netns: Option<&str>, dev: &str, which: &[Offload], on: bool) -> Vec<OffloadChange> {
    let dev_owned = dev.to_string();
    let ns_owned = netns.map(str::to_string);
    let which = which.to_vec();
    in_netns(netns, move |nd| {
        let mut changes = Vec::new();
        for o in which {
            if nd.offload(&dev_owned, o).ok() == Some(!on)
                && nd.set_offload(&dev_owned, o, on).is_ok()
            {
                changes.push(OffloadChange {
                    netns: ns_owned.clone(),
                    dev: dev_owned.clone(),
                    what: Tunable::Offload(o),
                    was_on: !on,
                });
            }
        }
        Some(changes)
    })
    .unwrap_or_default()
}

/// Sets `dev`'s NAPI threaded (`on`) or not; None when it already was, or
/// when the kernel refused (logged).
fn set_threaded(port: &str, netns: Option<&str>, dev: &str, on: bool) -> Option<OffloadChange> {
    let want = if on { "1" } else { "0" };
    match netdev_sysfs_attr(netns, dev, "threaded", None) {
        Ok(now) if now == want => None,
        Ok(_) => match netdev_sysfs_attr(netns, dev, "threaded", Some(want)) {
            Ok(_) => Some(OffloadChange {
                netns: netns.map(str::to_string),
                dev: dev.to_string(),
                what: Tunable::ThreadedNapi,
                was_on: !on,
            }),
            Err(e) => {
                tracing::warn!(port, dev, error = %e, "could not change threaded NAPI");
                None
            }
        },
        Err(e) => {
            tracing::warn!(port, dev, error = %e, "could not read threaded NAPI");
            None
        }
    }
}

/// Offloads changed for an AF_XDP port; restored on drop.
#[derive(Debug, Default)]
pub struct PeerOffloads {
    changes: Vec<OffloadChange>,
    peer_found: bool,
}

impl PeerOffloads {
    /// Switches off what AF_XDP cannot carry on `dev`'s peer and `dev`;
    /// with `peer_napi`, also moves the peer's receive into a NAPI thread
    /// (see the module comment).
    pub(crate) fn disable(port: &str, dev: &str, ifindex: u32, peer_napi: bool) -> Self {
        let mut changes = Vec::new();
        let peer = find_peer(dev, ifindex);
        if let Some((ns, name)) = &peer {
            changes.extend(switch(
                ns.as_deref(),
                name,
                &[Offload::TxChecksum, Offload::Tso, Offload::Ufo],
                false,
            ));
            if peer_napi {
                changes.extend(switch(None, dev, &[Offload::Tso], false));
                changes.extend(switch(ns.as_deref(), name, &[Offload::Gro], true));
                changes.extend(set_threaded(port, ns.as_deref(), name, true));
            }
        } else {
            tracing::warn!(
                port,
                dev,
                "no veth peer found: frames with partial checksums are completed in software"
            );
        }
        changes.extend(switch(None, dev, &[Offload::Gro], false));
        for c in &changes {
            tracing::info!(port, change = %c, "AF_XDP port changed a device setting");
        }
        PeerOffloads {
            changes,
            peer_found: peer.is_some(),
        }
    }

    /// What was changed.
    pub fn changes(&self) -> &[OffloadChange] {
        &self.changes
    }

    /// True when the veth peer was found (and its offloads handled).
    pub fn peer_found(&self) -> bool {
        self.peer_found
    }
}

impl Drop for PeerOffloads {
    fn drop(&mut self) {
        // Restore in reverse: tx checksum before TSO, which depends on it.
        for c in self.changes.iter().rev() {
            let dev = c.dev.clone();
            match c.what {
                Tunable::Offload(o) => {
                    let on = c.was_on;
                    let _ = in_netns(c.netns.as_deref(), move |nd| {
                        nd.set_offload(&dev, o, on).ok()
                    });
                }
                Tunable::ThreadedNapi => {
                    let v = if c.was_on { "1" } else { "0" };
                    let _ = netdev_sysfs_attr(c.netns.as_deref(), &dev, "threaded", Some(v));
                }
            }
        }
    }
}
