//! The OpenFlow-style flow language operators know from `ovs-ofctl`:
//! parsing and printing rules, matches, action lists and groups, e.g.
//!
//! ```text
//! table=0,priority=100,in_port=tap1,tcp,nw_src=10.0.0.0/24,tp_dst=80,actions=mod_vlan_vid:10,output:tap2
//! ```
//!
//! Field and action meanings follow ovs-fields(7) and ovs-actions(7); the
//! rule and group grammar follows ovs-ofctl(8). Ports are written by name
//! or number; a [`PortNames`] resolver maps between the two. The printer
//! emits one canonical form, so `format_rule(parse_rule(s))` is a fixed
//! point and `parse_rule(format_rule(r)) == r` for every rule the parser
//! accepts. Errors carry the 1-based column of the offending token.
//!
//! # Reference
//!
//! Tokens are separated by commas and/or white space (not inside
//! parentheses). Numbers are decimal or `0x` hexadecimal.
//!
//! | rule attribute | value |
//! |---|---|
//! | `table` | 0..=254 (default 0) |
//! | `priority` | 0..=65535 (default 32768) |
//! | `cookie` | 64-bit number |
//! | `idle_timeout`, `hard_timeout` | seconds, 0..=65535 (0 = never) |
//! | `actions` | must come last: the rest of the line is the action list |
//!
//! | match field | value | mask | needs |
//! |---|---|---|---|
//! | `in_port` | port name, number or `LOCAL` | no | |
//! | `tun_id`, `tun_src`, `tun_dst` | number; IPv4 | yes | |
//! | `dl_src`, `dl_dst` | `xx:xx:xx:xx:xx:xx` | yes | |
//! | `dl_type` | 16-bit number | no | |
//! | `dl_vlan` | VID 0..=4095, `0xffff` = untagged | no | |
//! | `dl_vlan_pcp` | 0..=7 | no | |
//! | `vlan_tci` | raw TCI, `0x1000` = tag present | yes | |
//! | `nw_src`, `nw_dst` | IPv4, `/len` or `/a.b.c.d` | yes | ip or arp |
//! | `ipv6_src`, `ipv6_dst` | IPv6, `/len` or `/mask` | yes | ipv6 |
//! | `ipv6_label` | 20-bit number | yes | ipv6 |
//! | `nw_proto` | 0..=255 (ARP opcode on arp) | no | ip, ipv6 or arp |
//! | `nw_tos`, `ip_dscp`, `ip_ecn`, `nw_ttl` | numbers | no | ip or ipv6 |
//! | `ip_frag` | `no`, `yes`, `first`, `later`, `not_later` | (named) | ip or ipv6 |
//! | `tp_src`, `tp_dst` | 0..=65535 | yes | tcp, udp or sctp |
//! | `tcp_flags` | 12-bit number, or `+syn-ack` style | yes | tcp |
//! | `icmp_type`, `icmp_code` | 0..=255 | no | icmp |
//! | `icmpv6_type`, `icmpv6_code` | 0..=255 | no | icmp6 |
//! | `arp_op`, `arp_spa`, `arp_tpa`, `arp_sha`, `arp_tha` | number; IPv4; MAC | (addresses) | arp |
//!
//! Shorthands: `ip`, `ipv6`, `arp`, `icmp`, `tcp`, `udp`, `sctp`, `icmp6`,
//! `tcp6`, `udp6`, `sctp6`. A field may be given once; two fields that set
//! the same bits (`tcp,nw_proto=17`) must agree.
//!
//! Actions: `output:P` (or a bare port), `NORMAL`, `FLOOD`, `ALL`,
//! `IN_PORT`, `LOCAL`, `drop` (alone), `mod_vlan_vid:N`, `mod_vlan_pcp:N`,
//! `strip_vlan`/`pop_vlan`, `push_vlan:0x8100|0x88a8`, `mod_dl_src:MAC`,
//! `mod_dl_dst:MAC`, `mod_nw_src:IP`, `mod_nw_dst:IP`, `mod_tp_src:N`,
//! `mod_tp_dst:N`, `dec_ttl`, `set_tunnel:VNI`, `set_field:V->F` (F one of
//! `tun_id`, `eth_src`, `eth_dst`, `ip_src`, `ip_dst`, `tcp_src`,
//! `tcp_dst`, `udp_src`, `udp_dst`, `vlan_vid`, `vlan_pcp`),
//! `resubmit(,T)`, `goto_table:T` (last, to a later table), `group:G`.
//!
//! Groups: `group_id=G,type=select|all,bucket=ACTIONS,...`; a bucket may
//! start with `weight:N` and its actions with `actions=`.

mod actions;
mod error;
mod fields;
mod group;
mod lex;
mod parse;
mod print;
mod values;

pub use error::{FlowSyntaxError, FlowsFileError};
pub use parse::DEFAULT_PRIORITY;
pub use values::{OFPP_LOCAL, OFPP_MAX};

use datapath::flow::{FlowKey, PortNo};
use datapath::pipeline::{Action, Group, Match, Rule, TableId};
use std::collections::{BTreeMap, HashMap};

/// Maps port names to numbers and back for the parser and printer.
pub trait PortNames {
    /// The number of the port called `name`, if there is one.
    fn port_no(&self, name: &str) -> Option<PortNo>;
    /// The name of port `no`, if it has one.
    fn port_name(&self, no: PortNo) -> Option<String>;
}

