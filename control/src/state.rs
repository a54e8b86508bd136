//! The desired state vswitch-controld is the authority for, and its
//! persistence in `state.json`.
//!
//! Writes are atomic in the POSIX sense: the new content goes to a
//! temporary file in the same directory, is fsync'ed, renamed over
//! `state.json` (rename(2) replaces atomically), and the directory is
//! fsync'ed so the rename itself survives a crash. A reader therefore sees
//! the old file or the new one, never a torn one.
//!
//! A file that cannot be parsed is never overwritten: it is renamed to
//! `state.json.corrupt-<unix seconds>` and the caller is told where it went.
//!
//! The file holds every rule of every bridge: it is written mode 0640,
//! owner root, group `vswitch` (the group that may read through the
//! sockets anyway), never world-readable.

use crate::api::{DpPort, PortSpec, StaticFdbEntry, WireGroup, WireRule};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Format version of `state.json`.
pub const STATE_FORMAT: u32 = 1;

/// Largest `state.json` read: far above a million rules, and a bound on
/// what a damaged or foreign file can make the daemon allocate.
pub const MAX_STATE_BYTES: u64 = 512 << 20;

/// Mode of `state.json`.
pub const STATE_FILE_MODE: u32 = 0o640;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading the file failed (other than "does not exist").
    #[error("state file \"{path}\": cannot read")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file, or is larger than
    /// [`MAX_STATE_BYTES`]; it is left where it is.
    #[error("state file \"{path}\": refused: {reason}")]
    Unusable {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A write step failed; the previous file is intact.
    #[error("state file \"{path}\": {op} failed")]
    Write {
        /// File.
        path: PathBuf,
        /// Step.
        op: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Moving a corrupt file aside failed.
    #[error(
        "state file \"{path}\" is corrupt ({reason}) and could not be moved aside to \"{aside}\""
    )]
    MoveAside {
        /// File.
        path: PathBuf,
        /// Where it should have gone.
        aside: PathBuf,
        /// Why it is corrupt.
        reason: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// PMD settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PmdSettings {
    /// Cores to pin PMD threads to.
    pub cores: Vec<usize>,
    /// `poll` or `adaptive`.
    pub idle: String,
}

impl Default for PmdSettings {
    fn default() -> Self {
        PmdSettings {
            cores: vec![0],
            idle: "adaptive".into(),
        }
    }
}

/// One bridge of the desired state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeConfig {
    /// Name.
    pub name: String,
    /// Ports with stable numbers, in creation order.
    #[serde(default)]
    pub ports: Vec<DpPort>,
    /// Rules in installation order.
    #[serde(default)]
    pub rules: Vec<WireRule>,
    /// Groups by id.
    #[serde(default)]
    pub groups: Vec<WireGroup>,
    /// Static MAC entries.
    #[serde(default)]
    pub fdb: Vec<StaticFdbEntry>,
}

impl BridgeConfig {
    /// A new bridge with the default `priority=0,actions=NORMAL` rule.
    pub fn new(name: &str) -> Self {
        BridgeConfig {
            name: name.to_owned(),
            rules: vec![WireRule::from(&datapath::pipeline::Rule::default_normal())],
            ..Default::default()
        }
    }

    /// The port named `name`.
    pub fn port(&self, name: &str) -> Option<&DpPort> {
        self.ports.iter().find(|p| p.spec.name == name)
    }
}

/// Everything vswitch-controld keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    /// [`STATE_FORMAT`].
    pub format: u32,
    /// Bridges in creation order.
    #[serde(default)]
    pub bridges: Vec<BridgeConfig>,
    /// PMD settings.
    #[serde(default)]
    pub pmd: PmdSettings,
}

impl Default for DesiredState {
    fn default() -> Self {
        DesiredState {
            format: STATE_FORMAT,
            bridges: Vec::new(),
            pmd: PmdSettings::default(),
        }
    }
}

impl DesiredState {
    /// The bridge named `name`.
    pub fn bridge(&self, name: &str) -> Option<&BridgeConfig> {
        self.bridges.iter().find(|b| b.name == name)
    }

