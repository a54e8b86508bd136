//! Opens the two ports of our switch for each `vswitch-*` topology: TAP
//! devices created straight into c1/c2 (with c1/c2's MAC and address, vnet
//! header offloads on), or ports on the veth host ends.

use super::error::{BenchError, Result};
use super::figure::SwitchKind;
use super::topology::Side;
use datapath::port::afpacket::RingMode;
use datapath::port::{
    AfPacketConfig, AfPacketPort, AfXdpConfig, AfXdpPort, Port, TapConfig, TapPort,
};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Ports, interface names inside c1/c2 when the ports created them, and
/// facts worth reporting.
pub type Opened = (Vec<Arc<dyn Port>>, Option<[String; 2]>, Vec<String>);

fn port_err(port: &str, e: impl std::error::Error + Send + Sync + 'static) -> BenchError {
    BenchError::Port {
        port: port.to_owned(),
        source: Box::new(e),
    }
}

/// Opens the two ports of `kind`; `hosts` are the veth host ends (or the
/// TAP port names), `sides` c1 and c2; AF_PACKET ports use `afpacket_ring`.
pub fn open(
    kind: SwitchKind,
    hosts: &[String; 2],
    sides: &[&Side; 2],
    afpacket_ring: RingMode,
) -> Result<Opened> {
    let mut ports: Vec<Arc<dyn Port>> = Vec::new();
    let mut notes = Vec::new();
    match kind {
        SwitchKind::VswitchTap => {
            let mut names = [String::new(), String::new()];
            for (i, (host, side)) in hosts.iter().zip(sides).enumerate() {
                let ifname = format!("{host}t");
                let cfg = TapConfig {
                    netns: Some(side.netns.clone()),
                    ifname: Some(ifname.clone()),
                    mac: Some(side.mac),
                    ipv4: vec![(Ipv4Addr::from(side.ip), 24)],
                    persist: false,
                    offloads: true,
                    ..TapConfig::new(host)
                };
                let p = TapPort::create(&cfg).map_err(|e| port_err(host, e))?;
                if i == 0 {
                    notes.push(format!(
                        "TAP ports with vnet_hdr offloads: {}",
                        if p.has_vnet_hdr() { "on" } else { "off" }
                    ));
                }
                names[i] = ifname;
                ports.push(Arc::new(p));
            }
            Ok((ports, Some(names), notes))
        }
        SwitchKind::VswitchAfxdp => {
            for host in hosts {
                let p = AfXdpPort::open(&AfXdpConfig::new(host)).map_err(|e| port_err(host, e))?;
                notes.push(format!(
                    "AF_XDP port {host}: XDP {:?}, bind {:?}, peer offload changes {}",
                    p.xdp_mode(),
                    p.bind_mode(),
                    p.offload_changes().len()
                ));
                ports.push(Arc::new(p));
            }
            Ok((ports, None, notes))
        }
        SwitchKind::VswitchAfpacket => {
            for host in hosts {
                let cfg = AfPacketConfig::new(host).with_ring(afpacket_ring);
                let p = AfPacketPort::open(&cfg).map_err(|e| port_err(host, e))?;
                ports.push(Arc::new(p));
            }
            notes.push(format!(
                "AF_PACKET ports: ring={} (TPACKET_{})",
                afpacket_ring.name(),
                afpacket_ring.name().to_uppercase()
            ));
            Ok((ports, None, notes))
        }
        _ => Err(BenchError::Port {
            port: hosts[0].clone(),
            source: format!("{kind}: not one of our switch's topologies").into(),
        }),
    }
}
