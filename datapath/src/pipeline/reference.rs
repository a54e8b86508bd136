//! A linear reference classifier: the obviously-correct definition of
//! "which rule matches", used by tests as the oracle for the tuple-space
//! tables and the caches in front of them.

use super::rule::{Rule, TableId};
use crate::flow::FlowKey;

/// The index of the rule of `table` that `key` hits: highest priority,
/// then the earliest in `rules` (installation order).
pub fn lookup(rules: &[Rule], table: TableId, key: &FlowKey) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, r) in rules.iter().enumerate() {
        if r.table != table || !r.r#match.matches(key) {
            continue;
        }
        if best.is_none_or(|b| r.priority > rules[b].priority) {
            best = Some(i);
        }
    }
    best
}
