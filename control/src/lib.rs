//! vswitch control plane: the flow language shared by the CLI and daemons.

#![warn(missing_docs)]

pub mod flowsyntax;
