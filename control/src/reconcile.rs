//! Reconciliation: the datapath calls that bring what vswitchd holds
//! ([`Inventory`]) to the desired state, by difference — nothing that is
//! already right is touched, so a control-process restart does not disturb
//! traffic (no blind flush).
//!
//! Sans-IO: [`plan`] only computes the calls; the caller sends them and
//! decides what to do with failures (a port whose device cannot be opened
//! must not stop the other bridges from being programmed).

use crate::api::{Inventory, Request, WireGroup, WireRule};
use crate::state::DesiredState;
use std::collections::BTreeMap;

fn same_rules(a: &[WireRule], b: &[WireRule]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Order between rules of different (table, priority) does not matter;
    // within a priority the datapath keeps insertion order, so compare
    // sorted copies keyed on everything but keep equal-priority order by a
    // stable sort.
    let key = |r: &WireRule| (r.table, r.priority);
    let mut x: Vec<&WireRule> = a.iter().collect();
    let mut y: Vec<&WireRule> = b.iter().collect();
    x.sort_by_key(|r| key(r));
    y.sort_by_key(|r| key(r));
    x == y
}

fn same_groups(a: &[WireGroup], b: &[WireGroup]) -> bool {
    let mut x: Vec<&WireGroup> = a.iter().collect();
    let mut y: Vec<&WireGroup> = b.iter().collect();
    x.sort_by_key(|g| g.id);
    y.sort_by_key(|g| g.id);
    x == y
}

