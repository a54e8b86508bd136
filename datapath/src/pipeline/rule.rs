//! Rules, matches, actions and groups: the OpenFlow-style vocabulary the
//! control process programs and the pipeline executes.
//!
//! These are plain values with port *numbers*; the flow syntax in the
//! `control` crate resolves port names to numbers and prints them back.

use crate::flow::{Field, FlowKey, FlowMask, PortNo};

/// Table number (0..=[`MAX_TABLES`]-1).
pub type TableId = u8;
/// Group identifier.
pub type GroupId = u32;

/// Number of tables a pipeline has.
pub const MAX_TABLES: usize = 255;

/// A masked match over flow keys. `value` is always pre-masked.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct Match {
    /// Field values; bits outside `mask` are zero.
    pub value: FlowKey,
    /// Which bits matter.
    pub mask: FlowMask,
}

impl Match {
    /// The match-everything match.
    pub const ANY: Match = Match {
        value: FlowKey::ZERO,
        mask: FlowKey::ZERO,
    };

    /// Adds `field == value` under `mask` (bits outside the field's width
    /// are ignored). Later calls on the same field replace earlier ones.
    pub fn set(&mut self, field: Field, value: u128, mask: u128) {
        let mask = mask & field.full();
        self.mask.set(field, mask);
        self.value.set(field, value & mask);
    }

    /// Adds an exact `field == value`.
    pub fn set_exact(&mut self, field: Field, value: u128) {
        self.set(field, value, field.full());
    }

    /// Builder form of [`Match::set_exact`].
    pub fn with(mut self, field: Field, value: u128) -> Self {
        self.set_exact(field, value);
        self
    }

    /// (value, mask) of one field; mask 0 means wildcarded.
    pub fn get(&self, field: Field) -> (u128, u128) {
        (self.value.get(field), self.mask.get(field))
    }

    /// True when `key` satisfies this match.
    #[inline]
    pub fn matches(&self, key: &FlowKey) -> bool {
        self.value.matches(&self.mask, key)
    }

    /// True when every packet this match accepts is also accepted by
    /// `wider` (this match is equal to or narrower than `wider`).
    pub fn is_within(&self, wider: &Match) -> bool {
        wider.mask.is_subset_of(&self.mask) && self.value.masked(&wider.mask) == wider.value
    }
}

/// One action of a rule's action list, applied in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Send to a port.
    Output(PortNo),
    /// L2 learning switch behaviour (MAC learning, VLANs, flooding).
    Normal,
    /// All ports of the bridge but the ingress one (and not to tunnels
    /// when the packet came from a tunnel: split horizon).
    Flood,
    /// All ports of the bridge but the ingress one.
    All,
    /// Back out the ingress port.
    InPort,
    /// Set the VLAN id, pushing an 802.1Q tag when the frame has none.
    SetVlanVid(u16),
    /// Set the VLAN priority (PCP), pushing a tag when the frame has none.
    SetVlanPcp(u8),
    /// Remove the outer VLAN tag.
    StripVlan,
    /// Push a new outer VLAN tag with this TPID (0x8100 or 0x88a8), VID 0.
    PushVlan(u16),
    /// Set Ethernet source.
    SetEthSrc([u8; 6]),
    /// Set Ethernet destination.
    SetEthDst([u8; 6]),
    /// Set IPv4 source (checksums updated).
    SetIpv4Src(u32),
    /// Set IPv4 destination (checksums updated).
    SetIpv4Dst(u32),
    /// Set TCP/UDP source port (checksum updated).
    SetTpSrc(u16),
    /// Set TCP/UDP destination port (checksum updated).
    SetTpDst(u16),
    /// Decrement IP TTL / hop limit; drop when it reaches 0.
    DecTtl,
    /// Set the tunnel id used by a following output to a tunnel port.
    SetTunnel(u32),
    /// Look the packet up again in a table (then continue here).
    Resubmit(TableId),
    /// Continue the lookup in a later table (ends this action list).
    GotoTable(TableId),
    /// Execute a group.
    Group(GroupId),
}

/// What kind of group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupType {
    /// One bucket, chosen by a hash of the 5-tuple (load balancing).
    Select,
    /// Every bucket, each on its own copy of the packet.
    All,
}

/// One bucket of a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Relative weight for `select` groups (default 1).
    pub weight: u16,
    /// Actions of the bucket.
    pub actions: Vec<Action>,
}

/// A group: `group_id=1,type=select,bucket=output:1,bucket=output:2`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    /// Identifier referenced by `group:G`.
    pub id: GroupId,
    /// Select or all.
    pub kind: GroupType,
    /// Buckets in order.
    pub buckets: Vec<Bucket>,
}

/// A flow rule as the control process defines it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Table the rule lives in.
    pub table: TableId,
    /// Higher wins; equal priorities with overlapping matches are resolved
    /// by insertion order (older first), deterministically.
    pub priority: u16,
    /// What packets it applies to.
    pub r#match: Match,
    /// What to do; empty means drop.
    pub actions: Vec<Action>,
    /// Opaque operator value.
    pub cookie: u64,
    /// Seconds without a hit after which the rule expires (0 = never).
    pub idle_timeout: u16,
    /// Seconds after installation after which the rule expires (0 = never).
    pub hard_timeout: u16,
}

impl Rule {
    /// A rule with default priority (32768, as in OpenFlow) and no timeouts.
    pub fn new(table: TableId, priority: u16, r#match: Match, actions: Vec<Action>) -> Self {
        Rule {
            table,
            priority,
            r#match,
            actions,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
        }
    }

    /// The rule every new bridge starts with: `table=0,priority=0,actions=NORMAL`.
    pub fn default_normal() -> Self {
        Rule::new(0, 0, Match::ANY, vec![Action::Normal])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrower_match_is_within_wider() {
        let icmp = Match::ANY
            .with(Field::EthType, 0x0800)
            .with(Field::NwProto, 1);
        let icmp_from_port = icmp.with(Field::InPort, 3);
        assert!(icmp_from_port.is_within(&icmp));
        assert!(!icmp.is_within(&icmp_from_port));
        assert!(icmp.is_within(&Match::ANY));
        let tcp = Match::ANY
            .with(Field::EthType, 0x0800)
            .with(Field::NwProto, 6);
        assert!(!tcp.is_within(&icmp));
    }
}
