//! The OpenFlow-style pipeline: numbered tables of prioritized rules,
//! compiled into immutable snapshots that PMD threads read lock-free, the
//! NORMAL action's FDB, and the slow path that translates a flow key into
//! datapath actions.

mod fdb;
pub mod reference;
mod rule;
mod table;
mod translate;

pub use fdb::{
    tag_bucket, Fdb, FdbDest, FdbEntryInfo, FdbStats, FdbTag, Learned, DEFAULT_AGING_SECS,
    DEFAULT_FDB_MAX, TAG_BUCKETS,
};
pub use rule::{Action, Bucket, Group, GroupId, GroupType, Match, Rule, TableId, MAX_TABLES};
pub use table::{InstalledRule, RuleStats, Table};
pub use translate::{
    translate, BridgePort, BridgeView, DpAction, TraceEvent, Translation, MAX_DEPTH, MAX_DP_ACTIONS,
};

use std::collections::HashMap;
use std::sync::Arc;

/// Hard limit on rules per bridge (all tables), with a clear error above it.
pub const MAX_RULES: usize = 1_000_000;

/// VLAN membership of a port for NORMAL switching.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VlanMode {
    /// Untagged port in one VLAN (`vlan=N`; 0 = the untagged VLAN).
    Access(u16),
    /// Tagged port carrying the listed VLANs (`trunks=1,2,3`); empty = all.
    /// Untagged frames on a trunk belong to VLAN 0.
    Trunk(Vec<u16>),
}

impl Default for VlanMode {
    fn default() -> Self {
        VlanMode::Trunk(Vec::new())
    }
}

/// An immutable compiled rule set of one bridge.
#[derive(Debug, Default)]
pub struct Pipeline {
    tables: Vec<Table>,
    groups: HashMap<GroupId, Group>,
    rules: Vec<Arc<InstalledRule>>,
}

impl Pipeline {
    /// Compiles installed rules and groups.
    pub fn build(rules: Vec<Arc<InstalledRule>>, groups: impl IntoIterator<Item = Group>) -> Self {
        let max_table = rules
            .iter()
            .map(|r| r.rule.table)
            .max()
            .map_or(0, |t| t as usize + 1);
        let mut per_table: Vec<Vec<Arc<InstalledRule>>> = vec![Vec::new(); max_table];
        for r in &rules {
            per_table[r.rule.table as usize].push(r.clone());
        }
        Pipeline {
            tables: per_table.into_iter().map(Table::build).collect(),
            groups: groups.into_iter().map(|g| (g.id, g)).collect(),
            rules,
        }
    }

    /// A table, if it has rules.
    #[inline]
    pub fn table(&self, id: TableId) -> Option<&Table> {
        self.tables.get(id as usize).filter(|t| !t.is_empty())
    }

    /// A group.
    #[inline]
    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id)
    }

    /// All groups, by id.
    pub fn groups(&self) -> Vec<&Group> {
        let mut g: Vec<&Group> = self.groups.values().collect();
        g.sort_by_key(|g| g.id);
        g
    }

    /// All installed rules, in installation order.
    pub fn rules(&self) -> &[Arc<InstalledRule>] {
        &self.rules
    }
}
