//! The switches under test and the figures measured on each, as named in
//! `../shared/BENCHMARKS.md` ("Switches under test", "Figures"). The ids
//! are part of the JSON schema: never rename one, add new ones.

use std::fmt;

/// A switch under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SwitchKind {
    /// No switch: one veth pair straight from c1 to c2. The ceiling of the
    /// generator and of the namespaces' own stacks.
    NoSwitch,
    /// Linux bridge with veth pairs.
    KernelBridge,
    /// Open vSwitch userspace datapath, AF_XDP ports on veth host ends.
    OvsAfxdp,
    /// Open vSwitch userspace datapath, internal (TAP) ports in c1/c2.
    OvsTap,
    /// Our switch, TAP ports moved into c1/c2.
    VswitchTap,
    /// Our switch, AF_XDP ports on veth host ends.
    VswitchAfxdp,
    /// Our switch, AF_PACKET ports on veth host ends.
    VswitchAfpacket,
}

impl SwitchKind {
    /// Every switch, in table order (anchors first: ratios refer to them).
    pub const ALL: [SwitchKind; 7] = [
        SwitchKind::NoSwitch,
        SwitchKind::KernelBridge,
        SwitchKind::OvsAfxdp,
        SwitchKind::OvsTap,
        SwitchKind::VswitchTap,
        SwitchKind::VswitchAfxdp,
        SwitchKind::VswitchAfpacket,
    ];

    /// Stable id (CLI `--only`, JSON `switch`).
    pub fn id(self) -> &'static str {
        match self {
            SwitchKind::NoSwitch => "no-switch",
            SwitchKind::KernelBridge => "kernel-bridge",
            SwitchKind::OvsAfxdp => "ovs-afxdp",
            SwitchKind::OvsTap => "ovs-tap",
            SwitchKind::VswitchTap => "vswitch-tap",
            SwitchKind::VswitchAfxdp => "vswitch-afxdp",
            SwitchKind::VswitchAfpacket => "vswitch-afpacket",
        }
    }

    /// Parses an id.
    pub fn parse(s: &str) -> Option<SwitchKind> {
        Self::ALL.into_iter().find(|k| k.id() == s)
    }

    /// True for Open vSwitch.
    pub fn is_ovs(self) -> bool {
        matches!(self, SwitchKind::OvsAfxdp | SwitchKind::OvsTap)
    }

    /// True for this project's switch (runs in the harness process).
    pub fn is_ours(self) -> bool {
        matches!(
            self,
            SwitchKind::VswitchTap | SwitchKind::VswitchAfxdp | SwitchKind::VswitchAfpacket
        )
    }

    /// True when c1/c2 are attached through veth pairs (else TAP devices).
    pub fn uses_veth(self) -> bool {
        !matches!(self, SwitchKind::OvsTap | SwitchKind::VswitchTap)
    }
}

impl fmt::Display for SwitchKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Which way is better for a figure (ratios are always plain quotients;
/// this tells the reader how to read them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Higher is better (throughput).
    Higher,
    /// Lower is better (latency, CPU, memory, loss).
    Lower,
}

/// A group of figures selected together with `--figures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// 64 B packet rate.
    Pps,
    /// TCP throughput.
    Tcp,
    /// Ping latency.
    Latency,
    /// CPU with no traffic.
    Idle,
    /// VmRSS / VmHWM.
    Memory,
    /// Rule installation rate and PMD stall.
    FlowSetup,
}

impl Group {
    /// Every group, in measurement order.
    pub const ALL: [Group; 6] = [
        Group::Idle,
        Group::Memory,
        Group::Latency,
        Group::Pps,
        Group::FlowSetup,
        Group::Tcp,
    ];

    /// Stable id (CLI `--figures`).
    pub fn id(self) -> &'static str {
        match self {
            Group::Pps => "pps",
            Group::Tcp => "tcp",
            Group::Latency => "latency",
            Group::Idle => "idle",
            Group::Memory => "memory",
            Group::FlowSetup => "flowsetup",
        }
    }

    /// Parses an id.
    pub fn parse(s: &str) -> Option<Group> {
        Self::ALL.into_iter().find(|g| g.id() == s)
    }
}

