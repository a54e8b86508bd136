//! Compiled flow tables: tuple-space search over a rule set.
//!
//! A table groups its rules by mask ("subtables"); each subtable is a hash
//! map from the masked value to the rules with that exact match, best first.
//! Subtables are ordered by the highest priority they hold, so a lookup can
//! stop as soon as no remaining subtable could beat the best rule found.
//!
//! While looking up, the table adds the mask of every subtable it had to
//! examine to the caller's wildcard mask: the result depends on those bits
//! and no others, which is exactly what a megaflow may wildcard (the idea of
//! Open vSwitch's classifier, written anew here).

use super::rule::{Match, Rule};
use crate::flow::{FlowKey, FlowMask};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Live counters of one rule, kept across pipeline generations while the
/// rule is unchanged.
#[derive(Debug)]
pub struct RuleStats {
    /// Packets that hit the rule.
    pub n_packets: AtomicU64,
    /// Bytes that hit the rule.
    pub n_bytes: AtomicU64,
    /// Clock (ms) of the last hit; the install time until the first hit.
    pub last_hit_ms: AtomicU64,
    /// Clock (ms) when the rule was installed.
    pub installed_ms: u64,
}

impl RuleStats {
    /// Fresh counters for a rule installed at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        RuleStats {
            n_packets: AtomicU64::new(0),
            n_bytes: AtomicU64::new(0),
            last_hit_ms: AtomicU64::new(now_ms),
            installed_ms: now_ms,
        }
    }

    /// Credits `packets`/`bytes` hits at `now_ms`.
    #[inline]
    pub fn credit(&self, packets: u64, bytes: u64, now_ms: u64) {
        self.n_packets.fetch_add(packets, Relaxed);
        self.n_bytes.fetch_add(bytes, Relaxed);
        self.last_hit_ms.fetch_max(now_ms, Relaxed);
    }
}

/// A rule as installed: the definition, its insertion order and counters.
#[derive(Debug)]
pub struct InstalledRule {
    /// The rule.
    pub rule: Rule,
    /// Insertion sequence number: older rules win ties of equal priority.
    pub seq: u64,
    /// Counters.
    pub stats: RuleStats,
}

impl InstalledRule {
    /// Precedence order: higher priority first, then older first.
    #[inline]
    fn beats(&self, other: &InstalledRule) -> bool {
        (self.rule.priority, std::cmp::Reverse(self.seq))
            > (other.rule.priority, std::cmp::Reverse(other.seq))
    }
}

#[derive(Debug)]
struct Subtable {
    mask: FlowMask,
    max_priority: u16,
    /// Masked value → rules with exactly this match, best first.
    rules: HashMap<FlowKey, Vec<Arc<InstalledRule>>, super::super::classifier::FlowHashBuilder>,
}

/// One compiled table.
#[derive(Debug, Default)]
pub struct Table {
    subtables: Vec<Subtable>,
    len: usize,
}

impl Table {
    /// Builds a table from installed rules (any order).
    pub fn build(rules: impl IntoIterator<Item = Arc<InstalledRule>>) -> Table {
        let mut by_mask: HashMap<FlowMask, Subtable> = HashMap::new();
        let mut len = 0;
        for r in rules {
            len += 1;
            let m: Match = r.rule.r#match;
            let st = by_mask.entry(m.mask).or_insert_with(|| Subtable {
                mask: m.mask,
                max_priority: 0,
                rules: HashMap::default(),
            });
            st.max_priority = st.max_priority.max(r.rule.priority);
            st.rules.entry(m.value).or_default().push(r);
        }
        let mut subtables: Vec<Subtable> = by_mask.into_values().collect();
        for st in &mut subtables {
            for list in st.rules.values_mut() {
                list.sort_by(|a, b| {
                    b.rule
                        .priority
                        .cmp(&a.rule.priority)
                        .then(a.seq.cmp(&b.seq))
                });
            }
        }
        subtables.sort_by_key(|s| std::cmp::Reverse(s.max_priority));
        Table { subtables, len }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no rule.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of distinct masks.
    pub fn subtable_count(&self) -> usize {
        self.subtables.len()
    }

    /// The best rule matching `key`, adding to `wc` the bits the answer
    /// depends on.
    pub fn lookup(&self, key: &FlowKey, wc: &mut FlowMask) -> Option<&Arc<InstalledRule>> {
        let mut best: Option<&Arc<InstalledRule>> = None;
        for st in &self.subtables {
            if let Some(b) = best {
                // Sorted by max priority: nothing below can win any more.
                if st.max_priority < b.rule.priority {
                    break;
                }
            }
            wc.union(&st.mask);
            if let Some(list) = st.rules.get(&key.masked(&st.mask)) {
                let cand = &list[0];
                if best.is_none_or(|b| cand.beats(b)) {
                    best = Some(cand);
                }
            }
        }
        best
    }

    /// Every rule, in no particular order.
    pub fn rules(&self) -> impl Iterator<Item = &Arc<InstalledRule>> {
        self.subtables
            .iter()
            .flat_map(|st| st.rules.values().flat_map(|l| l.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Field;
    use crate::pipeline::rule::Action;

    fn installed(priority: u16, m: Match, seq: u64) -> Arc<InstalledRule> {
        Arc::new(InstalledRule {
            rule: Rule::new(0, priority, m, vec![Action::Output(seq as u32)]),
            seq,
            stats: RuleStats::new(0),
        })
    }

    #[test]
    fn higher_priority_wins_and_ties_go_to_the_older_rule() {
        let any = installed(0, Match::ANY, 1);
        let tcp = Match::ANY
            .with(Field::EthType, 0x800)
            .with(Field::NwProto, 6);
        let tcp_a = installed(100, tcp, 2);
        let tcp80 = installed(100, tcp.with(Field::TpDst, 80), 3);
        let t = Table::build([any, tcp_a, tcp80]);
        let mut key = FlowKey::ZERO;
        key.set(Field::EthType, 0x800);
        key.set(Field::NwProto, 6);
        key.set(Field::TpDst, 80);
        let mut wc = FlowKey::ZERO;
        assert_eq!(t.lookup(&key, &mut wc).unwrap().seq, 2);
        key.set(Field::NwProto, 17);
        let mut wc = FlowKey::ZERO;
        assert_eq!(t.lookup(&key, &mut wc).unwrap().seq, 1);
        assert_eq!(wc.get(Field::NwProto), 0xff);
    }

    #[test]
    fn lookup_stops_before_lower_priority_subtables_and_leaves_them_wildcarded() {
        let hi = installed(200, Match::ANY.with(Field::EthType, 0x806), 1);
        let lo = installed(10, Match::ANY.with(Field::TpDst, 22), 2);
        let t = Table::build([hi, lo]);
        let mut key = FlowKey::ZERO;
        key.set(Field::EthType, 0x806);
        let mut wc = FlowKey::ZERO;
        assert_eq!(t.lookup(&key, &mut wc).unwrap().seq, 1);
        assert_eq!(wc.get(Field::TpDst), 0);
        assert_eq!(wc.get(Field::EthType), 0xffff);
    }
}