/// The calls that turn `inv` into `desired`, in a safe order: deletions
/// first (ports, then bridges), then creations, then rules, then static
/// MAC entries.
pub fn plan(desired: &DesiredState, inv: &Inventory) -> Vec<Request> {
    let mut dels = Vec::new();
    let mut adds = Vec::new();
    let mut flows = Vec::new();
    let mut fdb = Vec::new();

    let have: BTreeMap<&str, _> = inv.bridges.iter().map(|b| (b.name.as_str(), b)).collect();
    let want: BTreeMap<&str, _> = desired
        .bridges
        .iter()
        .map(|b| (b.name.as_str(), b))
        .collect();

    for b in &inv.bridges {
        if !want.contains_key(b.name.as_str()) {
            dels.push(Request::DpDelBridge {
                bridge: b.name.clone(),
            });
        }
    }
    // Ports are unique in the switch: a port present on the wrong bridge,
    // under another number or with other options is deleted and re-added.
    let want_ports: BTreeMap<&str, (&str, &crate::api::DpPort)> = desired
        .all_ports()
        .map(|(b, p)| (p.spec.name.as_str(), (b, p)))
        .collect();
    for b in &inv.bridges {
        if !want.contains_key(b.name.as_str()) {
            continue;
        }
        for p in &b.ports {
            let keep = want_ports
                .get(p.spec.name.as_str())
                .is_some_and(|(wb, wp)| *wb == b.name && *wp == p);
            if !keep {
                dels.push(Request::DpDelPort {
                    bridge: b.name.clone(),
                    name: p.spec.name.clone(),
                });
            }
        }
    }
    for wb in &desired.bridges {
        let current = have.get(wb.name.as_str());
        if current.is_none() {
            adds.push(Request::DpAddBridge {
                bridge: wb.name.clone(),
            });
        }
        for p in &wb.ports {
            let present = current.is_some_and(|cb| cb.ports.iter().any(|cp| cp == p));
            if !present {
                adds.push(Request::DpAddPort {
                    bridge: wb.name.clone(),
                    ofport: p.ofport,
                    spec: p.spec.clone(),
                });
            }
        }
        // A new bridge starts with the default NORMAL rule only.
        let (cur_rules, cur_groups) = match current {
            Some(cb) => (cb.rules.clone(), cb.groups.clone()),
            None => (
                vec![WireRule::from(&datapath::pipeline::Rule::default_normal())],
                Vec::new(),
            ),
        };
        if !same_rules(&cur_rules, &wb.rules) || !same_groups(&cur_groups, &wb.groups) {
            flows.push(Request::DpReplaceFlows {
                bridge: wb.name.clone(),
                rules: wb.rules.clone(),
                groups: wb.groups.clone(),
            });
        }
        for e in &wb.fdb {
            fdb.push(Request::DpFdbAdd {
                bridge: wb.name.clone(),
                entry: e.clone(),
            });
        }
    }
    dels.into_iter()
        .chain(adds)
        .chain(flows)
        .chain(fdb)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DpBridge, DpPort, PortSpec, StaticFdbEntry, WireAction};
    use crate::state::BridgeConfig;

    fn port(name: &str, ofport: u32) -> DpPort {
        DpPort {
            ofport,
            spec: PortSpec {
                name: name.into(),
                r#type: "tap".into(),
                options: Default::default(),
            },
        }
    }

    fn as_inventory(d: &DesiredState) -> Inventory {
        Inventory {
            boot_id: 1,
            bridges: d
                .bridges
                .iter()
                .map(|b| DpBridge {
                    name: b.name.clone(),
                    ports: b.ports.clone(),
                    rules: b.rules.clone(),
                    groups: b.groups.clone(),
                })
                .collect(),
        }
    }

    fn desired() -> DesiredState {
        let mut b = BridgeConfig::new("br0");
        b.ports = vec![port("p1", 1), port("p2", 2)];
        let mut r = b.rules[0].clone();
        r.priority = 100;
        r.actions = vec![WireAction::Output(2)];
        b.rules.push(r);
        DesiredState {
            bridges: vec![b],
            ..Default::default()
        }
    }

    #[test]
    fn in_sync_datapath_gets_no_calls() {
        let d = desired();
        assert!(plan(&d, &as_inventory(&d)).is_empty());
    }

    #[test]
    fn rule_order_across_priorities_does_not_matter() {
        let d = desired();
        let mut inv = as_inventory(&d);
        inv.bridges[0].rules.reverse();
        assert!(plan(&d, &inv).is_empty());
    }

    #[test]
    fn empty_datapath_gets_everything() {
        let mut d = desired();
        d.bridges[0].fdb.push(StaticFdbEntry {
            mac: "02:00:00:00:00:01".into(),
            vlan: 0,
            port: "p1".into(),
            remote: None,
        });
        let calls = plan(&d, &Inventory::default());
        let names: Vec<String> = calls.iter().map(Request::call_name).collect();
        assert_eq!(
            names,
            [
                "dp-add-bridge",
                "dp-add-port",
                "dp-add-port",
                "dp-replace-flows",
                "dp-fdb-add"
            ]
        );
    }

    #[test]
    fn new_bridge_with_only_default_rule_needs_no_flow_push() {
        let d = DesiredState {
            bridges: vec![BridgeConfig::new("br9")],
            ..Default::default()
        };
        let calls = plan(&d, &Inventory::default());
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].call_name(), "dp-add-bridge");
    }

    #[test]
    fn differences_are_fixed_individually() {
        let d = desired();
        let mut inv = as_inventory(&d);
        // Extra bridge, a port with a different number, a missing port,
        // and a stale rule set.
        inv.bridges.push(DpBridge {
            name: "old".into(),
            ..Default::default()
        });
        inv.bridges[0].ports = vec![port("p1", 7)];
        inv.bridges[0].rules.pop();
        let calls = plan(&d, &inv);
        assert_eq!(
            calls,
            vec![
                Request::DpDelBridge {
                    bridge: "old".into()
                },
                Request::DpDelPort {
                    bridge: "br0".into(),
                    name: "p1".into()
                },
                Request::DpAddPort {
                    bridge: "br0".into(),
                    ofport: 1,
                    spec: port("p1", 1).spec
                },
                Request::DpAddPort {
                    bridge: "br0".into(),
                    ofport: 2,
                    spec: port("p2", 2).spec
                },
                Request::DpReplaceFlows {
                    bridge: "br0".into(),
                    rules: d.bridges[0].rules.clone(),
                    groups: vec![]
                },
            ]
        );
    }
}