/// One measured figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Figure {
    /// Generator frames counted by the sink in c2, per second.
    PpsRx,
    /// Generator frames the kernel accepted for transmit, per second.
    PpsTx,
    /// 1 − rx/tx over the measurement window.
    PpsLoss,
    /// % of a short paced run's frames that arrived (a forwarding check,
    /// not a speed).
    PpsPacedDelivery,
    /// PMD busy time per forwarded packet, in cycles at the nominal clock.
    PmdCyclesPerPacket,
    /// iperf3 single stream, default offloads.
    TcpGbps,
    /// iperf3 single stream, TX checksum offload off in c1 and c2.
    TcpTxOffGbps,
    /// Ping RTT median (our switch: `IdleMode::Poll`).
    LatencyP50,
    /// Ping RTT 99th percentile (our switch: poll).
    LatencyP99,
    /// Ping RTT maximum (our switch: poll).
    LatencyMax,
    /// Ping RTT median, our switch with `IdleMode::Adaptive`.
    LatencyAdaptiveP50,
    /// Ping RTT 99th percentile, adaptive.
    LatencyAdaptiveP99,
    /// Ping RTT maximum, adaptive.
    LatencyAdaptiveMax,
    /// Switch CPU over the idle window, % of one core.
    IdleCpu,
    /// VmRSS of the switch processes, idle.
    RssIdle,
    /// VmHWM of the switch processes, idle.
    HwmIdle,
    /// VmRSS after the load figures.
    RssLoaded,
    /// VmHWM after the load figures.
    HwmLoaded,
    /// Rules installed per second while traffic flows.
    FlowSetupRate,
    /// Longest gap between frames at the sink while rules were installed
    /// (an upper bound of the PMD stall).
    FlowSetupStall,
    /// Longest gap at the sink over the same time with no rule changes
    /// (what the stall figure must be read against).
    FlowSetupBaselineGap,
}

impl Figure {
    /// Every figure, in table order.
    pub const ALL: [Figure; 21] = [
        Figure::PpsRx,
        Figure::PpsTx,
        Figure::PpsLoss,
        Figure::PpsPacedDelivery,
        Figure::PmdCyclesPerPacket,
        Figure::TcpGbps,
        Figure::TcpTxOffGbps,
        Figure::LatencyP50,
        Figure::LatencyP99,
        Figure::LatencyMax,
        Figure::LatencyAdaptiveP50,
        Figure::LatencyAdaptiveP99,
        Figure::LatencyAdaptiveMax,
        Figure::IdleCpu,
        Figure::RssIdle,
        Figure::HwmIdle,
        Figure::RssLoaded,
        Figure::HwmLoaded,
        Figure::FlowSetupRate,
        Figure::FlowSetupStall,
        Figure::FlowSetupBaselineGap,
    ];

