//! Shared helpers for the criterion benches and `vswitch-bench`: an
//! in-process switch with memory ports driven in the caller's thread, and
//! frame builders.

pub mod bench;

use datapath::flow::PortNo;
use datapath::pipeline::VlanMode;
use datapath::pmd::PmdConfig;
use datapath::port::{MemoryPort, MemoryPortHandle};
use datapath::switch::{Switch, SwitchConfig};
use etherparse::PacketBuilder;
use std::sync::Arc;

/// A switch with bridge `br0` and `n` memory ports `p1..pn` (numbers 1..=n).
pub struct MemorySwitch {
    /// The switch (no PMD threads: driven by [`MemorySwitch::forward`]).
    pub sw: Arc<Switch>,
    /// Host side of each port (index 0 = port 1).
    pub hosts: Vec<MemoryPortHandle>,
}

impl MemorySwitch {
    /// Builds the switch with the given PMD cache settings.
    pub fn new(n: usize, pmd: PmdConfig) -> MemorySwitch {
        let sw = Switch::new(SwitchConfig {
            pmd,
            ..SwitchConfig::default()
        })
        .expect("switch");
        sw.add_bridge("br0").expect("bridge");
        let hosts = (1..=n)
            .map(|no| {
                let (port, host) =
                    MemoryPort::new(&format!("p{no}"), [2, 0xaa, 0, 0, 0, no as u8], 4096);
                sw.add_port("br0", no as PortNo, Arc::new(port), VlanMode::default())
                    .expect("port");
                host
            })
            .collect();
        MemorySwitch { sw, hosts }
    }

    /// Injects `frames` on port `from` (1-based), forwards them, and
    /// recycles what came out anywhere. Returns the frames delivered.
    ///
    /// # Panics
    /// When a frame cannot be injected (ring full or pool exhausted): a
    /// bench that silently stopped forwarding would report nonsense.
    pub fn forward(&self, from: usize, frames: &[Vec<u8>]) -> usize {
        let host = &self.hosts[from - 1];
        self.sw.with_pool(|pool| {
            for f in frames {
                assert!(
                    host.inject(f, pool),
                    "inject failed: pool or ring exhausted"
                );
            }
        });
        while self.sw.poll() != 0 {}
        self.hosts.iter().map(|h| h.recycle_output()).sum()
    }
}

/// A MAC whose last two bytes are `n`.
pub fn mac(n: u16) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0, 0, 0, b[0], b[1]]
}

/// A 64-byte Ethernet/IPv4/UDP frame (60 B + FCS on the wire).
pub fn udp64(
    src: [u8; 6],
    dst: [u8; 6],
    ip_src: [u8; 4],
    ip_dst: [u8; 4],
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src, dst)
        .ipv4(ip_src, ip_dst, 64)
        .udp(sport, dport);
    let mut out = Vec::with_capacity(64);
    b.write(&mut out, &[0u8; 18]).expect("frame");
    out
}
