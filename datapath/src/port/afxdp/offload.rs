//! Turning off the offloads AF_XDP cannot carry, and putting them back.
//!
//! An AF_XDP descriptor is a bare (addr, len): no `CHECKSUM_PARTIAL`, no GSO
//! size. So on attach the port switches off, on the veth *peer* (the
//! container's end, found through the veth driver's `peer_ifindex` statistic
//! in this namespace or in any namespace under /run/netns), transmit checksum
//! offload (which drops TSO/USO with it) and TSO; on the device itself GRO,
//! whose aggregated frames would not fit a UMEM chunk in generic mode. Every
//! change is logged and recorded; dropping the guard restores what was
//! changed, best effort (the peer may be gone by then).

use crate::sys::ethtool::{NetdevIoctl, Offload};
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
    /// The switch.
    pub offload: Offload,
    /// Value before the change (the change is always to off).
    pub was_on: bool,
}

impl std::fmt::Display for OffloadChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.netns {
            Some(ns) => write!(f, "{}@{}: {} off", self.dev, ns, self.offload.name()),
            None => write!(f, "{}: {} off", self.dev, self.offload.name()),
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

fn switch_off(netns: Option<&str>, dev: &str, which: &[Offload]) -> Vec<OffloadChange> {
    let dev_owned = dev.to_string();
    let ns_owned = netns.map(str::to_string);
    let which = which.to_vec();
    in_netns(netns, move |nd| {
        let mut changes = Vec::new();
        for o in which {
            if nd.offload(&dev_owned, o).ok() == Some(true)
                && nd.set_offload(&dev_owned, o, false).is_ok()
            {
                changes.push(OffloadChange {
                    netns: ns_owned.clone(),
                    dev: dev_owned.clone(),
                    offload: o,
                    was_on: true,
                });
            }
        }
        Some(changes)
    })
    .unwrap_or_default()
}

/// Offloads changed for an AF_XDP port; restored on drop.
#[derive(Debug, Default)]
pub struct PeerOffloads {
    changes: Vec<OffloadChange>,
    peer_found: bool,
}

impl PeerOffloads {
    /// Switches off what AF_XDP cannot carry on `dev`'s peer and `dev`.
    pub(crate) fn disable(port: &str, dev: &str, ifindex: u32) -> Self {
        let mut changes = Vec::new();
        let peer = find_peer(dev, ifindex);
        if let Some((ns, name)) = &peer {
            changes.extend(switch_off(
                ns.as_deref(),
                name,
                &[Offload::TxChecksum, Offload::Tso, Offload::Ufo],
            ));
        } else {
            tracing::warn!(
                port,
                dev,
                "no veth peer found: frames with partial checksums are completed in software"
            );
        }
        changes.extend(switch_off(None, dev, &[Offload::Gro]));
        for c in &changes {
            tracing::info!(port, change = %c, "AF_XDP cannot carry this offload: switched off");
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
        for c in self.changes.iter().rev().filter(|c| c.was_on) {
            let dev = c.dev.clone();
            let o = c.offload;
            let _ = in_netns(c.netns.as_deref(), move |nd| {
                nd.set_offload(&dev, o, true).ok()
            });
        }
    }
}
