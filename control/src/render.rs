//! Turning datapath values into API rows and text: rules and groups in the
//! flow syntax (through [`crate::flowsyntax`]), datapath actions, trace
//! steps. Used by vswitchd to answer read calls, so its answers are the
//! same whether they go through vswitch-controld or not.

use crate::api::{format_mac, ApiError, CacheRow, ErrorKind, FlowRow};
use crate::flowsyntax as fs;
use datapath::flow::{FlowKey, FlowMask, PortNo};
use datapath::pipeline::{DpAction, Group, Match, TraceEvent, Translation};
use datapath::switch::{CacheEntryInfo, FlowEntry};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Port name → number of one bridge.
pub type PortMap = BTreeMap<String, PortNo>;

/// A `dump-flows` row.
pub fn flow_row(e: &FlowEntry, ports: &PortMap) -> FlowRow {
    let r = &e.rule;
    FlowRow {
        table: r.table,
        priority: r.priority,
        r#match: fs::format_match(&r.r#match, ports),
        actions: fs::format_actions(&r.actions, ports),
        cookie: r.cookie,
        idle_timeout: r.idle_timeout,
        hard_timeout: r.hard_timeout,
        n_packets: e.n_packets,
        n_bytes: e.n_bytes,
        duration_s: e.duration_ms as f64 / 1000.0,
    }
}

/// The rule part of a row in add-flow syntax (what `--no-stats` prints,
/// re-loadable with `add-flows`).
pub fn row_rule_text(r: &FlowRow) -> String {
    // Same canonical order as `flowsyntax::format_rule`.
    let mut s = format!("table={},priority={}", r.table, r.priority);
    if r.cookie != 0 {
        let _ = write!(s, ",cookie={:#x}", r.cookie);
    }
    if r.idle_timeout != 0 {
        let _ = write!(s, ",idle_timeout={}", r.idle_timeout);
    }
    if r.hard_timeout != 0 {
        let _ = write!(s, ",hard_timeout={}", r.hard_timeout);
    }
    if !r.r#match.is_empty() {
        let _ = write!(s, ",{}", r.r#match);
    }
    let _ = write!(s, ",actions={}", r.actions);
    s
}

/// A group in add-group syntax.
pub fn group_text(g: &Group, ports: &PortMap) -> String {
    fs::format_group(g, ports)
}