    /// Stable id (JSON `figure`).
    pub fn id(self) -> &'static str {
        match self {
            Figure::PpsRx => "pps_rx",
            Figure::PpsTx => "pps_tx",
            Figure::PpsLoss => "pps_loss",
            Figure::PpsPacedDelivery => "pps_paced_delivery",
            Figure::PmdCyclesPerPacket => "pmd_cycles_per_packet",
            Figure::TcpGbps => "tcp",
            Figure::TcpTxOffGbps => "tcp_txoff",
            Figure::LatencyP50 => "latency_p50",
            Figure::LatencyP99 => "latency_p99",
            Figure::LatencyMax => "latency_max",
            Figure::LatencyAdaptiveP50 => "latency_adaptive_p50",
            Figure::LatencyAdaptiveP99 => "latency_adaptive_p99",
            Figure::LatencyAdaptiveMax => "latency_adaptive_max",
            Figure::IdleCpu => "idle_cpu",
            Figure::RssIdle => "rss_idle",
            Figure::HwmIdle => "hwm_idle",
            Figure::RssLoaded => "rss_loaded",
            Figure::HwmLoaded => "hwm_loaded",
            Figure::FlowSetupRate => "flow_setup_rate",
            Figure::FlowSetupStall => "flow_setup_stall",
            Figure::FlowSetupBaselineGap => "flow_setup_baseline_gap",
        }
    }

    /// Human label for the table and the plot.
    pub fn label(self) -> &'static str {
        match self {
            Figure::PpsRx => "pkt rate rx",
            Figure::PpsTx => "pkt rate tx (offered)",
            Figure::PpsLoss => "pkt loss",
            Figure::PpsPacedDelivery => "delivered at paced rate",
            Figure::PmdCyclesPerPacket => "PMD cycles/packet",
            Figure::TcpGbps => "TCP, offloads on",
            Figure::TcpTxOffGbps => "TCP, tx csum off",
            Figure::LatencyP50 => "ping p50",
            Figure::LatencyP99 => "ping p99",
            Figure::LatencyMax => "ping max",
            Figure::LatencyAdaptiveP50 => "ping p50 adaptive",
            Figure::LatencyAdaptiveP99 => "ping p99 adaptive",
            Figure::LatencyAdaptiveMax => "ping max adaptive",
            Figure::IdleCpu => "idle CPU",
            Figure::RssIdle => "VmRSS idle",
            Figure::HwmIdle => "VmHWM idle",
            Figure::RssLoaded => "VmRSS after load",
            Figure::HwmLoaded => "VmHWM after load",
            Figure::FlowSetupRate => "flow setup",
            Figure::FlowSetupStall => "max rx gap in setup",
            Figure::FlowSetupBaselineGap => "max rx gap, no setup",
        }
    }

    /// Unit of the value.
    pub fn unit(self) -> &'static str {
        match self {
            Figure::PpsRx | Figure::PpsTx => "kpps",
            Figure::PpsLoss | Figure::IdleCpu | Figure::PpsPacedDelivery => "%",
            Figure::PmdCyclesPerPacket => "cycles",
            Figure::TcpGbps | Figure::TcpTxOffGbps => "Gbit/s",
            Figure::LatencyP50
            | Figure::LatencyP99
            | Figure::LatencyMax
            | Figure::LatencyAdaptiveP50
            | Figure::LatencyAdaptiveP99
            | Figure::LatencyAdaptiveMax
            | Figure::FlowSetupStall
            | Figure::FlowSetupBaselineGap => "us",
            Figure::RssIdle | Figure::HwmIdle | Figure::RssLoaded | Figure::HwmLoaded => "MiB",
            Figure::FlowSetupRate => "rules/s",
        }
    }

    /// Which way is better.
    pub fn better(self) -> Better {
        match self {
            Figure::PpsRx
            | Figure::PpsTx
            | Figure::TcpGbps
            | Figure::TcpTxOffGbps
            | Figure::PpsPacedDelivery
            | Figure::FlowSetupRate => Better::Higher,
            _ => Better::Lower,
        }
    }

    /// False where a quotient means nothing (a loss near 0 %, a noise
    /// floor): no ratio is reported.
    pub fn has_ratio(self) -> bool {
        !matches!(self, Figure::PpsLoss | Figure::FlowSetupBaselineGap)
    }

    /// The `--figures` group it belongs to.
    pub fn group(self) -> Group {
        match self {
            Figure::PpsRx
            | Figure::PpsTx
            | Figure::PpsLoss
            | Figure::PpsPacedDelivery
            | Figure::PmdCyclesPerPacket => Group::Pps,
            Figure::TcpGbps | Figure::TcpTxOffGbps => Group::Tcp,
            Figure::LatencyP50
            | Figure::LatencyP99
            | Figure::LatencyMax
            | Figure::LatencyAdaptiveP50
            | Figure::LatencyAdaptiveP99
            | Figure::LatencyAdaptiveMax => Group::Latency,
            Figure::IdleCpu => Group::Idle,
            Figure::RssIdle | Figure::HwmIdle | Figure::RssLoaded | Figure::HwmLoaded => {
                Group::Memory
            }
            Figure::FlowSetupRate | Figure::FlowSetupStall | Figure::FlowSetupBaselineGap => {
                Group::FlowSetup
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_round_trip() {
        let ids: HashSet<_> = Figure::ALL.iter().map(|f| f.id()).collect();
        assert_eq!(ids.len(), Figure::ALL.len());
        for k in SwitchKind::ALL {
            assert_eq!(SwitchKind::parse(k.id()), Some(k));
        }
        for g in Group::ALL {
            assert_eq!(Group::parse(g.id()), Some(g));
        }
        assert_eq!(SwitchKind::parse("ovs"), None);
    }

    #[test]
    fn every_group_has_a_figure() {
        for g in Group::ALL {
            assert!(Figure::ALL.iter().any(|f| f.group() == g), "{g:?}");
        }
    }
}
