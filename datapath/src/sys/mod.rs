//! Thin, safe wrappers over the Linux kernel interfaces the ports use that
//! neither `libc` nor `nix` wrap: the bpf(2) syscall (Documentation/bpf/,
//! include/uapi/linux/bpf.h) and the ethtool ioctl
//! (include/uapi/linux/ethtool.h). Every kernel object is an RAII owner.

pub mod bpf;
pub mod ethtool;
