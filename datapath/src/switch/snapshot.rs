//! The immutable view of the datapath that PMD threads forward with.
//!
//! Built by the control side on every change and swapped in atomically;
//! a PMD loads the current one between bursts, so a change never stalls a
//! PMD and a packet never sees half of one.

use crate::flow::PortNo;
use crate::pipeline::{BridgePort, Fdb, Pipeline, VlanMode};
use crate::port::capture::CaptureSink;
use crate::port::Port;
use std::sync::Arc;

/// A port as the datapath sees it.
pub struct PortEntry {
    /// Port number (unique across the switch).
    pub no: PortNo,
    /// Port name.
    pub name: String,
    /// The backend.
    pub port: Arc<dyn Port>,
    /// Index of its bridge in [`Snapshot::bridges`].
    pub bridge: usize,
    /// VLAN membership.
    pub vlan: VlanMode,
    /// Capture of this port's traffic, when enabled.
    pub capture: Option<Arc<CaptureSink>>,
}

impl std::fmt::Debug for PortEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortEntry")
            .field("no", &self.no)
            .field("name", &self.name)
            .field("bridge", &self.bridge)
            .finish()
    }
}

/// A bridge as the datapath sees it.
#[derive(Debug)]
pub struct BridgeState {
    /// Bridge name.
    pub name: String,
    /// Compiled rules and groups.
    pub pipeline: Arc<Pipeline>,
    /// MAC learning table.
    pub fdb: Arc<Fdb>,
    /// Ports in port-number order.
    pub ports: Vec<BridgePort>,
}

/// One generation of the whole datapath.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Bumped on every change; caches flush when it moves.
    pub generation: u64,
    /// Ports indexed by port number.
    pub ports: Vec<Option<PortEntry>>,
    /// Bridges.
    pub bridges: Vec<Arc<BridgeState>>,
    /// Rx queues each PMD polls: `rxqs[pmd] = [(port, queue), ..]`.
    pub rxqs: Vec<Vec<(PortNo, usize)>>,
}

impl Snapshot {
    /// The port with this number.
    #[inline]
    pub fn port(&self, no: PortNo) -> Option<&PortEntry> {
        self.ports.get(no as usize).and_then(|p| p.as_ref())
    }
}
