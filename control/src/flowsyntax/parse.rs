//! Rules, match-only strings and flows files (ovs-ofctl(8), "Flow
//! Syntax"): rule attributes (`table`, `priority`, `cookie`,
//! `idle_timeout`, `hard_timeout`), match fields in any order, and
//! `actions=` last, everything after it being the action list.

use super::actions::{parse_actions, ActionPlace, MAX_TABLE_ID};
use super::error::{FlowSyntaxError, FlowsFileError};
use super::fields::MatchBuilder;
use super::lex::{tokenize, Source, Token};
use super::{MatchSpec, PortNames};
use datapath::pipeline::{Match, Rule, TableId};

/// OpenFlow's default priority (OpenFlow 1.3 §7.3.4.2: `OFP_DEFAULT_PRIORITY`).
pub const DEFAULT_PRIORITY: u16 = 0x8000;

/// Rule attributes that are not match fields.
const ATTRIBUTES: [&str; 5] = [
    "table",
    "priority",
    "cookie",
    "idle_timeout",
    "hard_timeout",
];

/// What was parsed before `actions=`.
struct Head<'a> {
    table: Option<TableId>,
    priority: Option<u16>,
    cookie: Option<u64>,
    idle_timeout: Option<u16>,
    hard_timeout: Option<u16>,
    r#match: Match,
    /// The action tokens, when `actions=` was present.
    actions: Option<Vec<Token<'a>>>,
}

/// Parses attributes and match up to (and collecting) `actions=`.
fn parse_head<'a>(
    src: &Source<'a>,
    ports: &dyn PortNames,
    in_match: bool,
) -> Result<Head<'a>, FlowSyntaxError> {
    let tokens = tokenize(src, 0)?;
    let mut head = Head {
        table: None,
        priority: None,
        cookie: None,
        idle_timeout: None,
        hard_timeout: None,
        r#match: Match::ANY,
        actions: None,
    };
    let mut builder = MatchBuilder::new(*src);
    let mut attr_columns: Vec<(&str, usize)> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        let column = src.column(tok.start);
        let Some((key, value)) = tok.split('=') else {
            builder.apply(*tok, ports)?;
            continue;
        };
        if key == "actions" {
            if in_match {
                return Err(FlowSyntaxError::NotAllowedInMatch {
                    name: key.to_string(),
                    column,
                });
            }
            let mut list = Vec::with_capacity(tokens.len() - i);
            if !value.text.is_empty() {
                list.push(value);
            }
            list.extend_from_slice(&tokens[i + 1..]);
            head.actions = Some(list);
            break;
        }
        let Some(attr) = ATTRIBUTES.iter().find(|a| **a == key) else {
            builder.apply(*tok, ports)?;
            continue;
        };
        if in_match && !matches!(*attr, "table" | "priority") {
            return Err(FlowSyntaxError::NotAllowedInMatch {
                name: key.to_string(),
                column,
            });
        }
        if let Some(&(_, first_column)) = attr_columns.iter().find(|a| a.0 == *attr) {
            return Err(FlowSyntaxError::DuplicateField {
                field: key.to_string(),
                column,
                first_column,
            });
        }
        attr_columns.push((attr, column));
        match *attr {
            "table" => head.table = Some(src.number(value, key, MAX_TABLE_ID)? as TableId),
            "priority" => head.priority = Some(src.number(value, key, 0xffff)? as u16),
            "cookie" => {
                if value.text.contains('/') {
                    return Err(src.invalid(value, key, "a rule's cookie takes no mask"));
                }
                head.cookie = Some(src.number(value, key, u128::from(u64::MAX))? as u64);
            }
            "idle_timeout" => head.idle_timeout = Some(src.number(value, key, 0xffff)? as u16),
            _ => head.hard_timeout = Some(src.number(value, key, 0xffff)? as u16),
        }
    }
    head.r#match = builder.finish()?;
    Ok(head)
}

/// Parses a rule: `[table=T,][priority=P,]...,MATCH,actions=ACTIONS`.
pub(crate) fn parse_rule(text: &str, ports: &dyn PortNames) -> Result<Rule, FlowSyntaxError> {
    let src = Source::new(text);
    let head = parse_head(&src, ports, false)?;
    let Some(action_tokens) = head.actions else {
        return Err(FlowSyntaxError::MissingActions {
            column: src.end_column(),
        });
    };
    let table = head.table.unwrap_or(0);
    let actions = parse_actions(&src, &action_tokens, ports, ActionPlace::Rule(table))?;
    Ok(Rule {
        table,
        priority: head.priority.unwrap_or(DEFAULT_PRIORITY),
        r#match: head.r#match,
        actions,
        cookie: head.cookie.unwrap_or(0),
        idle_timeout: head.idle_timeout.unwrap_or(0),
        hard_timeout: head.hard_timeout.unwrap_or(0),
    })
}

/// Parses a match without actions, with optional `table=` and `priority=`.
pub(crate) fn parse_match(text: &str, ports: &dyn PortNames) -> Result<MatchSpec, FlowSyntaxError> {
    let src = Source::new(text);
    let head = parse_head(&src, ports, true)?;
    Ok(MatchSpec {
        table: head.table,
        priority: head.priority,
        r#match: head.r#match,
    })
}

/// Parses a flows file: one rule a line; blank lines and lines whose first
/// non-blank character is `#` are skipped.
pub(crate) fn parse_flows_file(
    text: &str,
    ports: &dyn PortNames,
) -> Result<Vec<Rule>, FlowsFileError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // Parse the untrimmed line so columns count from its start.
        let rule =
            parse_rule(line, ports).map_err(|error| FlowsFileError { line: i + 1, error })?;
        rules.push(rule);
    }
    Ok(rules)
}