/// Parses the packet description of `trace` into a flow key.
pub fn parse_trace_flow(text: &str, ports: &PortMap) -> Result<FlowKey, ApiError> {
    let spec = fs::parse_match(text, ports)
        .map_err(|e| ApiError::new(ErrorKind::Rejected, format!("trace flow: {e}")))?;
    Ok(fs::match_to_key(&spec.r#match))
}

/// A megaflow as `dump-cache` shows it.
pub fn cache_row(e: &CacheEntryInfo, ports: &PortMap) -> CacheRow {
    let names = names_by_number(ports);
    CacheRow {
        pmd: e.pmd,
        r#match: masked_text(&e.key, &e.mask, ports),
        actions: dp_actions_text(&e.actions, &names),
        packets: e.packets,
        bytes: e.bytes,
        idle_ms: e.idle_ms,
    }
}

fn masked_text(key: &FlowKey, mask: &FlowMask, ports: &PortMap) -> String {
    let m = Match {
        value: *key,
        mask: *mask,
    };
    let s = fs::format_match(&m, ports);
    if s.is_empty() {
        "(all)".into()
    } else {
        s
    }
}

/// Number → name.
pub fn names_by_number(ports: &PortMap) -> BTreeMap<PortNo, String> {
    ports.iter().map(|(n, p)| (*p, n.clone())).collect()
}

fn port_name(no: PortNo, names: &BTreeMap<PortNo, String>) -> String {
    names.get(&no).cloned().unwrap_or_else(|| no.to_string())
}

/// Datapath actions as `output:p1,push_vlan(...)`; empty means drop.
pub fn dp_actions_text(actions: &[DpAction], names: &BTreeMap<PortNo, String>) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    let parts: Vec<String> = actions
        .iter()
        .map(|a| match a {
            DpAction::Output(p) => format!("output:{}", port_name(*p, names)),
            DpAction::SetVlanVid(v) => format!("set_vlan_vid:{v}"),
            DpAction::SetVlanPcp(v) => format!("set_vlan_pcp:{v}"),
            DpAction::PushVlan { tpid, tci } => {
                format!("push_vlan(tpid={tpid:#06x},tci={tci:#06x})")
            }
            DpAction::PopVlan => "pop_vlan".into(),
            DpAction::SetEthSrc(m) => format!("set_eth_src:{}", format_mac(*m)),
            DpAction::SetEthDst(m) => format!("set_eth_dst:{}", format_mac(*m)),
            DpAction::SetIpv4Src(a) => format!("set_nw_src:{}", std::net::Ipv4Addr::from(*a)),
            DpAction::SetIpv4Dst(a) => format!("set_nw_dst:{}", std::net::Ipv4Addr::from(*a)),
            DpAction::SetTpSrc(p) => format!("set_tp_src:{p}"),
            DpAction::SetTpDst(p) => format!("set_tp_dst:{p}"),
            DpAction::DecTtl => "dec_ttl".into(),
            DpAction::SetTunnelId(id) => format!("set_tunnel:{id:#x}"),
            DpAction::SetTunnelRemote(ip) => {
                format!("set_tunnel_dst:{}", std::net::Ipv4Addr::from(*ip))
            }
            DpAction::Clone(inner) => format!("clone({})", dp_actions_text(inner, names)),
            DpAction::StormCheck(pps) => format!("storm_check({pps}pps)"),
        })
        .collect();
    parts.join(",")
}

/// Trace steps in words, like `ofproto/trace`.
pub fn trace_lines(t: &Translation, ports: &PortMap) -> Vec<String> {
    let mut out = Vec::new();
    for ev in &t.trace {
        match ev {
            TraceEvent::Table { table, rule: None } => {
                out.push(format!("table {table}: no rule matched (table miss: drop)"));
            }
            TraceEvent::Table {
                table,
                rule: Some(r),
            } => {
                let m = fs::format_match(&r.r#match, ports);
                out.push(format!(
                    "table {table}: matched priority={}{}{} actions={}",
                    r.priority,
                    if m.is_empty() { "" } else { "," },
                    m,
                    fs::format_actions(&r.actions, ports)
                ));
            }
            TraceEvent::Normal(s) => out.push(format!("    NORMAL: {s}")),
            TraceEvent::Group { id, buckets } => {
                out.push(format!("    group {id}: buckets {buckets:?}"));
            }
            TraceEvent::Drop(reason) => out.push(format!("    drop: {}", reason.name())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datapath::flow::Field;
    use datapath::pipeline::{Action, Rule};

    fn ports() -> PortMap {
        [("p1".to_owned(), 1), ("p2".to_owned(), 2)]
            .into_iter()
            .collect()
    }

    #[test]
    fn row_text_is_reloadable_add_flow_syntax() {
        let rule = Rule::new(
            1,
            100,
            Match::ANY
                .with(Field::EthType, 0x0800)
                .with(Field::NwProto, 1)
                .with(Field::InPort, 1),
            vec![Action::Output(2)],
        );
        let row = flow_row(
            &FlowEntry {
                rule: rule.clone(),
                n_packets: 3,
                n_bytes: 300,
                duration_ms: 1500,
                idle_ms: 0,
            },
            &ports(),
        );
        assert_eq!(row.n_packets, 3);
        assert!((row.duration_s - 1.5).abs() < 1e-9);
        let text = row_rule_text(&row);
        assert!(text.starts_with("table=1,priority=100,"), "{text}");
        let back = fs::parse_rule(&text, &ports()).unwrap();
        assert_eq!(back, rule);
    }

    #[test]
    fn dp_actions_use_port_names() {
        let names = names_by_number(&ports());
        let t = dp_actions_text(
            &[
                DpAction::PushVlan {
                    tpid: 0x8100,
                    tci: 10,
                },
                DpAction::Output(2),
                DpAction::Output(9),
            ],
            &names,
        );
        assert_eq!(t, "push_vlan(tpid=0x8100,tci=0x000a),output:p2,output:9");
        assert_eq!(dp_actions_text(&[], &names), "drop");
    }
}
