//! Action lists of the flow language, after ovs-actions(7): parsing
//! `output:P`, the reserved ports, VLAN, address and port rewrites,
//! `set_field:V->F` where it maps onto an [`Action`], `resubmit(,T)`,
//! `goto_table:T` and `group:G`; and printing them back in one canonical
//! spelling.

use super::error::FlowSyntaxError;
use super::fields::is_field_name;
use super::lex::{looks_numeric, suggestion, Source, Token};
use super::values::{
    format_mac, format_port, parse_ipv4, parse_mac, parse_port, OFPP_LOCAL, RESERVED_PORT_NAMES,
};
use super::PortNames;
use datapath::flow::{mac_from_u64, mac_to_u64};
use datapath::pipeline::{Action, TableId, MAX_TABLES};
use std::net::Ipv4Addr;

/// Largest table number.
pub(crate) const MAX_TABLE_ID: u128 = MAX_TABLES as u128 - 1;

/// Action names, for suggestions.
const ACTION_NAMES: [&str; 26] = [
    "output",
    "normal",
    "flood",
    "all",
    "in_port",
    "local",
    "drop",
    "mod_vlan_vid",
    "set_vlan_vid",
    "mod_vlan_pcp",
    "set_vlan_pcp",
    "strip_vlan",
    "pop_vlan",
    "push_vlan",
    "mod_dl_src",
    "mod_dl_dst",
    "mod_nw_src",
    "mod_nw_dst",
    "mod_tp_src",
    "mod_tp_dst",
    "dec_ttl",
    "set_tunnel",
    "set_field",
    "resubmit",
    "goto_table",
    "group",
];

/// Where an action list sits, for the checks that depend on it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ActionPlace {
    /// A rule's `actions=` in this table: `goto_table` must go forward.
    Rule(TableId),
    /// A group bucket: no `goto_table` (OpenFlow 1.3 §5.6.1).
    Bucket,
    /// A bare action list: no context checks.
    Free,
}

