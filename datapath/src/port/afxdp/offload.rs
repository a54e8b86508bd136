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
//! Peer NAPI (`peer-napi=auto`, the default): a copy-mode AF_XDP transmit
//! ends in `veth_xmit`, which without NAPI on the receiving end hands the
//! frame to `netif_rx` and runs the *container's* whole receive path (IP,
//! TCP, the ACKs it sends back) in the softirq of the PMD's `sendto`.
//! Measured here that was over half of the PMD's cycles, and TCP stopped at
//! ~2.4 Gbit/s with the other core half idle. The port therefore turns on
//! GRO on the peer (veth then queues to the peer's NAPI instead) and
//! switches off TSO on its own device, because veth only takes the NAPI
//! path from a sender without TSO (`veth_skb_is_eligible_for_gro`); AF_XDP
//! transmits no GSO frames anyway. Running that NAPI in its own kernel
//! thread (`/sys/class/net/DEV/threaded`) lets the container's receive run
//! on another core, which doubles TCP, but every frame then wakes a thread
//! on a possibly idle vCPU, which triples ping time. So `auto` keeps the
//! NAPI inline while the port carries (rx + tx) less than
//! [`THREADED_ON_PPS`] and makes it threaded above, back inline under
//! [`THREADED_OFF_PPS`]; the rate is sampled by `health_check` (every
//! 200 ms in vswitchd). Both directions count: on a TCP sender's port the
//! frames we transmit are only the ACKs (few, with GRO at the receiver),
//! yet processing them inline runs the sender's whole TCP output (pacing,
//! GSO, the XDP redirect of the data it emits) on the PMD's core.
//! `threaded` and `inline` fix the mode.
//!
//! Every change is logged and recorded; dropping the guard restores what was
//! changed, best effort (the peer may be gone by then).

use crate::sys::ethtool::{NetdevIoctl, Offload};
use crate::sys::netns::{in_named_netns, netdev_sysfs_attr, NETNS_RUN_DIR};
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// Packet rate (rx + tx) above which `peer-napi=auto` makes the peer's NAPI
/// threaded: a bulk transfer, where parallelism beats wake-up latency.
pub const THREADED_ON_PPS: u64 = 20_000;
/// Packet rate below which `auto` goes back inline (hysteresis).
pub const THREADED_OFF_PPS: u64 = 5_000;
/// Shortest interval a rate is computed over.
const MIN_SAMPLE: Duration = Duration::from_millis(150);

/// Where the veth peer runs its receive of what the port transmits
/// (`peer-napi=`); see the module comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerNapi {
    /// The kernel's default: no GRO, receive inside the PMD's transmit.
    Inline,
    /// GRO on the peer and its NAPI always in a kernel thread.
    Threaded,
    /// GRO on the peer; NAPI inline at low rates, threaded at high ones.
    Auto,
}

impl PeerNapi {
    /// Parses `auto|threaded|inline`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(PeerNapi::Auto),
            "threaded" => Some(PeerNapi::Threaded),
            "inline" => Some(PeerNapi::Inline),
            _ => None,
        }
    }
}

/// One offload switch the port changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadChange {
    /// Namespace of the device (`ip netns` name), None for the port's own.
    pub netns: Option<String>,
    /// Device name inside that namespace.
    pub dev: String,
    /// The switch.
    pub offload: Offload,
    /// Value before the change; the change set the opposite.
    pub was_on: bool,
}

impl std::fmt::Display for OffloadChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = if self.was_on { "off" } else { "on" };
        match &self.netns {
            Some(ns) => write!(f, "{}@{}: {} {to}", self.dev, ns, self.offload.name()),
            None => write!(f, "{}: {} {to}", self.dev, self.offload.name()),
        }
    }
}

/// Runs `f` with a netdev control socket in namespace `netns` (None: the
/// caller's), through [`in_named_netns`]: a named namespace is entered by a
/// short-lived thread and the caller's thread never moves. None when the
/// namespace or the socket cannot be had.
fn in_netns<R: Send>(
    netns: Option<&str>,
    f: impl FnOnce(&NetdevIoctl) -> Option<R> + Send,
) -> Option<R> {
    in_named_netns(netns, || f(&NetdevIoctl::new().ok()?))
        .ok()
        .flatten()
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
                    offload: o,
                    was_on: !on,
                });
            }
        }
        Some(changes)
    })
    .unwrap_or_default()
}

/// The peer's NAPI mode as the port manages it.
#[derive(Debug)]
struct NapiControl {
    netns: Option<String>,
    dev: String,
    auto: bool,
    state: Mutex<NapiState>,
}

#[derive(Debug)]
struct NapiState {
    /// Threaded now (as last read or written).
    threaded: bool,
    /// The value before the port's first change; restored on drop.
    original: Option<bool>,
    /// Packet counter and time of the last rate sample.
    last: Option<(u64, Instant)>,
    /// Mode changes so far.
    switches: u64,
}

