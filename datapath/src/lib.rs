//! vswitch datapath: the sans-IO packet core (packets, flow keys, pipeline,
//! caches, NORMAL switching) and the ports and PMD engine around it.
//!
//! See `docs/ARCHITECTURE.md` at the repository root for the packet's way.

#![warn(missing_docs)]

pub mod classifier;
pub mod drop;
pub mod exec;
pub mod flow;
pub mod packet;
pub mod pipeline;
pub mod pmd;
pub mod port;
pub mod security;
pub mod switch;
pub mod sys;
pub mod wire;

pub use drop::{DropCounters, DropReason};
