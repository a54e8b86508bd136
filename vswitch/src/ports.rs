//! Opening port backends from validated [`PortSpec`]s: the one place that
//! knows how each `type=` becomes an `Arc<dyn Port>`.
//!
//! TAP ports with a namespace are persistent: after a vswitchd crash the
//! container keeps its interface and addresses, and the next vswitchd
//! re-attaches to the existing device instead of creating a new one. Only
//! an operator's `del-port`/`del-br` destroys the device.
//!
//! AF_XDP and AF_PACKET ports attach to an existing netdev and release it
//! when dropped; VXLAN ports own their UDP sockets and close them when
//! dropped. A type without a backend is refused with a clear error.

use control::api::{parse_mac, PortSpec};
use control::portspec::{parse_cidr4, parse_cidr6};
use datapath::port::afpacket::AfPacketError;
use datapath::port::afxdp::AfXdpError;
use datapath::port::Port;
use datapath::port::{AfPacketConfig, AfPacketPort, AfXdpConfig, AfXdpPort};
use datapath::port::{TapConfig, TapError, TapPort};
use datapath::port::{VxlanConfig, VxlanPort, VxlanPortError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortOpenError {
    /// The backend for this type is not part of this build.
    #[error("port \"{port}\": type {kind} is not available in this vswitchd build")]
    Unavailable {
        /// Port.
        port: String,
        /// Type.
        kind: String,
    },
    /// The TAP backend refused.
    #[error(transparent)]
    Tap(#[from] TapError),
    /// The AF_XDP backend refused.
    #[error(transparent)]
    AfXdp(#[from] AfXdpError),
    /// The AF_PACKET backend refused.
    #[error(transparent)]
    AfPacket(#[from] AfPacketError),
    /// The VXLAN backend refused.
    #[error(transparent)]
    Vxlan(#[from] VxlanPortError),
}

enum Backend {
    Tap(Arc<TapPort>),
    /// Dropping the last reference detaches the XDP program and socket.
    Plain,
}

/// Options the port backends take (VLAN membership is the switch's).
fn backend_options(spec: &PortSpec) -> impl Iterator<Item = (&str, &str)> {
    spec.options
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "vlan" | "trunks"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
}

/// An opened port and what is needed to remove it again.
pub struct OpenedPort {
    /// The backend as the switch uses it.
    pub port: Arc<dyn Port>,
    backend: Backend,
}

/// The TAP configuration a `type=tap` spec describes.
pub fn tap_config(spec: &PortSpec) -> TapConfig {
    let o = &spec.options;
    let mut cfg = match o.get("netns") {
        Some(ns) => TapConfig::container(&spec.name, ns),
        None => TapConfig::new(&spec.name),
    };
    cfg.ifname = o.get("ifname").cloned();
    cfg.mac = o.get("mac").and_then(|m| parse_mac(m));
    cfg.mtu = o.get("mtu").and_then(|m| m.parse().ok());
    cfg.queues = o.get("queues").and_then(|q| q.parse().ok()).unwrap_or(1);
    cfg.ipv4 = o
        .get("ip")
        .and_then(|c| parse_cidr4(c))
        .into_iter()
        .collect();
    cfg.ipv6 = o
        .get("ip6")
        .and_then(|c| parse_cidr6(c))
        .into_iter()
        .collect();
    cfg
}

/// Opens the port `spec` describes (re-attaching to a persistent TAP left
/// by an earlier vswitchd).
pub fn open_port(spec: &PortSpec) -> Result<OpenedPort, PortOpenError> {
    match spec.r#type.as_str() {
        "tap" => {
            let cfg = tap_config(spec);
            let tap = if cfg.persist {
                match TapPort::reattach(&cfg) {
                    Ok(t) => {
                        tracing::info!(port = %spec.name, "re-attached to the existing TAP");
                        t
                    }
                    Err(TapError::NotFound { .. }) => TapPort::create(&cfg)?,
                    Err(e) => return Err(e.into()),
                }
            } else {
                TapPort::create(&cfg)?
            };
            let tap = Arc::new(tap);
            Ok(OpenedPort {
                port: tap.clone(),
                backend: Backend::Tap(tap),
            })
        }
        "afxdp" => {
            let cfg = AfXdpConfig::from_options(&spec.name, backend_options(spec))?;
            let port: Arc<dyn Port> = Arc::new(AfXdpPort::open(&cfg)?);
            Ok(OpenedPort {
                port,
                backend: Backend::Plain,
            })
        }
        "afpacket" => {
            let cfg = AfPacketConfig::from_options(&spec.name, backend_options(spec))?;
            let port: Arc<dyn Port> = Arc::new(AfPacketPort::open(&cfg)?);
            Ok(OpenedPort {
                port,
                backend: Backend::Plain,
            })
        }
        "vxlan" => {
            let cfg = VxlanConfig::from_options(&spec.name, backend_options(spec))?;
            let port: Arc<dyn Port> = Arc::new(VxlanPort::open(&cfg)?);
            Ok(OpenedPort {
                port,
                backend: Backend::Plain,
            })
        }
        other => Err(PortOpenError::Unavailable {
            port: spec.name.clone(),
            kind: other.to_owned(),
        }),
    }
}

/// Removes the kernel objects of a port deleted by the operator. The
/// switch must already have let go of the port; PMD threads drop their
/// last snapshot reference within a batch, so this waits briefly for the
/// backend to become exclusively ours.
pub fn destroy_port(port: OpenedPort) {
    let OpenedPort { port, backend } = port;
    drop(port);
    match backend {
        Backend::Plain => {}
        Backend::Tap(mut tap) => {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                match Arc::try_unwrap(tap) {
                    Ok(t) => {
                        let name = t.name().to_owned();
                        if let Err(e) = t.destroy() {
                            tracing::warn!(port = %name, "destroying the TAP failed: {e}");
                        }
                        return;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        tap = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        tracing::warn!(
                            port = %still_shared.name(),
                            "TAP still in use after 2 s; left in place"
                        );
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn tap_spec_maps_to_config() {
        let spec = PortSpec {
            name: "c1".into(),
            r#type: "tap".into(),
            options: BTreeMap::from([
                ("netns".to_owned(), "ns1".to_owned()),
                ("ip".to_owned(), "10.0.0.1/24".to_owned()),
                ("ip6".to_owned(), "fd00::1/64".to_owned()),
                ("mac".to_owned(), "02:00:00:00:00:01".to_owned()),
                ("mtu".to_owned(), "9000".to_owned()),
                ("queues".to_owned(), "2".to_owned()),
            ]),
        };
        let c = tap_config(&spec);
        assert_eq!(c.netns.as_deref(), Some("ns1"));
        assert!(c.persist, "container TAPs survive a vswitchd crash");
        assert_eq!(c.ipv4, vec![("10.0.0.1".parse().unwrap(), 24)]);
        assert_eq!(c.ipv6.len(), 1);
        assert_eq!(c.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(c.mtu, Some(9000));
        assert_eq!(c.queues, 2);
        let host = tap_config(&PortSpec {
            options: BTreeMap::new(),
            ..spec
        });
        assert!(!host.persist);
    }

    #[test]
    fn unknown_types_and_bad_vxlan_options_are_refused_by_name() {
        let spec = PortSpec {
            name: "x".into(),
            r#type: "gre".into(),
            options: BTreeMap::new(),
        };
        let e = open_port(&spec).err().unwrap();
        assert!(e.to_string().contains("gre"));
        let spec = PortSpec {
            name: "vx0".into(),
            r#type: "vxlan".into(),
            options: BTreeMap::from([("vni".to_owned(), "7".to_owned())]),
        };
        let e = open_port(&spec).err().unwrap().to_string();
        assert!(e.contains("vx0") && e.contains("remote"), "{e}");
    }
}
