//! Flow caches in front of the pipeline.
//!
//! Lookup order per packet: the per-PMD exact-match cache ([`Emc`]), then
//! the per-PMD megaflow cache ([`MegaflowCache`], tuple-space search over
//! the distinct masks the slow path produced), then the slow path
//! (`pipeline::translate`) which runs the tables on the key and returns the
//! datapath actions plus the wildcard mask under which that answer holds.
//!
//! Entries are stamped with the datapath generation they were made under
//! and with the FDB tags they depend on; a stale entry is never used.

mod emc;
mod hash;
mod megaflow;

pub use emc::{Emc, EmcStats, EMC_ENTRIES};
pub use hash::{FlowHashBuilder, FlowHasher};
pub use megaflow::{MegaflowCache, MegaflowEntry, MegaflowId, MegaflowStats, MEGAFLOW_MAX};
