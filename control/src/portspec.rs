//! Validation of `add-port` / `set-port` options into a [`PortSpec`].
//!
//! The accepted keys per port type are the CLI contract of issue 5
//! (`type=tap [netns=NS] [ifname=IF] [ip=CIDR] ...`). Everything is checked
//! here, in vswitch-controld, before the datapath is touched; vswitchd can
//! then open a port from a spec without re-validating operator text.

use crate::api::{parse_mac, PortSpec, WireVlan};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest interface / port / bridge name (`IFNAMSIZ` - 1).
pub const MAX_NAME_LEN: usize = 15;

/// Port types and their accepted options.
const TYPES: &[(&str, &[&str], &[&str])] = &[
    // (type, required, optional)
    (
        "tap",
        &[],
        &[
            "netns", "ifname", "ip", "ip6", "mac", "mtu", "queues", "vlan", "trunks",
        ],
    ),
    ("afxdp", &["dev"], &["mode", "queues", "vlan", "trunks"]),
    ("afpacket", &["dev"], &["vlan", "trunks"]),
    (
        "vxlan",
        &["remote"],
        &["local", "vni", "dstport", "vlan", "trunks"],
    ),
];

/// Why a port specification is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortSpecError {
    /// Bad port/bridge/interface name.
    #[error("{what} name \"{name}\": {reason}")]
    BadName {
        /// `port`, `bridge`, `ifname`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// No `type=`.
    #[error("port \"{0}\": missing type= (tap, afxdp, afpacket or vxlan)")]
    MissingType(String),
    /// Unknown type.
    #[error("port \"{port}\": unknown type \"{kind}\" (tap, afxdp, afpacket or vxlan)")]
    UnknownType {
        /// Port.
        port: String,
        /// Given type.
        kind: String,
    },
    /// Key not valid for the type.
    #[error("port \"{port}\": option \"{key}\" is not valid for type {kind}")]
    UnknownOption {
        /// Port.
        port: String,
        /// Type.
        kind: String,
        /// Key.
        key: String,
    },
    /// Required key missing.
    #[error("port \"{port}\": type {kind} needs {key}=")]
    MissingOption {
        /// Port.
        port: String,
        /// Type.
        kind: String,
        /// Key.
        key: &'static str,
    },
    /// Bad value.
    #[error("port \"{port}\": {key}=\"{value}\": {reason}")]
    BadValue {
        /// Port.
        port: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Why.
        reason: String,
    },
    /// `vlan` and `trunks` together.
    #[error("port \"{0}\": vlan= and trunks= are exclusive")]
    VlanAndTrunks(String),
    /// `set-port` tried to change the type.
    #[error("port \"{0}\": type cannot be changed; delete and add the port")]
    TypeChange(String),
}