    /// Mutable access to the bridge named `name`.
    pub fn bridge_mut(&mut self, name: &str) -> Option<&mut BridgeConfig> {
        self.bridges.iter_mut().find(|b| b.name == name)
    }

    /// The bridge holding port `name`, and the port.
    pub fn find_port(&self, name: &str) -> Option<(&BridgeConfig, &DpPort)> {
        self.bridges
            .iter()
            .find_map(|b| b.port(name).map(|p| (b, p)))
    }

    /// The lowest port number not used by any bridge (numbers are unique
    /// in the switch, and kept by a port for its whole life).
    pub fn free_ofport(&self) -> u32 {
        let used: std::collections::BTreeSet<u32> = self
            .bridges
            .iter()
            .flat_map(|b| b.ports.iter().map(|p| p.ofport))
            .collect();
        (1..).find(|n| !used.contains(n)).unwrap_or(1)
    }

    /// Name → number map of a bridge's ports (for the flow syntax).
    pub fn port_numbers(&self, bridge: &str) -> std::collections::BTreeMap<String, u32> {
        self.bridge(bridge)
            .map(|b| {
                b.ports
                    .iter()
                    .map(|p| (p.spec.name.clone(), p.ofport))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// All port specs with their bridge.
    pub fn all_ports(&self) -> impl Iterator<Item = (&str, &DpPort)> {
        self.bridges
            .iter()
            .flat_map(|b| b.ports.iter().map(move |p| (b.name.as_str(), p)))
    }

    /// Spec of a port, if any.
    pub fn spec(&self, name: &str) -> Option<&PortSpec> {
        self.find_port(name).map(|(_, p)| &p.spec)
    }

    /// Checks what the types alone cannot: names valid and unique, port
    /// numbers unique and in the OpenFlow range, port specs valid (the
    /// same checks `add-port` makes). A file failing this was not written
    /// by vswitch-controld and is treated as corrupt.
    pub fn validate(&self) -> Result<(), String> {
        let mut bridges = std::collections::BTreeSet::new();
        let mut ports = std::collections::BTreeSet::new();
        let mut numbers = std::collections::BTreeSet::new();
        for b in &self.bridges {
            crate::portspec::check_name("bridge", &b.name).map_err(|e| e.to_string())?;
            if !bridges.insert(b.name.as_str()) {
                return Err(format!("bridge \"{}\" is listed twice", b.name));
            }
            for p in &b.ports {
                let name = &p.spec.name;
                if !ports.insert(name.as_str()) {
                    return Err(format!("port \"{name}\" is listed twice"));
                }
                if p.ofport == 0 || p.ofport > crate::flowsyntax::OFPP_MAX {
                    return Err(format!(
                        "port \"{name}\": number {} is outside 1..={}",
                        p.ofport,
                        crate::flowsyntax::OFPP_MAX
                    ));
                }
                if !numbers.insert(p.ofport) {
                    return Err(format!(
                        "port \"{name}\": number {} is used twice",
                        p.ofport
                    ));
                }
                let mut opts = p.spec.options.clone();
                opts.insert("type".into(), p.spec.r#type.clone());
                crate::portspec::validate(name, &opts).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// What [`StateStore::load`] found.
#[derive(Debug)]
pub enum Loaded {
    /// No file yet.
    Missing,
    /// The file's state.
    Ok(DesiredState),
    /// The file was corrupt and has been moved to `aside`.
    Corrupt {
        /// Where the bad file is now.
        aside: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
}

/// `state.json` and its atomic replacement.
#[derive(Clone, Debug)]
pub struct StateStore {
    path: PathBuf,
}

impl StateStore {
    /// A store at `path` (its directory is created on first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state. A corrupt file is moved aside, never overwritten.
    pub fn load(&self) -> Result<Loaded, StateError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let read_err = |source| StateError::Read {
            path: self.path.clone(),
            source,
        };
        // O_NONBLOCK: a FIFO in its place must not block the daemon.
        let f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::Missing),
            Err(source) => return Err(read_err(source)),
        };
        let meta = f.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(StateError::Unusable {
                path: self.path.clone(),
                reason: "not a regular file".into(),
            });
        }
        if meta.len() > MAX_STATE_BYTES {
            return Err(StateError::Unusable {
                path: self.path.clone(),
                reason: format!("{} bytes, more than {MAX_STATE_BYTES}", meta.len()),
            });
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        f.take(MAX_STATE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        let reason = match parse_state(&bytes) {
            Ok(s) => return Ok(Loaded::Ok(s)),
            Err(reason) => reason,
        };
        let aside = self.aside_path();
        std::fs::rename(&self.path, &aside).map_err(|source| StateError::MoveAside {
            path: self.path.clone(),
            aside: aside.clone(),
            reason: reason.clone(),
            source,
        })?;
        Ok(Loaded::Corrupt { aside, reason })
    }

    fn aside_path(&self) -> PathBuf {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let base = format!("{}.corrupt-{secs}", self.path.display());
        let mut p = PathBuf::from(&base);
        let mut n = 1;
        while p.exists() {
            p = PathBuf::from(format!("{base}.{n}"));
            n += 1;
        }
        p
    }

    /// Writes the state atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&self, state: &DesiredState) -> Result<(), StateError> {
        let err = |op: &'static str| {
            let path = self.path.clone();
            move |source| StateError::Write { path, op, source }
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(err("create directory"))?;
        let mut bytes =
            serde_json::to_vec(state).map_err(|e| err("serialize")(std::io::Error::other(e)))?;
        bytes.push(b'\n');
        let file_name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "state.json".into());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(STATE_FILE_MODE)
                .open(&tmp)
                .map_err(err("create temporary file"))?;
            // A temporary file left by an earlier run keeps its old mode:
            // set it explicitly, and hand the group to `vswitch`.
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
                STATE_FILE_MODE,
            ))
            .map_err(err("chmod temporary file"))?;
            if let Some(gid) = reader_group() {
                // Best effort: without the group the file stays root-only.
                let _ = nix::unistd::fchown(
                    std::os::fd::AsRawFd::as_raw_fd(&f),
                    None,
                    Some(nix::unistd::Gid::from_raw(gid)),
                );
            }
            f.write_all(&bytes).map_err(err("write temporary file"))?;
            f.sync_all().map_err(err("fsync temporary file"))?;
            std::fs::rename(&tmp, &self.path).map_err(err("rename"))?;
            let d = std::fs::File::open(&dir).map_err(err("open directory"))?;
            d.sync_all().map_err(err("fsync directory"))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Decodes `state.json` bytes: the state, or why they are not one.
/// Bounded: serde_json refuses nesting deeper than 128 levels, and the
/// output is never larger than a constant times the input.
pub fn parse_state(bytes: &[u8]) -> Result<DesiredState, String> {
    match serde_json::from_slice::<DesiredState>(bytes) {
        Ok(s) if s.format == STATE_FORMAT => s.validate().map(|()| s),
        Ok(s) => Err(format!(
            "format version {} is not the supported {STATE_FORMAT}",
            s.format
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Gid of [`crate::ipc::SOCKET_GROUP`] when we are root and it exists.
fn reader_group() -> Option<u32> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    nix::unistd::Group::from_name(crate::ipc::SOCKET_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WireAction;
    use std::collections::BTreeMap;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("vsw-state-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sample() -> DesiredState {
        let mut b = BridgeConfig::new("br0");
        b.ports.push(DpPort {
            ofport: 1,
            spec: PortSpec {
                name: "p1".into(),
                r#type: "tap".into(),
                options: BTreeMap::from([("netns".into(), "ns1".into())]),
            },
        });
        let mut r = b.rules[0].clone();
        r.priority = 10;
        r.actions = vec![WireAction::Output(1)];
        b.rules.push(r);
        DesiredState {
            bridges: vec![b],
            ..Default::default()
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let d = TempDir::new("rt");
        let store = StateStore::new(d.0.join("sub/state.json"));
        assert!(matches!(store.load().unwrap(), Loaded::Missing));
        let s = sample();
        store.save(&s).unwrap();
        match store.load().unwrap() {
            Loaded::Ok(back) => assert_eq!(back, s),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn save_replaces_whole_file_and_leaves_no_temporary() {
        let d = TempDir::new("atomic");
        let store = StateStore::new(d.0.join("state.json"));
        let big = {
            let mut s = sample();
            for i in 0..200 {
                s.bridges.push(BridgeConfig::new(&format!("br{i}")));
            }
            s
        };
        store.save(&big).unwrap();
        let small = DesiredState::default();
        store.save(&small).unwrap();
        // No leftover bytes of the bigger file: the file was replaced, not
        // rewritten in place.
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert_eq!(serde_json::from_str::<DesiredState>(&text).unwrap(), small);
        let names: Vec<_> = std::fs::read_dir(&d.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["state.json".to_owned()]);
    }

    #[test]
    fn failed_save_keeps_previous_file() {
        let d = TempDir::new("fail");
        let path = d.0.join("state.json");
        let store = StateStore::new(&path);
        store.save(&sample()).unwrap();
        // Make the rename fail: a non-empty directory where the temporary
        // file should be created cannot be opened as a file.
        let tmp = d.0.join(format!(".state.json.tmp-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("x")).unwrap();
        let e = store.save(&DesiredState::default()).unwrap_err();
        assert!(e.to_string().contains("state.json"), "{e}");
        match store.load().unwrap() {
            Loaded::Ok(s) => assert_eq!(s, sample()),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn corrupt_file_is_moved_aside_not_overwritten() {
        let d = TempDir::new("corrupt");
        let path = d.0.join("state.json");
        std::fs::write(&path, b"{\"format\":1,\"bridges\":[{\"name\":").unwrap();
        let store = StateStore::new(&path);
        match store.load().unwrap() {
            Loaded::Corrupt { aside, reason } => {
                assert!(!path.exists());
                assert!(aside
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("state.json.corrupt-"));
                assert_eq!(
                    std::fs::read(&aside).unwrap(),
                    b"{\"format\":1,\"bridges\":[{\"name\":"
                );
                assert!(!reason.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
        // A second corrupt file goes beside the first, not over it.
        std::fs::write(&path, b"garbage").unwrap();
        let Loaded::Corrupt { aside: a2, .. } = store.load().unwrap() else {
            panic!("expected corrupt")
        };
        assert_eq!(std::fs::read(&a2).unwrap(), b"garbage");
        let n = std::fs::read_dir(&d.0).unwrap().count();
        assert_eq!(n, 2);
    }

    #[test]
    fn unknown_format_version_is_treated_as_corrupt() {
        let d = TempDir::new("ver");
        let path = d.0.join("state.json");
        std::fs::write(&path, b"{\"format\":99}").unwrap();
        match StateStore::new(&path).load().unwrap() {
            Loaded::Corrupt { reason, .. } => assert!(reason.contains("99"), "{reason}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ofports_are_lowest_free_and_unique_across_bridges() {
        let mut s = sample();
        assert_eq!(s.free_ofport(), 2);
        let mut b2 = BridgeConfig::new("br1");
        b2.ports.push(DpPort {
            ofport: 2,
            spec: PortSpec {
                name: "q".into(),
                r#type: "tap".into(),
                options: BTreeMap::new(),
            },
        });
        s.bridges.push(b2);
        assert_eq!(s.free_ofport(), 3);
        s.bridges[0].ports.clear();
        assert_eq!(s.free_ofport(), 1);
        assert_eq!(s.find_port("q").unwrap().0.name, "br1");
    }

    #[test]
    fn state_file_is_not_world_readable() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let d = TempDir::new("mode");
        let store = StateStore::new(d.0.join("state.json"));
        // A stale temporary file of an earlier run with a loose mode.
        let tmp = d.0.join(format!(".state.json.tmp-{}", std::process::id()));
        std::fs::write(&tmp, b"old").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        store.save(&sample()).unwrap();
        let meta = std::fs::metadata(store.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, STATE_FILE_MODE);
        if let Some(gid) = reader_group() {
            assert_eq!(meta.gid(), gid);
        }
    }

    #[test]
    fn non_regular_state_path_is_refused_and_left_alone() {
        let d = TempDir::new("nonreg");
        let path = d.0.join("state.json");
        std::fs::create_dir_all(&path).unwrap();
        let e = StateStore::new(&path).load().unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(path.is_dir());
        std::fs::remove_dir(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Without O_NONBLOCK the open would wait for a writer.
        let e = StateStore::new(&path).load().unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
