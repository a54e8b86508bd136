//! Shared helpers for the criterion benches and `vswitch-bench`.
