//! Flow keys and their extraction from frames.
//!
//! [`extract`] parses a frame once into a [`FlowKey`] plus the offsets of its
//! L3 and L4 headers, so later stages (classifier, actions) never re-parse.

mod extract;
mod key;

pub use extract::{
    extract, Anomaly, Extracted, ETH_TYPE_NONE, MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS,
};
pub use key::{
    mac_from_u64, mac_to_u64, Field, FlowKey, FlowMask, PortNo, FRAG_ANY, FRAG_LATER, KEY_WORDS,
    VLAN_PCP_MASK, VLAN_PRESENT, VLAN_VID_MASK,
};
