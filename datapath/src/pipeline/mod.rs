//! The OpenFlow-style pipeline: numbered tables of prioritized rules,
//! compiled into immutable snapshots that PMD threads read lock-free.

mod rule;

pub use rule::{Action, Bucket, Group, GroupId, GroupType, Match, Rule, TableId, MAX_TABLES};
