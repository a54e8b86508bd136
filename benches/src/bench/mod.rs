//! `vswitch-bench`, the end-to-end benchmark harness (issue 7,
//! `../shared/BENCHMARKS.md`): builds the standard two-namespace topology
//! for each switch under test (Linux bridge, Open vSwitch, ours), drives it
//! with its own AF_PACKET generator and sink, iperf3 and ping, and reports
//! every figure as median and spread over runs and as a ratio to the
//! anchors measured in the same run (table, JSON, SVG).
//!
//! Our switch runs inside the harness process (a [`datapath::switch::Switch`]
//! with one pinned PMD thread); OVS runs as a private instance the harness
//! starts and stops; everything created is owned by an RAII guard.

pub mod cmd;
pub mod error;
pub mod figure;
pub mod frame;
pub mod measure;
pub mod overlay;
pub mod ovs;
pub mod plot;
pub mod ports;
pub mod report;
pub mod runner;
pub mod soak;
pub mod stats;
pub mod sys;
pub mod targets;
pub mod tcp;
pub mod topology;
pub mod traffic;

pub use error::{BenchError, Result};
