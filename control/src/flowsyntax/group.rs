//! Groups in the `ovs-ofctl add-group` syntax (ovs-ofctl(8), "Group
//! Syntax"; OpenFlow 1.3 §5.6): `group_id=G,type=select|all` followed by
//! `bucket=` clauses. A bucket runs until the next `bucket=`; inside it,
//! `weight:N` (or `weight=N`) sets its weight and the rest, optionally
//! introduced by `actions=`, is its action list.

use super::actions::{format_action_list, parse_actions, ActionPlace};
use super::error::FlowSyntaxError;
use super::lex::{suggestion, tokenize, Source, Token};
use super::PortNames;
use datapath::pipeline::{Bucket, Group, GroupType};

/// Parses one group.
pub(crate) fn parse_group(text: &str, ports: &dyn PortNames) -> Result<Group, FlowSyntaxError> {
    let src = Source::new(text);
    let tokens = tokenize(&src, 0)?;
    let mut id: Option<(u32, usize)> = None;
    let mut kind: Option<(GroupType, usize)> = None;
    // Each bucket: its tokens (the `bucket=` prefix stripped).
    let mut buckets: Vec<Vec<Token<'_>>> = Vec::new();
    for tok in tokens {
        let column = src.column(tok.start);
        if let Some(rest) = tok.text.strip_prefix("bucket=") {
            let first = tok.skip(tok.text.len() - rest.len());
            buckets.push(if first.text.is_empty() {
                Vec::new()
            } else {
                vec![first]
            });
            continue;
        }
        if let Some(b) = buckets.last_mut() {
            b.push(tok);
            continue;
        }
        let (key, value) = match tok.split('=') {
            Some((k, v)) => (k, v),
            None => (
                tok.text,
                Token {
                    start: tok.start + tok.text.len(),
                    text: "",
                },
            ),
        };
        let duplicate = |first_column: usize| FlowSyntaxError::DuplicateField {
            field: key.to_string(),
            column,
            first_column,
        };
        match key {
            "group_id" => {
                if let Some((_, first)) = id {
                    return Err(duplicate(first));
                }
                id = Some((src.number(value, key, 0xffff_ffff)? as u32, column));
            }
            "type" => {
                if let Some((_, first)) = kind {
                    return Err(duplicate(first));
                }
                let t = match value.text {
                    "select" => GroupType::Select,
                    "all" => GroupType::All,
                    "indirect" | "ff" | "fast_failover" => {
                        return Err(FlowSyntaxError::Unsupported {
                            what: tok.text.to_string(),
                            column,
                            reason: "only select and all groups are implemented".to_string(),
                        })
                    }
                    _ => return Err(src.invalid(value, "type", "expected select or all")),
                };
                kind = Some((t, column));
            }
            _ => {
                return Err(FlowSyntaxError::UnknownField {
                    name: key.to_string(),
                    column,
                    suggestion: suggestion(key, ["group_id", "type", "bucket"]),
                })
            }
        }
    }
    let end = src.end_column();
    let (id, _) = id.ok_or(FlowSyntaxError::MissingGroupAttribute {
        name: "group_id",
        column: end,
    })?;
    let (kind, _) = kind.ok_or(FlowSyntaxError::MissingGroupAttribute {
        name: "type",
        column: end,
    })?;
    let buckets = buckets
        .iter()
        .map(|b| parse_bucket(&src, b, ports))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Group { id, kind, buckets })
}

fn parse_bucket(
    src: &Source<'_>,
    tokens: &[Token<'_>],
    ports: &dyn PortNames,
) -> Result<Bucket, FlowSyntaxError> {
    let mut weight: Option<(u16, usize)> = None;
    let mut actions = Vec::with_capacity(tokens.len());
    for tok in tokens {
        let column = src.column(tok.start);
        let w = tok
            .text
            .strip_prefix("weight:")
            .or_else(|| tok.text.strip_prefix("weight="));
        if let Some(rest) = w {
            if let Some((_, first_column)) = weight {
                return Err(FlowSyntaxError::DuplicateField {
                    field: "weight".to_string(),
                    column,
                    first_column,
                });
            }
            let v = tok.skip(tok.text.len() - rest.len());
            weight = Some((src.number(v, "weight", 0xffff)? as u16, column));
            continue;
        }
        match tok.text.strip_prefix("actions=") {
            Some("") => {}
            Some(rest) => actions.push(tok.skip(tok.text.len() - rest.len())),
            None => actions.push(*tok),
        }
    }
    Ok(Bucket {
        weight: weight.map_or(1, |w| w.0),
        actions: parse_actions(src, &actions, ports, ActionPlace::Bucket)?,
    })
}

/// Prints a group canonically: `bucket=ACTIONS` for weight 1, else
/// `bucket=weight:W,actions=ACTIONS`.
pub(crate) fn format_group(g: &Group, ports: &dyn PortNames) -> String {
    let kind = match g.kind {
        GroupType::Select => "select",
        GroupType::All => "all",
    };
    let mut s = format!("group_id={},type={kind}", g.id);
    for b in &g.buckets {
        let actions = format_action_list(&b.actions, ports);
        if b.weight == 1 {
            s.push_str(&format!(",bucket={actions}"));
        } else {
            s.push_str(&format!(",bucket=weight:{},actions={actions}", b.weight));
        }
    }
    s
}
