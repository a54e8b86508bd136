//! Typed drop reasons and their counters.
//!
//! Every packet the switch does not deliver is counted under exactly one
//! [`DropReason`]; nothing is dropped silently. Counters are plain per-thread
//! arrays ([`DropCounters`]) summed by whoever reports them.

/// Why a packet was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Shorter than an Ethernet header, or a VLAN tag cut short.
    Runt,
    /// Headers inconsistent in a way that makes the frame unforwardable.
    Malformed,
    /// No rule matched in a table (table miss).
    NoMatch,
    /// A rule's action list was empty or ended in `drop`.
    ActionDrop,
    /// VLAN not allowed on the ingress or egress port.
    VlanFiltered,
    /// Larger than the egress port's MTU and cannot be segmented.
    Mtu,
    /// Egress or ingress port is down.
    PortDown,
    /// Egress port's transmit queue or ring was full.
    TxQueueFull,
    /// Egress port returned an error.
    TxError,
    /// No packet buffer available.
    NoBuffer,
    /// Output to the ingress port (not allowed except via IN_PORT).
    Loop,
    /// Resubmit/goto depth or action count limit hit.
    RecursionLimit,
    /// Output to a port number that does not exist.
    NoSuchPort,
    /// Group id not defined or group without buckets.
    NoSuchGroup,
    /// `dec_ttl` on a packet whose TTL was 0 or 1.
    TtlExpired,
    /// Tunnel packet with bad flags, lengths or an unknown VNI.
    TunnelMalformed,
    /// Tunnel packet whose VNI no bridge serves.
    TunnelUnknownVni,
    /// Source MAC (or ARP sender MAC) not allowed on the port
    /// (`allowed-macs`, anti-spoofing).
    SpoofedMac,
    /// Source IP (or ARP sender IP) not allowed on the port (`allowed-ips`).
    SpoofedIp,
    /// Storm control (`storm-pps`): a flooded frame over the port's rate.
    Storm,
    /// A new source MAC on a port that has learned `max-macs` MACs.
    PortMacLimit,
    /// A table or cache limit was hit and the packet could not be handled.
    TableLimit,
    /// A flood found no eligible port (the ingress port is alone in its
    /// VLAN, or every other port is a tunnel and the frame came from one).
    NoDestination,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 23] = [
        DropReason::Runt,
        DropReason::Malformed,
        DropReason::NoMatch,
        DropReason::ActionDrop,
        DropReason::VlanFiltered,
        DropReason::Mtu,
        DropReason::PortDown,
        DropReason::TxQueueFull,
        DropReason::TxError,
        DropReason::NoBuffer,
        DropReason::Loop,
        DropReason::RecursionLimit,
        DropReason::NoSuchPort,
        DropReason::NoSuchGroup,
        DropReason::TtlExpired,
        DropReason::TunnelMalformed,
        DropReason::TunnelUnknownVni,
        DropReason::SpoofedMac,
        DropReason::SpoofedIp,
        DropReason::Storm,
        DropReason::PortMacLimit,
        DropReason::TableLimit,
        DropReason::NoDestination,
    ];

    /// Number of reasons.
    pub const COUNT: usize = Self::ALL.len();

    /// Stable snake_case name used by the API and `vswitchctl stats drops`.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Malformed => "malformed",
            DropReason::NoMatch => "no_match",
            DropReason::ActionDrop => "action_drop",
            DropReason::VlanFiltered => "vlan_filtered",
            DropReason::Mtu => "mtu",
            DropReason::PortDown => "port_down",
            DropReason::TxQueueFull => "tx_queue_full",
            DropReason::TxError => "tx_error",
            DropReason::NoBuffer => "no_buffer",
            DropReason::Loop => "loop",
            DropReason::RecursionLimit => "recursion_limit",
            DropReason::NoSuchPort => "no_such_port",
            DropReason::NoSuchGroup => "no_such_group",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::TunnelMalformed => "tunnel_malformed",
            DropReason::TunnelUnknownVni => "tunnel_unknown_vni",
            DropReason::SpoofedMac => "spoofed_mac",
            DropReason::SpoofedIp => "spoofed_ip",
            DropReason::Storm => "storm",
            DropReason::PortMacLimit => "port_mac_limit",
            DropReason::TableLimit => "table_limit",
            DropReason::NoDestination => "no_destination",
        }
    }

    /// Index into counter arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One counter per [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Packets per reason, indexed by [`DropReason::index`].
    pub counts: [u64; DropReason::COUNT],
}

impl DropCounters {
    /// Counts `n` packets under `reason`.
    #[inline]
    pub fn add(&mut self, reason: DropReason, n: u64) {
        self.counts[reason.index()] += n;
    }

    /// The count for one reason.
    #[inline]
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }

    /// Adds another set of counters into this one.
    pub fn merge(&mut self, other: &DropCounters) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
    }

    /// Total drops.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// (name, count) for every non-zero reason.
    pub fn nonzero(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        DropReason::ALL
            .iter()
            .filter(|r| self.get(**r) != 0)
            .map(|r| (r.name(), self.get(*r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_in_all() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