impl NapiControl {
    fn new(port: &str, netns: Option<&str>, dev: &str, mode: PeerNapi) -> Option<Self> {
        let now = match netdev_sysfs_attr(netns, dev, "threaded", None) {
            Ok(v) => v != "0",
            Err(e) => {
                tracing::warn!(port, dev, error = %e, "peer NAPI mode unreadable: left alone");
                return None;
            }
        };
        let c = NapiControl {
            netns: netns.map(str::to_string),
            dev: dev.to_string(),
            auto: mode == PeerNapi::Auto,
            state: Mutex::new(NapiState {
                threaded: now,
                original: None,
                last: None,
                switches: 0,
            }),
        };
        let want = match mode {
            PeerNapi::Threaded => Some(true),
            // Start inline: an idle port should answer pings fast.
            PeerNapi::Auto => Some(false),
            PeerNapi::Inline => None,
        };
        if let Some(on) = want {
            c.set(port, &mut c.state.lock(), on, None);
        }
        Some(c)
    }

    /// Writes `threaded` (1 or 0) in the peer's namespace.
    fn write(&self, on: bool) -> Result<String, crate::sys::netns::NetnsError> {
        let v = if on { "1" } else { "0" };
        netdev_sysfs_attr(self.netns.as_deref(), &self.dev, "threaded", Some(v))
    }

    /// Writes the mode; logs and keeps the old one if the kernel refuses.
    fn set(&self, port: &str, s: &mut NapiState, on: bool, pps: Option<u64>) {
        if s.threaded == on {
            return;
        }
        match self.write(on) {
            Ok(_) => {
                s.original.get_or_insert(s.threaded);
                s.threaded = on;
                s.switches += 1;
                let mode = if on { "threaded" } else { "inline" };
                tracing::info!(port, peer = %self.dev, mode, pps, "peer NAPI mode changed");
            }
            Err(e) => {
                tracing::warn!(port, peer = %self.dev, error = %e, "could not change peer NAPI mode")
            }
        }
    }

    /// `auto`: samples the packet counter and switches mode on the rate.
    fn tune(&self, port: &str, packets: u64, now: Instant) {
        if !self.auto {
            return;
        }
        let mut s = self.state.lock();
        if let Some((n0, t0)) = s.last {
            let dt = now.saturating_duration_since(t0);
            if dt < MIN_SAMPLE {
                return;
            }
            let pps = (packets.saturating_sub(n0) as f64 / dt.as_secs_f64()) as u64;
            if !s.threaded && pps >= THREADED_ON_PPS {
                self.set(port, &mut s, true, Some(pps));
            } else if s.threaded && pps <= THREADED_OFF_PPS {
                self.set(port, &mut s, false, Some(pps));
            }
        }
        s.last = Some((packets, now));
    }
}

impl Drop for NapiControl {
    fn drop(&mut self) {
        let s = self.state.get_mut();
        if let Some(orig) = s.original.filter(|o| *o != s.threaded) {
            let _ = self.write(orig);
        }
    }
}

/// Offloads changed for an AF_XDP port; restored on drop.
#[derive(Debug, Default)]
pub struct PeerOffloads {
    changes: Vec<OffloadChange>,
    peer_found: bool,
    napi: Option<NapiControl>,
}

impl PeerOffloads {
    /// Switches off what AF_XDP cannot carry on `dev`'s peer and `dev`,
    /// and sets up the peer's receive as `peer_napi` says (see the module
    /// comment).
    pub(crate) fn disable(port: &str, dev: &str, ifindex: u32, peer_napi: PeerNapi) -> Self {
        let mut changes = Vec::new();
        let mut napi = None;
        let peer = find_peer(dev, ifindex);
        if let Some((ns, name)) = &peer {
            changes.extend(switch(
                ns.as_deref(),
                name,
                &[Offload::TxChecksum, Offload::Tso, Offload::Ufo],
                false,
            ));
            if peer_napi != PeerNapi::Inline {
                changes.extend(switch(None, dev, &[Offload::Tso], false));
                changes.extend(switch(ns.as_deref(), name, &[Offload::Gro], true));
                napi = NapiControl::new(port, ns.as_deref(), name, peer_napi);
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
            napi,
        }
    }

    /// Housekeeping (`peer-napi=auto`): `packets` is the port's rx + tx
    /// counter, sampled every few hundred milliseconds.
    pub(crate) fn tune(&self, port: &str, packets: u64) {
        if let Some(n) = &self.napi {
            n.tune(port, packets, Instant::now());
        }
    }

    /// The peer's NAPI mode when the port manages it: (threaded now, mode
    /// changes so far).
    pub fn peer_napi(&self) -> Option<(bool, u64)> {
        self.napi.as_ref().map(|n| {
            let s = n.state.lock();
            (s.threaded, s.switches)
        })
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
        // The NAPI mode first (its own Drop), then the offloads.
        self.napi = None;
        for c in self.changes.iter().rev() {
            let dev = c.dev.clone();
            let (o, on) = (c.offload, c.was_on);
            let _ = in_netns(c.netns.as_deref(), move |nd| {
                nd.set_offload(&dev, o, on).ok()
            });
        }
    }
}