/// Checks a port, bridge or interface name.
pub fn check_name(what: &'static str, name: &str) -> Result<(), PortSpecError> {
    let bad = |reason| {
        Err(PortSpecError::BadName {
            what,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("is reserved");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return bad("may only hold letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Validates `options` (which include `type`) for port `name`.
pub fn validate(name: &str, options: &BTreeMap<String, String>) -> Result<PortSpec, PortSpecError> {
    check_name("port", name)?;
    let kind = options
        .get("type")
        .ok_or_else(|| PortSpecError::MissingType(name.to_owned()))?;
    let (_, required, optional) =
        TYPES
            .iter()
            .find(|(t, _, _)| t == kind)
            .ok_or_else(|| PortSpecError::UnknownType {
                port: name.to_owned(),
                kind: kind.clone(),
            })?;
    let mut rest = options.clone();
    rest.remove("type");
    for key in rest.keys() {
        if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
            return Err(PortSpecError::UnknownOption {
                port: name.to_owned(),
                kind: kind.clone(),
                key: key.clone(),
            });
        }
    }
    for key in *required {
        if !rest.contains_key(*key) {
            return Err(PortSpecError::MissingOption {
                port: name.to_owned(),
                kind: kind.clone(),
                key,
            });
        }
    }
    for (key, value) in &rest {
        check_value(name, key, value)?;
    }
    if rest.contains_key("vlan") && rest.contains_key("trunks") {
        return Err(PortSpecError::VlanAndTrunks(name.to_owned()));
    }
    Ok(PortSpec {
        name: name.to_owned(),
        r#type: kind.clone(),
        options: rest,
    })
}

/// Applies `set-port` changes to an existing spec; an empty value removes
/// the option. The result is validated as a whole.
pub fn merge(
    spec: &PortSpec,
    changes: &BTreeMap<String, String>,
) -> Result<PortSpec, PortSpecError> {
    if changes.get("type").is_some_and(|t| *t != spec.r#type) {
        return Err(PortSpecError::TypeChange(spec.name.clone()));
    }
    let mut opts = spec.options.clone();
    for (k, v) in changes {
        if k == "type" {
            continue;
        }
        if v.is_empty() {
            opts.remove(k);
        } else {
            // Setting one of vlan/trunks replaces the other.
            if k == "vlan" {
                opts.remove("trunks");
            } else if k == "trunks" {
                opts.remove("vlan");
            }
            opts.insert(k.clone(), v.clone());
        }
    }
    opts.insert("type".into(), spec.r#type.clone());
    validate(&spec.name, &opts)
}

/// The VLAN membership a spec asks for.
pub fn vlan_of(spec: &PortSpec) -> WireVlan {
    if let Some(v) = spec.options.get("vlan").and_then(|v| v.parse().ok()) {
        return WireVlan::Access(v);
    }
    if let Some(t) = spec.options.get("trunks") {
        return WireVlan::Trunks(t.split(',').filter_map(|v| v.parse().ok()).collect());
    }
    WireVlan::Trunk
}

/// Parses `A.B.C.D/N`.
pub fn parse_cidr4(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok()?;
    (n <= 32).then_some((a.parse().ok()?, n))
}

/// Parses `X::Y/N`.
pub fn parse_cidr6(s: &str) -> Option<(Ipv6Addr, u8)> {
    let (a, n) = s.split_once('/')?;
    let n: u8 = n.parse().ok()?;
    (n <= 128).then_some((a.parse().ok()?, n))
}

fn parse_vid(v: &str) -> Option<u16> {
    v.parse::<u16>().ok().filter(|v| (1..=4094).contains(v))
}

fn check_value(port: &str, key: &str, value: &str) -> Result<(), PortSpecError> {
    let in_range = |lo: u64, hi: u64| {
        value
            .parse::<u64>()
            .ok()
            .is_some_and(|v| (lo..=hi).contains(&v))
    };
    let (ok, reason): (bool, &str) = match key {
        "netns" => (
            !value.is_empty()
                && !value.contains('/')
                && value.len() <= 255
                && !value.starts_with('.'),
            "not a namespace name",
        ),
        "ifname" | "dev" => match check_name("ifname", value) {
            Err(PortSpecError::BadName { reason, .. }) => (false, reason),
            _ => (true, ""),
        },
        "ip" => (
            parse_cidr4(value).is_some(),
            "expected an IPv4 address with prefix length, like 10.0.0.1/24",
        ),
        "ip6" => (
            parse_cidr6(value).is_some(),
            "expected an IPv6 address with prefix length, like fd00::1/64",
        ),
        "mac" => match parse_mac(value) {
            None => (false, "expected a MAC address like 02:00:00:00:00:01"),
            Some(m) if m[0] & 1 == 1 => (false, "a port MAC must be unicast"),
            Some(m) if m == [0; 6] => (false, "the all-zero MAC is not usable"),
            Some(_) => (true, ""),
        },
        "mtu" => (in_range(68, 65535), "expected 68..=65535"),
        "queues" => (in_range(1, 64), "expected 1..=64"),
        // 0 is the untagged VLAN (the default access VLAN of a port).
        "vlan" => (
            value.parse::<u16>().is_ok_and(|v| v <= 4094),
            "expected a VLAN id 0..=4094",
        ),
        "trunks" => (
            !value.is_empty() && value.split(',').all(|v| parse_vid(v).is_some()),
            "expected VLAN ids 1..=4094 separated by commas",
        ),
        "mode" => (
            matches!(value, "auto" | "native" | "generic"),
            "expected auto, native or generic",
        ),
        "remote" => (
            !value.is_empty() && value.split(',').all(|v| v.parse::<Ipv4Addr>().is_ok()),
            "expected IPv4 addresses separated by commas",
        ),
        "local" => (
            value.parse::<Ipv4Addr>().is_ok(),
            "expected an IPv4 address",
        ),
        "vni" => (
            value == "flow" || in_range(0, (1 << 24) - 1),
            "expected 0..=16777215 or flow",
        ),
        "dstport" => (in_range(1, 65535), "expected 1..=65535"),
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(PortSpecError::BadValue {
            port: port.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn valid_tap_spec_keeps_options_without_type() {
        let s = validate(
            "c1",
            &opts(&[
                ("type", "tap"),
                ("netns", "ns1"),
                ("ip", "10.0.0.1/24"),
                ("ip6", "fd00::1/64"),
                ("mac", "02:00:00:00:00:01"),
                ("mtu", "9000"),
                ("queues", "2"),
                ("vlan", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(s.r#type, "tap");
        assert!(!s.options.contains_key("type"));
        assert_eq!(vlan_of(&s), WireVlan::Access(10));
    }

    #[test]
    fn names_longer_than_15_bytes_are_refused() {
        let e = validate("a234567890123456", &opts(&[("type", "tap")])).unwrap_err();
        assert!(e.to_string().contains("longer than 15"), "{e}");
        assert!(validate("a23456789012345", &opts(&[("type", "tap")])).is_ok());
        assert!(check_name("port", "a/b").is_err());
        assert!(check_name("bridge", "").is_err());
    }

    #[test]
    fn type_rules_are_enforced() {
        assert_eq!(
            validate("p", &opts(&[])).unwrap_err(),
            PortSpecError::MissingType("p".into())
        );
        assert!(matches!(
            validate("p", &opts(&[("type", "memory")])),
            Err(PortSpecError::UnknownType { .. })
        ));
        assert!(matches!(
            validate("p", &opts(&[("type", "afxdp")])),
            Err(PortSpecError::MissingOption { key: "dev", .. })
        ));
        assert!(matches!(
            validate(
                "p",
                &opts(&[("type", "afpacket"), ("dev", "eth0"), ("ip", "1.2.3.4/8")])
            ),
            Err(PortSpecError::UnknownOption { .. })
        ));
        assert!(matches!(
            validate(
                "p",
                &opts(&[("type", "tap"), ("vlan", "1"), ("trunks", "2")])
            ),
            Err(PortSpecError::VlanAndTrunks(_))
        ));
    }

    #[test]
    fn bad_values_name_key_and_value() {
        for (k, v) in [
            ("ip", "10.0.0.1"),
            ("ip", "10.0.0.1/33"),
            ("ip6", "fd00::1/129"),
            ("mac", "01:00:00:00:00:01"),
            ("mac", "zz"),
            ("mtu", "20"),
            ("queues", "0"),
            ("vlan", "4095"),
            ("vlan", "-1"),
            ("trunks", "1,,2"),
            ("netns", "../x"),
        ] {
            let e = validate("p", &opts(&[("type", "tap"), (k, v)])).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(k) && msg.contains(v), "{msg}");
        }
        let e = validate("v", &opts(&[("type", "vxlan"), ("remote", "1.2.3.4,x")])).unwrap_err();
        assert!(e.to_string().contains("remote"));
        assert!(validate(
            "v",
            &opts(&[
                ("type", "vxlan"),
                ("remote", "1.2.3.4,1.2.3.5"),
                ("vni", "5000")
            ])
        )
        .is_ok());
    }

    #[test]
    fn merge_changes_options_and_keeps_type() {
        let s = validate(
            "p",
            &opts(&[("type", "tap"), ("vlan", "10"), ("mtu", "1500")]),
        )
        .unwrap();
        let m = merge(&s, &opts(&[("trunks", "10,20"), ("mtu", "")])).unwrap();
        assert_eq!(m.options, opts(&[("trunks", "10,20")]));
        assert_eq!(vlan_of(&m), WireVlan::Trunks(vec![10, 20]));
        assert!(matches!(
            merge(&s, &opts(&[("type", "afpacket")])),
            Err(PortSpecError::TypeChange(_))
        ));
        assert!(merge(&s, &opts(&[("mtu", "1")])).is_err());
    }
}
