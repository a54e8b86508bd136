//! An in-memory switch with memory ports, driven deterministically in the
//! test's thread (no PMD threads, explicit clock).

use datapath::flow::PortNo;
use datapath::pipeline::VlanMode;
use datapath::port::{MemoryPort, MemoryPortHandle};
use datapath::switch::{Switch, SwitchConfig};
use std::sync::Arc;

/// A bridge `br0` whose ports 1..=n are memory ports `p1`..`pn`.
pub struct Lab {
    /// The switch.
    pub sw: Arc<Switch>,
    /// Host side of each port, index 0 = port 1.
    pub hosts: Vec<MemoryPortHandle>,
    /// Clock used for polling (ms).
    pub now_ms: u64,
}

impl Lab {
    /// A lab with one port per VLAN mode given.
    pub fn new(vlans: Vec<VlanMode>) -> Lab {
        Self::with_config(vlans, SwitchConfig::default())
    }

    /// A lab with custom switch settings.
    pub fn with_config(vlans: Vec<VlanMode>, cfg: SwitchConfig) -> Lab {
        let sw = Switch::new(cfg).expect("switch");
        sw.add_bridge("br0").expect("bridge");
        let mut hosts = Vec::new();
        for (i, v) in vlans.into_iter().enumerate() {
            let no = (i + 1) as PortNo;
            let (port, host) =
                MemoryPort::new(&format!("p{no}"), [2, 0xaa, 0, 0, 0, no as u8], 1024);
            sw.add_port("br0", no, Arc::new(port), v).expect("port");
            hosts.push(host);
        }
        Lab {
            sw,
            hosts,
            now_ms: 1_000,
        }
    }

    /// `n` trunk ports carrying every VLAN.
    pub fn plain(n: usize) -> Lab {
        Self::new(vec![VlanMode::default(); n])
    }

    /// Injects a frame on port `no` (1-based).
    pub fn send(&self, no: usize, frame: &[u8]) {
        let ok = self
            .sw
            .with_pool(|pool| self.hosts[no - 1].inject(frame, pool));
        assert!(ok, "inject on port {no} failed");
    }

    /// Forwards everything pending at the lab clock.
    pub fn run(&self) {
        for _ in 0..64 {
            if self.sw.poll_at(self.now_ms) == 0 {
                break;
            }
        }
    }

    /// Sends one frame, forwards, and returns what each port received
    /// (index 0 = port 1).
    pub fn exchange(&self, no: usize, frame: &[u8]) -> Vec<Vec<Vec<u8>>> {
        self.send(no, frame);
        self.run();
        self.take()
    }

    /// What each port received since the last call.
    pub fn take(&self) -> Vec<Vec<Vec<u8>>> {
        self.hosts.iter().map(|h| h.take_frames()).collect()
    }

    /// Ports (1-based) that received at least one frame in `got`.
    pub fn receivers(got: &[Vec<Vec<u8>>]) -> Vec<usize> {
        got.iter()
            .enumerate()
            .filter(|(_, f)| !f.is_empty())
            .map(|(i, _)| i + 1)
            .collect()
    }
}
