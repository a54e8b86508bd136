//! Network namespaces as `ip netns` names them (bind mounts under
//! `/run/netns/NAME`, iproute2 `ip-netns(8)`), and running code inside one.
//!
//! `setns(2)` changes the namespace of the calling *thread* only, and
//! sockets and /dev/net/tun files keep the namespace they were opened in.
//! [`in_netns`] therefore runs a closure on a short-lived thread that
//! entered the namespace: whatever it opens belongs there, and the caller's
//! threads never change namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Where `ip netns` keeps its namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Errors of namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name is not usable as a file name under `/run/netns`.
    #[error("netns \"{name}\": invalid name")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// No such namespace.
    #[error("netns \"{name}\" does not exist")]
    Missing {
        /// The name.
        name: String,
    },
    /// Opening it was refused.
    #[error("netns \"{name}\": no permission to open it")]
    Permission {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Opening it failed otherwise.
    #[error("netns \"{name}\": open failed")]
    Open {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `setns(2)` failed.
    #[error("netns \"{name}\": setns failed")]
    Enter {
        /// The name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The helper thread could not be started or panicked.
    #[error("netns \"{name}\": helper thread failed")]
    Thread {
        /// The name.
        name: String,
    },
    /// A private sysfs for the namespace could not be mounted.
    #[error("netns \"{name}\": mounting a private sysfs failed ({op})")]
    Sysfs {
        /// The name.
        name: String,
        /// The failed step.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A device attribute could not be read or written.
    #[error("{path}: {op} failed")]
    Attribute {
        /// The sysfs path (as seen inside the namespace).
        path: String,
        /// read or write.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// An open handle on a named network namespace (keeps it alive while
/// held; closed on drop).
#[derive(Debug)]
pub struct NetnsHandle {
    name: String,
    fd: OwnedFd,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

impl NetnsHandle {
    /// Opens `/run/netns/NAME`.
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        if !valid_name(name) {
            return Err(NetnsError::InvalidName {
                name: name.to_owned(),
            });
        }
        let path: PathBuf = [NETNS_RUN_DIR, name].iter().collect();
        match File::open(&path) {
            Ok(f) => Ok(NetnsHandle {
                name: name.to_owned(),
                fd: f.into(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetnsError::Missing {
                name: name.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Err(NetnsError::Permission {
                name: name.to_owned(),
                source: e,
            }),
            Err(e) => Err(NetnsError::Open {
                name: name.to_owned(),
                source: e,
            }),
        }
    }

    /// The namespace name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor (e.g. for `IFLA_NET_NS_FD`).
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Moves the calling thread into this namespace. Only for threads that
    /// exist for this purpose (see [`in_netns`]): there is no way back
    /// short of a second `setns`.
    fn enter_current_thread(&self) -> Result<(), NetnsError> {
        // SAFETY: the fd is a valid open namespace file; CLONE_NEWNET makes
        // the kernel check it is a network namespace.
        let rc = unsafe { libc::setns(self.fd.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(NetnsError::Enter {
                name: self.name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// The identity (device, inode) of the namespace `/run/netns/NAME` refers
/// to: equal identities mean the same namespace, so a namespace deleted
/// and re-created under the same name is told apart.
pub fn netns_identity(name: &str) -> Result<(u64, u64), NetnsError> {
    use std::os::unix::fs::MetadataExt;
    if !valid_name(name) {
        return Err(NetnsError::InvalidName {
            name: name.to_owned(),
        });
    }
    let path: PathBuf = [NETNS_RUN_DIR, name].iter().collect();
    match std::fs::metadata(&path) {
        Ok(m) => Ok((m.dev(), m.ino())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetnsError::Missing {
            name: name.to_owned(),
        }),
        Err(e) => Err(NetnsError::Open {
            name: name.to_owned(),
            source: e,
        }),
    }
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result.
/// Sockets and files `f` opens belong to that namespace; the calling
/// thread's namespace is unchanged.
pub fn in_netns<T, F>(ns: &NetnsHandle, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("vsw-netns".into())
            .spawn_scoped(s, || {
                ns.enter_current_thread()?;
                Ok(f())
            })
            .map_err(|_| NetnsError::Thread {
                name: ns.name.clone(),
            })?;
        handle.join().map_err(|_| NetnsError::Thread {
            name: ns.name.clone(),
        })?
    })
}

/// Like [`in_netns`] but by name; `None` runs `f` in the current
/// namespace on the calling thread.
pub fn in_named_netns<T, F>(name: Option<&str>, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    match name {
        None => Ok(f()),
        Some(n) => in_netns(&NetnsHandle::open(n)?, f),
    }
}

/// Reads the sysfs attribute `/sys/class/net/DEV/ATTR` of a device in
/// namespace `name` (None: ours) and, when `new` is given, writes it; returns
/// the value before the write, trimmed.
///
/// sysfs lists the devices of the namespace it was *mounted* in, not of the
/// reader's, so for a named namespace the helper thread also takes its own
/// mount namespace, turns every mount into a slave (nothing propagates back
/// to ours) and mounts a fresh sysfs over /sys — what `ip netns exec` does
/// for a whole process. The thread and its mounts vanish when it ends.
pub fn netdev_sysfs_attr(
    name: Option<&str>,
    dev: &str,
    attr: &str,
    new: Option<&str>,
) -> Result<String, NetnsError> {
    let path = format!("/sys/class/net/{dev}/{attr}");
    let bad = |p: &str| p.is_empty() || p.contains('/') || p == "." || p == "..";
    if bad(dev) || bad(attr) {
        return Err(NetnsError::Attribute {
            path,
            op: "name check",
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let access = |path: &str| -> Result<String, NetnsError> {
        let err = |op: &'static str| {
            move |source| NetnsError::Attribute {
                path: path.to_owned(),
                op,
                source,
            }
        };
        let old = std::fs::read_to_string(path).map_err(err("read"))?;
        if let Some(v) = new {
            std::fs::write(path, v).map_err(err("write"))?;
        }
        Ok(old.trim().to_owned())
    };
    let Some(ns_name) = name else {
        return access(&path);
    };
    let ns = NetnsHandle::open(ns_name)?;
    in_netns(&ns, || {
        private_sysfs(ns_name)?;
        access(&path)
    })?
}

/// Gives the calling (helper) thread its own mount namespace with a sysfs
/// of its current network namespace on /sys.
fn private_sysfs(name: &str) -> Result<(), NetnsError> {
    let fail = |op: &'static str| NetnsError::Sysfs {
        name: name.to_owned(),
        op,
        source: io::Error::last_os_error(),
    };
    // SAFETY: unshare(2) with a constant flag; CLONE_NEWNS implies a
    // private fs_struct for this thread only (allowed in a threaded
    // process, unlike CLONE_VM).
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(fail("unshare(CLONE_NEWNS)"));
    }
    let root = c"/";
    let sys = c"/sys";
    let sysfs = c"sysfs";
    // SAFETY: constant NUL-terminated strings; only this thread's new
    // mount namespace is changed.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(fail("make / a slave"));
    }
    // SAFETY: as above; a fresh sysfs shows the thread's network namespace.
    let rc = unsafe {
        libc::mount(
            sysfs.as_ptr(),
            sys.as_ptr(),
            sysfs.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(fail("mount sysfs"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_attributes_are_read_and_bad_names_refused() {
        let mtu = netdev_sysfs_attr(None, "lo", "mtu", None).expect("lo has an mtu");
        assert!(mtu.parse::<u32>().is_ok(), "{mtu:?}");
        for (dev, attr) in [
            ("../lo", "mtu"),
            ("lo", "../../x"),
            ("", "mtu"),
            ("..", "mtu"),
        ] {
            let e = netdev_sysfs_attr(None, dev, attr, None).unwrap_err();
            assert!(matches!(e, NetnsError::Attribute { .. }), "{e}");
        }
        assert!(matches!(
            netdev_sysfs_attr(Some("vsw-no-such-ns-x"), "lo", "mtu", None),
            Err(NetnsError::Missing { .. })
        ));
    }

    #[test]
    fn names_that_escape_the_netns_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../etc"] {
            assert!(
                matches!(NetnsHandle::open(bad), Err(NetnsError::InvalidName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn missing_namespace_error_says_so() {
        let e = NetnsHandle::open("vsw-no-such-ns-x").unwrap_err();
        assert!(matches!(e, NetnsError::Missing { .. }));
        assert_eq!(e.to_string(), "netns \"vsw-no-such-ns-x\" does not exist");
    }

    #[test]
    fn closure_runs_inline_without_a_namespace() {
        let here = std::thread::current().id();
        let there = in_named_netns(None, || std::thread::current().id()).unwrap();
        assert_eq!(here, there);
    }
}