/// Parses the action tokens of one list.
pub(crate) fn parse_actions(
    src: &Source<'_>,
    tokens: &[Token<'_>],
    ports: &dyn PortNames,
    place: ActionPlace,
) -> Result<Vec<Action>, FlowSyntaxError> {
    let mut out = Vec::with_capacity(tokens.len());
    for (i, tok) in tokens.iter().enumerate() {
        let last = i + 1 == tokens.len();
        let column = src.column(tok.start);
        if tok.text.eq_ignore_ascii_case("drop") {
            if tokens.len() > 1 {
                return Err(invalid(tok, column, "drop must be the only action"));
            }
            continue;
        }
        let action = parse_one(src, *tok, ports)?;
        if let Action::GotoTable(t) = action {
            match place {
                ActionPlace::Bucket => {
                    return Err(invalid(tok, column, "not allowed in a group bucket"))
                }
                ActionPlace::Rule(table) if t <= table => {
                    return Err(invalid(
                        tok,
                        column,
                        &format!("must go to a table after this rule's table {table}"),
                    ))
                }
                _ => {}
            }
            if !last {
                return Err(invalid(tok, column, "goto_table must be the last action"));
            }
        }
        out.push(action);
    }
    Ok(out)
}

fn invalid(tok: &Token<'_>, column: usize, reason: &str) -> FlowSyntaxError {
    FlowSyntaxError::InvalidAction {
        action: tok.text.to_string(),
        column,
        reason: reason.to_string(),
    }
}

/// Parses a single action token.
fn parse_one(
    src: &Source<'_>,
    tok: Token<'_>,
    ports: &dyn PortNames,
) -> Result<Action, FlowSyntaxError> {
    if let Some(e) = misplaced(src, tok) {
        return Err(e);
    }
    let column = src.column(tok.start);
    // `name(args)` or `name:arg`, whichever separator comes first.
    let paren = tok.text.find('(');
    let colon = tok.text.find(':');
    let (name, arg) = match (paren, colon) {
        (Some(p), c) if c.is_none_or(|c| p < c) => {
            if !tok.text.ends_with(')') {
                return Err(FlowSyntaxError::Syntax {
                    column,
                    reason: format!("action {} must end with \")\"", tok.text),
                });
            }
            let inner = Token {
                start: tok.start + p + 1,
                text: &tok.text[p + 1..tok.text.len() - 1],
            };
            (&tok.text[..p], Some((inner, true)))
        }
        (_, Some(c)) => (&tok.text[..c], Some((tok.skip(c + 1), false))),
        _ => (tok.text, None),
    };
    let lower = name.to_ascii_lowercase();
    let Some((arg, parens)) = arg else {
        return bare(src, tok, &lower, ports);
    };
    let needs_colon = |what: &str| {
        if parens {
            Err(FlowSyntaxError::Syntax {
                column,
                reason: format!("{what} takes its argument after \":\""),
            })
        } else {
            Ok(())
        }
    };
    match lower.as_str() {
        "output" => {
            needs_colon("output")?;
            if let Some(a) = reserved(arg.text) {
                return Ok(a);
            }
            Ok(Action::Output(parse_port(src, arg, "output", ports)?))
        }
        "mod_vlan_vid" | "set_vlan_vid" => {
            needs_colon(name)?;
            Ok(Action::SetVlanVid(src.number(arg, name, 4095)? as u16))
        }
        "mod_vlan_pcp" | "set_vlan_pcp" => {
            needs_colon(name)?;
            Ok(Action::SetVlanPcp(src.number(arg, name, 7)? as u8))
        }
        "push_vlan" => {
            needs_colon(name)?;
            match src.number(arg, name, 0xffff)? {
                0x8100 => Ok(Action::PushVlan(0x8100)),
                0x88a8 => Ok(Action::PushVlan(0x88a8)),
                _ => Err(src.invalid(arg, name, "TPID must be 0x8100 or 0x88a8")),
            }
        }
        "mod_dl_src" => {
            needs_colon(name)?;
            Ok(Action::SetEthSrc(mac_bytes(parse_mac(src, arg, name)?)))
        }
        "mod_dl_dst" => {
            needs_colon(name)?;
            Ok(Action::SetEthDst(mac_bytes(parse_mac(src, arg, name)?)))
        }
        "mod_nw_src" => {
            needs_colon(name)?;
            Ok(Action::SetIpv4Src(parse_ipv4(src, arg, name)?))
        }
        "mod_nw_dst" => {
            needs_colon(name)?;
            Ok(Action::SetIpv4Dst(parse_ipv4(src, arg, name)?))
        }
        "mod_tp_src" => {
            needs_colon(name)?;
            Ok(Action::SetTpSrc(src.number(arg, name, 0xffff)? as u16))
        }
        "mod_tp_dst" => {
            needs_colon(name)?;
            Ok(Action::SetTpDst(src.number(arg, name, 0xffff)? as u16))
        }
        "set_tunnel" => {
            needs_colon(name)?;
            Ok(Action::SetTunnel(src.number(arg, name, 0xffff_ffff)? as u32))
        }
        "set_field" => {
            needs_colon(name)?;
            set_field(src, tok, arg)
        }
        "goto_table" => {
            needs_colon(name)?;
            Ok(Action::GotoTable(
                src.number(arg, name, MAX_TABLE_ID)? as TableId
            ))
        }
        "group" => {
            needs_colon(name)?;
            Ok(Action::Group(src.number(arg, name, 0xffff_ffff)? as u32))
        }
        "resubmit" => resubmit(src, tok, arg, parens),
        _ => Err(unknown(src, tok, name)),
    }
}

/// A `key=value` token in an action list is a misplaced match field or
/// attribute (or a second `actions=`); say so instead of "unknown action".
fn misplaced(src: &Source<'_>, tok: Token<'_>) -> Option<FlowSyntaxError> {
    let eq = tok.text.find('=')?;
    if tok.text[..eq].contains([':', '(']) {
        return None;
    }
    let key = &tok.text[..eq];
    let column = src.column(tok.start);
    if key == "actions" {
        return Some(invalid(&tok, column, "actions= may be given only once"));
    }
    let attributes = [
        "table",
        "priority",
        "cookie",
        "idle_timeout",
        "hard_timeout",
    ];
    if is_field_name(key) || attributes.contains(&key) {
        return Some(invalid(
            &tok,
            column,
            "match fields and rule attributes must come before actions=",
        ));
    }
    None
}

/// Actions written without an argument, or a bare port (`actions=3`).
fn bare(
    src: &Source<'_>,
    tok: Token<'_>,
    lower: &str,
    ports: &dyn PortNames,
) -> Result<Action, FlowSyntaxError> {
    if let Some(a) = reserved(tok.text) {
        return Ok(a);
    }
    match lower {
        "strip_vlan" | "pop_vlan" => return Ok(Action::StripVlan),
        "dec_ttl" => return Ok(Action::DecTtl),
        _ => {}
    }
    if ACTION_NAMES.contains(&lower) {
        return Err(invalid(&tok, src.column(tok.start), "needs an argument"));
    }
    if looks_numeric(tok.text) {
        return Ok(Action::Output(parse_port(src, tok, "output", ports)?));
    }
    match ports.port_no(tok.text) {
        Some(p) if !tok.text.contains(['=', '/']) => Ok(Action::Output(p)),
        _ => Err(unknown(src, tok, tok.text)),
    }
}

/// `NORMAL`, `FLOOD`, `ALL`, `IN_PORT`, `LOCAL` (any case).
fn reserved(s: &str) -> Option<Action> {
    let r = RESERVED_PORT_NAMES
        .iter()
        .find(|r| r.eq_ignore_ascii_case(s))?;
    Some(match *r {
        "NORMAL" => Action::Normal,
        "FLOOD" => Action::Flood,
        "ALL" => Action::All,
        "IN_PORT" => Action::InPort,
        _ => Action::Output(OFPP_LOCAL),
    })
}

fn unknown(src: &Source<'_>, tok: Token<'_>, name: &str) -> FlowSyntaxError {
    FlowSyntaxError::UnknownAction {
        name: name.to_string(),
        column: src.column(tok.start),
        suggestion: suggestion(name, ACTION_NAMES),
    }
}

/// `resubmit(,T)`; forms with a port have no [`Action`] to map to.
fn resubmit(
    src: &Source<'_>,
    tok: Token<'_>,
    arg: Token<'_>,
    parens: bool,
) -> Result<Action, FlowSyntaxError> {
    let unsupported = |reason: &str| FlowSyntaxError::Unsupported {
        what: tok.text.to_string(),
        column: src.column(tok.start),
        reason: reason.to_string(),
    };
    if !parens {
        return Err(unsupported(
            "resubmit to a port is not implemented; use resubmit(,TABLE)",
        ));
    }
    let Some((port, table)) = arg.split(',') else {
        return Err(unsupported(
            "resubmit to a port is not implemented; use resubmit(,TABLE)",
        ));
    };
    if !port.trim().is_empty() {
        return Err(unsupported(
            "resubmit with a port is not implemented; leave the port empty: resubmit(,TABLE)",
        ));
    }
    if table.text.contains(',') {
        return Err(unsupported(
            "resubmit takes only (,TABLE) here; conntrack forms are not implemented",
        ));
    }
    let table = Token {
        start: table.start + (table.text.len() - table.text.trim_start().len()),
        text: table.text.trim(),
    };
    Ok(Action::Resubmit(
        src.number(table, "resubmit", MAX_TABLE_ID)? as TableId,
    ))
}

/// `set_field:VALUE->FIELD` for the fields that have an [`Action`].
fn set_field(src: &Source<'_>, tok: Token<'_>, arg: Token<'_>) -> Result<Action, FlowSyntaxError> {
    let Some((value, field)) = arg.text.split_once("->") else {
        return Err(src.invalid(arg, "set_field", "expected VALUE->FIELD"));
    };
    let value = Token {
        start: arg.start,
        text: value,
    };
    if value.text.contains('/') {
        return Err(FlowSyntaxError::Unsupported {
            what: tok.text.to_string(),
            column: src.column(tok.start),
            reason: "masked set_field is not implemented".to_string(),
        });
    }
    let f = field;
    match field {
        "tun_id" | "tunnel_id" => Ok(Action::SetTunnel(src.number(value, f, 0xffff_ffff)? as u32)),
        "eth_src" | "dl_src" => Ok(Action::SetEthSrc(mac_bytes(parse_mac(src, value, f)?))),
        "eth_dst" | "dl_dst" => Ok(Action::SetEthDst(mac_bytes(parse_mac(src, value, f)?))),
        "ip_src" | "nw_src" => Ok(Action::SetIpv4Src(parse_ipv4(src, value, f)?)),
        "ip_dst" | "nw_dst" => Ok(Action::SetIpv4Dst(parse_ipv4(src, value, f)?)),
        "tcp_src" | "udp_src" | "tp_src" => {
            Ok(Action::SetTpSrc(src.number(value, f, 0xffff)? as u16))
        }
        "tcp_dst" | "udp_dst" | "tp_dst" => {
            Ok(Action::SetTpDst(src.number(value, f, 0xffff)? as u16))
        }
        // OpenFlow 1.2+ writes vlan_vid with the OFPVID_PRESENT bit (0x1000).
        "vlan_vid" => Ok(Action::SetVlanVid(
            (src.number(value, f, 0x1fff)? as u16) & 0x0fff,
        )),
        "vlan_pcp" => Ok(Action::SetVlanPcp(src.number(value, f, 7)? as u8)),
        _ => Err(FlowSyntaxError::Unsupported {
            what: tok.text.to_string(),
            column: src.column(tok.start),
            reason: format!(
                "set_field to \"{field}\" has no datapath action; supported: tun_id, eth_src, \
                 eth_dst, ip_src, ip_dst, tcp_src, tcp_dst, udp_src, udp_dst, vlan_vid, vlan_pcp"
            ),
        }),
    }
}

fn mac_bytes(v: u128) -> [u8; 6] {
    mac_from_u64(v as u64)
}

fn mac_value(m: &[u8; 6]) -> u128 {
    u128::from(mac_to_u64(*m))
}

/// Prints one action in its canonical spelling.
pub(crate) fn format_action(a: &Action, ports: &dyn PortNames) -> String {
    match a {
        Action::Output(p) if *p == OFPP_LOCAL => "LOCAL".to_string(),
        Action::Output(p) => format!("output:{}", format_port(*p, ports)),
        Action::Normal => "NORMAL".to_string(),
        Action::Flood => "FLOOD".to_string(),
        Action::All => "ALL".to_string(),
        Action::InPort => "IN_PORT".to_string(),
        Action::SetVlanVid(v) => format!("mod_vlan_vid:{v}"),
        Action::SetVlanPcp(p) => format!("mod_vlan_pcp:{p}"),
        Action::StripVlan => "strip_vlan".to_string(),
        Action::PushVlan(t) => format!("push_vlan:0x{t:04x}"),
        Action::SetEthSrc(m) => format!("mod_dl_src:{}", format_mac(mac_value(m))),
        Action::SetEthDst(m) => format!("mod_dl_dst:{}", format_mac(mac_value(m))),
        Action::SetIpv4Src(ip) => format!("mod_nw_src:{}", Ipv4Addr::from(*ip)),
        Action::SetIpv4Dst(ip) => format!("mod_nw_dst:{}", Ipv4Addr::from(*ip)),
        Action::SetTpSrc(p) => format!("mod_tp_src:{p}"),
        Action::SetTpDst(p) => format!("mod_tp_dst:{p}"),
        Action::DecTtl => "dec_ttl".to_string(),
        Action::SetTunnel(id) => format!("set_tunnel:{id}"),
        Action::Resubmit(t) => format!("resubmit(,{t})"),
        Action::GotoTable(t) => format!("goto_table:{t}"),
        Action::Group(g) => format!("group:{g}"),
    }
}

/// Prints an action list; the empty list is `drop`.
pub(crate) fn format_action_list(actions: &[Action], ports: &dyn PortNames) -> String {
    if actions.is_empty() {
        return "drop".to_string();
    }
    actions
        .iter()
        .map(|a| format_action(a, ports))
        .collect::<Vec<_>>()
        .join(",")
}