impl PortNames for BTreeMap<String, PortNo> {
    fn port_no(&self, name: &str) -> Option<PortNo> {
        self.get(name).copied()
    }

    fn port_name(&self, no: PortNo) -> Option<String> {
        self.iter().find(|(_, n)| **n == no).map(|(k, _)| k.clone())
    }
}

impl<S: std::hash::BuildHasher> PortNames for HashMap<String, PortNo, S> {
    fn port_no(&self, name: &str) -> Option<PortNo> {
        self.get(name).copied()
    }

    fn port_name(&self, no: PortNo) -> Option<String> {
        // The smallest name, so printing does not depend on hash order when
        // two names share a number.
        self.iter()
            .filter(|(_, n)| **n == no)
            .map(|(k, _)| k)
            .min()
            .cloned()
    }
}

/// A resolver that knows no names: ports are written as numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NumericPorts;

impl PortNames for NumericPorts {
    fn port_no(&self, _name: &str) -> Option<PortNo> {
        None
    }

    fn port_name(&self, _no: PortNo) -> Option<String> {
        None
    }
}

/// A resolver from two closures: name → number and number → name.
#[derive(Clone, Copy)]
pub struct PortFns<F, G>(pub F, pub G);

impl<F, G> std::fmt::Debug for PortFns<F, G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortFns")
    }
}

impl<F, G> PortNames for PortFns<F, G>
where
    F: Fn(&str) -> Option<PortNo>,
    G: Fn(PortNo) -> Option<String>,
{
    fn port_no(&self, name: &str) -> Option<PortNo> {
        (self.0)(name)
    }

    fn port_name(&self, no: PortNo) -> Option<String> {
        (self.1)(no)
    }
}

/// A parsed match-only string (`del-flows`, `trace`): the match plus the
/// optional `table=` and `priority=` it named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchSpec {
    /// `table=`, if given.
    pub table: Option<TableId>,
    /// `priority=`, if given.
    pub priority: Option<u16>,
    /// The match (everything when no field was given).
    pub r#match: Match,
}

/// Parses a rule: attributes, match fields, then `actions=` (last).
pub fn parse_rule(text: &str, ports: &dyn PortNames) -> Result<Rule, FlowSyntaxError> {
    parse::parse_rule(text, ports)
}

/// Prints a rule canonically: `table=T,priority=P`, then `cookie`,
/// `idle_timeout`, `hard_timeout` when set, the match, and `actions=`.
pub fn format_rule(rule: &Rule, ports: &dyn PortNames) -> String {
    let mut parts = vec![
        format!("table={}", rule.table),
        format!("priority={}", rule.priority),
    ];
    if rule.cookie != 0 {
        parts.push(format!("cookie={:#x}", rule.cookie));
    }
    if rule.idle_timeout != 0 {
        parts.push(format!("idle_timeout={}", rule.idle_timeout));
    }
    if rule.hard_timeout != 0 {
        parts.push(format!("hard_timeout={}", rule.hard_timeout));
    }
    parts.extend(print::match_parts(&rule.r#match, ports));
    parts.push(format!(
        "actions={}",
        actions::format_action_list(&rule.actions, ports)
    ));
    parts.join(",")
}

/// Parses a match without actions; `table=` and `priority=` may be given.
pub fn parse_match(text: &str, ports: &dyn PortNames) -> Result<MatchSpec, FlowSyntaxError> {
    parse::parse_match(text, ports)
}

/// Prints a match canonically (empty for the match-everything match).
pub fn format_match(m: &Match, ports: &dyn PortNames) -> String {
    print::match_parts(m, ports).join(",")
}

/// Prints an action list canonically (`drop` when empty).
pub fn format_actions(actions: &[Action], ports: &dyn PortNames) -> String {
    actions::format_action_list(actions, ports)
}

/// Parses a bare action list (no `actions=` prefix), as in a bucket or a
/// `mod-flows` command.
pub fn parse_actions(text: &str, ports: &dyn PortNames) -> Result<Vec<Action>, FlowSyntaxError> {
    let src = lex::Source::new(text);
    let tokens = lex::tokenize(&src, 0)?;
    actions::parse_actions(&src, &tokens, ports, actions::ActionPlace::Free)
}

/// Parses a group: `group_id=G,type=select|all,bucket=...`.
pub fn parse_group(text: &str, ports: &dyn PortNames) -> Result<Group, FlowSyntaxError> {
    group::parse_group(text, ports)
}

/// Prints a group canonically.
pub fn format_group(g: &Group, ports: &dyn PortNames) -> String {
    group::format_group(g, ports)
}

/// Parses a flows file: one rule a line, `#` comments and blank lines
/// skipped; an error names its 1-based line.
pub fn parse_flows_file(text: &str, ports: &dyn PortNames) -> Result<Vec<Rule>, FlowsFileError> {
    parse::parse_flows_file(text, ports)
}

/// The concrete flow key a match describes, for `trace`: every given field
/// takes its (masked) value, every other field is zero.
pub fn match_to_key(m: &Match) -> FlowKey {
    // `Match::value` is kept pre-masked, so it already is that key.
    m.value.masked(&m.mask)
}

#[cfg(test)]
mod tests;
