//! Thin, safe wrappers over the Linux interfaces the ports need: rtnetlink
//! (links and addresses), network namespaces, fd readiness, the bpf(2)
//! syscall (XSKMAP, XDP program, bpf_link) and the ethtool ioctl.
//!
//! This is the only place besides the port backends where `unsafe` lives;
//! everything above it works with owned, RAII types.

pub mod bpf;
pub mod ethtool;
pub mod netlink;
pub mod netns;
pub mod poll;
