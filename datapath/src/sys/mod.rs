//! Thin, safe wrappers over the Linux interfaces the ports need: rtnetlink
//! (links and addresses), network namespaces, and fd readiness.
//!
//! This is the only place besides the port backends where `unsafe` lives;
//! everything above it works with owned, RAII types.

pub mod netlink;
pub mod netns;
pub mod poll;
