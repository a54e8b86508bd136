//! Validation of `add-port` / `set-port` options into a [`PortSpec`].
//!
//! The accepted keys per port type are the CLI contract of issue 5
//! (`type=tap [netns=NS] [ifname=IF] [ip=CIDR] ...`). Everything is checked
//! here, in vswitch-controld, before the datapath is touched; vswitchd can
//! then open a port from a spec without re-validating operator text.
//!
//! Port-security keys ([`SECURITY_KEYS`]: `allowed-macs`, `allowed-ips`,
//! `max-macs`, `storm-pps`, issue 8) are valid for every port type; their
//! semantics are documented in `datapath::security`. [`security_of`] turns
//! them into the datapath's policy.

use crate::api::{parse_mac, PortSpec, WireVlan};
use datapath::security::{IpPrefix, PortSecurity};
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

/// Port-security options, accepted for every port type.
pub const SECURITY_KEYS: [&str; 4] = ["allowed-macs", "allowed-ips", "max-macs", "storm-pps"];

/// Most entries in one `allowed-macs` / `allowed-ips` list: the lists are
/// scanned by the slow path, so they stay short.
pub const MAX_SECURITY_LIST: usize = 64;

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
        if !required.contains(&key.as_str())
            && !optional.contains(&key.as_str())
            && !SECURITY_KEYS.contains(&key.as_str())
        {
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

/// The port-security policy a spec asks for (the default, allowing
/// everything, when it has no security keys). The spec is validated, so
/// values that do not parse cannot occur; they would be ignored.
pub fn security_of(spec: &PortSpec) -> PortSecurity {
    let o = &spec.options;
    PortSecurity {
        allowed_macs: o
            .get("allowed-macs")
            .map(|v| v.split(',').filter_map(parse_mac).collect()),
        allowed_ips: o.get("allowed-ips").map(|v| {
            v.split(',')
                .filter_map(|p| IpPrefix::parse(p).ok())
                .collect()
        }),
        max_macs: o.get("max-macs").and_then(|v| v.parse().ok()),
        storm_pps: o.get("storm-pps").and_then(|v| v.parse().ok()),
    }
}

/// The port-security options of a spec (for comparing two specs).
pub fn security_options(spec: &PortSpec) -> BTreeMap<String, String> {
    spec.options
        .iter()
        .filter(|(k, _)| SECURITY_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn check_list(value: &str, item_ok: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    let items: Vec<&str> = value.split(',').collect();
    if items.len() > MAX_SECURITY_LIST {
        return Err(format!("at most {MAX_SECURITY_LIST} entries"));
    }
    items.into_iter().try_for_each(item_ok)
}

fn check_security_value(key: &str, value: &str) -> Option<Result<(), String>> {
    let r = match key {
        "allowed-macs" => check_list(value, |m| {
            match parse_mac(m) {
            None => Err(format!(
                "\"{m}\" is not a MAC address (like 02:00:00:00:00:01); separate several with commas"
            )),
            Some(m) if m[0] & 1 == 1 => Err("a source MAC must be unicast".into()),
            Some(_) => Ok(()),
        }
        }),
        "allowed-ips" => check_list(value, |p| {
            IpPrefix::parse(p)
                .map(|_| ())
                .map_err(|e| format!("{e}; separate several with commas"))
        }),
        "max-macs" => value
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1_048_576).contains(n))
            .map(|_| ())
            .ok_or_else(|| "expected a number of MACs 1..=1048576".into()),
        "storm-pps" => value
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .map(|_| ())
            .ok_or_else(|| "expected packets per second 1..=4294967295".into()),
        _ => return None,
    };
    Some(r)
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
    if let Some(r) = check_security_value(key, value) {
        return r.map_err(|reason| PortSpecError::BadValue {
            port: port.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
            reason,
        });
    }
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
    fn security_options_are_valid_for_every_type_and_parse_into_a_policy() {
        let sec = [
            ("allowed-macs", "02:00:00:00:00:01,02:00:00:00:00:02"),
            ("allowed-ips", "10.0.0.2,10.1.0.0/16,fd00::2,fd01::/64"),
            ("max-macs", "4"),
            ("storm-pps", "1000"),
        ];
        for base in [
            vec![("type", "tap")],
            vec![("type", "afxdp"), ("dev", "eth0")],
            vec![("type", "afpacket"), ("dev", "eth0")],
            vec![("type", "vxlan"), ("remote", "1.2.3.4")],
        ] {
            let mut o = base.clone();
            o.extend(sec);
            let s = validate("p", &opts(&o)).unwrap();
            assert_eq!(security_options(&s).len(), 4);
        }
        let s = validate("p", &opts(&[[("type", "tap")].as_slice(), &sec].concat())).unwrap();
        let p = security_of(&s);
        assert_eq!(
            p.allowed_macs,
            Some(vec![[2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]])
        );
        let ips: Vec<String> = p
            .allowed_ips
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            ips,
            ["10.0.0.2/32", "10.1.0.0/16", "fd00::2/128", "fd01::/64"]
        );
        assert_eq!((p.max_macs, p.storm_pps), (Some(4), Some(1000)));
        let plain = validate("p", &opts(&[("type", "tap")])).unwrap();
        assert!(!security_of(&plain).is_active());
    }

    #[test]
    fn bad_security_values_are_refused_with_the_reason() {
        let long = vec!["10.0.0.1"; MAX_SECURITY_LIST + 1].join(",");
        for (k, v, why) in [
            ("allowed-macs", "02:00:00:00:00:01,zz", "not a MAC"),
            ("allowed-macs", "01:00:5e:00:00:01", "unicast"),
            ("allowed-macs", "", "not a MAC"),
            ("allowed-ips", "10.0.0.1/33", "not an IPv4/IPv6"),
            ("allowed-ips", "10.0.0.1,,10.0.0.2", "not an IPv4/IPv6"),
            ("allowed-ips", "fd00::/129", "not an IPv4/IPv6"),
            ("allowed-ips", long.as_str(), "at most 64"),
            ("max-macs", "0", "1..=1048576"),
            ("max-macs", "x", "1..=1048576"),
            ("storm-pps", "0", "packets per second"),
            ("storm-pps", "-5", "packets per second"),
        ] {
            let e = validate("c1", &opts(&[("type", "tap"), (k, v)])).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains("port \"c1\"") && msg.contains(k) && msg.contains(why),
                "{msg}"
            );
        }
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
