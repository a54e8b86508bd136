//! vswitch control plane: the API shared by all three programs, its
//! transport, the flow language, the desired state and its persistence,
//! configuration, reconciliation, and the `vswitchctl` CLI.

#![warn(missing_docs)]

pub mod api;
pub mod cli;
pub mod config;
pub mod controld;
pub mod daemon;
pub mod flowsyntax;
pub mod ipc;
pub mod portspec;
pub mod reconcile;
pub mod render;
pub mod state;
